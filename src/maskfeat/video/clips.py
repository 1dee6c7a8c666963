"""Decoding videos with PyAV and choosing the frames of a clip.

A clip is ``num_frames`` frames ``rate`` apart (16 x 4 in the K400 recipe). Training clips
start at a uniformly random frame; test views start at ``n`` evenly spaced frames from the
first to the last possible start. A video shorter than the clip span gives a clip whose
indices are clamped to its last frame (SlowFast's behaviour); a video with fewer than
``num_frames`` decodable frames is too short and raises ``VideoError``.
"""
from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch


class VideoError(ValueError):
    """An unreadable or too-short video; datasets skip such files and count them."""


# A video file's path, or its bytes (a sample read from a shard).
VideoSource = Union[str, Path, bytes]


def _open(path: VideoSource):
    import av   # optional dependency (pip install 'maskfeat[video]')

    try:
        container = av.open(io.BytesIO(path) if isinstance(path, bytes) else str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoError(f"cannot open video: {str(e).splitlines()[0][:100]}") from None
    if not container.streams.video:
        container.close()
        raise VideoError("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _frame_to_array(frame, short_side: int) -> np.ndarray:
    """One decoded frame -> (H, W, 3) uint8 RGB, the short side resized to ``short_side`` if > 0."""
    if short_side > 0:
        w, h = frame.width, frame.height
        s = short_side / min(w, h)
        return frame.to_ndarray(format="rgb24", width=max(1, round(w * s)), height=max(1, round(h * s)))
    return frame.to_ndarray(format="rgb24")


def decode(path: VideoSource, indices: Sequence[int] | None = None, short_side: int = 0) -> torch.Tensor:
    """Frames ``indices`` (all when None) of a video -> uint8 (len, 3, H, W).

    Decodes from the start up to the last wanted frame; an index past the end raises VideoError.
    """
    import av

    wanted = None if indices is None else sorted(set(int(i) for i in indices))
    last = None if wanted is None else wanted[-1]
    keep: dict[int, np.ndarray] = {}
    decoded = 0
    container, stream = _open(path)
    try:
        for n, frame in enumerate(container.decode(stream)):
            decoded = n + 1
            if wanted is None or n in wanted:
                keep[n] = _frame_to_array(frame, short_side)
            if last is not None and n >= last:
                break
    except (av.FFmpegError, OSError, ValueError) as e:
        if not decoded:
            raise VideoError(f"cannot decode video: {str(e).splitlines()[0][:100]}") from None
    finally:
        container.close()
    if not decoded:
        raise VideoError("no decodable frames")
    order = list(range(decoded)) if indices is None else [int(i) for i in indices]
    missing = [i for i in order if i not in keep]
    if missing:
        raise VideoError(f"video ends at frame {decoded - 1}, frame {missing[0]} was wanted")
    frames = np.stack([keep[i] for i in order])                        # (len, H, W, 3)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()   # (len, 3, H, W)


def count_frames(path: VideoSource) -> int:
    """Frames in the container header (or duration x rate); 0 when neither is known."""
    container, stream = _open(path)
    try:
        if stream.frames:
            return int(stream.frames)
        if stream.duration and stream.time_base and stream.average_rate:
            return int(float(stream.duration * stream.time_base) * float(stream.average_rate))
        if container.duration and stream.average_rate:
            return int(container.duration / 1_000_000 * float(stream.average_rate))
        return 0
    finally:
        container.close()


def frame_rate(path: VideoSource) -> Fraction:
    """The video stream's average frame rate (25 when the container does not say)."""
    container, stream = _open(path)
    try:
        return Fraction(stream.average_rate) if stream.average_rate else Fraction(25)
    finally:
        container.close()


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


def read_clip(path: VideoSource, choose, short_side: int = 0) -> torch.Tensor:
    """Decode the frames ``choose(num_available)`` picks -> uint8 (T, 3, H, W).

    The header frame count can overstate the decodable frames; then the clip is chosen
    again from the true count (a second decoding pass).
    """
    n = count_frames(path)
    if n <= 0:
        frames = decode(path, short_side=short_side)
        return frames[torch.from_numpy(choose(len(frames)))]
    try:
        return decode(path, choose(n), short_side=short_side)
    except VideoError as e:
        if "video ends" not in str(e):
            raise
    frames = decode(path, short_side=short_side)
    return frames[torch.from_numpy(choose(len(frames)))]
