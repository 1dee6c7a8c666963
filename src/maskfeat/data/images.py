"""Finding and decoding image files: folders, mmpretrain list files, scikit-image's photos."""
from __future__ import annotations

import io
import warnings
from importlib import resources
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image

from ..errors import UserError

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")

# Colour and grey photos bundled with scikit-image (no download needed).
SKIMAGE_PHOTOS = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png",
    "moon.png", "coins.png", "brick.png", "grass.png", "gravel.png", "page.png",
)


def skimage_photos() -> list[Path]:
    root = Path(str(resources.files("skimage") / "data"))
    paths = [root / name for name in SKIMAGE_PHOTOS if (root / name).is_file()]
    if not paths:
        raise UserError(f"no bundled photos found in {root}; reinstall scikit-image (pip install scikit-image)")
    return paths


def scan_folder(root: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """Images under ``root``: class sub-folders (labels by sorted folder name) or flat (label -1)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data.root: folder not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    paths, labels = [], []
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS:
            paths.append(p)
            labels.append(-1)
    for label, name in enumerate(classes):
        for p in sorted((root / name).rglob("*")):
            if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS:
                paths.append(p)
                labels.append(label)
    if not paths:
        raise UserError(f"data.root: no images ({', '.join(IMG_EXTENSIONS[:4])}, ...) under {root}")
    if all(lbl == -1 for lbl in labels):
        classes = []
    return paths, labels, classes


def read_list_file(root: str | Path, ann_file: str | Path) -> tuple[list[Path], list[int]]:
    """mmpretrain layout: ``root/ann_file`` lines of 'relative/path [label]'."""
    root = Path(root)
    ann = Path(ann_file) if Path(ann_file).is_absolute() else root / ann_file
    if not ann.is_file():
        raise UserError(f"data.ann_file: list file not found: {ann}")
    paths, labels = [], []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        parts = line.strip().rsplit(maxsplit=1)
        if not parts:
            continue
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            rel, label = parts[0], int(parts[1])
        else:
            rel, label = line.strip(), -1
        paths.append(root / rel)
        labels.append(label)
    if not paths:
        raise UserError(f"data.ann_file: {ann} lists no images")
    missing = [p for p in paths[:1000] if not p.is_file()]
    if missing:
        raise UserError(f"data.ann_file: {ann} names {len(missing)}+ missing files, e.g. {missing[0]}")
    return paths, labels


def decode_rgb(path: str | Path) -> torch.Tensor:
    """Any image file -> uint8 (3, H, W) RGB. Raises ValueError if it cannot be decoded."""
    data = Path(path).read_bytes()
    if not data:
        raise ValueError("empty file")
    if not data.startswith(b"\xff\xd8\xff"):
        return _decode_with_pil(data)                     # PNG, TIFF, ...: PIL (quiet on odd ICC profiles)
    try:                                                  # JPEG: libjpeg-turbo through torchvision
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        return _decode_with_pil(data)


def _decode_with_pil(data: bytes) -> torch.Tensor:
    """Fallback for what libjpeg/libpng in torchvision refuse (CMYK, palette, TIFF, ...)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                if im.mode in ("I;16", "I;16B", "I"):
                    im = im.point(lambda v: v / 256).convert("L")
                rgb = im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot decode image: {e}") from None
    return torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3).permute(2, 0, 1).contiguous()
