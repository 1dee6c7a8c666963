"""Top-k accuracy and the evaluation pass shared by fine-tuning and linear probing."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.distributed import DistEnv
from .gather import gather_by_index
from .unreadable import gather_unreadable, note_unreadable, valid_of


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> torch.Tensor:
    """scores (N, C), labels (N,) -> bool (N, len(ks)): label among the k best (k capped at C)."""
    kmax = min(max(ks), scores.shape[1])
    top = scores.topk(kmax, dim=1).indices                           # (N, kmax)
    hit = top == labels[:, None]                                     # (N, kmax)
    return torch.stack([hit[:, : min(k, kmax)].any(dim=1) for k in ks], dim=1)


@torch.no_grad()
def evaluate(model: nn.Module, loader, env: DistEnv, input_key: str = "images",
             amp_dtype: torch.dtype | None = None) -> dict:
    """Top-1 / top-5 (%) and mean cross-entropy over the loader's readable samples, every rank.

    Batches are dicts with ``input_key`` (any tensor the model takes: images, clips,
    feature vectors), 'label' (B,) and 'index' (B,) (the sample's position in the data set),
    optionally 'valid' (B,) and 'bad_paths': samples with 'valid' False (unreadable files) are
    left out of every number and named in 'unreadable' ({index: 'path (reason)'}).
    Each sample counts exactly once whatever the number of ranks (results are gathered
    by sample index). 'samples': how many the numbers stand on, 'total': the data set's size.
    The model is left in the mode it was in.
    """
    was_training = model.training
    model.eval()
    idx, res, found = [], [], {}
    dev = env.device
    for batch in loader:
        x = batch[input_key].to(dev, non_blocking=True)
        y = batch["label"].to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(x).float()                                # (B, C)
        loss = F.cross_entropy(logits, y, reduction="none")          # (B,)
        valid = valid_of(batch).to(dev)[:, None].float()
        res.append(torch.cat([topk_correct(logits, y).float(), loss[:, None], valid], dim=1))   # (B, 4)
        idx.append(batch["index"].to(dev))
        note_unreadable(batch, found)
    model.train(was_training)
    total = len(loader.dataset)
    per_sample = gather_by_index(torch.cat(idx), torch.cat(res), total, env)      # (N, 4)
    per_sample = per_sample[per_sample[:, 3] > 0, :3]
    top1, top5, loss = per_sample.mean(dim=0).tolist() if len(per_sample) else (0.0, 0.0, float("nan"))
    return {"top1": 100.0 * top1, "top5": 100.0 * top5, "loss": loss, "samples": len(per_sample),
            "total": total, "unreadable": gather_unreadable(found, env)}
