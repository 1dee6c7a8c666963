"""`maskfeat finetune`: pre-trained weights into timm's classifier, the training run, and that
pre-training helps a fine-tune on little labelled data."""
import json

import pytest
import torch
import torch.nn.functional as F

from eval_helpers import folder_overrides, make_folder
from helpers import save_pretrained
from maskfeat.cli import main
from maskfeat.errors import UserError
from maskfeat.eval.classifier import (
    CLASSIFIER_DROPPED,
    CLASSIFIER_NEW,
    build_classifier,
)
from maskfeat.eval.pretrained import load_encoder_into, read_pretrained


def test_encoder_loads_into_timm_classifier_same_features(tmp_path):
    pre = save_pretrained(tmp_path / "last.pth")
    clf = build_classifier("vit-pico", 32, 16, num_classes=4).eval()
    report = load_encoder_into(clf, read_pretrained(tmp_path / "last.pth"), CLASSIFIER_NEW,
                               CLASSIFIER_DROPPED)
    assert report.missing == ["fc_norm.bias", "fc_norm.weight", "head.bias", "head.weight"]
    assert report.unexpected == ["mask_token", "norm.bias", "norm.weight"] and report.resampled == ""
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = pre.encoder.eval().forward_features(x)                 # (B, 1 + N, D), final norm included
        timm_tokens = clf.forward_features(x)                          # fc-norm model: no final norm
    torch.testing.assert_close(pre.encoder.norm(timm_tokens), ours, rtol=1e-5, atol=1e-5)
    assert clf(x).shape == (2, 4)


def test_pos_embed_resampled_to_a_larger_image(tmp_path):
    pre = save_pretrained(tmp_path / "last.pth", img_size=32)          # 2x2 grid
    clf = build_classifier("vit-pico", 64, 16, num_classes=4)          # 4x4 grid
    report = load_encoder_into(clf, read_pretrained(tmp_path / "last.pth"), CLASSIFIER_NEW,
                               CLASSIFIER_DROPPED)
    assert report.resampled == "2x2 -> 4x4"
    src, dst = pre.encoder.pos_embed.detach(), clf.pos_embed.detach()
    torch.testing.assert_close(dst[:, :1], src[:, :1])                 # the cls position is kept
    grid = src[:, 1:].reshape(1, 2, 2, -1).permute(0, 3, 1, 2)          # (1, D, 2, 2)
    ref = F.interpolate(grid, size=(4, 4), mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(dst[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 16, -1))
    torch.testing.assert_close(clf.blocks[1].mlp.fc2.weight, pre.encoder.blocks[1].mlp.fc2.weight)


def test_wrong_arch_is_a_one_line_error(tmp_path):
    save_pretrained(tmp_path / "last.pth")
    clf = build_classifier("vit-mini", 32, 16, num_classes=4)
    with pytest.raises(UserError) as e:
        load_encoder_into(clf, read_pretrained(tmp_path / "last.pth"), CLASSIFIER_NEW, CLASSIFIER_DROPPED)
    assert "pre-trained as vit-pico" in str(e.value) and "\n" not in str(e.value)


def test_missing_default_checkpoint_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)                      # the default model.pretrained is relative: not there
    assert main(["finetune", f"train.output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found: work_dirs/maskfeat_vit-mini_skimage/last.pth" in err[0]
    assert "run `maskfeat pretrain` first" in err[0]


def test_finetune_cli_runs_keeps_best_and_resumes(tmp_path):
    root = make_folder(tmp_path / "shapes", n_train=8, n_val=4)
    save_pretrained(tmp_path / "last.pth", img_size=32, patch=8)
    out = tmp_path / "ft"
    args = ["finetune", *folder_overrides(root), f"model.pretrained={tmp_path / 'last.pth'}",
            "model.ema=true", "model.ema_decay=0.9", "train.batch_size=8", "train.epochs=2",
            "train.progress=false", "train.log_interval=1", f"train.output_dir={out}",
            "optim.warmup_epochs=0.5", "aug.re_prob=0.25"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    hist = metrics["history"]
    assert [h["epoch"] for h in hist] == [1, 2] and metrics["num_classes"] == 3
    assert metrics["best_top1"] == max(h["val_top1"] for h in hist)
    assert all(0 <= h["val_top1"] <= h["val_top5"] == 100.0 for h in hist) and "ema_top1" in hist[0]
    best = torch.load(out / "best.pth", weights_only=True)
    assert best["extra"]["best"]["best"] == metrics["best_top1"] and "ema" in best["extra"]
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in logged if "val_top1" in r] == [1, 2]
    assert any("loss" in r and r["loss"] > 0 for r in logged)
    # resume for one more epoch: the best-so-far survives
    assert main([*args, "train.epochs=3", "train.resume=auto"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in again["history"]] == [3] and again["best_top1"] >= metrics["best_top1"]


def test_imagenet_recipes_hold_the_spec_values():
    from maskfeat.data.timm_transforms import classification_transform
    from maskfeat.engine.optim import scaled_lr
    from maskfeat.tasks import build_config

    cfg = build_config("finetune", "configs/finetune/vit-base-p16_in1k.yaml", [])
    m, a, o, t = cfg["model"], cfg["aug"], cfg["optim"], cfg["train"]
    assert (m["arch"], m["img_size"], m["global_pool"], m["drop_path_rate"]) == ("vit-base", 224, "avg", 0.1)
    assert scaled_lr(o, t["batch_size"] * 8) == pytest.approx(8e-3)
    assert scaled_lr(o, 512) == pytest.approx(2e-3)
    assert ((o["weight_decay"], o["layer_decay"], o["warmup_epochs"], o["min_lr"], t["epochs"])
            == (0.05, 0.65, 20, 1e-6, 100))
    assert (a["auto_augment"], a["color_jitter"], a["re_prob"]) == ("rand-m9-mstd0.5-inc1", 0.4, 0.25)
    assert (a["mixup"], a["cutmix"], a["mixup_mode"], a["label_smoothing"]) == (0.8, 1.0, "batch", 0.1)
    test_tf = [type(t).__name__ for t in classification_transform(cfg["data"], 224, train=False).transforms]
    resize = classification_transform(cfg["data"], 224, train=False).transforms[0]
    assert test_tf[:2] == ["Resize", "CenterCrop"] and resize.size == 256
    lp = build_config("linprobe", "configs/linprobe/vit-base-p16_in1k.yaml", [])
    assert lp["optim"]["name"] == "lars" and scaled_lr(lp["optim"], 16384) == pytest.approx(6.4)
    assert lp["train"]["batch_size"] * lp["train"]["accum_steps"] * 8 == 16384


FMNIST_NORM = ["data.mean=[0.286,0.286,0.286]", "data.std=[0.353,0.353,0.353]"]


@pytest.mark.slow
@pytest.mark.usefixtures("fashion_mnist")
def test_pretraining_helps_a_small_labelled_finetune(tmp_path):
    """80 MaskFeat steps on Fashion-MNIST's unlabelled train images, then the same fine-tune
    (400 labels, 6 epochs) from those weights and from a random init: pre-training wins."""
    shape = ["model.arch=vit-pico", "model.img_size=32", "model.patch_size=8"]
    assert main(["pretrain", *shape, "data.source=fashion-mnist", "hog.cell_size=4", "hog.gaussian_window=8",
                 "mask.min_num_patches=2", "data.num_workers=0", "train.batch_size=64", "train.epochs=1",
                 "train.max_steps=80", "optim.lr=4e-3", "optim.warmup_epochs=0.01", "train.progress=false",
                 f"train.output_dir={tmp_path / 'pt'}", *FMNIST_NORM]) == 0
    top1 = {}
    for name, ckpt in (("pretrained", tmp_path / "pt" / "last.pth"), ("random", "")):
        out = tmp_path / f"ft_{name}"
        assert main(["finetune", *shape, f"model.pretrained={ckpt}", "data.source=fashion-mnist",
                     "data.train_subset=400", "data.val_subset=500", "data.num_workers=0",
                     "data.crop_pct=1.0", "train.batch_size=32", "train.epochs=6", "optim.lr=8e-3",
                     "optim.base_batch_size=256", "optim.warmup_epochs=1.0", "aug.mixup=0", "aug.cutmix=0",
                     "aug.auto_augment=", "aug.re_prob=0", "aug.scale=[0.5,1.0]", "train.progress=false",
                     f"train.output_dir={out}", *FMNIST_NORM]) == 0
        top1[name] = json.loads((out / "metrics.json").read_text())["best_top1"]
    assert top1["random"] > 15.0                              # it learnt something (chance is 10%)
    assert top1["pretrained"] >= top1["random"] + 3.0, top1
