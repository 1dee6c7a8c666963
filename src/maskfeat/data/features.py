"""Pre-computed features as a data set (the linear probe trains its head on them)."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset


class FeatureDataset(Dataset):
    """Pre-computed features (N, D) with labels (N,): items {'features', 'label', 'index'}."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, key) -> dict:
        index = key[0] if isinstance(key, tuple) else key
        return {"features": self.features[index], "label": int(self.labels[index]), "index": index}
