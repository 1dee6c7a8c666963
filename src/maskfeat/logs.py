"""Loss curves from training logs (their comparison: ``maskfeat.comparison``).

The formats read, told apart by content (in this order) unless one is named (``fmt``, FORMATS):

* ``mmengine``: mmengine text lines, ours included (a ``2>&1 | tee`` of a run's output): ``...
  Epoch(train) [1][  10/5005]  lr: ...  loss: 0.9876`` (step = (epoch - 1) x iters_per_epoch + iter,
  the epoch length from the ``/N`` total) or ``Iter(train) [  10/300000] ...`` (step = that iteration).
* ``dllogger``: vendor dllogger lines, ``TCAPPDLL <date> <time> - Epoch: 0 Iteration: 10 rank : 0
  train.loss : 0.4931 ...`` (with or without a space before each colon, any prefix: a line is one
  when it has ``Iteration`` and ``train.loss`` fields); one rank's lines (``rank``, default the lowest
  logged); step = Iteration, made global when it restarts with each epoch (see ``_dllogger_steps``).
* ``jsonl``: JSON lines, one object per line: ours (``<output_dir>/log.jsonl``) and mmengine's
  ``vis_data/*.json`` (keys lr, data_time, grad_norm, loss, time, epoch, iter, memory, step).
  Lines without ``loss`` (mmengine's validation lines) are skipped; every line must parse.
* ``csv``: a two-column ``step,loss`` CSV (Excel's too: BOM, CRLF, ``sep=,``, trailing empty cells);
  the first row is a header only when no cell of it is a number.

In the text formats every other line (progress bars, warnings, tracebacks, validation lines) is
passed over; a file with no loss line is an error. Files are read as UTF-8 (a BOM is dropped), line
by line: memory grows with the points kept (16 bytes each), not with the file. A step is a whole
number from 0 to 2^53; a step logged twice (a resumed run) keeps its last value. This is the one
reader of training logs: the loss-curve plot, ``maskfeat compare-loss`` and the tests use it.
"""
from __future__ import annotations

import csv
import json
import math
import re
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import UserError

# --format names -> the format's name in reports ('auto': told apart by content)
FORMATS = {"auto": "", "mmengine": "mmengine-text", "dllogger": "dllogger", "jsonl": "jsonl", "csv": "csv"}
MAX_STEP = 2 ** 53                 # steps are whole numbers 0..2^53 (exact in a float64)


@dataclass
class LossCurve:
    steps: np.ndarray    # (n,) int64, increasing
    losses: np.ndarray   # (n,) float64
    fmt: str             # 'jsonl' | 'csv' | 'mmengine-text' | 'dllogger'
    path: str = ""
    rank: int = 0                  # the rank whose losses these are (dllogger: chosen; others: rank 0)
    ranks: tuple = ()              # dllogger: every rank the file logs
    note: str = ""                 # how the file was read, when that is worth a line (a mixed log)


class _Points:
    """(step, loss) pairs in log order, in compact arrays (a step logged twice keeps its last value)."""

    def __init__(self):
        self.steps, self.losses = array("q"), array("d")

    def add(self, step: int, loss: float) -> None:
        self.steps.append(step)
        self.losses.append(loss)

    def curve(self, fmt: str, path: Path, **info) -> LossCurve:
        if not self.steps:
            raise UserError(f"{path}: no loss values found ({fmt})")
        steps, losses = np.frombuffer(self.steps, np.int64), np.frombuffer(self.losses, np.float64)
        return LossCurve(*_last_per_step(steps, losses), fmt, str(path), **info)


def _last_per_step(steps: np.ndarray, losses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by step, each step once with the value logged last."""
    order = np.argsort(steps, kind="stable")
    s, v = steps[order], losses[order]
    last = np.append(s[1:] != s[:-1], True)
    return s[last].copy(), v[last].copy()


def _number(value, path: Path, lineno: int, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{path}:{lineno}: '{key}' is not a number: {value!r}")
    return float(value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + "...'"


def _step(value: float | int, path: Path, lineno: int, raw=None) -> int:
    """A step, checked: a whole number from 0 to 2^53 (never inf, nan, 1e20 or 1.5)."""
    raw = value if raw is None else raw
    if not (math.isfinite(value) and 0 <= value <= MAX_STEP):
        raise UserError(f"{path}:{lineno}: step {_short(raw)} is not a whole number from 0 to 2^53")
    if value != int(value):
        raise UserError(f"{path}:{lineno}: step is not an integer: {_short(raw)}")
    return int(value)


def _whole(digits: str, path: Path, lineno: int, what: str = "step") -> int:
    """A count written in a text log (digits only): at most 18 of them, far past any step."""
    if len(digits) > 18:
        raise UserError(f"{path}:{lineno}: {what} {_short(digits)} is not a whole number from 0 to 2^53")
    return int(digits)


def _open(path: Path):
    if not path.is_file():
        raise UserError(f"log file not found: {path}")
    try:
        return open(path, encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line without its end) streamed; a progress bar's \\r ends a line too."""
    with _open(path) as f:
        try:
            for lineno, line in enumerate(f, 1):
                yield lineno, line.rstrip("\r\n")
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror or e.__class__.__name__})") from None


def _read_text(path: Path) -> str:
    with _open(path) as f:
        return f.read()


# -- JSON lines ----------------------------------------------------------------------------------------
def _json_record(line: str, path: Path, lineno: int) -> dict | None:
    """A JSON-lines log's loss record (checked step and loss), None for a blank or loss-less line."""
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    except ValueError as e:                    # a number of more than 4300 digits
        raise UserError(f"{path}:{lineno}: not valid JSON ({str(e).split(':')[0]})") from None
    if not isinstance(rec, dict):
        raise UserError(f"{path}:{lineno}: expected a JSON object per line")
    if "loss" not in rec:
        return None  # validation / info lines
    if "step" not in rec:
        raise UserError(f"{path}:{lineno}: a line with 'loss' has no 'step'")
    rec["step"] = _step(_number(rec["step"], path, lineno, "step"), path, lineno, rec["step"])
    _number(rec["loss"], path, lineno, "loss")
    return rec


def parse_records(text: str, path: Path) -> dict[int, dict]:
    """The loss records of a JSON-lines log by step: lines without 'loss' (validation / epoch
    lines) are passed over, every line must parse, and a step logged twice (a resumed run)
    keeps its last record."""
    records: dict[int, dict] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if (rec := _json_record(line, path, lineno)) is not None:
            records[rec["step"]] = rec
    return records


def read_log(path: str | Path) -> dict[int, dict]:
    """Our ``log.jsonl`` (or mmengine's JSON lines): {step: record}, see ``parse_records``."""
    return parse_records(_read_text(Path(path)), Path(path))


def read_metric(path: str | Path, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of the records of a JSON-lines log that carry ``key`` (e.g. the k-NN monitor's
    'knn_top1' on its epoch lines), in log order, a step logged twice keeping its last value; empty
    lists for a log without it or not JSON lines."""
    points: dict[int, float] = {}
    for _, line in _lines(Path(path)):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return [], []
        if isinstance(rec, dict) and isinstance(rec.get(key), (int, float)) and "step" in rec:
            points[int(rec["step"])] = float(rec[key])
    return list(points), list(points.values())


def _parse_jsonl(path: Path) -> LossCurve:
    points = _Points()
    for lineno, line in _lines(path):
        if (rec := _json_record(line, path, lineno)) is not None:
            points.add(rec["step"], float(rec["loss"]))
    return points.curve("jsonl", path)


# -- CSV ---------------------------------------------------------------------------------------------
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


def _parse_csv(path: Path) -> LossCurve:
    """A first row is a header only when none of its cells is a number (a partly numeric first row
    is an error, not a header); Excel's ``sep=,`` first line is passed over."""
    points, first = _Points(), True
    for lineno, line in _lines(path):
        row = _csv_cells(next(csv.reader([line]), []))
        if not any(row):
            continue
        if first and row[0].lower().startswith("sep="):
            continue
        if len(row) != 2:
            raise UserError(f"{path}:{lineno}: expected two columns step,loss, got {len(row)}")
        step, loss = (_csv_number(c) for c in row)
        was_first, first = first, False
        if step is None or loss is None:
            if was_first and step is None and loss is None:
                continue  # header
            raise UserError(f"{path}:{lineno}: not numbers: {','.join(row)!r}")
        points.add(_step(step, path, lineno, row[0]), loss)
    return points.curve("csv", path)


# -- text logs: mmengine's lines (ours too) and vendor dllogger lines ---------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_MM_EPOCH = re.compile(r"Epoch\(train\)\s*\[\s*(\d+)\s*\]\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]")
_MM_ITER = re.compile(r"Iter\(train\)\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]")
_MM_LOSS = re.compile(r"(?:^|\s)loss:\s*(\S+)")


def _dll_field(name: str) -> re.Pattern:
    return re.compile(rf"(?:^|\s){name}\s*:\s*(\S+)")


_DLL = {"epoch": _dll_field("Epoch"), "iteration": _dll_field("Iteration"), "rank": _dll_field("rank"),
        "loss": _dll_field(r"train\.loss")}


def _clean(line: str) -> str:
    return _ANSI.sub("", line) if "\x1b" in line else line


def _loss_value(raw: str, path: Path, lineno: int) -> float:
    try:
        return float(raw)
    except ValueError:
        raise UserError(f"{path}:{lineno}: loss is not a number: {raw!r}") from None


def _mm_step(line: str) -> re.Match | None:
    """The match of an mmengine training line's ``Epoch(train) [e][i/N]`` or ``Iter(train) [i/N]``."""
    if "(train)" not in line:
        return None
    return _MM_EPOCH.search(line) or _MM_ITER.search(line)


def _mm_global_step(m: re.Match, path: Path, lineno: int) -> int:
    """The global step of ``_mm_step``'s match: (epoch - 1) x N + iter, or the iteration."""
    if m.re is _MM_ITER:
        return _whole(m.group(1), path, lineno)
    epoch, it, per_epoch = (_whole(g, path, lineno) for g in m.groups())
    return _step(max(epoch - 1, 0) * per_epoch + it, path, lineno)


def _dll_fields(line: str) -> dict | None:
    """A dllogger training line's fields (iteration and loss as found, epoch and rank), else None."""
    if "train.loss" not in line or "Iteration" not in line:
        return None
    f = {k: rx.search(line) for k, rx in _DLL.items()}
    if not (f["iteration"] and f["loss"]) or not f["iteration"].group(1).isdecimal():
        return None
    return {k: m.group(1) if m else "" for k, m in f.items()}


def _parse_mmengine_text(path: Path) -> LossCurve:
    points = _Points()
    for lineno, line in _lines(path):
        found = _mm_step(line := _clean(line))
        loss = _MM_LOSS.search(line, found.end()) if found else None
        if loss:
            points.add(_step(_mm_global_step(found, path, lineno), path, lineno),
                       _loss_value(loss.group(1), path, lineno))
    return points.curve("mmengine-text", path)


def _dllogger_steps(epochs: np.ndarray, its: np.ndarray, path: Path) -> np.ndarray:
    """Steps of (epoch, iteration) rows in log order: the iteration itself when it keeps growing
    across epochs; when it restarts with each epoch, (epoch - first epoch) x P + iteration, with P
    the epoch length as far as the file shows it (the largest iteration, + 1 when counting from 0)."""
    restarts = bool(np.any((epochs[1:] > epochs[:-1]) & (its[1:] <= its[:-1])))
    if not restarts:
        return its
    per_epoch = int(its.max()) + (1 if its.min() == 0 else 0)
    if int(epochs.max() - epochs.min()) * per_epoch + int(its.max()) > MAX_STEP:
        raise UserError(f"{path}: dllogger steps past 2^53 (epochs x {per_epoch} iterations per epoch)")
    return (epochs - epochs.min()) * per_epoch + its


def _parse_dllogger(path: Path, rank: int | None) -> LossCurve:
    cols = {"epoch": array("q"), "iteration": array("q"), "rank": array("q"), "loss": array("d")}
    for lineno, line in _lines(path):
        if (f := _dll_fields(_clean(line))) is None:
            continue
        cols["iteration"].append(_step(_whole(f["iteration"], path, lineno), path, lineno))
        cols["epoch"].append(_whole(f["epoch"], path, lineno, "Epoch") if f["epoch"].isdecimal() else 0)
        cols["rank"].append(_whole(f["rank"], path, lineno, "rank") if f["rank"].isdecimal() else 0)
        cols["loss"].append(_loss_value(f["loss"], path, lineno))
    if not cols["loss"]:
        raise UserError(f"{path}: no loss values found (dllogger)")
    a = {k: np.frombuffer(v, np.int64 if k != "loss" else np.float64) for k, v in cols.items()}
    ranks = tuple(int(r) for r in np.unique(a["rank"]))
    chosen = ranks[0] if rank is None else rank        # rank 0 (the lowest logged) unless one is asked for
    if chosen not in ranks:
        raise UserError(f"{path}: no dllogger lines of rank {chosen} (it logs rank "
                        f"{', '.join(map(str, ranks[:8]))}{', ...' if len(ranks) > 8 else ''})")
    keep = a["rank"] == chosen
    steps = _dllogger_steps(a["epoch"][keep], a["iteration"][keep], path)
    return LossCurve(*_last_per_step(steps, a["loss"][keep]), "dllogger", str(path), chosen, ranks)


def _sniff(path: Path) -> tuple[str, bool]:
    """(the format the content says, whether it also holds dllogger lines beside mmengine ones)."""
    first, mm, dll = "", False, False
    for _, line in _lines(path):
        if not first:
            first = line.strip()
        line = _clean(line)
        mm = mm or _mm_step(line) is not None
        dll = dll or _dll_fields(line) is not None
        if mm and dll:
            break
    if not first:
        raise UserError(f"{path}: empty log file")
    if mm:
        return "mmengine-text", dll
    if dll:
        return "dllogger", False
    if first.startswith("{"):
        return "jsonl", False
    if "," in first:
        return "csv", False
    raise UserError(f"{path}: no loss lines found (expected our log.jsonl or text lines, mmengine json or "
                    "text logs, dllogger (TCAPPDLL) lines or a step,loss CSV)")


def read_loss_curve(path: str | Path, fmt: str = "auto", rank: int | None = None) -> LossCurve:
    """Read any of the formats of the module docstring: ``fmt`` one of FORMATS ('auto': told apart by
    content); ``rank``: whose losses (dllogger lines name it; the other formats hold rank 0's only)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise UserError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    kind, mixed = (FORMATS[fmt], False) if fmt != "auto" else _sniff(path)
    if rank not in (None, 0) and kind != "dllogger":
        raise UserError(f"rank {rank}: {path} is read as {kind} lines, which hold one process's loss "
                        "(rank 0's); a rank is chosen in dllogger logs")
    if kind == "dllogger":
        return _parse_dllogger(path, rank)
    curve = {"mmengine-text": _parse_mmengine_text, "jsonl": _parse_jsonl, "csv": _parse_csv}[kind](path)
    if mixed:
        curve.note = (f"{path.name} holds mmengine and dllogger lines: read as mmengine text "
                      "(--format dllogger reads its dllogger lines)")
    return curve


def __getattr__(name: str):
    """The comparison's names, which lived here before ``maskfeat.comparison``."""
    if name in ("RULES", "ALIGNS", "CurveComparison", "align_curves", "compare_curves"):
        from . import comparison
        return getattr(comparison, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
