import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from helpers import (
    REPO,
    cli_env,
    log_steps,
    maskfeat,
    run_trainer,
    tiny_pretrain_overrides,
)
from maskfeat.config import builtin_config
from maskfeat.engine.checkpoint import load_checkpoint
from maskfeat.engine.distributed import DistEnv
from maskfeat.tasks.pretrain import build_config
from maskfeat.tasks.pretrain_image import build_trainer

MMPRETRAIN_KEYS = {"lr", "data_time", "grad_norm", "loss", "time", "epoch", "iter", "memory", "step"}


def test_pretrain_end_to_end_outputs(tmp_path):
    out = tmp_path / "run"
    r = maskfeat("pretrain", *tiny_pretrain_overrides(out, **{"train.log_interval": 4}))
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} >= {"last.pth", "epoch_2.pth", "log.jsonl", "loss_curve.png",
                                               "config.yaml"}
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
    assert not (tmp_path / "x").exists()           # the other config errors, in process: test_sweep


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
    assert proc.returncode == 128 + signal.SIGTERM, err               # 143: a scheduler sees it stopped early
    assert "stopped by SIGTERM at step" in err and "Traceback" not in err
    step = load_checkpoint(out / "last.pth")["step"]
    assert 3 <= step < 500
    r = maskfeat("pretrain", *args, "train.resume=auto", "train.max_steps=" + str(step + 2))
    assert r.returncode == 0, r.stderr
    assert f"resumed from {out / 'last.pth'} at step {step}" in r.stderr
    steps = [json.loads(line)["step"] for line in log.read_text().splitlines()]
    assert steps[-2:] == [step + 1, step + 2] and steps[:-2] == list(range(1, step + 1))


def torchrun_pretrain(out: Path, *extra: str) -> dict:
    """A 2-process gloo run of the tiny pre-training at batch 4 a rank (``extra``: more overrides), by
    tests/helpers/ddp_pretrain_weights.py: [rank 0's, rank 1's] weights, steps' losses and lrs."""
    args = tiny_pretrain_overrides(out, **{"train.batch_size": 4}) + list(extra)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", str(REPO / "tests" / "helpers" / "ddp_pretrain_weights.py"),
                        str(out), *args],
                       capture_output=True, text=True, env=cli_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return [torch.load(out / f"rank{k}.pt") for k in (0, 1)] + [r.stderr]


@pytest.fixture(scope="module")
def ddp_2x4(tmp_path_factory):
    """An uninterrupted 2 x 4 run: 64 samples / (4 x 2 ranks) x 2 epochs = 16 steps."""
    return torchrun_pretrain(tmp_path_factory.mktemp("ddp") / "run")


def test_torchrun_2x4_equals_one_process_at_batch_8_step_by_step(ddp_2x4, tmp_path):
    """Ranks see disjoint halves of the samples the single process sees at each step (DistributedSampler
    strides one permutation; crops and masks are seeded by (seed, epoch, index)), so the mean of the two
    ranks' losses is the batch-8 loss (measured within 2.2e-8; the ranks' own differ by 7e-3), the lr of
    every step is the same, peaking at optim.lr x 8 / 256 (the lr scales with the global batch, world size
    included), and the weights end within 1e-7 (measured 7.5e-9)."""
    w0, w1, _ = ddp_2x4
    assert w0["step"] == w1["step"] == 16 and w0["global_batch"] == 8
    for k in w0["model"]:
        assert torch.equal(w0["model"][k], w1["model"][k]), k
    single = {}

    def record(trainer, loss):
        single[trainer.state.step + 1] = (loss.item(), trainer.optimizer.param_groups[0]["lr"])
        return loss

    trainer = run_trainer(tmp_path, "single", step_hook=record)
    assert sorted(single) == sorted(w0["steps"]) == sorted(w1["steps"]) == list(range(1, 17))
    for step, (loss, lr) in single.items():
        assert (w0["steps"][step][0] + w1["steps"][step][0]) / 2 == pytest.approx(loss, abs=2e-7), step
        assert w0["steps"][step][1] == w1["steps"][step][1] == pytest.approx(lr, rel=1e-12), step
    o = trainer.cfg["optim"]
    peak = o["lr"] * 8 / o["base_batch_size"]
    assert max(lr for _, lr in single.values()) == pytest.approx(peak, rel=1e-12)
    for k, v in trainer.model.state_dict().items():
        assert torch.allclose(v, w0["model"][k], rtol=0, atol=1e-7), k        # measured 7.5e-9
    assert not torch.equal(trainer.model.head.weight, build_trainer(build_config(
        None, tiny_pretrain_overrides(tmp_path / "fresh")), DistEnv()).model.head.weight)   # it did train


def test_torchrun_resume_equals_the_uninterrupted_run(ddp_2x4, tmp_path):
    """2 processes stopped at step 6 (mid-epoch), then resumed to the end: every rank's loss at steps
    7-16 and the final weights equal the uninterrupted 2-process run's."""
    out = tmp_path / "run"
    first = torchrun_pretrain(out, "train.max_steps=6")
    assert first[0]["step"] == 6 and sorted(first[1]["steps"]) == list(range(1, 7))
    w0, w1, err = torchrun_pretrain(out, "train.resume=auto")
    assert f"resumed from {out / 'last.pth'} at step 6" in err
    for rank, (ref, got) in enumerate(zip(ddp_2x4[:2], (w0, w1))):
        assert sorted(got["steps"]) == list(range(7, 17)) and got["step"] == 16
        for step, (loss, lr) in got["steps"].items():
            assert loss == pytest.approx(ref["steps"][step][0], abs=1e-7), (rank, step)
            assert lr == pytest.approx(ref["steps"][step][1], rel=1e-12), (rank, step)
        for k, v in ref["model"].items():
            assert torch.allclose(v, got["model"][k], rtol=0, atol=1e-6), (rank, k)
    assert log_steps(out / "log.jsonl") == list(range(1, 17))         # rank 0 alone wrote it


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
