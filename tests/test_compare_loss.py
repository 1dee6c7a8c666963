"""maskfeat compare-loss: log parsing (ours, mmpretrain vis_data, CSV), MRE / MAE by step, verdict, PNG."""
import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from helpers import report_figure, run_command, tiny_pretrain_overrides
from maskfeat.cli import main
from maskfeat.logs import compare_curves, read_loss_curve

MM_KEYS = ("lr", "data_time", "grad_norm", "loss", "time", "epoch", "iter", "memory", "step")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three real 16-step pre-training runs: a and b with the same seed, c with lr x10."""
    root = tmp_path_factory.mktemp("runs")
    for name, extra in (("a", {}), ("b", {}), ("c", {"optim.lr": 2e-2})):
        assert main(["pretrain", *tiny_pretrain_overrides(root / name, **extra)]) == 0
    return {name: root / name / "log.jsonl" for name in "abc"}


def compare(capsys, *args):
    return run_command(capsys, "compare-loss", *args)


def test_same_seed_runs_pass_with_zero_error(runs, capsys, tmp_path):
    png = tmp_path / "cmp.png"
    rc, out, _ = compare(capsys, runs["a"], runs["b"], "--plot", png)
    assert rc == 0 and out.strip().endswith("PASS")
    assert report_figure(out, "mean relative error") == 0.0
    assert report_figure(out, "mean absolute error") == 0.0
    assert "aligned steps: 16 (1..16)" in out
    img = mpimg.imread(png)                                  # a real PNG with something drawn
    assert img.ndim == 3 and img.shape[0] > 300 and img[..., :3].std() > 0.05


def test_lr_times_ten_fails(runs, capsys):
    rc, out, _ = compare(capsys, runs["c"], runs["a"], "--no-plot")
    assert rc == 1 and out.strip().endswith("FAIL")
    a, c = read_loss_curve(runs["a"]), read_loss_curve(runs["c"])
    expected = np.mean(np.abs(c.losses - a.losses) / a.losses)
    assert report_figure(out, "mean relative error") == pytest.approx(expected, rel=1e-5)
    assert expected > 0.05


def test_default_plot_lies_next_to_run_log(runs, capsys):
    rc, out, _ = compare(capsys, runs["a"], runs["b"])
    assert rc == 0
    assert (runs["a"].parent / "log_vs_ref.png").is_file()


def test_mmpretrain_vis_data_format_parses_every_line(runs, capsys, tmp_path):
    """Rewrite run a's log as mmengine writes vis_data/<time>.json: training lines with
    mmpretrain's keys, a validation line (no loss) after every 4 training lines."""
    lines, train = [], 0
    for rec in map(json.loads, runs["a"].read_text().splitlines()):
        lines.append(json.dumps({k: rec[k] for k in MM_KEYS}))
        train += 1
        if train % 4 == 0:
            lines.append(json.dumps({"accuracy/top1": 10.0 + train, "data_time": 0.01, "time": 0.1,
                                     "step": rec["epoch"]}))
    mm = tmp_path / "vis_data" / "20240101_000000.json"
    mm.parent.mkdir()
    mm.write_text("\n".join(lines) + "\n")
    curve = read_loss_curve(mm)
    ours = read_loss_curve(runs["a"])
    assert curve.fmt == "jsonl" and curve.steps.size == train == 16
    np.testing.assert_array_equal(curve.steps, ours.steps)
    np.testing.assert_array_equal(curve.losses, ours.losses)
    rc, out, _ = compare(capsys, runs["a"], mm, "--no-plot")
    assert rc == 0 and report_figure(out, "mean relative error") == 0.0


def test_csv_with_and_without_header_hand_computed(tmp_path, capsys):
    run = tmp_path / "run.csv"
    run.write_text("step,loss\n1,1.0\n2,0.5\n3,0.25\n4,0.2\n")
    ref = tmp_path / "ref.csv"
    ref.write_text("2,0.4\n3,0.25\n4,0.25\n5,0.1\n")
    cmp = compare_curves(read_loss_curve(run), read_loss_curve(ref))
    # aligned steps 2, 3, 4: |diff| = 0.1, 0, 0.05; relative = 0.25, 0, 0.2
    assert cmp.steps.tolist() == [2, 3, 4]
    assert cmp.mae == pytest.approx(0.05) and cmp.mre == pytest.approx(0.15)
    assert not cmp.passed
    few = ("--no-plot", "--min-points", "3")                  # three aligned points are enough here
    rc, out, _ = compare(capsys, run, ref, *few)
    assert rc == 1
    assert compare(capsys, run, ref, *few, "--rel-tol", "0.15")[0] == 0
    assert compare(capsys, run, ref, *few, "--abs-tol", "0.051")[0] == 0
    assert compare(capsys, run, ref, *few, "--rel-tol", "0.14", "--abs-tol", "0.049")[0] == 1


def test_repeated_step_keeps_last_value(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 2, "loss": 0.3}\n')
    curve = read_loss_curve(log)
    assert curve.steps.tolist() == [1, 2] and curve.losses.tolist() == [0.5, 0.3]


@pytest.mark.parametrize("content, needle", [
    (None, "log file not found"),
    ("", "empty log file"),
    ('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": \n', ":2: not valid JSON"),
    ('{"step": 1, "loss": "high"}\n', "'loss' is not a number"),
    ("step,loss\n1,0.5\n2,abc\n", ":3: not numbers"),
    ("1,0.5,7\n", "expected two columns"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, content, needle):
    bad = tmp_path / "bad.log"
    if content is not None:
        bad.write_text(content)
    good = tmp_path / "good.csv"
    good.write_text("1,0.5\n")
    rc, _, err = compare(capsys, bad, good, "--no-plot")
    assert rc == 2
    assert needle in err and len(err.strip().splitlines()) == 1


def test_no_aligned_steps_exits_2(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("1,0.5\n2,0.4\n")
    b.write_text("10,0.5\n20,0.4\n")
    rc, _, err = compare(capsys, a, b)
    assert rc == 2 and "no common steps" in err and len(err.strip().splitlines()) == 1
