"""The labelled commands' image transforms: timm's train / eval pipelines from the ``data`` and ``aug``
sections (data.mean, std, crop_pct, interpolation; aug.scale, ratio, hflip, auto_augment, color_jitter,
re_prob, re_mode, re_count)."""
from __future__ import annotations

from timm.data import create_transform
from timm.data.transforms_factory import transforms_imagenet_train


def classification_transform(data: dict, img_size: int, train: bool, aug: dict | None = None):
    """timm's transforms. Train: RandomResizedCrop + flip (+ RandAugment, then colour jitter, then
    random erasing when ``aug`` asks); eval: resize to img_size / crop_pct, centre crop.

    Colour jitter follows RandAugment as in mmpretrain's MaskFeat fine-tuning (SPEC section 4);
    timm alone would drop it whenever RandAugment is on (DeiT / MAE: set aug.color_jitter=0)."""
    common = dict(input_size=img_size, interpolation=data["interpolation"],
                  mean=tuple(data["mean"]), std=tuple(data["std"]))
    if not train:
        return create_transform(is_training=False, crop_pct=data["crop_pct"], **common)
    aug = aug or {}
    common["img_size"] = common.pop("input_size")
    # what create_transform(is_training=True) calls, + force_color_jitter
    return transforms_imagenet_train(
        scale=tuple(aug.get("scale", (0.08, 1.0))), ratio=tuple(aug.get("ratio", (3 / 4, 4 / 3))),
        hflip=aug.get("hflip", 0.5), auto_augment=aug.get("auto_augment") or None,
        color_jitter=aug.get("color_jitter") or None, force_color_jitter=True,
        re_prob=aug.get("re_prob", 0.0),
        re_mode=aug.get("re_mode", "pixel"), re_count=aug.get("re_count", 1), **common)
