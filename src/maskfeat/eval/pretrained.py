"""Pre-trained encoder weights -> timm models, with a report of what was (not) loaded.

Accepted files (all read with weights_only=True): a ``maskfeat pretrain`` checkpoint
('model' = MaskFeat state_dict, ``encoder.*``), a bare MaskFeat or timm-named encoder
state_dict, or an mmpretrain MaskFeat checkpoint ('state_dict' with ``backbone.*``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from ..namemaps.maskfeat import dropped_note, pretraining_only
from ..namemaps.mmpretrain import mmpretrain_to_maskfeat
from ..engine.checkpoint import load_checkpoint
from ..errors import UserError
from ..models import ARCHS


@dataclass
class PretrainedEncoder:
    path: Path
    state: dict[str, torch.Tensor]          # timm VisionTransformer names (+ mask_token)
    config: dict | None = None              # the pre-training config, when the file has one
    dropped: dict[str, int] = field(default_factory=dict)   # pre-training only: head, decoder (tensor counts)

    @property
    def patch_size(self) -> int:
        return int(self.state["patch_embed.proj.weight"].shape[-1])

    @property
    def grid(self) -> int:
        n = self.state["pos_embed"].shape[1] - (1 if "cls_token" in self.state else 0)
        return int(round(n ** 0.5))

    def arch(self) -> str:
        """Our ARCHS name: the pre-training config's, else the one of the same width and depth."""
        if self.config and self.config.get("model", {}).get("arch") in ARCHS:
            return self.config["model"]["arch"]
        dim = self.state["patch_embed.proj.weight"].shape[0]
        depth = 1 + max(int(m.group(1)) for k in self.state if (m := re.match(r"blocks\.(\d+)\.", k)))
        for name, a in ARCHS.items():
            if (a["embed_dim"], a["depth"]) == (dim, depth):
                return name
        raise UserError(f"{self.path}: no maskfeat arch has width {dim} and depth {depth}")


def _encoder_state(obj: dict, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """(encoder tensors by timm name, the pre-training-only weights left out: {module: count})."""
    if "state_dict" in obj and isinstance(obj["state_dict"], dict) and \
            any(k.startswith("backbone.") for k in obj["state_dict"]):
        obj = mmpretrain_to_maskfeat(obj["state_dict"])
    elif "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    dropped = {}
    if any(k.startswith("encoder.") for k in tensors):
        dropped = pretraining_only(tensors)
        tensors = {k[len("encoder."):]: v for k, v in tensors.items() if k.startswith("encoder.")}
    if "patch_embed.proj.weight" not in tensors or "pos_embed" not in tensors:
        raise UserError(f"{path}: no ViT encoder weights found (expected 'model' with encoder.* keys, "
                        "or timm names such as patch_embed.proj.weight)")
    return tensors, dropped


def read_pretrained(path: str | Path) -> PretrainedEncoder:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model.pretrained: checkpoint not found: {path} (run `maskfeat pretrain` first, or give "
                        "model.pretrained='' with model.arch, model.img_size and model.patch_size for a random init)")
    ckpt = load_checkpoint(path)
    cfg = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else None
    state, dropped = _encoder_state(ckpt, path)
    return PretrainedEncoder(path, state, cfg, dropped)


@dataclass
class LoadReport:
    loaded: int = 0
    missing: list[str] = field(default_factory=list)       # new in the model (e.g. head, fc_norm)
    unexpected: list[str] = field(default_factory=list)    # in the file, unused (e.g. norm, mask_token)
    resampled: str = ""
    dropped: str = ""                                      # pre-training only (head, decoder), not offered

    def summary(self, path) -> str:
        parts = [f"loaded {self.loaded} tensors from {path}"]
        if self.resampled:
            parts.append(f"pos_embed resampled {self.resampled}")
        if self.dropped:
            parts.append(self.dropped)
        parts.append(f"missing (initialised fresh): {', '.join(self.missing) or 'none'}")
        parts.append(f"unexpected (ignored): {', '.join(self.unexpected) or 'none'}")
        return "; ".join(parts)


def _matches(name: str, patterns) -> bool:
    return any(re.fullmatch(p, name) for p in patterns)


def load_encoder_into(model: nn.Module, pre: PretrainedEncoder, allow_missing=(), allow_unexpected=()) -> LoadReport:
    """Copy encoder weights into a timm ViT; resample pos_embed to the model's grid.

    Missing / unexpected keys matching the ``allow_*`` regexes are accepted and reported;
    any other difference (a missing block, a shape mismatch) is a one-line UserError.
    """
    state = dict(pre.state)
    own = model.state_dict()
    report = LoadReport(dropped=dropped_note(pre.dropped))
    if "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        new_grid = list(model.patch_embed.grid_size)
        old = pre.grid
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_grid, num_prefix_tokens=prefix)
        report.resampled = f"{old}x{old} -> {new_grid[0]}x{new_grid[1]}"
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise UserError(f"{pre.path}: {k} has shape {tuple(v.shape)}, the model needs {tuple(own[k].shape)} "
                            f"(pre-trained as {pre.arch()} patch {pre.patch_size}; check model.arch / model.patch_size)")
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad_missing = [k for k in missing if not _matches(k, allow_missing)]
    bad_unexpected = [k for k in unexpected if not _matches(k, allow_unexpected)]
    if bad_missing or bad_unexpected:
        what = (f"{len(bad_missing)} model weights are not in the file, e.g. {bad_missing[0]}" if bad_missing
                else f"{len(bad_unexpected)} weights in the file fit no model weight, e.g. {bad_unexpected[0]}")
        raise UserError(f"{pre.path}: {what} (pre-trained as {pre.arch()}; check model.arch)")
    report.loaded = len(state) - len(unexpected)
    report.missing, report.unexpected = sorted(missing), sorted(unexpected)
    return report


def resolve_model_shape(model_cfg: dict, pre: PretrainedEncoder | None) -> tuple[str, int, int]:
    """(arch, img_size, patch_size): the config's values, '' / 0 meaning 'as pre-trained'."""
    arch, img, patch = model_cfg["arch"], model_cfg["img_size"], model_cfg["patch_size"]
    if pre is None and (not arch or not img or not patch):
        raise UserError("model.pretrained: no checkpoint given, so model.arch, model.img_size and "
                        "model.patch_size must be set")
    if pre is not None:
        arch = arch or pre.arch()
        patch = patch or pre.patch_size
        img = img or (pre.config or {}).get("model", {}).get("img_size") or pre.grid * pre.patch_size
    if arch not in ARCHS:
        raise UserError(f"model.arch: unknown architecture {arch!r}; choose one of {sorted(ARCHS)}")
    if img % patch:
        raise UserError(f"model.img_size {img} is not divisible by model.patch_size {patch}")
    return arch, int(img), int(patch)
