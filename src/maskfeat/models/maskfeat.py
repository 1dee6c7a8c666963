"""MaskFeat pre-training model, images and clips alike: encoder + linear head + masked MSE on
HOG (or pixel) targets of every token."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .token_mask import token_mask


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
    """Every token through the encoder, masked ones as ``encoder.mask_token``; a linear head.

    One forward for both modalities; what differs is the (encoder, target) pair, a row of
    ``build.MODALITIES``:
    - how the input becomes tokens: ``encoder.forward_tokens(x, mask) -> (tokens, grid)``
      (Conv2d patches, Conv3d tubelets, or MViT's pooled stages), the mask token in place;
    - how the mask maps onto the token grid: nearest upsampling of the mask to that grid
      (``token_mask``; the image block mask is already on it, the cube mask is coarser);
    - how targets are made: ``target(x) -> (B, N, D_t)`` on ``target.grid(*x.shape[2:])``.
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

    def forward(self, x: torch.Tensor, mask: torch.Tensor, return_outputs: bool = False) -> MaskFeatOutput:
        """x (B, 3, H, W) images or (B, 3, T, H, W) clips, normalised; mask (B, *mask grid) or
        (B, N) bool, True = masked, on a grid that divides the token grid."""
        # 1. targets from the full, un-masked input, fp32, no grad
        target = self.targets(x)                                         # (B, N, D_t)
        # 2. encoder, and the mask on its token grid
        latent, mask, keep = self.forward_encoder(x, mask)               # (B, prefix + N_enc, D), (B, N)
        # 3. linear head (after the decoder, if any) to the target dim
        pred = self.forward_head(latent, keep)                           # (B, N, D_t)
        # 4. MSE on masked tokens only
        loss = masked_mse(pred, target, mask)
        if return_outputs:
            return MaskFeatOutput(loss, pred, target, mask)
        return MaskFeatOutput(loss)

    @torch.compiler.disable
    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """fp32 targets, outside any compiled graph of the model (train.compile): the HOG brings
        its own compiled kernel (hog.impl); traced whole with the model, inductor also fuses the
        reflect pad into the Sobel conv and the HOG gets 2x slower on CPU."""
        with torch.autocast(x.device.type, enabled=False):
            return self.target(x)

    def forward_encoder(self, x: torch.Tensor, mask: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Every token, masked ones as the mask token: (B, prefix + N, D), mask (B, N), no index."""
        tokens, grid = self.encoder.forward_tokens(x, mask)              # (B, prefix + N, D)
        return tokens, self.token_mask(mask, grid, x), None

    def forward_head(self, latent: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        """(B, prefix + N, D) encoder tokens -> (B, N, D_t) predictions."""
        return self.head(latent[:, self.encoder.num_prefix_tokens:])

    def token_mask(self, mask: torch.Tensor, grid: tuple[int, ...], x: torch.Tensor) -> torch.Tensor:
        """The mask on the encoder's token grid, (B, N) bool; that grid must be the target's."""
        expected = tuple(self.target.grid(*x.shape[2:]))
        if tuple(grid) != expected:
            raise ValueError(f"encoder output grid {tuple(grid)} != {self.target.name} target grid "
                             f"{expected}; check the patch sizes, hog.temporal_stride and the encoder's "
                             "strides")
        return token_mask(mask, grid)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder's output tokens for this mask (what bench/throughput.py times)."""
        return self.forward_encoder(x, mask)[0]
