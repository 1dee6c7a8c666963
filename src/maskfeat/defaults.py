"""Thin re-export: the schemas live in maskfeat.schema."""
from .schema.finetune import VIDEO_FINETUNE, VIDEO_PRETRAIN  # noqa: F401
from .schema.pretrain import *  # noqa: F401,F403
