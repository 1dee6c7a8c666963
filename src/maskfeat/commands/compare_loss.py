"""``maskfeat compare-loss RUN_LOG REFERENCE_LOG``: align two loss curves and judge them.

Prints the two-sided figures (mean |relative error|, mean |absolute error|) and the model zoos'
signed ones (mean (run - ref) / ref, mean (run - ref)), each with its verdict; ``--rule`` picks the
one that sets the exit code: 0 PASS, 1 FAIL, 2 bad input. ``compare_and_report`` is the same for
other commands (``check-port``).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import UserError
from ..logs import ALIGNS, RULES, CurveComparison, compare_curves, read_loss_curve
from ..viz.loss_curve import plot_comparison


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_log", metavar="RUN_LOG",
                   help="our log.jsonl or tee'd output, mmengine json / text, TCAPPDLL lines, step,loss CSV")
    p.add_argument("reference_log", metavar="REFERENCE_LOG",
                   help="the curve to compare against (same formats)")
    p.add_argument("--rule", default="abs",
                   help="verdict for the exit code: abs (two-sided, default) or signed (model zoos' loss.py)")
    p.add_argument("--align", default="step",
                   help="step (equal steps, default) or index (by position, both cut to the shorter)")
    p.add_argument("--skip-first", default="0", metavar="N", help="drop the first N aligned points")
    p.add_argument("--last", default="0", metavar="N", help="keep only the last N aligned points (0: all)")
    p.add_argument("--rel-tol", default="0.05", help="pass when mean relative error <= this (0.05)")
    p.add_argument("--abs-tol", default="2e-4", help="or when mean absolute error <= this (0.0002)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="where to write the curves (default: RUN_LOG's name + '_vs_ref.png' next to it)")
    p.add_argument("--no-plot", action="store_true", help="do not write a PNG")


def _option(name: str, raw, kind: type):
    """A number >= 0 given on the command line (or by a caller), else a one-line error naming it."""
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        value = None
    if value is None or isinstance(raw, bool) or not math.isfinite(value) or value < 0:
        what = "a whole number" if kind is int else "a finite number"
        raise UserError(f"{name}: expected {what} >= 0, got {raw!r}")
    return value


def check_options(rule: str, align: str, skip_first, last, rel_tol, abs_tol) -> tuple:
    """The comparison options, checked (one line naming the bad one): (skip_first, last, rel_tol, abs_tol)."""
    if rule not in RULES:
        raise UserError(f"--rule: {rule!r} is not one of {', '.join(RULES)}")
    if align not in ALIGNS:
        raise UserError(f"--align: {align!r} is not one of {', '.join(ALIGNS)}")
    return (_option("--skip-first", skip_first, int), _option("--last", last, int),
            _option("--rel-tol", rel_tol, float), _option("--abs-tol", abs_tol, float))


def _report(cmp: CurveComparison, run_log, run_fmt: str, run_n: int, reference_log, ref_fmt: str,
            ref_n: int) -> None:
    verdict = {True: "PASS", False: "FAIL"}
    print(f"run:       {run_log} ({run_fmt}, {run_n} points)")
    print(f"reference: {reference_log} ({ref_fmt}, {ref_n} points)")
    if cmp.align == "index":
        print(f"aligned by position: {cmp.steps.size} points (run steps {cmp.steps[0]}..{cmp.steps[-1]})")
    else:
        print(f"aligned steps: {cmp.steps.size} ({cmp.steps[0]}..{cmp.steps[-1]})")
    print(f"mean relative error: {cmp.mre:.6g} (tolerance {cmp.rel_tol:g})")
    print(f"mean absolute error: {cmp.mae:.6g} (tolerance {cmp.abs_tol:g})")
    print(f"two-sided verdict: {verdict[cmp.passed_two_sided]}")
    print(f"signed relative error: {cmp.signed_rel:.6g} (model zoo: mean((run - ref) / ref))")
    print(f"signed absolute error: {cmp.signed_abs:.6g} (model zoo: mean(run - ref))")
    print(f"signed verdict: {verdict[cmp.passed_signed]}")
    kind = "signed" if cmp.rule == "signed" else "two-sided"
    print(f"rule: {cmp.rule} ({kind} verdict sets the exit code)")


def compare_and_report(run_log, reference_log, *, rule: str = "abs", align: str = "step", skip_first=0,
                       last=0, rel_tol=0.05, abs_tol=2e-4, plot=None) -> int:
    """Read both logs, print both pairs of figures and verdicts, write the plot if ``plot`` is a path;
    0 when ``rule``'s verdict is PASS, 1 on FAIL. Bad input (a file, an option) raises UserError
    before anything is written."""
    skip_first, last, rel_tol, abs_tol = check_options(rule, align, skip_first, last, rel_tol, abs_tol)
    run_curve = read_loss_curve(run_log)
    ref_curve = read_loss_curve(reference_log)
    cmp = compare_curves(run_curve, ref_curve, rel_tol=rel_tol, abs_tol=abs_tol, rule=rule, align=align,
                         skip_first=skip_first, last=last)
    _report(cmp, run_log, run_curve.fmt, run_curve.steps.size, reference_log, ref_curve.fmt,
            ref_curve.steps.size)
    if plot is not None:
        png = Path(plot)
        try:
            png.parent.mkdir(parents=True, exist_ok=True)
            plot_comparison(cmp, png, run_label=Path(run_log).name, ref_label=Path(reference_log).name)
        except OSError as e:
            raise UserError(f"cannot write plot {png}: {e.strerror or e}") from None
        print(f"plot: {png}")
    print("PASS" if cmp.passed else "FAIL")
    return 0 if cmp.passed else 1


def run(args: argparse.Namespace) -> int:
    plot = None
    if not args.no_plot:
        run_log = Path(args.run_log)
        plot = Path(args.plot) if args.plot else run_log.with_name(run_log.stem + "_vs_ref.png")
    return compare_and_report(args.run_log, args.reference_log, rule=args.rule, align=args.align,
                              skip_first=args.skip_first, last=args.last, rel_tol=args.rel_tol,
                              abs_tol=args.abs_tol, plot=plot)
