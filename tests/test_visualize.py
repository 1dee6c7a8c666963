"""HOG glyph rendering (against skimage.feature.hog's picture) and `maskfeat visualize`."""
import math

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from skimage.feature import hog as skimage_hog

from maskfeat.cli import main
from maskfeat.data.images import skimage_photos
from maskfeat.models.hog import HOGGenerator
from maskfeat.viz import (
    bin_gradient_angles,
    glyph_stamps,
    patches_to_cells,
    render_glyphs,
)
from maskfeat.viz.panels import VISIBLE_TINT, glyph_panel


def axis_angle(block: np.ndarray) -> float:
    """Principal axis of a block's intensity, in degrees from +col toward -row (image 'up'), mod 180."""
    n = block.shape[0]
    r, c = np.mgrid[0:n, 0:n].astype(float)
    w = block / block.sum()
    r, c = r - (w * r).sum(), c - (w * c).sum()
    cov = np.array([[(w * r * r).sum(), (w * r * c).sum()], [(w * r * c).sum(), (w * c * c).sum()]])
    vr, vc = np.linalg.eigh(cov)[1][:, 1]
    return math.degrees(math.atan2(-vr, vc)) % 180


def mean_axis(img: np.ndarray, cell: int, cells: range) -> float:
    """Circular (mod 180) mean of the per-cell axis angles."""
    z = np.mean([np.exp(2j * math.radians(axis_angle(img[i * cell:(i + 1) * cell, j * cell:(j + 1) * cell])))
                 for i in cells for j in cells])
    return math.degrees(np.angle(z)) / 2 % 180


def angle_gap(a: float, b: float) -> float:
    d = abs(a - b) % 180
    return min(d, 180 - d)


def stripes(edge_deg: float, n: int = 64, period: float = 7.0) -> np.ndarray:
    """Sinusoidal stripes whose edges run at ``edge_deg`` (from +col toward image 'up')."""
    t = math.radians(edge_deg)
    rr, cc = np.mgrid[0:n, 0:n].astype(float)
    return 0.5 + 0.5 * np.sin((rr * math.cos(t) + cc * math.sin(t)) * 2 * math.pi / period)


def test_one_hot_bin_draws_the_edge_perpendicular_to_its_gradient():
    stamps = glyph_stamps(9, 31)
    for b, t in enumerate(bin_gradient_angles(9)):
        # gradient (row, col) = (cos t, sin t) -> edge angle t measured from +col toward 'up'
        assert angle_gap(axis_angle(stamps[b]), math.degrees(t)) < 2.0


@pytest.mark.parametrize("edge_deg", [10, 50, 90, 130, 170])
def test_glyph_orientation_matches_truth_and_skimage(edge_deg):
    img = stripes(edge_deg)
    x = torch.from_numpy(img).float()[None, None].repeat(1, 3, 1, 1)
    cells = HOGGenerator(gaussian_window=0).cell_histograms(x)[0].mean(0)      # (9, 8, 8)
    ours = mean_axis(render_glyphs(cells, 15), 15, range(1, 7))
    # skimage's own HOG and rendering (1-px lines with truncated end points: coarse, within a bin)
    _, sk_img = skimage_hog(img, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(1, 1),
                            visualize=True)
    theirs = mean_axis(sk_img, 16, range(1, 3))
    assert angle_gap(ours, edge_deg) < 3.0
    assert angle_gap(ours, theirs) < 20.0


def test_render_glyphs_scale_and_clipping():
    hist = np.zeros((9, 2, 3), np.float32)
    hist[4, 0, 0] = 1.0          # full brightness
    hist[4, 1, 2] = 0.25         # a quarter
    hist[0, 0, 1] = -3.0         # a negative prediction draws nothing
    img = render_glyphs(hist, 9)
    assert img.shape == (18, 27) and img.min() >= 0.0 and img.max() <= 1.0
    assert img[:9, :9].max() == pytest.approx(1.0)
    assert img[9:, 18:].max() == pytest.approx(0.25)
    assert img[:9, 9:18].max() == 0.0 and img[9:, :18].max() == 0.0


def test_patches_to_cells_inverts_hog_layout():
    g = HOGGenerator()
    x = torch.randn(2, 3, 64, 48)
    cells = g.cell_histograms(x)                                  # (2, 3, 9, 8, 6)
    np.testing.assert_array_equal(patches_to_cells(g.to_patches(cells), (4, 3)).numpy(), cells.numpy())


def test_prediction_panel_shows_masked_patches_only():
    hist = np.full((3, 9, 4, 4), 0.5, np.float32)                 # 2x2 patches of 2x2 cells
    keep = np.array([[True, False], [False, True]])
    rgb = glyph_panel(hist, 6, keep=keep)                         # (24, 24, 3)
    np.testing.assert_array_equal(rgb[12:, :12], np.broadcast_to(VISIBLE_TINT, (12, 12, 3)))
    np.testing.assert_array_equal(rgb[:12, :12, 0], render_glyphs(hist.mean(0), 6)[:12, :12])


@pytest.fixture
def checkpoint(tiny_run):
    return tiny_run / "last.pth"


def test_visualize_writes_one_png_per_image(checkpoint, tmp_path, capsys):
    photos = [str(p) for p in skimage_photos()[:2]]
    rc = main(["visualize", str(checkpoint), *photos, "--out-dir", str(tmp_path), "--seed", "3"])
    out = capsys.readouterr().out
    assert rc == 0
    pngs = sorted(tmp_path.glob("*_maskfeat.png"))
    assert len(pngs) == 2
    for png in pngs:
        img = mpimg.imread(png)
        assert img.shape[1] > 3 * img.shape[0] and img[..., :3].std() > 0.1   # four panels side by side
    losses = [float(line.split("loss")[1]) for line in out.splitlines()]
    assert all(0.0 < v < 1.0 for v in losses)


def test_visualize_is_seeded(checkpoint, tmp_path, capsys):
    photo = str(skimage_photos()[0])
    outs = []
    for d in ("a", "b"):
        assert main(["visualize", str(checkpoint), photo, "--out-dir", str(tmp_path / d)]) == 0
        outs.append(capsys.readouterr().out.split("loss")[1])
    assert outs[0] == outs[1]
    assert ((tmp_path / "a" / "astronaut_maskfeat.png").read_bytes()
            == (tmp_path / "b" / "astronaut_maskfeat.png").read_bytes())


def test_visualize_bad_inputs(checkpoint, tmp_path, capsys):
    assert main(["visualize", str(checkpoint), str(tmp_path / "nope.png"), "--out-dir", str(tmp_path)]) == 2
    assert "image not found" in capsys.readouterr().err
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    assert main(["visualize", str(checkpoint), str(junk), "--out-dir", str(tmp_path)]) == 2
    assert "cannot decode" in capsys.readouterr().err
    bare = tmp_path / "bare.pth"
    torch.save({"model": torch.load(checkpoint, weights_only=True)["model"]}, bare)
    assert main(["visualize", str(bare), str(junk)]) == 2
    err = capsys.readouterr().err
    assert "no 'config' key" in err and len(err.strip().splitlines()) == 1
