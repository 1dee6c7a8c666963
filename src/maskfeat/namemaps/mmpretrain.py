"""mmpretrain names -> ours.

Pre-training (``MaskFeat``): ``backbone.*`` (MaskFeatViT) and ``neck.fc.*`` (LinearNeck)
-> ``encoder.*`` (timm VisionTransformer names + ``mask_token``) and ``head.*``.

Classifiers (``ImageClassifier`` with a ``VisionTransformer`` backbone): ``backbone.*``
and ``head.fc.*`` (LinearClsHead) or ``head.layers.head.*`` (VisionTransformerClsHead)
-> a timm VisionTransformer state_dict. mmpretrain's norms: ``backbone.ln1`` is the
final norm over all tokens (``final_norm=True``), timm's ``norm``; ``backbone.ln2`` exists
with ``out_type='avg_featmap'`` and normalises the mean of the patch tokens, timm's
``fc_norm`` with ``global_pool='avg'``. MaskFeat's fine-tuning recipe uses
``final_norm=False, out_type='avg_featmap'``: ln2 only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import UserError

# (pattern, replacement), applied in order to each key after the prefix is mapped.
_RULES = [
    (r"^patch_embed\.projection\.", "patch_embed.proj."),
    (r"^layers\.(\d+)\.ln1\.", r"blocks.\1.norm1."),
    (r"^layers\.(\d+)\.ln2\.", r"blocks.\1.norm2."),
    (r"^layers\.(\d+)\.attn\.", r"blocks.\1.attn."),
    (r"^layers\.(\d+)\.ffn\.layers\.0\.0\.", r"blocks.\1.mlp.fc1."),
    (r"^layers\.(\d+)\.ffn\.layers\.1\.", r"blocks.\1.mlp.fc2."),
    (r"^ln1\.", "norm."),
    (r"^ln2\.", "fc_norm."),
]
_KNOWN_BACKBONE = re.compile(r"^(cls_token|pos_embed|mask_token|patch_embed\.proj\.|blocks\.\d+\."
                             r"(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.|norm\.|fc_norm\.)")


def _map_backbone_key(key: str) -> str:
    for pattern, repl in _RULES:
        new, n = re.subn(pattern, repl, key)
        if n:
            return new
    return key


def _backbone(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``backbone.*`` -> timm names; any backbone weight we cannot place is an error."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            name = _map_backbone_key(key[len("backbone."):])
            if not _KNOWN_BACKBONE.match(name):
                raise UserError(f"mmpretrain weight '{key}' has no counterpart in a timm ViT "
                                f"(layer scale, pre_norm, SwiGLU and the like are not supported)")
            out[name] = value
    if not out:
        raise UserError("no 'backbone.*' weights: not an mmpretrain ViT checkpoint")
    return out


def unwrap(ckpt: dict) -> dict[str, torch.Tensor]:
    """mmengine checkpoints hold the weights under 'state_dict'; a bare state_dict passes through."""
    sd = ckpt.get("state_dict", ckpt)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()
            if isinstance(v, torch.Tensor)}


def is_classifier(state_dict: dict[str, torch.Tensor]) -> bool:
    return (any(k.startswith("head.") for k in state_dict)
            and not any(k.startswith("neck.fc.") for k in state_dict))


def mmpretrain_to_maskfeat(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an mmpretrain MaskFeat state_dict to our ``MaskFeat`` names.

    ``target_generator.*`` buffers (HOG kernels) and the stray ``neck`` BatchNorm are dropped:
    ours rebuilds them from the config.
    """
    out = {"encoder." + k: v for k, v in _backbone(state_dict).items()}
    if "encoder.fc_norm.weight" in out:
        raise UserError("backbone.ln2 found: this is a classifier backbone (avg_featmap), "
                        "not MaskFeat pre-training")
    for key, value in state_dict.items():
        if key.startswith("neck.fc."):
            out["head." + key[len("neck.fc."):]] = value
    if "head.weight" not in out:
        raise UserError("no 'neck.fc.weight': not an mmpretrain MaskFeat pre-training checkpoint")
    return out


@dataclass
class ClassifierWeights:
    state_dict: dict[str, torch.Tensor]   # timm VisionTransformer names
    global_pool: str                      # 'avg' (ln2 present) or 'token'
    fc_norm: bool
    final_norm: bool
    num_classes: int


def mmpretrain_classifier_to_timm(state_dict: dict[str, torch.Tensor]) -> ClassifierWeights:
    """An mmpretrain ViT classifier -> timm VisionTransformer weights and the pooling that matches."""
    sd = _backbone(state_dict)
    if "mask_token" in sd:
        raise UserError("a mask_token in a classifier: this looks like a pre-training checkpoint")
    has_ln1, has_ln2 = "norm.weight" in sd, "fc_norm.weight" in sd
    if has_ln1 and has_ln2:
        raise UserError("backbone has both ln1 (final_norm=True) and ln2 (avg_featmap): timm's ViT holds "
                        "one of norm / fc_norm, so this model cannot be expressed exactly")
    heads, extra = {}, []
    for key, value in state_dict.items():
        if not key.startswith("head."):
            continue
        prefix = next((p for p in ("head.fc.", "head.layers.head.") if key.startswith(p)), None)
        if prefix is None:
            extra.append(key)
        else:
            heads["head." + key[len(prefix):]] = value
    if extra:
        raise UserError(f"classifier head weight '{extra[0]}' is not supported (only one Linear: head.fc or "
                        f"head.layers.head)")
    if "head.weight" not in heads:
        raise UserError("no 'head.fc.weight' or 'head.layers.head.weight': not an mmpretrain ViT classifier")
    sd.update(heads)
    return ClassifierWeights(sd, "avg" if has_ln2 else "token", fc_norm=has_ln2,
                             final_norm=has_ln1 or has_ln2, num_classes=heads["head.weight"].shape[0])
