"""Ours -> a safetensors file that ``timm.create_model(..., pretrained=True)`` loads.

Pre-training checkpoints give the encoder only (timm names, without ``mask_token``, the
HOG head and, of a model.encoder=visible run, the decoder): load with ``num_classes=0``.
Classifier weights keep ``head`` / ``fc_norm``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from .arch import VitShape, timm_recipe


def maskfeat_encoder_to_timm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our MaskFeat state_dict -> timm VisionTransformer encoder weights (no prefix, no mask token)."""
    return {k[len("encoder."):]: v for k, v in state_dict.items()
            if k.startswith("encoder.") and k != "encoder.mask_token"}


def create_model_call(name: str, kwargs: dict, path: str | Path) -> str:
    """The Python line that loads the exported file.

    With a classifier head the overlay also names ``num_classes``: timm drops head weights
    whose class count differs from the pretrained config's (1000 for the names used here).
    """
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    n = kwargs.get("num_classes", 0)
    overlay = f"dict(file={str(path)!r}" + (f", num_classes={n})" if n else ")")
    return f"timm.create_model({name!r}, pretrained=True, pretrained_cfg_overlay={overlay}{args})"


def save_timm(timm_sd: dict[str, torch.Tensor], shape: VitShape, path: str | Path, global_pool: str = "token",
              fc_norm: bool = False, final_norm: bool = True, num_classes: int = 0,
              source: str = "", load_path: str | Path | None = None) -> str:
    """Write the safetensors file (with the create_model recipe in its metadata); returns the call
    that loads it from ``load_path`` (default ``path``; the final name when ``path`` is a temp file)."""
    name, kwargs = timm_recipe(shape, global_pool, fc_norm, num_classes, final_norm)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in timm_sd.items()}
    meta = {"format": "pt", "timm_model": name, "timm_kwargs": json.dumps(kwargs), "source": source}
    save_file(tensors, str(path), metadata=meta)
    return create_model_call(name, kwargs, load_path or path)
