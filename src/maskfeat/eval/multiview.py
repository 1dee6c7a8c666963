"""Video classification from a MaskFeat encoder: building, loading pre-training weights,
mixup on clips, and multi-view evaluation (clip-level and video-level top-1)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from timm.data import Mixup
from torch import nn

from ..namemaps.maskfeat import dropped_note, pretraining_only
from ..engine.checkpoint import load_checkpoint
from ..errors import UserError
from ..video.model import build_video_encoder
from ..video.mvit import interpolate_rel_pos

PRETRAIN_ONLY = ("mask_token",)   # encoder keys with no place in a classifier
CLASSIFIER_NEW = ("head.", "fc_norm.")   # classifier keys a pre-training checkpoint cannot hold


def build_video_classifier(cfg: dict, num_classes: int) -> nn.Module:
    """MViTv2 with its pooling restored (or the video ViT) and a ``num_classes`` head."""
    return build_video_encoder(cfg["model"], pretrain=False, num_classes=num_classes)


@dataclass
class LoadReport:
    missing: list[str] = field(default_factory=list)       # classifier keys left at their init
    unexpected: list[str] = field(default_factory=list)    # encoder keys the classifier has no use for
    interpolated: list[str] = field(default_factory=list)  # rel-pos tables resampled to new lengths
    ignored: list[str] = field(default_factory=list)       # pre-training only (mask token, HOG head, decoder)
    dropped: str = ""                                      # the note on them: 'dropped: head (2 tensors), ...'


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Load the ``encoder.*`` weights of a pre-training checkpoint into a classifier."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained: checkpoint not found: {path}")
    ckpt = load_checkpoint(path, map_location="cpu")
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise UserError(f"pretrained: {path} holds no state dict")
    encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    if not encoder:
        raise UserError(f"pretrained: {path} has no 'encoder.*' weights (is it a MaskFeat pre-training checkpoint?)")
    report = LoadReport(ignored=sorted(["encoder." + k for k in encoder if k in PRETRAIN_ONLY]
                                       + [k for k in state if not k.startswith("encoder.")]),
                        dropped=dropped_note(pretraining_only(state)))
    encoder = {k: v for k, v in encoder.items() if k not in PRETRAIN_ONLY}
    resized = interpolate_rel_pos(encoder, model)
    report.interpolated = sorted(k for k in encoder if resized[k].shape != encoder[k].shape)
    target = model.state_dict()
    for k, v in resized.items():
        if k in target and v.shape != target[k].shape:
            raise UserError(f"pretrained: {path} key {k} has shape {tuple(v.shape)}, the model expects "
                            f"{tuple(target[k].shape)} (another model.arch / img_size?)")
    result = model.load_state_dict(resized, strict=False)
    report.missing, report.unexpected = sorted(result.missing_keys), sorted(result.unexpected_keys)
    lacking = [k for k in report.missing if not k.startswith(CLASSIFIER_NEW)]
    if lacking:
        raise UserError(f"pretrained: {path} lacks {len(lacking)} encoder weights of this model, e.g. "
                        f"{lacking[0]} (another model.arch?)")
    return report


class VideoMixup:
    """timm's Mixup / CutMix on (B, C, T, H, W) clips: one box or blend for all frames of a clip."""

    def __init__(self, num_classes: int, mixup: float = 0.8, cutmix: float = 1.0, label_smoothing: float = 0.1):
        self.inner = Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing,
                           num_classes=num_classes, mode="batch")

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, t, h, w = clips.shape
        x = clips.reshape(b, c * t, h, w)        # timm boxes the last two dims
        x, soft = self.inner(x, labels)          # in place; soft targets (B, classes)
        return x.view(b, c, t, h, w), soft


@torch.no_grad()
def aggregate_views(logits: torch.Tensor, labels: torch.Tensor, videos: torch.Tensor,
                    num_videos: int | None = None) -> dict:
    """Clip-level top-1 over all views, and video-level top-1 of the views' mean softmax.

    logits (N, classes), labels (N,), videos (N,) video index of each clip.
    """
    num_videos = num_videos or int(videos.max()) + 1
    probs = logits.float().softmax(-1)
    sums = torch.zeros(num_videos, logits.shape[1]).index_add_(0, videos, probs)
    counts = torch.zeros(num_videos).index_add_(0, videos, torch.ones(len(videos)))
    video_label = torch.full((num_videos,), -1, dtype=torch.long).scatter_(0, videos, labels)
    return _metrics((logits.argmax(-1) == labels).sum().item(), len(labels), sums, counts, video_label)


def _metrics(clip_correct: float, clips: float, sums, counts, video_label) -> dict:
    seen = counts > 0
    video_correct = (sums[seen].argmax(-1) == video_label[seen]).sum().item()
    return {"clip_top1": 100.0 * clip_correct / max(clips, 1), "video_top1": 100.0 * video_correct / max(int(seen.sum()), 1),
            "clips": int(clips), "videos": int(seen.sum())}


@torch.no_grad()
def evaluate_views(model: nn.Module, loader, normalise, num_videos: int, num_classes: int,
                   device: torch.device, amp_dtype: torch.dtype | None = None) -> dict:
    """Multi-view test over ``loader`` (this rank's share); sums are all-reduced across ranks."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(num_videos, num_classes, device=device)
    counts = torch.zeros(num_videos, device=device)
    labels = torch.full((num_videos,), -1, dtype=torch.long, device=device)
    correct = torch.zeros(2, device=device)                       # (clip hits, clips)
    for batch in loader:
        x = normalise(batch["images"])
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x).float()
        y, v = batch["label"].to(device), batch["video"].to(device)
        sums.index_add_(0, v, logits.softmax(-1))
        counts.index_add_(0, v, torch.ones_like(v, dtype=counts.dtype))
        labels.scatter_(0, v, y)
        correct += torch.stack([(logits.argmax(-1) == y).sum().float(), torch.tensor(float(len(y)), device=device)])
    if dist.is_available() and dist.is_initialized():
        for t in (sums, counts, correct):
            dist.all_reduce(t)
        dist.all_reduce(labels, op=dist.ReduceOp.MAX)
    model.train(was_training)
    return _metrics(correct[0].item(), correct[1].item(), sums.cpu(), counts.cpu(), labels.cpu())
