"""compare-loss for the model zoo's workflow (issue 28, item 3): a 0-vs-1 step base detected and
aligned (or said), too few aligned points refused, --rank in dllogger logs, --json with every figure."""
import json
import math

import pytest

from helpers import report_figure, run_command

STAMP = "TCAPPDLL 2024-06-01 10:00:00 - "


def losses(n: int) -> list[float]:
    return [round(0.9 * math.exp(-0.05 * i) + 0.01 * math.sin(i), 6) for i in range(n)]


def dll_log(path, iterations, values, rank=0):
    path.write_text("".join(f"{STAMP}Epoch: 0 Iteration: {it} rank : {rank} train.loss : {v} train.ips : 9\n"
                            for it, v in zip(iterations, values)))
    return path


def csv_log(path, steps, values):
    path.write_text("step,loss\n" + "".join(f"{s},{v}\n" for s, v in zip(steps, values)))
    return path


def compare(capsys, *args):
    return run_command(capsys, "compare-loss", *args, "--no-plot")


def test_step_base_0_vs_1_is_aligned_and_said(tmp_path, capsys):
    """The issue's case: the same curve logged from Iteration 0 and from 1. Paired by equal numbers it
    was one step off without a word; now the shift is found and said in one line."""
    v = losses(12)
    run, ref = dll_log(tmp_path / "dev.log", range(0, 12), v), dll_log(tmp_path / "gpu.log", range(1, 13), v)
    rc, out, _ = compare(capsys, run, ref)
    assert rc == 0 and report_figure(out, "mean relative error") == 0.0
    assert ("note: step base: the run's steps start at 0, the reference's at 1; run step s is paired with "
            "reference step s+1 (12 points; --step-offset 0 pairs equal step numbers)") in out
    assert "aligned steps: 12 (0..11; reference steps 1..12)" in out
    rc, out, _ = compare(capsys, ref, run)                                   # the other way round
    assert rc == 0 and report_figure(out, "mean relative error") == 0.0 and "s-1" in out
    rc, out, _ = compare(capsys, run, ref, "--step-offset", "0")             # as before: one step off
    assert "aligned steps: 11 (1..11)" in out and report_figure(out, "mean relative error") > 0.01
    assert "note:" not in out


def test_logs_every_10_counted_from_0_and_1(tmp_path, capsys):
    """9, 19, ... against 10, 20, ...: no equal step at all, a shift of one pairs every point."""
    v = losses(12)
    run = csv_log(tmp_path / "run.csv", range(9, 120, 10), v)
    ref = csv_log(tmp_path / "ref.csv", range(10, 121, 10), v)
    rc, out, _ = compare(capsys, run, ref)
    assert rc == 0 and "aligned steps: 12 (9..119; reference steps 10..120)" in out and "s+1" in out


def test_an_undecidable_base_is_said_not_shifted(tmp_path, capsys):
    """1..12 against 0..20: equal numbers and a shift pair as many points; equal ones are paired, the
    note names the option; logs starting at the same step get no note."""
    run = csv_log(tmp_path / "run.csv", range(1, 13), losses(12))
    ref = csv_log(tmp_path / "ref.csv", range(0, 21), losses(21))
    rc, out, _ = compare(capsys, run, ref)
    assert "aligned steps: 12 (1..12)" in out
    assert ("note: step base: the run's steps start at 1, the reference's at 0: if they count from "
            "different bases, --step-offset -1 pairs them; equal step numbers paired") in out
    rc, out, _ = compare(capsys, run, ref, "--step-offset", "-1")
    assert rc == 0 and report_figure(out, "mean relative error") == 0.0
    same = csv_log(tmp_path / "same.csv", range(1, 21), losses(20))
    assert "note:" not in compare(capsys, run, same)[1]


@pytest.mark.parametrize("n, args, rc", [(1, (), 2), (9, (), 2), (10, (), 0), (1, ("--min-points", "1"), 0),
                                         (12, ("--last", "3"), 2), (12, ("--skip-first", "3"), 2)])
def test_too_few_aligned_points_are_refused(tmp_path, capsys, n, args, rc):
    """(must show 3) a one-point comparison (a short check logging every 100 iterations) is no verdict:
    exit 2 naming both counts; 10 points (the default --min-points) are enough."""
    run = csv_log(tmp_path / "run.csv", range(100, 100 * n + 1, 100), losses(n))
    code, out, err = compare(capsys, run, run, *args)
    assert code == rc, err
    if rc == 2:
        k = {"--last": 3, "--skip-first": 9}.get(args[0], n) if args else n
        assert err.strip() == (f"maskfeat compare-loss: error: {k} aligned point{'s' * (k != 1)} (run {n}, "
                               f"reference {n} points), fewer than --min-points 10: no verdict; log more "
                               "often (train.log_interval), run longer or lower --min-points") and out == ""


def test_rank_picks_a_rank_of_a_dllogger_log(tmp_path, capsys):
    log = tmp_path / "eight.log"
    log.write_text("".join(f"{STAMP}Epoch: 0 Iteration: {i} rank : {r} train.loss : {.5 + r / 10 - i / 100}\n"
                           for i in range(1, 13) for r in (3, 0, 1, 2)))
    rank1 = csv_log(tmp_path / "rank1.csv", range(1, 13), [.5 + 1 / 10 - i / 100 for i in range(1, 13)])
    rc, out, _ = compare(capsys, log, rank1, "--rank", "1,")
    assert rc == 0 and report_figure(out, "mean absolute error") < 1e-12
    assert f"run:       {log} (dllogger, rank 1 of 4 logged, 12 points)" in out
    rc, out, _ = compare(capsys, log, rank1)                                 # rank 0 by default: 0.1 off
    assert report_figure(out, "mean absolute error") == pytest.approx(0.1)
    rc, out, _ = compare(capsys, log, log, "--rank", "2,3")
    assert report_figure(out, "signed absolute error") == pytest.approx(-0.1)
    for args, needle in ((("--rank", "7,"), "no dllogger lines of rank 7 (it logs rank 0, 1, 2, 3)"),
                         (("--rank", "1"), "rank 1: " + str(rank1) + " is read as csv lines"),
                         (("--rank", "-1"), "--rank: expected a whole number >= 0")):
        rc, _, err = compare(capsys, log, rank1, *args)
        assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_json_holds_every_figure_and_the_verdict(tmp_path, capsys):
    """(must show 3) --json: the figures of the text report, both verdicts, the rule's, the exit code."""
    v = losses(12)
    run = csv_log(tmp_path / "run.csv", range(1, 13), [x * 1.1 for x in v])
    ref = csv_log(tmp_path / "ref.csv", range(1, 13), v)
    out_json = tmp_path / "sub" / "cmp.json"
    rc, out, _ = compare(capsys, run, ref, "--json", out_json)
    fig = json.loads(out_json.read_text())
    assert rc == 1 and fig["verdict"] == "FAIL" and fig["exit_code"] == 1 and fig["rule"] == "abs"
    assert (fig["two_sided_verdict"], fig["signed_verdict"]) == ("FAIL", "FAIL")
    assert fig["mean_relative_error"] == pytest.approx(0.1) == fig["signed_relative_error"]
    for kind in ("mean_relative", "mean_absolute", "signed_relative", "signed_absolute"):
        key, name = f"{kind}_error", f"{kind} error".replace("_", " ")
        assert fig[key] == pytest.approx(report_figure(out, name), rel=1e-5)
    assert fig["aligned_points"] == 12 and fig["min_points"] == 10 and fig["step_offset"] == 0
    assert fig["run"] == {"path": str(run), "format": "csv", "points": 12, "rank": 0, "steps": [1, 12],
                          "aligned_steps": [1, 12]}
    assert (fig["rel_tol"], fig["abs_tol"], fig["notes"]) == (0.05, 2e-4, [])
    below = csv_log(tmp_path / "below.csv", range(1, 13), [x * 0.9 for x in v])
    rc, _, _ = compare(capsys, below, ref, "--json", out_json, "--rule", "signed")
    fig = json.loads(out_json.read_text())               # the zoos' rule passes a curve 10% below
    assert rc == 0 and (fig["verdict"], fig["two_sided_verdict"], fig["rule"]) == ("PASS", "FAIL", "signed")


def test_json_of_a_diverged_run_and_refused_outputs(tmp_path, capsys):
    ref = csv_log(tmp_path / "ref.csv", range(1, 13), losses(12))
    run = csv_log(tmp_path / "run.csv", range(1, 13), losses(11) + [float("nan")])
    out_json = tmp_path / "cmp.json"
    rc, _, _ = compare(capsys, run, ref, "--json", out_json)
    fig = json.loads(out_json.read_text())                     # strict JSON: NaN / inf figures are null
    assert rc == 1 and fig["mean_relative_error"] is None and fig["nonfinite_run_points"] == 1
    before = ref.read_bytes()
    rc, _, err = compare(capsys, run, ref, "--json", ref)      # never over one of the logs compared
    assert rc == 2 and "--json: " in err and "one of the logs compared" in err and ref.read_bytes() == before


def test_check_port_refuses_too_few_steps_before_running(tmp_path, capsys):
    """check-port takes --min-points too, and a check that cannot give that many points is not run."""
    ref = csv_log(tmp_path / "ref.csv", range(1, 13), losses(12))
    rc, out, err = run_command(capsys, "check-port", "--steps", "5", "--device", "cpu", "--reference", ref,
                               f"train.output_dir={tmp_path / 'out'}")
    assert rc == 2 and out == "" and not (tmp_path / "out").exists()
    assert err.strip() == ("maskfeat check-port: error: --steps 5 (less --skip-first 0) leaves fewer than "
                           "--min-points 10 points to compare")
