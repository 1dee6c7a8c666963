"""The device layer: the one module that names device types.

``train.device`` (``eval.device`` for k-NN) is ``auto`` (the current accelerator, else the CPU), ``cpu``
or any device type torch knows once its plugin is imported (``cuda``, ``xpu``, ``npu``, ``mlu``,
``musa``, ``mps``, a PrivateUse1 name such as ``sdaa``), with an optional index (``cuda:1``).
``<section>.device_modules`` are imported first (``torch_npu``, ``torch_sdaa``, ...).

Everything the engine asks of a device goes through here: the choice and ``set_device`` per local
rank, ``synchronize``, the peak memory of the log, the RNG state of checkpoints, the AMP dtype and
its GradScaler, pinned memory, DDP's ``device_ids`` and the process-group backend. With
``torch.accelerator`` (torch >= 2.6) its calls are used; without it (torch 2.4 / 2.5) the device
module's own (``torch.get_device_module(type)``), each guarded with ``hasattr``.
"""
from __future__ import annotations

import importlib
import re

import torch

from ..errors import UserError

CPU, CUDA = "cpu", "cuda"
SPEC = re.compile(r"([a-z][a-z0-9_]*)(?::(\d+))?")      # type[:index]
AMP_CHOICES = ("auto", "bf16", "fp16", "none")
# probed for a device only where torch.accelerator is missing (torch 2.4 / 2.5)
_PROBE_TYPES = (CUDA, "xpu", "mps", "mtia", "hpu")
# torch.compile modes that capture CUDA graphs -> the same mode without them elsewhere
_CUDA_GRAPH_MODES = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}


def _accelerator_api():
    return getattr(torch, "accelerator", None)


def _module(dtype: str):
    """``torch.cuda``, ``torch.xpu``, ``torch.npu`` (once torch_npu is imported), ...; None if unknown."""
    if dtype == CPU:
        return torch.cpu
    get = getattr(torch, "get_device_module", None)
    try:
        return get(dtype) if get is not None else getattr(torch, dtype, None)
    except (RuntimeError, ValueError, AttributeError, TypeError):
        return None


def _available(dtype: str) -> bool:
    mod = _module(dtype)
    return dtype == CPU or bool(mod is not None and hasattr(mod, "is_available") and mod.is_available())


def _current_accelerator() -> str | None:
    """The type of the accelerator torch would use now (available), or None."""
    acc = _accelerator_api()
    if acc is not None and hasattr(acc, "current_accelerator"):
        try:
            dev = acc.current_accelerator(check_available=True)
        except TypeError:                      # torch 2.6: no check_available
            dev = acc.current_accelerator()
        return dev.type if dev is not None and _available(dev.type) else None
    names = [torch._C._get_privateuse1_backend_name(), *_PROBE_TYPES]
    return next((t for t in names if t != "privateuseone" and _available(t)), None)


def _make_device(dtype: str, index: int | None = None) -> torch.device:
    return torch.device(dtype) if index is None else torch.device(dtype, index)


def device_count(dtype: str | None = None) -> int:
    """Devices of ``dtype`` (default: the current accelerator) this process sees; 0 without one."""
    dtype = dtype or _current_accelerator()
    if not dtype or dtype == CPU or not _available(dtype):
        return 0
    mod = _module(dtype)
    return int(mod.device_count()) if hasattr(mod, "device_count") else 1


def offered() -> str:
    """What torch offers here, for error messages: 'cpu' or 'cpu, cuda (2 devices)'."""
    acc = _current_accelerator()
    return CPU if acc is None else f"{CPU}, {acc} ({device_count(acc)} devices)"


def is_cuda(device) -> bool:
    """For the CUDA-only features (nvJPEG, NVDEC, the compiled HOG by default, CUDA graphs)."""
    return getattr(device, "type", str(device).split(":")[0]) == CUDA


def is_cpu(device) -> bool:
    return getattr(device, "type", str(device).split(":")[0]) == CPU


def device_type(spec: str) -> str:
    """The type a device setting names, without checks: 'auto' -> the current accelerator or 'cpu'."""
    dtype = str(spec).split(":")[0]
    return (_current_accelerator() or CPU) if dtype == "auto" else dtype


def import_device_modules(names, key: str = "train.device_modules") -> None:
    """Import the vendor plugins (``torch_npu``, ``torch_sdaa``, ...) that register their device."""
    for name in names or ():
        try:
            importlib.import_module(name)
        except Exception as e:                 # a plugin may fail with anything: one line naming it
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise UserError(f"{key}: cannot import {name!r} ({type(e).__name__}: {first})") from None


def choose_device(spec: str, local_rank: int = 0, key: str = "train.device") -> torch.device:
    """The device of ``spec`` for this local rank: the index is (given index or 0) + local rank."""
    m = SPEC.fullmatch(str(spec))
    if m is None:
        raise UserError(f"{key}: {spec!r} is not a device (auto, cpu or type[:index]); "
                        f"torch offers {offered()}")
    dtype, index = m.group(1), m.group(2)
    if dtype == "auto" and index is None:
        dtype = _current_accelerator() or CPU
    if dtype == CPU:
        return _make_device(CPU)
    if not _available(dtype):
        plugins = key.rsplit(".", 1)[0] + ".device_modules"
        raise UserError(f"{key}: no {dtype!r} device here; torch offers {offered()} "
                        f"(a vendor backend needs its plugin in {plugins}, e.g. [torch_npu])")
    idx, count = int(index or 0) + local_rank, device_count(dtype)
    if idx >= count:
        raise UserError(f"{key}: {dtype} device {idx} wanted (index {int(index or 0)} + local rank "
                        f"{local_rank}) but torch sees {count}")
    return _make_device(dtype, idx)


def _device_fn(device: torch.device, name: str, accelerator_name: str | None = None):
    """``torch.accelerator.<accelerator_name or name>`` when ``device`` is of the current accelerator's
    type, else the device module's ``name`` (torch 2.4 / 2.5, or another type); None if neither has it."""
    acc = _accelerator_api()
    if acc is not None and _current_accelerator() == device.type:
        fn = getattr(acc, accelerator_name or name, None)
        if fn is not None:
            return fn
    return getattr(_module(device.type), name, None)


def set_device(device: torch.device) -> None:
    """Make ``device`` this process's current device (every later default allocation goes there)."""
    fn = None if is_cpu(device) else _device_fn(device, "set_device", "set_device_index")
    if fn is not None:
        fn(device.index)


def select_device(section: dict | str, local_rank: int = 0, key: str = "train") -> torch.device:
    """Import ``<key>.device_modules``, choose ``<key>.device`` for this local rank and make it current."""
    section = {"device": section} if isinstance(section, str) else section
    import_device_modules(section.get("device_modules", []), f"{key}.device_modules")
    device = choose_device(section.get("device", "auto"), local_rank, f"{key}.device")
    set_device(device)
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device`` (nothing to wait for on the CPU)."""
    fn = None if is_cpu(device) else _device_fn(device, "synchronize")
    if fn is not None:
        fn(device)


def peak_memory_mib(device: torch.device) -> int:
    """The log's ``memory``: peak bytes allocated on the device so far, in MiB (0 on the CPU)."""
    fn = None if is_cpu(device) else _device_fn(device, "max_memory_allocated")
    return int(fn() // 2**20) if fn is not None else 0


# -- RNG state in checkpoints ----------------------------------------------------------------------

def device_rng_state(device: torch.device) -> dict | None:
    """``{"type": "cuda", "states": [...]}`` for the device's generators (None on the CPU)."""
    mod = None if is_cpu(device) else _module(device.type)
    if not hasattr(mod, "get_rng_state_all"):
        return None
    return {"type": device.type, "states": list(mod.get_rng_state_all())}


def set_device_rng_state(rng: dict, device: torch.device) -> str | None:
    """Restore ``device_rng_state``'s dict (or an old checkpoint's 'cuda' list under ``rng``); a note
    (one line) when the checkpoint's device type is not this run's, nothing is restored then."""
    saved = rng.get("device_rng") or ({"type": CUDA, "states": rng[CUDA]} if CUDA in rng else None)
    saved_type = saved["type"] if saved else CPU
    if saved_type != device.type:
        if saved is None:
            return f"resume: the checkpoint was saved on {CPU}, no {device.type} RNG state to restore"
        return (f"resume: the checkpoint was saved on {saved_type}; its device RNG state is not restored "
                f"on {device.type} (device-side random draws differ from the original run)")
    if saved is None:
        return None
    mod, states = _module(device.type), list(saved["states"])
    count = device_count(device.type)
    if hasattr(mod, "set_rng_state_all") and len(states) == count:
        mod.set_rng_state_all(states)
    elif hasattr(mod, "set_rng_state"):
        for i, state in enumerate(states[:count]):
            mod.set_rng_state(state, i)
    return None


# -- mixed precision -------------------------------------------------------------------------------

def _autocast_available(dtype: str) -> bool:
    check = getattr(getattr(torch, "amp", None), "is_autocast_available", None)
    try:
        return bool(check(dtype)) if check is not None else dtype == CUDA
    except (RuntimeError, ValueError):
        return False


def bf16_supported(device: torch.device) -> bool:
    mod = _module(device.type)
    return bool(hasattr(mod, "is_bf16_supported") and mod.is_bf16_supported())


def amp_dtype(pref: str, device: torch.device, key: str = "train.amp") -> torch.dtype | None:
    """auto: bf16 where the device supports it, else fp16, fp32 where the device has no autocast
    (the CPU: fp32); bf16 and fp16 may be forced on the CPU; none: fp32."""
    if pref not in AMP_CHOICES:
        raise UserError(f"{key}: unknown value {pref!r}; choose auto, bf16, fp16 or none")
    if pref == "none":
        return None
    if is_cpu(device):                       # auto: fp32; bf16 / fp16 forced (a device's precision, emulated)
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(pref)
    if not _autocast_available(device.type):
        if pref == "auto":
            return None
        raise UserError(f"{key}: {pref} needs autocast, which torch does not offer on {device.type}; "
                        f"use {key}=none")
    if pref == "auto":
        return torch.bfloat16 if bf16_supported(device) else torch.float16
    return torch.bfloat16 if pref == "bf16" else torch.float16


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """The loss scaler of ``dtype``: on for fp16 only."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)


# -- loaders, DDP, process groups, compile -----------------------------------------------------------

def pin_memory(requested: bool) -> bool:
    """``data.pin_memory`` where pinned host memory is supported (an accelerator is present)."""
    return bool(requested) and _current_accelerator() is not None


def ddp_device_ids(device: torch.device) -> list[int] | None:
    return None if is_cpu(device) else [device.index]


def process_group_device(device: torch.device) -> torch.device | None:
    """``init_process_group(device_id=...)``: the accelerator this rank binds to (None on the CPU)."""
    return None if is_cpu(device) else device


def backend_for(device: torch.device, pref: str = "auto", key: str = "dist.backend") -> str:
    """``dist.backend``: a name is kept; auto is torch's default for the device type (nccl, xccl,
    hccl, ... as the plugin registers it), gloo on the CPU."""
    if pref != "auto":
        return pref
    if is_cpu(device):
        return "gloo"
    import torch.distributed as dist

    get = getattr(dist, "get_default_backend_for_device", None)
    try:
        name = get(device) if get is not None else dist.Backend.default_device_backend_map.get(device.type)
    except (ValueError, RuntimeError):
        name = None
    if not name:
        raise UserError(f"{key}: torch has no default process-group backend for {device.type}; "
                        f"name the vendor's (e.g. {key}=hccl)")
    return name


def compile_mode(mode: str, device: torch.device) -> tuple[str, str | None]:
    """``train.compile_mode`` for ``device`` and a note when a CUDA-graph mode falls back (elsewhere)."""
    if mode not in _CUDA_GRAPH_MODES or is_cuda(device) or is_cpu(device):
        return mode, None
    other = _CUDA_GRAPH_MODES[mode]
    return other, f"train.compile_mode={mode} uses CUDA graphs; compiling with mode {other} on {device.type}"
