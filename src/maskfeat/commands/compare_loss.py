"""``maskfeat compare-loss RUN_LOG REFERENCE_LOG``: align two loss curves and judge them.

Prints the two-sided figures (mean |relative error|, mean |absolute error|) and the model zoos'
signed ones (mean (run - ref) / ref, mean (run - ref)), each with its verdict; ``--rule`` picks the
one that sets the exit code: 0 PASS, 1 FAIL, 2 bad input (fewer than ``--min-points`` aligned
points included). ``--json FILE`` writes every figure and the verdict (``LogComparison.figures``).
``compare_and_report`` is the same for other commands (``check-port``).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from ..atomic import atomic_path
from ..comparison import ALIGNS, DEFAULT_MIN_POINTS, RULES, CompareOptions, LogComparison, compare_logs
from ..errors import UserError
from ..logs import FORMATS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_log", metavar="RUN_LOG",
                   help="our log.jsonl or tee'd output, mmengine json / text, dllogger (TCAPPDLL) lines, "
                        "step,loss CSV")
    p.add_argument("reference_log", metavar="REFERENCE_LOG",
                   help="the curve to compare against (same formats), e.g. a tee'd GPU log")
    p.add_argument("--rule", default="abs",
                   help="verdict for the exit code: abs (two-sided, default) or signed (model zoos' loss.py)")
    p.add_argument("--align", default="step",
                   help="step (equal steps, default) or index (by position, both cut to the shorter)")
    p.add_argument("--step-offset", default="auto", metavar="auto|N",
                   help="--align step: add N to the run's steps before pairing; auto (default) detects logs "
                        "counting from 0 and from 1 and pairs them, or says so")
    p.add_argument("--format", default="auto", metavar="NAME[,NAME]",
                   help=f"reader of both logs, or of RUN_LOG,REFERENCE_LOG: {', '.join(FORMATS)} (default "
                        "auto: by content; a log holding mmengine and dllogger lines is read as mmengine)")
    p.add_argument("--rank", default="", metavar="N[,N]",
                   help="whose losses in dllogger logs (both, or RUN_LOG,REFERENCE_LOG); default the lowest "
                        "rank logged; the other formats hold rank 0's")
    p.add_argument("--skip-first", default="0", metavar="N", help="drop the first N aligned points")
    p.add_argument("--last", default="0", metavar="N", help="keep only the last N aligned points (0: all)")
    p.add_argument("--min-points", default=str(DEFAULT_MIN_POINTS), metavar="N",
                   help=f"fewer aligned points than this is no verdict: exit 2 ({DEFAULT_MIN_POINTS})")
    p.add_argument("--rel-tol", default="0.05", help="pass when mean relative error <= this (0.05)")
    p.add_argument("--abs-tol", default="2e-4", help="or when mean absolute error <= this (0.0002)")
    p.add_argument("--json", metavar="FILE", default=None,
                   help="also write every figure and the verdict to FILE (JSON; a non-finite figure: null)")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="where to write the curves (default: RUN_LOG's name + '_vs_ref.png' next to it)")
    p.add_argument("--no-plot", action="store_true", help="do not write a PNG")


def _option(name: str, raw, kind: type, least: int = 0):
    """A number >= ``least`` given on the command line (or by a caller), else a one-line error naming it."""
    try:
        value = kind(raw)
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or isinstance(raw, bool) or not math.isfinite(value) or value < least:
        what = "a whole number" if kind is int else "a finite number"
        raise UserError(f"{name}: expected {what} >= {least}, got {raw!r}")
    return value


def _pair(name: str, raw, parse) -> tuple:
    """'X' (both logs) or 'X,Y' (run log, reference log) -> (x, y); an empty part: parse('')."""
    parts = [raw] if not isinstance(raw, str) else raw.split(",")
    if len(parts) > 2:
        raise UserError(f"{name}: expected a value or RUN,REFERENCE, got {raw!r}")
    values = [parse(p.strip() if isinstance(p, str) else p) for p in parts]
    return (values[0], values[-1])


def _format(raw: str) -> str:
    if raw not in FORMATS:
        raise UserError(f"--format: {raw!r} is not one of {', '.join(FORMATS)}")
    return raw


def _rank(raw) -> int | None:
    return None if raw in ("", None) else _option("--rank", raw, int)


def _offset(raw) -> int | None:
    if raw in ("auto", None):
        return None
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise UserError(f"--step-offset: expected auto or a whole number, got {raw!r}") from None
    if abs(value) > 2 ** 53:
        raise UserError(f"--step-offset: {raw!r} is out of range")
    return value


def check_options(rule: str = "abs", align: str = "step", skip_first=0, last=0, rel_tol=0.05, abs_tol=2e-4, *,
                  min_points=DEFAULT_MIN_POINTS, step_offset="auto", fmt="auto", rank=None) -> CompareOptions:
    """The comparison options, checked (one line naming the bad one)."""
    if rule not in RULES:
        raise UserError(f"--rule: {rule!r} is not one of {', '.join(RULES)}")
    if align not in ALIGNS:
        raise UserError(f"--align: {align!r} is not one of {', '.join(ALIGNS)}")
    return CompareOptions(rule, align, _option("--skip-first", skip_first, int), _option("--last", last, int),
                          _option("--rel-tol", rel_tol, float), _option("--abs-tol", abs_tol, float),
                          _option("--min-points", min_points, int, least=1), _offset(step_offset),
                          _pair("--format", fmt, _format), _pair("--rank", rank, _rank))


def report_lines(fig: dict) -> list[str]:
    """The text report of ``LogComparison.figures()``."""
    run, ref = fig["run"], fig["reference"]
    out = []
    for label, side in (("run:      ", run), ("reference:", ref)):
        ranks = len(side.get("ranks", ()))
        rank = f", rank {side['rank']} of {ranks} logged" if ranks > 1 else ""
        out.append(f"{label} {side['path']} ({side['format']}{rank}, {side['points']} points)")
    out += [f"note: {n}" for n in fig["notes"]]
    (a, b), n = run["aligned_steps"], fig["aligned_points"]
    if fig["align"] == "index":
        out.append(f"aligned by position: {n} points (run steps {a}..{b})")
    elif fig["step_offset"]:
        c, d = ref["aligned_steps"]
        out.append(f"aligned steps: {n} ({a}..{b}; reference steps {c}..{d})")
    else:
        out.append(f"aligned steps: {n} ({a}..{b})")
    out += [f"mean relative error: {fig['mean_relative_error']:.6g} (tolerance {fig['rel_tol']:g})",
            f"mean absolute error: {fig['mean_absolute_error']:.6g} (tolerance {fig['abs_tol']:g})",
            f"two-sided verdict: {fig['two_sided_verdict']}",
            f"signed relative error: {fig['signed_relative_error']:.6g} (model zoo: mean((run - ref) / ref))",
            f"signed absolute error: {fig['signed_absolute_error']:.6g} (model zoo: mean(run - ref))",
            f"signed verdict: {fig['signed_verdict']}",
            f"rule: {fig['rule']} ({'signed' if fig['rule'] == 'signed' else 'two-sided'} verdict sets the "
            "exit code)"]
    return out


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def write_json(fig: dict, path: Path) -> None:
    """The figures as JSON (strict: a non-finite figure is null), written whole or not at all."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(_finite_or_none(fig), indent=2, allow_nan=False) + "\n")
    except OSError as e:
        raise UserError(f"--json: cannot write {path}: {e.strerror or e}") from None


def _outputs(run_log, reference_log, plot, json_path) -> tuple[Path | None, Path | None]:
    """The output paths, checked before anything is read: never one of the inputs, never each other."""
    inputs = {Path(p).resolve() for p in (run_log, reference_log)}
    outs = [Path(p) if p is not None else None for p in (plot, json_path)]
    for name, out in zip(("--plot", "--json"), outs):
        if out is not None and (out.resolve() in inputs or out.is_dir()):
            what = "a folder" if out.is_dir() else "one of the logs compared"
            raise UserError(f"{name}: {out} is {what}; name another file")
    if outs[0] is not None and outs[1] is not None and outs[0].resolve() == outs[1].resolve():
        raise UserError(f"--json: {outs[1]} is also the --plot file; name another file")
    return outs[0], outs[1]


def compare_and_report(run_log, reference_log, *, plot=None, json_path=None, **options) -> int:
    """Read both logs, print both pairs of figures and verdicts, write the plot if ``plot`` is a path
    and the figures if ``json_path`` is; 0 when the ``rule``'s verdict is PASS, 1 on FAIL. Bad input
    (a file, an option, too few points) raises UserError before anything is written. ``options``:
    those of ``check_options`` (rule, align, skip_first, last, rel_tol, abs_tol, min_points,
    step_offset, fmt, rank)."""
    opts = check_options(**options)
    png, js = _outputs(run_log, reference_log, plot, json_path)
    result: LogComparison = compare_logs(run_log, reference_log, opts)
    fig = result.figures()
    print("\n".join(report_lines(fig)))
    if png is not None:
        from ..viz.loss_curve import plot_comparison  # matplotlib (and torch) only for a plot

        try:
            png.parent.mkdir(parents=True, exist_ok=True)
            plot_comparison(result.curves, png, run_label=Path(run_log).name,
                            ref_label=Path(reference_log).name)
        except OSError as e:
            raise UserError(f"cannot write plot {png}: {e.strerror or e}") from None
        print(f"plot: {png}")
    if js is not None:
        write_json(fig, js)
        print(f"json: {js}")
    print(fig["verdict"])
    return result.exit_code


def run(args: argparse.Namespace) -> int:
    plot = None
    if not args.no_plot:
        run_log = Path(args.run_log)
        plot = Path(args.plot) if args.plot else run_log.with_name(run_log.stem + "_vs_ref.png")
    return compare_and_report(args.run_log, args.reference_log, plot=plot, json_path=args.json,
                              rule=args.rule, align=args.align, skip_first=args.skip_first, last=args.last,
                              rel_tol=args.rel_tol, abs_tol=args.abs_tol, min_points=args.min_points,
                              step_offset=args.step_offset, fmt=args.format, rank=args.rank)
