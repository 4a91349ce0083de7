"""Consoles of the log and the progress bars (rich, on stderr), and whether a pipe's reader has gone.

Outside :mod:`weakstil.cli`: :func:`weakstil.score.score_batch` is a library call too, and importing
the CLI package would import typer (and, under a dropped user, modules it may no longer read)."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any


#: stdout's reader went away (``weakstil info ... | head -1``): as a shell reports a process that SIGPIPE ended
EXIT_PIPE = 141


def _reader_gone(stream: Any) -> bool:
    """Whether ``stream`` is a pipe whose reader has gone."""
    try:
        import select

        poll = select.poll()
        poll.register(stream.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poll.poll(0))
    except (AttributeError, OSError, ValueError):  # no real stream (captured), or no poll() here
        return False


def stdout_closed() -> bool:
    """Whether stdout (or stderr, the log's) is a pipe whose reader has gone, so a BrokenPipeError is that and
    not one of a worker's pipes: the reader of ``| head -1`` exits after its line (hunt 35c: each later slide of
    ``weakstil info`` was an error line 'Broken pipe. Fix: check the file system', exit 1). stderr counts too:
    ``score ... 2>&1 | head -1`` closes the log's pipe (hunt 36b: exit 1 from rich's console)."""
    return _reader_gone(sys.stdout) or _reader_gone(sys.stderr)


def quiet_closed_streams() -> None:
    """Point stdout and stderr, where their reader has gone, at /dev/null: what is left in their buffers (and
    the log lines of the way out) goes nowhere, not to an 'Exception ignored ... BrokenPipeError' at exit."""
    import os

    for stream in (sys.stdout, sys.stderr):
        if _reader_gone(stream):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)


def log_console():
    """A console on stderr that ends the run as ``head``'s writers end when its reader has gone (``score ...
    2>&1 | head -1``): quietly, exit 141. rich's own ends it with exit 1 (hunt 36b), and leaves stderr pointing
    at the closed pipe; raised as SystemExit, which logging's handler does not swallow, and cleanup still runs."""
    from rich.console import Console

    class _LogConsole(Console):
        def on_broken_pipe(self) -> None:
            import os

            self.quiet = True
            quiet_closed_streams()
            try:  # this console's stream, even if poll() saw nothing (a reader gone between write and check)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.file.fileno())
                os.close(devnull)
            except (OSError, ValueError, AttributeError):
                pass
            raise SystemExit(EXIT_PIPE)

    return _LogConsole(stderr=True)


def _log_console():
    """The log handler's console, so log lines print above live bars."""
    from rich.logging import RichHandler

    return next((h.console for h in logging.getLogger().handlers if isinstance(h, RichHandler)), None) or \
        log_console()
