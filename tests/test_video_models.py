"""Video encoders (MViTv2 on torchvision, tubelet ViT) and the video MaskFeat model."""
import pytest
import torch
import torchvision.models.video.mvit as tv_mvit
from torchvision.models.video import mvit_v2_s

from maskfeat.models import build_pretrain_model as build_video_model
from maskfeat.models.encoders import build_video_encoder
from maskfeat.models.maskfeat import MaskFeatOutput, masked_mse
from maskfeat.models.mvit import MViTEncoder, block_settings
from maskfeat.models.video_hog import VideoHOG
from maskfeat.models.vit3d import build_vit3d
from maskfeat.schema import VIDEO_PRETRAIN


def _cfg(**model):
    cfg = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VIDEO_PRETRAIN.items()}
    cfg["model"].update(model)
    return cfg


def test_finetune_mvitv2_s_is_torchvision_mvit_v2_s(monkeypatch):
    full = mvit_v2_s()
    ours_full = MViTEncoder("mvitv2-s", pretrain=False)
    assert {k: v.shape for k, v in ours_full.state_dict().items()} == \
        {k: v.shape for k, v in full.state_dict().items()}
    assert sum(p.numel() for p in ours_full.parameters()) == 34_537_744
    # torchvision's own mvit_v2_s arguments, rebuilt for a small 8x64x64 input
    captured, real = {}, tv_mvit.MViT
    monkeypatch.setattr(tv_mvit, "MViT", lambda **kw: captured.update(kw) or real(**kw))
    mvit_v2_s()
    monkeypatch.undo()
    ref = real(**dict(captured, spatial_size=(64, 64), temporal_size=8)).eval()
    ours = MViTEncoder("mvitv2-s", spatial_size=64, temporal_size=8, pretrain=False).eval()
    ref_sd = ref.state_dict()
    ours.load_state_dict(ref_sd)
    x = torch.randn(1, 3, 8, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_pretrain_settings_only_drop_last_stage_pooling():
    ft, pt = block_settings("mvitv2-s", True), block_settings("mvitv2-s", False)
    pooled = [i for i, b in enumerate(ft) if b.stride_q == [1, 2, 2]]
    assert pooled == [1, 3, 14] and [i for i, b in enumerate(pt) if b.stride_q == [1, 2, 2]] == [1, 3]
    assert [b.stride_kv for b in pt[14:]] == [[1, 2, 2], [1, 2, 2]]   # adaptive kv stride stays 2
    for a, b in zip(ft, pt):
        assert ((a.num_heads, a.input_channels, a.output_channels)
                == (b.num_heads, b.input_channels, b.output_channels))
    for arch, depth, width in (("mvitv2-b", 24, 768), ("mvitv2-l", 48, 1152)):
        s = block_settings(arch, False)
        assert len(s) == depth and s[-1].output_channels == width


@pytest.mark.slow
def test_mvitv2_s_pretrain_forward_grid_loss_and_gradients():
    torch.manual_seed(0)
    model = build_video_model(_cfg(arch="mvitv2-s", img_size=224, num_frames=16))
    clip = torch.randn(1, 3, 16, 224, 224)
    mask = torch.zeros(1, 8, 7, 7, dtype=torch.bool)
    mask[:, :, 2:5, 1:6] = True
    tokens, grid = model.encoder.forward_tokens(clip, mask)
    assert grid == (8, 14, 14) and tokens.shape == (1, 1 + 8 * 14 * 14, 768)
    out = model(clip, mask, return_outputs=True)
    assert torch.isfinite(out.loss) and 0.05 < out.loss.item() < 1.0
    assert out.pred.shape == out.target.shape == (1, 8 * 14 * 14, 108)
    out.loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


def test_loss_is_masked_mse_of_head_on_encoder_tokens():
    torch.manual_seed(0)
    model = build_video_model(_cfg(arch="mvitv2-pico", img_size=64, num_frames=8))
    clip, mask = torch.randn(2, 3, 8, 64, 64), torch.rand(2, 4, 4, 4) < 0.4
    out = model(clip, mask, return_outputs=True)
    assert isinstance(out, MaskFeatOutput)
    tokens, grid = model.encoder.forward_tokens(clip, mask)
    assert grid == (4, 4, 4)
    pred = model.head(tokens[:, 1:])
    target = VideoHOG()(clip)
    torch.testing.assert_close(out.loss, masked_mse(pred, target, mask.flatten(1)))
    # visible tokens get no gradient through the prediction
    pred = out.pred.detach().requires_grad_()
    masked_mse(pred, out.target, out.mask).backward()
    assert (pred.grad[~out.mask] == 0).all() and (pred.grad[out.mask] != 0).any()


def test_mask_token_replaces_masked_embeddings_only():
    torch.manual_seed(0)
    enc = MViTEncoder("mvitv2-pico", spatial_size=64, temporal_size=8).eval()
    clip = torch.randn(1, 3, 8, 64, 64)
    none = torch.zeros(1, 4, 2, 2, dtype=torch.bool)
    some = none.clone()
    some[0, 1, 0, 1] = True
    with torch.no_grad():
        base, _ = enc.forward_tokens(clip)
        same, _ = enc.forward_tokens(clip, none)
        masked, _ = enc.forward_tokens(clip, some)
    torch.testing.assert_close(base, same)
    assert (masked - base).abs().max() > 1e-4
    # pixels seen only by masked tokens no longer matter: mask unit (1, 0, 1) = tokens t=1,
    # h 0..7, w 8..15; Conv3d k(3,7,7) s(2,4,4) p(1,3,3) -> only frame 2, rows 0..25, cols 32..63
    other = clip.clone()
    other[:, :, 2, 0:26, 32:64] = torch.randn(1, 3, 26, 32)
    with torch.no_grad():
        masked_other, _ = enc.forward_tokens(other, some)
        visible_other, _ = enc.forward_tokens(other)
    torch.testing.assert_close(masked_other, masked)
    assert (visible_other - base).abs().max() > 1e-4


def test_no_weight_decay_names_the_mask_token():
    model = build_video_model(_cfg(arch="mvitv2-pico", img_size=64, num_frames=8))
    names = dict(model.named_parameters())
    assert model.no_weight_decay() == {"encoder.mask_token"} and "encoder.mask_token" in names


def test_vit3d_tubelets_and_pretrain_model():
    big = build_vit3d("vit3d-base")
    assert big.patch_embed.grid_size == (8, 14, 14) and big.patch_embed.proj.kernel_size == (2, 16, 16)
    assert big.embed_dim == 768 and len(big.blocks) == 12
    torch.manual_seed(0)
    model = build_video_model(_cfg(arch="vit3d-pico", img_size=64, num_frames=8))
    clip, mask = torch.randn(2, 3, 8, 64, 64), torch.rand(2, 4, 2, 2) < 0.5
    out = model(clip, mask, return_outputs=True)
    assert out.pred.shape == (2, 4 * 4 * 4, 108) and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_grid_mismatch_and_unknown_arch_are_clear_errors():
    model = build_video_model(_cfg(arch="mvitv2-pico", img_size=64, num_frames=8))
    model.target = VideoHOG(temporal_stride=4)
    with pytest.raises(ValueError, match="HOG target grid"):
        model(torch.randn(1, 3, 8, 64, 64), torch.zeros(1, 4, 2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="model.arch"):
        build_video_encoder(dict(_cfg()["model"], arch="mvitv3-s"))
