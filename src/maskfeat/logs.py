"""Loss curves from training logs, and their comparison.

The formats read, told apart by content (in this order):

* mmengine text lines, ours included (a ``2>&1 | tee`` of a run's output): ``... Epoch(train)
  [1][  10/5005]  lr: ...  loss: 0.9876`` (step = (epoch - 1) x iters_per_epoch + iter, the epoch
  length from the ``/N`` total) or ``Iter(train) [  10/300000] ...`` (step = that iteration).
* Vendor dllogger lines: ``TCAPPDLL <date> <time> - Epoch: 0 Iteration: 10 rank : 0 train.loss :
  0.4931 ...`` (with or without a space before each colon); rank 0 (the lowest rank logged) only;
  step = Iteration, made global when it restarts with each epoch (see ``_dllogger_steps``).
* JSON lines, one object per line: ours (``<output_dir>/log.jsonl``) and mmengine's
  ``vis_data/*.json`` (keys lr, data_time, grad_norm, loss, time, epoch, iter, memory, step).
  Lines without ``loss`` (mmengine's validation lines) are skipped; every line must parse.
* A two-column ``step,loss`` CSV (Excel's too: BOM, CRLF, ``sep=,``, trailing empty cells); the first
  row is a header only when no cell of it is a number.

In the text formats every other line (progress bars, warnings, tracebacks, validation lines) is
passed over; a file with no loss line is an error. Files are read as UTF-8 (a BOM is dropped).
A step logged twice (a resumed run) keeps its last value. This is the one reader of training
logs: the loss-curve plot, ``maskfeat compare-loss`` and the tests use it.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError


@dataclass
class LossCurve:
    steps: np.ndarray    # (n,) int64, increasing
    losses: np.ndarray   # (n,) float64
    fmt: str             # 'jsonl' | 'csv' | 'mmengine-text' | 'dllogger'
    path: str = ""


RULES = ("abs", "signed")       # which pair of figures decides PASS (compare-loss --rule)
ALIGNS = ("step", "index")      # aligned by equal steps, or by position after truncating to the shorter


@dataclass
class CurveComparison:
    steps: np.ndarray    # (k,) aligned steps (align='index': the run's steps)
    run: np.ndarray      # (k,) run loss at those steps
    ref: np.ndarray      # (k,) reference loss at those steps
    mre: float           # mean |run - ref| / |ref|
    mae: float           # mean |run - ref|
    rel_tol: float
    abs_tol: float
    signed_rel: float = 0.0   # mean (run - ref) / ref: the model zoos' loss.py
    signed_abs: float = 0.0   # mean (run - ref)
    rule: str = "abs"
    align: str = "step"

    @property
    def passed_two_sided(self) -> bool:
        return self.mre <= self.rel_tol or self.mae <= self.abs_tol

    @property
    def passed_signed(self) -> bool:
        """Passes any curve below the reference, a collapsed one included."""
        return self.signed_rel <= self.rel_tol or self.signed_abs <= self.abs_tol

    @property
    def passed(self) -> bool:
        return self.passed_signed if self.rule == "signed" else self.passed_two_sided


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


def read_metric(path: str | Path, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the records of a JSON-lines log that carry ``key`` (e.g. the k-NN monitor's
    'knn_top1' on its epoch lines), in log order, a step logged twice keeping its last value; empty
    lists for a log without it or not JSON lines."""
    points: dict[int, float] = {}
    for line in _read_text(Path(path)).splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return [], []
        if isinstance(rec, dict) and isinstance(rec.get(key), (int, float)) and "step" in rec:
            points[int(rec["step"])] = float(rec[key])
    return list(points), list(points.values())


def _parse_jsonl(text: str, path: Path) -> LossCurve:
    return _finish({step: float(rec["loss"]) for step, rec in parse_records(text, path).items()},
                   "jsonl", path)


def _csv_cells(row: list[str]) -> list[str]:
    """A row's cells without a stray byte-order mark, surrounding blanks or Excel's trailing empty cells."""
    cells = [c.replace("\ufeff", "").strip() for c in row]
    while len(cells) > 2 and not cells[-1]:
        cells.pop()
    return cells


def _csv_number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _parse_csv(text: str, path: Path) -> LossCurve:
    """A first row is a header only when none of its cells is a number (a partly numeric first row
    is an error, not a header); Excel's ``sep=,`` first line is passed over."""
    points: dict[int, float] = {}
    rows = [_csv_cells(r) for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if rows and rows[0][0].lower().startswith("sep="):
        rows = rows[1:]
    for i, row in enumerate(rows):
        if len(row) != 2:
            raise UserError(f"{path}:{i + 1}: expected two columns step,loss, got {len(row)}")
        step, loss = (_csv_number(c) for c in row)
        if step is None or loss is None:
            if i == 0 and step is None and loss is None:
                continue  # header
            raise UserError(f"{path}:{i + 1}: not numbers: {','.join(row)!r}")
        if step != int(step):
            raise UserError(f"{path}:{i + 1}: step is not an integer: {row[0]!r}")
        points[int(step)] = loss
    return _finish(points, "csv", path)


# -- text logs: mmengine's lines (ours too) and vendor dllogger lines ---------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MM_EPOCH = re.compile(r"Epoch\(train\)\s*\[\s*(\d+)\s*\]\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]")
_MM_ITER = re.compile(r"Iter\(train\)\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]")
_MM_LOSS = re.compile(r"(?:^|\s)loss:\s*(\S+)")


def _dll_field(name: str) -> re.Pattern:
    return re.compile(rf"(?:^|\s){name}\s*:\s*(\S+)")


_DLL = {"epoch": _dll_field("Epoch"), "iteration": _dll_field("Iteration"), "rank": _dll_field("rank"),
        "loss": _dll_field(r"train\.loss")}


def _loss_value(raw: str, path: Path, lineno: int) -> float:
    try:
        return float(raw)
    except ValueError:
        raise UserError(f"{path}:{lineno}: loss is not a number: {raw!r}") from None


def _mm_step(line: str) -> tuple[int, int] | None:
    """(global step, end of the match) of an mmengine training line, None for any other line."""
    if m := _MM_EPOCH.search(line):
        epoch, it, per_epoch = map(int, m.groups())
        return max(epoch - 1, 0) * per_epoch + it, m.end()
    if m := _MM_ITER.search(line):
        return int(m.group(1)), m.end()
    return None


def _parse_mmengine_text(lines: list[str], path: Path) -> LossCurve:
    points: dict[int, float] = {}
    for lineno, line in enumerate(lines, 1):
        found = _mm_step(line)
        loss = _MM_LOSS.search(line, found[1]) if found else None
        if loss:
            points[found[0]] = _loss_value(loss.group(1), path, lineno)
    return _finish(points, "mmengine-text", path)


def _dllogger_steps(rows: list[tuple[int, int]]) -> list[int]:
    """Steps of (epoch, iteration) rows in log order: the iteration itself when it keeps growing
    across epochs; when it restarts with each epoch, (epoch - first epoch) x P + iteration, with P
    the epoch length as far as the file shows it (the largest iteration, + 1 when counting from 0)."""
    restarts = any(e1 > e0 and i1 <= i0 for (e0, i0), (e1, i1) in zip(rows, rows[1:]))
    if not restarts:
        return [it for _, it in rows]
    its = [it for _, it in rows]
    per_epoch, first = max(its) + (1 if min(its) == 0 else 0), min(e for e, _ in rows)
    return [(e - first) * per_epoch + it for e, it in rows]


def _parse_dllogger(lines: list[str], path: Path) -> LossCurve:
    rows: list[tuple[int, int, int, float]] = []     # epoch, iteration, rank, loss
    for lineno, line in enumerate(lines, 1):
        if "TCAPPDLL" not in line:
            continue
        f = {k: rx.search(line) for k, rx in _DLL.items()}
        if not (f["iteration"] and f["loss"]) or not f["iteration"].group(1).isdigit():
            continue
        num = {k: int(f[k].group(1)) if f[k] and f[k].group(1).isdigit() else 0 for k in ("epoch", "rank")}
        rows.append((num["epoch"], int(f["iteration"].group(1)), num["rank"],
                     _loss_value(f["loss"].group(1), path, lineno)))
    rank = min((r[2] for r in rows), default=0)       # rank 0 when several ranks log
    rows = [r for r in rows if r[2] == rank]
    steps = _dllogger_steps([(e, it) for e, it, _, _ in rows])
    return _finish(dict(zip(steps, (r[3] for r in rows))), "dllogger", path)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise UserError(f"log file not found: {path}")
    try:
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None


def read_loss_curve(path: str | Path) -> LossCurve:
    """Read any of the formats of the module docstring, told apart by content."""
    path = Path(path)
    text = _read_text(path)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if not first:
        raise UserError(f"{path}: empty log file")
    lines = [_ANSI.sub("", ln) for ln in text.splitlines()]     # splitlines also splits at a bar's \r
    if any(_mm_step(ln) for ln in lines):
        return _parse_mmengine_text(lines, path)
    if any("TCAPPDLL" in ln for ln in lines):
        return _parse_dllogger(lines, path)
    if first.startswith("{"):
        return _parse_jsonl(text, path)
    if "," in first:
        return _parse_csv(text, path)
    raise UserError(f"{path}: no loss lines found (expected our log.jsonl or text lines, mmengine json or "
                    "text logs, TCAPPDLL lines or a step,loss CSV)")


def align_curves(run: LossCurve, ref: LossCurve, align: str = "step", skip_first: int = 0,
                 last: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, run losses, reference losses) aligned by equal step, or by position over the shorter
    length (``index``: the model zoos' truncation; the steps are the run's), then the first
    ``skip_first`` points dropped and only the ``last`` ones kept (0: all)."""
    if align == "index":
        k = min(run.steps.size, ref.steps.size)
        steps, a, b = run.steps[:k], run.losses[:k], ref.losses[:k]
    else:
        steps, i_run, i_ref = np.intersect1d(run.steps, ref.steps, return_indices=True)
        if steps.size == 0:
            raise UserError(f"no common steps between {run.path} (steps {run.steps[0]}..{run.steps[-1]}) "
                            f"and {ref.path} (steps {ref.steps[0]}..{ref.steps[-1]}); --align index "
                            "compares them by position")
        a, b = run.losses[i_run], ref.losses[i_ref]
    keep = slice(skip_first, None)
    steps, a, b = steps[keep], a[keep], b[keep]
    if last:
        steps, a, b = steps[-last:], a[-last:], b[-last:]
    if steps.size == 0:
        raise UserError(f"no aligned points left after --skip-first {skip_first}")
    return steps, a, b


def compare_curves(run: LossCurve, ref: LossCurve, rel_tol: float = 0.05, abs_tol: float = 2e-4, *,
                   rule: str = "abs", align: str = "step", skip_first: int = 0,
                   last: int = 0) -> CurveComparison:
    """Both pairs of figures over the aligned points (``align_curves``): two-sided mean |relative|
    and |absolute| error, and the model zoos' signed means; ``rule`` says which pair decides."""
    steps, a, b = align_curves(run, ref, align, skip_first, last)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        mre = mae = srel = sabs = math.inf  # a diverged run fails
    else:
        diff = a - b
        mae, sabs = float(np.abs(diff).mean()), float(diff.mean())
        mre = float((np.abs(diff) / np.maximum(np.abs(b), 1e-12)).mean())
        srel = float((diff / np.where(b == 0, 1e-12, b)).mean())
    return CurveComparison(steps, a, b, mre, mae, rel_tol, abs_tol, srel, sabs, rule, align)
