"""Fault injection: SIGKILL a CPU pre-training run at random moments after it has passed a checkpoint
(a step or the next checkpoint write), resume each time with train.resume=auto, and check every resume
continued from a later checkpoint and every logged loss equals an uninterrupted run's."""
import json
import random
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from helpers import cli_env, log_losses, tiny_pretrain_overrides
from maskfeat.engine.checkpoint import load_checkpoint

STEPS_PER_EPOCH = 4         # 32 samples / batch 8; last.pth is written at every epoch's end
STEPS = 40                  # 10 epochs, ~20 ms a step on CPU


def start(args):
    return subprocess.Popen([sys.executable, "-m", "maskfeat", "pretrain", *args], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def log_records(path) -> list[dict]:
    """The complete lines of log.jsonl (a line being written is left out)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1]]


def wait_for_step(proc, log, seen: int, step: int, timeout=120) -> None:
    """Wait until ``proc`` itself (a line after the first ``seen``) logged ``step`` or a later one."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(r.get("step", 0) >= step for r in log_records(log)[seen:]):
            return
        time.sleep(0.01)
    raise AssertionError(f"no step {step} from the run (exit {proc.poll()}): {proc.stderr.read()[-2000:]}")


def resumed_at(stderr: str, out) -> int:
    found = re.findall(rf"resumed from {re.escape(str(out / 'last.pth'))} at step (\d+)", stderr)
    assert len(found) == 1, stderr[-3000:]
    return int(found[0])


@pytest.mark.slow
def test_random_sigkills_then_resume_match_uninterrupted_run(tmp_path):
    extra = {"train.epochs": 10, "train.ckpt_interval": 1, "data.samples_per_epoch": 32}
    ref = start(tiny_pretrain_overrides(tmp_path / "ref", **extra))
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    out, log = tmp_path / "run", tmp_path / "run" / "log.jsonl"
    args = tiny_pretrain_overrides(out, **extra, **{"train.resume": "auto"})
    rng, ckpts = random.Random(0), [0]          # the step of last.pth before each start
    for i in range(3):
        seen = len(log_records(log))
        proc = start(args)
        # the first step after the next checkpoint: killed from here on, the run must resume later than before
        wait_for_step(proc, log, seen, (ckpts[-1] // STEPS_PER_EPOCH + 1) * STEPS_PER_EPOCH + 1)
        time.sleep(rng.uniform(0.0, 0.1))       # within a step, or the next epoch's checkpoint write
        assert proc.poll() is None, "the run ended before it was killed"
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        if i:
            assert resumed_at(err, out) == ckpts[-1]
        ckpts.append(load_checkpoint(out / "last.pth")["step"])      # never left truncated
    final = start(args)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    assert resumed_at(err, out) == ckpts[-1]
    assert 0 < ckpts[1] < ckpts[2] < ckpts[3] < STEPS, ckpts       # each kill came after a new checkpoint
    a, b = load_checkpoint(tmp_path / "ref" / "last.pth"), load_checkpoint(out / "last.pth")
    assert a["step"] == b["step"] == STEPS
    ref_losses = log_losses(tmp_path / "ref" / "log.jsonl")
    assert sorted(ref_losses) == list(range(1, STEPS + 1))
    records = log_records(log)                  # every line, the killed runs' included
    assert {r["step"] for r in records} == set(range(1, STEPS + 1)) and len(records) > STEPS
    for r in records:
        assert r["loss"] == pytest.approx(ref_losses[r["step"]][0], abs=1e-7), r["step"]
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k
