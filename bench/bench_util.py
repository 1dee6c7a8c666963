"""What the benches share: device syncs and memory, timed steps, FLOP counting with attention
included, synthetic JPEG folders, machine facts."""
from __future__ import annotations

import gc
import platform
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def memory_base(device: torch.device) -> float:
    """GiB allocated now, the peak counter reset: what a model built next adds is its own."""
    if device.type != "cuda":
        return 0.0
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device) / 2**30


@contextmanager
def counted_attention(model: torch.nn.Module):
    """timm's attention as two explicit matmuls (``fused_attn`` off): torch's FLOP counter has no
    formula for the fused CPU kernel, so attention would go uncounted on a CPU."""
    mods = [m for m in model.modules() if hasattr(m, "fused_attn")]
    saved = [m.fused_attn for m in mods]
    for m in mods:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, f in zip(mods, saved):
            m.fused_attn = f


def flops_per_image(step_once, batch: int, model: torch.nn.Module) -> float:
    """FLOPs of one forward + backward at ``batch`` images, divided by ``batch``."""
    from torch.utils.flop_counter import FlopCounterMode

    with counted_attention(model), FlopCounterMode(display=False) as counter:
        step_once()
    return counter.get_total_flops() / batch


def time_steps(step, device: torch.device, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` synchronised calls after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def make_jpeg_folder(root: Path, count: int, seed: int = 0) -> None:
    """``count`` JPEGs of ImageNet-like sizes (shorter side 300-500 px), crops of scikit-image's photos."""
    from PIL import Image

    from maskfeat.data.images import decode_rgb, skimage_photos

    root.mkdir(parents=True, exist_ok=True)
    photos = [decode_rgb(p).permute(1, 2, 0).numpy() for p in skimage_photos()]
    photos = [p for p in photos if min(p.shape[:2]) >= 256]
    rng = np.random.default_rng(seed)
    for i in range(count):
        src = photos[i % len(photos)]
        h, w = src.shape[:2]
        ch, cw = int(rng.integers(h // 2, h + 1)), int(rng.integers(w // 2, w + 1))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        short = int(rng.integers(300, 501))
        scale = short / min(ch, cw)
        im = Image.fromarray(src[top:top + ch, left:left + cw]).resize((round(cw * scale), round(ch * scale)),
                                                                        Image.BILINEAR)
        im.save(root / f"img_{i:06d}.jpg", quality=90)


def _fmt(value, spec: str, scale: float = 1.0, suffix: str = "") -> str:
    return "-" if value is None else f"{value * scale:{spec}}{suffix}"


def machine() -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu": platform.processor() or
            platform.machine(), "threads": torch.get_num_threads()}
    try:
        import timm
        import torchvision
        info.update(timm=timm.__version__, torchvision=torchvision.__version__)
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def format_table(rows: list[dict]) -> str:
    head = ["model", "variant", "amp", "batch", "img/s", "ms/step", "time vs full", "CPU-time vs full",
            "GFLOP/img", "FLOP vs full",
            "enc GFLOP", "TFLOP/s", "peak GiB", "vs timm", "data wait"]
    lines = [head]
    for r in rows:
        lines.append([r["model"], r["variant"], r["amp"], str(r["batch"]), _fmt(r.get("img_per_s"), ".1f"),
                      _fmt(r.get("ms_per_step"), ".1f"), _fmt(r.get("time_vs_full"), ".2f", suffix="x"),
                      _fmt(r.get("cpu_time_vs_full"), ".2f", suffix="x"),
                      _fmt(r.get("gflop_per_img"), ".4g"), _fmt(r.get("flops_vs_full"), ".3f", suffix="x"),
                      _fmt(r.get("enc_gflop_per_img"), ".4g"),
                      _fmt(r.get("tflops"), ".3g"), _fmt(r.get("peak_mem_gib"), ".2f"),
                      _fmt(r.get("overhead_vs_timm"), "+.1f", 100, "%"),
                      _fmt(r.get("data_wait_share"), ".0f", 100, "%")])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    fmt = lambda line: "| " + " | ".join(c.ljust(w) for c, w in zip(line, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(lines[0]), sep] + [fmt(line) for line in lines[1:]])


def pss_mib(pid: int, field: str = "Pss") -> float:
    """``field`` (Pss, Pss_Anon, ...) of one process's /proc/<pid>/smaps_rollup in MiB (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in text.splitlines()
                 if line.startswith(field + ":")), 0.0)


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the DataLoader workers), from /proc/<pid>/task/*/children."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            pass
    return sorted(set(kids))
