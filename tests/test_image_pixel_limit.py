"""Decompression bombs (issue 11 item 4): an image whose header claims more than data.max_image_pixels
pixels is refused from its header, before any decoding, and skipped like any unreadable file in
every path that decodes (pre-training on the CPU and with device decoding, labelled data, visualize)."""
import io
import struct

import numpy as np
import pytest
from PIL import Image

from helpers import png_bomb
from maskfeat.config import resolve_config
from maskfeat.data import build_pretrain_dataset, decode_rgb
from maskfeat.data.images import jpeg_header
from maskfeat.data.labelled import LabelledDataset
from maskfeat.data.labelled_splits import load_split
from maskfeat.data.timm_transforms import classification_transform
from maskfeat.defaults import FINETUNE, KNN, LINPROBE, PRETRAIN
from maskfeat.errors import UserError

PIL_LIMIT = Image.MAX_IMAGE_PIXELS


def jpeg_bomb(size=65_000) -> bytes:
    """A real 16x16 JPEG whose start-of-frame is patched to claim size x size pixels."""
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    i = next(k for k in range(2, len(data) - 1) if data[k] == 0xFF and data[k + 1] == 0xC0)
    data[i + 5:i + 9] = struct.pack(">HH", size, size)
    assert jpeg_header(bytes(data))[:2] == (size, size)
    return bytes(data)


def write_tree(folder, n_good=3):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(folder / f"{i}_good.png")
    (folder / "1_bomb.png").write_bytes(png_bomb())
    (folder / "2_bomb.jpg").write_bytes(jpeg_bomb())


def test_decode_refuses_a_bomb_from_its_header(tmp_path):
    (tmp_path / "b.png").write_bytes(png_bomb())
    (tmp_path / "b.jpg").write_bytes(jpeg_bomb())
    with pytest.raises(ValueError,
                       match=rf"^image too large: 10000000000 pixels > data.max_image_pixels={PIL_LIMIT}$"):
        decode_rgb(tmp_path / "b.png")                   # (PIL refuses over twice its limit; the size is its)
    (tmp_path / "b2.png").write_bytes(png_bomb(10_000, 10_000))        # over our limit, under twice PIL's
    with pytest.raises(ValueError, match=rf"^image too large: 10000x10000 = 100000000 pixels > "
                                         rf"data.max_image_pixels={PIL_LIMIT}$"):
        decode_rgb(tmp_path / "b2.png")
    with pytest.raises(ValueError, match=r"image too large: 65000x65000 = 4225000000 pixels"):
        decode_rgb(tmp_path / "b.jpg")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "s.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "s.jpg")
    for name in ("s.png", "s.jpg"):
        assert decode_rgb(tmp_path / name, max_pixels=600).shape == (3, 20, 30)
        with pytest.raises(ValueError, match=r"30x20 = 600 pixels > data.max_image_pixels=599"):
            decode_rgb(tmp_path / name, max_pixels=599)
    (tmp_path / "huge_but_allowed.png").write_bytes(png_bomb(20_000, 10_000))   # 2e8 > 2x PIL's own limit
    with pytest.raises(ValueError, match="image too large for PIL: .*exceeds limit"):   # PIL's own refusal
        decode_rgb(tmp_path / "huge_but_allowed.png", max_pixels=0)


def tiny_pretrain(folder, *extra):
    return resolve_config(PRETRAIN, None, ["model.img_size=32", "mask.min_num_patches=1",
                                           "data.source=folder", f"data.root={folder}", *extra])


def test_pretraining_skips_bombs_on_the_cpu_and_with_device_decoding(tmp_path):
    write_tree(tmp_path / "imgs")
    for decode in ("cpu", "device"):
        ds = build_pretrain_dataset(tiny_pretrain(tmp_path / "imgs", f"data.decode={decode}"))
        names = [ds.files.path(i).rsplit("/", 1)[1] for i in range(len(ds))]
        assert names == ["0_good.png", "1_bomb.png", "1_good.png", "2_bomb.jpg", "2_good.png"]
        for i, name in enumerate(names):
            item = ds[(i, 0)]
            assert item["bad"] == ("bomb" in name), (decode, name)
            if "bomb" in name:
                assert f"{name} (image too large: " in item["bad_paths"]
                assert "pixels > data.max_image_pixels" in item["bad_paths"]
                # no bomb sent to the device
                assert item.get("jpeg", None) is None or item["jpeg"].numel() == 0
            assert item["images"].shape == (3, 32, 32)


def test_labelled_data_marks_a_bomb_unreadable(tmp_path):
    for split in ("train", "val"):
        write_tree(tmp_path / "d" / split / "cls")
    data = resolve_config(KNN, None, ["data.source=folder", f"data.root={tmp_path / 'd'}"])["data"]
    split = load_split(data, "val")
    ds = LabelledDataset(split, classification_transform(data, 32, train=False), random_transform=False,
                         replace_bad=False)
    flags = [(split.describe(i).rsplit("/", 1)[1], ds[i]["valid"]) for i in range(len(ds))]
    assert flags == [("0_good.png", True), ("1_bomb.png", False), ("1_good.png", True), ("2_bomb.jpg", False),
                     ("2_good.png", True)]
    assert "image too large" in ds[1]["bad_paths"] and "image too large" in ds[3]["bad_paths"]
    small = load_split(dict(data, max_image_pixels=399), "val")             # the 20x20 images are over it too
    assert not any(LabelledDataset(small, ds.transform, replace_bad=False)[i]["valid"] for i in range(5))


def test_visualize_names_a_bomb_in_one_line(tmp_path):
    from maskfeat.commands.visualize import preprocess

    (tmp_path / "b.png").write_bytes(png_bomb())
    with pytest.raises(UserError,
                       match=r"b.png: cannot decode image \(image too large: 10000000000 pixels") as e:
        preprocess(str(tmp_path / "b.png"), 32, [0.5] * 3, [0.5] * 3)
    assert "\n" not in str(e.value)


def test_max_image_pixels_key_defaults_to_pils_threshold_and_is_checked(tmp_path):
    for schema in (PRETRAIN, FINETUNE, LINPROBE, KNN):
        assert schema["data"]["max_image_pixels"] == PIL_LIMIT == 89_478_485
    write_tree(tmp_path / "imgs")
    ds = build_pretrain_dataset(tiny_pretrain(tmp_path / "imgs", "data.max_image_pixels=399"))
    with pytest.raises(UserError,
                       match=r"5 files in a row failed to decode, e.g. .*0_good.png "
                             r"\(image too large: 20x20"):
        ds[(0, 0)]
    with pytest.raises(UserError, match=r"data.max_image_pixels: must be >= 0"):
        build_pretrain_dataset(tiny_pretrain(tmp_path / "imgs", "data.max_image_pixels=-1"))
