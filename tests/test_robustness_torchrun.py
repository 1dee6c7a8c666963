"""Robustness under torchrun (2 gloo CPU processes): a global batch the data cannot fill is one
line per rank and writes nothing; SIGTERM / SIGINT stop every rank at one step boundary."""
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ERROR, cli_env, log_steps, tiny_pretrain_overrides, torchrun_cmd
from maskfeat.engine.checkpoint import load_checkpoint

# -- 3. a global batch that the data cannot fill, under torchrun ---------------------------------

def test_torchrun_global_batch_larger_than_the_data_is_one_line_and_writes_nothing(tmp_path):
    out, logs = tmp_path / "run", tmp_path / "torchrun_logs"
    overrides = tiny_pretrain_overrides(out, **{"data.samples_per_epoch": 12})
    launcher = ("--redirects", "2", "--log-dir", str(logs))   # each rank's stderr
    r = subprocess.run(torchrun_cmd("pretrain", *overrides, launcher=launcher),
                       capture_output=True, text=True, env=cli_env(), timeout=300)
    assert r.returncode != 0
    ranks = sorted(logs.rglob("stderr.log"))
    assert len(ranks) == 2, r.stderr[-3000:]
    for f in ranks:                                            # each rank: this one line, no traceback
        assert f.read_text().strip() == (ERROR + "data.samples_per_epoch: 12 samples are fewer than one "
                                         "global batch (train.batch_size 8 x train.accum_steps 1 "
                                         "x 2 processes)")
    assert not maskfeat_frames(r.stderr)       # torchrun's own ChildFailedError report is all it adds
    assert not out.exists()


# -- 4. SIGTERM / SIGINT under torchrun ----------------------------------------------------------

def start_torchrun(out: Path, *extra: str, launcher=()) -> subprocess.Popen:
    args = tiny_pretrain_overrides(out, **{"data.samples_per_epoch": 8000, "train.epochs": 1,
                                           "train.batch_size": 4})
    return subprocess.Popen(torchrun_cmd("pretrain", *args, *extra, launcher=launcher), env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_steps(proc: subprocess.Popen, log: Path, n: int = 3, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not log.exists() or len(log.read_text().splitlines()) < n:
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"no {n} steps logged: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)


def maskfeat_children(pid: int) -> list[int]:
    """The ``maskfeat`` processes whose parent is ``pid`` (torchrun's workers), from /proc."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"maskfeat" in cmdline:
            kids.append(int(stat.parent.name))
    return kids


def maskfeat_frames(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.lstrip().startswith('File "') and "maskfeat" in line]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_to_torchrun_workers_stops_both_at_a_step_boundary_and_exits_nonzero(tmp_path, sig):
    out, logs = tmp_path / "run", tmp_path / "torchrun_logs"
    t0 = time.time()
    proc = start_torchrun(out, launcher=("--redirects", "2", "--log-dir", str(logs)))
    wait_for_steps(proc, out / "log.jsonl")
    workers = maskfeat_children(proc.pid)
    assert len(workers) == 2
    for pid in workers:
        os.kill(pid, sig)
    _, err = proc.communicate(timeout=120)
    # each worker exits 128 + signal, so torchrun reports the stop (ChildFailedError, exit 1)
    assert proc.returncode == 1 and f"exitcode  : {128 + sig}" in err, err[-3000:]
    assert not maskfeat_frames(err) and time.time() - t0 < 120
    said = [f.read_text() for f in sorted(logs.rglob("stderr.log"))]
    step = load_checkpoint(out / "last.pth")["step"]
    assert 3 <= step < 1000 and log_steps(out / "log.jsonl") == list(range(1, step + 1))
    name = signal.Signals(sig).name
    assert sum(s.count(f"stopped by {name} at step {step};") for s in said) == 1    # rank 0 alone says it
    if sig == signal.SIGTERM:
        resumed = subprocess.run(torchrun_cmd("pretrain", *tiny_pretrain_overrides(out, **{
            "data.samples_per_epoch": 8000, "train.epochs": 1, "train.batch_size": 4,
            "train.resume": "auto", "train.max_steps": step + 2})), capture_output=True, text=True,
            env=cli_env(), timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert f"resumed from {out / 'last.pth'} at step {step}" in resumed.stderr
        assert log_steps(out / "log.jsonl") == list(range(1, step + 3))


def test_sigterm_to_torchrun_itself_reaches_the_workers_which_checkpoint(tmp_path):
    """torchrun forwards SIGTERM to its workers, waits for them, then re-raises the signal as
    torch.distributed.elastic's SignalException: the launcher's own exit code is 1 even though
    the workers stopped cleanly and each exited 143."""
    out = tmp_path / "run"
    t0 = time.time()
    proc = start_torchrun(out)
    wait_for_steps(proc, out / "log.jsonl")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "SignalException" in err, err[-3000:]
    assert not maskfeat_frames(err) and time.time() - t0 < 120             # the workers did not crash
    step = load_checkpoint(out / "last.pth")["step"]
    assert f"stopped by SIGTERM at step {step};" in err
    assert log_steps(out / "log.jsonl") == list(range(1, step + 1))
