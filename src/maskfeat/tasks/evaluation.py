"""What the image evaluation rows (finetune, linprobe, knn) share."""
from __future__ import annotations

from ..config_checks import AS_PRETRAINED, choice
from ..models import ARCHS

# model.arch / img_size / patch_size may be '' / 0: "as the pre-trained checkpoint"
EVAL_RULES = {**AS_PRETRAINED, "model.arch": choice("", *ARCHS)}
