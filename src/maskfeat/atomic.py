"""Files that appear under their final name only when complete (temp file + fsync + rename)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def temp_name(path: Path) -> Path:
    """The hidden name ``path`` is written under until it is complete ('.name.tmp<pid>')."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_file(path: str | Path):
    """Yields a binary file; on success it is flushed, fsync'ed and renamed to ``path`` (and the
    folder fsync'ed), on any error (or a kill) only the hidden temp file is left or removed."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_atomic(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)
