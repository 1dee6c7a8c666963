"""User-facing errors and the one boundary that turns them into a one-line message and exit code 2."""
from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable


class UserError(Exception):
    """Bad input (a path, a file, a setting), named in a one-line message."""


class ConfigError(UserError, ValueError):
    """A bad config file, key or value; the message is one line meant for the user."""


class NothingToDo(Exception):
    """A command that finds its work already done (a finished run): the message, exit status 0."""


class Interrupted(Exception):
    """A run stopped by a signal after writing its checkpoint: the message (said by the main
    process only), exit status 128 + signal."""

    def __init__(self, signum: int, message: str, say: bool = True):
        super().__init__(message)
        self.signum, self.say = int(signum), say


class _Signalled(BaseException):
    """Raised by ``stop_on_signals``' handler; a BaseException, so no ``except Exception`` swallows it."""


@contextmanager
def stop_on_signals():
    """Inside the block SIGINT / SIGTERM stop the work at once (for commands that keep only what is
    complete, such as prepare and convert): they leave it as ``Interrupted(signum, 'stopped by SIGINT')``,
    which the command re-raises saying what is kept; also when Python dropped the handler's exception
    (as it does in a fork hook). Only in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    got: list[int] = []
    owner = os.getpid()

    def handler(signum, frame):
        if os.getpid() != owner:    # a forked child (a DataLoader worker): Python's own behaviour
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        got.append(signum)
        raise _Signalled(signum)

    def unraisable(info):           # raised where Python drops it (a fork hook): kept in ``got``, no trace
        if not isinstance(info.exc_value, _Signalled):
            old_hook(info)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
    except BaseException:           # _Signalled, or what it broke on the way (a DataLoader's error)
        if not got:
            raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sys.unraisablehook = old_hook
    if got:                         # the process ends: no noise from objects the signal left half-built
        sys.unraisablehook = lambda info: None
        raise Interrupted(got[0], f"stopped by {signal.Signals(got[0]).name}")


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
    stderr and exit status 2, a run stopped by SIGTERM / SIGINT exits 143 / 130 (128 + signal) and
    a finished run started again exits 0. Every entry point (``maskfeat``, ``run_maskfeat.py``) goes
    through here. ``DataWarning``s print as one plain line."""
    plain_warnings()
    try:
        return int(fn() or 0)
    except UserError as e:
        print(f"{prog}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except NothingToDo as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 0
    except Interrupted as e:
        if e.say:
            print(f"{prog}: {e}", file=sys.stderr)
        return 128 + e.signum


class DataWarning(UserWarning):
    """Something about the data the user should know (files skipped, a split folder chosen): shown
    as one plain line ``warning: <message>`` (``plain_warnings``), not Python's source-line form."""


def plain_warnings() -> None:
    """Show ``DataWarning``s as one plain line; other warnings keep Python's format."""
    import warnings

    original = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        if issubclass(category, DataWarning):
            return f"warning: {message}\n"
        return original(message, category, filename, lineno, line)
    if getattr(warnings.formatwarning, "__name__", "") != "fmt":
        warnings.formatwarning = fmt
