"""Run outputs on rank 0: the JSON-lines log, its text lines on stdout (mmengine's format),
TensorBoard scalars, messages on stderr."""
from __future__ import annotations

import datetime
import json
import math
import sys
import time
from pathlib import Path

from tqdm import tqdm

LOSS_DECIMALS = 8          # text lines keep the loss to 8 decimals (7 significant digits at least)
_HEAD_KEYS = ("lr", "time", "data_time", "memory", "epoch", "iter", "step")


def fixed_point(value: float) -> str:
    """A loss in fixed-point notation, never an exponent: 8 decimals, more for values below 0.1 so
    that at least 7 significant digits remain (0.13371234, 0.000012345678)."""
    if not math.isfinite(value) or value == 0:
        return f"{value:.{LOSS_DECIMALS}f}"
    return f"{value:.{min(40, max(LOSS_DECIMALS, 6 - math.floor(math.log10(abs(value)))))}f}"


def _field(key: str, value) -> str:
    if key.endswith("loss") and isinstance(value, float):
        return f"{key}: {fixed_point(value)}"
    return f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}"


def _stamped(message: str) -> str:
    return f"{time.strftime('%Y/%m/%d %H:%M:%S')} - mmengine - INFO - {message}"


def _epoch_tag(mode: str, epoch: int, epochs: int) -> str:
    """mmengine's right-aligned epoch: ``Epoch(train)  [1]`` for up to 99 epochs."""
    return f"Epoch({mode})" + f"[{epoch}]".rjust(len(str(epochs)) + 3)


def train_text_line(record: dict, iters_per_epoch: int, epochs: int, eta_s: float) -> str:
    """One log.jsonl record as mmengine's text line: ``Epoch(train)  [1][  10/5005]  lr: ...  eta: ...
    time: ...  data_time: ...  memory: ...`` then the other keys in the record's order (loss in
    fixed point, see ``fixed_point``; other floats .4f, the lr .4e)."""
    it = str(record["iter"]).rjust(len(str(iters_per_epoch)))
    fields = [f"lr: {record['lr']:.4e}", f"eta: {datetime.timedelta(seconds=int(eta_s))}",
              _field("time", record["time"]), _field("data_time", record["data_time"]),
              f"memory: {record['memory']}"]
    fields += [_field(k, v) for k, v in record.items() if k not in _HEAD_KEYS]
    return _stamped(f"{_epoch_tag('train', record['epoch'], epochs)}[{it}/{iters_per_epoch}]  "
                    + "  ".join(fields))


def val_text_line(record: dict, epochs: int) -> str:
    """An end-of-epoch metrics record: ``Epoch(val)  [1]  step: 32  val_top1: 12.5000 ...``."""
    fields = [_field(k, v) for k, v in record.items() if k != "epoch"]
    return _stamped(f"{_epoch_tag('val', record['epoch'], epochs)}  " + "  ".join(fields))


class RunLogger:
    """Appends one JSON object per line to ``log.jsonl``; mirrors scalars to TensorBoard
    when it is installed; with ``text``, ``text_line`` prints to stdout. Inactive (writes nothing)
    on ranks other than 0."""

    def __init__(self, output_dir: str | Path, active: bool = True, tensorboard: bool = True,
                 text: bool = False):
        self.active, self.text = active, text
        self.path = Path(output_dir) / "log.jsonl"
        self._tb = None
        self.warned: dict[str, None] = {}     # keys of the warnings given, in order
        if active and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(Path(output_dir) / "tensorboard"))
            except ImportError:
                self._tb = None

    def log(self, record: dict) -> None:
        if not self.active:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch", "iter"):
                    self._tb.add_scalar(f"train/{k}", v, record.get("step", 0))

    def text_line(self, line: str) -> None:
        """A text line on stdout (rank 0, when ``text``), kept clear of a progress bar."""
        if self.active and self.text:
            tqdm.write(line, file=sys.stdout)
            sys.stdout.flush()

    def info(self, message: str) -> None:
        if self.active:
            print(message, file=sys.stderr, flush=True)

    def warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned[key] = None
            self.info(f"warning: {message}")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()

