"""model.encoder=visible: the encoder sees the unmasked patches only, a light decoder predicts
the masked ones (MAE's design on MaskFeat's targets). Checked against hand-built references."""
import copy
import math

import numpy as np
import pytest
import torch

from eval_helpers import make_folder
from helpers import eager_and_compiled_losses, maskfeat
from maskfeat.cli import main
from maskfeat.config import ConfigError, resolve_config
from maskfeat.data.cube_mask import CubeMaskGenerator
from maskfeat.data.masking import BlockMaskGenerator
from maskfeat.defaults import PRETRAIN
from maskfeat.engine.optim import build_optimizer
from maskfeat.errors import UserError
from maskfeat.models import MaskFeat, VisibleMaskFeat, build_pretrain_model
from maskfeat.models import build_pretrain_model as build_video_model
from maskfeat.models.decoder import MaskedDecoder, default_heads, sincos_pos_embed
from maskfeat.models.visible import visible_index
from maskfeat.schema import VIDEO_PRETRAIN


def pico_cfg(*extra, img_size=64):
    return resolve_config(PRETRAIN, None, ["model.arch=vit-pico", f"model.img_size={img_size}", *extra])


def video_cfg(**model):
    cfg = copy.deepcopy(VIDEO_PRETRAIN)
    cfg["model"].update(dict(arch="vit3d-pico", img_size=32, num_frames=4), **model)
    return cfg


def block_masks(n: int, grid: int, ratio: float, seed: int = 0) -> torch.Tensor:
    gen = BlockMaskGenerator((grid, grid), mask_ratio=ratio, min_num_patches=2)
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([gen(rng) for _ in range(n)]))


def test_default_config_builds_todays_model_and_visible_adds_only_the_decoder():
    assert PRETRAIN["model"]["encoder"] == VIDEO_PRETRAIN["model"]["encoder"] == "full"
    torch.manual_seed(0)
    full = build_pretrain_model(pico_cfg())
    torch.manual_seed(0)
    vis = build_pretrain_model(pico_cfg("model.encoder=visible"))
    assert type(full) is MaskFeat and isinstance(vis, VisibleMaskFeat)
    assert not any(k.startswith("decoder.") for k in full.state_dict())
    full_enc, vis_enc = full.encoder.state_dict(), vis.encoder.state_dict()
    # same seed, same encoder init: the visible encoder is the full one without the mask token
    assert set(full_enc) - set(vis_enc) == {"mask_token"} and vis.encoder.mask_token is None
    for k, v in vis_enc.items():
        assert torch.equal(v, full_enc[k]), k
    extra = {k.split(".")[0] for k in vis.state_dict()} - {"encoder", "head"}
    assert extra == {"decoder"}                       # the sin-cos positions are a buffer, not saved
    dec = vis.decoder
    assert (dec.dim, len(dec.blocks), dec.blocks[0].attn.num_heads) == (48, 2, 1)   # half of 96, 2 blocks
    assert vis.head.in_features == 48 and vis.head.out_features == 108


def test_visible_encoder_at_ratio_zero_equals_the_full_encoder():
    torch.manual_seed(0)
    full = build_pretrain_model(pico_cfg()).eval()
    vis = build_pretrain_model(pico_cfg("model.encoder=visible")).eval()
    with torch.no_grad():                              # different random weights, then the full ones
        for p in vis.encoder.parameters():
            p.add_(1.0)
    result = vis.encoder.load_state_dict(full.encoder.state_dict(), strict=False)
    assert result.unexpected_keys == ["mask_token"] and result.missing_keys == []
    x = torch.randn(3, 3, 64, 64)
    none = torch.zeros(3, 16, dtype=torch.bool)
    keep = visible_index(none)
    assert torch.equal(keep, torch.arange(16).expand(3, 16))
    with torch.no_grad():
        ours = vis.encoder.forward_visible(x, keep)
        ref = full.encoder.forward_features(x, None)
        ref_masked = full.encoder.forward_features(x, none)
    assert ours.shape == (3, 17, 96)
    assert torch.equal(ours, ref)                      # bit for bit: only the tokens seen differ
    torch.testing.assert_close(ours, ref_masked, rtol=0, atol=1e-6)


def test_visible_tokens_are_the_unmasked_patches_with_their_positions():
    torch.manual_seed(1)
    enc = build_pretrain_model(pico_cfg("model.encoder=visible")).encoder.eval()
    x = torch.randn(4, 3, 64, 64)
    mask = block_masks(4, 4, 0.5).flatten(1)           # 8 of 16 patches per image
    keep = visible_index(mask)
    assert keep.shape == (4, 8)
    with torch.no_grad():
        ours = enc.forward_visible(x, keep)
        tokens = enc.patch_embed(x) + enc.pos_embed[:, 1:]            # (B, 16, D) by hand
        for i in range(4):                                            # one image at a time, boolean indexing
            seq = torch.cat([enc.cls_token + enc.pos_embed[:, :1], tokens[i:i + 1, ~mask[i]]], dim=1)
            torch.testing.assert_close(ours[i:i + 1], enc.norm(enc.blocks(seq)), rtol=1e-5, atol=1e-5)
        # a masked patch's pixels cannot reach the encoder
        y = x.clone()
        r, c = divmod(int(mask[0].nonzero()[0]), 4)
        y[0, :, 16 * r:16 * r + 16, 16 * c:16 * c + 16] = 5.0
        torch.testing.assert_close(enc.forward_visible(y, keep), ours, rtol=0, atol=0)


def test_decoder_puts_visible_tokens_back_in_place_and_mask_tokens_elsewhere():
    torch.manual_seed(2)
    dec = MaskedDecoder(embed_dim=12, grid=(2, 3), dim=8, depth=0, num_heads=2)
    with torch.no_grad():
        dec.mask_token.normal_()
    mask = torch.tensor([[1, 0, 1, 0, 1, 0], [0, 0, 1, 1, 1, 0]], dtype=torch.bool)
    keep = visible_index(mask)
    assert keep.tolist() == [[1, 3, 5], [0, 1, 5]]
    latent = torch.randn(2, 4, 12)                     # cls + 3 visible
    out = dec(latent, keep)
    emb = dec.embed(latent)
    for b in range(2):
        seq = [emb[b, 0]]
        visible = iter(emb[b, 1:])
        for n in range(6):
            seq.append(dec.mask_token[0, 0] if mask[b, n] else next(visible))
        ref = dec.norm(torch.stack(seq) + dec.pos_embed[0])[1:]
        torch.testing.assert_close(out[b], ref, rtol=1e-6, atol=1e-6)


def test_sincos_positions_by_hand():
    d, grid = 12, (2, 3, 4)
    emb = sincos_pos_embed(d, grid, num_prefix_tokens=1)
    assert emb.shape == (1, 1 + 24, d) and emb[0, 0].abs().sum() == 0
    for t in range(2):
        for h in range(3):
            for w in range(4):
                row = emb[0, 1 + (t * 3 + h) * 4 + w]
                for axis, c in enumerate((t, h, w)):          # 4 channels per axis: sin, sin, cos, cos
                    f = [1.0, 1.0 / 100.0]                     # 1 / 10000^(i / 2), i = 0, 1
                    ref = [math.sin(c * f[0]), math.sin(c * f[1]), math.cos(c * f[0]), math.cos(c * f[1])]
                    torch.testing.assert_close(row[4 * axis:4 * axis + 4], torch.tensor(ref), rtol=0,
                                               atol=1e-6)
    assert len({tuple(r.tolist()) for r in emb[0, 1:]}) == 24          # every position distinct
    assert sincos_pos_embed(10, (2, 2)).shape == (1, 5, 10)              # odd share: zero-padded
    assert [default_heads(d) for d in (48, 96, 384, 200)] == [1, 1, 6, 2]


def test_loss_is_masked_mse_on_the_masked_patches():
    torch.manual_seed(3)
    model = build_pretrain_model(pico_cfg("model.encoder=visible", "mask.ratio=0.75"))
    x = torch.randn(2, 3, 64, 64)
    mask = block_masks(2, 4, 0.75)
    out = model(x, mask, return_outputs=True)
    m = mask.flatten(1)
    assert out.pred.shape == out.target.shape == (2, 16, 108)
    expected = ((out.pred - out.target) ** 2).mean(-1)[m].mean()
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.decoder.mask_token.grad.abs().sum() > 0
    assert model.encoder.blocks[0].attn.qkv.weight.grad is not None
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    assert abs(model(x, mask).loss.item() - 12 / 108) < 1e-5


def test_uneven_mask_mvit_and_bad_keys_are_one_line_errors():
    model = build_pretrain_model(pico_cfg("model.encoder=visible"))
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, :3] = True
    mask[1, :5] = True
    with pytest.raises(UserError,
                       match="same number of masked patches in every sample, this batch has 3 to 5"):
        model(torch.randn(2, 3, 64, 64), mask)
    with pytest.raises(ConfigError,
                       match=r"model.encoder: visible needs a video ViT .*mvitv2-pico.*encoder=full"):
        build_video_model(video_cfg(arch="mvitv2-pico", encoder="visible"))
    with pytest.raises(ConfigError,
                       match="model.encoder: unknown value 'partial'; choose one of full, visible"):
        build_pretrain_model(pico_cfg("model.encoder=partial"))
    with pytest.raises(ConfigError, match="model.decoder_heads 5 does not divide model.decoder_dim 48"):
        build_pretrain_model(pico_cfg("model.encoder=visible", "model.decoder_heads=5"))
    old = pico_cfg()
    del old["model"]["encoder"]                       # a checkpoint config from before the key: full
    assert type(build_pretrain_model(old)) is MaskFeat


def test_param_groups_decay_the_decoder_weights_but_not_its_mask_token():
    model = build_pretrain_model(pico_cfg("model.encoder=visible", "model.decoder_depth=1"))
    opt = build_optimizer(model, model_cfg_optim(), global_batch=256)
    names = {id(p): n for n, p in model.named_parameters()}
    plain = {names[id(p)] for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    decayed = {names[id(p)] for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert plain | decayed == set(names.values())
    assert "decoder.mask_token" in plain and "encoder.mask_token" not in names.values()
    assert {"decoder.embed.weight", "decoder.blocks.0.attn.qkv.weight", "head.weight",
            "encoder.pos_embed"} <= decayed
    assert {"decoder.norm.weight", "decoder.embed.bias", "decoder.blocks.0.norm1.weight"} <= plain


def model_cfg_optim():
    return copy.deepcopy(PRETRAIN["optim"])


def test_exact_cube_mask_tops_up_and_leaves_full_masks_alone():
    plain = CubeMaskGenerator((4, 3, 3), mask_ratio=0.6, min_num_patches=6, max_tries=3)
    exact = CubeMaskGenerator((4, 3, 3), mask_ratio=0.6, min_num_patches=6, max_tries=3, exact=True)
    short = 0
    for seed in range(40):
        a = plain(np.random.default_rng(seed))
        b = exact(np.random.default_rng(seed))
        assert b.sum() == exact.num_masking_patches == 22
        assert (a & ~b).sum() == 0                    # the topped-up mask contains the original
        if a.sum() == 22:
            assert np.array_equal(a, b)
        short += int(a.sum() < 22)
    assert short > 0                                   # the case this exists for does happen


def test_video_vit_visible_trains_and_equals_full_encoder_at_ratio_zero():
    torch.manual_seed(4)
    cfg = video_cfg(encoder="visible")
    model = build_video_model(cfg)
    clips = torch.randn(2, 3, 4, 32, 32)
    gen = CubeMaskGenerator((2, 2, 2), mask_ratio=0.4, min_num_patches=1, exact=True)
    mask = torch.from_numpy(np.stack([gen(np.random.default_rng(i)) for i in range(2)]))
    out = model(clips, mask, return_outputs=True)
    assert out.pred.shape == (2, 8, 108) and out.mask.sum(1).tolist() == [3, 3]
    torch.testing.assert_close(out.loss, ((out.pred - out.target) ** 2).mean(-1)[out.mask].mean())
    full = build_video_model(video_cfg()).eval()
    model.encoder.load_state_dict(full.encoder.state_dict(), strict=False)
    keep = torch.arange(8).expand(2, 8)
    with torch.no_grad():
        assert torch.equal(model.encoder.eval().forward_visible(clips, keep),
                           full.encoder.forward_features(clips))
    assert model.no_weight_decay() == {"decoder.mask_token"}


def test_video_visible_checkpoint_loads_into_the_video_classifier(tmp_path):
    from maskfeat.eval.classifier import classifier_for
    from maskfeat.eval.pretrained import load_pretrained

    torch.manual_seed(5)
    cfg = video_cfg(encoder="visible")
    model = build_video_model(cfg)
    torch.save({"model": model.state_dict(), "config": cfg}, tmp_path / "v.pth")
    clf = classifier_for("video", cfg["model"], 3)
    report = load_pretrained(clf, tmp_path / "v.pth", "video")
    assert set(report.missing) == {"head.weight", "head.bias", "fc_norm.weight", "fc_norm.bias"}
    assert "(decoder weights dropped, as the head)" in report.dropped
    assert all(k.startswith(("decoder.", "head.")) for k in report.ignored)
    torch.testing.assert_close(clf.blocks[0].attn.qkv.weight, model.encoder.blocks[0].attn.qkv.weight)


def test_visible_checkpoint_evaluates_and_converts_with_the_same_commands(tmp_path, capsys):
    """`maskfeat pretrain model.encoder=visible`, then finetune / linprobe / knn / convert / visualize
    exactly as for a full checkpoint; the decoder is dropped with a note, as the head is."""
    from safetensors.torch import load_file


    run = tmp_path / "pt"
    r = maskfeat("pretrain", "model.encoder=visible", "model.arch=vit-pico", "model.img_size=32",
                 "model.patch_size=8", "mask.min_num_patches=2", "data.samples_per_epoch=32",
                 "data.num_workers=0", "train.batch_size=8", "train.epochs=1", "train.progress=false",
                 f"train.output_dir={run}")
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = torch.load(run / "last.pth", weights_only=True)
    sd = ckpt["model"]
    assert ckpt["config"]["model"]["encoder"] == "visible" and "encoder.mask_token" not in sd
    n_decoder = sum(k.startswith("decoder.") for k in sd)
    assert n_decoder == 2 + 1 + 12 * 2 + 2 and "decoder.pos_embed" not in sd   # embed, token, 2 blocks, norm
    note = f"dropped: head (2 tensors), decoder ({n_decoder} tensors) (decoder weights dropped, as the head)"

    root = make_folder(tmp_path / "shapes", n_train=6, n_val=4)
    data = ["data.source=folder", f"data.root={root}", "data.num_workers=0", "data.crop_pct=1.0",
            f"model.pretrained={run / 'last.pth'}"]
    train = ["train.epochs=1", "train.batch_size=6", "train.progress=false", "optim.warmup_epochs=0.5"]
    assert main(["finetune", *data, *train, f"train.output_dir={tmp_path / 'ft'}"]) == 0
    assert note in capsys.readouterr().err
    assert main(["linprobe", *data, *train, "data.cache_features=false",
                 f"train.output_dir={tmp_path / 'lp'}"]) == 0
    assert note in capsys.readouterr().err
    probe = torch.load(tmp_path / "lp" / "last.pth", weights_only=True)["model"]
    enc = {k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}
    for k, v in enc.items():                          # the frozen encoder holds the pre-trained weights
        assert torch.equal(probe[f"features.encoder.{k}"], v), k
    assert main(["knn", *data, "knn.k=3", "eval.progress=false", f"eval.output_dir={tmp_path / 'knn'}"]) == 0
    assert note in capsys.readouterr().err and (tmp_path / "knn" / "knn.json").is_file()

    assert main(["convert", str(run / "last.pth"), str(tmp_path / "enc.safetensors")]) == 0
    out = capsys.readouterr().out
    assert note in out and "checked: timm features equal ours" in out
    assert set(load_file(str(tmp_path / "enc.safetensors"))) == set(enc)
    png = next((root / "val" / "disk").iterdir())
    assert main(["visualize", str(run / "last.pth"), str(png), "--out-dir", str(tmp_path / "vis")]) == 0
    assert (tmp_path / "vis" / f"{png.stem}_maskfeat.png").stat().st_size > 0


@pytest.mark.slow
def test_compiled_visible_step_gives_the_eager_losses(tmp_path):
    """train.compile with the visible encoder: the mask read-back is a graph break, the rest compiles."""
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    eager, comp = eager_and_compiled_losses(tmp_path, {"images": images, "mask": block_masks(4, 4, 0.5)},
                                            "model.encoder=visible", "model.img_size=64")
    assert eager[2] < eager[0]
    for a, b in zip(eager, comp):
        assert abs(a - b) < 1e-6, (eager, comp)             # measured ~1e-8
