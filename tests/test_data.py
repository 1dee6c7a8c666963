import numpy as np
import pytest
import torch
from PIL import Image

from maskfeat.config import resolve_config
from maskfeat.data import (
    EpochSampler,
    build_pretrain_dataset,
    decode_rgb,
    read_list_file,
    scan_folder,
    skimage_photos,
)
from maskfeat.defaults import PRETRAIN
from maskfeat.errors import UserError


def write_images(folder, n, size=(40, 30), fmt="JPEG", ext=".jpg"):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}{ext}", fmt)


def test_folder_with_class_subfolders_and_flat(tmp_path):
    write_images(tmp_path / "cls" / "b", 2)
    write_images(tmp_path / "cls" / "a", 3, ext=".png", fmt="PNG")
    files = scan_folder(tmp_path / "cls")
    assert files.classes == ["a", "b"] and files.labels.tolist() == [0, 0, 0, 1, 1] and len(files) == 5
    assert files.path(3) == str(tmp_path / "cls" / "b" / "0.jpg")
    write_images(tmp_path / "flat", 4)
    files = scan_folder(tmp_path / "flat")
    assert len(files) == 4 and set(files.labels.tolist()) == {-1} and files.classes == []
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        scan_folder(tmp_path / "empty")
    with pytest.raises(UserError, match="folder not found"):
        scan_folder(tmp_path / "missing")


def test_mmpretrain_list_file(tmp_path):
    write_images(tmp_path / "train" / "n01", 2)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "train.txt").write_text("train/n01/0.jpg 0\ntrain/n01/1.jpg 3\n")
    files = read_list_file(tmp_path, "meta/train.txt")
    assert [files.path(i) for i in range(2)] == [str(tmp_path / "train/n01/0.jpg"),
                                                 str(tmp_path / "train/n01/1.jpg")]
    assert files.labels.tolist() == [0, 3]
    (tmp_path / "meta" / "bad.txt").write_text("train/n01/0.jpg 0\ntrain/n01/9.jpg 1\n")
    with pytest.raises(UserError, match=r"missing files, e.g. .*9.jpg \(line 2\)"):
        read_list_file(tmp_path, "meta/bad.txt")


def test_decode_matches_pil_and_converts_to_rgb(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([arr, arr[..., :1]])).save(tmp_path / "rgba.png")
    assert torch.equal(decode_rgb(tmp_path / "a.png"), torch.from_numpy(arr).permute(2, 0, 1))
    grey = decode_rgb(tmp_path / "grey.png")
    assert grey.shape == (3, 20, 30) and torch.equal(grey[0], grey[2])
    assert torch.equal(decode_rgb(tmp_path / "rgba.png"), torch.from_numpy(arr).permute(2, 0, 1))
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    ref = torch.from_numpy(np.array(Image.open(tmp_path / "a.jpg").convert("RGB"))).permute(2, 0, 1)
    assert (decode_rgb(tmp_path / "a.jpg").int() - ref.int()).abs().max() <= 2
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ValueError):
        decode_rgb(tmp_path / "bad.jpg")


def tiny_cfg(*extra):
    return resolve_config(PRETRAIN, None, ["model.img_size=64", "mask.min_num_patches=2", *extra])


def test_skimage_stream_is_deterministic_per_seed_epoch_index():
    assert len(skimage_photos()) >= 10
    ds = build_pretrain_dataset(tiny_cfg("data.samples_per_epoch=100"))
    assert len(ds) == 100
    a, b, c = ds[(7, 2)], ds[(7, 2)], ds[(7, 3)]
    assert a["images"].shape == (3, 64, 64) and a["images"].dtype == torch.uint8
    assert a["mask"].shape == (4, 4) and a["mask"].sum() == 6
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["mask"], b["mask"])
    assert not torch.equal(a["images"], c["images"])
    assert ds[(7 + len(ds.files), 2)]["images"].shape == (3, 64, 64)


def test_folder_dataset_skips_and_counts_corrupt_images(tmp_path):
    write_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "1.jpg").write_bytes(b"garbage")
    ds = build_pretrain_dataset(tiny_cfg("data.source=folder", f"data.root={tmp_path / 'imgs'}"))
    item = ds[(1, 0)]
    assert item["bad"] == 1 and "1.jpg" in item["bad_paths"] and item["images"].shape == (3, 64, 64)
    assert ds[(0, 0)]["bad"] == 0


def test_epoch_sampler_partitions_ranks_and_skips_for_resume():
    full = list(EpochSampler(20, 1, 0, seed=1).__iter__())
    s = EpochSampler(20, 1, 0, seed=1)
    s.set_epoch(0, skip=8)
    assert list(s) == full[8:] and len(s) == 12
    r0, r1 = EpochSampler(20, 2, 0, seed=1), EpochSampler(20, 2, 1, seed=1)
    i0, i1 = [k for k, _ in r0], [k for k, _ in r1]
    assert len(i0) == len(i1) == 10 and set(i0).isdisjoint(i1)
    e = EpochSampler(20, 1, 0, seed=1)
    e.set_epoch(1)
    assert [k for k, _ in e] != [k for k, _ in full] and all(ep == 1 for _, ep in e)
