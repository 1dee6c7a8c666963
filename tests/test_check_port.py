"""maskfeat check-port: the first N steps of a recipe on a device against a reference loss curve
(the shipped CPU fp32 run of the default check, or --reference LOG)."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from helpers import report_figure, run_command, tiny_pretrain_overrides
from maskfeat.logs import read_loss_curve
from maskfeat.tasks.check_port import (
    REFERENCE_INFO,
    REFERENCE_LOG,
    PortCheck,
    check_reference_applies,
    reference_settings,
    resolve_port_check,
    run_port_check,
)

STEPS = 12    # of the tiny run's 16 (vit-pico, 64 px, batch 8)
ERROR = "maskfeat check-port: error: "


def check(capsys, *args):
    return run_command(capsys, "check-port", *args)


def only_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(ERROR), err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory):
    """The tiny check run on CPU in fp32 as scripts/make_port_reference.py runs the default one."""
    out = tmp_path_factory.mktemp("port") / "reference"
    task, cfg = resolve_port_check(None, ["train.amp=none", *tiny_pretrain_overrides(out)], steps=STEPS,
                                   device="cpu")
    assert run_port_check(PortCheck(task, cfg, Path("unused"), shipped=False))
    return out / "log.jsonl"


def tiny_check(capsys, reference, out, *extra):
    return check(capsys, "--steps", STEPS, "--device", "cpu", "--reference", reference,
                 *tiny_pretrain_overrides(out), *extra)


def test_same_settings_pass_with_zero_error_and_write_log_plot_report(tiny_reference, capsys, tmp_path):
    rc, out, _ = tiny_check(capsys, tiny_reference, tmp_path / "run")
    assert rc == 0 and out.strip().endswith("PASS")
    assert f"aligned steps: {STEPS} (1..{STEPS})" in out
    assert report_figure(out, "mean relative error") == 0.0
    assert report_figure(out, "mean absolute error") == 0.0
    assert (tmp_path / "run" / "loss_vs_reference.png").stat().st_size > 10_000
    assert (tmp_path / "run" / "check_port.txt").read_text().strip().endswith("PASS")
    assert read_loss_curve(tmp_path / "run" / "log.jsonl").steps.tolist() == list(range(1, STEPS + 1))


@pytest.mark.parametrize("broken, tol", [(["optim.lr=2e-2"], 0.05),
                                         # the loss is a mean over the masked patches: 0.75 moves it ~1.5%
                                         (["mask.ratio=0.75", "--rel-tol", "0.005"], 0.005)])
def test_broken_setting_fails(tiny_reference, capsys, tmp_path, broken, tol):
    rc, out, _ = tiny_check(capsys, tiny_reference, tmp_path / "run", *broken)
    assert rc == 1 and out.strip().endswith("FAIL")
    run, ref = read_loss_curve(tmp_path / "run" / "log.jsonl"), read_loss_curve(tiny_reference)
    expected = np.mean(np.abs(run.losses - ref.losses) / ref.losses)
    assert report_figure(out, "mean relative error") == pytest.approx(expected, rel=1e-5)
    assert expected > tol and report_figure(out, "mean absolute error") > 2e-4


def test_bf16_on_cpu_runs_and_gives_finite_figures(tiny_reference, capsys, tmp_path):
    rc, out, _ = tiny_check(capsys, tiny_reference, tmp_path / "run", "train.amp=bf16")
    mre, mae = report_figure(out, "mean relative error"), report_figure(out, "mean absolute error")
    with capsys.disabled():
        print(f"\nbf16 on CPU vs fp32, {STEPS} tiny steps: MRE {mre:.4g} MAE {mae:.4g} rc {rc}")
    assert rc in (0, 1) and math.isfinite(mre) and math.isfinite(mae)
    assert 0 < mre < 1                                   # bf16 differs from fp32, but trains the same model
    assert np.isfinite(read_loss_curve(tmp_path / "run" / "log.jsonl").losses).all()


def test_missing_reference_is_one_line_and_writes_nothing(capsys, tmp_path):
    rc, _, err = check(capsys, "--reference", tmp_path / "nope.jsonl", f"train.output_dir={tmp_path / 'run'}")
    assert rc == 2 and "log file not found" in only_error(err) and "nope.jsonl" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, key", [
    (["optim.lr=2e-2"], "optim.lr"), (["--steps", "50"], "train.max_steps"),
    (["--config", "pretrain/maskfeat_vit-base-p16_in1k"], "model.arch")])
def test_shipped_reference_refuses_other_settings(capsys, tmp_path, args, key):
    rc, _, err = check(capsys, *args, f"train.output_dir={tmp_path / 'run'}")
    line = only_error(err)
    assert rc == 2 and key in line and "--reference" in line
    assert not (tmp_path / "run").exists()


def test_unsupported_rule_refused_before_running(capsys, tmp_path):
    rc, _, err = check(capsys, "--rule", "bogus", f"train.output_dir={tmp_path / 'run'}")
    assert rc == 2 and "bogus" in only_error(err)
    assert not (tmp_path / "run").exists()


def test_shipped_reference_fits_the_default_check():
    """Provenance recorded, 100 finite points, and the settings are today's default check's
    (amp and device may differ: that is the point)."""
    info = json.loads(REFERENCE_INFO.read_text())
    assert {"torch", "torchvision", "timm", "date", "command"} <= set(info) and info["amp"].startswith("none")
    curve = read_loss_curve(REFERENCE_LOG)
    assert curve.steps.tolist() == list(range(1, 101)) and np.isfinite(curve.losses).all()
    assert 0.03 < curve.losses[-1] < curve.losses[0] < 0.3
    task, cfg = resolve_port_check(None, ["train.amp=bf16"], device="cpu")
    check_reference_applies(task, cfg, info)                    # raises on any difference
    assert info["settings"]["optim.lr"] == 2e-3 and info["settings"]["train.max_steps"] == 100
    assert info["settings"].items() <= reference_settings(cfg).items()


@pytest.mark.slow
def test_default_check_passes_against_shipped_reference(capsys, tmp_path):
    rc, out, _ = check(capsys, "--device", "cpu", f"train.output_dir={tmp_path}", "train.progress=false")
    mre, mae = report_figure(out, "mean relative error"), report_figure(out, "mean absolute error")
    with capsys.disabled():
        print(f"\ndefault check on CPU vs shipped: MRE {mre:.4g} MAE {mae:.4g}")
    assert rc == 0 and "aligned steps: 100 (1..100)" in out
    assert mre < 1e-3
