"""Checks of every GPU path in one short run (also runs on CPU, where it checks the same code).

    python bench/gpu_check.py
    python bench/throughput.py --data /tmp/jpegs --make-data 8192 ...    # then

1. fused (compiled) HOG on the device == eager fp32 HOG on the device, and == the CPU HOG, within 1e-4;
2. compiled vs eager MaskFeat training step on the device: the same losses within 1e-3 (bf16 autocast);
3. data.decode=device (torchcodec decode_jpeg on the device) == data.decode=cpu images, per pixel.
Prints one line per check and exits 1 if any fails.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

from maskfeat.data.images import decode_rgb, skimage_photos
from maskfeat.engine.distributed import DistEnv
from maskfeat.models.hog import HOGGenerator
from maskfeat.tasks.pretrain import build_config
from maskfeat.tasks.pretrain_image import build_trainer


def photos(size: int, n: int, device) -> torch.Tensor:
    from torchvision.transforms.v2 import functional as TF

    paths = skimage_photos()
    imgs = [TF.resize(decode_rgb(paths[i % len(paths)]), [size, size], antialias=True) for i in range(n)]
    x = torch.stack(imgs).float()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255
    return ((x - mean) / std).to(device)


def check(name: str, ok: bool, detail: str, results: list) -> None:
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)


def check_hog(device, results) -> None:
    x = photos(224, 64, device)
    eager = HOGGenerator().to(device)
    ref = eager(x)
    cpu = HOGGenerator()(x.cpu())
    fused = HOGGenerator().to(device).set_impl("compiled")
    t0 = time.perf_counter()
    out = fused(x)
    compile_s = time.perf_counter() - t0
    diff = (out - ref).abs().max().item()
    check("fused HOG == eager HOG on the device", diff < 1e-4 and fused._compiled is not None,
          f"max abs diff {diff:.2e} (compile {compile_s:.1f} s, 64 x 224 px photos)", results)
    d_cpu = (ref.cpu() - cpu).abs().max().item()
    frac = ((ref.cpu() - cpu).abs() > 1e-4).float().mean().item()
    check("device HOG ~ CPU HOG", frac < 1e-3,
          f"max abs diff {d_cpu:.2e}, share of entries > 1e-4: {frac:.2e} "
          "(exactly-zero gradients may round differently in cuDNN and oneDNN)", results)
    if device.type == "cuda":
        for name, fn in (("eager", eager), ("fused", fused)):
            for _ in range(3):
                fn(x)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(20):
                fn(torch.cat([x] * 4))
            torch.cuda.synchronize()
            ms = (time.perf_counter() - t0) / 20 * 1e3
            print(f"      HOG {name}: {ms:.2f} ms per batch of 256 x 224 px")


def check_compiled_step(device, results, tmp: Path) -> None:
    amp = "bf16" if device.type == "cuda" else "none"
    x = photos(64, 8, device)
    images = (x * 58 + 120).clamp(0, 255).to(torch.uint8)
    mask = torch.rand(8, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.4
    batch = {"images": images, "mask": mask.to(device)}
    losses = {}
    for compiled in (False, True):
        cfg = build_config(None, ["model.arch=vit-pico", "model.img_size=64", "train.batch_size=8",
                                  f"train.compile={str(compiled).lower()}", f"train.amp={amp}",
                                  f"train.device={device.type}", f"train.output_dir={tmp / str(compiled)}",
                                  "train.progress=false", "data.samples_per_epoch=16", "data.num_workers=0",
                                  "optim.warmup_epochs=0", "optim.lr=0.05"])
        trainer = build_trainer(cfg, DistEnv(device=device))
        losses[compiled] = [trainer._forward_backward(batch, sync=True).item() for _ in range(1)]
        for _ in range(2):
            trainer._optimizer_step()
            losses[compiled].append(trainer._forward_backward(batch, sync=True).item())
        fell_back = compiled and trainer.fwd is trainer._eager
    diff = max(abs(a - b) for a, b in zip(losses[False], losses[True]))
    check(f"compiled step == eager step ({amp})", diff < 1e-3 and not fell_back,
          f"losses {['%.5f' % v for v in losses[False]]} vs {['%.5f' % v for v in losses[True]]}, "
          f"max diff {diff:.1e}"
          + (" (compile FELL BACK to eager)" if fell_back else ""), results)


def check_device_decode(device, results, tmp: Path) -> None:
    try:
        from maskfeat.data.device_decode import DeviceDecoder  # noqa: F401
    except ImportError:
        check("device JPEG decode", False, "maskfeat.data.device_decode missing", results)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_util import make_jpeg_folder

    root = tmp / "jpegs"
    make_jpeg_folder(root, 32)
    batches = {}
    for decode in ("cpu", "device"):
        cfg = build_config(None, ["model.arch=vit-pico", "model.img_size=224", "train.batch_size=16",
                                  f"train.device={device.type}", f"train.output_dir={tmp / decode}",
                                  "train.progress=false", "data.source=folder", f"data.root={root}",
                                  "data.num_workers=2", f"data.decode={decode}"])
        trainer = build_trainer(cfg, DistEnv(device=device))
        trainer.loader.sampler.set_epoch(0)
        batch = next(iter(trainer.loader))
        images = batch["images"] if decode == "cpu" else trainer.step_fn.decode(batch)
        batches[decode] = images.to(device)
    diff = (batches["cpu"].int() - batches["device"].int()).abs()
    # nvJPEG and libjpeg-turbo may differ by a few levels (IDCT, chroma upsampling); the crops are the same
    check("data.decode=device ~ data.decode=cpu", diff.float().mean().item() < 2.0,
          f"uint8 abs diff: mean {diff.float().mean().item():.3f}, max {diff.max().item()}", results)


def main() -> int:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device {name}, torch {torch.__version__}")
    results: list[bool] = []
    with tempfile.TemporaryDirectory() as tmp:
        for fn in (check_hog, check_compiled_step, check_device_decode):
            try:
                fn(device, results, *(() if fn is check_hog else (Path(tmp),)))
            except Exception as e:   # report and go on: one run checks everything
                check(fn.__name__, False, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}", results)
    print(f"{sum(results)} of {len(results)} checks passed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
