"""Linear-probe optimizers: timm's LARS as MAE uses it, or SGD with momentum.

MAE's LARS adapts the step of every weight matrix by its trust ratio and leaves biases and
norm parameters alone (no decay, no adaptation); with timm's ``Lars`` that is two groups,
``always_adapt`` on the first only.
"""
from __future__ import annotations

import torch
from timm.optim import Lars
from torch import nn

from ..engine.optim import scaled_lr
from ..errors import UserError


def build_probe_optimizer(model: nn.Module, optim_cfg: dict, global_batch: int,
                          layer_decay: float | None = None) -> torch.optim.Optimizer:
    """Same signature as engine.optim.build_optimizer (the Trainer's ``build_optim`` hook)."""
    params = [p for p in model.parameters() if p.requires_grad]
    matrices = [p for p in params if p.ndim > 1]
    vectors = [p for p in params if p.ndim <= 1]
    lr, wd, momentum = scaled_lr(optim_cfg, global_batch), optim_cfg["weight_decay"], optim_cfg["momentum"]
    name = optim_cfg["name"]
    if name == "lars":
        groups = [{"params": matrices, "weight_decay": wd, "always_adapt": True},
                  {"params": vectors, "weight_decay": 0.0, "always_adapt": False}]
        return Lars([g for g in groups if g["params"]], lr=lr, momentum=momentum)
    if name == "sgd":
        groups = [{"params": matrices, "weight_decay": wd}, {"params": vectors, "weight_decay": 0.0}]
        return torch.optim.SGD([g for g in groups if g["params"]], lr=lr, momentum=momentum)
    raise UserError(f"optim.name: {name!r}; choose lars or sgd")
