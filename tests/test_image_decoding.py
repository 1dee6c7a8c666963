"""Image decoding: torchcodec (JPEG, 8-bit PNG, WebP) or PIL, and the EXIF orientation applied in every
path (CPU decode, shards' bytes, labelled samples, data.decode=device) -- a phone photo tagged 'rotate 90'
decodes as its upright copy."""
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from skimage import data as skdata

from maskfeat.config import resolve_config
from maskfeat.data import build_pretrain_dataset, build_pretrain_loader
from maskfeat.data.images import (
    decode_rgb,
    decode_rgb_bytes,
    device_jpeg_info,
    exif_orientation,
)
from maskfeat.data.labelled_sample import LabelledSample
from maskfeat.defaults import PRETRAIN

CPU = torch.device("cpu")


def encoded(im: Image.Image, fmt: str, orientation: int = 0, **kw) -> bytes:
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def pil_upright(data: bytes) -> torch.Tensor:
    with Image.open(io.BytesIO(data)) as im:
        rgb = ImageOps.exif_transpose(im).convert("RGB")
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1)


def test_every_orientation_matches_pil_in_each_decoder(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)     # H 5, W 7: not square
    im = Image.fromarray(arr)
    for orientation in range(1, 9):
        for fmt, kw in (("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"lossless": True}), ("TIFF", {})):
            data = encoded(im, fmt, orientation, **kw)            # PNG / JPEG / WebP: torchcodec, TIFF: PIL
            got = decode_rgb_bytes(data)
            assert got.shape == ((3, 7, 5) if orientation >= 5 else (3, 5, 7)), (fmt, orientation)
            assert torch.equal(got, pil_upright(data)), (fmt, orientation)
    # big-endian EXIF ('MM'), the 'Exif\0\0' prefix, and junk
    mm = b"MM\x00\x2a\x00\x00\x00\x08\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
    assert exif_orientation(mm) == 6 and exif_orientation(b"Exif\x00\x00" + mm) == 6
    assert exif_orientation(mm[:12]) == 1 and exif_orientation(b"") == 1
    assert exif_orientation(b"II*\x00junk") == 1


@pytest.fixture
def phone_photos(tmp_path):
    """An upright photo (64 wide, 48 high) and its 'phone' copy: stored sideways, EXIF orientation 6."""
    upright = Image.fromarray(skdata.astronaut()).resize((64, 48), Image.BILINEAR)
    files = {"upright": encoded(upright, "JPEG", quality=95),
             "phone": encoded(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", 6, quality=95)}
    for name, data in files.items():
        for k in range(4):                                        # a folder of 4 copies each
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / f"{k}.jpg").write_bytes(data)
    return tmp_path, files


def mean_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


def test_orientation_6_decodes_as_its_upright_copy(phone_photos):
    root, files = phone_photos
    assert device_jpeg_info(files["phone"]) == (64, 48, 6)        # stored sideways, tagged 'rotate 90'
    upright, phone = decode_rgb(root / "upright/0.jpg"), decode_rgb(root / "phone/0.jpg")
    assert phone.shape == upright.shape == (3, 48, 64)
    assert mean_diff(phone, upright) < 2.0                        # JPEG error (sideways: another shape)
    assert torch.equal(decode_rgb_bytes(files["phone"]), phone)   # shards, labelled data, visualize
    sample = LabelledSample(lambda img: torch.from_numpy(np.asarray(img).copy()))
    assert sample.from_bytes(files["phone"], 0, 0, 0)["images"].shape == (48, 64, 3)


def items(root, decode: str) -> torch.Tensor:
    cfg = resolve_config(PRETRAIN, None, [
        "model.img_size=32", "mask.min_num_patches=2", "data.source=folder", f"data.root={root}",
        f"data.decode={decode}", "data.num_workers=0", "train.batch_size=4", "train.seed=3"])
    loader = build_pretrain_loader(build_pretrain_dataset(cfg), cfg, 0, 1, CPU)
    loader.sampler.set_epoch(0)
    return next(iter(loader))["images"]


def test_orientation_6_in_the_pretraining_paths(phone_photos):
    """The CPU path and data.decode=device (decoded, turned upright, then cropped on the device: here the
    CPU) give the phone photo's crops as the upright copy's (same boxes: drawn on the upright size)."""
    root, _ = phone_photos
    cpu_up, cpu_phone = items(root / "upright", "cpu"), items(root / "phone", "cpu")
    dev_phone = items(root / "phone", "device")
    assert torch.equal(dev_phone, cpu_phone)
    assert mean_diff(cpu_phone, cpu_up) < 2.0


def test_device_decoder_that_ignores_exif_is_turned_upright_on_the_device(phone_photos, monkeypatch):
    """A device decoder that returns the stored pixels (nvJPEG may): the probe finds it out and
    ``orient`` turns the images upright on the device -- the same crops as the CPU path."""
    from maskfeat.data import device_decode

    def stored_pixels(datas, mode="RGB", device=None):
        out = []
        for data in datas:
            with Image.open(io.BytesIO(data.numpy().tobytes())) as im:   # no exif_transpose
                out.append(torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1))
        return out

    monkeypatch.setattr(device_decode, "decode_jpeg", stored_pixels)
    assert not device_decode.decoder_orients(CPU)
    root, _ = phone_photos
    assert torch.equal(items(root / "phone", "device"), items(root / "phone", "cpu"))


def test_without_torchcodec_pil_decodes_the_same_pixels(monkeypatch, torchcodec):
    """A machine without torchcodec (or FFmpeg's libraries it loads): every format through PIL, upright,
    the same pixels as torchcodec's (libjpeg-turbo, libpng, libwebp on both sides)."""
    from maskfeat.data import images

    photo = Image.fromarray(skdata.astronaut()[::4, ::4])
    files = [encoded(photo, "JPEG", quality=90), encoded(photo, "JPEG", 6, quality=90),
             encoded(photo, "PNG"), encoded(photo, "WEBP", lossless=True)]
    with_codec = [decode_rgb_bytes(f) for f in files]
    assert images._torchcodec() is not None
    monkeypatch.setattr(images, "_torchcodec", lambda: None)
    without = [decode_rgb_bytes(f) for f in files]
    assert [tuple(t.shape) for t in without] == [(3, 128, 128)] * 4
    assert all(torch.equal(a, b) for a, b in zip(with_codec, without))
