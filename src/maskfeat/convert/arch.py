"""The shape of a ViT read from its timm-named weights, and the names that build it again.

Weights do not record the number of attention heads; it is taken from an explicit value,
else from the ``maskfeat.models.ARCHS`` entry of the same width.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

import torch

from ..defaults import FINETUNE, PRETRAIN
from ..errors import UserError
from ..models import ARCHS

# our arch -> the timm model name registered for that shape (patch 16 unless noted by timm's name)
TIMM_NAMES = {
    "vit-tiny": "vit_tiny_patch16_224",
    "vit-small": "vit_small_patch16_224",
    "vit-base": "vit_base_patch16_224",
    "vit-large": "vit_large_patch16_224",
    "vit-huge": "vit_huge_patch14_224",
}


@dataclass
class VitShape:
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    img_size: int
    mlp_ratio: float
    in_chans: int = 3

    def arch(self) -> str | None:
        """Our ARCHS name of this shape (MLP ratio 4), or None."""
        for name, a in ARCHS.items():
            if (a["embed_dim"], a["depth"], a["num_heads"]) == (self.embed_dim, self.depth, self.num_heads) \
                    and self.mlp_ratio == 4.0:
                return name
        return None


def read_shape(sd: dict[str, torch.Tensor], num_heads: int | None = None,
               where: str = "checkpoint") -> VitShape:
    """Shape of a ViT from timm-named encoder weights (no prefix)."""
    try:
        proj = sd["patch_embed.proj.weight"]                                  # (D, C, p, p)
        pos = sd["pos_embed"]                                                 # (1, prefix + N, D)
        hidden = sd["blocks.0.mlp.fc1.weight"].shape[0]
    except KeyError as e:
        raise UserError(f"{where}: no ViT weight {e.args[0]!r}; not a ViT checkpoint") from None
    if proj.dim() != 4:
        raise UserError(f"{where}: patch embedding has {proj.dim()} dims, expected a 2-D ViT (Conv2d)")
    embed_dim, in_chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    prefix = 1 if "cls_token" in sd else 0
    grid = math.isqrt(pos.shape[1] - prefix)
    if grid * grid != pos.shape[1] - prefix:
        raise UserError(f"{where}: pos_embed of {pos.shape[1]} tokens is not a square grid")
    if num_heads is None:
        same_width = [a for a in ARCHS.values() if a["embed_dim"] == embed_dim]
        exact = [a for a in same_width if a["depth"] == depth]
        pick = exact or same_width
        if not pick:
            raise UserError(f"{where}: cannot tell the number of heads of width {embed_dim}; "
                            "give --num-heads")
        num_heads = pick[0]["num_heads"]
    if embed_dim % num_heads:
        raise UserError(f"{where}: width {embed_dim} is not divisible by {num_heads} heads")
    return VitShape(embed_dim, depth, num_heads, patch, grid * patch, hidden / embed_dim, in_chans)


def pretrain_config(shape: VitShape, gaussian_window: int, where: str = "checkpoint") -> dict:
    """A full pre-training config (defaults.PRETRAIN) whose model section builds ``shape``."""
    arch = shape.arch()
    if arch is None:
        known = ", ".join(f"{n} ({a['embed_dim']}x{a['depth']}, {a['num_heads']} heads)"
                          for n, a in ARCHS.items())
        raise UserError(f"{where}: no maskfeat arch has width {shape.embed_dim}, depth {shape.depth}, "
                        f"{shape.num_heads} heads, MLP ratio {shape.mlp_ratio:g} (known: {known}); "
                        f"'--to timm' converts any shape")
    cfg = copy.deepcopy(PRETRAIN)
    cfg["model"].update(arch=arch, img_size=shape.img_size, patch_size=shape.patch_size)
    cfg["hog"]["gaussian_window"] = gaussian_window
    grid = shape.img_size // shape.patch_size
    cfg["mask"]["min_num_patches"] = max(1, round(15 * grid * grid / 196))   # 15 on the 14x14 grid
    return cfg


def classifier_config(shape: VitShape, global_pool: str, num_classes: int, where: str = "checkpoint") -> dict:
    """A full fine-tuning config (defaults.FINETUNE) whose model section builds this classifier."""
    arch = shape.arch()
    if arch is None:
        raise UserError(f"{where}: no maskfeat arch has width {shape.embed_dim}, depth {shape.depth}, "
                        f"{shape.num_heads} heads; '--to timm' converts any shape")
    cfg = copy.deepcopy(FINETUNE)
    cfg["model"].update(arch=arch, img_size=shape.img_size, patch_size=shape.patch_size,
                        num_classes=num_classes, global_pool=global_pool)
    return cfg


def timm_recipe(shape: VitShape, global_pool: str = "token", fc_norm: bool = False,
                num_classes: int = 0, final_norm: bool = True) -> tuple[str, dict]:
    """(timm model name, create_model kwargs) that build this shape; kwargs override the name's defaults."""
    arch = shape.arch()
    name = TIMM_NAMES.get(arch or "", "vit_tiny_patch16_224")
    base = {"vit_tiny_patch16_224": (192, 12, 3, 16), "vit_small_patch16_224": (384, 12, 6, 16),
            "vit_base_patch16_224": (768, 12, 12, 16), "vit_large_patch16_224": (1024, 24, 16, 16),
            "vit_huge_patch14_224": (1280, 32, 16, 14)}[name]
    kwargs: dict = {"num_classes": num_classes}
    for key, have, default in zip(("embed_dim", "depth", "num_heads", "patch_size"),
                                  (shape.embed_dim, shape.depth, shape.num_heads, shape.patch_size), base):
        if have != default:
            kwargs[key] = have
    if shape.img_size != 224:
        kwargs["img_size"] = shape.img_size
    if shape.mlp_ratio != 4.0:
        kwargs["mlp_ratio"] = shape.mlp_ratio
    if shape.in_chans != 3:
        kwargs["in_chans"] = shape.in_chans
    if global_pool != "token":
        kwargs["global_pool"] = global_pool
        kwargs["fc_norm"] = fc_norm
    if not final_norm:
        kwargs["final_norm"] = False
    return name, kwargs
