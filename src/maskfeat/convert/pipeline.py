"""One conversion: read a checkpoint (weights_only), map names, check by loading, write.

Sources: 'mmpretrain' (MaskFeat pre-training or a ViT classifier), 'slowfast' (MaskMViT
image pre-training), 'maskfeat' (ours). Targets: 'maskfeat' (a ``.pth`` with 'model' and
'config', loadable by ``build_pretrain_model``) or 'timm' (``.safetensors``).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..engine.checkpoint import load_checkpoint, save_checkpoint
from ..errors import UserError
from ..models import ARCHS, build_pretrain_model
from . import mmpretrain, slowfast
from .arch import VitShape, classifier_config, pretrain_config, read_shape, timm_recipe
from .timm_export import dropped_note, maskfeat_encoder_to_timm, pretraining_only, save_timm

SOURCES = ("auto", "mmpretrain", "slowfast", "maskfeat")
TARGETS = ("maskfeat", "timm")


def detect_source(ckpt: dict, path: str) -> str:
    if "model" in ckpt and "config" in ckpt:
        return "maskfeat"
    if "model_state" in ckpt or any(str(k).startswith("pred_head.") for k in ckpt):
        return "slowfast"
    keys = ckpt.get("state_dict", ckpt)
    if isinstance(keys, dict) and any(str(k).startswith(("backbone.", "module.backbone.")) for k in keys):
        return "mmpretrain"
    raise UserError(f"{path}: cannot tell the checkpoint's origin; give --from mmpretrain|slowfast|maskfeat")


def _check_pretrain(sd: dict, cfg: dict, where: str) -> None:
    """The converted weights must load, strictly, into the model the config builds."""
    model = build_pretrain_model(cfg)
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise UserError(f"{where}: converted weights do not fit {cfg['model']['arch']} (key '{bad}')")


def _check_classifier(sd: dict, cfg: dict, where: str) -> None:
    from ..eval.classifier import build_classifier

    m = cfg["model"]
    model = build_classifier(m["arch"], m["img_size"], m["patch_size"], m["num_classes"], m["global_pool"])
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise UserError(f"{where}: converted classifier does not fit {m['arch']} (key '{bad}')")


def verify_timm(path: Path, shape: VitShape, timm_kwargs_name: tuple[str, dict],
                reference: torch.nn.Module | None = None) -> float | None:
    """Load the file into the timm model strictly; with ``reference`` (our encoder) compare features.

    Returns the max abs feature difference, or None when there is no reference.
    """
    import timm
    from safetensors.torch import load_file

    name, kwargs = timm_kwargs_name
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    result = model.load_state_dict(load_file(str(path)), strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise UserError(f"{path}: timm {name} does not take these weights (key '{bad}')")
    if reference is None:
        return None
    x = torch.randn(1, shape.in_chans, shape.img_size, shape.img_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model.forward_features(x) - reference.eval().forward_features(x)).abs().max().item()
    if diff > 1e-4:
        raise UserError(f"{path}: timm features differ from ours by {diff:.3g}")
    return diff


def _heads_from_config(cfg: dict) -> int | None:
    arch = cfg.get("model", {}).get("arch")
    return ARCHS[arch]["num_heads"] if arch in ARCHS else None


def convert(src_path: str, dst_path: str, source: str = "auto", target: str | None = None,
            num_heads: int | None = None, verify: bool = True) -> list[str]:
    """Convert ``src_path`` into ``dst_path``; returns lines to print."""
    src, dst = Path(src_path), Path(dst_path)
    if target is None:
        target = "timm" if dst.suffix == ".safetensors" else "maskfeat"
    if target not in TARGETS:
        raise UserError(f"--to: unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UserError(f"{dst}: output would overwrite the input")
    ckpt = load_checkpoint(src)
    if source == "auto":
        source = detect_source(ckpt, str(src))
    lines = [f"{src}: {source} checkpoint"]
    where = str(src)

    classifier = None
    if source == "mmpretrain":
        sd_in = mmpretrain.unwrap(ckpt)
        if mmpretrain.is_classifier(sd_in):
            classifier = mmpretrain.mmpretrain_classifier_to_timm(sd_in)
        else:
            ours, gaussian = mmpretrain.mmpretrain_to_maskfeat(sd_in), 16
    elif source == "slowfast":
        ours, gaussian = slowfast.slowfast_to_maskfeat(slowfast.unwrap(ckpt)), 0
    elif source == "maskfeat":
        if target == "maskfeat":
            raise UserError(f"{src}: already a maskfeat checkpoint")
        if not isinstance(ckpt.get("model"), dict):
            raise UserError(f"{src}: 'model' is not a state_dict")
        ours, gaussian = ckpt["model"], None
        num_heads = num_heads or _heads_from_config(ckpt["config"])
    else:
        raise UserError(f"--from: unknown source {source!r}; choose one of {', '.join(SOURCES)}")

    if classifier is not None:
        shape = read_shape(classifier.state_dict, num_heads, where)
        recipe = timm_recipe(shape, classifier.global_pool, classifier.fc_norm, classifier.num_classes,
                             classifier.final_norm)
        lines.append(f"classifier: {shape.embed_dim}x{shape.depth}, {classifier.num_classes} classes, "
                     f"pool {classifier.global_pool}")
        if target == "timm":
            call = save_timm(classifier.state_dict, shape, dst, classifier.global_pool, classifier.fc_norm,
                             classifier.final_norm, classifier.num_classes, source=source)
            if verify:
                verify_timm(dst, shape, recipe)
            lines += [f"wrote {dst}", f"load with: {call}"]
        else:
            if not classifier.final_norm:   # finetune has fc_norm (avg) or norm (token)
                raise UserError(f"{where}: a classifier without a final norm has no maskfeat finetune "
                                f"counterpart; '--to timm' converts it")
            cfg = classifier_config(shape, classifier.global_pool, classifier.num_classes, where)
            _check_classifier(classifier.state_dict, cfg, where)
            save_checkpoint({"model": classifier.state_dict, "config": cfg, "converted_from": f"{source}:{src}"}, dst)
            lines.append(f"wrote {dst} (a maskfeat finetune checkpoint: timm VisionTransformer names, "
                         f"model.arch {cfg['model']['arch']}, global_pool {classifier.global_pool})")
        return lines

    encoder = maskfeat_encoder_to_timm(ours)
    shape = read_shape(encoder, num_heads, where)
    lines.append(f"encoder: width {shape.embed_dim}, depth {shape.depth}, {shape.num_heads} heads, "
                 f"patch {shape.patch_size}, {shape.img_size} px")
    if target == "maskfeat":
        cfg = pretrain_config(shape, gaussian, where)
        _check_pretrain(ours, cfg, where)
        save_checkpoint({"model": ours, "config": cfg, "converted_from": f"{source}:{src}"}, dst)
        lines.append(f"wrote {dst} (model.arch {cfg['model']['arch']}, hog.gaussian_window {gaussian})")
        return lines
    reference = None
    if verify and source == "maskfeat":
        reference = build_pretrain_model(ckpt["config"]).encoder
        reference.load_state_dict({k[len("encoder."):]: v for k, v in ours.items() if k.startswith("encoder.")})
    if note := dropped_note(pretraining_only(ours)):
        lines.append(note)
    call = save_timm(encoder, shape, dst, source=source)
    if verify:
        diff = verify_timm(dst, shape, timm_recipe(shape), reference)
        if diff is not None:
            lines.append(f"checked: timm features equal ours (max abs difference {diff:.2e})")
    lines += [f"wrote {dst}", f"load with: {call}"]
    return lines
