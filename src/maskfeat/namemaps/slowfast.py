"""Official SlowFast MaskFeat image checkpoints (``MaskMViT`` as a plain ViT) <-> ours.

The image recipe (configs/masked_ssl/in1k_VIT_*_MaskFeat_PT.yaml) builds ``MaskMViT`` with
``MVIT.PATCH_2D``, no pooling, absolute position embedding and a cls token, which is a
plain pre-norm ViT. Its names (slowfast/models/{video_model_builder,masked,attention,
stem_helper,head_helper}.py):

  patch_embed.proj (Conv2d), cls_token, pos_embed, mask_token,
  blocks.N.{norm1, attn.qkv (or attn.q/k/v with SEPARATE_QKV), attn.proj, norm2, mlp.fc1, mlp.fc2},
  pred_head.transforms.0.0 (LayerNorm) and pred_head.projections.0 (Linear to 108).

``MaskMViT`` deletes the backbone's final ``norm``; the LayerNorm inside the prediction head
plays its part (blocks -> LN -> Linear), so it maps to our ``encoder.norm`` and the
projection to our ``head``. SlowFast's HOG has no Gaussian window (hog.gaussian_window=0).
Checkpoints are ``{'model_state': ..., 'epoch': ..., 'cfg': <yaml text>, ...}``.
"""
from __future__ import annotations

import re

import torch

from ..errors import UserError

_BLOCK = re.compile(r"^blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")
_TOP = {"cls_token", "pos_embed", "mask_token", "patch_embed.proj.weight", "patch_embed.proj.bias"}
_UNSUPPORTED = re.compile(r"(rel_pos|pool_|norm_q|norm_k|norm_v|pos_embed_spatial|pos_embed_temporal|"
                          r"pos_embed_class|decoder|gamma_|rev_backbone|norm_stem)")


def unwrap(ckpt: dict) -> dict[str, torch.Tensor]:
    sd = ckpt.get("model_state", ckpt)
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()
            if isinstance(v, torch.Tensor)}


def slowfast_to_maskfeat(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SlowFast MaskMViT (2-D ViT) pre-training weights -> our MaskFeat state_dict."""
    if "pred_head.projections.0.weight" not in state_dict:
        if "head.projection.weight" in state_dict:
            raise UserError("a SlowFast classifier (head.projection): only MaskFeat pre-training checkpoints "
                            "(pred_head.*) are supported")
        raise UserError("no 'pred_head.projections.0.weight': not a SlowFast MaskFeat checkpoint")
    if "pred_head.projections.1.weight" in state_dict:
        raise UserError("several prediction heads (MASK.PRETRAIN_DEPTH with more than one depth) "
                        "are not supported")
    proj = state_dict.get("patch_embed.proj.weight")
    if proj is not None and proj.dim() == 5:
        raise UserError("a video (Conv3d patch embedding) MViT: "
                        "only the image ViT (MVIT.PATCH_2D) is supported")
    out: dict[str, torch.Tensor] = {}
    qkv_parts: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if key.startswith("hogs.") or key.startswith("pred_head.transforms.0.0.") \
                or key.startswith("pred_head.projections.0."):
            continue
        if _UNSUPPORTED.search(key):
            raise UserError(f"SlowFast weight '{key}' belongs to an MViT feature (pooling, "
                            "relative positions, separate embeddings) that a plain ViT does not have")
        if key in _TOP or _BLOCK.match(key):
            out["encoder." + key] = value
            continue
        m = re.match(r"^blocks\.(\d+)\.attn\.([qkv])\.(weight|bias)$", key)
        if m:  # MVIT.SEPARATE_QKV: stack q, k, v into timm's qkv
            qkv_parts.setdefault((int(m.group(1)), m.group(3)), {})[m.group(2)] = value
            continue
        raise UserError(f"SlowFast weight '{key}' has no counterpart in our ViT")
    for (i, kind), parts in qkv_parts.items():
        if set(parts) != {"q", "k", "v"}:
            raise UserError(f"blocks.{i}.attn: found {sorted(parts)} of q, k, v")
        out[f"encoder.blocks.{i}.attn.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    for suffix in ("weight", "bias"):
        out[f"encoder.norm.{suffix}"] = state_dict[f"pred_head.transforms.0.0.{suffix}"]
        out[f"head.{suffix}"] = state_dict[f"pred_head.projections.0.{suffix}"]
    if "encoder.mask_token" not in out:
        raise UserError("no 'mask_token': not a SlowFast MaskFeat (MaskMViT) checkpoint")
    return out


def maskfeat_to_slowfast(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ours -> SlowFast MaskMViT names (the inverse of ``slowfast_to_maskfeat``, fused qkv)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("encoder.norm."):
            out["pred_head.transforms.0.0." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("head."):
            out["pred_head.projections.0." + key[len("head."):]] = value
        elif key.startswith("encoder."):
            out[key[len("encoder."):]] = value
    return out
