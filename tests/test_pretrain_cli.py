import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import REPO, cli_env, tiny_pretrain_overrides

from maskfeat.config import builtin_config
from maskfeat.engine.checkpoint import load_checkpoint
from maskfeat.engine.distributed import DistEnv
from maskfeat.tasks.pretrain import build_config
from maskfeat.tasks.pretrain_image import build_trainer

MMPRETRAIN_KEYS = {"lr", "data_time", "grad_norm", "loss", "time", "epoch", "iter", "memory", "step"}


def maskfeat(*args, **kw):
    return subprocess.run([sys.executable, "-m", "maskfeat", *args], capture_output=True, text=True,
                          env=cli_env(), timeout=300, **kw)


def test_pretrain_end_to_end_outputs(tmp_path):
    out = tmp_path / "run"
    r = maskfeat("pretrain", *tiny_pretrain_overrides(out, **{"train.log_interval": 4}))
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} >= {"last.pth", "epoch_2.pth", "log.jsonl", "loss_curve.png", "config.yaml"}
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12, 16]
    assert all(MMPRETRAIN_KEYS | {"img_per_s"} <= set(r) for r in records)
    assert records[-1]["epoch"] == 2 and records[-1]["iter"] == 8
    assert (out / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    ckpt = load_checkpoint(out / "last.pth")
    assert {"model", "optimizer", "scaler", "scheduler", "step", "rng", "config"} <= set(ckpt)
    assert ckpt["step"] == 16 and ckpt["config"]["model"]["arch"] == "vit-pico"
    saved = build_config(str(out / "config.yaml"), [])
    assert saved == ckpt["config"]


def test_unknown_key_is_a_one_line_error_with_exit_2(tmp_path):
    r = maskfeat("pretrain", "optim.lrr=1e-3", f"train.output_dir={tmp_path / 'x'}")
    assert r.returncode == 2
    assert r.stderr.strip() == ("maskfeat pretrain: error: command line: unknown config key 'optim.lrr' "
                                "(did you mean 'optim.lr'?)")
    assert not (tmp_path / "x").exists()
    r = maskfeat("pretrain", "data.source=folder", f"data.root={tmp_path / 'nope'}")
    assert r.returncode == 2 and "folder not found" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_sigterm_writes_checkpoint_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    args = tiny_pretrain_overrides(out, **{"data.samples_per_epoch": 4000, "train.epochs": 1})
    proc = subprocess.Popen([sys.executable, "-m", "maskfeat", "pretrain", *args], env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err                 # 143: a scheduler sees it stopped early
    assert "stopped by SIGTERM at step" in err and "Traceback" not in err
    step = load_checkpoint(out / "last.pth")["step"]
    assert 3 <= step < 500
    r = maskfeat("pretrain", *args, "train.resume=auto", "train.max_steps=" + str(step + 2))
    assert r.returncode == 0, r.stderr
    assert f"resumed from {out / 'last.pth'} at step {step}" in r.stderr
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps[-2:] == [step + 1, step + 2] and steps[:-2] == list(range(1, step + 1))


def test_torchrun_two_gloo_processes_end_with_identical_weights(tmp_path):
    args = tiny_pretrain_overrides(tmp_path / "run", **{"train.batch_size": 4})
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        str(REPO / "tests" / "helpers" / "ddp_pretrain_weights.py"), str(tmp_path), *args],
                       capture_output=True, text=True, env=cli_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert w0["step"] == w1["step"] == 16            # 64 samples / (4 x 2 ranks) x 2 epochs
    for k in w0["model"]:
        assert torch.equal(w0["model"][k], w1["model"][k]), k
    first = build_trainer(build_config(None, tiny_pretrain_overrides(tmp_path / "fresh")), DistEnv()).model
    assert not torch.equal(first.head.weight, w0["model"]["head.weight"])  # it did train
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()   # rank 0 alone wrote it
    assert [json.loads(x)["step"] for x in log] == list(range(1, 17))


@pytest.mark.slow
def test_vit_base_recipe_builds_and_one_cpu_step_runs_at_batch_2(tmp_path):
    cfg = build_config(str(builtin_config("pretrain/maskfeat_vit-base-p16_in1k")), [
        "data.source=skimage", "data.samples_per_epoch=2", "data.num_workers=0", "train.batch_size=2",
        "train.max_steps=1", "train.resume=", f"train.output_dir={tmp_path}", "train.progress=false"])
    trainer = build_trainer(cfg, DistEnv())
    assert sum(p.numel() for p in trainer.model.parameters()) == 85_882_476
    before = trainer.model.head.weight.detach().clone()
    state = trainer.fit()
    rec = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert state.step == 1 and 0.0 < rec["loss"] < 1.0 and rec["grad_norm"] > 0
    assert not torch.equal(before, trainer.model.head.weight)
