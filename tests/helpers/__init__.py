"""What many tests share: paths, the command-line runners, a tiny in-process pre-training, log reading.

(Fixtures live in conftest.py; this is a plain module: ``from helpers import ...``.)
"""
import hashlib
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import torch

from maskfeat.logs import read_log

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO.parent / "shared" / "fixtures"
MMPRETRAIN_FIXTURE = FIXTURES / "mmpretrain_maskfeat_vit-tiny2.pth"


def in_ci() -> bool:
    """Whether the suite runs in CI (``CI`` set, as GitHub/GitLab set it), where nothing may skip quietly."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def need(ok: bool, what: str) -> None:
    """Skip the calling test when ``what`` (a dependency: a package, a fixture file) is missing, but fail
    under CI, where a skipped test would leave the run green."""
    if ok:
        return
    import pytest

    if in_ci():
        pytest.fail(f"CI: {what} is missing (a test dependency; under CI a missing one fails)", pytrace=False)
    pytest.skip(f"{what} is missing")


def mmpretrain_fixture_model(fx: dict):
    """mmpretrain's 2-layer ViT-tiny of the fixture (not one of our ARCHS), weights converted, eval mode."""
    from maskfeat.convert import mmpretrain_to_maskfeat
    from maskfeat.models import MaskFeat, build_encoder
    from maskfeat.models.hog import HOGGenerator

    model = MaskFeat(build_encoder("vit-tiny", img_size=224, depth=2), HOGGenerator(gaussian_window=16))
    model.eval()
    model.load_state_dict(mmpretrain_to_maskfeat(fx["state_dict"]), strict=True)
    return model


def tiny_pretrain_overrides(out_dir, **extra) -> list[str]:
    """Overrides for a seconds-long CPU pre-training run of `maskfeat pretrain`."""
    cfg = {
        "model.arch": "vit-pico", "model.img_size": 64, "mask.min_num_patches": 2,
        "data.samples_per_epoch": 64, "data.num_workers": 0, "train.batch_size": 8,
        "train.epochs": 2, "train.log_interval": 1, "train.output_dir": str(out_dir),
        "train.progress": False, "optim.warmup_epochs": 0.5,
    }
    cfg.update(extra)
    return [f"{k}={v}" for k, v in cfg.items()]


def cli_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    return env


PYTHON = sys.executable


# -- running the command line and the trainer in tests ----------------------------------------------

ERROR = "maskfeat pretrain: error: "


def maskfeat(*args, timeout=300):
    return subprocess.run([PYTHON, "-m", "maskfeat", *args], capture_output=True, text=True,
                          env=cli_env(), timeout=timeout)


def torchrun_cmd(*args, launcher=()):
    return [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *launcher,
            "-m", "maskfeat", *args]


def one_error_line(stderr: str) -> str:
    """The single 'maskfeat pretrain: error:' line of a failed run (asserted to be alone of its kind)."""
    errors = {line for line in stderr.splitlines() if line.startswith(ERROR)}
    assert len(errors) == 1, stderr[-3000:]
    return errors.pop()


def log_steps(path: Path) -> list[int]:
    """The steps of a run's log.jsonl that carry a loss, in order (a repeated step once)."""
    return sorted(read_log(path))


def log_losses(path: Path) -> dict[int, tuple[float, float]]:
    """{step: (loss, lr)} of a run's log.jsonl."""
    return {step: (rec["loss"], rec["lr"]) for step, rec in read_log(path).items()}


def run_trainer(tmp_path, name, *extra, step_hook=None):
    """An in-process tiny pre-training (``extra``: 'key=value' overrides); ``step_hook(trainer, loss)``
    may replace each step's loss."""
    from maskfeat.engine.distributed import DistEnv
    from maskfeat.tasks import find_task
    from maskfeat.tasks.pretrain import build_config

    cfg = build_config(None, tiny_pretrain_overrides(tmp_path / name, **dict(e.split("=", 1) for e in extra)))
    trainer = find_task("pretrain", cfg["modality"]).impl().build_trainer(cfg, DistEnv())
    if step_hook:
        inner = trainer.step_fn
        trainer.step_fn = lambda model, batch: step_hook(trainer, inner(model, batch))
    trainer.fit()
    return trainer


def eager_and_compiled_losses(tmp_path, batch: dict, *extra: str, steps: int = 3) -> tuple[list, list]:
    """Losses of ``steps`` optimizer steps on one fixed batch, eager and with train.compile=true
    (asserted not to have fallen back), for a vit-pico at 32 px (``extra``: 'key=value' overrides)."""
    from maskfeat.engine.distributed import DistEnv
    from maskfeat.tasks import find_task
    from maskfeat.tasks.pretrain import build_config

    losses = {}
    for compiled in (False, True):
        cfg = build_config(None, [
            "model.arch=vit-pico", "model.img_size=32", "mask.min_num_patches=1", "train.batch_size=4",
            f"train.compile={str(compiled).lower()}", f"train.output_dir={tmp_path / str(compiled)}",
            "train.progress=false", "data.samples_per_epoch=8", "data.num_workers=0", "optim.warmup_epochs=0",
            "optim.lr=0.05", *extra])
        trainer = find_task("pretrain", cfg["modality"]).impl().build_trainer(cfg, DistEnv())
        run = []
        for _ in range(steps):
            run.append(trainer._forward_backward(batch, sync=True).item())
            trainer._optimizer_step()
        assert compiled is False or trainer.fwd is not trainer._eager, "compile fell back to eager"
        losses[compiled] = run
    return losses[False], losses[True]


def snapshot(folder: Path) -> dict:
    """{relative path: sha256} of every file under ``folder`` (hidden ones included)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -- files that tests feed to the commands ---------------------------------------------------------

def save_pretrained(path, arch="vit-pico", img_size=32, patch=16, seed=0):
    """A checkpoint in the layout `maskfeat pretrain` writes ('model' + 'config')."""
    from maskfeat.config import resolve_config
    from maskfeat.defaults import PRETRAIN
    from maskfeat.models import build_pretrain_model

    cfg = resolve_config(PRETRAIN, None, [f"model.arch={arch}", f"model.img_size={img_size}",
                                          f"model.patch_size={patch}"])
    torch.manual_seed(seed)
    model = build_pretrain_model(cfg)
    torch.save({"model": model.state_dict(), "config": cfg, "step": 5}, path)
    return model


def png_bomb(width=100_000, height=100_000) -> bytes:
    """A valid PNG header (IHDR) claiming width x height RGB pixels, with a few bytes of data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


class Evil:
    """Pickled, it runs code when loaded (a checkpoint that must be refused)."""
    def __reduce__(self):
        return (print, ("pwned",))


def load_bench(name: str):
    """bench/<name>.py as a module (the benches are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_command(capsys, command: str, *args) -> tuple[int, str, str]:
    """``maskfeat COMMAND ARGS...`` in process: (exit code, stdout, stderr)."""
    from maskfeat.cli import main

    rc = main([command, *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def report_figure(out: str, name: str) -> float:
    """The number after ``name:`` on the report line starting with ``name`` (compare-loss, check-port)."""
    line = next(ln for ln in out.splitlines() if ln.startswith(name))
    return float(line.split(":")[1].split()[0])
