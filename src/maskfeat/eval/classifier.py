"""The fine-tuning classifier (timm ViT, mean-pooled tokens + fc-norm), its loss and training step.

The step (``ClassificationStep``) and ``evaluate`` (metrics.py) know nothing about images:
they take any model mapping ``batch[input_key]`` to logits (video clips included).
"""
from __future__ import annotations

import timm
import torch
from timm.data import Mixup
from timm.layers import trunc_normal_
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from torch import nn

from ..errors import UserError
from ..models import ARCHS

# timm builds every shape from one registered name; ARCHS gives width / depth / heads.
TIMM_BASE = "vit_base_patch16_224"


def build_classifier(arch: str, img_size: int, patch_size: int, num_classes: int, global_pool: str = "avg",
                     drop_path_rate: float = 0.1, head_init_std: float = 2e-5) -> nn.Module:
    """timm VisionTransformer: 'avg' = mean of patch tokens + LayerNorm (fc-norm, the final
    encoder norm dropped, as MAE / mmpretrain); 'token' = cls token after the final norm.
    Head: trunc-normal(std=head_init_std) weights, zero bias."""
    if arch not in ARCHS:
        raise UserError(f"model.arch: unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    if global_pool not in ("avg", "token"):
        raise UserError(f"model.global_pool: {global_pool!r}; choose avg or token")
    model = timm.create_model(TIMM_BASE, pretrained=False, **ARCHS[arch], img_size=img_size,
                              patch_size=patch_size, num_classes=num_classes, global_pool=global_pool,
                              fc_norm=global_pool == "avg", drop_path_rate=drop_path_rate)
    trunc_normal_(model.head.weight, std=head_init_std)
    nn.init.zeros_(model.head.bias)
    return model


# Keys a pre-training checkpoint lacks / has beyond a fine-tuning classifier (regexes).
CLASSIFIER_NEW = (r"head\..*", r"fc_norm\..*")
CLASSIFIER_DROPPED = (r"mask_token", r"norm\..*")      # the final norm is replaced by fc_norm


def build_criterion(smoothing: float, mixup_active: bool) -> nn.Module:
    if mixup_active:
        return SoftTargetCrossEntropy()            # Mixup makes smoothed soft targets itself
    if smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing)
    return nn.CrossEntropyLoss()


def build_mixup(aug: dict, num_classes: int) -> Mixup | None:
    """timm Mixup / CutMix (one of them per batch), with label smoothing; None when both are off."""
    if aug["mixup"] <= 0 and aug["cutmix"] <= 0:
        return None
    return Mixup(mixup_alpha=aug["mixup"], cutmix_alpha=aug["cutmix"], prob=aug["mixup_prob"],
                 switch_prob=aug["mixup_switch_prob"], mode=aug["mixup_mode"],
                 label_smoothing=aug["label_smoothing"], num_classes=num_classes)


class ClassificationStep:
    """Trainer step: inputs and labels to the device, optional Mixup, logits, loss."""

    def __init__(self, criterion: nn.Module, device: torch.device, mixup: Mixup | None = None,
                 input_key: str = "images"):
        self.criterion, self.device, self.mixup, self.input_key = criterion, device, mixup, input_key

    def __call__(self, model: nn.Module, batch: dict) -> torch.Tensor:
        x = batch[self.input_key].to(self.device, non_blocking=True)      # (B, ...)
        y = batch["label"].to(self.device, non_blocking=True)             # (B,)
        if self.mixup is not None:
            x, y = self.mixup(x, y)                                         # y: (B, C) soft targets
        return self.criterion(model(x), y)


class Pooled(nn.Module):
    """A frozen MaskFeat encoder's feature vector: cls token or mean of patch tokens, after
    the final norm. (B, 3, H, W) -> (B, D)."""

    def __init__(self, encoder: nn.Module, pool: str = "cls"):
        super().__init__()
        if pool not in ("cls", "avg"):
            raise UserError(f"model.pool: {pool!r}; choose cls or avg")
        self.encoder, self.pool = encoder, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder.forward_features(x)                          # (B, 1 + N, D)
        if self.pool == "cls":
            return tokens[:, 0]
        return tokens[:, self.encoder.num_prefix_tokens:].mean(dim=1)


class ProbeHead(nn.Sequential):
    """MAE's linear probe: BatchNorm without affine, then Linear (trunc-normal .01, zero bias)."""

    def __init__(self, dim: int, num_classes: int):
        linear = nn.Linear(dim, num_classes)
        trunc_normal_(linear.weight, std=0.01)
        nn.init.zeros_(linear.bias)
        super().__init__(nn.BatchNorm1d(dim, affine=False, eps=1e-6), linear)


class LinearProbe(nn.Module):
    """Frozen encoder (always in eval mode, no gradients) + trainable ``ProbeHead``."""

    def __init__(self, features: Pooled, num_classes: int):
        super().__init__()
        self.features = features.requires_grad_(False)
        self.head = ProbeHead(features.encoder.embed_dim, num_classes)

    def train(self, mode: bool = True):
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f = self.features(x)                                            # (B, D)
        return self.head(f.float())
