"""bench/throughput.py's memory mode (``--grad-ckpt``): our step with ``model.grad_checkpointing`` false
and true, the activation bytes saved for backward per image and, on CUDA, the peak memory; and what it
shares with the step mode: our pre-training config from the bench's flags, a synthetic batch."""
from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_util import memory_base, peak_memory_gib

from maskfeat.data.masking import BlockMaskGenerator
from maskfeat.tasks.pretrain import build_config
from maskfeat.tasks.pretrain_image import build_trainer

AMP = {"fp32": "none", "bf16": "bf16", "fp16": "fp16"}


def synthetic_batch(batch: int, img_size: int, patch: int, min_patches: int, device: torch.device,
                    ratio: float = 0.4) -> dict:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, img_size, img_size), dtype=torch.uint8, generator=g)
    grid = img_size // patch
    gen = BlockMaskGenerator((grid, grid), mask_ratio=ratio, min_num_patches=min_patches)
    rng = np.random.default_rng(0)
    masks = torch.from_numpy(np.stack([gen(rng) for _ in range(batch)]))
    return {"images": images.to(device), "mask": masks.to(device)}


def pretrain_config(args, out_dir: str, amp: str, compiled: bool, extra: list[str] = ()) -> dict:
    grid = args.img_size // 16
    overrides = [f"model.arch={args.arch}", f"model.img_size={args.img_size}",
                 f"mask.min_num_patches={15 if grid >= 14 else max(2, grid // 2)}",
                 f"train.batch_size={args.batch}", f"train.amp={AMP[amp]}",
                 f"train.compile={str(compiled).lower()}",
                 f"train.compile_mode={args.compile_mode}", f"train.device={args.device}",
                 f"train.output_dir={out_dir}", "train.progress=false", "train.log_interval=1000000",
                 "data.source=skimage", f"data.samples_per_epoch={max(args.batch, 64)}", "data.num_workers=0",
                 "optim.warmup_epochs=0", *extra]
    return build_config(None, overrides)


def saved_activation_bytes(model: torch.nn.Module, forward_backward) -> int:
    """Bytes of the distinct tensors (not parameters) autograd saves for backward while
    ``forward_backward()`` runs its forward: what the step holds between forward and backward."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward_backward()
    return sum(saved.values())


def run_memory_mode(args, env, out_root: Path) -> list[dict]:
    """Our step without and with model.grad_checkpointing: saved-activation bytes per image, peak memory."""
    rows = []
    batch = synthetic_batch(args.batch, args.img_size, 16, 15 if args.img_size >= 224 else 2, env.device)
    for on in (False, True):
        cfg = pretrain_config(args, str(out_root / f"ckpt_{on}"), "fp32", False,
                              [f"model.grad_checkpointing={str(on).lower()}"])
        trainer = build_trainer(cfg, env)
        base = memory_base(env.device)
        saved = saved_activation_bytes(trainer.model, partial(trainer._forward_backward, batch, sync=True))
        peak = peak_memory_gib(env.device) - base if env.device.type == "cuda" else None
        rows.append({"grad_checkpointing": on, "saved_MiB_per_image": saved / args.batch / 2**20,
                     "peak_GiB": peak, "batch": args.batch})
        print(f"grad_checkpointing={on}: activations saved for backward "
              f"{saved / args.batch / 2**20:.1f} MiB/image"
              + (f", peak {peak:.2f} GiB" if peak is not None else ""), flush=True)
        del trainer
    return rows
