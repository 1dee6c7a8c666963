"""Layer-wise lr decay of the fine-tuning classifier (SPEC section 4: ViT-B/16, rate 0.65)."""
import pytest
import torch

from maskfeat.defaults import FINETUNE
from maskfeat.engine.optim import build_optimizer, build_scheduler
from maskfeat.eval.classifier import build_classifier


def scales_by_name(model, optimizer) -> dict[str, float]:
    name_of = {id(p): n for n, p in model.named_parameters()}
    return {name_of[id(p)]: g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}


def expected_level(name: str, depth: int) -> int:
    if name.startswith(("patch_embed.", "cls_token", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    assert name.startswith(("fc_norm.", "head.")), name
    return depth + 1


def test_vit_base_has_14_levels_scaled_065_pow_13_minus_level():
    with torch.device("meta"):
        model = build_classifier("vit-base", 224, 16, num_classes=1000)
    opt = build_optimizer(model, FINETUNE["optim"], 2048, layer_decay=0.65)
    scales = scales_by_name(model, opt)
    assert len(scales) == sum(1 for _ in model.parameters())           # every parameter is optimised
    levels = {}
    for name, s in scales.items():
        lvl = expected_level(name, 12)
        assert s == pytest.approx(0.65 ** (13 - lvl), rel=1e-12), name
        levels.setdefault(lvl, set()).add(round(s, 12))
    assert sorted(levels) == list(range(14)) and all(len(v) == 1 for v in levels.values())
    assert scales["patch_embed.proj.weight"] == pytest.approx(0.65 ** 13)
    assert scales["blocks.11.mlp.fc2.weight"] == pytest.approx(0.65) and scales["head.weight"] == 1.0
    # SPEC lr: 8e-3 at batch 2048; no weight decay on biases, norms, pos_embed and cls_token
    assert max(g["lr"] for g in opt.param_groups) == pytest.approx(8e-3)
    wd = {n: g["weight_decay"] for g in opt.param_groups for n in
          [dict((id(p), k) for k, p in model.named_parameters())[id(p)] for p in g["params"]]}
    assert wd["blocks.3.attn.qkv.weight"] == 0.05 and wd["head.weight"] == 0.05
    assert wd["blocks.3.attn.qkv.bias"] == wd["fc_norm.weight"] == wd["pos_embed"] == wd["cls_token"] == 0.0


def test_scheduler_applies_the_scale_every_step():
    model = build_classifier("vit-pico", 32, 16, num_classes=3)
    cfg = dict(FINETUNE["optim"], warmup_epochs=1.0)
    opt = build_optimizer(model, cfg, 512, layer_decay=0.65)
    sched = build_scheduler(opt, cfg, iters_per_epoch=10, epochs=5)
    for step in (0, 3, 10, 27, 49):
        sched.step_update(step)
        top = max(g["lr"] for g in opt.param_groups)
        assert top > 0
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(top * g["lr_scale"], rel=1e-9)
    assert sorted({round(g["lr_scale"], 9) for g in opt.param_groups}) == \
        sorted({round(0.65 ** (3 - i), 9) for i in range(4)})           # 2 blocks: 4 levels
