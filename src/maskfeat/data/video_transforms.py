"""Clip transforms on uint8 (T, 3, H, W) frames; the same random parameters for every frame."""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


def train_transform(size: int, scale, ratio, hflip: float, short_side: int = 0,
                    rand_augment: tuple[int, int] | None = None, random_erasing: float = 0.0) -> v2.Compose:
    """Short-side resize (if > 0), RandomResizedCrop(size, scale), horizontal flip; for
    fine-tuning optionally RandAugment(ops, magnitude) and random erasing, frame-consistent."""
    steps = [v2.Resize(short_side, antialias=True)] if short_side > 0 else []
    steps += [
        v2.RandomResizedCrop(size, scale=tuple(scale), ratio=tuple(ratio),
                             interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
        v2.RandomHorizontalFlip(hflip),
    ]
    if rand_augment:
        steps.append(v2.RandAugment(num_ops=rand_augment[0], magnitude=rand_augment[1]))
    if random_erasing > 0:
        # erasing needs float frames; it fills with 0 (the uint8 result is re-quantised)
        steps += [v2.ToDtype(torch.float32, scale=True), v2.RandomErasing(random_erasing, value=0),
                  v2.ToDtype(torch.uint8, scale=True)]
    return v2.Compose(steps)


def apply(transform, frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, 3, H, W) -> uint8 (3, T, h, w), one draw of the random parameters per clip."""
    out = transform(tv_tensors.Video(frames))
    return out.as_subclass(torch.Tensor).permute(1, 0, 2, 3).contiguous()


def spatial_view(frames: torch.Tensor, size: int, view: int, num_views: int) -> torch.Tensor:
    """Test crop: short side resized to ``size``, then a size x size crop at ``view`` of
    ``num_views`` evenly spaced positions along the long side (centre when 1).
    uint8 (T, 3, H, W) -> uint8 (3, T, size, size)."""
    frames = v2.functional.resize(tv_tensors.Video(frames), size, antialias=True).as_subclass(torch.Tensor)
    h, w = frames.shape[-2:]
    long = max(h, w)
    offset = (long - size) // 2 if num_views == 1 else (long - size) * view // (num_views - 1)
    if h >= w:
        frames = frames[..., offset:offset + size, (w - size) // 2:(w - size) // 2 + size]
    else:
        frames = frames[..., (h - size) // 2:(h - size) // 2 + size, offset:offset + size]
    return frames.permute(1, 0, 2, 3).contiguous()
