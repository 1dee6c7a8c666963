import math

import numpy as np
import pytest

from maskfeat.data.masking import BlockMaskGenerator


@pytest.mark.parametrize("grid,ratio,min_patches,expected", [((14, 14), 0.4, 15, 78), ((7, 7), 0.4, 4, 20),
                                                            ((8, 12), 0.5, 6, 48)])
def test_exact_count_and_every_row_and_column_reachable(grid, ratio, min_patches, expected):
    gen = BlockMaskGenerator(grid, mask_ratio=ratio, min_num_patches=min_patches)
    assert gen.num_masking_patches == expected
    rng = np.random.default_rng(0)
    masks = np.stack([gen(rng) for _ in range(1000)])
    assert masks.shape == (1000, *grid) and masks.dtype == bool
    assert (masks.reshape(1000, -1).sum(1) == expected).all()
    # inclusive top/left: the last row and the last column are masked in some draws
    assert masks.any(axis=(0, 2)).all() and masks.any(axis=(0, 1)).all()
    assert masks[:, -1, :].mean() > 0.02 and masks[:, :, -1].mean() > 0.02


def test_blocks_respect_size_and_aspect_limits():
    gen = BlockMaskGenerator((14, 14), 0.4, min_num_patches=15, min_aspect=0.3)
    rng = np.random.default_rng(1)
    lo, hi = math.log(0.3), math.log(1 / 0.3)
    n_blocks = 0
    for _ in range(300):
        mask, blocks = gen.generate(rng, record=True)
        union = np.zeros_like(mask)
        for b in blocks:
            n_blocks += 1
            assert 0 < b["h"] < 14 and 0 < b["w"] < 14
            assert 0 <= b["top"] <= 14 - b["h"] and 0 <= b["left"] <= 14 - b["w"]
            assert lo <= math.log(b["aspect"]) <= hi
            # drawn area is U(min_num_patches, remaining): >= min unless fewer cells remain
            assert b["area"] >= min(15, b["remaining"]) - 1e-9
            assert b["h"] == round(math.sqrt(b["area"] * b["aspect"]))
            assert b["w"] == round(math.sqrt(b["area"] / b["aspect"]))
            union[b["top"]:b["top"] + b["h"], b["left"]:b["left"] + b["w"]] = True
        assert (union == mask).all()      # the mask is exactly the union of its blocks
    assert n_blocks > 300


def test_same_seed_same_mask_and_ratio_setting():
    gen = BlockMaskGenerator((14, 14), 0.6, min_num_patches=15)
    a = gen(np.random.default_rng([3, 1, 7]))
    b = gen(np.random.default_rng([3, 1, 7]))
    c = gen(np.random.default_rng([3, 1, 8]))
    assert (a == b).all() and not (a == c).all() and a.sum() == round(196 * 0.6)


def test_bad_ratio_is_rejected():
    with pytest.raises(ValueError, match="mask.ratio"):
        BlockMaskGenerator((14, 14), 1.5)
