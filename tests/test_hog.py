import math

import numpy as np
import pytest
import torch

from maskfeat.models.hog import HOGGenerator, gaussian_kernel


def test_matches_mmpretrain_fixture(mmpretrain_fixture):
    f = mmpretrain_fixture
    out = HOGGenerator(nbins=9, cell_size=8, patch_size=16, gaussian_window=16)(f["input_normalized"])
    assert out.shape == (2, 196, 108)
    assert (out - f["hog_target"]).abs().max().item() <= 5e-7        # measured 2.4e-7
    kernel = f["state_dict"]["target_generator.gaussian_kernel"]
    assert torch.allclose(gaussian_kernel(16, 8.0), kernel, atol=1e-8)


def reference_hog(img: np.ndarray, nbins=9, cell=8, patch=16, window=0) -> np.ndarray:
    """Plain loops over SPEC section 2, for one (C, H, W) float64 image."""
    c, h, w = img.shape
    wx = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)
    wy = wx.T
    pad = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    gx, gy = np.zeros_like(img), np.zeros_like(img)
    for ch in range(c):
        for i in range(h):
            for j in range(w):
                win = pad[ch, i:i + 3, j:j + 3]
                gx[ch, i, j] = (win * wx).sum()
                gy[ch, i, j] = (win * wy).sum()
    mag = np.sqrt(gx**2 + gy**2)
    if window:
        e = np.exp(-((np.arange(window) - (window - 1) / 2) ** 2) / (2 * (window / 2) ** 2))
        g = np.outer(e, e) / np.outer(e, e).sum()
        mag = mag * np.tile(g, (h // window, w // window))
    bins = np.floor(np.arctan2(gx, gy) / math.pi * nbins).astype(int) % nbins
    hist = np.zeros((c, nbins, h // cell, w // cell))
    for ch in range(c):
        for i in range(h):
            for j in range(w):
                hist[ch, bins[ch, i, j], i // cell, j // cell] += mag[ch, i, j]
    hist /= np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-12)
    k = patch // cell
    out = []
    for pi in range(h // patch):
        for pj in range(w // patch):
            v = [hist[ch, b, pi * k + dy, pj * k + dx] for ch in range(c) for b in range(nbins)
                 for dy in range(k) for dx in range(k)]
            out.append(v)
    return np.array(out)


@pytest.mark.parametrize("size,window,bins,cell,patch", [((48, 64), 16, 9, 8, 16), ((32, 48), 0, 6, 4, 8)])
def test_matches_loop_reference_on_non_square_images(size, window, bins, cell, patch):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size)
    gen = HOGGenerator(nbins=bins, cell_size=cell, patch_size=patch, gaussian_window=window)
    out = gen(x)
    hp, wp = size[0] // patch, size[1] // patch
    assert out.shape == (2, hp * wp, 3 * bins * (patch // cell) ** 2) and gen.out_dim == out.shape[-1]
    # Reflect padding makes the gradient across the image border exactly 0 in exact arithmetic,
    # i.e. a phase on a bin boundary that float noise tips either way: compare interior patches.
    interior = [i * wp + j for i in range(1, hp - 1) for j in range(1, wp - 1)]
    for b in range(2):
        ref = reference_hog(x[b].double().numpy(), bins, cell, patch, window)
        assert np.abs(out[b, interior].numpy() - ref[interior]).max() < 1e-5


def edge_image(polarity: float) -> torch.Tensor:
    x = torch.zeros(1, 3, 16, 16)
    x[..., 8:] = polarity   # a vertical edge: intensity changes along x only
    return x


@pytest.mark.parametrize("polarity", [1.0, -1.0])
def test_vertical_edge_lands_in_bin_4_whatever_its_polarity(polarity):
    hist = HOGGenerator(gaussian_window=0).cell_histograms(edge_image(polarity))  # (1, 3, 9, 2, 2)
    assert hist.shape == (1, 3, 9, 2, 2)
    # Both cells touching the edge put all their mass in bin 4 (80-100 degrees).
    for cx in (0, 1):
        assert torch.allclose(hist[0, :, 4, :, cx], torch.ones(3, 2))
        assert hist[0, :, [0, 1, 2, 3, 5, 6, 7, 8], :, cx].abs().max() == 0


def test_horizontal_edge_lands_in_bin_0():
    x = torch.zeros(1, 3, 16, 16)
    x[..., 8:, :] = 1.0
    hist = HOGGenerator(gaussian_window=0).cell_histograms(x)
    assert torch.allclose(hist[0, :, 0], torch.ones(3, 2, 2))


def test_every_cell_channel_histogram_has_unit_norm_and_targets_norm_sqrt12():
    torch.manual_seed(1)
    gen = HOGGenerator()
    x = torch.randn(3, 3, 64, 32)
    hist = gen.cell_histograms(x)
    assert torch.allclose(hist.norm(dim=2), torch.ones(3, 3, 8, 4), atol=1e-6)
    target = gen(x)  # 3 channels x 4 cells, each of unit norm -> sqrt(12)
    assert torch.allclose(target.norm(dim=-1), torch.full((3, 8), math.sqrt(12)), atol=1e-5)
    assert abs(target.pow(2).mean().item() - 12 / 108) < 1e-6   # the predict-zero loss


def test_layout_channel_bin_cell():
    """index = (c * 9 + bin) * 4 + dy * 2 + dx (mmpretrain's order)."""
    x = torch.zeros(1, 3, 16, 16)
    x[:, 1, :, 4:] = 1.0            # green channel only, a vertical edge inside the left cells
    out = HOGGenerator(gaussian_window=0)(x)[0, 0]
    green_bin4 = (1 * 9 + 4) * 4
    assert out[green_bin4 + 0 * 2 + 0] == pytest.approx(1.0)   # dy=0, dx=0
    assert out[green_bin4 + 1 * 2 + 0] == pytest.approx(1.0)   # dy=1, dx=0
    assert out[green_bin4 + 1] == 0 and out[green_bin4 + 3] == 0  # right cells: flat
    assert out.sum() == pytest.approx(2.0)


def test_rejects_sizes_not_divisible():
    with pytest.raises(ValueError, match="divisible"):
        HOGGenerator()(torch.zeros(1, 3, 24, 32))
