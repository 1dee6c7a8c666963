"""Checkpoints: written atomically (temp file + fsync + rename), read with weights_only=True."""
from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_file
from ..errors import UserError
from .device import device_rng_state, set_device_rng_state


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` so that ``path`` always holds either the old or the new complete file."""
    with atomic_file(path) as f:
        torch.save(state, f)


def _format_errors() -> tuple:
    """What a reader of a damaged file raises besides torch's own errors: torch.load hands a
    ``.safetensors`` file to the safetensors library, whose errors are its own class."""
    try:
        from safetensors import SafetensorError
    except ImportError:
        return ()
    return (SafetensorError,)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load tensors and plain data only; a file carrying code is refused, a truncated or damaged one
    (``.pth`` or ``.safetensors``) named, each with a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsafe content"
        raise UserError(f"{path}: refused to load (weights_only=True): {first[:160]}") from None
    except (RuntimeError, EOFError, OSError, ValueError, *_format_errors()) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable checkpoint (truncated or damaged? {first})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    return obj


def rng_state(device: torch.device | None = None) -> dict:
    """Host generators, and ``device_rng`` ({"type", "states"}) for the run's accelerator."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": random.getstate(),
    }
    device_state = device_rng_state(device) if device is not None else None
    if device_state is not None:
        state["device_rng"] = device_state
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> str | None:
    """Restore ``rng_state``'s dict on ``device`` (also an old checkpoint's "cuda" list); a one-line
    note when the device RNG state was saved on another device type (it is then left as it is)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    return set_device_rng_state(state, device if device is not None else torch.device("cpu"))
