"""Checkpoint conversion, checked by outputs: mmpretrain (fixture) -> ours, SlowFast <-> ours, ours ->
timm."""
import argparse
import copy
import re

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from helpers import MMPRETRAIN_FIXTURE, mmpretrain_fixture_model
from maskfeat.cli import main
from maskfeat.convert import maskfeat_to_slowfast, slowfast_to_maskfeat
from maskfeat.defaults import PRETRAIN
from maskfeat.models import MaskFeat, build_pretrain_model
from maskfeat.models.hog import HOGGenerator
from maskfeat.models.maskfeat import masked_mse


def pico_config(img_size=64) -> dict:
    cfg = copy.deepcopy(PRETRAIN)
    cfg["model"].update(arch="vit-pico", img_size=img_size)
    return cfg


@pytest.fixture(scope="module")
def pico(tmp_path_factory):
    """A vit-pico MaskFeat with non-trivial weights (LN and biases randomised) and its checkpoint."""
    torch.manual_seed(0)
    model = build_pretrain_model(pico_config()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    path = tmp_path_factory.mktemp("pico") / "pico.pth"
    torch.save({"model": model.state_dict(), "config": pico_config(), "step": 0}, path)
    return model, path


def run(capsys, *argv):
    rc = main(["convert", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_fixture_converted_reproduces_mmpretrain_outputs(mmpretrain_fixture):
    fx = mmpretrain_fixture
    model = mmpretrain_fixture_model(fx)
    x, mask = fx["input_normalized"], fx["mask"]
    with torch.no_grad():
        feats = model.encoder.forward_features(x, mask)                    # (2, 197, 192)
        out = model(x, mask, return_outputs=True)
    assert (feats - fx["backbone_out"]).abs().max() < 5e-6               # measured 2.2e-6
    assert (out.pred - fx["pred"]).abs().max() < 2e-6                      # measured 7.7e-7
    assert abs(out.loss.item() - fx["loss"].item()) < 1e-7                 # measured 3e-8


def test_fixture_exported_to_timm_reproduces_backbone_out(mmpretrain_fixture, tmp_path, capsys):
    fx = mmpretrain_fixture
    dst = tmp_path / "tiny2.safetensors"
    rc, out, _ = run(capsys, MMPRETRAIN_FIXTURE, dst)
    assert rc == 0 and "depth=2" in out
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(dst)), num_classes=0, depth=2).eval()
    for k, v in load_file(str(dst)).items():                               # every encoder weight arrived
        assert torch.equal(vit.state_dict()[k], v), k
    assert set(vit.state_dict()) == set(load_file(str(dst)))
    # timm's own modules, with mmpretrain's mask token spliced in, give mmpretrain's backbone output
    x, mask = fx["input_normalized"], fx["mask"]
    mask_token = fx["state_dict"]["backbone.mask_token"]
    with torch.no_grad():
        t = vit.patch_embed(x)                                             # (2, 196, 192)
        t = torch.where(mask[..., None], mask_token.expand_as(t), t)
        t = vit.norm(vit.blocks(vit._pos_embed(t)))
    assert (t - fx["backbone_out"]).abs().max() < 5e-6                  # measured 2.2e-6
    with torch.no_grad():
        ours = mmpretrain_fixture_model(fx).encoder.forward_features(x)
        assert (vit.forward_features(x) - ours).abs().max() < 1e-6     # measured 0


def test_ours_exported_to_timm_gives_same_features(pico, tmp_path, capsys):
    model, path = pico
    dst = tmp_path / "pico.safetensors"
    rc, out, _ = run(capsys, path, dst)
    assert rc == 0 and "checked: timm features equal ours" in out
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(dst)), num_classes=0, embed_dim=96, depth=2,
                            img_size=64).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert (vit.forward_features(x) - model.encoder.forward_features(x)).abs().max() < 1e-5
        assert (vit(x) - model.encoder.forward_features(x)[:, 0]).abs().max() < 1e-5   # cls-token features
    assert set(load_file(str(dst))) == set(vit.state_dict())                     # no missing encoder keys


def mmpretrain_names(ours: dict) -> dict:
    """Our names -> mmpretrain MaskFeat names (test-side inverse of the converter's rules)."""
    rules = [(r"^encoder\.patch_embed\.proj\.", "backbone.patch_embed.projection."),
             (r"^encoder\.blocks\.(\d+)\.norm1\.", r"backbone.layers.\1.ln1."),
             (r"^encoder\.blocks\.(\d+)\.norm2\.", r"backbone.layers.\1.ln2."),
             (r"^encoder\.blocks\.(\d+)\.attn\.", r"backbone.layers.\1.attn."),
             (r"^encoder\.blocks\.(\d+)\.mlp\.fc1\.", r"backbone.layers.\1.ffn.layers.0.0."),
             (r"^encoder\.blocks\.(\d+)\.mlp\.fc2\.", r"backbone.layers.\1.ffn.layers.1."),
             (r"^encoder\.norm\.", "backbone.ln1."), (r"^encoder\.", "backbone."), (r"^head\.", "neck.fc.")]
    out = {}
    for k, v in ours.items():
        for pat, rep in rules:
            new, n = re.subn(pat, rep, k)
            if n:
                out[new] = v
                break
    return out


def assert_same_outputs(a: MaskFeat, b: MaskFeat, img_size=64):
    x = torch.randn(2, 3, img_size, img_size)
    g = img_size // 16
    mask = torch.rand(2, g, g) < 0.4
    with torch.no_grad():
        oa, ob = a(x, mask, return_outputs=True), b(x, mask, return_outputs=True)
        assert (a.encoder.forward_features(x, mask) - b.encoder.forward_features(x, mask)).abs().max() < 1e-6
    assert (oa.pred - ob.pred).abs().max() < 1e-6
    return x, mask, oa, ob


def test_mmpretrain_pretrain_cli_to_ours(pico, tmp_path, capsys):
    model, _ = pico
    src = tmp_path / "mm.pth"
    torch.save({"meta": {"mmpretrain_version": "1.2.0"},
                "state_dict": {**mmpretrain_names(model.state_dict()),
                               "target_generator.gaussian_kernel": torch.ones(16, 16)}}, src)
    rc, out, _ = run(capsys, src, tmp_path / "ours.pth")
    assert rc == 0 and "mmpretrain checkpoint" in out
    ckpt = torch.load(tmp_path / "ours.pth", weights_only=True)
    assert ckpt["config"]["model"]["arch"] == "vit-pico" and ckpt["config"]["hog"]["gaussian_window"] == 16
    converted = build_pretrain_model(ckpt["config"]).eval()
    converted.load_state_dict(ckpt["model"], strict=True)
    _, _, oa, ob = assert_same_outputs(model, converted)
    assert abs(oa.loss.item() - ob.loss.item()) < 1e-7                        # same HOG window (16)


def slowfast_checkpoint(model: MaskFeat, separate_qkv=False) -> dict:
    sd = maskfeat_to_slowfast(model.state_dict())
    assert "pred_head.projections.0.weight" in sd and "norm.weight" not in sd
    if separate_qkv:
        for k in [k for k in sd if ".attn.qkv." in k]:
            for part, t in zip("qkv", sd.pop(k).chunk(3, dim=0)):
                sd[k.replace(".qkv.", f".{part}.")] = t
    sd["hogs.0.weight_x"] = torch.zeros(3, 1, 3, 3)                        # HOGLayerC buffers
    return {"epoch": 300, "model_state": sd, "optimizer_state": {}, "cfg": "MVIT:\n  PATCH_2D: true\n"}


@pytest.mark.parametrize("separate_qkv", [False, True])
def test_slowfast_round_trip_by_outputs(pico, tmp_path, capsys, separate_qkv):
    model, _ = pico
    src = tmp_path / "sf.pyth"
    torch.save(slowfast_checkpoint(model, separate_qkv), src)
    rc, out, _ = run(capsys, src, tmp_path / "ours.pth")
    assert rc == 0 and "slowfast checkpoint" in out
    ckpt = torch.load(tmp_path / "ours.pth", weights_only=True)
    assert ckpt["config"]["hog"]["gaussian_window"] == 0                  # SlowFast's HOG has no window
    converted = build_pretrain_model(ckpt["config"]).eval()
    converted.load_state_dict(ckpt["model"], strict=True)
    x, mask, _, ob = assert_same_outputs(model, converted)
    # the loss is against SlowFast's un-windowed HOG
    target = HOGGenerator(gaussian_window=0)(x)
    assert abs(ob.loss.item() - masked_mse(ob.pred, target, mask.flatten(1)).item()) < 1e-7


def test_slowfast_inverse_mapping_is_exact(pico):
    model, _ = pico
    back = slowfast_to_maskfeat(maskfeat_to_slowfast(model.state_dict()))
    assert set(back) == set(model.state_dict())
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())


def test_slowfast_video_and_classifier_refused(pico, tmp_path, capsys):
    model, _ = pico
    ck = slowfast_checkpoint(model)
    ck["model_state"]["patch_embed.proj.weight"] = torch.zeros(96, 3, 2, 16, 16)
    torch.save(ck, tmp_path / "video.pyth")
    rc, _, err = run(capsys, tmp_path / "video.pyth", tmp_path / "o.pth")
    assert rc == 2 and "video" in err
    ck = slowfast_checkpoint(model)
    ck["model_state"]["blocks.0.attn.rel_pos_h"] = torch.zeros(7, 32)
    torch.save(ck, tmp_path / "mvit.pyth")
    rc, _, err = run(capsys, tmp_path / "mvit.pyth", tmp_path / "o.pth")
    assert rc == 2 and "rel_pos_h" in err and len(err.strip().splitlines()) == 1


def mm_classifier(fx, *, avg: bool, head_name: str, num_classes=10) -> dict:
    g = torch.Generator().manual_seed(1)
    sd = {k: v for k, v in fx["state_dict"].items()
          if k.startswith("backbone.") and k != "backbone.mask_token"
          and (not avg or not k.startswith("backbone.ln1"))}
    if avg:   # MaskFeat fine-tuning: final_norm=False, out_type='avg_featmap' -> ln2 after pooling
        sd["backbone.ln2.weight"] = 1 + 0.1 * torch.randn(192, generator=g)
        sd["backbone.ln2.bias"] = 0.1 * torch.randn(192, generator=g)
    sd[f"{head_name}.weight"] = 0.02 * torch.randn(num_classes, 192, generator=g)
    sd[f"{head_name}.bias"] = 0.1 * torch.randn(num_classes, generator=g)
    return sd


@pytest.mark.parametrize("avg, head_name", [(True, "head.fc"), (False, "head.layers.head")])
def test_mmpretrain_classifier_to_timm_by_logits(mmpretrain_fixture, tmp_path, capsys, avg, head_name):
    fx = mmpretrain_fixture
    sd = mm_classifier(fx, avg=avg, head_name=head_name)
    torch.save({"meta": {}, "state_dict": sd}, tmp_path / "cls.pth")
    dst = tmp_path / "cls.safetensors"
    rc, out, _ = run(capsys, tmp_path / "cls.pth", dst)
    assert rc == 0 and "10 classes" in out and "num_classes=10)" in out
    kwargs = dict(num_classes=10, depth=2) | (dict(global_pool="avg", fc_norm=True) if avg else {})
    # timm keeps the head only when the pretrained config's class count matches: name it in the overlay
    vit = timm.create_model("vit_tiny_patch16_224", pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(dst), num_classes=10), **kwargs).eval()
    assert torch.equal(vit.head.weight, sd[f"{head_name}.weight"])
    x = fx["input_normalized"]
    enc = mmpretrain_fixture_model(fx).encoder                          # blocks checked against the fixture
    with torch.no_grad():
        if avg:   # mmpretrain: ln2(mean of patch tokens) -> fc, with no ln1
            tokens = enc.blocks(enc._pos_embed(enc.patch_embed(x)))
            pooled = F.layer_norm(tokens[:, 1:].mean(1), (192,), sd["backbone.ln2.weight"],
                                  sd["backbone.ln2.bias"], 1e-6)
        else:     # mmpretrain: ln1 over all tokens -> cls token -> head
            pooled = enc.forward_features(x)[:, 0]
        ref = F.linear(pooled, sd[f"{head_name}.weight"], sd[f"{head_name}.bias"])
        assert (vit(x) - ref).abs().max() < 1e-6                        # measured 0


def test_classifier_with_both_norms_refused(mmpretrain_fixture, tmp_path, capsys):
    sd = mm_classifier(mmpretrain_fixture, avg=True, head_name="head.fc")
    sd["backbone.ln1.weight"] = torch.ones(192)
    sd["backbone.ln1.bias"] = torch.zeros(192)
    torch.save({"state_dict": sd}, tmp_path / "cls.pth")
    rc, _, err = run(capsys, tmp_path / "cls.pth", tmp_path / "o.safetensors")
    assert rc == 2 and "ln1" in err and "ln2" in err


def test_pickle_with_code_is_refused(tmp_path, capsys):
    bad = tmp_path / "code.pth"
    torch.save({"state_dict": {}, "meta": argparse.Namespace(cfg="x")}, bad)
    rc, _, err = run(capsys, bad, tmp_path / "o.pth")
    assert rc == 2 and "weights_only" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.pth").exists()


def test_other_bad_inputs(pico, tmp_path, capsys):
    _, path = pico
    rc, _, err = run(capsys, tmp_path / "missing.pth", tmp_path / "o.pth")
    assert rc == 2 and "not found" in err
    rc, _, err = run(capsys, path, tmp_path / "o.pth")                       # ours -> ours
    assert rc == 2 and "already a maskfeat checkpoint" in err
    torch.save({"weights": {"a": torch.zeros(1)}}, tmp_path / "odd.pth")
    rc, _, err = run(capsys, tmp_path / "odd.pth", tmp_path / "o.pth")
    assert rc == 2 and "--from" in err


def test_shape_outside_our_archs_names_the_alternative(mmpretrain_fixture, capsys, tmp_path):
    rc, _, err = run(capsys, MMPRETRAIN_FIXTURE, tmp_path / "tiny2.pth")
    assert rc == 2 and "depth 2" in err and "--to timm" in err


@pytest.mark.slow
def test_vit_base_exports_to_the_plain_timm_name(tmp_path, capsys):
    """vit-base at 224 px loads as timm's vit_base_patch16_224 with no shape kwargs."""
    cfg = copy.deepcopy(PRETRAIN)
    cfg["model"].update(arch="vit-base", img_size=224)
    torch.manual_seed(0)
    model = build_pretrain_model(cfg).eval()
    torch.save({"model": model.state_dict(), "config": cfg}, tmp_path / "base.pth")
    dst = tmp_path / "base.safetensors"
    rc, out, _ = run(capsys, tmp_path / "base.pth", dst, "--no-verify")
    assert rc == 0
    assert (f"timm.create_model('vit_base_patch16_224', pretrained=True, "
            f"pretrained_cfg_overlay=dict(file='{dst}'), num_classes=0)") in out
    vit = timm.create_model("vit_base_patch16_224", pretrained=True,
                            pretrained_cfg_overlay=dict(file=str(dst)), num_classes=0).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (vit.forward_features(x) - model.encoder.forward_features(x)).abs().max() < 1e-4


def test_mmpretrain_classifier_to_a_finetune_checkpoint(pico, tmp_path, capsys):
    """MaskFeat's fine-tuning layout (no ln1, ln2 after mean pooling, head.fc) -> what `maskfeat finetune`
    writes."""
    from maskfeat.eval.classifier import build_classifier

    model, _ = pico
    g = torch.Generator().manual_seed(2)
    sd = {k: v for k, v in mmpretrain_names(model.state_dict()).items()
          if k.startswith("backbone.") and not k.startswith(("backbone.ln1", "backbone.mask_token"))}
    sd |= {"backbone.ln2.weight": 1 + 0.1 * torch.randn(96, generator=g),
           "backbone.ln2.bias": 0.1 * torch.randn(96, generator=g),
           "head.fc.weight": 0.05 * torch.randn(7, 96, generator=g),
           "head.fc.bias": 0.1 * torch.randn(7, generator=g)}
    torch.save({"state_dict": sd}, tmp_path / "cls.pth")
    rc, out, _ = run(capsys, tmp_path / "cls.pth", tmp_path / "ft.pth")
    assert rc == 0 and "finetune checkpoint" in out
    ckpt = torch.load(tmp_path / "ft.pth", weights_only=True)
    m = ckpt["config"]["model"]
    spec = (m["arch"], m["img_size"], m["patch_size"], m["num_classes"], m["global_pool"])
    assert spec == ("vit-pico", 64, 16, 7, "avg")
    clf = build_classifier(*spec).eval()
    clf.load_state_dict(ckpt["model"], strict=True)
    x = torch.randn(2, 3, 64, 64)
    enc = model.encoder
    with torch.no_grad():
        tokens = enc.blocks(enc._pos_embed(enc.patch_embed(x)))             # no final norm (final_norm=False)
        pooled = F.layer_norm(tokens[:, 1:].mean(1), (96,), sd["backbone.ln2.weight"],
                              sd["backbone.ln2.bias"], 1e-6)
        ref = F.linear(pooled, sd["head.fc.weight"], sd["head.fc.bias"])
        assert (clf(x) - ref).abs().max() < 1e-5
    # that converted checkpoint (like any `maskfeat finetune` checkpoint) exports to timm: same logits
    rc, out, _ = run(capsys, tmp_path / "ft.pth", tmp_path / "ft.safetensors")
    assert rc == 0 and "classifier: 96x2, 7 classes, pool avg" in out
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, embed_dim=96, depth=2, num_heads=3,
                            img_size=64, num_classes=7, global_pool="avg", fc_norm=True).eval()
    net.load_state_dict(load_file(str(tmp_path / "ft.safetensors")), strict=True)
    with torch.no_grad():
        assert (net(x) - ref).abs().max() < 1e-5


def test_timm_dir_encoder_loads_by_local_dir_with_same_features(pico, tmp_path, capsys):
    model, path = pico
    (path.parent / "log.jsonl").write_text('{"loss": 0.5, "step": 1}\n{"loss": 0.1234, "step": 2}\n')
    dst = tmp_path / "maskfeat-pico"
    rc, out, _ = run(capsys, path, dst, "--to", "timm-dir", "--license", "apache-2.0")
    assert rc == 0 and "checked: timm local-dir features equal ours" in out
    assert sorted(p.name for p in dst.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    vit = timm.create_model(f"local-dir:{dst}", pretrained=True).eval()
    assert tuple(vit.pretrained_cfg["input_size"]) == (3, 64, 64) and vit.num_classes == 0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (vit.forward_features(x) - model.encoder.forward_features(x)).abs().max() < 1e-5
    card = (dst / "README.md").read_text()
    assert "license: apache-2.0" in card and "| final training loss (log.jsonl) | 0.1234 |" in card
    assert "`model.arch`: \"vit-pico\"" in card and f'create_model("local-dir:{dst.name}"' in card
    # an existing non-empty folder is kept unless --overwrite; nothing half-written is left
    (dst / "model.safetensors").write_bytes(b"old")
    rc, _, err = run(capsys, path, dst, "--to", "timm-dir")
    assert rc == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert (dst / "model.safetensors").read_bytes() == b"old"
    assert run(capsys, path, dst, "--to", "timm-dir", "--overwrite")[0] == 0
    assert (dst / "model.safetensors").stat().st_size > 1000 and len(list(tmp_path.iterdir())) == 1


def test_timm_dir_finetuned_classifier_gives_same_logits(tmp_path, capsys):
    from maskfeat.convert.arch import VitShape, classifier_config
    from maskfeat.eval.classifier import build_classifier

    torch.manual_seed(1)
    cfg = classifier_config(VitShape(96, 2, 3, 16, 64, 4.0), "avg", 5)
    clf = build_classifier("vit-pico", 64, 16, 5, "avg").eval()
    with torch.no_grad():
        for p in clf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    (tmp_path / "run").mkdir()
    run_dir = tmp_path / "run"
    torch.save({"model": clf.state_dict(), "config": cfg, "step": 40, "epoch": 2}, run_dir / "best.pth")
    (run_dir / "log.jsonl").write_text('{"epoch": 1, "val_top1": 40.0}\n{"epoch": 2, "val_top1": 35.5}\n')
    dst = tmp_path / "ft-dir"
    rc, out, _ = run(capsys, tmp_path / "run" / "best.pth", dst, "--to", "timm-dir")
    assert rc == 0 and "checked: timm local-dir logits equal ours" in out
    net = timm.create_model(f"local-dir:{dst}", pretrained=True).eval()
    assert net.num_classes == 5
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert (net(x) - clf(x)).abs().max() < 1e-5
    card = (dst / "README.md").read_text()
    assert "| validation top-1, last / best epoch | 35.50 / 40.00 |" in card
    assert "| steps / epochs done | 40 / 2 |" in card
    assert "fine-tuned classifier" in card and "- image-classification" in card
