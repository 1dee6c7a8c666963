"""Video decoders behind one interface: torchcodec (the default) and PyAV (the fallback).

``open_video(path, name, device)`` returns an open video with ``header_frames`` (the count the
container header gives, 0 when unknown; the same rule for both decoders, so both choose the same
clip) and ``frames(indices | None, short_side)`` -> uint8 (len, 3, H, W). An index past the last
decodable frame raises ``VideoError('video ends at frame ...')``; ``clips.read_clip`` then chooses
again from the true count.

* ``pyav``: decodes from the start up to the last wanted frame and converts the wanted ones with
  swscale (resized there when ``short_side`` > 0). CPU only.
* ``torchcodec``: seeks (exact mode: by the frame index its scan of the file builds) to the key
  frame before the first wanted frame, and again whenever a later wanted frame lies past another
  key frame, decoding forward from there; on the CPU or, with ``device='cuda:k'``, on NVDEC.
  FFmpeg threads: ``ffmpeg_threads``. Frames are bitwise equal to PyAV's at full size; ``short_side``
  resizes after decoding (bilinear, antialiased, as torchvision does), which differs from PyAV's
  YUV-space swscale resize by about one grey level on average.

torchcodec missing (not installed, or FFmpeg's shared libraries not loadable) -> PyAV for every
file, with one warning per process; torchcodec unable to open or decode a file -> PyAV for that
file, with one warning naming it. A file neither reads raises VideoError (datasets skip and count it).
"""
from __future__ import annotations

import functools
import io
import os
import re
import warnings
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..engine.device import device_type, is_cpu, is_cuda

DEFAULT_DECODER = "torchcodec"
DECODE_PLACES = ("cpu", "device")


class VideoError(ValueError):
    """An unreadable or too-short video; datasets skip such files and count them."""


class DecoderFailed(RuntimeError):
    """torchcodec cannot open or decode this file (the caller falls back to PyAV)."""


def _short(e: BaseException, n: int = 100) -> str:
    """First line of an FFmpeg / torchcodec error without its C++ source location."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return re.sub(r"^.*?\.(?:cpp|h):\d+, ", "", text)[:n]


def label(src) -> str:
    """How a video source is named in messages: its path, or '<video bytes>' (a shard's sample)."""
    return "<video bytes>" if isinstance(src, (bytes, bytearray)) else str(src)


def _why(e: BaseException, path) -> str:
    """``_short(e)`` without the file's path (torchcodec repeats it; warnings name the file once)."""
    return re.sub(r"\s+", " ", _short(e, 300).replace(label(path), "")).replace(": :", ":").strip(" :")[:100]


def frames_from_header(nb_frames, stream_seconds, fps, container_seconds) -> int:
    """Frames in a video by its header: the frame count, else duration x average rate (the
    stream's duration, else the container's); 0 when none is known. The 1e-6 absorbs the last-bit
    differences between decoders' float arithmetic, so both get the same count."""
    if nb_frames:
        return int(nb_frames)
    seconds = stream_seconds or container_seconds
    if seconds and fps:
        return int(float(seconds) * float(fps) + 1e-6)
    return 0


def _index_list(indices, n: int) -> list[int]:
    """The wanted indices as ints, VideoError when one is past the last of ``n`` frames."""
    order = list(range(n)) if indices is None else [int(i) for i in indices]
    missing = [i for i in order if i >= n]
    if missing:
        raise VideoError(f"video ends at frame {n - 1}, frame {missing[0]} was wanted")
    return order


def _short_side_size(h: int, w: int, short_side: int) -> tuple[int, int]:
    s = short_side / min(w, h)
    return max(1, round(h * s)), max(1, round(w * s))


class PyAVVideo:
    """A video decoded by PyAV frame by frame from the start (CPU only)."""

    name = "pyav"

    def __init__(self, path: str | Path, device: str = "cpu"):
        self.path = path
        self._container, self._stream = self._open()

    def _open(self):
        import av  # optional dependency (pip install 'maskfeat[video]')

        try:
            src = self.path
            container = av.open(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else str(src))
        except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise VideoError(f"cannot open video: {_short(e)}") from None
        if not container.streams.video:
            container.close()
            raise VideoError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        return container, stream

    @property
    def frame_rate(self) -> Fraction:
        """The stream's average frame rate (25 when the container does not say)."""
        return Fraction(self._stream.average_rate) if self._stream.average_rate else Fraction(25)

    @property
    def header_frames(self) -> int:
        s, c = self._stream, self._container
        seconds = float(s.duration * s.time_base) if s.duration and s.time_base else None
        return frames_from_header(s.frames, seconds, s.average_rate, c.duration and c.duration / 1_000_000)

    @staticmethod
    def _to_array(frame, short_side: int) -> np.ndarray:
        if short_side > 0:
            h, w = _short_side_size(frame.height, frame.width, short_side)
            return frame.to_ndarray(format="rgb24", width=w, height=h)
        return frame.to_ndarray(format="rgb24")

    def frames(self, indices: Sequence[int] | None = None, short_side: int = 0) -> torch.Tensor:
        """Frames ``indices`` (all when None) -> uint8 (len, 3, H, W), decoding from the start."""
        import av

        if self._container is None:             # a second pass (read_clip's retry) opens anew
            self._container, self._stream = self._open()
        wanted = None if indices is None else set(int(i) for i in indices)
        last = None if wanted is None else max(wanted)
        keep: dict[int, np.ndarray] = {}
        decoded = 0
        try:
            for n, frame in enumerate(self._container.decode(self._stream)):
                decoded = n + 1
                if wanted is None or n in wanted:
                    keep[n] = self._to_array(frame, short_side)
                if last is not None and n >= last:
                    break
        except (av.FFmpegError, OSError, ValueError) as e:
            if not decoded:
                raise VideoError(f"cannot decode video: {_short(e)}") from None
        finally:
            self.close()
        if not decoded:
            raise VideoError("no decodable frames")
        frames = np.stack([keep[i] for i in _index_list(indices, decoded)])   # (len, H, W, 3)
        return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


@functools.lru_cache(maxsize=None)
def torchcodec_available() -> str:
    """'' when torchcodec and FFmpeg's shared libraries load, else why not (one line)."""
    try:
        import torchcodec.decoders  # noqa: F401   (loads libavcodec & co.)
    except (ImportError, OSError, RuntimeError) as e:
        return _short(e, 160)
    return ""


def ffmpeg_threads() -> int:
    """FFmpeg threads per torchcodec decoder: the loader workers of all the processes on this machine
    (torchrun's LOCAL_WORLD_SIZE) share its CPU cores, one thread each when there are as many
    workers as cores (the least CPU per clip); the main process (no workers) lets FFmpeg choose
    (0: one per core)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    if info is None:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // (info.num_workers * int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


class TorchCodecVideo:
    """A video decoded by torchcodec (exact seek mode: frame k is the k-th frame in presentation
    order, as PyAV counts them). Decoding errors raise DecoderFailed, so the file goes to PyAV."""

    name = "torchcodec"

    def __init__(self, path: str | Path, device: str = "cpu"):
        if torchcodec_available():
            raise DecoderFailed(f"torchcodec unavailable: {torchcodec_available()}")
        from torchcodec.decoders import VideoDecoder

        self.path, self.device = path, device
        try:
            source = path if isinstance(path, (bytes, bytearray)) else str(path)
            self._decoder = VideoDecoder(source, seek_mode="exact", num_ffmpeg_threads=ffmpeg_threads(),
                                         device=device)
        except (RuntimeError, ValueError, OSError) as e:
            raise DecoderFailed(_why(e, path)) from None

    @property
    def header_frames(self) -> int:
        m = self._decoder.metadata
        container = None
        if not m.num_frames_from_header and not m.duration_seconds_from_header \
                and not isinstance(self.path, (bytes, bytearray)):               # e.g. mkv, webm files
            from torchcodec.decoders import get_container_metadata
            try:
                container = get_container_metadata(str(self.path)).duration_seconds_from_header
            except (RuntimeError, ValueError, OSError) as e:
                raise DecoderFailed(_why(e, self.path)) from None
        return frames_from_header(m.num_frames_from_header, m.duration_seconds_from_header,
                                  m.average_fps_from_header, container)

    def frames(self, indices: Sequence[int] | None = None, short_side: int = 0) -> torch.Tensor:
        """Frames ``indices`` (all when None) -> uint8 (len, 3, H, W) on ``device``."""
        n = self._decoder.metadata.num_frames
        if not n:                       # nothing found by the scan: let PyAV try the file
            raise DecoderFailed("no frames found")
        order = _index_list(indices, n)
        chunk = 32 if indices is None else max(len(order), 1)      # whole videos: resize 32 at a time
        out = []
        try:
            for k in range(0, len(order), chunk):
                out.append(self._resize(self._decoder.get_frames_at(order[k:k + chunk]).data, short_side))
        except (RuntimeError, ValueError, IndexError) as e:
            raise DecoderFailed(_why(e, self.path)) from None
        return torch.cat(out) if len(out) > 1 else out[0]

    @staticmethod
    def _resize(frames: torch.Tensor, short_side: int) -> torch.Tensor:
        if short_side <= 0:
            return frames
        from torchvision.transforms.v2 import functional as TF

        return TF.resize(frames, list(_short_side_size(*frames.shape[-2:], short_side)), antialias=True)

    def close(self) -> None:
        self._decoder = None


DECODERS = {"torchcodec": TorchCodecVideo, "pyav": PyAVVideo}

_warned: set = set()


def decoding_device(data: dict, train_device: str = "auto") -> str:
    """Where videos are decoded, from ``data.video_decoder`` / ``data.decode`` and train.device:
    'cpu', or 'cuda:k' (the current CUDA device: the main process's, data.num_workers=0).
    A bad combination is a one-line ConfigError."""
    from ..config import ConfigError

    name, place = data["video_decoder"], data["decode"]
    if name not in DECODERS:
        raise ConfigError(f"data.video_decoder: unknown decoder {name!r}; choose {' or '.join(DECODERS)}")
    if place not in DECODE_PLACES:
        raise ConfigError(f"data.decode: unknown value {place!r}; choose {' or '.join(DECODE_PLACES)}")
    if place == "cpu":
        return "cpu"
    if name != "torchcodec":
        raise ConfigError(f"data.decode=device needs data.video_decoder=torchcodec "
                          f"({name} decodes on the CPU only)")
    if data["num_workers"] > 0:
        raise ConfigError("data.decode=device decodes videos in the main process (CUDA cannot run in forked "
                          f"DataLoader workers): set data.num_workers=0 (it is {data['num_workers']})")
    if torchcodec_available():
        raise ConfigError(f"data.decode=device needs torchcodec: {torchcodec_available()}")
    run_type = device_type(train_device)
    if is_cuda(run_type) and torch.cuda.is_available():
        device = f"cuda:{torch.cuda.current_device()}"
        check_device_decoding(device)
        return device
    if not (is_cpu(run_type) or is_cuda(run_type)):     # NVDEC is CUDA-only: the stated fallback
        _warn_once(f"nvdec:{run_type}", f"data.decode=device: NVDEC needs CUDA; decoding videos on the CPU "
                                        f"({run_type} run)")
    return "cpu"


def check_device_decoding(device: str) -> None:
    """A one-line ConfigError unless torchcodec decodes a small H.264 video on ``device`` (encoded
    here by FFmpeg's libx264); a warning when it does so on the CPU (NVDEC unavailable)."""
    from ..config import ConfigError

    try:
        from torchcodec.decoders import VideoDecoder
        from torchcodec.encoders import VideoEncoder

        probe = VideoEncoder(torch.zeros((2, 3, 128, 128), dtype=torch.uint8),
                             frame_rate=25).to_tensor(format="mp4")
        decoder = VideoDecoder(probe, device=device)
        frames = decoder.get_frames_at([0, 1]).data
    except (ImportError, RuntimeError, ValueError) as e:
        raise ConfigError(f"data.decode=device: torchcodec cannot decode on {device}: {_short(e, 160)}; "
                          "set data.decode=cpu") from None
    if tuple(frames.shape) != (2, 3, 128, 128) or str(frames.device) != device:
        raise ConfigError(f"data.decode=device: torchcodec's probe on {device} gave {tuple(frames.shape)} "
                          f"frames on {frames.device}; set data.decode=cpu")
    fallback = getattr(decoder, "cpu_fallback", None)
    if fallback:
        warnings.warn(f"data.decode=device: torchcodec decodes on the CPU, not NVDEC ({fallback})",
                      stacklevel=2)


def _warn_once(key, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, stacklevel=3)


def open_video(path: str | Path, name: str = DEFAULT_DECODER, device: str = "cpu"):
    """The video at ``path`` opened by decoder ``name``; torchcodec -> PyAV when it cannot."""
    try:
        return DECODERS[name](path, device)
    except DecoderFailed as e:
        return fall_back(path, e)


def fall_back(path: str | Path, error: DecoderFailed) -> PyAVVideo:
    """PyAV for a file torchcodec cannot read (one warning per process, or per file)."""
    reason = torchcodec_available()
    if reason:
        _warn_once("unavailable", f"torchcodec unavailable ({reason}); decoding videos with PyAV")
    else:
        _warn_once(label(path), f"torchcodec cannot read {label(path)} ({error}); decoding it with PyAV")
    return PyAVVideo(path)
