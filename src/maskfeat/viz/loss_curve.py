"""Loss-curve pictures: a run's training loss (with the reference line its config implies) and
the comparison of two curves drawn by ``maskfeat compare-loss``."""
from __future__ import annotations

from pathlib import Path

from ..comparison import CurveComparison
from ..errors import UserError
from ..logs import read_loss_curve, read_metric


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def reference_level(cfg: dict | None) -> float | None:
    """MaskFeat's predict-zero loss for a HOG-target run: every (cell, channel) histogram has unit
    L2 norm, so a patch's target has squared norm (#cells x 3) over (#cells x 3 x nbins) values
    and predicting 0 scores 1 / nbins (0.111 for 9 bins); None for other runs."""
    if not cfg or "hog" not in cfg or cfg.get("model", {}).get("target", "hog") != "hog":
        return None
    return 1.0 / cfg["hog"]["nbins"]


def _plot_knn(ax, log_path: str | Path, handles: list) -> None:
    """The k-NN monitor's top-1 (log.jsonl 'knn_top1') on a second y axis, when the run has it."""
    steps, top1 = read_metric(log_path, "knn_top1")
    if not steps:
        return
    ax2 = ax.twinx()
    handles += ax2.plot(steps, top1, color="tab:green", marker="o", ms=4, lw=1.5, label="k-NN top-1 (%)")
    ax2.set_ylabel("k-NN top-1 (%)")


def plot_loss_curve(log_path: str | Path, png_path: str | Path, cfg: dict | None = None,
                    title: str = "MaskFeat pre-training loss") -> bool:
    """Loss against step from a run's JSON-lines log, with the k-NN monitor's top-1 on a second axis
    when the log has it; False when there is nothing to plot."""
    try:
        curve = read_loss_curve(log_path)
    except UserError:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    handles = ax.plot(curve.steps, curve.losses, lw=1.5, label="loss (masked MSE)")
    level = reference_level(cfg)
    if level is not None:
        handles.append(ax.axhline(level, color="grey", ls="--", lw=1,
                                  label=f"predict-zero level {level:.3f}"))
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curve.fmt == "jsonl":
        _plot_knn(ax, log_path, handles)
    ax.legend(handles=handles, labels=[h.get_label() for h in handles])
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
    return True


def plot_comparison(cmp: CurveComparison, png_path: str | Path, run_label: str = "run",
                    ref_label: str = "reference") -> None:
    """Both curves (top) and run - reference (bottom) against step, written with matplotlib Agg."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.5, 6), dpi=110, sharex=True,
                                   gridspec_kw=dict(height_ratios=[2, 1]))
    marker = "o" if cmp.steps.size <= 50 else None
    ax1.plot(cmp.steps, cmp.ref, lw=2.0, color="tab:blue", marker=marker, ms=4, label=ref_label)
    ax1.plot(cmp.steps, cmp.run, lw=1.2, color="tab:orange", ls="--", marker=marker, ms=3, label=run_label)
    ax1.set_ylabel("loss")
    verdict = "PASS" if cmp.passed else "FAIL"
    rel, ab, kind = ((cmp.signed_rel, cmp.signed_abs, "signed ") if cmp.rule == "signed"
                     else (cmp.mre, cmp.mae, ""))
    ax1.set_title(f"{verdict}: {kind}MRE {rel:.4g} (<= {cmp.rel_tol:g}) or {kind}MAE {ab:.3g} "
                  f"(<= {cmp.abs_tol:g}) over {cmp.steps.size} points", fontsize=9)
    ax1.grid(alpha=0.3)
    ax1.legend()
    ax2.plot(cmp.steps, cmp.run - cmp.ref, lw=1.2, color="tab:red", marker=marker, ms=3)
    ax2.axhline(0.0, color="grey", lw=0.8)
    ax2.set_xlabel("step")
    ax2.set_ylabel(f"{run_label} - {ref_label}", fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)
