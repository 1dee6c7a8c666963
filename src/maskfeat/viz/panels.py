"""The four-panel MaskFeat picture of one image: input, mask, HOG target, predicted HOG."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from .hog_glyphs import render_glyphs

VISIBLE_TINT = np.array([0.16, 0.20, 0.32], dtype=np.float32)   # prediction panel: patches the model saw


def upsample_mask(mask: np.ndarray, patch_px: int) -> np.ndarray:
    """(Hp, Wp) bool -> (Hp*patch_px, Wp*patch_px) bool."""
    return np.kron(mask.astype(np.uint8), np.ones((patch_px, patch_px), np.uint8)).astype(bool)


def masked_input(image: np.ndarray, mask: np.ndarray, patch_size: int) -> np.ndarray:
    """RGB (H, W, 3) in [0, 1] with masked patches filled mid-grey."""
    m = upsample_mask(mask, patch_size)[..., None]                  # (H, W, 1)
    return np.where(m, 0.5, image)


def glyph_panel(hist: np.ndarray, cell_px: int, keep: np.ndarray | None = None,
                cells_per_patch: int = 2) -> np.ndarray:
    """(C, nbins, Hc, Wc) histograms -> RGB glyph picture; patches outside ``keep`` (Hp, Wp) are tinted."""
    glyphs = render_glyphs(hist.mean(axis=0), cell_px)               # (Hc*px, Wc*px), channels averaged
    rgb = np.repeat(glyphs[..., None], 3, axis=2)
    if keep is not None:
        shown = upsample_mask(keep, cell_px * cells_per_patch)[..., None]
        rgb = np.where(shown, rgb, VISIBLE_TINT)
    return rgb


def draw_panels(image: np.ndarray, mask: np.ndarray, target_hist: np.ndarray, pred_hist: np.ndarray,
                patch_size: int, out_path: str | Path, title: str = "", cell_px: int = 12,
                cells_per_patch: int = 2) -> None:
    """Write the 1x4 grid to ``out_path``.

    image (H, W, 3) in [0, 1]; mask (Hp, Wp) bool (True = masked); target_hist, pred_hist
    (C, nbins, Hc, Wc) per-cell histograms (the HOG target and the prediction reshaped to cells).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (image, "input"),
        (masked_input(image, mask, patch_size), f"mask ({int(mask.sum())}/{mask.size} patches)"),
        (glyph_panel(target_hist, cell_px), "HOG target"),
        (glyph_panel(pred_hist, cell_px, keep=mask, cells_per_patch=cells_per_patch),
         "predicted HOG (masked patches)"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.9), dpi=100)
    for ax, (pic, name) in zip(axes, panels):
        ax.imshow(np.clip(pic, 0.0, 1.0), interpolation="nearest" if pic is not image else "bilinear")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:                  # the name holds a whole PNG or nothing
        fig.savefig(tmp, format=Path(out_path).suffix.lstrip(".") or None)
    plt.close(fig)
