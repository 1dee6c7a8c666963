"""Files that appear under their final name only when complete (temp file + fsync + rename)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path


def temp_name(path: Path) -> Path:
    """The hidden name ``path`` is written under until it is complete ('.name.tmp<pid>')."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def atomic_path(path: str | Path):
    """``with atomic_path(path) as tmp:`` write (and check) the file ``tmp``; on success it is
    fsync'ed, given the mode of any new file under the umask, renamed to ``path`` and the folder
    fsync'ed, so ``path`` always holds the old or the new complete file; on any error (or a kill)
    only the hidden temp file is left or removed and ``path`` is untouched."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def atomic_file(path: str | Path):
    """Yields a binary file open for writing, made complete under ``path`` as ``atomic_path`` does."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            yield f


def write_atomic(path: str | Path, data: bytes) -> None:
    with atomic_file(path) as f:
        f.write(data)
