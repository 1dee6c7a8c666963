"""run_maskfeat.py / maskfeat run: the model-zoo interface over maskfeat pretrain."""
import argparse
import json
import subprocess

import pytest
import yaml

from helpers import PYTHON, REPO, cli_env
from maskfeat.cli import main
from maskfeat.commands.run import MMPRETRAIN_ALIASES, add_arguments, translate
from maskfeat.config import ConfigError, resolve_config
from maskfeat.defaults import PRETRAIN

BASE = "configs/pretrain/maskfeat_vit-base-p16_in1k.yaml"
TINY = ["model.arch=vit-pico", "model.img_size=64", "mask.min_num_patches=2", "data.source=skimage",
        "data.samples_per_epoch=16", "data.num_workers=0", "train.max_steps=3", "train.log_interval=1",
        "train.progress=false", "train.device=cpu"]


def parse(*argv) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["--config", str(REPO / BASE), *argv])


def resolved(args, world=1) -> dict:
    return resolve_config(PRETRAIN, args.config, translate(args, world))


def test_mmpretrain_aliases_land_on_our_keys():
    args = parse("--cfg-options", "train_dataloader.dataset.data_root=/data/in1k",
                 "train_dataloader.batch_size=64", "train_cfg.max_epochs=7", "optim.min_lr=2e-6",
                 "auto_scale_lr.base_batch_size=512", "optim_wrapper.optimizer.lr=1.6e-3")
    cfg = resolved(args)
    assert cfg["data"]["root"] == "/data/in1k" and cfg["train"]["batch_size"] == 64
    assert cfg["train"]["epochs"] == 7 and cfg["optim"]["min_lr"] == 2e-6
    assert cfg["optim"]["lr"] == 1.6e-3 and cfg["optim"]["base_batch_size"] == 512
    for alias, ours in MMPRETRAIN_ALIASES.items():             # every alias names a real key of ours
        section, key = ours.split(".")
        assert key in PRETRAIN[section], alias


def test_mmpretrain_lr_is_taken_as_the_runs_lr():
    """mmpretrain's optimizer.lr applies as is: our base batch becomes the global batch (4 x 2 GPUs x 3)."""
    args = parse("--cfg-options", "optim_wrapper.optimizer.lr=1e-3", "train_dataloader.batch_size=4",
                 "train.accum_steps=3")
    cfg = resolved(args, world=2)
    assert cfg["optim"]["base_batch_size"] == 24
    assert cfg["optim"]["lr"] * 24 / cfg["optim"]["base_batch_size"] == 1e-3
    assert resolved(parse("--cfg-options", "optim.lr=1e-3"))["optim"]["base_batch_size"] == 256


def test_flags_map_to_train_keys():
    cfg = resolved(parse("--work-dir", "/tmp/w", "--resume"))
    assert cfg["train"]["output_dir"] == "/tmp/w" and cfg["train"]["resume"] == "auto"
    cfg = resolved(parse("--resume", "/tmp/w/epoch_3.pth", "--amp", "--cfg-options", "train.amp=none"))
    assert cfg["train"]["resume"] == "/tmp/w/epoch_3.pth" and cfg["train"]["amp"] == "fp16"
    assert resolved(parse("--amp", "--cfg-options", "train.amp=bf16"))["train"]["amp"] == "bf16"
    assert resolved(parse("--cfg-options", "train.amp=none"))["train"]["amp"] == "none"


def test_unknown_key_names_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.batch_sise'.*train.batch_size"):
        translate(parse("--cfg-options", "train.batch_sise=4"), 1)
    with pytest.raises(ConfigError, match=r"'optim_wrapper.optimizer.momentum'"):
        translate(parse("--cfg-options", "optim_wrapper.optimizer.momentum=0.9"), 1)


def test_bad_command_lines_exit_2(capsys):
    assert main(["run", "--config", BASE, "--nproc-per-node", "2"]) == 2
    assert "--launcher pytorch" in capsys.readouterr().err
    assert main(["run", "--config", BASE, "--cfg-options", "train_dataloader.batchsize=2"]) == 2
    err = capsys.readouterr().err
    assert "train_dataloader.batchsize" in err and len(err.strip().splitlines()) == 1
    assert main(["run", "--config", "configs/pretrain/nope.yaml"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_launcher_none_runs_in_process(tmp_path):
    assert main(["run", "--config", str(REPO / BASE), "--work-dir", str(tmp_path),
                 "--cfg-options", "train_dataloader.batch_size=4", *TINY]) == 0
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3] and (tmp_path / "last.pth").is_file()


@pytest.mark.slow
def test_pytorch_launcher_two_cpu_processes(tmp_path):
    """torchrun with 2 gloo processes, started by run_maskfeat.py itself (~30 s on 2 cores)."""
    cmd = [PYTHON, "run_maskfeat.py", "--config", BASE, "--launcher", "pytorch", "--nproc-per-node", "2",
           "--work-dir", str(tmp_path), "--cfg-options", "train_dataloader.batch_size=4", *TINY]
    proc = subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.distributed.run --standalone --nnodes 1 --nproc-per-node 2" in proc.stderr
    assert "global batch 8" in proc.stderr and "world 2" in proc.stderr
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]                      # rank 0 alone writes the log
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert cfg["train"]["batch_size"] == 4 and cfg["model"]["arch"] == "vit-pico"
    assert (tmp_path / "last.pth").is_file()
