"""Loss curves from training logs, and their comparison by step.

Three formats are read, told apart by content:

* JSON lines, one object per line: ours (``<output_dir>/log.jsonl``) and mmengine's
  ``vis_data/*.json`` (keys lr, data_time, grad_norm, loss, time, epoch, iter, memory, step).
  Lines without ``loss`` (mmengine's validation lines) are skipped; every line must parse.
* A two-column ``step,loss`` CSV, with or without a header line.

A step logged twice (a resumed run) keeps its last value. This is the one reader of training
logs: the loss-curve plot, ``maskfeat compare-loss`` and the tests use it.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError


@dataclass
class LossCurve:
    steps: np.ndarray    # (n,) int64, increasing
    losses: np.ndarray   # (n,) float64
    fmt: str             # 'jsonl' | 'csv'
    path: str = ""


@dataclass
class CurveComparison:
    steps: np.ndarray    # (k,) aligned steps
    run: np.ndarray      # (k,) run loss at those steps
    ref: np.ndarray      # (k,) reference loss at those steps
    mre: float           # mean |run - ref| / |ref|
    mae: float           # mean |run - ref|
    rel_tol: float
    abs_tol: float

    @property
    def passed(self) -> bool:
        return self.mre <= self.rel_tol or self.mae <= self.abs_tol


def _finish(points: dict[int, float], fmt: str, path: Path) -> LossCurve:
    if not points:
        raise UserError(f"{path}: no loss values found")
    steps = np.array(sorted(points), dtype=np.int64)
    losses = np.array([points[s] for s in steps], dtype=np.float64)
    return LossCurve(steps, losses, fmt, str(path))


def _number(value, path: Path, lineno: int, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{path}:{lineno}: '{key}' is not a number: {value!r}")
    return float(value)


def parse_records(text: str, path: Path) -> dict[int, dict]:
    """The loss records of a JSON-lines log by step: lines without 'loss' (validation / epoch
    lines) are passed over, every line must parse, and a step logged twice (a resumed run)
    keeps its last record."""
    records: dict[int, dict] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise UserError(f"{path}:{lineno}: expected a JSON object per line")
        if "loss" not in rec:
            continue  # validation / info lines
        if "step" not in rec:
            raise UserError(f"{path}:{lineno}: a line with 'loss' has no 'step'")
        step = _number(rec["step"], path, lineno, "step")
        if step != int(step):
            raise UserError(f"{path}:{lineno}: 'step' is not an integer: {rec['step']!r}")
        _number(rec["loss"], path, lineno, "loss")
        records[int(step)] = rec
    return records


def read_log(path: str | Path) -> dict[int, dict]:
    """Our ``log.jsonl`` (or mmengine's JSON lines): {step: record}, see ``parse_records``."""
    return parse_records(_read_text(Path(path)), Path(path))


def _parse_jsonl(text: str, path: Path) -> LossCurve:
    return _finish({step: float(rec["loss"]) for step, rec in parse_records(text, path).items()}, "jsonl", path)


def _parse_csv(text: str, path: Path) -> LossCurve:
    points: dict[int, float] = {}
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    for i, row in enumerate(rows):
        if len(row) != 2:
            raise UserError(f"{path}:{i + 1}: expected two columns step,loss, got {len(row)}")
        try:
            step, loss = float(row[0]), float(row[1])
        except ValueError:
            if i == 0:
                continue  # header
            raise UserError(f"{path}:{i + 1}: not numbers: {','.join(row)!r}") from None
        if step != int(step):
            raise UserError(f"{path}:{i + 1}: step is not an integer: {row[0]!r}")
        points[int(step)] = loss
    return _finish(points, "csv", path)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"log file not found: {path}")
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e.__class__.__name__})") from None


def read_loss_curve(path: str | Path) -> LossCurve:
    """Read a JSON-lines log (ours or mmengine's) or a step,loss CSV."""
    path = Path(path)
    text = _read_text(path)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not first:
        raise UserError(f"{path}: empty log file")
    return _parse_jsonl(text, path) if first.startswith("{") else _parse_csv(text, path)


def compare_curves(run: LossCurve, ref: LossCurve, rel_tol: float = 0.05,
                   abs_tol: float = 2e-4) -> CurveComparison:
    """Align by step (intersection); mean relative and absolute error of ``run`` vs ``ref``."""
    steps, i_run, i_ref = np.intersect1d(run.steps, ref.steps, return_indices=True)
    if steps.size == 0:
        raise UserError(f"no common steps between {run.path} (steps {run.steps[0]}..{run.steps[-1]}) "
                        f"and {ref.path} (steps {ref.steps[0]}..{ref.steps[-1]})")
    a, b = run.losses[i_run], ref.losses[i_ref]
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        mre = mae = math.inf  # a diverged run fails
    else:
        diff = np.abs(a - b)
        mae = float(diff.mean())
        mre = float((diff / np.maximum(np.abs(b), 1e-12)).mean())
    return CurveComparison(steps, a, b, mre, mae, rel_tol, abs_tol)
