"""One writer per folder: an exclusive POSIX lock on ``<folder>/.run.lock`` naming its owner's PID.

Used by training runs (the run folder) and by ``maskfeat prepare`` (its ``--out``). A leaf module
(no imports from the layers) so that both can use it.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from .errors import UserError

LOCK_NAME = ".run.lock"


class RunLock:
    """An exclusive POSIX lock (``lockf``) on ``<folder>/.run.lock``, holding the owner's PID and host
    so that a second run can say whose it is. A POSIX lock belongs to the process: forked loader
    workers do not inherit it (an ``flock`` would stay held by them after the run let it go), and
    the kernel drops it when the process dies. ``key`` names the setting that chose the folder
    in the message a second run gets."""

    def __init__(self, folder: Path, key: str = "train.output_dir"):
        self.path = Path(folder) / LOCK_NAME
        self.key = key
        self.file = None

    def _take(self, file) -> None:
        try:
            fcntl.lockf(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            file.seek(0)
            owner = file.read(200).strip() or "unknown PID"
            file.close()
            raise UserError(f"{self.key}: {self.path.parent} is in use by another run ({owner}); "
                            f"wait for it to end or choose another {self.key}") from None
        self.file = file

    def check(self) -> None:
        """Take the lock if its file exists (writes nothing); a UserError if another run holds it."""
        if self.file is None and self.path.is_file():
            self._take(open(self.path, "r+"))

    def claim(self) -> None:
        """Create the folder and the lock file if needed, take the lock, write our PID into it."""
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._take(open(self.path, "a+"))
        self.file.seek(0)
        self.file.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        self.file.write(f"PID {os.getpid()} on {socket.gethostname()}, started {started}\n")
        self.file.flush()

    def release(self) -> None:
        if self.file is not None:
            self.file.close()            # closing the file drops the lock
            self.file = None
