"""Throughput of the MaskFeat pre-training step against a bare timm ViT step, in one process.

    python bench/throughput.py    # GPU: ViT-B/16, 224 px, batch 256; CPU: vit-mini, 112 px, batch 32
    python bench/throughput.py --amp bf16,fp16 --compile eager,compiled
    python bench/throughput.py --arch vit-base --img-size 224 --flops-only   # FLOP table only (cheap on CPU)
    python bench/throughput.py --arch vit-base --img-size 224 --batch 2 --grad-ckpt   # memory, ckpt off/on
    python bench/throughput.py --data /tmp/jpegs --make-data 4096 --workers 16 --decode cpu,device

Step mode times, on one in-memory batch (uint8 images and block masks already on the device),
after warm-up, the median of ``--steps`` synchronised steps of each of (taking turns, step by
step, so that a noisy machine slows them all alike):
  * ours: the very code ``maskfeat pretrain`` runs (Trainer: normalise on the device, HOG, mask
    token, encoder, head, masked MSE, backward, clip, fused AdamW, lr schedule);
  * ours with ``model.encoder=visible`` at each ``--visible-ratios`` mask ratio (the encoder sees the
    visible patches only, a light decoder predicts the masked ones): the same step, its own masks;
  * timm: a bare timm VisionTransformer of the same shape on the same batch (forward_features,
    mean-square of the tokens as the loss; no HOG, no mask, no head), with the same optimizer,
    clipping, AMP and compile setting: the in-run reference. ``vs timm`` = ours / timm - 1;
    ``time vs full`` and ``FLOP vs full`` = a row's step time and FLOPs / the full encoder row's; on a
    CPU also ``CPU-time vs full``, from this process's CPU time per step (robust on a shared machine).
Model TFLOP/s = FLOPs of one forward + backward (counted by torch.utils.flop_counter at batch 1: 2 per
multiply-add, so ViT-B/16 is 35.1 GFLOP forward, the "17.6 GFLOPs" of papers that count multiply-adds; timm's
attention is switched to its unfused form while counting, so that the attention matmuls are counted on
every device) x img/s. ``enc GFLOP`` is the encoder's share (forward + backward of ``model.encode``).

Data mode (``--data DIR``) runs the real loader (``data.source=folder``) and our step from JPEG files
to optimizer step and reports end-to-end img/s and the share of the time spent waiting for data.
``--make-data N`` first fills DIR with N JPEGs of ImageNet-like sizes cut from scikit-image's photos.

Memory mode (``--grad-ckpt``) runs our step with ``model.grad_checkpointing`` false and true and
reports the activation bytes saved for backward per image (counted with
``torch.autograd.graph.saved_tensors_hooks``: every distinct storage saved during the forward,
parameters excluded) and, on CUDA, the peak memory of a training step.

The table is printed last; ``--json`` writes the rows with the machine and versions.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from activation_memory import AMP, pretrain_config, run_memory_mode, synthetic_batch
from bench_util import (  # noqa: E402,F401
    flops_per_image,
    format_table,
    machine,
    make_jpeg_folder,
    memory_base,
    peak_memory_gib,
    reset_memory,
    sync,
    time_steps,
)

from maskfeat.engine.distributed import distributed_session, seed_everything
from maskfeat.engine.optim import build_optimizer
from maskfeat.models.vit import ARCHS
from maskfeat.tasks.pretrain_image import build_trainer  # noqa: E402


# -- ours: the Trainer's own step -------------------------------------------------------------------
def our_step(trainer, batch: dict):
    def step():
        trainer._forward_backward(batch, sync=True)
        trainer._optimizer_step()
        trainer.state.step += 1
        trainer.scheduler.step_update(trainer.state.step)
    return step


def our_flops(trainer, batch: dict) -> tuple[float, float]:
    """(FLOPs of the whole step's forward + backward, of the encoder's alone) per image."""
    one = {k: v[:1] for k, v in batch.items()}
    model = trainer.model

    def fwd_bwd():
        loss = trainer.step_fn(trainer._eager, one)
        loss.backward()

    def encoder_only():
        x = trainer.step_fn.normalise(one["images"])
        model.encode(x, one["mask"].to(x.device)).float().square().mean().backward()
    flops = []
    for fn in (fwd_bwd, encoder_only):
        model.zero_grad(set_to_none=True)
        flops.append(flops_per_image(fn, 1, model))
    model.zero_grad(set_to_none=True)
    return flops[0], flops[1]


# -- the reference: a bare timm ViT of the same shape -------------------------------------------------
class TimmStep:
    def __init__(self, cfg: dict, device: torch.device, amp: str, compiled: bool, mode: str):
        from timm.models.vision_transformer import VisionTransformer

        m = cfg["model"]
        seed_everything(0)
        self.model = VisionTransformer(img_size=m["img_size"], patch_size=m["patch_size"], num_classes=0,
                                       mlp_ratio=4.0, qkv_bias=True, **ARCHS[m["arch"]]).to(device)
        features = self.model.forward_features          # the reference has no classifier head
        self.fwd = torch.compile(features, mode=None if mode == "default" else mode) if compiled else features
        self.optimizer = build_optimizer(self.model, cfg["optim"], cfg["train"]["batch_size"])
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)
        self.clip = cfg["optim"]["clip_grad"]
        self.device = device
        mean = torch.tensor(cfg["data"]["mean"], device=device).view(1, -1, 1, 1) * 255
        std = torch.tensor(cfg["data"]["std"], device=device).view(1, -1, 1, 1) * 255
        self.norm = (mean, std)

    def loss(self, fwd, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.norm[0]) / self.norm[1]
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32,
                            enabled=self.dtype is not None):
            return fwd(x).float().square().mean()

    def step_fn(self, batch: dict):
        images = batch["images"]

        def step():
            loss = self.loss(self.fwd, images)
            self.scaler.scale(loss).backward()
            if self.scaler.is_enabled():
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        return step

    def flops(self, batch: dict) -> float:
        def fwd_bwd():
            self.loss(self.model.forward_features, batch["images"][:1]).backward()
        f = flops_per_image(fwd_bwd, 1, self.model)
        self.model.zero_grad(set_to_none=True)
        return f


# -- step mode ------------------------------------------------------------------------------------------
def row(name: str, variant: str, amp: str, times: list[float], batch: int, flops: float, mem,
        extra=None) -> dict:
    """One table row; ``times`` empty (--flops-only): FLOPs and memory only."""
    ms = statistics.median(times) * 1e3 if times else None
    r = {"model": name, "variant": variant, "amp": amp, "batch": batch,
         "ms_per_step": None if ms is None else round(ms, 2),
         "img_per_s": None if ms is None else round(batch / (ms / 1e3), 1),
         "tflops": None if ms is None else round(flops * batch / (ms / 1e3) / 1e12, 4),
         "gflop_per_img": round(flops / 1e9, 6),
         "peak_mem_gib": None if mem is None else round(mem, 2), "steps": len(times),
         "ms_min": round(min(times) * 1e3, 2) if times else None,
         "ms_max": round(max(times) * 1e3, 2) if times else None}
    r.update(extra or {})
    return r


def time_interleaved(steps: dict, device: torch.device, n: int) -> tuple[dict, dict]:
    """Wall seconds of each synchronised call, the variants taking turns (ABAB...), so that a noisy
    machine slows them alike and the ratio holds; and this process's CPU seconds of each call
    (all threads: on a shared CPU, the robust measure of the work a step does)."""
    times, cpu = {k: [] for k in steps}, {k: [] for k in steps}
    for _ in range(n):
        for k, step in steps.items():
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            sync(device)
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return times, cpu


def our_variants(args) -> dict[str, tuple[float, list[str]]]:
    """Our rows: name -> (mask ratio, config overrides). 'full' is today's MaskFeat (mask 0.4)."""
    out = {"full": (0.4, [])}
    for r in args.visible_ratios:
        out[f"visible@{r:g}"] = (r, ["model.encoder=visible", f"mask.ratio={r}"])
    return out


def prepare(args, device, name: str, build, label: str) -> dict:
    """Build one contender (``build() -> (step, flops, enc_flops, keep_alive)``), warm it up; its own peak
    memory."""
    base = memory_base(device)
    step, flops, enc, alive = build()
    if not args.flops_only:
        print(f"[{label}] {name}: warm-up ...", file=sys.stderr, flush=True)
        time_steps(step, device, args.warmup, 0)
    mem = None if device.type != "cuda" else peak_memory_gib(device) - base
    return {"step": step, "flops": flops, "enc": enc, "mem": mem, "alive": alive}


def run_step_mode(args, env, out_root: Path) -> list[dict]:
    rows = []
    device = env.device
    min_patches = 15 if args.img_size >= 224 else 2
    for amp in args.amp:
        for variant in args.compile:
            compiled = variant == "compiled"
            label = f"{variant} {amp}"
            reset_memory(device)
            runs, setups = {}, {}
            for name, (ratio, extra) in our_variants(args).items():
                run_dir = str(out_root / f"{name}_{amp}_{variant}")
                setups[name] = (pretrain_config(args, run_dir, amp, compiled, extra),
                                synthetic_batch(args.batch, args.img_size, 16, min_patches, device, ratio))

                def build(cfg=setups[name][0], batch=setups[name][1]):
                    trainer = build_trainer(cfg, env)
                    return (our_step(trainer, batch), *our_flops(trainer, batch), trainer)
                runs[name] = prepare(args, device, name, build, label)
            cfg, batch = setups["full"]                          # the reference runs the full row's batch

            def build_ref():
                ref = TimmStep(cfg, device, amp, compiled, args.compile_mode)
                return ref.step_fn(batch), ref.flops(batch), None, ref
            runs["timm"] = prepare(args, device, "timm reference", build_ref, label)
            if not args.flops_only:
                print(f"[{label}] {args.steps} steps each, taking turns ...", file=sys.stderr, flush=True)
            times, cpu = time_interleaved({k: r["step"] for k, r in runs.items()}, device,
                                          0 if args.flops_only else args.steps)
            rows += step_rows(args, runs, times, variant, amp, compiled)
            if device.type == "cpu" and not args.flops_only:
                add_cpu_time(rows[-len(times):], list(runs), cpu)
            runs.clear()
            print(format_table(rows[-len(times):]), file=sys.stderr, flush=True)
    return rows


def step_rows(args, runs: dict, times: dict, variant: str, amp: str, compiled: bool) -> list[dict]:
    """Rows of one (amp, compile) setting: ours (full, visible@r...) then the timm reference."""
    ref = runs["timm"]
    theirs = row("timm ViT", variant, amp, times["timm"], args.batch, ref["flops"], ref["mem"])
    out = []
    for name, r in runs.items():
        if name == "timm":
            continue
        trainer = r["alive"]
        fell_back = compiled and trainer.fwd is trainer._eager
        ours = row("maskfeat" if name == "full" else f"maskfeat {name}",
                   variant + (" (fell back to eager)" if fell_back else ""), amp, times[name], args.batch,
                   r["flops"], r["mem"], {"enc_gflop_per_img": round(r["enc"] / 1e9, 6),
                                          "flops_vs_full": round(r["flops"] / runs["full"]["flops"], 4)})
        if times[name]:
            ours["overhead_vs_timm"] = round(ours["ms_per_step"] / theirs["ms_per_step"] - 1, 4)
            ours["time_vs_full"] = round(ours["ms_per_step"] / statistics.median(times["full"]) / 1e3, 4)
        out.append(ours)
    return out + [theirs]


def add_cpu_time(rows: list[dict], names: list[str], cpu: dict) -> None:
    """CPU runs: the median CPU ms per step of each row and its ratio to the full row's."""
    full = statistics.median(cpu["full"])
    for r, name in zip(rows, names):                     # ours in run order, then timm (built last)
        r["cpu_ms_per_step"] = round(statistics.median(cpu[name]) * 1e3, 2)
        if name != "timm":
            r["cpu_time_vs_full"] = round(statistics.median(cpu[name]) / full, 4)


# -- data mode ------------------------------------------------------------------------------------------
def run_data_mode(args, env, out_root: Path) -> list[dict]:
    rows = []
    device = env.device
    amp, variant = args.amp[0], args.compile[-1]
    for decode in args.decode:
        reset_memory(device)
        extra = ["data.source=folder", f"data.root={args.data}", f"data.num_workers={args.workers}"]
        if decode != "cpu":
            extra.append(f"data.decode={decode}")
        cfg = pretrain_config(args, str(out_root / f"data_{decode}"), amp, variant == "compiled", extra)
        trainer = build_trainer(cfg, env)
        loader = trainer.loader
        waits, totals = [], []
        epoch, done = 0, 0
        print(f"[data {decode}] {len(loader.dataset)} files, {args.workers} workers ...", file=sys.stderr,
              flush=True)
        while done < args.warmup + args.steps:
            loader.set_epoch(epoch)
            t_end = time.perf_counter()
            for batch in loader:
                t_data = time.perf_counter()
                trainer._forward_backward(batch, sync=True)
                trainer._optimizer_step()
                sync(device)
                now = time.perf_counter()
                if done >= args.warmup:
                    waits.append(t_data - t_end)
                    totals.append(now - t_end)
                done += 1
                t_end = time.perf_counter()
                if done >= args.warmup + args.steps:
                    break
            epoch += 1
        total = sum(totals)
        r = {"model": "maskfeat", "variant": f"data {decode}, {variant}", "amp": amp, "batch": args.batch,
             "ms_per_step": round(total / len(totals) * 1e3, 2),
             "img_per_s": round(args.batch * len(totals) / total, 1),
             "data_wait_share": round(sum(waits) / total, 3), "workers": args.workers, "steps": len(totals),
             "tflops": None,
             "peak_mem_gib": None if peak_memory_gib(device) is None else round(peak_memory_gib(device), 2)}
        rows.append(r)
        del trainer, loader
    return rows


# -- output ---------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    gpu = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="vit-base" if gpu else "vit-mini", choices=sorted(ARCHS))
    p.add_argument("--img-size", type=int, default=224 if gpu else 112)
    p.add_argument("--batch", type=int, default=256 if gpu else 32)
    p.add_argument("--steps", type=int, default=20, help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=5 if gpu else 2)
    p.add_argument("--amp", default="bf16,fp16" if gpu else "fp32", help="comma list of fp32, bf16, fp16")
    p.add_argument("--compile", default="eager,compiled", help="comma list of eager, compiled")
    p.add_argument("--compile-mode", default="default",
                   help="torch.compile mode: "
                        "default | max-autotune-no-cudagraphs | reduce-overhead | max-autotune")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--data", default="", help="folder of JPEGs: also run the data mode")
    p.add_argument("--make-data", type=int, default=0, help="first create this many JPEGs in --data")
    p.add_argument("--workers", type=int, default=8 if gpu else 2)
    p.add_argument("--decode", default="cpu",
                   help="comma list of data.decode values for the data mode: cpu, device")
    p.add_argument("--skip-steps", action="store_true", help="data mode only")
    p.add_argument("--visible-ratios", default="0.4,0.75",
                   help="comma list of mask ratios for model.encoder=visible rows "
                        "('' = the full encoder only)")
    p.add_argument("--grad-ckpt", action="store_true",
                   help="memory mode: saved-activation bytes / peak memory, grad checkpointing off and on")
    p.add_argument("--flops-only", action="store_true",
                   help="FLOPs (and nothing timed): cheap for ViT-B on a CPU")
    p.add_argument("--json", default="work_dirs/bench_throughput.json")
    args = p.parse_args(argv)
    args.amp = [a.strip() for a in args.amp.split(",") if a.strip()]
    args.compile = [c.strip() for c in args.compile.split(",") if c.strip()]
    args.decode = [d.strip() for d in args.decode.split(",") if d.strip()]
    args.visible_ratios = [float(r) for r in args.visible_ratios.split(",") if r.strip()]
    if args.flops_only:
        args.batch = 1                                   # FLOPs are counted per image at batch 1
    if any(not 0.0 < r < 1.0 for r in args.visible_ratios):
        p.error("--visible-ratios: each ratio must be in (0, 1)")
    bad = [a for a in args.amp if a not in AMP] + [c for c in args.compile if c not in ("eager", "compiled")]
    if bad:
        p.error(f"unknown --amp / --compile value(s): {', '.join(bad)}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.make_data:
        if not args.data:
            raise SystemExit("--make-data needs --data DIR")
        make_jpeg_folder(Path(args.data), args.make_data)
    rows = []
    with tempfile.TemporaryDirectory(prefix="maskfeat_bench_") as tmp, \
            distributed_session(args.device) as env:
        if env.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if args.grad_ckpt:
            rows += run_memory_mode(args, env, Path(tmp))
        elif not args.skip_steps:
            rows += run_step_mode(args, env, Path(tmp))
        if args.data:
            rows += run_data_mode(args, env, Path(tmp))
    result = {"machine": machine(), "args": {k: v for k, v in vars(args).items()}, "rows": rows}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    timed = "FLOPs only (batch 1)" if args.flops_only else f"batch {args.batch}, median of {args.steps} steps"
    print(f"\n{args.arch}, {args.img_size} px, {timed}, "
          f"{result['machine'].get('gpu', 'CPU')} ({torch.get_num_threads()} threads), "
          f"torch {torch.__version__}; "
          f"JSON: {out}")
    if args.grad_ckpt:
        return 0
    print(format_table(rows))
    return 0 if all(r["img_per_s"] is None or not math.isnan(r["img_per_s"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
