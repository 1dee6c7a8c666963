"""User-facing errors and the one boundary that turns them into a one-line message and exit code 2."""
from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """Bad input (a path, a file, a setting), named in a one-line message."""


class ConfigError(UserError, ValueError):
    """A bad config file, key or value; the message is one line meant for the user."""


def one_line(e: Exception) -> str:
    """The message; for an error re-raised from a DataLoader worker ('Caught UserError in DataLoader
    worker process 0. Original Traceback ...'), the worker's own message, the traceback's last line."""
    text = str(e)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith("Error") else last
    return text


def exit_code(prog: str, fn: Callable[[], int | None]) -> int:
    """Run ``fn``; a ``UserError`` (config errors included) becomes ``prog: error: <one line>`` on
    stderr and exit status 2. Every entry point (``maskfeat``, ``run_maskfeat.py``) goes through here."""
    try:
        return int(fn() or 0)
    except UserError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
