"""Files that appear under their final name only when complete (temp file + fsync + rename)."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path


def temp_name(path: Path) -> Path:
    """The hidden name ``path`` is written under until it is complete ('.name.tmp<pid>')."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0                      # another user's process (alive); a nonsense PID is no process
    return True


def remove_stale_temp_files(folder: str | Path) -> list[tuple[str, int]]:
    """Remove from ``folder`` (not its sub-folders) the temp files (``temp_name``) of writers that are no
    longer running on this machine (killed mid-write: up to a whole checkpoint); a live PID's is left.
    Returns (name, bytes) of each removed."""
    removed = []
    for p in sorted(Path(folder).glob(".*.tmp*")):
        m = TEMP_NAME.match(p.name)
        if not m or not p.is_file() or _alive(int(m["pid"])):
            continue
        try:
            size = p.stat().st_size
            p.unlink()
        except OSError:
            continue                        # gone meanwhile, or not ours to remove: left as it is
        removed.append((p.name, size))
    return removed


def stale_note(folder: str | Path, removed: list[tuple[str, int]]) -> str:
    """One line naming what ``remove_stale_temp_files`` removed."""
    mb = sum(size for _, size in removed) / 2**20
    names = ", ".join(name for name, _ in removed[:3]) + (", ..." if len(removed) > 3 else "")
    return f"removed {len(removed)} temp file(s) of killed writers from {folder} ({names}; {mb:.1f} MB)"


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
