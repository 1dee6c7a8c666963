"""The fast paths give the reference numbers: compiled HOG, compiled training step, and the
throughput benchmark runs end to end on CPU (its figures are printed, never asserted)."""
import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from helpers import eager_and_compiled_losses, load_bench
from maskfeat.data.images import decode_rgb, skimage_photos
from maskfeat.models.hog import HOGGenerator


def photo_batch(size: int = 64, n: int = 4) -> torch.Tensor:
    """Normalised crops of real photos (flat areas, saturated pixels, edges) plus one noise image."""
    from torchvision.transforms.v2 import functional as TF

    imgs = [TF.resize(decode_rgb(p), [size, size], antialias=True) for p in skimage_photos()[:n - 1]]
    imgs.append(torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(0)))
    x = torch.stack(imgs).float()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    return (x - mean) / std


def scatter_reference(hog: HOGGenerator, x: torch.Tensor) -> torch.Tensor:
    """mmpretrain's formulation, written out: a full-resolution one-hot scatter, then cell sums."""
    b, c, h, w = x.shape
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), hog.sobel, groups=c).view(b, c, 2, h, w)
    gx, gy = g[:, :, 0], g[:, :, 1]
    mag = torch.sqrt(gx**2 + gy**2) * hog.gkern.repeat(h // 16, w // 16)
    bins = torch.floor(torch.atan2(gx, gy) / math.pi * 9).long() % 9
    full = torch.zeros(b, c, 9, h, w).scatter_add_(2, bins.unsqueeze(2), mag.unsqueeze(2))
    hist = F.normalize(full.view(b, c, 9, h // 8, 8, w // 8, 8).sum(dim=(4, 6)), dim=2)
    return hog.to_patches(hist)


def test_eager_and_compiled_hog_equal_the_scatter_reference():
    x = photo_batch(64)
    hog = HOGGenerator()
    ref = scatter_reference(hog, x)
    eager = hog(x)
    assert eager.shape == (4, 16, 108)
    assert (eager - ref).abs().max().item() < 1e-6          # measured 1.8e-7
    assert ref.abs().sum() > 10                              # not an all-zero comparison
    fused = HOGGenerator().set_impl("compiled")
    assert fused._compiled is not None
    out = fused(x)
    assert (out - ref).abs().max().item() < 1e-6            # measured 1.8e-7 (1.2e-7 from the eager HOG)
    assert fused._compiled is not None                       # it really ran compiled, no fallback


def test_hog_impl_auto_is_eager_on_cpu_and_a_failed_compile_falls_back(monkeypatch):
    assert HOGGenerator().set_impl("auto", "cpu")._compiled is None
    with pytest.raises(ValueError, match="hog.impl"):
        HOGGenerator().set_impl("fast")

    def broken(*args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no C++ compiler found")
        return fail
    monkeypatch.setattr(torch, "compile", broken)
    x = photo_batch(32)
    hog = HOGGenerator().set_impl("compiled")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = hog(x)
    assert any("computing HOG eagerly" in str(w.message) for w in caught)
    assert torch.equal(out, HOGGenerator()(x))
    assert hog._compiled is None


def test_compiled_training_step_gives_the_eager_losses(tmp_path):
    """Three optimizer steps on one fixed batch: forward, backward and AdamW compiled vs eager, equal
    within 3e-7 (measured 3e-8): dropping weight decay moves step 2 by 9.4e-7, gradient clipping by 1.3e-5."""
    x = photo_batch(32).mul(58).add(120).clamp(0, 255).to(torch.uint8)
    mask = torch.zeros(4, 2, 2, dtype=torch.bool)
    mask[:, 0, 1] = mask[1:, 1, 0] = True
    eager, comp = eager_and_compiled_losses(tmp_path, {"images": x, "mask": mask})
    assert eager[2] < eager[0]                                # the steps really train (lr 0.05)
    for a, b in zip(eager, comp):
        assert abs(a - b) < 3e-7, (eager, comp)


def test_throughput_bench_runs_on_cpu_and_writes_its_table(tmp_path, capsys):
    bench = load_bench("throughput")
    out = tmp_path / "tp.json"
    rc = bench.main(["--arch", "vit-pico", "--img-size", "64", "--batch", "4", "--steps", "3",
                     "--warmup", "1", "--compile", "eager", "--device", "cpu",
                     "--data", str(tmp_path / "jpegs"), "--make-data", "10", "--workers", "0",
                     "--json", str(out)])
    assert rc == 0
    assert len(list((tmp_path / "jpegs").glob("*.jpg"))) == 10
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["model"], r["variant"]) for r in rows] == [
        ("maskfeat", "eager"), ("maskfeat visible@0.4", "eager"), ("maskfeat visible@0.75", "eager"),
        ("timm ViT", "eager"), ("maskfeat", "data cpu, eager")]
    ours, vis40, vis75, timm, data = rows
    for r in rows:
        assert r["img_per_s"] > 0 and r["ms_per_step"] > 0
        assert math.isclose(r["img_per_s"], 4 / (r["ms_per_step"] / 1e3), rel_tol=0.02)
        assert r["steps"] == 3
        assert r is data or r["cpu_ms_per_step"] > 0
    # FLOPs of a forward + backward (2 per multiply-add), against a count by hand for the timm ViT:
    # every Linear 3x its forward (input and weight grads), the patch conv 2x (no input grad), and
    # attention's two matmuls (QK^T, AV: 2*2*T^2*D forward) 3x, counted on CPU too (unfused while counting)
    d, depth, patches = 96, 2, 16
    linear = d * 3 * d + d * d + 2 * d * 4 * d

    def encoder_by_hand(tokens):
        return (3 * 2 * tokens * linear * depth + 3 * 2 * 2 * tokens ** 2 * d * depth
                + 2 * 2 * patches * (3 * 16 * 16) * d)
    assert math.isclose(timm["gflop_per_img"] * 1e9, encoder_by_hand(1 + patches), rel_tol=1e-3)
    assert math.isclose(ours["enc_gflop_per_img"], timm["gflop_per_img"], rel_tol=1e-3)   # the same ViT
    # visible: the blocks see cls + the visible patches (6 of 16 masked at 0.4, 12 at 0.75); the patch
    # embedding still runs on every patch
    for r, masked in ((vis40, 6), (vis75, 12)):
        assert math.isclose(r["enc_gflop_per_img"] * 1e9, encoder_by_hand(1 + patches - masked), rel_tol=1e-3)
        assert r["gflop_per_img"] > r["enc_gflop_per_img"]                 # + decoder, head, HOG conv
        assert math.isclose(r["flops_vs_full"], r["gflop_per_img"] / ours["gflop_per_img"], rel_tol=1e-3)
        assert math.isclose(r["time_vs_full"], r["ms_per_step"] / ours["ms_per_step"], rel_tol=1e-3)
        assert math.isclose(r["cpu_time_vs_full"], r["cpu_ms_per_step"] / ours["cpu_ms_per_step"],
                            rel_tol=2e-3)
    assert timm["gflop_per_img"] < ours["gflop_per_img"] < 2.5 * timm["gflop_per_img"]   # + HOG conv, head
    assert vis75["enc_gflop_per_img"] < vis40["enc_gflop_per_img"] < ours["enc_gflop_per_img"]
    assert math.isclose(ours["overhead_vs_timm"], ours["ms_per_step"] / timm["ms_per_step"] - 1, abs_tol=1e-3)
    assert 0 <= data["data_wait_share"] <= 1
    table = capsys.readouterr().out.strip().splitlines()
    assert table[-7].startswith("| model") and "img/s" in table[-7] and "FLOP vs full" in table[-7]
    assert result["machine"]["torch"] == torch.__version__


def test_throughput_bench_flops_only(tmp_path, capsys):
    bench = load_bench("throughput")
    rc = bench.main(["--arch", "vit-pico", "--img-size", "64", "--flops-only", "--visible-ratios", "0.5",
                     "--compile", "eager", "--device", "cpu", "--json", str(tmp_path / "f.json")])
    assert rc == 0
    rows = json.loads((tmp_path / "f.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["maskfeat", "maskfeat visible@0.5", "timm ViT"]
    assert all(r["ms_per_step"] is None and r["steps"] == 0 and r["gflop_per_img"] > 0 for r in rows)
    assert "FLOPs only" in capsys.readouterr().out
