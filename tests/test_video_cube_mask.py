"""Cube masks for video MaskFeat (SPEC section 5)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from maskfeat.data.cube_mask import CubeMaskGenerator
from maskfeat.models.token_mask import upsample_mask


def _achievable(h: int, w: int, area: tuple[float, float], aspect: tuple[float, float]) -> bool:
    """Necessary condition for h = round(sqrt(A*a)), w = round(sqrt(A/a)) with A, a in the ranges:
    A*a in [(h-.5)^2, (h+.5)^2], A/a in [(w-.5)^2, (w+.5)^2], so A in [(h-.5)(w-.5), (h+.5)(w+.5)]
    and a in [(h-.5)/(w+.5), (h+.5)/(w-.5)] (since a^2 = (A*a) / (A/a))."""
    a_lo, a_hi = (h - 0.5) * (w - 0.5), (h + 0.5) * (w + 0.5)
    r_lo, r_hi = (h - 0.5) / (w + 0.5), (h + 0.5) / max(w - 0.5, 1e-9)
    return a_hi >= area[0] and a_lo <= area[1] and r_hi >= aspect[0] and r_lo <= aspect[1]


def test_k400_cube_masks_ratio_and_block_limits():
    gen = CubeMaskGenerator()                       # 8x7x7, 40%, area U[9, 49], aspect log-U(0.3, 3.33)
    assert gen.num_masking_patches == 157
    rng = np.random.default_rng(0)
    fractions, n_blocks = [], 0
    for _ in range(1000):
        blocks = []
        mask = gen(rng, blocks)
        assert mask.shape == (8, 7, 7) and mask.dtype == bool
        assert mask.sum() <= 157
        fractions.append(mask.mean())
        union = np.zeros_like(mask)
        for front, top, left, t, h, w in blocks:
            assert 1 <= t <= 8 and 1 <= h < 7 and 1 <= w < 7
            assert front + t <= 8 and top + h <= 7 and left + w <= 7 and min(front, top, left) >= 0
            assert _achievable(h, w, (9, 49), (0.3, 1 / 0.3)), (h, w)
            union[front:front + t, top:top + h, left:left + w] = True
        np.testing.assert_array_equal(union, mask)   # the mask is exactly the union of its cubes
        n_blocks += len(blocks)
    assert abs(np.mean(fractions) - 0.40) <= 0.01
    assert n_blocks > 1000                           # several cubes per mask, not one slab


def test_cube_masks_cover_every_position_and_length():
    gen = CubeMaskGenerator()
    rng = np.random.default_rng(1)
    seen_t, cover = set(), np.zeros((8, 7, 7))
    for _ in range(300):
        blocks = []
        cover += gen(rng, blocks)
        seen_t |= {b[3] for b in blocks}
    assert seen_t == set(range(1, 9))
    assert (cover > 0).all()                         # last row / column / frame included


def test_configurable_grid_and_ratio():
    gen = CubeMaskGenerator((4, 6, 6), mask_ratio=0.5, min_num_patches=4)
    assert gen.num_masking_patches == 72
    rng = np.random.default_rng(2)
    fr = [gen(rng).mean() for _ in range(300)]
    assert abs(np.mean(fr) - 0.5) < 0.02 and max(fr) <= 0.5


def test_same_generator_state_same_mask():
    gen = CubeMaskGenerator()
    a = gen(np.random.default_rng([0, 3, 17]))
    b = gen(np.random.default_rng([0, 3, 17]))
    c = gen(np.random.default_rng([0, 4, 17]))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="ratio"):
        CubeMaskGenerator(mask_ratio=1.2)
    with pytest.raises(ValueError, match="min_num_patches"):
        CubeMaskGenerator(min_num_patches=60)
    with pytest.raises(ValueError, match=">= 2"):
        CubeMaskGenerator((8, 1, 7))


def test_upsample_mask_matches_nearest_interpolation():
    mask = torch.rand(2, 8, 7, 7) < 0.4
    up = upsample_mask(mask, (8, 56, 56))
    ref = F.interpolate(mask[:, None].float(), size=(8, 56, 56), mode="nearest")[:, 0].bool()
    assert torch.equal(up, ref)
    assert torch.equal(upsample_mask(mask, (8, 7, 7)), mask)
    with pytest.raises(ValueError, match="does not divide"):
        upsample_mask(mask, (8, 15, 15))
