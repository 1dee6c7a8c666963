"""Build the pre-training dataset and its DataLoader from the ``data`` section of a config."""
from __future__ import annotations

import gc

from torch.utils.data import DataLoader

from ..engine.device import is_cpu, pin_memory
from ..errors import UserError
from .file_index import FileIndex
from .idx import ArrayPretrainDataset
from .images import max_image_pixels
from .masking import BlockMaskGenerator
from .pretrain_dataset import (
    DECODE_MODES,
    PretrainCrop,
    PretrainDataset,
    PretrainSample,
    pretrain_transform,
)
from .sampler import EpochSampler
from .shard_source import shard_set
from .shard_stream import ShardLoader, ShardStream
from .sources import Want, listing, reader


def pretrain_files(data: dict) -> FileIndex:
    """The image files of data.source skimage, folder (root/train_split scanned) or list (ann_file
    relative to root, its paths relative to root/train_split): the reader table's rows (``sources``)."""
    return listing(data, "image").files


def _cpu_decode_only(data: dict) -> None:
    if data.get("decode", "cpu") != "cpu":
        raise UserError(f"data.decode=device: only for image files (data.source folder, list or skimage), "
                        f"not data.source={data['source']}; set data.decode=cpu")


def _listed_dataset(cfg: dict, row, transform: PretrainCrop, mask_gen) -> PretrainDataset:
    """Files (map-style, decoded here or on the device) or an in-memory array (IDX files)."""
    data, seed = cfg["data"], cfg["train"]["seed"]
    listed = row.read(data, Want())
    if listed.array is not None:
        _cpu_decode_only(data)
        return ArrayPretrainDataset(listed.array, transform, mask_gen, seed=seed, name=data["source"])
    return PretrainDataset(listed.files, transform, mask_gen, seed=seed,
                           length=data["samples_per_epoch"] if row.bundled else None, cache=row.bundled,
                           decode=data.get("decode", "cpu"), max_pixels=max_image_pixels(data))


def _shard_dataset(cfg: dict, transform: PretrainCrop, mask_gen) -> ShardStream:
    """WebDataset shards written by ``maskfeat prepare``, streamed (see ``shard_stream``)."""
    data = cfg["data"]
    _cpu_decode_only(data)
    shards = shard_set(data, kind="image")
    sample = PretrainSample(transform, mask_gen, cfg["train"]["seed"], max_image_pixels(data))
    return ShardStream(shards, sample.from_bytes, cfg["train"]["seed"], data["shuffle_buffer"])


def build_pretrain_dataset(cfg: dict):
    """A map-style ``PretrainDataset`` (files, IDX arrays) or, for data.source=shards, a ``ShardStream``;
    data.source is a row of the reader table (``sources.READERS``)."""
    data, model, mask = cfg["data"], cfg["model"], cfg["mask"]
    decode = data.get("decode", "cpu")
    if decode not in DECODE_MODES:
        raise UserError(f"data.decode: unknown value {decode!r}; choose cpu or device")
    row = reader(data, "image")
    grid = model["img_size"] // model["patch_size"]
    mask_gen = BlockMaskGenerator((grid, grid), mask_ratio=mask["ratio"],
                                  min_num_patches=mask["min_num_patches"],
                                  min_aspect=mask["min_aspect"], max_aspect=mask["max_aspect"])
    transform = pretrain_transform(model["img_size"], data["scale"], data["ratio"], data["hflip"])
    if row.read is None:
        return _shard_dataset(cfg, transform, mask_gen)
    return _listed_dataset(cfg, row, transform, mask_gen)


class EpochLoader(DataLoader):
    """A DataLoader over an ``EpochSampler`` with the loader interface the Trainer uses:
    ``samples_per_rank`` (this process's samples in one epoch) and ``set_epoch(epoch, skip)``
    (``skip``: samples of this process's epoch already consumed, to resume mid-epoch)."""

    @property
    def samples_per_rank(self) -> int:
        return len(self.sampler.inner)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.sampler.set_epoch(epoch, skip=skip)


def on_device(dataset) -> bool:
    """True when the items are already on the training device (video data.decode=device): not pinned."""
    return not is_cpu(getattr(dataset, "device", "cpu"))


def freeze_inherited_objects(worker_id: int) -> None:
    """A loader worker's first act: the objects it inherits from the main process go to the garbage
    collector's permanent generation, so that its collections never write their headers (which
    would copy the pages they lie on: copy-on-write memory grows in every worker)."""
    gc.freeze()


def build_loader(dataset, batch_size: int, data: dict, rank: int, world: int, seed: int,
                 shuffle: bool = True, drop_last: bool = True, collate_fn=None):
    """An ``EpochLoader``, or for a streaming data set (``data.source=shards``) a ``ShardLoader``;
    ``data.shuffle: false`` keeps the data set's order."""
    shuffle = shuffle and data.get("shuffle", True)
    if isinstance(dataset, ShardStream):
        return ShardLoader(dataset, batch_size, data, rank, world, shuffle=shuffle, drop_last=drop_last,
                           collate_fn=collate_fn)
    if len(dataset) < batch_size * world and drop_last:
        raise UserError(f"data: {len(dataset)} samples are fewer than one global batch "
                        f"({batch_size} x {world} processes)")
    sampler = EpochSampler(len(dataset), world, rank, shuffle=shuffle, seed=seed, drop_last=drop_last)
    workers = data["num_workers"]
    return EpochLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                       pin_memory=pin_memory(data["pin_memory"]) and not on_device(dataset),
                       persistent_workers=data["persistent_workers"] and workers > 0,
                       drop_last=drop_last, prefetch_factor=4 if workers > 0 else None, collate_fn=collate_fn,
                       worker_init_fn=freeze_inherited_objects if workers > 0 else None)


def build_pretrain_loader(dataset, cfg: dict, rank: int, world: int, device):
    """The DataLoader of ``build_pretrain_dataset``'s dataset; with data.decode=device, wrapped so
    that it decodes each batch on ``device`` (``device_decode``) and yields ordinary batches."""
    batch_size, seed = cfg["train"]["batch_size"], cfg["train"]["seed"]
    if getattr(dataset, "decode", "cpu") != "device":
        return build_loader(dataset, batch_size, cfg["data"], rank, world, seed)
    try:
        from .device_decode import DeviceDecodedLoader, DeviceDecoder, EncodedCollate
    except Exception as e:                                # noqa: BLE001 -- no torchcodec, or no FFmpeg for it
        raise UserError(f"data.decode=device needs torchcodec with FFmpeg's shared libraries "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ''}); "
                        "pip install torchcodec, or set data.decode=cpu") from None
    # checks torchcodec's device decode before any worker starts
    decoder = DeviceDecoder(cfg["model"]["img_size"], device)
    loader = build_loader(dataset, batch_size, cfg["data"], rank, world, seed,
                          collate_fn=EncodedCollate(cfg["model"]["img_size"]))
    return DeviceDecodedLoader(loader, decoder)
