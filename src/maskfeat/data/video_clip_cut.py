"""Videos for ``maskfeat prepare``: checked as they are, or cut to a span of frames.

Cutting keeps the ``frames`` frames centred in the video (all of them when it is shorter), and
re-encodes them with PyAV (H.264 / libx264, CRF 18, yuv420p, the source's frame rate) into an MP4
held in memory. That is lossy (CRF 18 is visually near-lossless; the PSNR to the decoded source is
typically 40+ dB), odd widths / heights lose their last column / row (yuv420p needs even sizes),
and the pre-training clip then starts anywhere inside the kept span only: cut to the clip span
((num_frames - 1) x sampling_rate + 1 frames, 61 for 16 x 4) or longer.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import video_clips as C

CRF = 18


def centred_span(num_available: int, frames: int) -> np.ndarray:
    """Indices of the ``frames`` frames in the middle of a video of ``num_available`` frames."""
    keep = min(frames, num_available)
    start = (num_available - keep) // 2
    return np.arange(start, start + keep)


def encode_h264(frames: np.ndarray, rate: Fraction) -> bytes:
    """uint8 (T, H, W, 3) RGB -> MP4 bytes (libx264, CRF 18, yuv420p); odd sizes lose a row / column."""
    import av

    t, h, w, _ = frames.shape
    frames = frames[:, : h - h % 2, : w - w % 2]
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": str(CRF), "preset": "medium"}
        for img in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


@dataclass
class VideoEncoder:
    """``maskfeat prepare``'s check of one video: ``frames`` = 0 stores the file as it is (after
    decoding its first frame); ``frames`` > 0 stores the centred span re-encoded (see above)."""
    frames: int = 0

    def __call__(self, data: bytes, suffix: str) -> tuple[str, bytes]:
        if self.frames <= 0:
            C.decode(data, [0])                               # raises VideoError when unreadable
            return (suffix.lower().lstrip(".") or "mp4"), data
        clip = C.read_clip(data, lambda n: centred_span(n, self.frames))     # (T, 3, H, W)
        if clip.shape[-1] < 2 or clip.shape[-2] < 2:
            raise C.VideoError(f"frames of {clip.shape[-1]}x{clip.shape[-2]} px are too small to re-encode")
        return "mp4", encode_h264(clip.permute(0, 2, 3, 1).numpy(), C.frame_rate(data))
