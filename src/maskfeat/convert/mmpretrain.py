"""mmpretrain MaskFeat names (``backbone.*``, ``neck.fc.*``) -> ours (``encoder.*``, ``head.*``)."""
from __future__ import annotations

import re

import torch

# (pattern, replacement), applied in order to each key after the prefix is mapped.
_RULES = [
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^layers\.(\d+)\.ln1\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.ln2\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.attn\.", r"blocks.\1.attn."),
    (r"^layers\.(\d+)\.ffn\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^layers\.(\d+)\.ffn\.layers\.1\.", r"blocks.\1.mlp.fc2."),
    (r"^ln1\.", "norm."),
]


def _map_backbone_key(key: str) -> str:
    for pattern, repl in _RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def mmpretrain_to_maskfeat(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an mmpretrain MaskFeat state_dict to our ``MaskFeat`` names.

    ``target_generator.*`` buffers (HOG kernels) and the stray ``neck`` BatchNorm are dropped:
    ours rebuilds them from the config.
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            out["encoder." + _map_backbone_key(key[len("backbone."):])] = value
        elif key.startswith("neck.fc."):
            out["head." + key[len("neck.fc."):]] = value
    return out
