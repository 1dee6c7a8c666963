"""The k-NN monitor of pre-training (monitor.*) and the run trackers (train.report_to)."""
import csv
import importlib.util
import json

import pytest
import torch

from eval_helpers import make_folder
from helpers import log_losses, maskfeat, one_error_line, tiny_pretrain_overrides
from maskfeat.cli import main
from maskfeat.engine.logger import WRITERS
from maskfeat.schema.common import TRACKERS


def monitor_overrides(root, every=1):
    return [f"monitor.every={every}", "monitor.data.source=folder", f"monitor.data.root={root}",
            "monitor.data.num_workers=0", "monitor.k=5", "monitor.batch_size=16"]


def knn_records(log):
    return [r for r in map(json.loads, log.read_text().splitlines()) if "knn_top1" in r]


def test_monitor_is_maskfeat_knn_on_the_checkpoint_and_leaves_the_losses(tmp_path):
    root = make_folder(tmp_path / "shapes", n_train=8, n_val=4)
    out, off = tmp_path / "on", tmp_path / "off"
    assert main(["pretrain", *tiny_pretrain_overrides(out), *monitor_overrides(root),
                 "monitor.val_samples=10", "train.report_to=[csv]"]) == 0
    recs = knn_records(out / "log.jsonl")
    assert [(r["epoch"], r["step"]) for r in recs] == [(1, 8), (2, 16)]
    # 3 classes: top-5 is null (trivially 100 with 5 classes or fewer), as maskfeat knn reports it
    assert all(0.0 <= r["knn_top1"] <= 100.0 and r["knn_top5"] is None and r["knn_seconds"] > 0 for r in recs)
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["extra"]["knn_monitor"]["history"] == recs          # kept in the checkpoint
    # the same number `maskfeat knn` gives on the checkpoint the monitor saw (val subset: the same 10)
    assert main(["knn", "data.source=folder", f"data.root={root}",
                 "data.num_workers=0", "data.val_subset=10", "knn.k=5",
                 f"model.pretrained={out / 'last.pth'}", "eval.progress=false",
                 f"eval.output_dir={tmp_path / 'knn'}"]) == 0
    knn = json.loads((tmp_path / "knn" / "knn.json").read_text())
    assert knn["test_samples"] == 10 and knn["train_samples"] == 24
    assert knn["top1"] == pytest.approx(recs[-1]["knn_top1"])
    assert knn["top5"] == pytest.approx(recs[-1]["knn_top5"])
    # the monitor changes no loss: a run without it logs the same numbers
    assert main(["pretrain", *tiny_pretrain_overrides(off)]) == 0
    assert log_losses(out / "log.jsonl") == log_losses(off / "log.jsonl")
    # log.csv: every record of log.jsonl, one header (widened once for the k-NN keys)
    jsonl = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert len(rows) == len(jsonl) and (out / "log.csv").read_text().count("lr,") == 1
    assert [float(r["knn_top1"]) for r in rows if r["knn_top1"]] == [r["knn_top1"] for r in recs]
    assert [float(r["loss"]) for r in rows if r["loss"]] == [r["loss"] for r in jsonl if "loss" in r]


def test_csv_tracker_appends_on_resume(tmp_path):
    args = [*tiny_pretrain_overrides(tmp_path / "run"), "train.report_to=[csv]"]
    out = tmp_path / "run"
    assert main(["pretrain", *args, "train.max_steps=8"]) == 0
    assert main(["pretrain", *args]) == 0
    text = (out / "log.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert text.count("\nlr,") + text.startswith("lr,") == 1
    assert [int(r["step"]) for r in rows] == list(range(1, 17))
    assert not (out / "tensorboard").exists()                       # only the trackers asked for


def test_bad_monitor_set_stops_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    proc = maskfeat("pretrain", *tiny_pretrain_overrides(out), *monitor_overrides(tmp_path / "missing"))
    assert proc.returncode == 2
    assert str(tmp_path / "missing") in one_error_line(proc.stderr)
    assert not out.exists()


def test_monitor_and_tracker_keys_say_one_line(tmp_path):
    proc = maskfeat("pretrain", "modality=video", "monitor.every=1", f"train.output_dir={tmp_path / 'v'}")
    assert proc.returncode == 2 and "monitor.every" in one_error_line(proc.stderr)
    proc = maskfeat("pretrain", "train.report_to=[tensorboard,mlflow]", f"train.output_dir={tmp_path / 'm'}")
    assert proc.returncode == 2 and "train.report_to" in one_error_line(proc.stderr)
    assert not (tmp_path / "v").exists() and not (tmp_path / "m").exists()
    assert tuple(WRITERS) == TRACKERS


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_absent_is_one_line(tmp_path):
    proc = maskfeat("pretrain", "train.report_to=[wandb]", f"train.output_dir={tmp_path / 'w'}")
    assert proc.returncode == 2 and "maskfeat[wandb]" in one_error_line(proc.stderr)
    assert not (tmp_path / "w").exists()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="pip install 'maskfeat[wandb]'")
def test_wandb_offline_run_resumes_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    args = [*tiny_pretrain_overrides(out), "train.report_to=[wandb]"]
    assert main(["pretrain", *args, "train.max_steps=8"]) == 0
    first = (out / "wandb_run_id.txt").read_text().strip()
    assert main(["pretrain", *args]) == 0
    assert (out / "wandb_run_id.txt").read_text().strip() == first
    runs = sorted(p.name for p in (out / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(name.endswith(first) for name in runs)
