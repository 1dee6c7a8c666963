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
    return decode_rgb_bytes(Path(path).read_bytes())


def decode_rgb_bytes(data: bytes) -> torch.Tensor:
    """The bytes of any image file -> uint8 (3, H, W) RGB. Raises ValueError if they cannot be decoded."""
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
                if im.mode in ("I;16", "I;16B", "I"):           # 16-bit grey: the top 8 bits, v >> 8
                    im = im.point(lambda v: v / 256).convert("L")
                rgb = im.convert("RGB")
    except UnidentifiedImageError:                        # its message names a BytesIO address: not stable
        raise ValueError("cannot decode image: not an image format PIL can identify") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot decode image: {e}") from None
    return torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3).permute(2, 0, 1).contiguous()


# JPEG start-of-frame markers: SOF0-3, 5-7 (Huffman), 9-11, 13-15 (arithmetic); C4 / C8 / CC are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_DEVICE_SOF = (0xC0, 0xC1, 0xC2)      # baseline, extended sequential and progressive Huffman: what nvJPEG decodes


def jpeg_header(data: bytes) -> tuple[int, int, int, int, int, int] | None:
    """(height, width, components, SOF marker, sample precision, offset of the first SOS) from a JPEG's header,
    read from the markers alone (no decoding); None if ``data`` is not a well-formed JPEG header."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    n, i, frame = len(data), 2, None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:                              # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:    # TEM, RSTn, SOI: no length
            i += 2
            continue
        if marker == 0xD9:                              # EOI before any scan
            return None
        if marker == 0xDA:                              # SOS: the header ends here
            return (*frame, i) if frame else None
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            return None
        if marker in _SOF_MARKERS:
            if length < 8 or i + 10 > n:
                return None
            height, width = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
            frame = (height, width, data[i + 9], marker, data[i + 4])
        i += 2 + length
    return None


def device_jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) if ``data`` looks like a complete JPEG that ``decode_jpeg`` on a GPU can take
    (8-bit baseline / progressive Huffman, 1 or 3 components, an EOI marker after the first scan);
    None for anything else (PNG, CMYK / YCCK, arithmetic or lossless JPEG, truncated files, odd headers),
    which the caller decodes on the CPU instead."""
    head = jpeg_header(data)
    if head is None:
        return None
    height, width, components, marker, precision, sos = head
    if marker not in _DEVICE_SOF or precision != 8 or components not in (1, 3) or not height or not width:
        return None
    # Inside entropy-coded data 0xFF is always followed by 0x00 or RSTn, so an EOI after the
    # first SOS is the real end of the image (an EXIF thumbnail's EOI lies before it).
    if data.rfind(b"\xff\xd9") < sos:
        return None
    return height, width
