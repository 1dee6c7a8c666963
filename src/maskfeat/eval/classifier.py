"""The fine-tuning classifiers, one row per modality (``CLASSIFIERS``: timm ViT with mean-pooled tokens
+ fc-norm; MViTv2 with its pooling restored or the video ViT), their loss, mixup and training step.

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
from ..models.encoders import build_video_encoder

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


def build_video_classifier(model: dict, num_classes: int) -> nn.Module:
    """MViTv2 with its pooling restored (or the video ViT) and a ``num_classes`` head."""
    return build_video_encoder(model, pretrain=False, num_classes=num_classes)


def _image_row(model: dict, num_classes: int) -> nn.Module:
    return build_classifier(model["arch"], model["img_size"], model["patch_size"], num_classes,
                            model["global_pool"], model["drop_path_rate"], model["head_init_std"])


# (a config's resolved ``model`` section, number of classes) -> classifier
CLASSIFIERS = {"image": _image_row, "video": build_video_classifier}


def classifier_for(modality: str, model: dict, num_classes: int) -> nn.Module:
    """The fine-tuning classifier of ``modality``'s row."""
    return CLASSIFIERS[modality](model, num_classes)


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


class VideoMixup:
    """timm's Mixup / CutMix on (B, C, T, H, W) clips: one box or blend for all frames of a clip."""

    def __init__(self, num_classes: int, mixup: float = 0.8, cutmix: float = 1.0,
                 label_smoothing: float = 0.1):
        self.inner = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing,
                           num_classes=num_classes, mode="batch")

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, t, h, w = clips.shape
        x = clips.reshape(b, c * t, h, w)        # timm boxes the last two dims
        x, soft = self.inner(x, labels)          # in place; soft targets (B, classes)
        return x.view(b, c, t, h, w), soft


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
