"""Choosing the frames of a clip and reading them with a decoder (``decoders``).

A clip is ``num_frames`` frames ``rate`` apart (16 x 4 in the K400 recipe). Training clips
start at a uniformly random frame; test views start at ``n`` evenly spaced frames from the
first to the last possible start. A video shorter than the clip span gives a clip whose
indices are clamped to its last frame (SlowFast's behaviour); a video with fewer than
``num_frames`` decodable frames is too short and raises ``VideoError``.
"""
from __future__ import annotations

import functools
from fractions import Fraction
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from .video_decoders import (
    DEFAULT_DECODER,
    DecoderFailed,
    PyAVVideo,
    VideoError,
    fall_back,
    open_video,
)

__all__ = ["VideoError", "VideoSource", "decode", "count_frames", "frame_rate", "clip_indices", "max_start",
           "train_indices", "view_indices", "read_clip"]


# A video file's path, or its bytes (a sample read from a shard).
VideoSource = Union[str, Path, bytes]


def decode(path: VideoSource, indices: Sequence[int] | None = None, short_side: int = 0,
           decoder: str = DEFAULT_DECODER, device: str = "cpu") -> torch.Tensor:
    """Frames ``indices`` (all when None) of a video -> uint8 (len, 3, H, W).

    An index past the last decodable frame raises VideoError.
    """
    return _with_fallback(path, decoder, device, lambda video: video.frames(indices, short_side))


def count_frames(path: VideoSource, decoder: str = DEFAULT_DECODER) -> int:
    """Frames in the container header (or duration x rate); 0 when neither is known."""
    return _with_fallback(path, decoder, "cpu", lambda video: video.header_frames)


def _with_fallback(path, decoder: str, device: str, work):
    """``work(video)`` on the video opened by ``decoder``; again with PyAV when torchcodec fails."""
    video = open_video(path, decoder, device)
    try:
        return work(video)
    except DecoderFailed as e:
        video = fall_back(path, e)
        return work(video)
    finally:
        video.close()


def frame_rate(path: VideoSource) -> Fraction:
    """The video stream's average frame rate (25 when the container does not say)."""
    video = PyAVVideo(path)
    try:
        return video.frame_rate
    finally:
        video.close()


def clip_indices(num_available: int, num_frames: int, rate: int, start: float) -> np.ndarray:
    """``num_frames`` indices ``rate`` apart from ``start``, clamped to the video."""
    if num_available < num_frames:
        raise VideoError(f"too short: {num_available} frames, a clip needs {num_frames}")
    idx = int(start) + rate * np.arange(num_frames)
    return np.clip(idx, 0, num_available - 1)


def max_start(num_available: int, num_frames: int, rate: int) -> int:
    """Last start frame whose clip fits in the video (0 when the video is shorter than the span)."""
    return max(num_available - ((num_frames - 1) * rate + 1), 0)


def train_indices(num_available: int, num_frames: int, rate: int, rng: np.random.Generator) -> np.ndarray:
    """A clip at a uniformly random start."""
    start = rng.integers(0, max_start(num_available, num_frames, rate), endpoint=True)
    return clip_indices(num_available, num_frames, rate, start)


def view_indices(num_available: int, num_frames: int, rate: int, view: int, num_views: int) -> np.ndarray:
    """Test view ``view`` of ``num_views`` evenly spaced clips covering the video (centred when 1)."""
    last = max_start(num_available, num_frames, rate)
    start = last / 2 if num_views == 1 else last * view / (num_views - 1)
    return clip_indices(num_available, num_frames, rate, round(start))


def read_clip(path: VideoSource, choose, short_side: int = 0, decoder: str = DEFAULT_DECODER,
              device: str = "cpu") -> torch.Tensor:
    """Decode the frames ``choose(num_available)`` picks -> uint8 (T, 3, H, W).

    ``num_available`` is the header's frame count; when it overstates the decodable frames, the
    clip is chosen again from the true count (a second decoding pass). ``choose`` is called at
    most once per count, so a file that torchcodec fails on and PyAV then reads gets the clip
    PyAV alone would have chosen.
    """
    choose = functools.lru_cache(maxsize=None)(choose)

    def pick(n: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(choose(n)))

    def work(video) -> torch.Tensor:
        n = video.header_frames
        if n > 0:
            try:
                return video.frames(pick(n), short_side)
            except VideoError as e:
                if "video ends" not in str(e):
                    raise
        frames = video.frames(None, short_side)
        return frames[pick(len(frames)).to(frames.device)]
    return _with_fallback(path, decoder, device, work)
