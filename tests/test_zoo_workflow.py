"""The model zoo's workflow end to end (issue 28): the dllogger lines a zoo's loss.py reads, --amp as
mmpretrain's AMP, and the exit codes of --launcher pytorch. compare-loss's options: test_zoo_compare.py."""
import json
import re
import subprocess

import pytest
import torch

from helpers import PYTHON, REPO, cli_env, log_losses, run_command, run_trainer
from maskfeat.commands.run import add_arguments, launch_exit_code, pick_recipe, translate
from maskfeat.engine.distributed import DistEnv
from maskfeat.engine.logger import RunLogger
from maskfeat.tasks import resolve_task

ZOO_CONFIG = "../configs/maskfeat/maskfeat_vit-base-p16_8xb256-amp-coslr-300e_in1k.py"
BASE = "configs/pretrain/maskfeat_vit-base-p16_in1k.yaml"
TINY = ["model.arch=vit-pico", "model.img_size=64", "mask.min_num_patches=2", "data.source=skimage",
        "data.samples_per_epoch=16", "data.num_workers=0", "train.batch_size=4", "train.log_interval=1",
        "train.progress=false", "train.device=cpu"]
DLL_SHAPE = re.compile(r"TCAPPDLL \d{4}-\d\d-\d\d \d\d:\d\d:\d\d - Epoch: (\d+) Iteration: (\d+) rank : 0 "
                       r"train\.loss : (\d+\.\d{8,}) train\.ips : \d+\.\d\d")


def zoo_loss_py(device_log, reference_log) -> tuple[float, float, int]:
    """A loss.py written from the model zoos' README: take the Iteration / train.loss pairs of each log
    in order, cut both to the shorter, report mean((dev - ref) / ref) and mean(dev - ref)."""
    def pairs(path):
        found = []
        for line in open(path):
            it = re.search(r"Iteration\s*:\s*(\d+)", line)
            loss = re.search(r"train\.loss\s*:\s*(\S+)", line)
            if it and loss:
                found.append((int(it.group(1)), float(loss.group(1))))
        return found
    dev, ref = pairs(device_log), pairs(reference_log)
    n = min(len(dev), len(ref))
    rel = sum((d - r) / r for (_, d), (_, r) in zip(dev[:n], ref[:n])) / n
    diff = sum(d - r for (_, d), (_, r) in zip(dev[:n], ref[:n])) / n
    return rel, diff, n


def teed(tmp_path, capsys, name, *extra):
    """An in-process tiny run with its text lines on stdout, kept as <name>.log (a tee)."""
    run_trainer(tmp_path, name, "train.text_log=always", *extra)
    log = tmp_path / f"{name}.log"
    log.write_text(capsys.readouterr().out)
    return log


def test_dllogger_lines_read_by_a_zoo_loss_py_equal_compare_loss(tmp_path, capsys):
    """(must show 1) our dllogger output and a reference, read by a loss.py-style parser: the same signed
    figures as compare-loss; the lines have the zoo's shape and carry log.jsonl's steps and losses."""
    dev = teed(tmp_path, capsys, "dev", "train.text_log_format=dllogger", "train.max_steps=12")
    ref = teed(tmp_path, capsys, "ref", "train.text_log_format=dllogger", "optim.lr=1e-2", "train.seed=1")
    lines = dev.read_text().splitlines()
    assert len(lines) == 12 and all(DLL_SHAPE.fullmatch(ln) for ln in lines), lines[:2]
    logged = log_losses(tmp_path / "dev" / "log.jsonl")
    shown = [DLL_SHAPE.fullmatch(ln).groups() for ln in lines]
    assert [int(it) for _, it, _ in shown] == sorted(logged) == list(range(1, 13))     # the global step
    assert [int(ep) for ep, _, _ in shown] == [0] * 8 + [1] * 4                          # 8 steps an epoch
    for (_, it, loss), step in zip(shown, sorted(logged)):
        assert float(loss) == pytest.approx(logged[step][0], abs=5e-9)
    rel, diff, n = zoo_loss_py(dev, ref)
    assert n == 12 and abs(rel) > 1e-4                        # the reference has 16 points: cut to 12
    out_json = tmp_path / "cmp.json"
    rc, out, _ = run_command(capsys, "compare-loss", dev, ref, "--rule", "signed", "--no-plot", "--json",
                             out_json)
    fig = json.loads(out_json.read_text())
    assert rc == fig["exit_code"] and fig["run"]["format"] == fig["reference"]["format"] == "dllogger"
    assert fig["aligned_points"] == 12
    assert fig["signed_relative_error"] == pytest.approx(rel, rel=1e-12, abs=1e-15)
    assert fig["signed_absolute_error"] == pytest.approx(diff, rel=1e-12, abs=1e-15)
    assert abs(diff) < 0.9 * fig["mean_absolute_error"]       # the curves cross: signed and two-sided differ


def test_both_formats_a_prefix_and_format_per_log(tmp_path, capsys):
    """(must show 3) a log holding mmengine and dllogger lines (here with another prefix): read as
    mmengine by default, saying so; --format dllogger reads the other lines; --format per log."""
    mixed = teed(tmp_path, capsys, "both", "train.text_log_format=[mmengine,dllogger]",
                 "train.dllogger_prefix=SDAADLL", "train.max_steps=12")
    text = mixed.read_text()
    assert text.count("SDAADLL ") == 12 and text.count("Epoch(train)") == 12 and "TCAPPDLL" not in text
    log = tmp_path / "both" / "log.jsonl"
    rc, out, _ = run_command(capsys, "compare-loss", mixed, log, "--no-plot")
    assert rc == 0 and f"run:       {mixed} (mmengine-text, 12 points)" in out
    assert "note: both.log holds mmengine and dllogger lines: read as mmengine text" in out
    rc, out, _ = run_command(capsys, "compare-loss", mixed, log, "--no-plot", "--format", "dllogger,auto")
    assert rc == 0 and f"run:       {mixed} (dllogger, 12 points)" in out and "note:" not in out
    assert float(out.split("mean absolute error: ")[1].split()[0]) < 5e-9
    rc, _, err = run_command(capsys, "compare-loss", mixed, log, "--no-plot", "--format", "jsonl")
    assert rc == 2 and "both.log:1: not valid JSON" in err and len(err.strip().splitlines()) == 1


def test_dllogger_lines_from_rank_0_or_every_rank(capsys):
    rec = {"epoch": 2, "step": 17, "loss": 0.4931, "img_per_s": 12.345}
    for rank, ranks, active, shown in ((0, "main", True, True), (3, "main", False, False),
                                      (3, "all", False, True)):
        logger = RunLogger("/nonexistent", active=active, trackers=(), text=True, formats=["dllogger"],
                           dllogger={"ranks": ranks, "rank": rank})
        logger.train_lines(rec, 8, 4, 0.0)
        out = capsys.readouterr().out
        assert bool(out) == shown, (rank, ranks)
        if shown:
            assert out.rstrip().endswith(f"- Epoch: 1 Iteration: 17 rank : {rank} train.loss : 0.49310000 "
                                         "train.ips : 12.35")
    both = RunLogger("/nonexistent", active=True, trackers=(), text=True, formats=["mmengine", "dllogger"])
    both.val_lines({"epoch": 3, "step": 24, "val_top1": 12.5, "val_samples": 9}, 4)
    mm, dll = capsys.readouterr().out.splitlines()
    assert "Epoch(val)" in mm and dll.endswith(" - Epoch: 2 rank : 0 val.top1 : 12.5000 val.samples : 9")
    quiet = RunLogger("/nonexistent", active=True, trackers=(), text=False, formats=["dllogger"])
    quiet.train_lines(rec, 8, 4, 0.0)
    assert capsys.readouterr().out == ""                                   # train.text_log=never


def parse(*argv):
    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_amp_flag_is_mmpretrains_fp16_with_a_dynamic_grad_scaler(tmp_path):
    """(must show 2) --amp on the zoo's config: train.amp=fp16, autocast fp16 and torch's dynamic
    GradScaler (init 2^16, x2 every 2000 steps, x0.5 on overflow): AmpOptimWrapper(loss_scale='dynamic')."""
    args = parse("--config", ZOO_CONFIG, "--amp", "--cfg-options", *TINY, "train.max_steps=2",
                 f"train.output_dir={tmp_path / 'r'}", "train.amp=none")       # --amp turns AMP on
    pick_recipe(args)
    task, cfg = resolve_task(args.job, args.config, translate(args, 1))
    assert cfg["train"]["amp"] == "fp16"
    trainer = task.impl().build_trainer(cfg, DistEnv())
    s = trainer.scaler
    assert trainer.dtype == torch.float16 and s.is_enabled()
    assert (s.get_scale(), s.get_growth_factor(), s.get_backoff_factor(), s.get_growth_interval()) == (
        2.0 ** 16, 2.0, 0.5, 2000)
    trainer.fit()
    assert len(log_losses(tmp_path / "r" / "log.jsonl")) == 2
    # the recipe alone is mmpretrain's precision too; bf16 stays one key away, kept by --amp
    assert resolve_task("pretrain", str(REPO / BASE))[1]["train"]["amp"] == "fp16"
    bf16 = parse("--config", ZOO_CONFIG, "--amp", "--cfg-options", "train.amp=bf16")
    pick_recipe(bf16)
    assert resolve_task(bf16.job, bf16.config, translate(bf16, 1))[1]["train"]["amp"] == "bf16"


def launch(tmp_path, *options, timeout=240):
    cmd = [PYTHON, "run_maskfeat.py", "--config", BASE, "--launcher", "pytorch", "--nproc-per-node", "2",
           "--cfg-options", *TINY, *options]
    return subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=timeout)


def test_bad_data_under_launcher_pytorch_is_exit_2_one_line(tmp_path):
    """(must show 4) fewer samples than a batch per process, under --launcher pytorch with 2
    processes: exit 2, one line, no elastic traceback (checked before any process starts)."""
    proc = launch(tmp_path, "data.samples_per_epoch=6", f"train.output_dir={tmp_path / 'out'}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [
        "run_maskfeat: error: data: 6 samples are fewer than one global batch (4 x 2 processes)"]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_an_error_in_the_processes_is_exit_2_one_line(tmp_path):
    """A check only the processes make (the run folder holds another run): exit 2, the rank-0 line
    once, no elastic traceback (~15 s: two gloo processes start)."""
    out = tmp_path / "held"
    first = launch(tmp_path, f"train.output_dir={out}", "train.max_steps=1")
    assert first.returncode == 0, first.stderr[-3000:]
    proc = launch(tmp_path, f"train.output_dir={out}", "train.resume=")
    assert proc.returncode == 2, proc.stderr[-3000:]
    noise = ("Traceback", "exitcode", "Failed")                      # what torch-elastic's report holds
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("run_maskfeat: error") or any(
        w in ln for w in noise)]
    assert errors == [f"run_maskfeat: error: train.output_dir: {out} holds a run (last.pth, step 1); "
                      "train.resume=auto continues it, train.overwrite=true starts over, or choose another "
                      "train.output_dir"], proc.stderr[-3000:]


def test_launch_exit_code():
    assert launch_exit_code({1: 2, 0: -15}) == 2                 # bad input anywhere: 2
    assert launch_exit_code({0: 1}) == 1 and launch_exit_code({0: 143, 1: 1}) == 1     # a crash: 1
    assert launch_exit_code({0: -15}) == 143 and launch_exit_code({0: 130}) == 130   # a signal
