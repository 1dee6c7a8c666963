"""IDX reader (gzip / raw) against torchvision's MNIST reader, Fashion-MNIST, labelled sources."""
import gzip
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

from maskfeat.cli import main
from maskfeat.config import resolve_config
from maskfeat.data.idx import find_idx_split, load_idx_split, read_idx
from maskfeat.data.labelled import LabelledDataset
from maskfeat.data.labelled_splits import load_split
from maskfeat.data.loader import build_pretrain_dataset
from maskfeat.data.timm_transforms import classification_transform
from maskfeat.defaults import FINETUNE, PRETRAIN
from maskfeat.errors import UserError


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    code = {np.dtype("uint8"): 0x08, np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D}[array.dtype]
    raw = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_idx_set(root, n_train=24, n_test=12, size=28, seed=0):
    """A tiny MNIST-layout set: label k = a bright square at row band k (3 classes)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 3).astype(np.uint8)
        images = rng.integers(0, 40, size=(n, size, size), dtype=np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 + 8 * k: 8 + 8 * k, 4:24] = 220
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(root / f"{prefix}-labels-idx1-ubyte", labels, compress=False)
    return root


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", ["uint8", ">i4", ">f4"])
def test_read_idx_matches_torchvision(tmp_path, compress, dtype):
    arr = (np.random.default_rng(1).standard_normal((5, 7, 3)) * 50).astype(dtype)
    path = tmp_path / "a-idx3-ubyte"
    write_idx(path, arr, compress)
    ours = read_idx(path)
    assert ours.shape == (5, 7, 3) and ours.dtype.isnative
    np.testing.assert_array_equal(ours, arr)
    if not compress:      # torchvision's reader takes raw files only
        np.testing.assert_array_equal(ours, read_sn3_pascalvincent_tensor(str(path), strict=False).numpy())


def test_read_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "x.gz"
    bad.write_bytes(b"\x01\x02\x08\x01junk")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(UserError, match="payload is 3 bytes"):
        read_idx(short)


def test_split_aliases_and_missing_files_message(tmp_path):
    root = make_idx_set(tmp_path / "mini")
    images, labels = find_idx_split(root, "val")        # 'val' finds the t10k files
    assert images.name == "t10k-images-idx3-ubyte.gz" and labels.name == "t10k-labels-idx1-ubyte"
    x, y = load_idx_split({"source": "idx", "root": str(root)}, "train")
    assert x.shape == (24, 28, 28) and x.dtype == np.uint8 and y.tolist()[:4] == [0, 1, 2, 0]
    with pytest.raises(UserError) as e:
        load_idx_split({"source": "fashion-mnist", "root": str(tmp_path / "empty")}, "train")
    msg = str(e.value)
    assert "\n" not in msg and "dataset-fashion-mnist" in msg and "train-images-idx3-ubyte" in msg


def test_cli_names_the_package_when_fashion_mnist_is_missing(tmp_path, capsys):
    code = main(["knn", f"data.root={tmp_path}", "model.pretrained=", "model.arch=vit-pico",
                 "model.img_size=32", "model.patch_size=16", f"eval.output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("maskfeat knn: error: data.root: IDX files not found")
    assert "apt-get install dataset-fashion-mnist" in err[-1] and "Traceback" not in "".join(err)


@pytest.mark.usefixtures("fashion_mnist")
def test_fashion_mnist_is_the_real_thing():
    x, y = load_idx_split({"source": "fashion-mnist", "root": ""}, "train")
    xt, yt = load_idx_split({"source": "fashion-mnist", "root": ""}, "val")
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10
    assert 0.27 < x.mean() / 255 < 0.30                  # the data set's published mean, 0.286


def test_labelled_idx_dataset_items_and_eval_transform(tmp_path):
    root = make_idx_set(tmp_path / "mini")
    data = dict(FINETUNE["data"], source="idx", root=str(root), train_subset=10, crop_pct=1.0)
    split = load_split(data, "train")
    assert len(split) == 10 and split.num_classes == 3
    tf = classification_transform(data, 56, train=False)
    ds = LabelledDataset(split, tf, random_transform=False)
    item = ds[(3, 0)]
    assert item["images"].shape == (3, 56, 56) and item["label"] == int(split.labels[3])
    # independent reference: PIL bicubic resize of the grey image, then ImageNet normalisation
    ref = Image.fromarray(split.array[3]).convert("RGB").resize((56, 56), Image.BICUBIC)
    ref = torch.from_numpy(np.asarray(ref, dtype=np.float32) / 255).permute(2, 0, 1)
    mean, std = torch.tensor(data["mean"])[:, None, None], torch.tensor(data["std"])[:, None, None]
    torch.testing.assert_close(item["images"], (ref - mean) / std, atol=1e-5, rtol=0)


def test_train_transform_is_seeded_per_sample_and_epoch(tmp_path):
    root = make_idx_set(tmp_path / "mini")
    data = dict(FINETUNE["data"], source="idx", root=str(root))
    tf = classification_transform(data, 32, train=True, aug=FINETUNE["aug"])
    ds = LabelledDataset(load_split(data, "train"), tf, seed=3)
    a, b, c = ds[(5, 0)]["images"], ds[(5, 0)]["images"], ds[(5, 1)]["images"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pretrain_reads_idx(tmp_path):
    root = make_idx_set(tmp_path / "mini")
    cfg = resolve_config(PRETRAIN, None, ["data.source=idx", f"data.root={root}", "model.img_size=56",
                                          "model.patch_size=8", "mask.min_num_patches=4"])
    ds = build_pretrain_dataset(cfg)
    item = ds[(7, 0)]
    assert len(ds) == 24 and item["images"].shape == (3, 56, 56) and item["images"].dtype == torch.uint8
    assert item["mask"].shape == (7, 7) and int(item["mask"].sum()) == round(0.4 * 49)
    # grey images become 3 equal channels
    assert torch.equal(item["images"][0], item["images"][2])
