"""MaskFeat pre-training model: encoder + linear head + masked MSE on HOG targets."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class MaskFeatOutput:
    loss: torch.Tensor                 # scalar
    pred: torch.Tensor | None = None   # (B, N, D_target)
    target: torch.Tensor | None = None  # (B, N, D_target)
    mask: torch.Tensor | None = None   # (B, N) bool


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over masked patches of the mean over target dims of (pred - target)^2."""
    per_patch = (pred.float() - target.float()).pow(2).mean(dim=-1)   # (B, N)
    w = mask.to(per_patch.dtype)
    return (per_patch * w).sum() / w.sum().clamp_min(1.0)


class MaskFeat(nn.Module):
    """Every patch through the encoder, masked ones as ``encoder.mask_token``; a linear head.

    ``head_in`` is the width the head reads (the encoder's; a decoder's in subclasses).
    """

    def __init__(self, encoder: nn.Module, target: nn.Module, decay_pos_embed: bool = True,
                 head_in: int | None = None):
        super().__init__()
        self.encoder = encoder
        self.target = target
        self.head = nn.Linear(head_in or encoder.embed_dim, target.out_dim)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.decay_pos_embed = decay_pos_embed

    def no_weight_decay(self) -> set[str]:
        """Read by timm's param-group builder: the mask token never decays; pos/cls by setting."""
        names = {"encoder.mask_token"}
        if not self.decay_pos_embed:
            names |= {"encoder.pos_embed", "encoder.cls_token"}
        return names

    @torch.compiler.disable
    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """fp32 targets, outside any compiled graph of the model (train.compile): the HOG brings
        its own compiled kernel (hog.impl); traced whole with the model, inductor also fuses the
        reflect pad into the Sobel conv and the HOG gets 2x slower on CPU."""
        with torch.autocast(images.device.type, enabled=False):
            return self.target(images)

    def encode(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder's output tokens for this mask: (B, 1 + N, D), masked patches as the mask token."""
        return self.encoder.forward_features(images, mask)

    def forward(self, images: torch.Tensor, mask: torch.Tensor,
                return_outputs: bool = False) -> MaskFeatOutput:
        """images (B, 3, H, W) normalised, mask (B, Hp, Wp) bool (True = masked)."""
        mask = mask.flatten(1).bool()                                    # (B, N)
        # 1. targets from the full, un-masked image, fp32, no grad
        target = self.targets(images)                                    # (B, N, D_t)
        # 2. encoder with masked patches replaced by the mask token
        latent = self.encode(images, mask)                               # (B, 1 + N, D)
        latent = latent[:, self.encoder.num_prefix_tokens:]              # (B, N, D)
        # 3. linear head to the target dim
        pred = self.head(latent)                                         # (B, N, D_t)
        # 4. MSE on masked patches only
        loss = masked_mse(pred, target, mask)
        if return_outputs:
            return MaskFeatOutput(loss, pred, target, mask)
        return MaskFeatOutput(loss)
