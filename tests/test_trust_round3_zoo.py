"""Issue 29, items 6-11 (compare-loss and --launcher slurm): bad steps and references are one line
and exit 2, a long log is streamed, SLURM's host list is not expanded, bad task counts stop at once."""
import json
import resource
import subprocess
import tracemalloc

import pytest

from helpers import PYTHON, REPO, cli_env, run_command
from maskfeat.engine.slurm import first_node, slurm_env
from maskfeat.errors import UserError
from maskfeat.logs import read_loss_curve

GOOD = "".join(f"{s},{0.5 - s / 100}\n" for s in range(1, 13))


def compare(capsys, *args):
    return run_command(capsys, "compare-loss", *args, "--no-plot")


@pytest.mark.parametrize("name, content, needle", [
    ("inf.csv", "step,loss\n1,0.5\ninf,0.4\n", "inf.csv:3: step 'inf' is not a whole number from 0 to 2^53"),
    ("nan.csv", "nan,0.4\n", "nan.csv:1: step 'nan' is not a whole number from 0 to 2^53"),
    ("big.jsonl", '{"step": 1, "loss": 0.5}\n{"step": 1e20, "loss": 0.4}\n',
     "big.jsonl:2: step 1e+20 is not a whole number from 0 to 2^53"),
    ("huge.jsonl", '{"step": 100000000000000000000000, "loss": 0.4}\n', "huge.jsonl:1: step 1000000000"),
    ("neg.csv", "-5,0.4\n", "neg.csv:1: step '-5' is not a whole number"),
    ("digits.log", f"TCAPPDLL d - Epoch: 0 Iteration: {'9' * 5000} rank : 0 train.loss : 0.5\n",
     "digits.log:1: step '9999"),                                     # past int()'s 4300 digits
    ("digits.jsonl", f'{{"step": {"9" * 5000}, "loss": 0.5}}\n', "digits.jsonl:1: not valid JSON"),
    ("digits.txt", f"x - mmengine - INFO - Iter(train) [{'9' * 5000}/3]  loss: 0.5\n", "digits.txt:1: step"),
])
def test_item6_impossible_steps_are_one_line(tmp_path, capsys, name, content, needle):
    bad, good = tmp_path / name, tmp_path / "good.csv"
    bad.write_text(content)
    good.write_text(GOOD)
    for args in ((bad, good), (good, bad)):
        rc, out, err = compare(capsys, *args)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and out == "", err


def test_item7_a_non_finite_reference_is_a_bad_reference(tmp_path, capsys):
    ref, run = tmp_path / "ref.csv", tmp_path / "run.csv"
    ref.write_text(GOOD.replace("5,0.45", "5,inf"))
    run.write_text(GOOD)
    rc, out, err = compare(capsys, run, ref)
    assert rc == 2 and out == ""
    assert err.strip() == (f"maskfeat compare-loss: error: bad reference {ref}: its loss at step 5 is inf "
                           "(1 non-finite of 12); a reference curve must be finite")
    rc, out, _ = compare(capsys, ref, run)                  # a diverged run is a FAIL, not bad input
    assert rc == 1 and out.strip().endswith("FAIL")


def test_item8_a_long_log_is_streamed(tmp_path):
    """100,000 records (17 MB): the reader keeps the points (16 bytes each), not the lines or records.
    Python's allocations are counted (tracemalloc), not the time (bench/compare_memory.py: 1,000,000)."""
    log = tmp_path / "log.jsonl"
    rec = {"lr": 1.0e-4, "data_time": 0.01, "grad_norm": 1.5, "time": 0.2, "epoch": 1, "iter": 1, "memory": 0,
           "img_per_s": 1234.5, "nonfinite_steps": 0}
    with open(log, "w") as f:
        for step in range(1, 100_001):
            f.write(json.dumps({**rec, "loss": 1 / step, "step": step}) + "\n")
    size = log.stat().st_size
    tracemalloc.start()
    try:
        curve = read_loss_curve(log)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert curve.steps.size == 100_000 and curve.losses[-1] == 1e-5
    assert size > 15e6 and peak < 8e6, (size, peak)


def test_item9_a_huge_host_range_is_not_expanded():
    """node[0-999999999999]: the first host without listing the others (a subprocess with 1 GB of
    address space and 60 s: expanding the list runs out of both)."""
    code = ("from maskfeat.engine.slurm import slurm_env; print(slurm_env({'SLURM_PROCID': '0', "
            "'SLURM_NTASKS': '1', 'SLURM_LOCALID': '0', 'SLURM_JOB_NODELIST': 'node[0-999999999999],x'}))")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 ** 31, 2 ** 31))
    proc = subprocess.run([PYTHON, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60,
                          preexec_fn=limit)
    assert proc.returncode == 0 and "'MASTER_ADDR': 'node0'" in proc.stdout, proc.stderr[-2000:]
    assert first_node("gpu[07-08]-ib[3,1],cpu1") == "gpu07-ib3"
    with pytest.raises(UserError, match="cannot read the range '9-1'"):
        first_node("node[9-1]")


SLURM = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "localhost"}


@pytest.mark.parametrize("env, needle", [
    ({"SLURM_NTASKS": "0"}, "SLURM_NTASKS='0': a job has at least one task"),                       # item 10
    ({"SLURM_PROCID": "3"}, "SLURM_PROCID=3 is not below SLURM_NTASKS=2 (ranks are 0..1)"),         # item 11
    ({"SLURM_PROCID": "2"}, "SLURM_PROCID=2 is not below SLURM_NTASKS=2"),
    ({"SLURM_PROCID": "²"}, "SLURM_PROCID='²' is not a number"),
    ({"SLURM_NTASKS": "9" * 5000}, "is not a number (0 to 999999999)"),
])
def test_items10_11_bad_task_counts_are_one_line(env, needle):
    with pytest.raises(UserError, match=needle.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        slurm_env({**SLURM, **env})


@pytest.mark.parametrize("env", [{"SLURM_NTASKS": "0"}, {"SLURM_PROCID": "3"}])
def test_items10_11_run_maskfeat_stops_at_once(env):
    """run_maskfeat.py --launcher slurm with them: exit 2, one line, before waiting for a process group."""
    cmd = [PYTHON, "run_maskfeat.py", "--config", "configs/pretrain/maskfeat_vit-base-p16_in1k.yaml",
           "--launcher", "slurm"]
    proc = subprocess.run(cmd, cwd=REPO, env={**cli_env(), **SLURM, **env}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith("run_maskfeat: error: --launcher slurm: SLURM_")
