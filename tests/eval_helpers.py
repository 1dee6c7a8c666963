"""Tiny labelled data for the evaluation tests (k-NN, linear probe, fine-tuning)."""
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("disk", "hstripes", "vstripes")


def pattern(kind: str, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """uint8 (size, size, 3): a class-specific pattern with random phase, colour and noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(5, 8)
    phase = rng.uniform(0, period)
    if kind == "hstripes":
        m = ((yy + phase) % period) < period / 2
    elif kind == "vstripes":
        m = ((xx + phase) % period) < period / 2
    else:
        cy, cx = rng.uniform(size * 0.35, size * 0.65, 2)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < (size * rng.uniform(0.2, 0.3)) ** 2
    colour = rng.uniform(120, 255, 3)
    img = m[..., None] * colour + rng.normal(0, 12, (size, size, 3)) + 20
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root: Path, n_train: int = 10, n_val: int = 5, size: int = 32, seed: int = 0) -> Path:
    """root/{train,val}/<class>/<i>.png, one sub-folder per class."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for kind in CLASSES:
            d = root / split / kind
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(pattern(kind, rng, size)).save(d / f"{i:03d}.png")
    return root


def folder_overrides(root: Path, img_size: int = 32, patch: int = 8) -> list[str]:
    return ["data.source=folder", f"data.root={root}", "data.num_workers=0", "data.crop_pct=1.0",
            "model.arch=vit-pico", f"model.img_size={img_size}", f"model.patch_size={patch}",
            "model.pretrained="]
