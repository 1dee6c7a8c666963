"""Decoding image files (with a pixel-count limit read from the header first), scikit-image's photos.

JPEG, 8-bit PNG and WebP: torchcodec (libjpeg-turbo, libpng, libwebp); everything else and anything it
refuses, and everything where torchcodec or FFmpeg's libraries are missing: PIL (the same pixels).
Every path applies the EXIF orientation, as OpenCV's ``imread`` (mmpretrain's default loader) does:
a phone photo tagged 'rotate 90' decodes upright. torchcodec's CPU decoders apply it themselves;
after PIL, ``orient`` does (and on the device, where the decoder may not: device_decode.py).

Folders and list files are indexed by ``folder_scan`` and ``list_file`` (into a ``FileIndex``)."""
from __future__ import annotations

import functools
import io
import re
import warnings
from importlib import resources
from pathlib import Path

import torch
from PIL import Image

from ..errors import UserError

# data.max_image_pixels by default: PIL's own threshold (it warns above it and refuses twice as many).
DEFAULT_MAX_IMAGE_PIXELS = int(Image.MAX_IMAGE_PIXELS)

# Colour and grey photos bundled with scikit-image (no download needed).
SKIMAGE_PHOTOS = (
    "astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "camera.png",
    "moon.png", "coins.png", "brick.png", "grass.png", "gravel.png", "page.png",
)


def skimage_photos() -> list[Path]:
    """The bundled photos that exist in this scikit-image install (a few MB, in SKIMAGE_PHOTOS order)."""
    root = Path(str(resources.files("skimage") / "data"))
    paths = [root / name for name in SKIMAGE_PHOTOS if (root / name).is_file()]
    if not paths:
        raise UserError(f"no bundled photos found in {root}; "
                        "reinstall scikit-image (pip install scikit-image)")
    return paths


def decode_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Any image file -> uint8 (3, H, W) RGB. Raises ValueError if it cannot be decoded or if its header
    claims more than ``max_pixels`` pixels (0: no limit of ours), before anything is decoded."""
    return decode_rgb_bytes(Path(path).read_bytes(), max_pixels)


def max_image_pixels(data: dict) -> int:
    """data.max_image_pixels (PIL's threshold where a hand-made ``data`` dict lacks it), checked."""
    value = data.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)
    if value < 0:
        raise UserError(f"data.max_image_pixels: must be >= 0 (0 = no limit), got {value}")
    return value


class ImageTooLarge(ValueError):
    """An image whose header claims more pixels than allowed (a decompression bomb, or just huge)."""


def check_pixels(height: int, width: int, max_pixels: int) -> None:
    """ImageTooLarge when an image of ``height`` x ``width`` is over ``max_pixels`` (0: no limit)."""
    if max_pixels and height * width > max_pixels:
        raise ImageTooLarge(f"image too large: {width}x{height} = {height * width} pixels > "
                         f"data.max_image_pixels={max_pixels}")


@functools.lru_cache(maxsize=None)
def _torchcodec():
    """torchcodec's image decoders (decode_jpeg, decode_png, decode_webp), or None where torchcodec or
    FFmpeg's shared libraries it loads are missing: PIL then decodes everything (the same pixels)."""
    try:
        from torchcodec.decoders import decode_jpeg, decode_png, decode_webp
    except Exception:                                     # noqa: BLE001 -- ImportError, OSError, RuntimeError
        return None
    return decode_jpeg, decode_png, decode_webp


def decode_rgb_bytes(data: bytes, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> torch.Tensor:
    """The bytes of any image file -> uint8 (3, H, W) RGB, upright (EXIF orientation applied). Raises
    ValueError if they cannot be decoded or if the header claims more than ``max_pixels`` pixels."""
    if not data:
        raise ValueError("empty file")
    head = jpeg_header(data)
    if head is None:                                      # PNG, WebP, TIFF, odd JPEG headers...
        return _decode_other(data, max_pixels)
    check_pixels(head[0], head[1], max_pixels)
    if _torchcodec() is None:
        return _decode_with_pil(data, max_pixels)
    try:                                                  # JPEG: libjpeg-turbo through torchcodec (upright)
        return _torchcodec()[0](torch.frombuffer(bytearray(data), dtype=torch.uint8), mode="RGB")
    except (RuntimeError, ValueError):
        return _decode_with_pil(data, max_pixels)


def _decode_other(data: bytes, max_pixels: int) -> torch.Tensor:
    """8-bit PNG / still WebP without an ICC profile: torchcodec (libpng would print a warning on odd
    profiles, PIL is quiet); the rest, and what torchcodec refuses: PIL. ``Image.open`` reads the header
    only (size, mode, profile), so the size is checked before any pixel is decoded."""
    decode = _codec_for(data)
    if decode is None:
        return _decode_with_pil(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                size, mode, icc, frames = (im.height, im.width), im.mode, "icc_profile" in im.info, \
                    getattr(im, "n_frames", 1)
    except Exception:                                     # noqa: BLE001 -- PIL says why, below
        return _decode_with_pil(data, max_pixels)
    check_pixels(*size, max_pixels)
    if mode not in _CODEC_MODES or icc or frames != 1:
        return _decode_with_pil(data, max_pixels)
    try:                                                  # upright (torchcodec applies the EXIF orientation)
        return decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode="RGB")
    except (RuntimeError, ValueError):
        return _decode_with_pil(data, max_pixels)


def _codec_for(data: bytes):
    """torchcodec's decoder for an 8-bit PNG (IHDR bit depth) or a WebP; None for anything else, or
    without torchcodec."""
    codecs = _torchcodec()
    if codecs is None:
        return None
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) > 24 and data[24] <= 8:
        return codecs[1]
    return codecs[2] if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


# PIL modes of the 8-bit images that torchcodec decodes to the same RGB as PIL's convert("RGB").
_CODEC_MODES = frozenset(("RGB", "RGBA", "L", "LA", "P", "PA", "1"))


def _decode_with_pil(data: bytes, max_pixels: int) -> torch.Tensor:
    """Fallback for what torchcodec refuses (CMYK, 16-bit, TIFF, ICC profiles, ...). ``Image.open``
    reads the header only, so the size is checked before any pixel is decoded."""
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                check_pixels(im.height, im.width, max_pixels)
                im.load()
                orientation = _orientation_value(im.getexif().get(0x0112))
                if im.mode in ("I;16", "I;16B", "I"):           # 16-bit grey: the top 8 bits, v >> 8
                    im = im.point(lambda v: v / 256).convert("L")
                rgb = im.convert("RGB")
    except UnidentifiedImageError:                        # its message names a BytesIO address: not stable
        raise ValueError("cannot decode image: not an image format PIL can identify") from None
    except ImageTooLarge:
        raise
    except Image.DecompressionBombError as e:   # PIL refuses twice its own limit before we see the size
        raise ImageTooLarge(_bomb_message(str(e), max_pixels)) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"cannot decode image: {e}") from None
    img = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8).view(rgb.height, rgb.width, 3)
    return orient(img.permute(2, 0, 1), orientation)


def _bomb_message(pil_message: str, max_pixels: int) -> str:
    found = re.search(r"\((\d+) pixels\)", pil_message)
    if found and max_pixels and int(found.group(1)) > max_pixels:
        return f"image too large: {found.group(1)} pixels > data.max_image_pixels={max_pixels}"
    return f"image too large for PIL: {pil_message}"


# JPEG start-of-frame markers: SOF0-3, 5-7 (Huffman), 9-11, 13-15 (arithmetic); C4 / C8 / CC are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_DEVICE_SOF = (0xC0, 0xC1, 0xC2)   # baseline, extended sequential, progressive Huffman: what nvJPEG decodes


def jpeg_header(data: bytes) -> tuple[int, int, int, int, int, int] | None:
    """(height, width, components, SOF marker, sample precision, offset of the first SOS) from a JPEG's
    header, read from the markers alone (no decoding); None if ``data`` is not a well-formed JPEG header."""
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


def device_jpeg_info(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, EXIF orientation) if ``data`` looks like a complete JPEG that ``decode_jpeg`` on a
    GPU can take (8-bit baseline / progressive Huffman, 1 or 3 components, an EOI marker after the first
    scan); the size is the stored one (before ``orient``). None for anything else (PNG, CMYK / YCCK,
    arithmetic or lossless JPEG, truncated files, odd headers), which the caller decodes on the CPU."""
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
    return height, width, jpeg_orientation(data, sos)


def orient(img: torch.Tensor, orientation: int) -> torch.Tensor:
    """(..., H, W) as stored -> upright, for EXIF orientation 1-8 (1 and unknown values: as stored);
    contiguous. Works on any device (the device decoder rotates there)."""
    if orientation in (5, 6, 7, 8):                       # the stored rows are the upright columns
        img = img.transpose(-2, -1)
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    flips = {2: (-1,), 3: (-2, -1), 4: (-2,)}.get(orientation)
    return (img.flip(flips) if flips else img).contiguous()


def _orientation_value(value) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def exif_orientation(exif: bytes) -> int:
    """The Orientation tag (0x0112) of IFD0 in EXIF data (TIFF bytes, with or without the 'Exif\\0\\0'
    prefix); 1 when absent or unreadable."""
    tiff = exif[6:] if exif[:6] == b"Exif\x00\x00" else exif
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    def num(at: int, size: int) -> int:
        return int.from_bytes(tiff[at:at + size], order)
    ifd = num(4, 4)
    if ifd + 2 > len(tiff):
        return 1
    for k in range(min(num(ifd, 2), (len(tiff) - ifd - 2) // 12)):
        entry = ifd + 2 + 12 * k
        if num(entry, 2) == 0x0112:                       # type SHORT: the value sits in the first 2 bytes
            return _orientation_value(num(entry + 8, 2))
    return 1


def jpeg_orientation(data: bytes, sos: int) -> int:
    """The EXIF orientation of a JPEG, from its APP1 'Exif' segment before the first scan (at ``sos``)."""
    at = data.find(b"Exif\x00\x00", 0, sos)
    while at >= 4:
        if data[at - 4:at - 2] == b"\xff\xe1":                # the APP1 marker right before it
            length = (data[at - 2] << 8) | data[at - 1]
            return exif_orientation(data[at:at - 2 + length])
        at = data.find(b"Exif\x00\x00", at + 1, sos)
    return 1
