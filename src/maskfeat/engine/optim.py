"""Optimizer and schedule: AdamW on timm's parameter groups, timm's per-iteration cosine."""
from __future__ import annotations

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
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


def build_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: dict, iters_per_epoch: int,
                    epochs: float) -> CosineLRScheduler:
    """Linear warmup from ``warmup_start_factor`` x lr, then cosine to ``min_lr``, per iteration.

    timm applies each group's ``lr_scale`` (layer decay) at every update.
    """
    total = max(1, int(round(epochs * iters_per_epoch)))
    warmup = min(total - 1, int(round(optim_cfg["warmup_epochs"] * iters_per_epoch)))
    base = optimizer.param_groups[0].get("initial_lr", optimizer.param_groups[0]["lr"])
    sched = CosineLRScheduler(optimizer, t_initial=max(1, total - warmup), lr_min=optim_cfg["min_lr"],
                              warmup_t=warmup, warmup_lr_init=base * optim_cfg["warmup_start_factor"],
                              warmup_prefix=True, t_in_epochs=False)
    sched.step_update(0)
    return sched


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest group lr (the unscaled one under layer decay), as mmpretrain logs."""
    return max(g["lr"] for g in optimizer.param_groups)
