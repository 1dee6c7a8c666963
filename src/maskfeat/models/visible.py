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
from .maskfeat import MaskFeat
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
                        f"sample, this batch has {lo} to {hi} "
                        "(use the block / cube mask, or model.encoder=full)")
    order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)  # visible first, each in raster order
    return order[:, : mask.shape[1] - lo]


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

    def forward_encoder(self, x: torch.Tensor, mask: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The cls token and the visible patches only: (B, prefix + N_vis, D), mask (B, N),
        keep (B, N_vis)."""
        mask = self.token_mask(mask, self.encoder.grid_size, x)          # (B, N)
        keep = visible_index(mask)                                       # (B, N_vis), visible patches
        return self.encoder.forward_visible(x, keep), mask, keep

    def forward_head(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Decoder (visible tokens back in place, mask tokens elsewhere), then the linear head."""
        decoded = self.decoder(latent, keep)                             # (B, N, D_dec)
        return self.head(decoded)                                        # (B, N, D_t)
