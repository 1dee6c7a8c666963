import copy

import pytest
import torch

from helpers import mmpretrain_fixture_model
from maskfeat.config import resolve_config
from maskfeat.defaults import PRETRAIN
from maskfeat.engine.optim import build_optimizer
from maskfeat.models import ARCHS, MaskFeat, build_encoder, build_pretrain_model
from maskfeat.models.hog import HOGGenerator
from maskfeat.models.token_mask import token_mask
from maskfeat.schema import VIDEO_PRETRAIN


def test_parity_with_mmpretrain(mmpretrain_fixture):
    f = mmpretrain_fixture
    model = mmpretrain_fixture_model(f)                    # strict: every key of the fixture loaded
    with torch.no_grad():
        out = model(f["input_normalized"], f["mask"], return_outputs=True)
        backbone = model.encoder.forward_features(f["input_normalized"], f["mask"])
    assert backbone.shape == f["backbone_out"].shape == (2, 197, 192)
    # bounds a few times the measured errors (2.2e-6, 2.4e-7, 7.7e-7, 3e-8 on CPU, torch 2.14)
    assert (backbone - f["backbone_out"]).abs().max() <= 5e-6
    assert (out.target - f["hog_target"]).abs().max() <= 5e-7
    assert (out.pred - f["pred"]).abs().max() <= 2e-6
    assert abs(out.loss.item() - f["loss"].item()) <= 1e-7


def test_vit_base_parameter_count():
    with torch.device("meta"):
        model = MaskFeat(build_encoder("vit-base"), HOGGenerator())
    assert sum(p.numel() for p in model.parameters()) == 85_882_476
    assert model.head.out_features == 108


@pytest.mark.parametrize("arch,dim,depth", [("vit-small", 384, 12), ("vit-large", 1024, 24),
                                             ("vit-huge", 1280, 32)])
def test_architecture_shapes(arch, dim, depth):
    with torch.device("meta"):
        enc = build_encoder(arch)
    assert enc.embed_dim == dim and len(enc.blocks) == depth and enc.patch_embed.proj.kernel_size == (16, 16)
    assert enc.blocks[0].norm1.eps == 1e-6 and enc.blocks[0].attn.qkv.bias is not None


def test_mask_token_replaces_masked_patches_only():
    torch.manual_seed(0)
    enc = build_encoder("vit-pico", img_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0, 1, 2] = True
    y_other = x.clone()
    y_other[0, :, 16:32, 32:48] = torch.randn(3, 16, 16)   # change only the masked patch's pixels
    with torch.no_grad():
        a, b = enc.forward_features(x, mask), enc.forward_features(y_other, mask)
        c = enc.forward_features(x, None)
    assert torch.allclose(a, b, atol=1e-6)           # a masked patch's pixels are invisible
    assert not torch.allclose(a[0], c[0], atol=1e-4)  # ... and the mask changes the output
    assert torch.allclose(a[1], c[1], atol=1e-6)      # an unmasked sample is untouched


def test_loss_is_masked_mse_and_outputs_on_request():
    torch.manual_seed(0)
    cfg = resolve_config(PRETRAIN, None, ["model.arch=vit-pico", "model.img_size=64"])
    model = build_pretrain_model(cfg)
    x = torch.randn(2, 3, 64, 64)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    out = model(x, mask, return_outputs=True)
    assert out.pred.shape == out.target.shape == (2, 16, 108) and out.mask.shape == (2, 16)
    m = mask.flatten(1)
    expected = ((out.pred - out.target) ** 2).mean(-1)[m].mean()
    assert torch.allclose(out.loss, expected)
    assert model(x, mask).pred is None
    # predicting zero everywhere gives 12/108
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    assert abs(model(x, mask).loss.item() - 12 / 108) < 1e-5


def test_param_groups_no_decay_on_bias_norm_mask_token_and_pos_setting():
    cfg = resolve_config(PRETRAIN, None, ["model.arch=vit-pico", "model.img_size=64"])
    for decay_pos in (True, False):
        c = copy.deepcopy(cfg)
        c["model"]["decay_pos_embed"] = decay_pos
        model = build_pretrain_model(c)
        opt = build_optimizer(model, c["optim"], global_batch=512)
        names = {id(p): n for n, p in model.named_parameters()}
        decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
        plain = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
        assert decayed | plain == set(names.values())
        assert "encoder.mask_token" in plain
        assert all(n.endswith(".bias") or ".norm" in n or n in ("encoder.norm.weight",) for n in plain
                   if n not in ("encoder.mask_token", "encoder.pos_embed", "encoder.cls_token"))
        assert "encoder.blocks.0.attn.qkv.weight" in decayed and "head.weight" in decayed
        assert "encoder.patch_embed.proj.weight" in decayed
        assert ("encoder.pos_embed" in decayed) == decay_pos and ("encoder.cls_token" in decayed) == decay_pos
        assert all(g["lr"] == pytest.approx(c["optim"]["lr"] * 2) for g in opt.param_groups)  # 512 / 256


def test_archs_registry_has_tiny_cpu_models():
    assert {"vit-pico", "vit-mini", "vit-tiny", "vit-small", "vit-base", "vit-large",
            "vit-huge"} <= set(ARCHS)


def test_normalised_batch_equals_mmpretrain_preprocessor_bit_for_bit():
    """PretrainStep's normalisation of a uint8 batch equals (x - [123.675, 116.28, 103.53]) /
    [58.395, 57.12, 57.375] in float32, exactly (mmpretrain's SelfSupDataPreprocessor)."""
    from maskfeat.defaults import PRETRAIN
    from maskfeat.tasks.steps import PretrainStep

    step = PretrainStep(PRETRAIN["data"]["mean"], PRETRAIN["data"]["std"], torch.device("cpu"))
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x[0, :, 0, :] = torch.arange(32, dtype=torch.uint8) * 8          # every level region present
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    want = (x.float() - mean) / std
    assert torch.equal(step.normalise(x), want)


def test_one_class_for_clips_and_the_mask_on_the_token_grid():
    cfg = copy.deepcopy(VIDEO_PRETRAIN)
    cfg["model"].update(arch="vit3d-pico", img_size=32, num_frames=4)
    torch.manual_seed(0)
    model = build_pretrain_model(cfg)
    assert type(model) is MaskFeat and model.encoder.grid_size == (2, 2, 2)
    cube = torch.zeros(1, 2, 1, 1, dtype=torch.bool)
    cube[0, 1] = True                                  # the second time step, whole frame
    assert token_mask(cube, (2, 2, 2)).tolist() == [[False] * 4 + [True] * 4]
    flat = torch.tensor([[True, False, False, True]])
    assert torch.equal(token_mask(flat, (2, 2)), flat)
    assert torch.equal(token_mask(flat.view(1, 2, 2), (2, 2)), flat)
    with pytest.raises(ValueError, match=r"mask of 4 tokens for a token grid \(2, 2, 2\)"):
        token_mask(flat, (2, 2, 2))
    out = model(torch.randn(1, 3, 4, 32, 32), cube, return_outputs=True)
    assert out.mask.tolist() == [[False] * 4 + [True] * 4] and out.pred.shape == (1, 8, 108)
    torch.testing.assert_close(out.loss, ((out.pred - out.target) ** 2).mean(-1)[0, 4:].mean())
