"""The public layouts as they ship (issue 22): ImageNet (mmpretrain), ImageFolder, Kinetics (official,
mmaction2, SlowFast CSV), each job on a tiny fake, with the recipe's defaults and data.root only where
a recipe exists for the layout (docs/video.md, docs/pretraining.md give the other keys)."""
import warnings

import numpy as np
import pytest
from PIL import Image

from maskfeat.cli import main
from maskfeat.config import builtin_config
from maskfeat.data.labelled_splits import load_splits
from maskfeat.data.prepare import PrepareSpec, prepare
from maskfeat.data.sources import listing
from maskfeat.errors import ConfigError, DataWarning, UserError, plain_warnings
from maskfeat.tasks import build_config

av = pytest.importorskip("av")
from test_video_data import write_video  # noqa: E402

IN1K = {job: str(builtin_config(f"{job}/{name}")) for job, name in (
    ("pretrain", "maskfeat_vit-base-p16_in1k"), ("finetune", "vit-base-p16_in1k"),
    ("linprobe", "vit-base-p16_in1k"), ("knn", "vit-base-p16_in1k"))}
K400 = {"pretrain": str(builtin_config("pretrain/maskfeat_mvitv2-s-16x4_k400")),
        "finetune": str(builtin_config("finetune/mvitv2-s-16x4_k400"))}
WNIDS = ("n01440764", "n01443537")


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, quality=90)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """mmpretrain's layout: train/<wnid>/<wnid>_N.JPEG (2 x 3), flat val/ (4), meta/{train,val}.txt."""
    root = tmp_path_factory.mktemp("imagenet")
    train, val = [], []
    for c, wnid in enumerate(WNIDS):
        for n in range(3):
            _jpeg(root / "train" / wnid / f"{wnid}_{n}.JPEG", 10 * c + n)
            train.append(f"{wnid}/{wnid}_{n}.JPEG {c}")
    for n in range(4):
        _jpeg(root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG", 100 + n)
        val.append(f"ILSVRC2012_val_{n:08d}.JPEG {n % 2}")
    (root / "meta").mkdir()
    (root / "meta" / "train.txt").write_text("\n".join(train) + "\n")
    (root / "meta" / "val.txt").write_text("\n".join(val) + "\n")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """ImageFolder: train/<class>/ (3 x 8 = 24 images), val/<class>/ (3 x 3 = 9): the issue's counts."""
    root = tmp_path_factory.mktemp("imagefolder")
    for c, name in enumerate(("cat", "dog", "fox")):
        for n in range(8):
            _jpeg(root / "train" / name / f"{n}.jpg", 10 * c + n)
        for n in range(3):
            _jpeg(root / "val" / name / f"{n}.jpg", 200 + 10 * c + n)
    return root


def _labelled_counts(cfg):
    train, val = load_splits(cfg["data"])
    return len(train), len(val), len(set(train.labels.tolist()))


# -- ImageNet, mmpretrain's layout: data.root is the only key ---------------------------------------

@pytest.mark.parametrize("job", ["finetune", "linprobe", "knn"])
def test_imagenet_labelled_jobs_with_the_recipe_and_root_only(imagenet, job):
    cfg = build_config(job, IN1K[job], [f"data.root={imagenet}"])
    assert _labelled_counts(cfg) == (6, 4, 2)


def test_imagenet_pretrain_readme_command(imagenet, tmp_path):
    cfg = build_config("pretrain", IN1K["pretrain"], [f"data.root={imagenet}"])
    got = listing(cfg["data"], "image")
    assert len(got) == 6 and sorted(set(got.labels.tolist())) == [0, 1]
    rc = main(["pretrain", "--config", IN1K["pretrain"], f"data.root={imagenet}", "model.arch=vit-pico",
               "model.img_size=32", "mask.min_num_patches=1", "train.batch_size=3", "train.max_steps=2",
               "data.num_workers=0", "train.progress=false", "train.amp=none", "train.compile=false",
               f"train.output_dir={tmp_path / 'run'}"])
    assert rc == 0 and (tmp_path / "run" / "last.pth").is_file()


def test_imagenet_prepare_with_split(imagenet, tmp_path):
    m = prepare(PrepareSpec("list", str(imagenet), str(tmp_path / "s"), ann_file="meta/train.txt",
                            progress=False, split="train"))
    assert m.total == 6 and m.label_counts == {0: 3, 1: 3}
    with pytest.raises(UserError, match=r"--ann-file: .*names 6\+ missing files"):      # before: no prefix
        prepare(PrepareSpec("list", str(imagenet), str(tmp_path / "t"), ann_file="meta/train.txt",
                            progress=False))


# -- ImageFolder -------------------------------------------------------------------------------------

def test_imagefolder_pretrain_reads_train_only_and_says_so(image_folder):
    cfg = build_config("pretrain", None, ["data.source=folder", f"data.root={image_folder}"])
    with pytest.warns(DataWarning, match=r"data.train_split: .* holds the split folders train, val; "
                                         r"pre-training reads train/ only"):
        got = listing(cfg["data"], "image")
    assert len(got) == 24                                       # before: 33 (train and val images)
    assert all("/train/" in p for p in got.all_paths())
    explicit = build_config("pretrain", None, ["data.source=folder", f"data.root={image_folder}/train"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(listing(explicit["data"], "image")) == 24


@pytest.mark.parametrize("job", ["finetune", "linprobe", "knn"])
def test_imagefolder_labelled_jobs(image_folder, job):
    cfg = build_config(job, None, ["data.source=folder", f"data.root={image_folder}"])
    assert _labelled_counts(cfg) == (24, 9, 3)


def test_imagefolder_prepare_needs_a_split(image_folder, tmp_path):
    with pytest.raises(UserError, match=r"^--split: .* holds the split folders train, val; give --split train"):
        prepare(PrepareSpec("folder", str(image_folder), str(tmp_path / "x"), progress=False))
    assert not (tmp_path / "x").exists()
    m = prepare(PrepareSpec("folder", str(image_folder), str(tmp_path / "s"), progress=False, split="train"))
    assert m.total == 24 and m.label_counts == {0: 8, 1: 8, 2: 8} and m.classes == ["cat", "dog", "fox"]
