"""MAE's light decoder for the visible-patch encoder: the encoded visible tokens plus a
learned mask token at every masked position, fixed sin-cos positions, a few timm blocks."""
from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ..config import ConfigError
from .vit import spec_init


def sincos_pos_embed(dim: int, grid: tuple[int, ...], num_prefix_tokens: int = 1) -> torch.Tensor:
    """Fixed sin-cos position embedding of a token grid of any rank (2-D images, 3-D clips).

    Each grid axis gets an equal even share of ``dim`` (sin and cos of its coordinate at
    geometric frequencies 1 / 10000^(i/k), as MAE); leftover channels and the prefix (cls)
    rows are zero. Returns (1, prefix + prod(grid), dim), tokens in raster order.
    """
    per_axis = 2 * (dim // (2 * len(grid)))
    coords = torch.meshgrid(*[torch.arange(g, dtype=torch.float64) for g in grid], indexing="ij")
    freqs = 1.0 / 10000 ** (torch.arange(per_axis // 2, dtype=torch.float64) / max(per_axis // 2, 1))
    parts = []
    for c in coords:
        angle = c.reshape(-1, 1) * freqs                          # (N, per_axis / 2)
        parts += [angle.sin(), angle.cos()]
    emb = torch.cat(parts, dim=1)                                 # (N, len(grid) * per_axis)
    emb = torch.nn.functional.pad(emb, (0, dim - emb.shape[1], num_prefix_tokens, 0))
    return emb.float().unsqueeze(0)                               # (1, prefix + N, dim)


def default_heads(dim: int) -> int:
    """About one head per 64 channels, a divisor of ``dim``, at least one."""
    heads = max(1, dim // 64)
    while dim % heads:
        heads -= 1
    return heads


class MaskedDecoder(nn.Module):
    """(B, prefix + N_vis, D_enc) encoded tokens, keep (B, N_vis) -> (B, N, dim) decoded patches.

    Linear(D_enc -> dim); the visible tokens go back to their grid positions, every other
    position gets ``mask_token``; + fixed sin-cos positions (no parameters, any grid rank;
    MAE's choice for its decoder) -> ``depth`` pre-norm timm blocks -> LayerNorm. The cls
    token passes through and is dropped at the end. The prediction head sits outside.
    """

    def __init__(self, embed_dim: int, grid: tuple[int, ...], dim: int = 256, depth: int = 2,
                 num_heads: int = 4, num_prefix_tokens: int = 1, mlp_ratio: float = 4.0):
        super().__init__()
        self.dim, self.num_prefix_tokens = dim, num_prefix_tokens
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos_embed = sincos_pos_embed(dim, tuple(grid), num_prefix_tokens)
        self.register_buffer("pos_embed", pos_embed, persistent=False)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                      for _ in range(depth)])
        self.norm = norm(dim)
        spec_init(self, (self.mask_token,))

    @property
    def num_patches(self) -> int:
        return self.pos_embed.shape[1] - self.num_prefix_tokens

    def forward(self, latent: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        p = self.num_prefix_tokens
        x = self.embed(latent)                                        # (B, p + N_vis, dim)
        b, _, d = x.shape
        index = keep.unsqueeze(-1).expand(-1, -1, d)                  # (B, N_vis, dim)
        patches = self.mask_token.to(x.dtype).expand(b, self.num_patches, d)
        patches = patches.scatter(1, index, x[:, p:])                 # (B, N, dim): visible back in place
        x = torch.cat([x[:, :p], patches], dim=1) + self.pos_embed   # (B, p + N, dim)
        x = self.norm(self.blocks(x))                                 # (B, p + N, dim)
        return x[:, p:]                                               # (B, N, dim)


def build_decoder(model_cfg: dict, encoder: nn.Module) -> MaskedDecoder:
    """From ``model.decoder_dim`` / ``decoder_depth`` / ``decoder_heads`` (0 = the defaults
    relative to the encoder: half its width, ~64 channels per head)."""
    dim = model_cfg.get("decoder_dim", 0) or encoder.embed_dim // 2
    depth = model_cfg.get("decoder_depth", 2)
    heads = model_cfg.get("decoder_heads", 0) or default_heads(dim)
    if dim < 1 or depth < 1 or heads < 1:
        raise ConfigError(f"model.decoder_dim / decoder_depth / decoder_heads must be positive "
                          f"(got {dim}, {depth}, {heads})")
    if dim % heads:
        raise ConfigError(f"model.decoder_heads {heads} does not divide model.decoder_dim {dim}")
    return MaskedDecoder(encoder.embed_dim, tuple(encoder.patch_embed.grid_size), dim, depth, heads,
                         encoder.num_prefix_tokens)
