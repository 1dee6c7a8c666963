"""MViTv2 encoder for video MaskFeat, on torchvision's ``MViT`` (SPEC section 5).

Shapes follow MViTv2 / SlowFast: the channel width and head count double, and the query
is pooled 2x spatially, at the first block of stages 2, 3 and 4; the key/value stride starts
at (1, 8, 8) and is divided by every query pooling (adaptive kv stride). For pre-training
the last stage keeps its resolution (no query pooling there, so the key/value stride stays
(1, 2, 2)): a 16x224x224 clip ends at an 8x14x14 grid (stride 16). Fine-tuning builds the
same network with the pooling restored (8x7x7); the parameter names and shapes are the same
except the relative-position tables of the last stage, which ``interpolate_rel_pos``
resamples on load. With ``pool_last_stage=True`` the blocks equal torchvision's ``mvit_v2_s``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.video.mvit import MSBlockConfig, MViT

from .token_mask import upsample_mask

# embed_dim, depth and heads of the first stage; `stages` = first block of stages 2, 3, 4.
MVIT_ARCHS: dict[str, dict] = {
    "mvitv2-pico": dict(embed_dim=16, depth=5, num_heads=1, stages=(1, 2, 3)),   # tests
    "mvitv2-mini": dict(embed_dim=32, depth=6, num_heads=1, stages=(1, 3, 5)),   # embedded-clip default
    "mvitv2-s": dict(embed_dim=96, depth=16, num_heads=1, stages=(1, 3, 14)),
    "mvitv2-b": dict(embed_dim=96, depth=24, num_heads=1, stages=(2, 5, 21)),
    "mvitv2-l": dict(embed_dim=144, depth=48, num_heads=2, stages=(2, 8, 44)),
}


def block_settings(arch: str, pool_last_stage: bool, kernel: tuple[int, int, int] = (3, 3, 3),
                   kv_stride: tuple[int, int, int] = (1, 8, 8)) -> list[MSBlockConfig]:
    """torchvision block configs of an MViTv2 shape; ``pool_last_stage=False`` for pre-training."""
    if arch not in MVIT_ARCHS:
        raise ValueError(f"model.arch: unknown MViT architecture {arch!r}; "
                         f"choose one of {sorted(MVIT_ARCHS)}")
    a = MVIT_ARCHS[arch]
    dim, heads, kv = a["embed_dim"], a["num_heads"], list(kv_stride)
    out = []
    for i in range(a["depth"]):
        in_dim = dim
        if i in a["stages"]:
            dim, heads = dim * 2, heads * 2
        pool = i in a["stages"] and (pool_last_stage or i != a["stages"][-1])
        stride_q = [1, 2, 2] if pool else [1, 1, 1]
        kv = [max(k // s, 1) for k, s in zip(kv, stride_q)]
        out.append(MSBlockConfig(num_heads=heads, input_channels=in_dim, output_channels=dim,
                                 kernel_q=list(kernel), kernel_kv=list(kernel),
                                 stride_q=stride_q, stride_kv=list(kv)))
    return out


class MViTEncoder(MViT):
    """torchvision MViTv2 with an optional mask token and a token-level ``forward_tokens``.

    ``pretrain=True``: last-stage pooling removed, a ``mask_token`` (trunc-normal .02) replaces
    masked patch embeddings before the blocks, and the classifier head is dropped.
    ``pretrain=False``: the classification network (``forward(clips) -> logits``), pooling the
    class token (``head_pool='cls'``, torchvision) or the mean of the patch tokens ('mean').
    """

    def __init__(self, arch: str = "mvitv2-s", spatial_size: int = 224, temporal_size: int = 16,
                 pretrain: bool = True, num_classes: int = 400, dropout: float = 0.5,
                 drop_path_rate: float = 0.0, head_pool: str = "cls"):
        settings = block_settings(arch, pool_last_stage=not pretrain)
        super().__init__(spatial_size=(spatial_size, spatial_size), temporal_size=temporal_size,
                         block_setting=settings, residual_pool=True, residual_with_cls_embed=False,
                         rel_pos_embed=True, proj_after_attn=True, dropout=dropout,
                         stochastic_depth_prob=drop_path_rate, num_classes=max(num_classes, 1))
        if head_pool not in ("cls", "mean"):
            raise ValueError(f"model.head_pool: choose 'cls' or 'mean', got {head_pool!r}")
        self.arch, self.pretrain, self.head_pool = arch, pretrain, head_pool
        self.embed_dim = settings[-1].output_channels
        self.num_prefix_tokens = 1
        self.mask_token = None
        self.grad_checkpointing = False
        if pretrain:
            self.head = nn.Identity()
            self.mask_token = nn.Parameter(torch.zeros(1, 1, settings[0].input_channels))
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward_tokens(self, clips: torch.Tensor, mask: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """(B, 3, T, H, W), mask (B, t, h, w) dividing the patch grid -> (B, 1 + N, C), out (T', H', W')."""
        x = self.conv_proj(clips)                                    # (B, C0, T0, H0, W0)
        thw = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)                             # (B, N0, C0)
        if mask is not None:
            if self.mask_token is None:
                raise ValueError("this MViT was built without a mask token (pretrain=False)")
            w = upsample_mask(mask, thw).flatten(1).unsqueeze(-1).to(x.dtype)   # (B, N0, 1)
            x = x * (1.0 - w) + self.mask_token.to(x.dtype) * w
        x = self.pos_encoding(x)                                     # (B, 1 + N0, C0)
        for block in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x, thw = checkpoint(block, x, thw, use_reentrant=False)
            else:
                x, thw = block(x, thw)
        return self.norm(x), thw                                     # (B, 1 + N, C)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x, _ = self.forward_tokens(clips)
        x = x[:, 0] if self.head_pool == "cls" else x[:, 1:].mean(1)   # (B, C)
        return self.head(x)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass (as timm's ViTs do)."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {"mask_token"} if self.mask_token is not None else set()

    def group_matcher(self, coarse: bool = False) -> dict:
        """Layer groups for timm's layer-wise lr decay: stem, one group per block, then norm/head."""
        return dict(stem=r"^conv_proj|^pos_encoding|^mask_token",
                    blocks=[(r"^blocks\.(\d+)", None), (r"^norm", (99999,))])


def interpolate_rel_pos(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Linearly resample every ``rel_pos_*`` table whose length differs from ``model``'s."""
    target = model.state_dict()
    out = dict(state_dict)
    for k, v in state_dict.items():
        if "rel_pos" in k and k in target and v.shape != target[k].shape:
            n = target[k].shape[0]
            table = F.interpolate(v.float().t().unsqueeze(0), size=n, mode="linear")   # (1, D, n)
            out[k] = table.squeeze(0).t().to(v.dtype)
    return out
