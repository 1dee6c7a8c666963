"""`maskfeat linprobe`: frozen encoder + BatchNorm(no affine) + Linear, MAE's LARS rule, both data paths."""
import json

import pytest
import torch
from torch import nn

from eval_helpers import folder_overrides, make_folder
from helpers import save_pretrained
from maskfeat.cli import main
from maskfeat.defaults import LINPROBE
from maskfeat.eval.classifier import LinearProbe, Pooled
from maskfeat.eval.lars import build_probe_optimizer
from maskfeat.models import build_encoder


def test_lars_step_follows_mae_rule():
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    cfg = dict(LINPROBE["optim"], name="lars", lr=0.1, base_batch_size=256, weight_decay=0.0, momentum=0.9)
    opt = build_probe_optimizer(model, cfg, global_batch=1024)
    model(torch.randn(5, 6)).pow(2).sum().backward()
    gw, gb = model.weight.grad.clone(), model.bias.grad.clone()
    opt.step()
    lr = 0.1 * 1024 / 256
    trust = 0.001 * w0.norm() / gw.norm()          # weight matrices: layer-wise trust ratio (MAE's LARS)
    torch.testing.assert_close(model.weight.detach(), w0 - lr * trust * gw)
    torch.testing.assert_close(model.bias.detach(), b0 - lr * gb)   # biases: plain SGD step, no adaptation


def test_sgd_decays_matrices_only():
    model = nn.Linear(4, 2)
    opt = build_probe_optimizer(model, dict(LINPROBE["optim"], name="sgd", weight_decay=1e-4), 256)
    decays = {tuple(p.shape): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {(2, 4): 1e-4, (2,): 0.0} and isinstance(opt, torch.optim.SGD)


def test_probe_keeps_encoder_frozen_and_in_eval_mode():
    enc = build_encoder("vit-pico", img_size=32, patch_size=16, drop_path_rate=0.5)
    probe = LinearProbe(Pooled(enc, "avg"), num_classes=3).train()
    assert not enc.training and probe.head.training and probe.head[0].affine is False
    assert all(not p.requires_grad for p in enc.parameters())
    x = torch.randn(4, 3, 32, 32)
    probe(x).sum().backward()
    assert all(p.grad is None for p in enc.parameters()) and probe.head[1].weight.grad is not None
    with torch.no_grad():                            # drop path inactive: the features are deterministic
        torch.testing.assert_close(probe.features(x), probe.features(x))
        pooled = enc.forward_features(x)[:, 1:].mean(1)
    torch.testing.assert_close(probe.features(x), pooled)


@pytest.mark.parametrize("cached", [False, True])
def test_linprobe_cli(tmp_path, cached):
    root = make_folder(tmp_path / "shapes", n_train=12, n_val=8)
    enc_ckpt = tmp_path / "last.pth"
    pre = save_pretrained(enc_ckpt, img_size=32, patch=8)
    out = tmp_path / "lp"
    args = ["linprobe", *folder_overrides(root), f"model.pretrained={enc_ckpt}", "model.arch=",
            "train.batch_size=12", "train.epochs=3", "train.progress=false", f"train.output_dir={out}",
            "optim.warmup_epochs=1.0", "optim.name=sgd", "optim.lr=4.0", "model.pool=avg",
            f"data.cache_features={str(cached).lower()}", "aug.scale=[0.6,1.0]"]
    assert main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["cached_features"] is cached and [h["epoch"] for h in m["history"]] == [1, 2, 3]
    assert m["best_top1"] > 50.0                     # 3 classes: chance is 33%
    ckpt = torch.load(out / "last.pth", weights_only=True)["model"]
    bn_mean = ckpt["head.0.running_mean" if not cached else "0.running_mean"]
    assert bn_mean.abs().sum() > 0                   # BatchNorm statistics were learnt
    if not cached:                                   # the encoder inside the probe is untouched
        for k, v in pre.encoder.state_dict().items():
            torch.testing.assert_close(ckpt[f"features.encoder.{k}"], v, msg=k)
