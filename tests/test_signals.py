"""SIGINT / SIGTERM during the long commands (finetune, linprobe, knn, visualize, check-port): exit
130 / 143, one line saying it was stopped, no traceback, nothing half-written under a final name.
(pretrain: test_pretrain_cli.py; prepare and convert: test_prepare_trust.py.)"""
import json
import os
import signal
import subprocess
import threading
import time

import pytest
import torch
from PIL import Image

from eval_helpers import folder_overrides, make_folder
from helpers import PYTHON, cli_env, maskfeat, save_pretrained, tiny_pretrain_overrides


class Running:
    """A ``maskfeat`` command in its own process group, its stdout and stderr read by threads."""

    def __init__(self, *args, launcher=("-m", "maskfeat")):
        self.proc = subprocess.Popen([PYTHON, *launcher, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=cli_env(), start_new_session=True)
        self.out, self.err = [], []
        self.readers = [threading.Thread(target=lambda p=p, into=into: into.extend(iter(p.readline, "")),
                                         daemon=True)
                        for p, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))]
        for r in self.readers:
            r.start()

    def stop_when(self, ready, signum, group=True, timeout=120) -> tuple[int, str, str]:
        """Send ``signum`` (to the group, as Ctrl-C does, or the main process only) once ``ready()``."""
        deadline = time.time() + timeout
        while not ready() and self.proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert self.proc.poll() is None, "finished before the signal: " + "".join(self.err)[-2000:]
        (os.killpg if group else os.kill)(self.proc.pid, signum)
        code = self.proc.wait(timeout=120)
        for r in self.readers:
            r.join(timeout=30)
        return code, "".join(self.out), "".join(self.err)


def assert_stopped(code: int, err: str, signum: int) -> str:
    """Exit 128 + signum, no traceback, exactly one 'stopped by SIG...' line (returned)."""
    assert code == 128 + signum, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if "stopped by" in line]
    assert len(lines) == 1 and f"stopped by {signal.Signals(signum).name}" in lines[0], err[-3000:]
    return lines[0]


def log_has_steps(log, n: int):
    return lambda: log.exists() and sum('"loss"' in line for line in log.read_text().splitlines()) >= n


def assert_resumable(out, args: list[str]) -> int:
    """last.pth loads with weights_only=True; the same command with one more step resumes from it."""
    step = torch.load(out / "last.pth", weights_only=True)["step"]
    assert step >= 2
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]
    r = maskfeat(*args, "train.resume=auto", f"train.max_steps={step + 1}", timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from {out / 'last.pth'} at step {step}" in r.stderr
    assert torch.load(out / "last.pth", weights_only=True)["step"] == step + 1
    return step


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A labelled folder (30 train, 15 val, 32 px) and a vit-pico pre-training checkpoint for it."""
    root = tmp_path_factory.mktemp("sig")
    make_folder(root / "shapes", n_train=10, n_val=5)
    save_pretrained(root / "pre.pth", img_size=32, patch=8)
    return root


TRAIN = ["train.batch_size=4", "train.epochs=200", "train.progress=false", "train.log_interval=1",
         "optim.warmup_epochs=0"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_finetune_stops_at_a_step_with_a_whole_checkpoint(shapes, tmp_path, signum):
    out = tmp_path / "ft"
    args = ["finetune", *folder_overrides(shapes / "shapes"), f"model.pretrained={shapes / 'pre.pth'}",
            *TRAIN, f"train.output_dir={out}"]
    run = Running(*args)
    code, _, err = run.stop_when(log_has_steps(out / "log.jsonl", 3), signum, group=signum == signal.SIGINT)
    line = assert_stopped(code, err, signum)
    assert str(out / "last.pth") in line and "run the same command again" in line
    assert_resumable(out, args)


def test_ctrl_c_during_linprobe_stops_at_a_step_with_a_whole_checkpoint(shapes, tmp_path):
    out = tmp_path / "lp"
    args = ["linprobe", *folder_overrides(shapes / "shapes"), f"model.pretrained={shapes / 'pre.pth'}",
            "model.arch=", "optim.name=sgd", *TRAIN, f"train.output_dir={out}"]
    code, _, err = Running(*args).stop_when(log_has_steps(out / "log.jsonl", 3), signal.SIGINT)
    assert_stopped(code, err, signal.SIGINT)
    assert not (out / "metrics.json").exists()
    assert_resumable(out, args)


# k-NN prints nothing before its result: this wrapper says when the features are being extracted
SAY_WHEN_EMBEDDING = ("-c", "import sys, maskfeat.tasks.knn as k; embed = k.embed_splits\n"
                      "def said(*a, **kw):\n    print('embedding', flush=True)\n    return embed(*a, **kw)\n"
                      "k.embed_splits = said\nfrom maskfeat.cli import main\nsys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize("signum, workers", [(signal.SIGINT, 2), (signal.SIGTERM, 0)])
def test_a_signal_during_knn_writes_no_result(tmp_path, signum, workers):
    root = make_folder(tmp_path / "shapes", n_train=150, n_val=50)
    out = tmp_path / "knn"
    args = ["knn", *folder_overrides(root), f"data.num_workers={workers}", "eval.batch_size=2",
            "eval.progress=false", f"eval.output_dir={out}", "eval.save_features=true"]
    run = Running(*args, launcher=SAY_WHEN_EMBEDDING)
    code, _, err = run.stop_when(lambda: "embedding\n" in run.out, signum, group=signum == signal.SIGINT)
    assert_stopped(code, err, signum)
    assert not (out / "knn.json").exists()
    if (out / "features.pth").exists():                   # written whole (atomic) or not at all
        assert torch.load(out / "features.pth", weights_only=True)["train_features"].shape[0] == 450
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_ctrl_c_during_visualize_leaves_only_whole_pngs(shapes, tmp_path):
    images = sorted((shapes / "shapes" / "train").rglob("*.png"))            # 30 images
    out = tmp_path / "vis"
    run = Running("visualize", str(shapes / "pre.pth"), *map(str, images), "--out-dir", str(out))
    code, stdout, err = run.stop_when(lambda: len(run.out) >= 2, signal.SIGINT)
    assert_stopped(code, err, signal.SIGINT)
    written = sorted(out.iterdir())
    assert 2 <= len(written) < len(images), stdout
    for png in written:                                   # every name there is a whole, readable PNG
        assert png.name.endswith("_maskfeat.png")
        with Image.open(png) as im:
            im.load()
    printed = [line.split()[0] for line in stdout.splitlines()]
    assert sorted(printed) == [str(p) for p in written]


def test_ctrl_c_during_check_port_stops_with_its_checkpoint(tmp_path):
    ref = tmp_path / "ref.csv"
    ref.write_text("step,loss\n" + "".join(f"{s},1.0\n" for s in range(1, 2001)))
    out = tmp_path / "port"
    args = ["check-port", "--steps", "2000", "--device", "cpu", "--reference", str(ref),
            *tiny_pretrain_overrides(out)]
    run = Running(*args)
    code, stdout, err = run.stop_when(log_has_steps(out / "log.jsonl", 3), signal.SIGINT)
    assert_stopped(code, err, signal.SIGINT)
    assert stdout.startswith("check-port: ") and "PASS" not in stdout and "FAIL" not in stdout
    assert torch.load(out / "last.pth", weights_only=True)["step"] >= 3
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert json.loads((out / "log.jsonl").read_text().splitlines()[0])["step"] == 1
