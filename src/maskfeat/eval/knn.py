"""Frozen features, extracted once in batches, and DINO's weighted k-NN classifier on them."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..engine.distributed import DistEnv
from .gather import gather_by_index
from .metrics import topk_correct
from .unreadable import gather_unreadable, note_unreadable, valid_of


@dataclass
class FeatureSet:
    """The features (n, D) float32 and labels (n,) of the n readable samples of a data set of ``total``,
    in dataset order; ``unreadable``: {sample index: 'path (reason)'} of those left out.
    Reads as the pair (features, labels) it used to be: unpacking, [0], [1]."""
    features: torch.Tensor
    labels: torch.Tensor
    total: int
    unreadable: dict[int, str] = field(default_factory=dict)

    def __iter__(self):
        return iter((self.features, self.labels))

    def __getitem__(self, k):
        return (self.features, self.labels)[k]

    def __len__(self) -> int:
        return 2

    @property
    def samples(self) -> int:
        return len(self.labels)


@torch.no_grad()
def extract_features(model: nn.Module, loader, env: DistEnv, amp_dtype: torch.dtype | None = None,
                     progress: bool = False, desc: str = "features") -> FeatureSet:
    """Features and labels of the loader's whole data set, in dataset order, on every rank (each
    rank embeds its shard; results are gathered by index). Samples the dataset marks unreadable
    ('valid' False) are left out and named in ``unreadable``."""
    model.eval()
    dev = env.device
    idx, feats, labels, valid, found = [], [], [], [], {}
    for batch in tqdm(loader, desc=desc, disable=not (progress and env.is_main), leave=False,
                      mininterval=2.0):
        x = batch["images"].to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            feats.append(model(x).float())                                   # (B, D)
        labels.append(batch["label"].to(dev))
        idx.append(batch["index"].to(dev))
        valid.append(valid_of(batch).to(dev))
        note_unreadable(batch, found)
    index = torch.cat(idx)
    total = len(loader.dataset)
    keep = gather_by_index(index, torch.cat(valid), total, env)
    return FeatureSet(gather_by_index(index, torch.cat(feats), total, env)[keep],
                      gather_by_index(index, torch.cat(labels), total, env)[keep], total,
                      gather_unreadable(found, env))


@torch.no_grad()
def knn_scores(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor,
               num_classes: int, k: int = 20, temperature: float = 0.07, chunk: int = 1024) -> torch.Tensor:
    """Class scores (M, C) of each test sample: its k most cosine-similar training samples
    vote for their class with weight exp(similarity / temperature) (Wu et al. 2018; DINO)."""
    train = F.normalize(train_feats.float(), dim=1)                         # (N, D)
    k = min(k, train.shape[0])
    out = []
    for start in range(0, test_feats.shape[0], chunk):
        test = F.normalize(test_feats[start:start + chunk].float(), dim=1)  # (m, D)
        sim, nn_idx = (test @ train.T).topk(k, dim=1)                       # (m, k)
        votes = F.one_hot(train_labels[nn_idx], num_classes).float()        # (m, k, C)
        out.append((votes * (sim / temperature).exp()[..., None]).sum(dim=1))   # (m, C)
    return torch.cat(out)


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, num_classes: int, k: int = 20,
                 temperature: float = 0.07) -> dict:
    """Top-1 / top-5 (%) of the weighted k-NN classifier. ``k`` is capped at the train set size (the
    metrics' 'k' is the one used; 'k_requested' and a 'note' say so); 'top5' is None with 5 classes
    or fewer, where it would be 100 whatever the features."""
    used = min(k, len(train_labels))
    scores = knn_scores(train_feats, train_labels, test_feats, num_classes, used, temperature)
    hits = topk_correct(scores, test_labels.to(scores.device)).float().mean(dim=0)
    out = {"top1": 100.0 * hits[0].item(), "top5": 100.0 * hits[1].item() if num_classes > 5 else None,
           "k": used, "temperature": temperature, "train_samples": len(train_labels),
           "test_samples": len(test_labels)}
    if used < k:
        out.update(k_requested=k, note=f"knn.k={k} capped at the {used} readable train samples")
    return out
