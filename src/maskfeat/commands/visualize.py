"""``maskfeat visualize CHECKPOINT IMAGES...``: one PNG per image showing what the model predicts.

Panels: the input (resized, centre-cropped to the model's size), the block mask, the HOG
target and the predicted HOG as oriented-gradient glyphs (prediction on masked patches
only). Runs on CPU by default. SIGINT / SIGTERM stop it (exit 130 / 143), leaving whole PNGs only.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from ..data.images import decode_rgb
from ..data.masking import BlockMaskGenerator
from ..engine.checkpoint import load_checkpoint
from ..errors import Interrupted, UserError, stop_on_signals
from ..models import build_pretrain_model
from ..viz.hog_glyphs import patches_to_cells
from ..viz.panels import draw_panels


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CHECKPOINT",
                   help="a maskfeat pre-training checkpoint (last.pth, epoch_N.pth)")
    p.add_argument("images", metavar="IMAGES", nargs="+", help="image files")
    p.add_argument("--out-dir", default="maskfeat_vis", help="where the PNGs go (default: ./maskfeat_vis)")
    p.add_argument("--seed", type=int, default=0, help="mask seed; image i uses seed + i (default 0)")
    p.add_argument("--mask-ratio", type=float, default=None,
                   help="share of patches masked (default: the config's)")
    p.add_argument("--cell-px", type=int, default=12,
                   help="pixels per HOG cell in the glyph panels (default 12)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")


def load_pretrained(path: str, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild a MaskFeat model from a checkpoint's 'config' and load its 'model' weights."""
    ckpt = load_checkpoint(path)
    missing = [k for k in ("model", "config") if k not in ckpt]
    if missing:
        raise UserError(f"{path}: not a maskfeat pre-training checkpoint "
                        f"(no {', '.join(repr(k) for k in missing)} key)")
    cfg = ckpt["config"]
    try:
        model = build_pretrain_model(cfg)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: its config cannot build a model ({e})") from None
    result = model.load_state_dict(ckpt["model"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        kind = "missing" if result.missing_keys else "unexpected"
        raise UserError(f"{path}: weights do not match its config ({kind} key '{bad}')")
    return model.to(device).eval(), cfg


def preprocess(path: str, img_size: int, mean, std) -> tuple[torch.Tensor, np.ndarray]:
    """Image file -> normalised (3, S, S) float tensor and the displayed RGB (S, S, 3) in [0, 1]."""
    try:
        img = decode_rgb(path)                                            # (3, H, W) uint8
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except (ValueError, OSError) as e:
        raise UserError(f"{path}: cannot decode image ({e})") from None
    tf = v2.Compose([v2.Resize(img_size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
                     v2.CenterCrop(img_size), v2.ToDtype(torch.float32, scale=True)])
    rgb = tf(img).clamp_(0.0, 1.0)                                        # (3, S, S) in [0, 1]
    x = v2.functional.normalize(rgb, mean=list(mean), std=list(std))
    return x, rgb.permute(1, 2, 0).numpy()


def output_names(images: list[str]) -> list[str]:
    """``<stem>_maskfeat.png`` per image; images with the same stem (a/x.jpg, b/x.jpg) get their
    parent folders' names in front until every name is distinct (a_x, b_x), then a number."""
    paths = [Path(p) for p in images]
    names = [p.stem for p in paths]
    for depth in range(1, 1 + max(len(p.parts) for p in paths)):
        taken = {n: names.count(n) for n in names}
        if all(c == 1 for c in taken.values()):
            break
        names = [("_".join(p.parent.parts[-depth:] + (p.stem,)).lstrip("/_") if taken[n] > 1 else n)
                 for p, n in zip(paths, names)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(f"{n}_maskfeat.png" if seen[n] == 1 else f"{n}_{seen[n]}_maskfeat.png")
    return out


def check_arguments(args: argparse.Namespace) -> None:
    if args.cell_px < 3:
        raise UserError("--cell-px must be at least 3")
    if args.mask_ratio is not None and not 0.0 < args.mask_ratio < 1.0:
        raise UserError(f"--mask-ratio: {args.mask_ratio} is not in (0, 1)")
    if Path(args.out_dir).exists() and not Path(args.out_dir).is_dir():
        raise UserError(f"--out-dir: {args.out_dir} is a file, not a folder")


def draw_one(model, x, rgb, mask, geometry: tuple, dst: Path, title: str, args) -> float:
    """The panels of one image under ``mask`` written to ``dst``; the masked-patch loss."""
    grid, patch, nbins, k = geometry
    xb = x.unsqueeze(0).to(args.device)                                      # (1, 3, S, S)
    mb = torch.from_numpy(mask).unsqueeze(0).to(args.device)                 # (1, Hp, Wp)
    with torch.no_grad():
        out = model(xb, mb, return_outputs=True)
        target_cells = model.target.cell_histograms(xb)                      # (1, 3, nbins, Hc, Wc)
    pred_cells = patches_to_cells(out.pred.float(), grid, nbins=nbins, cells_per_patch=k)
    draw_panels(rgb, mask, target_cells[0].cpu().numpy(), pred_cells[0].cpu().numpy(), patch, dst,
                title=f"{title}: masked-patch loss {out.loss.item():.4f}", cell_px=args.cell_px,
                cells_per_patch=k)
    return out.loss.item()


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    model, cfg = load_pretrained(args.checkpoint, args.device)
    m, hog_cfg = cfg["model"], cfg["hog"]
    if m.get("target", "hog") != "hog":
        raise UserError(f"{args.checkpoint}: the model predicts '{m['target']}', "
                        "visualize draws HOG predictions only")
    img_size, patch = int(m["img_size"]), int(m["patch_size"])
    grid = (img_size // patch, img_size // patch)
    mk = cfg.get("mask", {})
    ratio = args.mask_ratio if args.mask_ratio is not None else mk.get("ratio", 0.4)
    masker = BlockMaskGenerator(input_size=grid, mask_ratio=ratio,
                                min_num_patches=mk.get("min_num_patches", 4),
                                min_aspect=mk.get("min_aspect", 0.3), max_aspect=mk.get("max_aspect"))
    nbins, k = int(hog_cfg["nbins"]), patch // int(hog_cfg["cell_size"])
    inputs = [preprocess(path, img_size, cfg["data"]["mean"], cfg["data"]["std"]) for path in args.images]
    out_dir = Path(args.out_dir)                                             # every image read: now write
    out_dir.mkdir(parents=True, exist_ok=True)
    done = 0
    try:
        with stop_on_signals():
            for i, (path, name, (x, rgb)) in enumerate(zip(args.images, output_names(args.images), inputs)):
                mask = masker(np.random.default_rng(args.seed + i))                  # (Hp, Wp) bool
                loss = draw_one(model, x, rgb, mask, (grid, patch, nbins, k), out_dir / name,
                                Path(path).name, args)
                print(f"{out_dir / name}  loss {loss:.4f}")
                done += 1
    except Interrupted as e:
        raise Interrupted(e.signum, f"{e}: {done} of {len(inputs)} PNGs written whole in {out_dir}") from None
    return 0
