"""Optimizer and schedule: AdamW on timm's parameter groups; mmengine's per-iteration warmup + cosine."""
from __future__ import annotations

import math

import torch
from timm.optim import create_optimizer_v2
from torch import nn


def scaled_lr(optim_cfg: dict, global_batch: int) -> float:
    """Linear scaling rule: the config's lr is per ``base_batch_size`` images."""
    return optim_cfg["lr"] * global_batch / optim_cfg["base_batch_size"]


def build_optimizer(model: nn.Module, optim_cfg: dict, global_batch: int,
                    layer_decay: float | None = None) -> torch.optim.Optimizer:
    """AdamW; no decay on biases, norms, 1-D params and ``model.no_weight_decay()`` names.

    Groups (and layer-wise lr scales, when ``layer_decay`` is set) come from the model's
    metadata through timm: ``no_weight_decay()`` and ``group_matcher()``. Fused AdamW where
    the device supports it, which also lets a non-finite step be skipped without a host sync.
    """
    kwargs = dict(lr=scaled_lr(optim_cfg, global_batch), weight_decay=optim_cfg["weight_decay"],
                  betas=tuple(optim_cfg["betas"]), eps=optim_cfg["eps"], layer_decay=layer_decay)
    try:
        return create_optimizer_v2(model, "adamw", fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):   # fused kernels missing for this device / torch
        return create_optimizer_v2(model, "adamw", foreach=True, **kwargs)


class WarmupCosine:
    """The lr at 0-based optimizer step i, exactly as mmengine steps ``LinearLR(start_factor=f, begin=0,
    end=W)`` then ``CosineAnnealingLR(eta_min, begin=W, end=T)`` (iteration-based):

    * i < W:  lr * (f + (1 - f) * i / (W - 1))   (the peak is reached at step W - 1; f alone when W = 1)
    * i >= W: eta_min + (lr - eta_min) * (1 + cos(pi * (i - W) / (T - W))) / 2

    Each parameter group gets that value times its ``lr_scale`` (layer decay). The schedule is a
    function of the step alone, so its state is the step (a resumed run calls ``step_update``).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, warmup: int, start_factor: float,
                 min_lr: float):
        self.optimizer, self.total, self.warmup = optimizer, total, warmup
        self.start_factor, self.min_lr = start_factor, min_lr
        for g in optimizer.param_groups:
            g.setdefault("initial_lr", g["lr"])
        self.base = optimizer.param_groups[0]["initial_lr"]
        self.step_update(0)

    def lr_at(self, i: int) -> float:
        f, w = self.start_factor, self.warmup
        if i < w:
            return self.base * (f + (1.0 - f) * i / (w - 1) if w > 1 else f)
        t = min(i, self.total) - w
        return (self.min_lr
                + (self.base - self.min_lr) * (1.0 + math.cos(math.pi * t / max(1, self.total - w))) / 2)

    def step_update(self, i: int) -> None:
        value = self.lr_at(i)
        for g in self.optimizer.param_groups:
            g["lr"] = value * g.get("lr_scale", 1.0)

    def state_dict(self) -> dict:
        return {"total": self.total, "warmup": self.warmup}

    def load_state_dict(self, state: dict) -> None:
        """Nothing to restore: the lr follows the step (older checkpoints held timm's scheduler state)."""


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: dict, iters_per_epoch: int,
                    epochs: float) -> WarmupCosine:
    """Linear warmup from ``warmup_start_factor`` x lr over ``warmup_epochs``, then cosine to ``min_lr``,
    per iteration, as mmengine's LinearLR + CosineAnnealingLR (``convert_to_iter_based``)."""
    total = max(1, int(round(epochs * iters_per_epoch)))
    warmup = min(total - 1, int(round(optim_cfg["warmup_epochs"] * iters_per_epoch)))
    return WarmupCosine(optimizer, total, warmup, optim_cfg["warmup_start_factor"], optim_cfg["min_lr"])


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest group lr (the unscaled one under layer decay), as mmpretrain logs."""
    return max(g["lr"] for g in optimizer.param_groups)
