"""Checkpoints: written atomically (temp file + fsync + rename), read with weights_only=True."""
from __future__ import annotations

import pickle
import pickletools
import random
import re
import warnings
import zipfile
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
    """Load tensors and plain data only; a file that is no checkpoint, or one carrying code, is refused
    with a one-line error saying which (``file_kind``, ``refused_global``); a truncated or damaged one
    (``.pth`` or ``.safetensors``) is named in one line too."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    kind = file_kind(path)
    if kind:
        raise UserError(f"{path}: not a PyTorch checkpoint ({kind})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")              # torch's note on pickle protocols other than 2
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        name = refused_global(path, str(e))
        if name:
            raise UserError(f"{path}: refused: the pickle would run code ({name}); only tensors and plain "
                            "data are loaded (weights_only=True)") from None
        raise UserError(f"{path}: refused: not a pickle of tensors and plain data "
                        f"({_torch_reason(e)})") from None
    except (RuntimeError, EOFError, OSError, IndexError, ValueError, *_format_errors()) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: not a readable checkpoint (truncated or damaged? {first})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path}: expected a dict checkpoint, found {type(obj).__name__}")
    return obj


MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG image"), (b"\xff\xd8\xff", "JPEG image"), (b"GIF8", "GIF image"),
         (b"RIFF", "RIFF file: WebP / WAV / AVI"), (b"%PDF", "PDF document"), (b"\x1f\x8b", "gzip file"),
         (b"\x1a\x45\xdf\xa3", "Matroska / WebM video"))
PICKLE_SCAN_BYTES = 64 << 20        # a plain pickle scanned for its globals (no code runs) up to this size


def file_kind(path: Path) -> str | None:
    """What a file is when its first bytes say it is no PyTorch checkpoint ('PNG image', 'empty file',
    'zip archive without data.pkl', 'JSON text', ...); None for a pickle, a torch zip, a safetensors
    file, or bytes too damaged to tell (torch.load then names the fault)."""
    with open(path, "rb") as f:
        head = f.read(64)
    if not head:
        return "empty file"
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(path)
    if head[0] == 0x80 or _safetensors(path, head):     # pickle protocol >= 2 (torch's legacy format too)
        return None
    return _text_kind(path, head)


def _safetensors(path: Path, head: bytes) -> bool:
    """8 bytes little-endian header length (within the file), then the JSON header."""
    return head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _zip_kind(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None                                       # a cut-off torch zip: torch says where
    return None if any(n.endswith("data.pkl") for n in names) else "zip archive without data.pkl"


def _text_kind(path: Path, head: bytes) -> str | None:
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if not all(c.isprintable() or c in "\t\r\n" for c in text) or _is_pickle(path):
        return None                                       # binary, or a protocol-0 (text) pickle
    first = text.lstrip()
    if first[:1] in "{[":
        return "JSON text"
    if ":" in first.split("\n")[0] or first.startswith(("---", "#")):
        return "YAML / text file"
    return "text file"


def _is_pickle(path: Path) -> bool:
    try:
        _pickle_globals(path.read_bytes()[:PICKLE_SCAN_BYTES])
    except ValueError:
        return False
    return True


def _pickle_globals(data: bytes) -> list[str]:
    """The 'module.name' globals a pickle imports, read with pickletools (nothing runs); raises
    ValueError when ``data`` is not a whole pickle."""
    found, strings = [], []
    for op, arg, _ in pickletools.genops(data):
        if isinstance(arg, str):
            strings.append(arg)
        if op.name == "GLOBAL":
            found.append(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
            found.append(f"{strings[-2]}.{strings[-1]}")
        if op.name == "STOP":
            return found
    raise ValueError("no STOP")


SAFE_GLOBALS = {"collections.OrderedDict", "_codecs.encode", "builtins.set", "builtins.frozenset",
                "builtins.slice", "builtins.complex", "builtins.bytearray"}      # torch's own allow-list too
OS_ALIASES = {"posix": "os", "nt": "os"}


def refused_global(path: Path, message: str) -> str | None:
    """The global a refused pickle would import (torch's message, else a pickletools scan): 'os.system'."""
    named = re.search(r"GLOBAL ([\w.]+)", message)
    if named:
        found = [named.group(1)]
    else:
        try:
            found = _pickle_globals(_pickle_bytes(path)) or []
        except (ValueError, OSError, zipfile.BadZipFile):
            return None
    unsafe = [g for g in found if g.split(".")[0] != "torch" and g not in SAFE_GLOBALS]
    if not unsafe:
        return None
    module, _, name = unsafe[0].rpartition(".")
    return f"{OS_ALIASES.get(module, module)}.{name}"


def _pickle_bytes(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            member = next(n for n in z.namelist() if n.endswith("data.pkl"))
            return z.read(member)
    return path.read_bytes()[:PICKLE_SCAN_BYTES]


def _torch_reason(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Unsupported" in ln or "WeightsUnpickler error:" in ln]
    return (useful or lines or ["unsafe content"])[0][:160]


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
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    return set_device_rng_state(state, device if device is not None else torch.device("cpu"))
