"""Labelled data for the evaluations (issue 11): class indices shared across splits, unreadable
evaluation images left out / counted / named (never replaced), stray top-level images, and the
fine-tune augmentation order (RandAugment, then colour jitter)."""
import json
import shutil

import pytest
import torch
from torch import nn

from eval_helpers import CLASSES, folder_overrides, make_folder
from helpers import PYTHON, cli_env
from maskfeat.cli import main
from maskfeat.config import resolve_config
from maskfeat.defaults import FINETUNE, KNN
from maskfeat.engine.distributed import DistEnv
from maskfeat.errors import UserError
from maskfeat.eval.frozen import (
    embed_splits,
    eval_loader,
    labelled_datasets,
    num_classes_of,
)
from maskfeat.eval.knn import extract_features, knn_accuracy, knn_scores
from maskfeat.eval.metrics import evaluate
from maskfeat.eval.validation import BestTracker, EpochEval


def knn_data(root, *extra):
    return resolve_config(KNN, None, [*folder_overrides(root), *extra])["data"]


def pixels() -> nn.Module:
    """A fixed feature map that tells the three patterns apart: the pixels, pooled to 8x8."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten())


def features_of(data, which):
    train, val = labelled_datasets(data, 32, seed=0)
    ds = {"train": train, "val": val}[which]
    return extract_features(pixels(), eval_loader(ds, 4, data, DistEnv(), 0), DistEnv()), train, val


# -- item 1: a val split lacking a class keeps the train split's class indices ------------------

def test_val_split_without_one_class_keeps_labels_and_accuracy(tmp_path):
    full = make_folder(tmp_path / "full", n_train=6, n_val=4)
    part = tmp_path / "part"
    shutil.copytree(full, part)
    shutil.rmtree(part / "val" / CLASSES[0])                   # val/disk missing: val has hstripes, vstripes
    results = {}
    for name, root in (("full", full), ("part", part)):
        data = knn_data(root)
        (ftr, ytr), train, val = features_of(data, "train")
        (fva, yva), _, _ = features_of(data, "val")
        results[name] = (ftr, ytr, fva, yva, num_classes_of({}, train.split, val.split), val.split.classes)
    ftr, ytr, fva, yva, c_full, _ = results["full"]
    _, _, pva, pya, c_part, part_classes = results["part"]
    keep = yva != 0
    assert pya.tolist() == yva[keep].tolist() == [1] * 4 + [2] * 4       # not shifted down to 0 / 1
    assert c_full == c_part == 3 and part_classes == list(CLASSES)
    torch.testing.assert_close(pva, fva[keep])
    full_pred = knn_scores(ftr, ytr, fva, 3, k=5).argmax(1)
    want = 100.0 * (full_pred[keep] == yva[keep]).float().mean().item()
    assert knn_accuracy(ftr, ytr, pva, pya, c_part, k=5)["top1"] == pytest.approx(want)


def test_val_class_unknown_to_train_is_a_one_line_error(tmp_path):
    root = make_folder(tmp_path / "d", n_train=2, n_val=2)
    shutil.copytree(root / "val" / "disk", root / "val" / "zebra")
    with pytest.raises(UserError,
                       match=r"class folder 'zebra' of .*val is not a class of the train split") as e:
        labelled_datasets(knn_data(root), 32, 0)
    assert "\n" not in str(e.value)


# -- item 11: an image at the top of a labelled split -----------------------------------------

def test_stray_image_at_the_top_of_a_labelled_split_is_a_one_line_error(tmp_path):
    root = make_folder(tmp_path / "d", n_train=2, n_val=2)
    shutil.copy(root / "val" / "disk" / "000.png", root / "val" / "stray.png")
    with pytest.raises(UserError,
                       match=r"val/stray.png lies outside the class sub-folders .*1 such image") as e:
        labelled_datasets(knn_data(root), 32, 0)
    assert "\n" not in str(e.value)


# -- item 2: unreadable evaluation images ----------------------------------------------------

def break_files(folder, names=None):
    for p in sorted(folder.iterdir()):
        if names is None or p.name in names:
            p.write_bytes(b"")


def test_feature_extraction_leaves_unreadable_images_out_and_names_them(tmp_path):
    root = make_folder(tmp_path / "d", n_train=4, n_val=4)
    data = knn_data(root)
    before, _, _ = features_of(data, "val")
    break_files(root / "val" / "hstripes", {"001.png", "003.png"})
    after, _, val = features_of(data, "val")
    assert (after.total, after.samples) == (12, 10)
    assert sorted(after.unreadable) == [5, 7]                     # indices in the split: hstripes are 4..7
    assert all("hstripes/00" in name and "(" in name for name in after.unreadable.values())
    keep = torch.tensor([i not in (5, 7) for i in range(12)])
    torch.testing.assert_close(after.features, before.features[keep])      # no other sample in their place
    assert after.labels.tolist() == before.labels[keep].tolist()
    item = val[5]
    assert item["valid"] is False and item["bad"] == 1 and item["label"] == 1
    assert "001.png" in item["bad_paths"]


def test_embed_splits_names_each_unreadable_file_once_and_applies_max_bad_fraction(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n_train=4, n_val=4)
    break_files(root / "train" / "disk", {"002.png"})
    break_files(root / "val" / "vstripes", {"000.png"})
    data = knn_data(root, "data.max_bad_fraction=0.1")
    feats, classes = embed_splits(pixels(), labelled_datasets(data, 32, 0), data, 5, DistEnv(), 0)
    assert classes == 3 and (feats["train"].samples, feats["val"].samples) == (11, 11)
    f, y = feats["val"]                                            # unpacks as before: (features, labels)
    assert f.shape == (11, 192) and y.tolist() == [0] * 4 + [1] * 4 + [2] * 3
    err = capsys.readouterr().err
    assert err.count("skipped unreadable train file") == 1 and err.count("skipped unreadable val file") == 1
    assert "train/disk/002.png" in err and "val/vstripes/000.png" in err
    with pytest.raises(UserError,
                       match=r"data: 1 of 12 train images are unreadable \(> data.max_bad_fraction=0.05\), "
                             r"e.g. .*train/disk/002.png"):
        limited = knn_data(root, "data.max_bad_fraction=0.05")
        embed_splits(pixels(), labelled_datasets(limited, 32, 0), limited, 5, DistEnv(), 0)


class Centroids(nn.Module):
    """A fixed classifier: logits = - distance of the pooled pixels to each class's mean."""

    def __init__(self, feats, labels):
        super().__init__()
        self.means = torch.stack([feats[labels == c].mean(0) for c in range(3)])

    def forward(self, x):
        return -torch.cdist(pixels()(x), self.means)


class FakeTrainer:
    def __init__(self, model, limit):
        self.model, self.dtype, self.epochs, self.saved = model, None, 3, 0
        self.cfg = {"data": {"max_bad_fraction": limit}}

    def save(self, name):
        self.saved += 1


def test_validation_leaves_out_unreadable_images_counts_them_and_stops_beyond_the_limit(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n_train=6, n_val=4)
    gone = tmp_path / "gone"
    shutil.copytree(root, gone)
    shutil.rmtree(gone / "val" / "vstripes")
    break_files(root / "val" / "vstripes")                        # every val file of one class emptied
    (ftr, ytr), _, _ = features_of(knn_data(root), "train")
    model = Centroids(ftr, ytr)
    _, val = labelled_datasets(knn_data(root), 32, 0, train_aug=FINETUNE["aug"])
    _, val_gone = labelled_datasets(knn_data(gone), 32, 0)
    m = evaluate(model, eval_loader(val, 5, knn_data(root), DistEnv(), 0), DistEnv())
    ref = evaluate(model, eval_loader(val_gone, 5, knn_data(gone), DistEnv(), 0), DistEnv())
    assert (m["samples"], m["total"], len(m["unreadable"])) == (8, 12, 4)
    assert ref["samples"] == ref["total"] == 8
    assert m["top1"] == pytest.approx(ref["top1"]) and m["loss"] == pytest.approx(ref["loss"])
    loader = eval_loader(val, 5, knn_data(root), DistEnv(), 0)
    with pytest.raises(UserError,
                       match=r"data: 4 of 12 val images are unreadable \(> data.max_bad_fraction=0.01\), "
                             r"e.g. .*vstripes/000.png"):
        EpochEval(loader, DistEnv(), BestTracker())(FakeTrainer(model, 0.01), 1)
    capsys.readouterr()
    check = EpochEval(loader, DistEnv(), BestTracker())
    trainer = FakeTrainer(model, 0.5)
    out = [check(trainer, epoch) for epoch in (1, 2)]
    assert out[0]["val_samples"] == 8 and out[0]["val_unreadable"] == 4
    assert out[0]["val_top1"] == pytest.approx(ref["top1"])
    err = capsys.readouterr().err
    # once, not per epoch
    assert err.count("skipped unreadable val file") == 4 and err.count("vstripes/002.png") == 1
    assert err.count("on 8 of 12 val images (4 unreadable skipped)") == 2


def test_training_replaces_an_unreadable_image_by_a_readable_one_counted_and_named(tmp_path, capsys):
    root = make_folder(tmp_path / "d", n_train=6, n_val=3)
    break_files(root / "train" / "disk", {"005.png"})            # index 5: the next is hstripes/000 (label 1)
    train, _ = labelled_datasets(knn_data(root), 32, 0, train_aug=FINETUNE["aug"])
    item = train[(5, 0)]
    assert item["valid"] is True and item["label"] == 1 and item["bad"] == 1
    assert "disk/005.png" in item["bad_paths"]
    out = tmp_path / "ft"
    args = ["finetune", *folder_overrides(root), "train.batch_size=6", "train.epochs=2",
            "train.progress=false", "train.log_interval=1", f"train.output_dir={out}",
            "data.max_bad_fraction=0.5", "aug.mixup=0", "aug.cutmix=0"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("skipped unreadable file") == 1 and "train/disk/005.png" in err
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert max(r.get("bad_images", 0) for r in logged) == 2                 # read once per epoch


@pytest.mark.slow
def test_two_processes_name_unreadable_val_files_once_and_agree_with_one(tmp_path):
    root = make_folder(tmp_path / "d", n_train=5, n_val=5)                 # 15 val images: ranks pad one
    break_files(root / "val" / "disk", {"000.png"})     # sample 0: rank 1 pads its shard with it (read twice)
    args = folder_overrides(root) + ["knn.k=5", "eval.batch_size=4", "eval.progress=false",
                                     "data.max_bad_fraction=0.1"]
    assert main(["knn", *args, f"eval.output_dir={tmp_path / 'one'}"]) == 0
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "maskfeat",
           "knn", *args, f"eval.output_dir={tmp_path / 'two'}"]
    import subprocess
    proc = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("skipped unreadable val file") == 1 and "disk/000.png" in proc.stderr
    one, two = (json.loads((tmp_path / d / "knn.json").read_text()) for d in ("one", "two"))
    assert one["test_samples"] == two["test_samples"] == 14 and one["train_samples"] == 15
    assert two["top1"] == pytest.approx(one["top1"])


# -- item 15: colour jitter after RandAugment ------------------------------------------------

def test_finetune_recipe_applies_randaugment_then_color_jitter():
    from timm.data import create_transform
    from torchvision.transforms import ColorJitter

    from maskfeat.data.timm_transforms import classification_transform

    for path in ("configs/finetune/vit-base-p16_in1k.yaml", None):
        cfg = resolve_config(FINETUNE, path, [])
        tf = classification_transform(cfg["data"], 224, train=True, aug=cfg["aug"])
        names = [type(t).__name__ for t in tf.transforms]
        assert names[names.index("RandAugment") + 1] == "ColorJitter", names
        jitter = tf.transforms[names.index("ColorJitter")]
        assert ((jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
                == ((0.6, 1.4),) * 3 + (None,))
        assert names.index("ColorJitter") < names.index("RandomErasing")
    cfg = resolve_config(FINETUNE, None, ["aug.color_jitter=0"])         # off: the pipeline timm builds alone
    ours = classification_transform(cfg["data"], 64, train=True, aug=cfg["aug"])
    a = cfg["aug"]
    theirs = create_transform(64, is_training=True, scale=tuple(a["scale"]), ratio=tuple(a["ratio"]),
                              hflip=a["hflip"], auto_augment=a["auto_augment"], color_jitter=None,
                              re_prob=a["re_prob"], re_mode=a["re_mode"],
                              interpolation=cfg["data"]["interpolation"], mean=tuple(cfg["data"]["mean"]),
                              std=tuple(cfg["data"]["std"]))
    assert repr(ours) == repr(theirs) and not any(isinstance(t, ColorJitter) for t in ours.transforms)
