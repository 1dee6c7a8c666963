"""Pre-training models by ``model.encoder``: a table of builders, one per encoder kind."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..config import ConfigError
from .targets import build_target
from .decoder import build_decoder
from .maskfeat import MaskFeat
from .visible import VisibleMaskFeat
from .vit import build_encoder


def choose(table: dict, model_cfg: dict, key: str = "encoder", default: str = "full"):
    """``table[model_cfg[key]]``; configs written before the key existed mean ``default``."""
    kind = model_cfg.get(key, default)
    if kind not in table:
        raise ConfigError(f"model.{key}: unknown value {kind!r}; choose one of {', '.join(table)}")
    return table[kind]


# model.encoder -> (encoder, target, model config) -> pre-training model
PRETRAIN_MODELS: dict[str, Callable[[nn.Module, nn.Module, dict], nn.Module]] = {
    "full": lambda enc, target, m: MaskFeat(enc, target, decay_pos_embed=m["decay_pos_embed"]),
    "visible": lambda enc, target, m: VisibleMaskFeat(enc, target, build_decoder(m, enc),
                                                      decay_pos_embed=m["decay_pos_embed"]),
}


def build_pretrain_model(cfg: dict, device: torch.device | str = "cpu") -> MaskFeat:
    """From the ``model`` and ``hog`` sections of a config; ``device`` picks the HOG implementation."""
    m, h = cfg["model"], cfg["hog"]
    make = choose(PRETRAIN_MODELS, m)
    encoder = build_encoder(m["arch"], img_size=m["img_size"], patch_size=m["patch_size"],
                            drop_path_rate=m["drop_path_rate"])
    target = build_target(m["target"], m["patch_size"], nbins=h["nbins"], cell_size=h["cell_size"],
                          gaussian_window=h["gaussian_window"])
    if hasattr(target, "set_impl"):
        target.set_impl(h.get("impl", "auto"), device)
    return make(encoder, target, m)
