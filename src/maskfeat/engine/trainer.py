"""The training loop shared by every command: AMP, accumulation, clipping, logging,
atomic checkpoints, SIGTERM/SIGINT stop at a step boundary, exact resume."""
from __future__ import annotations

import math
import signal
import sys
import time
from collections import deque
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..errors import Interrupted, UserError
from .checkpoint import rng_state, save_checkpoint, set_rng_state
from .device import (
    amp_dtype,
    compile_mode,
    ddp_device_ids,
    grad_scaler,
    peak_memory_mib,
)
from .distributed import DistEnv, any_rank, barrier
from .logger import RunLogger
from .optim import build_optimizer, build_scheduler, current_lr
from .run_folder import RunFolder, Start


@dataclass
class LoopState:
    step: int = 0            # optimizer steps done in the whole run
    epoch: int = 0           # 0-based epoch being run
    iter_in_epoch: int = 0   # optimizer steps done in this epoch


StepFn = Callable[[nn.Module, dict], torch.Tensor]


def steps_per_epoch(samples_per_rank: int, batch: int, accum: int) -> int:
    """Optimizer steps in one epoch of a process's samples; none is a one-line error (before anything
    is written, and in a launcher's parent before any process starts)."""
    steps = samples_per_rank // batch // accum
    if steps < 1:
        raise UserError(f"train.batch_size: {batch} x accum {accum} exceeds one epoch of data "
                        f"({samples_per_rank} samples per process)")
    return steps


class Trainer:
    """Runs ``step_fn(model, batch) -> scalar loss`` over ``loader`` for ``train.epochs``.

    ``on_epoch_end(trainer, epoch) -> dict | None`` may evaluate and return metrics to log;
    ``extra_state`` objects (with state_dict / load_state_dict, e.g. an EMA) are checkpointed;
    ``after_fit(trainer)`` runs on rank 0 when ``fit`` ends with a log (e.g. the loss-curve plot).
    The constructor reads and writes no file: the task hands over the run folder (``attach``), taken
    by ``engine.run_folder.open_run_folder``, before ``fit``.
    """

    def __init__(self, cfg: dict, model: nn.Module, loader, env: DistEnv, step_fn: StepFn, *,
                 layer_decay: float | None = None, on_epoch_end=None, extra_state: dict | None = None,
                 on_step_end=None, build_optim=None, after_fit=None):
        self.cfg, self.env, self.loader, self.step_fn = cfg, env, loader, step_fn
        t = cfg["train"]
        self.epochs, self.accum, self.batch = t["epochs"], t["accum_steps"], t["batch_size"]
        self.output_dir = Path(t["output_dir"])
        self.on_epoch_end, self.extra_state = on_epoch_end, extra_state or {}
        self.on_step_end = on_step_end      # (trainer) after each optimizer step, e.g. an EMA update
        self.after_fit = after_fit          # (trainer) on rank 0 at the end of fit, when there is a log
        self.iters_per_epoch = steps_per_epoch(loader.samples_per_rank, self.batch, self.accum)
        self.total_steps = self.epochs * self.iters_per_epoch
        if t["max_steps"]:
            self.total_steps = min(self.total_steps, t["max_steps"])
        self.folder: RunFolder | None = None      # attach(): the folder taken for this run
        self.start = Start()
        self.logger: RunLogger | None = None
        self._wrap_model(model)

        self.global_batch = self.batch * env.world * self.accum
        # build_optim(model, optim_cfg, global_batch, layer_decay): another optimizer (e.g. LARS)
        self.optimizer = (build_optim or build_optimizer)(self.model, cfg["optim"], self.global_batch,
                                                          layer_decay)
        self.fused = bool(self.optimizer.defaults.get("fused"))
        self.scheduler = build_scheduler(self.optimizer, cfg["optim"], self.iters_per_epoch, self.epochs)
        self.dtype = amp_dtype(t["amp"], env.device)
        self.scaler = grad_scaler(env.device, self.dtype)
        self.state = LoopState()
        self._stop_signal = 0
        self._loss_window: deque = deque(maxlen=10)   # mmpretrain logs the mean of the last 10 losses
        self.bad_seen, self.samples_seen = 0, 0
        self._nonfinite = torch.zeros((), device=env.device)       # consecutive non-finite steps
        self._nonfinite_max = torch.zeros((), device=env.device)   # longest such run since the last log
        self._nonfinite_total = torch.zeros((), device=env.device)
        self._step_lr = current_lr(self.optimizer)   # the lr the last step used (logged as 'lr')
        self._timed_s, self._timed_n = 0.0, 0         # step time and steps in this process (eta)

    def attach(self, folder: RunFolder) -> None:
        """Train into ``folder`` (locked, cleaned, config written by ``open_run_folder``): its start plan,
        the run's log."""
        t = self.cfg["train"]
        self.folder, self.start = folder, folder.start
        text = {"always": True, "never": False}.get(t.get("text_log", "auto"), not sys.stdout.isatty())
        self.logger = RunLogger(self.output_dir, active=self.env.is_main, text=text,
                                trackers=t.get("report_to", ["tensorboard"]), config=self.cfg,
                                formats=t.get("text_log_format", ["mmengine"]),
                                dllogger={"prefix": t.get("dllogger_prefix", "TCAPPDLL"),
                                          "ranks": t.get("dllogger_ranks", "main"), "rank": self.env.rank})
        if self._compile_note and t["compile"]:
            self.env.print_main(self._compile_note)

    def _wrap_model(self, model: nn.Module) -> None:
        """``model`` (the bare module: checkpoints, EMA) on the device; DDP and torch.compile around it."""
        env, t = self.env, self.cfg["train"]
        self.model = model.to(env.device)
        wrapped = self.model
        if env.distributed:
            wrapped = DistributedDataParallel(self.model, device_ids=ddp_device_ids(env.device),
                                              broadcast_buffers=False)
        self.ddp = wrapped if env.distributed else None
        # the note (if any) is said by attach, after the run folder's messages
        mode, self._compile_note = compile_mode(t.get("compile_mode", "default"), env.device)
        self.fwd = (torch.compile(wrapped, mode=None if mode == "default" else mode) if t["compile"]
                    else wrapped)
        self._eager = wrapped

    # -- checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(), "scheduler": self.scheduler.state_dict(),
            **asdict(self.state), "rng": rng_state(self.env.device), "config": self.cfg,
            "loss_window": [float(x) for x in self._loss_window],
            "extra": {k: v.state_dict() for k, v in self.extra_state.items()},
        }

    def save(self, name: str) -> Path | None:
        """Rank 0 writes ``<output_dir>/<name>.pth`` atomically; a failed write keeps the old file."""
        path = self.output_dir / f"{name}.pth"
        if self.env.is_main:
            try:
                save_checkpoint(self.state_dict(), path)
            except OSError as e:
                self.logger.info(f"warning: checkpoint write to {path} failed ({e.strerror}); "
                                 "previous file kept")
                path = None
        barrier(self.env)
        return path

    def resume(self) -> None:
        """Continue from the checkpoint ``plan_start`` chose (and checked), if any."""
        ckpt, path = self.start.checkpoint, self.start.path
        if ckpt is None:
            return
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        for k, obj in self.extra_state.items():
            if k in ckpt.get("extra", {}):
                obj.load_state_dict(ckpt["extra"][k])
        self.state = LoopState(ckpt["step"], ckpt["epoch"], ckpt["iter_in_epoch"])
        self._loss_window.extend(torch.tensor(x, device=self.env.device) for x in ckpt.get("loss_window", []))
        if self.state.iter_in_epoch >= self.iters_per_epoch:
            self.state.epoch, self.state.iter_in_epoch = self.state.epoch + 1, 0
        if note := set_rng_state(ckpt["rng"], self.env.device):
            self.logger.info(note)
        self.scheduler.step_update(self.state.step)
        self.start = Start()                      # the loaded tensors are not kept alive
        self.logger.info(f"resumed from {path} at step {self.state.step} (epoch {self.state.epoch + 1}, "
                         f"iter {self.state.iter_in_epoch}), lr {current_lr(self.optimizer):.3e}")

    # -- one step ------------------------------------------------------------------------------
    def _forward_backward(self, batch: dict, sync: bool) -> torch.Tensor:
        ctx = self.ddp.no_sync() if (self.ddp is not None and not sync) else nullcontext()
        with ctx:
            with torch.autocast(self.env.device.type, dtype=self.dtype or torch.float32,
                                enabled=self.dtype is not None):
                try:
                    loss = self.step_fn(self.fwd, batch)
                except Exception as e:   # torch.compile failure: fall back to eager once
                    if self.fwd is self._eager:
                        raise
                    self.logger.info(f"warning: torch.compile failed ({type(e).__name__}); running eager")
                    self.fwd = self._eager
                    loss = self.step_fn(self.fwd, batch)
            self.scaler.scale(loss / self.accum).backward()
        return loss.detach()

    def _optimizer_step(self) -> torch.Tensor:
        clip = self.cfg["optim"]["clip_grad"]
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
        finite = torch.isfinite(grad_norm)
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)      # skips the step on inf/nan, no extra sync
            self.scaler.update()
        elif self.fused:
            self.optimizer.found_inf = (~finite).float()   # fused AdamW skips on device
            self.optimizer.step()
        elif finite.item():
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        bad = (~finite).float()
        self._nonfinite = (self._nonfinite + 1) * bad
        self._nonfinite_max = torch.maximum(self._nonfinite_max, self._nonfinite)   # on device, no sync
        self._nonfinite_total += bad
        return grad_norm.detach()

    def _note_bad_files(self, batch: dict) -> None:
        if "bad" not in batch:
            return
        n = int(batch["bad"].sum())                 # items standing for a bad sample (0 or 1 each)
        self.samples_seen += len(batch["bad"])
        if n:
            self.bad_seen += n
            for entry in batch.get("bad_paths", []):
                for line in filter(None, entry.split("\n")):
                    self.logger.warn_once(line, f"skipped unreadable file {line}")
        limit = self.cfg["data"].get("max_bad_fraction", 1.0)
        if self.samples_seen >= 200 and self.bad_seen > limit * self.samples_seen:
            raise UserError(f"data: {self.bad_seen} of {self.samples_seen} images failed to decode "
                            f"(> data.max_bad_fraction={limit}), "
                            f"e.g. {', '.join(sorted(self.logger.warned)[:3])}")

    # -- the loop ------------------------------------------------------------------------------
    def _handle_signal(self, signum, frame):
        self._stop_signal = signum

    def fit(self) -> LoopState:
        if self.folder is None:
            raise RuntimeError("Trainer.fit: no run folder; call attach(open_run_folder(...)) first")
        self.resume()
        old = {s: signal.signal(s, self._handle_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        t = self.cfg["train"]
        bar = tqdm(total=self.total_steps, initial=self.state.step, unit="step", dynamic_ncols=True,
                   disable=not (self.env.is_main and t["progress"] and sys.stderr.isatty()), mininterval=1.0)
        window = {"loss": self._loss_window, "time": deque(maxlen=t["log_interval"]),
                  "data": deque(maxlen=t["log_interval"])}
        stopped_by = None
        try:
            while (self.state.epoch < self.epochs and self.state.step < self.total_steps
                   and stopped_by is None):
                stopped_by = self._run_epoch(window, bar)
                if stopped_by:
                    break
                self._end_epoch()
            self.save("last")
        finally:
            bar.close()
            for s, h in old.items():
                signal.signal(s, h)
            if self.env.is_main and self.after_fit is not None and self.logger.path.exists():
                self.after_fit(self)
            self.logger.close()
            self.folder.release()
        if stopped_by == "signal":
            name = signal.Signals(self._stop_signal).name if self._stop_signal else "a signal on another rank"
            raise Interrupted(self._stop_signal or signal.SIGTERM,
                              f"stopped by {name} at step {self.state.step}; checkpoint "
                              f"{self.output_dir / 'last.pth'} written; "
                              "run the same command again to continue (train.resume=auto)",
                              say=self.env.is_main)
        return self.state

    def _run_epoch(self, window: dict, bar) -> str | None:
        """The rest of the current epoch, one optimizer step per ``accum`` batches; why it stopped
        early ('signal' or 'max_steps'), or None at the epoch's end."""
        st = self.state
        self.loader.set_epoch(st.epoch, skip=st.iter_in_epoch * self.accum * self.batch)
        micro, losses = 0, []
        t_end = time.perf_counter()
        for batch in self.loader:
            t_data = time.perf_counter()
            self._note_bad_files(batch)
            micro += 1
            losses.append(self._forward_backward(batch, sync=micro % self.accum == 0))
            if micro % self.accum:
                continue
            grad_norm = self._optimizer_step()
            st.step += 1
            st.iter_in_epoch += 1
            self._step_lr = current_lr(self.optimizer)      # before the update: the lr this step used
            self.scheduler.step_update(st.step)
            if self.on_step_end is not None:
                self.on_step_end(self)
            window["loss"].append(torch.stack(losses).mean())
            losses = []
            window["time"].append(time.perf_counter() - t_end)
            self._timed_s, self._timed_n = self._timed_s + window["time"][-1], self._timed_n + 1
            window["data"].append(t_data - t_end)
            bar.update(1)
            if st.step % self.cfg["train"]["log_interval"] == 0 or st.step == self.total_steps:
                self._log(grad_norm, window, bar)
            if any_rank(self._stop_signal != 0, self.env):
                return "signal"
            if st.step >= self.total_steps and st.iter_in_epoch < self.iters_per_epoch:
                return "max_steps"
            if st.iter_in_epoch >= self.iters_per_epoch:
                return None
            t_end = time.perf_counter()
        return None

    def _end_epoch(self) -> None:
        epoch = self.state.epoch + 1
        metrics = self.on_epoch_end(self, epoch) if self.on_epoch_end else None
        if metrics:
            self.logger.log(rec := {"epoch": epoch, "step": self.state.step, **metrics})
            self.logger.val_lines(rec, self.epochs)
        self.state.epoch, self.state.iter_in_epoch = epoch, 0
        self.save("last")
        if epoch % self.cfg["train"]["ckpt_interval"] == 0 or epoch == self.epochs:
            self.save(f"epoch_{epoch}")

    def _log(self, grad_norm: torch.Tensor, window: dict, bar) -> None:
        recent = torch.stack(list(window["loss"]))
        loss = recent[torch.isfinite(recent)].mean().item()    # skipped steps are counted, not averaged
        consecutive = int(self._nonfinite_max.item())      # a run that ended between two logs counts too
        self._nonfinite_max.zero_()
        step_time = sum(window["time"]) / len(window["time"])
        rec = {
            "lr": self._step_lr, "data_time": sum(window["data"]) / len(window["data"]),
            "grad_norm": float(grad_norm), "loss": loss, "time": step_time,
            "epoch": self.state.epoch + 1, "iter": self.state.iter_in_epoch,
            "memory": peak_memory_mib(self.env.device),
            "step": self.state.step, "img_per_s": self.global_batch / step_time,
            "nonfinite_steps": int(self._nonfinite_total.item()),
        }
        if self.bad_seen:
            rec["bad_images"] = self.bad_seen
        self.logger.log(rec)
        eta = self._timed_s / max(1, self._timed_n) * (self.total_steps - self.state.step)
        self.logger.train_lines(rec, self.iters_per_epoch, self.epochs, eta)
        bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{rec['img_per_s']:.0f}", refresh=False)
        if consecutive >= self.cfg["train"]["max_nonfinite"]:
            raise UserError(f"train: {consecutive} non-finite steps in a row (loss or gradients NaN/inf); "
                            f"stopped, last good checkpoint kept in {self.output_dir}")
