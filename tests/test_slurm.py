"""--launcher slurm: SLURM's variables -> torch.distributed's; two hand-made 'srun' tasks train to the
same weights as --launcher pytorch with two processes."""
import socket
import subprocess

import pytest
import torch

from helpers import PYTHON, REPO, cli_env
from maskfeat.engine.slurm import parse_nodelist, slurm_env
from maskfeat.errors import UserError
from maskfeat.logs import read_log

BASE = "configs/pretrain/maskfeat_vit-base-p16_in1k.yaml"
TINY = ["train_dataloader.batch_size=4", "model.arch=vit-pico", "model.img_size=64", "mask.min_num_patches=2",
        "data.source=skimage", "data.samples_per_epoch=16", "data.num_workers=0", "train.max_steps=3",
        "train.log_interval=1", "train.progress=false", "train.device=cpu"]


def test_nodelist_parser():
    assert parse_nodelist("node[01-03,07],gpu5") == ["node01", "node02", "node03", "node07", "gpu5"]
    assert parse_nodelist("localhost") == ["localhost"]
    assert parse_nodelist("a[8-10]") == ["a8", "a9", "a10"]
    assert parse_nodelist("r[1-2]-n[001,003]") == ["r1-n001", "r1-n003", "r2-n001", "r2-n003"]
    assert parse_nodelist("x1,y[2]") == ["x1", "y2"]
    for bad in ("node[01-03", "node[3-1]", "node[a-b]"):
        with pytest.raises(UserError, match="SLURM_JOB_NODELIST"):
            parse_nodelist(bad)


def test_slurm_env_sets_torch_variables(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")                           # no scontrol: parsed
    env = {"SLURM_PROCID": "9", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
           "SLURM_JOB_NODELIST": "gpu[07-08]"}
    assert slurm_env(env) == {"RANK": "9", "WORLD_SIZE": "16", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu07",
                              "MASTER_PORT": "29500"}
    assert env["RANK"] == "9"
    env = {**env, "MASTER_PORT": "12345", "MASTER_ADDR": "10.0.0.1"}
    assert slurm_env(env)["MASTER_ADDR"] == "10.0.0.1" and env["MASTER_PORT"] == "12345"
    with pytest.raises(UserError, match="SLURM_PROCID is not set"):
        slurm_env({"SLURM_NTASKS": "2"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def final_weights(folder) -> dict:
    return torch.load(folder / "last.pth", map_location="cpu", weights_only=True)["model"]


@pytest.mark.slow
def test_two_srun_tasks_train_like_torchrun(tmp_path):
    """~70 s on 2 shared cores: 2 'srun' tasks (variables set by hand, gloo) vs --launcher pytorch."""
    cmd = [PYTHON, "run_maskfeat.py", "--config", BASE, "--launcher", "slurm",
           "--work-dir", str(tmp_path / "slurm"), "--cfg-options", *TINY]
    port = str(free_port())
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(cli_env(), SLURM_PROCID=str(r), SLURM_NTASKS="2", SLURM_LOCALID=str(r),
                                       SLURM_JOB_NODELIST="localhost", MASTER_PORT=port)) for r in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-3000:] + outs[1][1][-3000:]
    assert "global batch 8" in outs[0][1] and "world 2" in outs[0][1]
    torchrun = [PYTHON, "run_maskfeat.py", "--config", BASE, "--launcher", "pytorch", "--nproc-per-node", "2",
                "--work-dir", str(tmp_path / "torchrun"), "--cfg-options", *TINY]
    proc = subprocess.run(torchrun, cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = final_weights(tmp_path / "slurm"), final_weights(tmp_path / "torchrun")
    assert a.keys() == b.keys()
    losses = {name: [r["loss"] for r in read_log(tmp_path / name / "log.jsonl").values()]
              for name in ("slurm", "torchrun")}
    assert len(losses["slurm"]) == 3 and losses["slurm"] == losses["torchrun"]
    assert len(set(losses["slurm"])) == 3                                 # it trained
    for k in a:
        assert torch.equal(a[k], b[k]), k
