"""One conversion: read a checkpoint (weights_only), map names, check by loading, write.

Sources (one reader each): 'mmpretrain' (MaskFeat pre-training or a ViT classifier), 'slowfast'
(MaskMViT image pre-training), 'maskfeat' (ours). Targets (one writer each): 'maskfeat' (a
``.pth`` with 'model' and 'config', loadable by ``build_pretrain_model``) or 'timm'
(``.safetensors``). Every check loads the weights strictly (``strict_load``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..atomic import atomic_path
from ..engine.checkpoint import load_checkpoint, save_checkpoint
from ..errors import UserError
from ..models import ARCHS, build_pretrain_model
from ..namemaps import mmpretrain, slowfast
from ..namemaps.maskfeat import dropped_note, pretraining_only
from ..namemaps.mmpretrain import ClassifierWeights
from .arch import VitShape, classifier_config, pretrain_config, read_shape, timm_recipe
from .model_card import RunFacts, model_card, run_figures
from .timm_dir import IMAGENET, check_out_dir, timm_config, verify_local_dir, write_timm_dir
from .timm_export import maskfeat_encoder_to_timm, save_timm

SOURCES = ("auto", "mmpretrain", "slowfast", "maskfeat")
TARGETS = ("maskfeat", "timm", "timm-dir")


@dataclass
class Weights:
    """What a reader found: a pre-training state dict in our names, or a classifier in timm's."""
    source: str
    pretrain: dict | None = None              # our MaskFeat names (encoder.*, head.*)
    gaussian_window: int | None = None        # the HOG window the source trained with
    config: dict | None = None                # ours: the checkpoint's own config
    classifier: ClassifierWeights | None = None


def detect_source(ckpt: dict, path: str) -> str:
    if "model" in ckpt and "config" in ckpt:
        return "maskfeat"
    if "model_state" in ckpt or any(str(k).startswith("pred_head.") for k in ckpt):
        return "slowfast"
    keys = ckpt.get("state_dict", ckpt)
    if isinstance(keys, dict) and any(str(k).startswith(("backbone.", "module.backbone.")) for k in keys):
        return "mmpretrain"
    raise UserError(f"{path}: cannot tell the checkpoint's origin; give --from mmpretrain|slowfast|maskfeat")


# -- readers: checkpoint -> Weights ------------------------------------------------------------

def read_mmpretrain(ckpt: dict, where: str) -> Weights:
    sd = mmpretrain.unwrap(ckpt)
    if mmpretrain.is_classifier(sd):
        return Weights("mmpretrain", classifier=mmpretrain.mmpretrain_classifier_to_timm(sd))
    return Weights("mmpretrain", pretrain=mmpretrain.mmpretrain_to_maskfeat(sd), gaussian_window=16)


def read_slowfast(ckpt: dict, where: str) -> Weights:
    return Weights("slowfast", pretrain=slowfast.slowfast_to_maskfeat(slowfast.unwrap(ckpt)),
                   gaussian_window=0)


def read_maskfeat(ckpt: dict, where: str) -> Weights:
    """Ours: a pre-training checkpoint (``encoder.*`` + ``head.*``) or a fine-tuned classifier
    (timm names, as ``maskfeat finetune`` and ``convert`` of an mmpretrain classifier write it)."""
    sd, cfg = ckpt.get("model"), ckpt["config"] if isinstance(ckpt.get("config"), dict) else {}
    if not isinstance(sd, dict):
        raise UserError(f"{where}: 'model' is not a state_dict")
    if cfg.get("modality", "image") != "image":
        raise UserError(f"{where}: a {cfg['modality']} checkpoint; only image ViTs convert to timm")
    if any(k.startswith("encoder.") for k in sd):
        return Weights("maskfeat", pretrain=sd, config=cfg or None)
    if "head.weight" not in sd or "patch_embed.proj.weight" not in sd:
        raise UserError(f"{where}: neither a maskfeat pre-training checkpoint (encoder.* weights) nor a "
                        "fine-tuned classifier (patch_embed.*, head.*)")
    pool = cfg.get("model", {}).get("global_pool") or ("avg" if "fc_norm.weight" in sd else "token")
    classifier = ClassifierWeights(sd, pool, fc_norm="fc_norm.weight" in sd,
                                   final_norm="norm.weight" in sd or "fc_norm.weight" in sd,
                                   num_classes=int(sd["head.weight"].shape[0]))
    return Weights("maskfeat", config=cfg or None, classifier=classifier)


READERS = {"mmpretrain": read_mmpretrain, "slowfast": read_slowfast, "maskfeat": read_maskfeat}


# -- checks ----------------------------------------------------------------------------------

def strict_load(model: torch.nn.Module, state: dict, failure: str) -> None:
    """Load ``state`` into ``model``; any missing or unexpected key is ``failure (key 'k')``."""
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise UserError(f"{failure} (key '{(result.missing_keys or result.unexpected_keys)[0]}')")


def verify_timm(path: Path, shape: VitShape, timm_kwargs_name: tuple[str, dict],
                reference: torch.nn.Module | None = None) -> float | None:
    """Load the file into the timm model strictly; with ``reference`` (our encoder) compare features.

    Returns the max abs feature difference, or None when there is no reference.
    """
    import timm
    from safetensors.torch import load_file

    name, kwargs = timm_kwargs_name
    model = timm.create_model(name, pretrained=False, **kwargs).eval()
    strict_load(model, load_file(str(path)), f"{path}: timm {name} does not take these weights")
    if reference is None:
        return None
    x = torch.randn(1, shape.in_chans, shape.img_size, shape.img_size,
                    generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (model.forward_features(x) - reference.eval().forward_features(x)).abs().max().item()
    if diff > 1e-4:
        raise UserError(f"{path}: timm features differ from ours by {diff:.3g}")
    return diff


def _heads_from_config(cfg: dict | None) -> int | None:
    arch = (cfg or {}).get("model", {}).get("arch")
    return ARCHS[arch]["num_heads"] if arch in ARCHS else None


# -- writers: Weights -> file -----------------------------------------------------------------

def _write_classifier(w: Weights, src: Path, dst: Path, target: str, num_heads: int | None,
                      verify: bool) -> list[str]:
    c, where = w.classifier, str(src)
    shape = read_shape(c.state_dict, num_heads, where)
    lines = [f"classifier: {shape.embed_dim}x{shape.depth}, {c.num_classes} classes, pool {c.global_pool}"]
    if target == "timm":
        with atomic_path(dst) as tmp:
            call = save_timm(c.state_dict, shape, tmp, c.global_pool, c.fc_norm, c.final_norm, c.num_classes,
                             source=w.source, load_path=dst)
            if verify:
                verify_timm(tmp, shape,
                            timm_recipe(shape, c.global_pool, c.fc_norm, c.num_classes, c.final_norm))
        return lines + [f"wrote {dst}", f"load with: {call}"]
    if not c.final_norm:   # finetune has fc_norm (avg) or norm (token)
        raise UserError(f"{where}: a classifier without a final norm has no maskfeat finetune "
                        f"counterpart; '--to timm' converts it")
    from ..eval.classifier import build_classifier

    cfg = classifier_config(shape, c.global_pool, c.num_classes, where)
    m = cfg["model"]
    strict_load(build_classifier(m["arch"], m["img_size"], m["patch_size"], m["num_classes"],
                                 m["global_pool"]),
                c.state_dict, f"{where}: converted classifier does not fit {m['arch']}")
    save_checkpoint({"model": c.state_dict, "config": cfg, "converted_from": f"{w.source}:{src}"}, dst)
    return lines + [f"wrote {dst} (a maskfeat finetune checkpoint: timm VisionTransformer names, "
                    f"model.arch {m['arch']}, global_pool {c.global_pool})"]


def _write_pretrain(w: Weights, src: Path, dst: Path, target: str, num_heads: int | None,
                    verify: bool) -> list[str]:
    where = str(src)
    num_heads = num_heads or _heads_from_config(w.config)
    encoder = maskfeat_encoder_to_timm(w.pretrain)
    shape = read_shape(encoder, num_heads, where)
    lines = [f"encoder: width {shape.embed_dim}, depth {shape.depth}, {shape.num_heads} heads, "
             f"patch {shape.patch_size}, {shape.img_size} px"]
    if target == "maskfeat":
        cfg = pretrain_config(shape, w.gaussian_window, where)
        strict_load(build_pretrain_model(cfg), w.pretrain,
                    f"{where}: converted weights do not fit {cfg['model']['arch']}")
        save_checkpoint({"model": w.pretrain, "config": cfg, "converted_from": f"{w.source}:{src}"}, dst)
        return lines + [f"wrote {dst} (model.arch {cfg['model']['arch']}, "
                        f"hog.gaussian_window {w.gaussian_window})"]
    reference = _our_encoder(w) if verify else None
    if note := dropped_note(pretraining_only(w.pretrain)):
        lines.append(note)
    with atomic_path(dst) as tmp:
        call = save_timm(encoder, shape, tmp, source=w.source, load_path=dst)
        diff = verify_timm(tmp, shape, timm_recipe(shape), reference) if verify else None
    if diff is not None:
        lines.append(f"checked: timm features equal ours (max abs difference {diff:.2e})")
    return lines + [f"wrote {dst}", f"load with: {call}"]


def _our_encoder(w: Weights) -> torch.nn.Module | None:
    """Our encoder with the checkpoint's weights (the reference timm must match), when its config is known."""
    if w.config is None:
        return None
    reference = build_pretrain_model(w.config).encoder
    prefix = len("encoder.")
    reference.load_state_dict({k[prefix:]: v for k, v in w.pretrain.items() if k.startswith("encoder.")})
    return reference


def _our_classifier(c: ClassifierWeights, cfg: dict | None) -> torch.nn.Module | None:
    m = (cfg or {}).get("model", {})
    if "arch" not in m or "img_size" not in m:
        return None
    from ..eval.classifier import build_classifier

    model = build_classifier(m["arch"], m["img_size"], m.get("patch_size", 16), c.num_classes, c.global_pool)
    model.load_state_dict(c.state_dict)
    return model


def _write_timm_dir(w: Weights, facts: RunFacts, dst: Path, num_heads: int | None, verify: bool,
                    license_name: str) -> list[str]:
    """Either kind of weights -> a timm local-dir folder (config.json, model.safetensors, README.md)."""
    c, where = w.classifier, str(dst)
    if c is not None:
        tensors, kind = c.state_dict, "fine-tuned classifier"
        shape = read_shape(tensors, num_heads or _heads_from_config(w.config), where)
        recipe = timm_recipe(shape, c.global_pool, c.fc_norm, c.num_classes, c.final_norm)
        reference = _our_classifier(c, w.config) if verify else None
    else:
        tensors, kind = maskfeat_encoder_to_timm(w.pretrain), "pre-trained encoder"
        shape = read_shape(tensors, num_heads or _heads_from_config(w.config), where)
        recipe = timm_recipe(shape)
        reference = _our_encoder(w) if verify else None
    facts.kind = kind
    data = (w.config or {}).get("data", {})
    mean_std = (data.get("mean", IMAGENET[0]), data.get("std", IMAGENET[1]))
    config = timm_config(*recipe, shape, recipe[1].get("num_classes", 0), mean_std, license_name)
    card = model_card(facts, recipe[0], config["model_args"], license_name, dst.name)
    def check(tmp: Path) -> float | None:
        return verify_local_dir(tmp, reference, shape, c is not None) if verify else None
    diff = write_timm_dir(dst, tensors, shape, recipe, config, card, check)
    lines = [f"{kind}: width {shape.embed_dim}, depth {shape.depth}, {shape.num_heads} heads, "
             f"timm {recipe[0]}"]
    if diff is not None:
        what = "logits" if c is not None else "features"
        lines.append(f"checked: timm local-dir {what} equal ours (max abs difference {diff:.2e})")
    return lines + [f"wrote {dst}/ (config.json, model.safetensors, README.md)",
                    f'load with: timm.create_model("local-dir:{dst}", pretrained=True)']


def _check_output(src: Path, dst: Path, target: str, overwrite: bool) -> None:
    if dst.exists() and dst.resolve() == src.resolve():
        raise UserError(f"{dst}: output would overwrite the input")
    if target == "timm-dir":
        check_out_dir(dst, overwrite)
        return
    if not dst.parent.is_dir():
        raise UserError(f"{dst}: output folder {dst.parent} does not exist")
    if dst.is_dir():
        raise UserError(f"{dst}: is a folder; give the output file's name")


def convert(src_path: str, dst_path: str, source: str = "auto", target: str | None = None,
            num_heads: int | None = None, verify: bool = True, overwrite: bool = False,
            license_name: str = "other") -> list[str]:
    """Convert ``src_path`` into ``dst_path``; returns lines to print."""
    src, dst = Path(src_path), Path(dst_path)
    if target is None:
        target = "timm" if dst.suffix == ".safetensors" else "maskfeat"
    if target not in TARGETS:
        raise UserError(f"--to: unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    _check_output(src, dst, target, overwrite)
    ckpt = load_checkpoint(src)
    if source == "auto":
        source = detect_source(ckpt, str(src))
    if source not in READERS:
        raise UserError(f"--from: unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "maskfeat" and target == "maskfeat":
        raise UserError(f"{src}: already a maskfeat checkpoint")
    weights = READERS[source](ckpt, str(src))
    if target == "timm-dir":
        facts = RunFacts("", source, weights.config, ckpt.get("step"), ckpt.get("epoch"),
                         run_figures(src.parent) if source == "maskfeat" else {})
        lines = _write_timm_dir(weights, facts, dst, num_heads, verify, license_name)
        return [f"{src}: {source} checkpoint"] + lines
    write = _write_classifier if weights.classifier is not None else _write_pretrain
    return [f"{src}: {source} checkpoint"] + write(weights, src, dst, target, num_heads, verify)
