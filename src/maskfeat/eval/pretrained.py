"""Pre-trained encoder weights -> classifiers, with a report of what was (not) loaded: one loader,
one row per modality (``LOADERS``: how the file is read, how the weights are resized, what may differ).

Image files (all read with weights_only=True): a ``maskfeat pretrain`` checkpoint ('model' = MaskFeat
state_dict, ``encoder.*``), a bare MaskFeat or timm-named encoder state_dict, or an mmpretrain MaskFeat
checkpoint ('state_dict' with ``backbone.*``). Video files: a ``maskfeat pretrain modality=video``
checkpoint (``encoder.*``); MViT relative-position tables are resampled to the classifier's lengths.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from ..engine.checkpoint import load_checkpoint
from ..errors import UserError
from ..models import ARCHS
from ..models.mvit import interpolate_rel_pos
from ..namemaps.maskfeat import dropped_note, pretraining_only
from ..namemaps.mmpretrain import mmpretrain_to_maskfeat
from .classifier import CLASSIFIER_DROPPED, CLASSIFIER_NEW

VIDEO_PRETRAIN_ONLY = ("mask_token",)   # encoder keys with no place in a video classifier


@dataclass
class PretrainedEncoder:
    path: Path
    state: dict[str, torch.Tensor]          # timm VisionTransformer names (+ mask_token)
    config: dict | None = None              # the pre-training config, when the file has one
    dropped: dict[str, int] = field(default_factory=dict)   # pre-training only: head, decoder (tensor counts)
    modality: str = "image"                 # the LOADERS row that loads it
    ignored: list[str] = field(default_factory=list)       # file keys left out before loading (video)

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


def _read_image(path: Path) -> PretrainedEncoder:
    if not path.is_file():
        raise UserError(f"model.pretrained: checkpoint not found: {path} (run `maskfeat pretrain` first, "
                        "or give model.pretrained='' with model.arch, model.img_size and model.patch_size "
                        "for a random init)")
    ckpt = load_checkpoint(path)
    cfg = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else None
    state, dropped = _encoder_state(ckpt, path)
    return PretrainedEncoder(path, state, cfg, dropped)


def _read_video(path: Path) -> PretrainedEncoder:
    if not path.is_file():
        raise UserError(f"model.pretrained: checkpoint not found: {path}")
    ckpt = load_checkpoint(path, map_location="cpu")
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"model.pretrained: {path} holds no state dict")
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder:
        raise UserError(f"model.pretrained: {path} has no 'encoder.*' weights "
                        "(is it a MaskFeat pre-training checkpoint?)")
    ignored = sorted(["encoder." + k for k in encoder if k in VIDEO_PRETRAIN_ONLY]
                     + [k for k in state if not k.startswith("encoder.")])
    cfg = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else None
    return PretrainedEncoder(path, {k: v for k, v in encoder.items() if k not in VIDEO_PRETRAIN_ONLY}, cfg,
                             pretraining_only(state), "video", ignored)


def read_pretrained(path: str | Path, modality: str = "image") -> PretrainedEncoder:
    """The encoder weights of a pre-training checkpoint, read as ``modality``'s row says."""
    return LOADERS[modality].read(Path(path))


@dataclass
class LoadReport:
    loaded: int = 0
    missing: list[str] = field(default_factory=list)       # new in the model (e.g. head, fc_norm)
    unexpected: list[str] = field(default_factory=list)    # in the file, unused (e.g. norm, mask_token)
    resampled: str = ""                                    # image: the pos_embed grid change
    dropped: str = ""                                      # pre-training only (head, decoder), not offered
    interpolated: list[str] = field(default_factory=list)  # video: rel-pos tables resampled to new lengths
    ignored: list[str] = field(default_factory=list)       # video: left out before loading (mask token, ...)

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


def _resize_image(model: nn.Module, pre: PretrainedEncoder, report: LoadReport) -> dict:
    """pos_embed resampled to the model's patch grid."""
    state, own = dict(pre.state), model.state_dict()
    if "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        new_grid = list(model.patch_embed.grid_size)
        old = pre.grid
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_grid, num_prefix_tokens=prefix)
        report.resampled = f"{old}x{old} -> {new_grid[0]}x{new_grid[1]}"
    return state


def _resize_video(model: nn.Module, pre: PretrainedEncoder, report: LoadReport) -> dict:
    """MViT relative-position tables resampled to the model's lengths."""
    state = interpolate_rel_pos(pre.state, model)
    report.interpolated = sorted(k for k in pre.state if state[k].shape != pre.state[k].shape)
    return state


def _image_shape_error(pre: PretrainedEncoder, key: str, theirs: tuple, ours: tuple) -> str:
    return (f"{pre.path}: {key} has shape {theirs}, the model needs {ours} "
            f"(pre-trained as {pre.arch()} patch {pre.patch_size}; check model.arch / model.patch_size)")


def _image_fit_error(pre: PretrainedEncoder, missing: list[str], unexpected: list[str]) -> str:
    what = (f"{len(missing)} model weights are not in the file, e.g. {missing[0]}" if missing
            else f"{len(unexpected)} weights in the file fit no model weight, e.g. {unexpected[0]}")
    return f"{pre.path}: {what} (pre-trained as {pre.arch()}; check model.arch)"


def _video_shape_error(pre: PretrainedEncoder, key: str, theirs: tuple, ours: tuple) -> str:
    return (f"model.pretrained: {pre.path} key {key} has shape {theirs}, the model expects {ours} "
            "(another model.arch / img_size?)")


def _video_fit_error(pre: PretrainedEncoder, missing: list[str], unexpected: list[str]) -> str:
    return (f"model.pretrained: {pre.path} lacks {len(missing)} encoder weights of this model, "
            f"e.g. {min(missing)} (another model.arch?)")


@dataclass(frozen=True)
class LoaderRow:
    """How one modality's classifier takes the encoder of a pre-training checkpoint."""
    read: Callable[[Path], PretrainedEncoder]        # the file -> encoder tensors by the model's names
    resize: Callable[[nn.Module, PretrainedEncoder, LoadReport], dict]   # tensors fitted to the model's grid
    allow_missing: tuple[str, ...]                   # regexes: model weights a checkpoint cannot hold
    allow_unexpected: tuple[str, ...]                # regexes: file weights the model has no use for
    shape_error: Callable[[PretrainedEncoder, str, tuple, tuple], str]
    fit_error: Callable[[PretrainedEncoder, list, list], str]   # (pre, bad missing, bad unexpected)


LOADERS: dict[str, LoaderRow] = {
    "image": LoaderRow(_read_image, _resize_image, CLASSIFIER_NEW, CLASSIFIER_DROPPED,
                       _image_shape_error, _image_fit_error),
    "video": LoaderRow(_read_video, _resize_video, CLASSIFIER_NEW, (r".*",),
                       _video_shape_error, _video_fit_error),
}


def load_encoder_into(model: nn.Module, pre: PretrainedEncoder, allow_missing=None,
                      allow_unexpected=None) -> LoadReport:
    """Copy encoder weights into a classifier (or a bare encoder), resized as ``pre``'s row says.

    Missing / unexpected keys matching the ``allow_*`` regexes (default: the row's) are accepted and
    reported; any other difference (a missing block, a shape mismatch) is a one-line UserError.
    """
    row = LOADERS[pre.modality]
    allow_missing = row.allow_missing if allow_missing is None else allow_missing
    allow_unexpected = row.allow_unexpected if allow_unexpected is None else allow_unexpected
    report = LoadReport(dropped=dropped_note(pre.dropped), ignored=list(pre.ignored))
    state, own = row.resize(model, pre, report), model.state_dict()
    for k, v in state.items():
        if k in own and own[k].shape != v.shape:
            raise UserError(row.shape_error(pre, k, tuple(v.shape), tuple(own[k].shape)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad_missing = [k for k in missing if not _matches(k, allow_missing)]
    bad_unexpected = [k for k in unexpected if not _matches(k, allow_unexpected)]
    if bad_missing or bad_unexpected:
        raise UserError(row.fit_error(pre, bad_missing, bad_unexpected))
    report.loaded = len(state) - len(unexpected)
    report.missing, report.unexpected = sorted(missing), sorted(unexpected)
    return report


def load_pretrained(model: nn.Module, path: str | Path, modality: str) -> LoadReport:
    """Read ``path`` as ``modality``'s row says and load its encoder into ``model``."""
    return load_encoder_into(model, read_pretrained(path, modality))


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
