"""``--to timm-dir``: a folder ``timm.create_model("local-dir:DIR", pretrained=True)`` loads and a
model hub takes as is: timm's ``config.json`` (architecture, model_args, pretrained_cfg),
``model.safetensors`` and a ``README.md`` model card.

Written into a hidden temp folder beside DIR, loaded back through timm's local-dir path (and
compared with our model when there is one), then renamed to DIR; an existing non-empty DIR is
replaced only with ``overwrite``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..errors import UserError
from .arch import VitShape
from .timm_export import save_timm

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def timm_config(architecture: str, model_args: dict, shape: VitShape, num_classes: int,
                mean_std: tuple[list, list], license_name: str) -> dict:
    """timm's ``config.json`` (the layout ``timm.models.push_to_hf_hub`` writes)."""
    args = {k: v for k, v in model_args.items() if k != "num_classes"}
    return {
        "architecture": architecture,
        "num_classes": num_classes,
        "num_features": shape.embed_dim,
        "global_pool": model_args.get("global_pool", "token"),
        "model_args": args,
        "pretrained_cfg": {
            "tag": "maskfeat", "custom_load": False,
            "input_size": [shape.in_chans, shape.img_size, shape.img_size], "fixed_input_size": True,
            "interpolation": "bicubic", "crop_pct": 1.0, "crop_mode": "center",
            "mean": list(mean_std[0]), "std": list(mean_std[1]), "num_classes": num_classes,
            "pool_size": None, "first_conv": "patch_embed.proj", "classifier": "head",
            "license": license_name,
        },
    }


def check_out_dir(dst: Path, overwrite: bool) -> None:
    if dst.exists() and not dst.is_dir():
        raise UserError(f"{dst}: exists and is not a folder; --to timm-dir writes a folder")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise UserError(f"{dst}: folder exists and is not empty; give --overwrite to replace it")
    if not dst.parent.is_dir():
        raise UserError(f"{dst}: parent folder {dst.parent} does not exist")


def verify_local_dir(folder: Path, reference: torch.nn.Module | None, shape: VitShape,
                     classifier: bool) -> float | None:
    """Load ``folder`` with ``timm.create_model("local-dir:...", pretrained=True)``; with ``reference``
    compare features (encoder) or logits (classifier); returns the max abs difference."""
    import timm

    try:
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    except (RuntimeError, ValueError, KeyError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise UserError(f"{folder}: timm cannot load the exported folder ({first})") from None
    if reference is None:
        return None
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, shape.in_chans, shape.img_size, shape.img_size, generator=g)
    with torch.no_grad():
        ours, theirs = (reference.eval()(x), model(x)) if classifier else \
            (reference.eval().forward_features(x), model.forward_features(x))
    diff = (ours - theirs).abs().max().item()
    if diff > 1e-4:
        what = "logits" if classifier else "features"
        raise UserError(f"{folder}: timm's {what} differ from ours by {diff:.3g}")
    return diff


def write_timm_dir(dst: Path, tensors: dict, shape: VitShape, recipe: tuple[str, dict], config: dict,
                   card: str, check) -> float | None:
    """Write the folder atomically; ``check(tmp_folder)`` runs before the rename (returns a difference)."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    old = dst.with_name(f".{dst.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        n = recipe[1].get("num_classes", 0)
        save_timm(tensors, shape, tmp / "model.safetensors", recipe[1].get("global_pool", "token"),
                  recipe[1].get("fc_norm", False), recipe[1].get("final_norm", True), n)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "README.md").write_text(card)
        diff = check(tmp)
        if dst.exists():
            os.replace(dst, old)
        os.replace(tmp, dst)
        shutil.rmtree(old, ignore_errors=True)
        return diff
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
