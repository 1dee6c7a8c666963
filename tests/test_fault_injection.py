"""Fault injection: SIGKILL a CPU pre-training run at random moments (checkpoint writes included),
resume each time with train.resume=auto, and check the final weights equal an uninterrupted run's."""
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import cli_env, tiny_pretrain_overrides

from maskfeat.engine.checkpoint import load_checkpoint


def start(args):
    return subprocess.Popen([sys.executable, "-m", "maskfeat", "pretrain", *args], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_random_sigkills_then_resume_match_uninterrupted_run(tmp_path):
    extra = {"train.epochs": 6, "train.ckpt_interval": 1, "data.samples_per_epoch": 32}
    ref = start(tiny_pretrain_overrides(tmp_path / "ref", **extra))
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    out = tmp_path / "run"
    args = tiny_pretrain_overrides(out, **extra, **{"train.resume": "auto"})
    rng = random.Random(0)
    kills = 0
    for _ in range(3):
        proc = start(args)
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "log.jsonl").exists():
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))       # anywhere: a step, a checkpoint write, start-up
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        if (out / "last.pth").exists():
            load_checkpoint(out / "last.pth")   # never left truncated
    final = start(args)
    assert final.wait(timeout=300) == 0, final.stderr.read()
    assert kills >= 1
    a, b = load_checkpoint(tmp_path / "ref" / "last.pth"), load_checkpoint(out / "last.pth")
    assert a["step"] == b["step"] == 24
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k
