"""Two loss curves compared: aligned (by step, with a 0-vs-1 step base detected, or by position),
the two-sided figures (mean |run - ref| / |ref|, mean |run - ref|) and the model zoos' signed ones,
each with its verdict. ``compare_logs`` is the whole comparison of two log files; its result's
``figures()`` is one plain dict of every figure and verdict (``compare-loss``'s text report and
``--json`` are both made from it; check-port reuses it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import UserError
from .logs import LossCurve, read_loss_curve

RULES = ("abs", "signed")       # which pair of figures decides PASS (compare-loss --rule)
ALIGNS = ("step", "index")      # aligned by equal steps, or by position after truncating to the shorter
DEFAULT_MIN_POINTS = 10         # fewer aligned points than this is no verdict (exit 2)


@dataclass
class CompareOptions:
    rule: str = "abs"
    align: str = "step"
    skip_first: int = 0
    last: int = 0                       # keep only the last N aligned points (0: all)
    rel_tol: float = 0.05
    abs_tol: float = 2e-4
    min_points: int = DEFAULT_MIN_POINTS
    step_offset: int | None = None      # added to the run's steps before pairing; None: detected
    formats: tuple = ("auto", "auto")   # reader of the run log, of the reference (logs.FORMATS)
    ranks: tuple = (None, None)         # whose losses (dllogger logs), None: the lowest rank logged


@dataclass
class CurveComparison:
    steps: np.ndarray    # (k,) aligned steps (the run's)
    run: np.ndarray      # (k,) run loss at those steps
    ref: np.ndarray      # (k,) reference loss paired with them
    mre: float           # mean |run - ref| / |ref|
    mae: float           # mean |run - ref|
    rel_tol: float
    abs_tol: float
    signed_rel: float = 0.0   # mean (run - ref) / ref: the model zoos' loss.py
    signed_abs: float = 0.0   # mean (run - ref)
    rule: str = "abs"
    align: str = "step"
    ref_steps: np.ndarray | None = None   # the reference's steps paired (None: the same as ``steps``)
    step_offset: int = 0                  # run step s was paired with reference step s + step_offset

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


def _matches(run: LossCurve, ref: LossCurve, offset: int) -> int:
    return int(np.intersect1d(run.steps + offset, ref.steps, assume_unique=True).size)


def detect_step_offset(run: LossCurve, ref: LossCurve) -> tuple[int, str]:
    """(offset, one-line note): +1 / -1 when the logs count steps from different bases, else 0.
    Shifted when equal step numbers pair no point and a shift of one pairs some (9, 19, 29 against
    10, 20, 30), or when one log starts at 0 and the other at 1 and the shift pairs more points
    than equal numbers do (0..4 against 1..5); when it pairs as many, equal numbers are paired and
    the note says so."""
    r0, f0 = int(run.steps[0]), int(ref.steps[0])
    same = _matches(run, ref, 0)
    if same == 0:
        offset = 1 if _matches(run, ref, 1) >= _matches(run, ref, -1) else -1
    elif {r0, f0} == {0, 1}:
        offset = f0 - r0
    else:
        return 0, ""
    shifted = _matches(run, ref, offset)
    if shifted > same:
        return offset, (f"step base: the run's steps start at {r0}, the reference's at {f0}; run step s is "
                        f"paired with reference step s{offset:+d} ({shifted} points; --step-offset 0 "
                        "pairs equal step numbers)")
    if shifted and shifted == same:
        return 0, (f"step base: the run's steps start at {r0}, the reference's at {f0}: if they count from "
                   f"different bases, --step-offset {offset} pairs them; equal step numbers paired")
    return 0, ""


def align_curves(run: LossCurve, ref: LossCurve, align: str = "step", skip_first: int = 0, last: int = 0,
                 step_offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(run steps, reference steps, run losses, reference losses) paired by step (run step s + offset =
    reference step) or by position over the shorter length (``index``: the model zoos' truncation),
    then the first ``skip_first`` points dropped and only the ``last`` ones kept (0: all)."""
    if align == "index":
        k = min(run.steps.size, ref.steps.size)
        steps, ref_steps, a, b = run.steps[:k], ref.steps[:k], run.losses[:k], ref.losses[:k]
    else:
        common, i_run, i_ref = np.intersect1d(run.steps + step_offset, ref.steps, assume_unique=True,
                                              return_indices=True)
        if common.size == 0:
            raise UserError(f"no common steps between {run.path} (steps {run.steps[0]}..{run.steps[-1]}) "
                            f"and {ref.path} (steps {ref.steps[0]}..{ref.steps[-1]}); --align index "
                            "compares them by position")
        steps, ref_steps, a, b = run.steps[i_run], ref.steps[i_ref], run.losses[i_run], ref.losses[i_ref]
    keep = slice(skip_first, None)
    steps, ref_steps, a, b = steps[keep], ref_steps[keep], a[keep], b[keep]
    if last:
        steps, ref_steps, a, b = steps[-last:], ref_steps[-last:], a[-last:], b[-last:]
    if steps.size == 0:
        raise UserError(f"no aligned points left after --skip-first {skip_first}")
    return steps, ref_steps, a, b


def compare_curves(run: LossCurve, ref: LossCurve, rel_tol: float = 0.05, abs_tol: float = 2e-4, *,
                   rule: str = "abs", align: str = "step", skip_first: int = 0, last: int = 0,
                   step_offset: int = 0) -> CurveComparison:
    """Both pairs of figures over the aligned points (``align_curves``): two-sided mean |relative|
    and |absolute| error, and the model zoos' signed means; ``rule`` says which pair decides."""
    steps, ref_steps, a, b = align_curves(run, ref, align, skip_first, last, step_offset)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        mre = mae = srel = sabs = math.inf  # a diverged run fails
    else:
        diff = a - b
        mae, sabs = float(np.abs(diff).mean()), float(diff.mean())
        mre = float((np.abs(diff) / np.maximum(np.abs(b), 1e-12)).mean())
        srel = float((diff / np.where(b == 0, 1e-12, b)).mean())
    return CurveComparison(steps, a, b, mre, mae, rel_tol, abs_tol, srel, sabs, rule, align, ref_steps,
                           step_offset)


def check_reference(curve: LossCurve) -> None:
    """A reference holds finite losses only: a NaN or inf in it is a bad reference (exit 2), not a FAIL."""
    bad = ~np.isfinite(curve.losses)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"bad reference {curve.path}: its loss at step {curve.steps[i]} is "
                        f"{curve.losses[i]} ({int(bad.sum())} non-finite of {bad.size}); a reference "
                        "curve must be finite")


def _side(curve: LossCurve, steps: np.ndarray) -> dict:
    out = {"path": curve.path, "format": curve.fmt, "points": int(curve.steps.size), "rank": curve.rank,
           "steps": [int(curve.steps[0]), int(curve.steps[-1])],
           "aligned_steps": [int(steps[0]), int(steps[-1])]}
    if curve.ranks:
        out["ranks"] = list(curve.ranks)
    return out


@dataclass
class LogComparison:
    """Everything ``compare_logs`` found: the two curves, the figures, the notes said on the way."""
    run: LossCurve
    ref: LossCurve
    curves: CurveComparison
    options: CompareOptions
    notes: list = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 0 if self.curves.passed else 1

    def figures(self) -> dict:
        """Every figure and verdict as plain values (a non-finite figure stays a float here)."""
        c, o = self.curves, self.options
        verdict = {True: "PASS", False: "FAIL"}
        ref_steps = c.steps + c.step_offset if c.ref_steps is None else c.ref_steps
        return {
            "run": _side(self.run, c.steps), "reference": _side(self.ref, ref_steps),
            "align": c.align, "step_offset": c.step_offset, "skip_first": o.skip_first, "last": o.last,
            "min_points": o.min_points, "aligned_points": int(c.steps.size),
            "nonfinite_run_points": int((~np.isfinite(c.run)).sum()),
            "mean_relative_error": c.mre, "mean_absolute_error": c.mae,
            "signed_relative_error": c.signed_rel, "signed_absolute_error": c.signed_abs,
            "rel_tol": c.rel_tol, "abs_tol": c.abs_tol,
            "two_sided_verdict": verdict[c.passed_two_sided], "signed_verdict": verdict[c.passed_signed],
            "rule": c.rule, "verdict": verdict[c.passed], "exit_code": self.exit_code,
            "notes": list(self.notes),
        }


def compare_logs(run_log: str | Path, reference_log: str | Path,
                 options: CompareOptions | None = None) -> LogComparison:
    """Read both logs (streamed) and compare them; every bad input (a file, a non-finite reference,
    too few aligned points) is a one-line UserError."""
    o = options or CompareOptions()
    run = read_loss_curve(run_log, o.formats[0], o.ranks[0])
    ref = read_loss_curve(reference_log, o.formats[1], o.ranks[1])
    check_reference(ref)
    notes = [c.note for c in (run, ref) if c.note]
    offset = o.step_offset or 0
    if o.align == "step" and o.step_offset is None:
        offset, note = detect_step_offset(run, ref)
        notes += [note] if note else []
    cmp = compare_curves(run, ref, o.rel_tol, o.abs_tol, rule=o.rule, align=o.align, skip_first=o.skip_first,
                         last=o.last, step_offset=offset)
    if cmp.steps.size < o.min_points:
        raise UserError(f"{cmp.steps.size} aligned point{'s' * (cmp.steps.size != 1)} (run {run.steps.size}, "
                        f"reference {ref.steps.size} points), fewer than --min-points {o.min_points}: no "
                        "verdict; log more often (train.log_interval), run longer or lower --min-points")
    return LogComparison(run, ref, cmp, o, notes)
