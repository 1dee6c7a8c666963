"""``maskfeat check-port``: the first N steps of a pre-training recipe on a device, compared with a
reference loss curve (default: the shipped CPU fp32 run of this very check).

Exit code 0 PASS, 1 FAIL, 2 bad input (nothing is run or written then).
"""
from __future__ import annotations

import argparse
import contextlib
import io

from .common import add_config_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, "the demo recipe: vit-mini, 112 px, scikit-image's photos")
    p.add_argument("--device", metavar="TYPE", default=None, help="shorthand for train.device=TYPE")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps to run and compare (100)")
    p.add_argument("--reference", metavar="LOG", default=None,
                   help="the curve to compare with: our log.jsonl, mmpretrain's JSON, a step,loss CSV "
                        "(default: the shipped CPU fp32 run of the default check)")
    p.add_argument("--rule", default="abs", help="abs: two-sided mean |rel err| / |abs err| (default)")
    p.add_argument("--align", default="step", help="how the curves are aligned (step)")
    p.add_argument("--skip-first", type=int, default=0, help="leave out the first N aligned points (0)")
    p.add_argument("--last", type=int, default=0, help="compare only the last N aligned points (0 = all)")
    p.add_argument("--rel-tol", type=float, default=0.05, help="pass when the relative error <= this (0.05)")
    p.add_argument("--abs-tol", type=float, default=2e-4, help="or the absolute error <= this (0.0002)")
    p.add_argument("--min-points", type=int, default=10, help="fewer aligned points: no verdict, exit 2 (10)")


def run(args: argparse.Namespace) -> int:
    from ..engine.device import device_type
    from ..errors import UserError
    from ..logs import read_loss_curve
    from ..tasks.check_port import plan_port_check, run_port_check
    from .compare_loss import check_options, compare_and_report

    check = plan_port_check(args.config, args.overrides, steps=args.steps, device=args.device,
                            reference=args.reference)
    options = dict(rule=args.rule, align=args.align, skip_first=args.skip_first, last=args.last,
                   rel_tol=args.rel_tol, abs_tol=args.abs_tol, min_points=args.min_points)
    check_options(**options)                             # the options and the reference, before any run
    if args.steps - args.skip_first < args.min_points:
        raise UserError(f"--steps {args.steps} (less --skip-first {args.skip_first}) leaves fewer than "
                        f"--min-points {args.min_points} points to compare")
    read_loss_curve(check.reference)
    t = check.cfg["train"]
    print(f"check-port: {args.config or 'the demo recipe'}, {t['max_steps']} steps on "
          f"{device_type(t['device'])} (amp {t['amp']}) -> {check.output_dir}; reference {check.reference}",
          flush=True)
    if not run_port_check(check):
        return 0                                         # other ranks: rank 0 compares
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = compare_and_report(check.run_log, check.reference, plot=check.plot, **options)
    print(out.getvalue(), end="")
    check.report.write_text(out.getvalue())
    return code
