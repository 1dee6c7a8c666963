"""ViT encoder with a learned mask token, on timm's VisionTransformer."""
from __future__ import annotations

import torch
from timm.layers import trunc_normal_
from timm.models import checkpoint_seq
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .token_mask import token_mask

# Encoder shapes; all use qkv bias, MLP ratio 4 and LayerNorm eps 1e-6 (timm's default).
ARCHS: dict[str, dict] = {
    "vit-pico": dict(embed_dim=96, depth=2, num_heads=3),      # tests
    "vit-mini": dict(embed_dim=192, depth=4, num_heads=3),     # embedded-data default
    "vit-tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "vit-small": dict(embed_dim=384, depth=12, num_heads=6),
    "vit-base": dict(embed_dim=768, depth=12, num_heads=12),
    "vit-large": dict(embed_dim=1024, depth=24, num_heads=16),
    "vit-huge": dict(embed_dim=1280, depth=32, num_heads=16),
}


class MaskFeatViT(VisionTransformer):
    """timm ViT whose ``forward_features`` replaces masked patch embeddings by ``mask_token``.

    ``forward_features`` / ``forward_tokens``: all tokens (cls + every patch) go through the
    blocks (MaskFeat).
    ``forward_visible``: only the cls token and the visible patches do (MAE-style encoder).
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("num_classes", 0)
        kwargs.setdefault("global_pool", "token")
        super().__init__(**kwargs)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        self.init_maskfeat_weights()

    def init_maskfeat_weights(self) -> None:
        """SPEC init: trunc-normal .02 for Linear/Conv weights and the tokens, zero biases, LN 1/0."""
        spec_init(self, (self.pos_embed, self.cls_token, self.mask_token))

    @property
    def grid_size(self) -> tuple[int, ...]:
        return tuple(self.patch_embed.grid_size)

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 3, H, W), mask (B, Hp, Wp) or (B, Hp*Wp) bool -> tokens (B, prefix + Hp*Wp, D)."""
        x = self.patch_embed(x)                                   # (B, N, D)
        if mask is not None:
            w = mask.flatten(1).unsqueeze(-1).to(x.dtype)         # (B, N, 1)
            x = x * (1.0 - w) + self.mask_token.to(x.dtype) * w
        x = self._pos_embed(x)                                    # (B, 1 + N, D)
        return self._encode(x)

    def forward_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, tuple[int, ...]]:
        """(B, 3, [T,] H, W), mask (B, *grid dividing the token grid) or (B, N) bool
        -> (B, prefix + N, D), token grid; the interface of every pre-training encoder."""
        grid = self.grid_size
        if mask is not None:
            mask = token_mask(mask, grid)                         # (B, N)
        return self.forward_features(x, mask), grid

    def forward_visible(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W), keep (B, N_vis) indices of the visible patches -> (B, prefix + N_vis, D).

        Only the kept patches (and the cls token) go through the blocks; each patch gets its
        position embedding before the others are dropped, so positions stay right.
        """
        x = self._pos_embed(self.patch_embed(x))                  # (B, 1 + N, D)
        p = self.num_prefix_tokens
        index = keep.unsqueeze(-1).expand(-1, -1, x.shape[-1])    # (B, N_vis, D)
        x = torch.cat([x[:, :p], x[:, p:].gather(1, index)], dim=1)   # (B, 1 + N_vis, D)
        return self._encode(x)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Embedded tokens (B, T, D) -> blocks -> final norm (B, T, D)."""
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)                                    # (B, T, D)
        return self.norm(x)


def spec_init(module: nn.Module, tokens=()) -> None:
    """SPEC init of ``module``: trunc-normal .02 for ``tokens`` (in order), then for every
    Linear/Conv weight; zero biases; LayerNorm weight 1, bias 0."""
    for t in tokens:
        if t is not None:
            trunc_normal_(t, std=0.02)
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def drop_mask_token(encoder: MaskFeatViT) -> MaskFeatViT:
    """The encoder of a visible-patch model never sees a mask token: remove it (an unused
    parameter would stall DDP and sit in the checkpoint)."""
    if getattr(encoder, "mask_token", None) is not None:
        del encoder.mask_token
        encoder.mask_token = None
    return encoder


def build_encoder(arch: str = "vit-base", img_size: int = 224, patch_size: int = 16,
                  drop_path_rate: float = 0.0, **overrides) -> MaskFeatViT:
    if arch not in ARCHS:
        raise ValueError(f"model.arch: unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    kwargs = dict(ARCHS[arch], img_size=img_size, patch_size=patch_size,
                  drop_path_rate=drop_path_rate, mlp_ratio=4.0, qkv_bias=True)
    kwargs.update(overrides)
    return MaskFeatViT(**kwargs)
