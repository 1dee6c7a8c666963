"""Thin re-export (saves import edits in ~20 tests and convert/arch.py): the schemas are maskfeat.schema."""
from .schema import (  # noqa: F401
                     DEFAULT_PRETRAINED,
                     FINETUNE,
                     IMAGENET_MEAN,
                     IMAGENET_STD,
                     KNN,
                     LINPROBE,
                     PRETRAIN,
                     VIDEO_FINETUNE,
                     VIDEO_PRETRAIN,
)
