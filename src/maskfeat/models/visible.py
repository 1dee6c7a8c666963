"""MaskFeat with MAE's encoder/decoder split (``model.encoder: visible``).

The encoder (the same timm ViT, so its weights evaluate and convert like a full one's) sees
only the cls token and the visible patches; a light decoder (``decoder.MaskedDecoder``) gets
them back in place with a mask token at every masked position, and the head predicts the
HOG (or pixel) target; the loss is MaskFeat's masked MSE. The encoder's cost falls with the
mask ratio. Needs the same masked count in every sample (the block mask guarantees it), so
a batch of visible tokens stays rectangular.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .decoder import MaskedDecoder
from .maskfeat import MaskFeat, MaskFeatOutput, masked_mse
from .vit import drop_mask_token


@torch.compiler.disable
def visible_index(mask: torch.Tensor) -> torch.Tensor:
    """(B, N) bool, True = masked -> (B, N_vis) indices of the visible patches, ascending.

    One small read-back of the per-sample counts (a host sync on an accelerator), outside
    any compiled graph; a count that varies within the batch is a one-line error.
    """
    counts = mask.sum(dim=1)                                        # (B,)
    lo, hi = (int(c) for c in counts.aminmax())
    if lo != hi:
        raise UserError(f"mask: model.encoder=visible needs the same number of masked patches in every "
                        f"sample, this batch has {lo} to {hi} (use the block / cube mask, or model.encoder=full)")
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # visible first, each in raster order
    return order[:, : mask.shape[1] - lo]


def predict_masked(model: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The visible-patch path shared by images and clips: (B, 3, [T,] H, W), mask (B, N) -> (B, N, D_t)."""
    # a. which patches the encoder sees
    keep = visible_index(mask)                                      # (B, N_vis)
    # b. encoder on the cls token and the visible patches only
    latent = model.encoder.forward_visible(x, keep)                 # (B, 1 + N_vis, D)
    # c. decoder: visible tokens back in place, mask tokens elsewhere
    decoded = model.decoder(latent, keep)                           # (B, N, D_dec)
    # d. linear head to the target dim
    return model.head(decoded)                                      # (B, N, D_t)


class VisibleMaskFeat(MaskFeat):
    """``MaskFeat`` whose encoder sees the visible patches only; ``decoder`` predicts the rest.

    Weights: ``encoder.*`` (a timm ViT without the mask token), ``decoder.*`` and ``head.*``
    (pre-training only, dropped by finetune / linprobe / knn / convert).
    """

    def __init__(self, encoder: nn.Module, target: nn.Module, decoder: MaskedDecoder,
                 decay_pos_embed: bool = True):
        super().__init__(drop_mask_token(encoder), target, decay_pos_embed, head_in=decoder.dim)
        self.decoder = decoder

    def no_weight_decay(self) -> set[str]:
        """The decoder's mask token never decays (its positions are a fixed buffer)."""
        return (super().no_weight_decay() - {"encoder.mask_token"}) | {"decoder.mask_token"}

    def encode(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder's output tokens for this mask: (B, 1 + N_vis, D), visible patches only."""
        return self.encoder.forward_visible(images, visible_index(mask.flatten(1).bool()))

    def forward(self, images: torch.Tensor, mask: torch.Tensor,
                return_outputs: bool = False) -> MaskFeatOutput:
        """images (B, 3, H, W) normalised, mask (B, Hp, Wp) bool (True = masked), same count per image."""
        mask = mask.flatten(1).bool()                                    # (B, N)
        # 1. targets from the full, un-masked image, fp32, no grad
        target = self.targets(images)                                    # (B, N, D_t)
        # 2. visible patches -> encoder -> decoder with mask tokens -> head
        pred = predict_masked(self, images, mask)                        # (B, N, D_t)
        # 3. MSE on masked patches only
        loss = masked_mse(pred, target, mask)
        if return_outputs:
            return MaskFeatOutput(loss, pred, target, mask)
        return MaskFeatOutput(loss)
