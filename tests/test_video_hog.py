"""Video HOG = image HOG of the first frame of each temporal token (SPEC section 5)."""
import math

import pytest
import torch

from maskfeat.models.hog import HOGGenerator
from maskfeat.models.video_hog import VideoHOG


@pytest.fixture(scope="module")
def clip():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 16, 32, 48, generator=g)        # (B, 3, T, H, W)


def test_video_hog_is_image_hog_of_even_frames_stacked(clip):
    out = VideoHOG()(clip)                                    # stride 2, no Gaussian window
    image_hog = HOGGenerator(gaussian_window=0)
    ref = torch.cat([image_hog(clip[:, :, t]) for t in range(0, 16, 2)], dim=1)  # (B, 8 * 2 * 3, 108)
    assert out.shape == (2, 8 * 2 * 3, 108)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    odd = torch.cat([image_hog(clip[:, :, t]) for t in range(1, 16, 2)], dim=1)
    assert (out - odd).abs().max() > 0.1                      # the frame choice matters
    # every token's vector: 12 L2-normalised 9-bin cells -> norm sqrt(12)
    torch.testing.assert_close(out.norm(dim=-1), torch.full((2, 48), math.sqrt(12)))


def test_token_order_is_time_major(clip):
    out = VideoHOG()(clip).view(2, 8, 6, 108)                 # (B, T', H'*W', D)
    frame6 = HOGGenerator(gaussian_window=0)(clip[:, :, 6])
    torch.testing.assert_close(out[:, 3], frame6, rtol=0, atol=0)


def test_default_has_no_gaussian_window_and_window_is_a_setting(clip):
    plain, windowed = VideoHOG(), VideoHOG(gaussian_window=16)
    assert plain.hog.gkern is None and windowed.hog.gkern is not None
    ref = torch.cat([HOGGenerator(gaussian_window=16)(clip[:, :, t]) for t in range(0, 16, 2)], dim=1)
    torch.testing.assert_close(windowed(clip), ref, rtol=0, atol=0)
    assert (plain(clip) - windowed(clip)).abs().max() > 1e-3


def test_other_temporal_stride_and_bad_frame_count(clip):
    out = VideoHOG(temporal_stride=4)(clip)
    ref = torch.cat([HOGGenerator(gaussian_window=0)(clip[:, :, t]) for t in (0, 4, 8, 12)], dim=1)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="temporal stride"):
        VideoHOG(temporal_stride=3)(clip)
