"""A run's output folder: one run at a time (a lock naming its PID), never another run's
checkpoints overwritten unless ``train.overwrite`` says so, nothing written before every check.

How a start is decided (``plan_start``), with ``last.pth`` the folder's checkpoint:

* ``train.resume: auto`` (the default): continue from ``last.pth`` if there is one; a run that has
  already done all its steps stops at once with exit status 0 and writes nothing.
* ``train.resume: PATH``: continue from that checkpoint.
* ``train.resume: ''``: start from scratch; refused when the folder holds a run's checkpoints
  unless ``train.overwrite: true``, which removes that run's files first. A start from scratch
  also removes what an earlier start left without any checkpoint (a log, a config).

``open_run_folder`` is the one step a task calls before training: every check first (the lock, the
start plan), then rank 0 takes the lock, removes the temp files of killed writers (``.last.pth.tmp<PID>``
of a dead PID; one line says so), clears what the start replaces and writes ``config.yaml``.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..atomic import remove_stale_temp_files, stale_note
from ..config import save_config
from ..errors import NothingToDo, UserError
from ..run_lock import LOCK_NAME, RunLock  # noqa: F401  (LOCK_NAME, RunLock: this module's names before)
from .checkpoint import load_checkpoint
from .distributed import DistEnv, any_rank

# what the Trainer and the tasks write into a run folder (removed by train.overwrite=true)
RUN_FILES = ("last.pth", "best.pth", "log.jsonl", "loss_curve.png", "config.yaml", "metrics.json",
             "eval.json", "log.csv", "wandb_run_id.txt")
RUN_DIRS = ("tensorboard", "wandb")      # trackers' folders
RUN_GLOBS = ("epoch_*.pth",)
TRAINING_KEYS = ("model", "optimizer", "scheduler", "scaler", "step", "epoch", "iter_in_epoch", "rng")


@dataclass
class Start:
    checkpoint: dict | None = None      # the training checkpoint to continue from (None: from scratch)
    path: Path | None = None
    clear_folder: bool = False          # train.overwrite: remove the earlier run's files first


def describe(obj: dict) -> str:
    """What kind of file a loaded checkpoint is, for error messages."""
    if "state_dict" in obj:
        return "an mmpretrain / mmengine checkpoint"
    if "model_state" in obj:
        return "a SlowFast checkpoint"
    if obj and all(hasattr(v, "shape") for v in obj.values()):
        return "a plain state dict (weights only)"
    if "model" in obj and "optimizer" not in obj:
        return "a weights-only maskfeat checkpoint (no optimizer state; use it as model.pretrained)"
    return "not a maskfeat training checkpoint"


def read_training_checkpoint(path: Path, model_state: dict, map_location) -> dict:
    """The checkpoint at ``path`` if it is a training checkpoint of this very model; else a one-line
    UserError saying what the file is and what was expected."""
    ckpt = load_checkpoint(path, map_location=map_location)
    missing = [k for k in TRAINING_KEYS if k not in ckpt]
    if missing:
        raise UserError(f"train.resume: {path} is {describe(ckpt)}, not a training checkpoint (no "
                        f"{', '.join(repr(k) for k in missing[:3])}; "
                        "expected a last.pth / epoch_N.pth of a run)")
    theirs = ckpt["model"]
    for name, t in model_state.items():
        if name not in theirs:
            raise UserError(f"train.resume: {path} is a checkpoint of another model (no weight '{name}'); "
                            "check model.arch and the task")
        if tuple(theirs[name].shape) != tuple(t.shape):
            raise UserError(f"train.resume: {path} is a checkpoint of another model shape: '{name}' is "
                            f"{tuple(theirs[name].shape)}, this run's is {tuple(t.shape)} (check model.arch, "
                            "model.img_size, model.patch_size)")
    extra = sorted(set(theirs) - set(model_state))
    if extra:
        raise UserError(f"train.resume: {path} is a checkpoint of another model (weight '{extra[0]}' has no "
                        "place here); check model.arch and the task")
    return ckpt


def checkpoints_in(folder: Path) -> list[Path]:
    """The checkpoints a run left in ``folder``."""
    found = [p for name in RUN_FILES if name.endswith(".pth") and (p := folder / name).is_file()]
    return found + [p for pattern in RUN_GLOBS for p in sorted(folder.glob(pattern))]


def plan_start(folder: Path, resume: str, overwrite: bool, model_state: dict, total_steps: int,
               map_location) -> Start:
    """What this start does with ``folder``; reads only. A finished run raises NothingToDo."""
    last, held = folder / "last.pth", checkpoints_in(folder)
    if resume == "auto" and last.is_file():
        path = last
    elif resume and resume != "auto":
        path = Path(resume)
        if not path.is_file():
            raise UserError(f"train.resume: checkpoint not found: {path}")
        if held and path.resolve() not in {p.resolve() for p in held} and not overwrite:
            raise UserError(f"train.resume: resuming from {path} would overwrite the run in {folder} "
                            f"({held[0].name}); choose another train.output_dir or set train.overwrite=true")
    elif held and not overwrite:
        step = load_checkpoint(last).get("step", "?") if last.is_file() else "?"
        raise UserError(f"train.output_dir: {folder} holds a run ({held[0].name}, step {step}); "
                        "train.resume=auto continues it, train.overwrite=true starts over, "
                        "or choose another train.output_dir")
    else:       # from scratch: an earlier start's logs without a checkpoint, or train.overwrite
        return Start(clear_folder=True)
    ckpt = read_training_checkpoint(path, model_state, map_location)
    if ckpt["step"] >= total_steps:
        raise NothingToDo(f"{folder}: already finished at step {ckpt['step']} of {total_steps} "
                          f"({path.name}); nothing to do, nothing written (train.overwrite=true starts over, "
                          "more train.epochs continue it)")
    return Start(ckpt, path)


def clear_run_files(folder: Path) -> list[str]:
    """Remove an earlier run's (or start's) files from ``folder``; the names removed."""
    gone = [p for name in RUN_FILES if (p := folder / name).is_file()]
    gone += [p for pattern in RUN_GLOBS for p in sorted(folder.glob(pattern))]
    for p in gone:
        p.unlink()
    for name in RUN_DIRS:
        if (folder / name).is_dir():
            shutil.rmtree(folder / name)
            gone.append(folder / name)
    return [p.name for p in gone]


def check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write_test_{id(output_dir)}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"train.output_dir: cannot write to {output_dir} ({e.strerror})") from None


@dataclass
class RunFolder:
    """A run folder taken for one run: its lock (let go when the run ends) and what this start does."""
    path: Path
    lock: RunLock
    start: Start

    def release(self) -> None:
        self.lock.release()


def _stop_on_any_rank(lock: RunLock, env: DistEnv, failed: UserError | None, elsewhere: str) -> None:
    """Every rank stops (none waits at a barrier) and lets the folder go when any rank failed; a rank
    that did not fail itself raises ``elsewhere``."""
    if any_rank(failed is not None, env):
        lock.release()
        raise failed or UserError(elsewhere)


def _plan(folder: Path, lock: RunLock, train: dict, env: DistEnv, model_state: dict,
          total_steps: int) -> Start:
    """Whether the folder is free (the lock, rank 0) and what this start does with it (every rank)."""
    failed, start = None, Start()
    try:
        if env.is_main:
            lock.check()
        start = plan_start(folder, train["resume"], train["overwrite"], model_state, total_steps, env.device)
    except UserError as e:
        failed = e
    except OSError as e:                         # e.g. a name too long for the file system
        failed = UserError(f"train.output_dir: {folder}: {e.strerror or e}")
    except BaseException:                        # NothingToDo, KeyboardInterrupt: let the folder go
        lock.release()
        raise
    _stop_on_any_rank(lock, env, failed, f"train.output_dir: rank 0 cannot use {folder}")
    return start


def _take(folder: Path, lock: RunLock, start: Start, cfg: dict, env: DistEnv) -> None:
    """Rank 0 takes the folder (lock), clears what ``start`` replaces and writes ``config.yaml``;
    if it cannot, every rank stops (none waits at a barrier)."""
    failed = None
    if env.is_main:
        try:
            check_writable(folder)
            lock.claim()
            if stale := remove_stale_temp_files(folder):
                env.print_main(stale_note(folder, stale))
            if start.clear_folder and (gone := clear_run_files(folder)):
                env.print_main(f"starting from scratch in {folder}: removed {', '.join(gone)}")
            save_config(cfg, folder / "config.yaml")
        except (UserError, OSError) as e:
            failed = e if isinstance(e, UserError) else UserError(f"train.output_dir: {folder}: {e}")
    _stop_on_any_rank(lock, env, failed, f"train.output_dir: rank 0 cannot write to {folder}")


def open_run_folder(cfg: dict, env: DistEnv, model_state: dict, total_steps: int) -> RunFolder:
    """The run-folder step before training: every check (nothing written), then the lock, the clean
    and ``config.yaml`` (rank 0). A finished run raises NothingToDo."""
    folder = Path(cfg["train"]["output_dir"])
    lock = RunLock(folder)
    start = _plan(folder, lock, cfg["train"], env, model_state, total_steps)
    _take(folder, lock, start, cfg, env)
    return RunFolder(folder, lock, start)
