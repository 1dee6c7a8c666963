"""Port checks: the text log lines a `2>&1 | tee` keeps, compare-loss on the formats model zoos
compare (mmengine text / json, TCAPPDLL), signed vs two-sided rules, alignment options, and the
logged lr being the lr each step used."""
import json
import math
import re
import subprocess

import pytest
import yaml

from helpers import PYTHON, cli_env, run_trainer, tiny_pretrain_overrides
from maskfeat.cli import main
from maskfeat.commands.compare_loss import compare_and_report
from maskfeat.engine.logger import fixed_point, train_text_line, val_text_line
from maskfeat.errors import UserError
from maskfeat.logs import read_log, read_loss_curve

STAMP = "2024/06/01 10:00:00 - mmengine - INFO - "


def compare(capsys, *args):
    rc = main(["compare-loss", *map(str, args), "--no-plot"])
    out, err = capsys.readouterr()
    return rc, out, err


def metric(out: str, name: str) -> float:
    return float(next(ln for ln in out.splitlines() if ln.startswith(name)).split(":")[1].split()[0])


def fake_losses(n: int) -> list[float]:
    """A decaying curve with 4 decimals (what mmengine's text lines keep)."""
    return [round(0.9 * math.exp(-0.05 * i) + 0.01 * math.sin(i), 4) for i in range(n)]


def mm_epoch_logs(tmp_path, losses, per_epoch=50, interval=5):
    """The same epoch-based run as mmengine writes it twice: text log and vis_data json."""
    text, js = ["noise: loading annotations", "\r 10%|#         | 5/50 [00:01<00:09]"], []
    for k, loss in enumerate(losses):
        step = (k + 1) * interval
        epoch, it = (step - 1) // per_epoch + 1, (step - 1) % per_epoch + 1
        text.append(f"{STAMP}Epoch(train)  [{epoch}][{it:>2}/{per_epoch}]  lr: 1.9980e-07  eta: 0:01:02  "
                    f"time: 0.7578  data_time: 0.1160  memory: 12345  grad_norm: 1.2345  loss: {loss:.4f}")
        js.append(json.dumps({"lr": 1.998e-07, "data_time": 0.116, "grad_norm": 1.2345, "loss": loss,
                              "time": 0.7578, "epoch": epoch, "iter": it, "memory": 12345, "step": step}))
        if it == per_epoch:
            text.append(f"{STAMP}Epoch(val) [{epoch}][10/10]    accuracy/top1: 12.5000  data_time: 0.0100")
            text.append("UserWarning: something deprecated")
            js.append(json.dumps({"accuracy/top1": 12.5, "step": epoch}))
    (tmp_path / "mm.log").write_text("\n".join(text) + "\n")
    (tmp_path / "mm.json").write_text("\n".join(js) + "\n")
    return tmp_path / "mm.log", tmp_path / "mm.json"


def test_mmengine_text_and_json_twins_give_the_same_figures(tmp_path, capsys):
    losses = fake_losses(20)
    text, js = mm_epoch_logs(tmp_path, losses)          # 2 epochs of 50 iters, a line every 5
    a, b = read_loss_curve(text), read_loss_curve(js)
    assert (a.fmt, b.fmt) == ("mmengine-text", "jsonl")
    assert a.steps.tolist() == b.steps.tolist() == list(range(5, 101, 5))
    assert a.losses.tolist() == b.losses.tolist() == losses
    ref = tmp_path / "ref.csv"
    ref.write_text("\n".join(f"{5 * (k + 1)},{x * 1.03:.6f}" for k, x in enumerate(losses)) + "\n")
    outs = [compare(capsys, log, ref) for log in (text, js)]
    assert outs[0][0] == outs[1][0] == 0
    for name in ("mean relative error", "mean absolute error", "signed relative error"):
        assert metric(outs[0][1], name) == metric(outs[1][1], name)
    assert metric(outs[0][1], "signed relative error") == pytest.approx(-0.03 / 1.03, rel=1e-3)
    # the iteration-based form: Iter(train) [  10/300]
    it_log = tmp_path / "iter.log"
    it_log.write_text("".join(f"{STAMP}Iter(train) [{10 * (k + 1):>3}/300]  lr: 1.0000e-04  eta: 0:00:10  "
                              f"time: 0.1000  data_time: 0.0100  loss: {x:.4f}\n"
                              for k, x in enumerate(losses)))
    c = read_loss_curve(it_log)
    assert c.steps.tolist() == list(range(10, 201, 10)) and c.losses.tolist() == losses


@pytest.mark.parametrize("colon", [" : ", ": "])
def test_tcappdll_lines_both_spacings_rank0_taken(tmp_path, capsys, colon):
    lines = []
    for epoch in (0, 1):
        for it in (10, 20, 30):
            for rank in (1, 0):     # rank 1 first: interleaved, and its loss is different
                loss = 0.5 - 0.01 * (3 * epoch + it / 10) + 0.2 * rank
                lines.append(f"TCAPPDLL 2024-06-01 10:00:00 - Epoch{colon}{epoch} Iteration{colon}{it} "
                             f"rank{colon}{rank} train.loss{colon}{loss:.4f} train.ips{colon}12.3")
        lines.append("TCAPPDLL 2024-06-01 10:00:00 - Epoch: 0 val.top1 : 10.0")
    log = tmp_path / "dll.log"
    log.write_text("\n".join(["starting...", *lines]) + "\n")
    curve = read_loss_curve(log)
    assert curve.fmt == "dllogger"
    # Iteration restarts each epoch: step = epoch x 30 + iteration
    assert curve.steps.tolist() == [10, 20, 30, 40, 50, 60]
    assert curve.losses.tolist() == pytest.approx([0.49, 0.48, 0.47, 0.46, 0.45, 0.44])


def test_signed_rule_passes_a_collapsed_curve_two_sided_fails(tmp_path, capsys):
    ref, run = tmp_path / "ref.csv", tmp_path / "run.csv"
    losses = fake_losses(20)
    ref.write_text("step,loss\n" + "".join(f"{i},{x}\n" for i, x in enumerate(losses)))
    run.write_text("step,loss\n" + "".join(f"{i},{x * 0.1}\n" for i, x in enumerate(losses)))
    rc, out, _ = compare(capsys, run, ref)
    assert rc == 1 and out.strip().endswith("FAIL")
    assert metric(out, "mean relative error") == pytest.approx(0.9)
    assert metric(out, "signed relative error") == pytest.approx(-0.9)
    assert "two-sided verdict: FAIL" in out and "signed verdict: PASS" in out
    rc, out, _ = compare(capsys, run, ref, "--rule", "signed")
    assert rc == 0 and out.strip().endswith("PASS")
    assert compare_and_report(run, ref, rule="signed") == 0 and compare_and_report(run, ref) == 1


def test_align_index_vs_step_skip_first_last(tmp_path, capsys):
    run, ref = tmp_path / "run.csv", tmp_path / "ref.csv"
    run.write_text("2,1\n4,2\n6,3\n8,4\n")
    ref.write_text("1,1\n2,1\n3,1\n4,1\n5,1\n6,1\n")
    # by step: steps 2, 4, 6 -> |diff| 0, 1, 2; by position: 4 points -> 0, 1, 2, 3
    cases = (((), 1.0, 3), (("--align", "index"), 1.5, 4),
             (("--align", "index", "--skip-first", "1"), 2.0, 3),
             (("--align", "index", "--last", "2"), 2.5, 2), (("--skip-first", "1", "--last", "1"), 2.0, 1))
    for args, mae, n in cases:
        rc, out, _ = compare(capsys, run, ref, *args, "--min-points", "1")
        assert metric(out, "mean absolute error") == pytest.approx(mae), args
        assert re.search(rf"aligned (steps|by position): {n} ", out), out
    out = compare(capsys, run, ref, "--align", "index", "--min-points", "4")[1]
    assert "aligned by position: 4 points (run steps 2..8)" in out


@pytest.mark.parametrize("args, needle", [
    (("--skip-first", "-1"), "--skip-first: expected a whole number >= 0, got '-1'"),
    (("--last", "x"), "--last: expected a whole number >= 0"),
    (("--rel-tol", "nan"), "--rel-tol: expected a finite number >= 0"),
    (("--rule", "two"), "--rule: 'two' is not one of abs, signed"),
    (("--align", "time"), "--align: 'time' is not one of step, index"),
    (("--skip-first", "9"), "no aligned points left after --skip-first 9"),
])
def test_bad_options_one_line(tmp_path, capsys, args, needle):
    log = tmp_path / "a.csv"
    log.write_text("1,0.5\n2,0.4\n")
    rc, out, err = compare(capsys, log, log, *args)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1 and out == ""


def test_bom_csv_and_no_loss_line(tmp_path, capsys):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffstep,loss\n1,0.5\n2,0.25\n".encode("utf-8"))
    assert read_loss_curve(bom).losses.tolist() == [0.5, 0.25]
    tee = tmp_path / "device.log"
    tee.write_text("Traceback (most recent call last):\n  File x\nRuntimeError: device lost\n"
                   f"{STAMP}Epoch(train)  [1][ 5/50]  lr: 1.0000e-04  eta: 0:00:01  time: 0.1000\n")
    with pytest.raises(UserError, match="no loss values found"):
        read_loss_curve(tee)
    tee.write_text("Traceback (most recent call last):\nRuntimeError: device lost\n")
    with pytest.raises(UserError, match="no loss lines found"):
        read_loss_curve(tee)


def test_text_line_format():
    rec = {"lr": 1.998e-07, "data_time": 0.116, "grad_norm": 1.2345, "loss": 0.1337123456, "time": 0.7578,
           "epoch": 1, "iter": 10, "memory": 12345, "step": 10, "img_per_s": 12.5, "nonfinite_steps": 0}
    line = train_text_line(rec, 5005, 300, eta_s=62.9)
    assert re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d - mmengine - INFO - ", line[:40]), line
    assert line[40:] == ("Epoch(train)   [1][  10/5005]  lr: 1.9980e-07  eta: 0:01:02  time: 0.7578  "
                         "data_time: 0.1160  memory: 12345  grad_norm: 1.2345  loss: 0.13371235  "
                         "img_per_s: 12.5000  nonfinite_steps: 0")
    assert fixed_point(1.2345678e-6) == "0.000001234568" and fixed_point(2.5) == "2.50000000"
    val = val_text_line({"epoch": 1, "step": 32, "val_top1": 12.5, "val_loss": 0.5}, 12)
    assert val[40:] == "Epoch(val)  [1]  step: 32  val_top1: 12.5000  val_loss: 0.50000000"


@pytest.mark.parametrize("mode, lines", [("always", 3), ("never", 0)])
def test_text_log_setting(tmp_path, capsys, mode, lines):
    run_trainer(tmp_path, mode, f"train.text_log={mode}", "train.max_steps=3")
    out = capsys.readouterr().out
    assert sum("Epoch(train)" in ln for ln in out.splitlines()) == lines


@pytest.fixture(scope="module")
def teed_run(tmp_path_factory):
    """A tiny `maskfeat pretrain` with stdout piped (not a terminal), a line per step, 8 warmup steps."""
    out = tmp_path_factory.mktemp("teed") / "run"
    proc = subprocess.run([PYTHON, "-m", "maskfeat", "pretrain",
                           *tiny_pretrain_overrides(out, **{"optim.warmup_epochs": 1.0})],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (out / "device.log").write_text(proc.stdout)
    return out


def test_teed_stdout_matches_log_jsonl(teed_run, capsys):
    records = read_log(teed_run / "log.jsonl")
    lines = [ln for ln in (teed_run / "device.log").read_text().splitlines() if "Epoch(train)" in ln]
    assert len(records) == len(lines) == 16
    rc, out, _ = compare(capsys, teed_run / "device.log", teed_run / "log.jsonl")
    assert rc == 0 and "(mmengine-text, 16 points)" in out and "aligned steps: 16 (1..16)" in out
    assert metric(out, "mean relative error") < 1e-4


def test_logged_lr_is_the_lr_the_step_used(teed_run):
    cfg = yaml.safe_load((teed_run / "config.yaml").read_text())
    o = cfg["optim"]
    peak = o["lr"] * cfg["train"]["batch_size"] / o["base_batch_size"]
    f, w, t = o["warmup_start_factor"], 8, 16          # 8 steps an epoch, 1 warmup epoch, 2 epochs

    def closed_form(i):
        if i < w:
            return peak * (f + (1 - f) * i / (w - 1))
        return o["min_lr"] + (peak - o["min_lr"]) * (1 + math.cos(math.pi * (i - w) / (t - w))) / 2
    records = read_log(teed_run / "log.jsonl")
    assert sorted(records) == list(range(1, 17))
    for step, rec in records.items():                  # step s used the lr of 0-based step s - 1
        assert rec["lr"] == pytest.approx(closed_form(step - 1), rel=1e-9, abs=0), step
    assert records[1]["lr"] == pytest.approx(peak * f, rel=1e-9) and records[8]["lr"] == pytest.approx(peak)
