"""Config schemas, one per job."""
from .finetune import VIDEO_FINETUNE, VIDEO_PRETRAIN  # noqa: F401
from .pretrain import FINETUNE, KNN, LINPROBE, PRETRAIN  # noqa: F401
