"""Run outputs on rank 0: the JSON-lines log, TensorBoard scalars, messages on stderr."""
from __future__ import annotations

import json
import sys
from pathlib import Path


class RunLogger:
    """Appends one JSON object per line to ``log.jsonl``; mirrors scalars to TensorBoard
    when it is installed. Inactive (writes nothing) on ranks other than 0."""

    def __init__(self, output_dir: str | Path, active: bool = True, tensorboard: bool = True):
        self.active = active
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

