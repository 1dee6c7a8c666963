"""Run outputs on rank 0: JSON-lines log, TensorBoard scalars, the loss-curve PNG."""
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
        self._warned: set[str] = set()
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
        if key not in self._warned:
            self._warned.add(key)
            self.info(f"warning: {message}")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_log(path: str | Path, key: str = "loss") -> tuple[list[int], list[float]]:
    steps, values = [], []
    for line in Path(path).read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if key in rec and "step" in rec:
            steps.append(int(rec["step"]))
            values.append(float(rec[key]))
    return steps, values


def plot_loss_curve(log_path: str | Path, png_path: str | Path, zero_level: float | None = None,
                    title: str = "MaskFeat pre-training loss") -> bool:
    """Loss against step from the JSON-lines log; False when there is nothing to plot."""
    steps, losses = read_log(log_path)
    if not steps:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, losses, lw=1.5, label="loss (masked MSE)")
    if zero_level is not None:
        ax.axhline(zero_level, color="grey", ls="--", lw=1, label=f"predict-zero level {zero_level:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return True
