"""Video multi-view evaluation: every view of every test video once across ranks, clip-level top-1
and video-level top-1 of the views' mean softmax, every ``train.eval_interval`` epochs and at the end."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..engine.device import amp_dtype
from ..engine.distributed import DistEnv


def test_loader(dataset, batch_size: int, workers: int, rank: int, world: int) -> DataLoader:
    """Every view exactly once across ranks: rank r takes items r, r + world, ..."""
    return DataLoader(dataset, batch_size=batch_size, sampler=list(range(rank, len(dataset), world)),
                      num_workers=workers, persistent_workers=False)


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
    return {"clip_top1": 100.0 * clip_correct / max(clips, 1),
            "video_top1": 100.0 * video_correct / max(int(seen.sum()), 1),
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
        hits = (logits.argmax(-1) == y).sum().float()
        correct += torch.stack([hits, torch.tensor(float(len(y)), device=device)])
    if dist.is_available() and dist.is_initialized():
        for t in (sums, counts, correct):
            dist.all_reduce(t)
        dist.all_reduce(labels, op=dist.ReduceOp.MAX)
    model.train(was_training)
    return _metrics(correct[0].item(), correct[1].item(), sums.cpu(), counts.cpu(), labels.cpu())


class ViewEval:
    """on_epoch_end: multi-view test every ``train.eval_interval`` epochs and at the end; keeps the last
    metrics."""

    def __init__(self, cfg: dict, env: DistEnv, test_set, normalise, num_classes: int):
        self.cfg, self.env, self.test_set = cfg, env, test_set
        self.normalise, self.num_classes = normalise, num_classes
        t = cfg["train"]
        self.loader = test_loader(test_set, t["batch_size"], cfg["data"]["num_workers"], env.rank, env.world)
        self.results: dict = {}

    def __call__(self, trainer, epoch: int) -> dict | None:
        if epoch % self.cfg["train"]["eval_interval"] and epoch != trainer.epochs:
            return None
        amp = amp_dtype(self.cfg["train"]["amp"], self.env.device)
        m = evaluate_views(trainer.model, self.loader, self.normalise, len(self.test_set.reader),
                           self.num_classes, self.env.device, amp)
        trainer.logger.info(f"epoch {epoch}: clip top-1 {m['clip_top1']:.2f}  "
                            f"video top-1 {m['video_top1']:.2f} "
                            f"({m['clips']} clips, {m['videos']} videos, {self.test_set.views} views each)")
        self.results.update(m, epoch=epoch)
        return {"clip_top1": m["clip_top1"], "video_top1": m["video_top1"]}
