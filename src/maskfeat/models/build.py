"""Pre-training models of both modalities: a table of modalities (how the input becomes tokens,
how targets are made) and a table of encoder kinds (every token, or the visible ones only)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import ConfigError
from .decoder import build_decoder
from .encoders import build_image_encoder, build_video_encoder
from .maskfeat import MaskFeat
from .targets import image_target, video_target
from .visible import VisibleMaskFeat


def choose(table: dict, section: dict, key: str = "encoder", default: str = "full", where: str = "model."):
    """``table[section[key]]``; configs written before the key existed mean ``default``."""
    kind = section.get(key, default)
    if kind not in table:
        raise ConfigError(f"{where}{key}: unknown value {kind!r}; choose one of {', '.join(table)}")
    return table[kind]


@dataclass(frozen=True)
class Modality:
    """The per-modality part of MaskFeat, from a config's ``model`` (and ``hog``) section."""

    encoder: Callable[[dict], nn.Module]          # model -> encoder with forward_tokens(x, mask)
    target: Callable[[dict, dict], nn.Module]     # model, hog -> target(x) (B, N, D_t) and target.grid


# config modality -> its encoder and target
MODALITIES: dict[str, Modality] = {
    "image": Modality(build_image_encoder, image_target),
    "video": Modality(lambda model: build_video_encoder(model, pretrain=True), video_target),
}


def _visible(encoder: nn.Module, target: nn.Module, m: dict) -> VisibleMaskFeat:
    if not hasattr(encoder, "forward_visible"):
        raise ConfigError(f"model.encoder: visible needs a video ViT (model.arch vit3d-*); {m['arch']} "
                          "runs every token (MViT pools over the full token grid): use model.encoder=full")
    return VisibleMaskFeat(encoder, target, build_decoder(m, encoder),
                           decay_pos_embed=m.get("decay_pos_embed", True))


# model.encoder -> (encoder, target, model config) -> pre-training model
PRETRAIN_MODELS: dict[str, Callable[[nn.Module, nn.Module, dict], MaskFeat]] = {
    "full": lambda enc, target, m: MaskFeat(enc, target, decay_pos_embed=m.get("decay_pos_embed", True)),
    "visible": _visible,
}


def build_pretrain_model(cfg: dict, device: torch.device | str = "cpu") -> MaskFeat:
    """From a config's ``modality``, ``model`` and ``hog`` sections; ``device`` picks the HOG
    implementation (hog.impl)."""
    m, h = cfg["model"], cfg["hog"]
    modality = choose(MODALITIES, cfg, "modality", "image", where="")
    make = choose(PRETRAIN_MODELS, m)
    encoder, target = modality.encoder(m), modality.target(m, h)
    encoder.set_grad_checkpointing(bool(m.get("grad_checkpointing", False)))   # ViT, video ViT, MViT
    if hasattr(target, "set_impl"):
        target.set_impl(h.get("impl", "auto"), device)
    return make(encoder, target, m)
