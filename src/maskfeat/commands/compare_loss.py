"""``maskfeat compare-loss RUN_LOG REFERENCE_LOG``: align two loss curves by step and judge them.

Exit code 0 on PASS (MRE <= rel-tol or MAE <= abs-tol), 1 on FAIL, 2 on bad input.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ..logs import compare_curves, read_loss_curve
from ..viz.loss_curve import plot_comparison


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_log", metavar="RUN_LOG",
                   help="our log.jsonl, an mmpretrain vis_data/*.json, or a step,loss CSV")
    p.add_argument("reference_log", metavar="REFERENCE_LOG", help="the curve to compare against (same formats)")
    p.add_argument("--rel-tol", type=float, default=0.05, help="pass when mean relative error <= this (0.05)")
    p.add_argument("--abs-tol", type=float, default=2e-4, help="or when mean absolute error <= this (0.0002)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="where to write the curves (default: RUN_LOG's name + '_vs_ref.png' next to it)")
    p.add_argument("--no-plot", action="store_true", help="do not write a PNG")


def run(args: argparse.Namespace) -> int:
    plot = None
    if not args.no_plot:
        plot = args.plot or Path(args.run_log).with_name(Path(args.run_log).stem + "_vs_ref.png")
    return compare_and_report(args.run_log, args.reference_log, rel_tol=args.rel_tol, abs_tol=args.abs_tol,
                              plot=plot)


def compare_and_report(run_log, reference_log, *, rule: str = "abs", align: str = "step",
                       skip_first: int = 0, last: int = 0, rel_tol: float = 0.05, abs_tol: float = 2e-4,
                       plot=None) -> int:
    """Compare RUN_LOG's loss curve with REFERENCE_LOG's, print the figures and the verdict, write
    the PNG when ``plot`` is a path; 0 PASS, 1 FAIL. (This branch: rule 'abs', align 'step', no
    skip_first / last; the others are refused.)"""
    for name, value, supported in (("rule", rule, "abs"), ("align", align, "step"),
                                   ("skip_first", skip_first, 0), ("last", last, 0)):
        if value != supported:
            raise UserError(f"compare-loss: {name} {value!r} is not supported here (only {supported!r})")
    run_curve = read_loss_curve(run_log)
    ref_curve = read_loss_curve(reference_log)
    cmp = compare_curves(run_curve, ref_curve, rel_tol=rel_tol, abs_tol=abs_tol)
    print(f"run:       {run_log} ({run_curve.fmt}, {run_curve.steps.size} points)")
    print(f"reference: {reference_log} ({ref_curve.fmt}, {ref_curve.steps.size} points)")
    print(f"aligned steps: {cmp.steps.size} ({cmp.steps[0]}..{cmp.steps[-1]})")
    print(f"mean relative error: {cmp.mre:.6g} (tolerance {cmp.rel_tol:g})")
    print(f"mean absolute error: {cmp.mae:.6g} (tolerance {cmp.abs_tol:g})")
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
