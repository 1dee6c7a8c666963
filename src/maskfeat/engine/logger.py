"""Run outputs on rank 0: the JSON-lines log, its text lines on stdout (mmengine's format, the model
zoos' dllogger lines or both: train.text_log_format), the trackers of ``train.report_to``
(TensorBoard, CSV, W&B: a table of writers), messages on stderr."""
from __future__ import annotations

import csv
import datetime
import importlib.util
import json
import math
import os
import sys
import time
import uuid
from pathlib import Path

from tqdm import tqdm

from ..atomic import atomic_path
from ..errors import UserError

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


def dllogger_line(record: dict, prefix: str = "TCAPPDLL", rank: int = 0) -> str:
    """One log.jsonl record as the model zoos' dllogger line: ``TCAPPDLL 2024-06-01 10:00:00 - Epoch: 0
    Iteration: 10 rank : 0 train.loss : 0.49310000 train.ips : 12.30`` (Epoch 0-based, Iteration =
    the record's global step, train.ips = img_per_s, the loss as ``fixed_point``)."""
    return (f"{prefix} {time.strftime('%Y-%m-%d %H:%M:%S')} - Epoch: {record['epoch'] - 1} "
            f"Iteration: {record['step']} rank : {rank} train.loss : {fixed_point(record['loss'])} "
            f"train.ips : {record['img_per_s']:.2f}")


def dllogger_val_line(record: dict, prefix: str = "TCAPPDLL", rank: int = 0) -> str:
    """An end-of-epoch metrics record as a dllogger line (no Iteration / train.loss: no loss point)."""
    shown = {f"val.{k.removeprefix('val_')}": v for k, v in record.items() if k not in ("epoch", "step")}
    fields = " ".join(f"{k} : {v:.4f}" if isinstance(v, float) else f"{k} : {v}" for k, v in shown.items())
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"{prefix} {stamp} - Epoch: {record['epoch'] - 1} rank : {rank} {fields}"


def val_text_line(record: dict, epochs: int) -> str:
    """An end-of-epoch metrics record: ``Epoch(val)  [1]  step: 32  val_top1: 12.5000 ...``."""
    fields = [_field(k, v) for k, v in record.items() if k != "epoch"]
    return _stamped(f"{_epoch_tag('val', record['epoch'], epochs)}  " + "  ".join(fields))


class TensorBoardWriter:
    """Scalars under ``<output_dir>/tensorboard`` (``train/<key>``, ``monitor/<key>`` for k-NN keys);
    nothing when TensorBoard is not installed."""

    def __init__(self, output_dir: Path, cfg: dict | None):
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(str(output_dir / "tensorboard"))
        except ImportError:
            self._tb = None

    def write(self, record: dict) -> None:
        if self._tb is None:
            return
        for k, v in _scalars(record).items():
            group = "monitor" if k.startswith("knn") else "train"
            self._tb.add_scalar(f"{group}/{k}", v, record.get("step", 0))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


class CsvWriter:
    """``<output_dir>/log.csv``: the records of log.jsonl, one row each, one header line. A resumed run
    appends under the header it finds; a record bringing a new key (e.g. the first k-NN one) rewrites
    the file once with the widened header (empty cells where a row has no value)."""

    def __init__(self, output_dir: Path, cfg: dict | None):
        self.path = output_dir / "log.csv"
        self.columns: list[str] = []
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, newline="") as f:
                self.columns = next(csv.reader(f), [])

    def write(self, record: dict) -> None:
        new = [k for k in record if k not in self.columns]
        if new:
            rows = []
            if self.columns:
                with open(self.path, newline="") as f:
                    rows = list(csv.DictReader(f))
            self.columns += new
            with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
                out = csv.DictWriter(f, self.columns)
                out.writeheader()
                out.writerows(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(record)

    def close(self) -> None:
        pass


WANDB_ID_FILE = "wandb_run_id.txt"


class WandbWriter:
    """A Weights & Biases run named after the output folder, the config logged once at its start; its
    id is kept in ``<output_dir>/wandb_run_id.txt`` so that a resumed run continues the same W&B run.
    WANDB_MODE (offline, disabled) and WANDB_PROJECT (default: maskfeat) are honoured."""

    def __init__(self, output_dir: Path, cfg: dict | None):
        import wandb

        id_file = output_dir / WANDB_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "maskfeat"), name=output_dir.name,
                              id=run_id, resume="allow", config=cfg, dir=str(output_dir))
        id_file.write_text(run_id + "\n")

    def write(self, record: dict) -> None:
        self.run.log(_scalars(record), step=int(record.get("step", 0)))

    def close(self) -> None:
        self.run.finish()


# train.report_to name -> writer(output_dir, config): write(record), close()
WRITERS = {"tensorboard": TensorBoardWriter, "csv": CsvWriter, "wandb": WandbWriter}
INSTALL_HINT = {"wandb": "pip install 'maskfeat[wandb]'"}


def _scalars(record: dict) -> dict:
    return {k: v for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "epoch", "iter")}


def check_trackers(names) -> None:
    """One line for a tracker that is unknown or not installed (before anything is written)."""
    for name in names:
        if name not in WRITERS:
            raise UserError(f"train.report_to: unknown tracker {name!r}; choose from {', '.join(WRITERS)}")
        if name in INSTALL_HINT and importlib.util.find_spec(name) is None:
            raise UserError(f"train.report_to: {name} is not installed ({INSTALL_HINT[name]})")


class RunLogger:
    """Appends one JSON object per line to ``log.jsonl`` and hands each record to the trackers
    (``WRITERS``: TensorBoard by default, CSV, W&B); with ``text``, ``text_line`` prints to stdout
    and ``train_lines`` / ``val_lines`` print a record in the formats of ``text`` (train.text_log_format).
    Inactive (writes nothing) on ranks other than 0, but for dllogger lines with ``dllogger['ranks']``
    'all' (each rank's own loss, its rank named)."""

    def __init__(self, output_dir: str | Path, active: bool = True, trackers=("tensorboard",),
                 text: bool = False, config: dict | None = None, formats=("mmengine",),
                 dllogger: dict | None = None):
        self.active, self.text = active, text
        self.formats = (formats,) if isinstance(formats, str) else tuple(formats)
        self.dll = {"prefix": "TCAPPDLL", "ranks": "main", "rank": 0, **(dllogger or {})}
        self.path = Path(output_dir) / "log.jsonl"
        self.warned: dict[str, None] = {}     # keys of the warnings given, in order
        self.writers = [WRITERS[t](Path(output_dir), config) for t in trackers] if active else []

    def log(self, record: dict) -> None:
        if not self.active:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for w in self.writers:
            w.write(record)

    def text_line(self, line: str) -> None:
        """A text line on stdout (rank 0, when ``text``), kept clear of a progress bar."""
        if self.active and self.text:
            self._print(line)

    def _print(self, line: str) -> None:
        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()

    def _dllogger_here(self) -> bool:
        return self.text and "dllogger" in self.formats and (self.active or self.dll["ranks"] == "all")

    def train_lines(self, record: dict, iters_per_epoch: int, epochs: int, eta_s: float) -> None:
        """A training record's text lines on stdout, in each format of ``formats``."""
        if "mmengine" in self.formats:
            self.text_line(train_text_line(record, iters_per_epoch, epochs, eta_s))
        if self._dllogger_here():
            self._print(dllogger_line(record, self.dll["prefix"], self.dll["rank"]))

    def val_lines(self, record: dict, epochs: int) -> None:
        if "mmengine" in self.formats:
            self.text_line(val_text_line(record, epochs))
        if self._dllogger_here():
            self._print(dllogger_val_line(record, self.dll["prefix"], self.dll["rank"]))

    def info(self, message: str) -> None:
        if self.active:
            print(message, file=sys.stderr, flush=True)

    def warn_once(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned[key] = None
            self.info(f"warning: {message}")

    def close(self) -> None:
        for w in self.writers:
            w.close()
        self.writers = []
