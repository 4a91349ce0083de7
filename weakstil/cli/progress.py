"""Logging and progress bars of the commands (rich), and SIGTERM handling."""

from __future__ import annotations

import logging

# the consoles and closed-pipe checks live outside the CLI: score_batch (a library call) draws on them too
from weakstil.consoles import (  # noqa: F401 (imported from here by the commands)
    EXIT_PIPE, _log_console, log_console, quiet_closed_streams, stdout_closed,
)

#: Third-party loggers kept at WARNING.
QUIET_LOGGERS = ("PIL", "matplotlib", "h5py", "urllib3", "timm", "huggingface_hub")

#: ``log.info(..., extra=RESULT)``: a command's closing line (what it made and where: "12 of 12 slides scored
#: -> results.csv", evaluate's metrics), shown under ``-q`` / ``--log-level warning`` too; ``-q`` said
#: nothing at all of a batch that succeeded, and ``weakstil -q evaluate`` not its metrics (hunt 39k).
RESULT = {"result": True}


class _Shown(logging.Filter):
    """The records at ``level`` or above, and at ``level`` warning the closing lines marked :data:`RESULT`."""

    def __init__(self, level: int):
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or (self.level == logging.WARNING and getattr(record, "result", False))


def setup_logging(verbose: bool, level: int | None = None) -> None:
    """Log to stderr at ``level`` (None: debug with ``verbose``, else info; ``--quiet`` / ``--log-level``)."""
    from rich.logging import RichHandler

    level = level if level is not None else logging.DEBUG if verbose else logging.INFO
    verbose = level <= logging.DEBUG
    handler = RichHandler(console=log_console(), show_time=False, show_path=False, markup=False)
    handler.setLevel(min(level, logging.INFO))  # (the loggers below have levels of their own, which pass their
    handler.addFilter(_Shown(level))  # warnings on; the handler's filter holds back what --log-level hides)
    logging.basicConfig(level=min(level, logging.INFO), handlers=[handler], format="%(message)s", force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # a damaged TIFF's page warnings and errors ("invalid offset to first page", "invalid page offset") come before our own error line
    # about the file, which says what to do; shown with -v
    logging.getLogger("tifffile").setLevel(logging.DEBUG if verbose else logging.CRITICAL)


def info_hidden() -> bool:
    """Whether the log shows no INFO lines (``-q``, ``--log-level warning`` or ``error``)."""
    return any(isinstance(f, _Shown) and f.level > logging.INFO
               for h in logging.getLogger().handlers for f in h.filters)


def epoch_progress():
    """A rich progress display and an ``on_epoch`` callback feeding it (one bar per fold)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    # none under -q / --log-level warning: `weakstil -q train` printed its fold and qc bars (the last state of
    # each, as rich leaves them on a log file) beside the warnings and closing lines it promises (helper h42b)
    progress = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=_log_console(),
                        transient=False, disable=info_hidden())
    tasks: dict[str, int] = {}
    lazy = _StartedOnUse(progress)

    def on_epoch(stage: str, epoch: int, max_epochs: int, train_loss: float, val_loss: float, done: bool) -> None:
        lazy.start()
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=max_epochs, info="")
        info = "" if train_loss != train_loss else \
            f"loss {train_loss:.4f}" + ("" if val_loss != val_loss else f"  val {val_loss:.4f}")
        progress.update(tasks[stage], completed=max_epochs if done else epoch, info=info)

    return lazy, on_epoch


class _StartedOnUse:
    """A progress display that appears with its first update: a run that fails while checking its
    inputs prints its error line alone (no empty display before it)."""

    def __init__(self, progress):
        self.progress = progress
        self.started = False

    def start(self) -> None:
        if not self.started:
            self.progress.start()
            self.started = True

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        if self.started:
            self.progress.stop()


def bar_progress(unit: str):
    """A rich progress display on the log console, for loops with a known total; it appears with
    its first update (a run that fails before prints its error line alone)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return _ShownOnUpdate(Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TextColumn(unit), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                   console=_log_console(), transient=True))


class _ShownOnUpdate:
    """A rich Progress whose live display starts at the first ``update`` or ``advance``."""

    def __init__(self, progress):
        self._lazy = _StartedOnUse(progress)

    def __getattr__(self, name: str):
        # not on a log file or pipe: a transient bar shows nothing there but the empty line rich writes as it
        # stops (``score ... 2>&1 | head -1`` printed that empty line; hunt 36b)
        if name in ("update", "advance") and self._lazy.progress.console.is_terminal:
            self._lazy.start()
        return getattr(self._lazy.progress, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self._lazy.__exit__(*exc)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, SLURM's ``scancel``) or SIGHUP (the terminal or ssh session closed): cleaned
    up like Ctrl-C, exit 128 + the signal's number (143, 129)."""

    def __init__(self, signum: int = 15) -> None:  # 15: SIGTERM
        super().__init__(signum)
        self.signum = signum


def interrupt_on_sigterm() -> None:
    """Turn SIGTERM, and SIGHUP unless ignored (``nohup``), into :class:`Terminated` (a
    KeyboardInterrupt) so temporary outputs are cleaned up on the way out (SIGHUP killed the run
    where it stood, leaving its temporary files and locks until a rerun)."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated(signum)

    handler.weakstil = True  # type: ignore[attr-defined]
    try:
        signal.signal(signal.SIGTERM, handler)
        hup = getattr(signal, "SIGHUP", None)  # not on Windows
        current = None if hup is None else signal.getsignal(hup)
        if hup is not None and (current is signal.SIG_DFL or getattr(current, "weakstil", False)):
            signal.signal(hup, handler)
    except ValueError:  # not the main thread (e.g. called from tests in a thread)
        pass


class BatchLog:
    """Progress lines of a long batch for a log that is not a terminal (a SLURM or ``nohup`` file,
    ``2> log``): there the live bar shows nothing, so a 300-slide run said only its slides' qc lines,
    never how far it was nor how long it had left (hunt 35h). ``done(row)`` after each slide writes
    ``57 of 300 slides done (2 failed), 3 min 10 s; about 13 min left`` at each tenth of the batch
    and at least every :attr:`every_s` seconds; nothing for a batch under :data:`MIN_SLIDES` slides
    or on a terminal (its bar)."""

    #: the fewest slides of a batch that gets progress lines
    MIN_SLIDES = 10

    def __init__(self, total: int, every_s: float = 60.0, clock=None) -> None:
        import time

        self.total, self.every_s, self.clock = total, every_s, clock or time.monotonic
        self.count = self.failed = 0
        self.start = self.said = self.clock()
        self.step = self.said_at = 0  #: tenths of the batch said; slides done at the last line

    def done(self, row: dict) -> None:
        self.count += 1
        self.failed += row.get("status") == "error"
        now, step = self.clock(), self.count * 10 // max(self.total, 1)
        if self.total < self.MIN_SLIDES or self.count >= self.total or (step <= self.step and now - self.said < self.every_s):
            return
        # the pace since the last line: a rerun's slides skipped as already scored (milliseconds each) come
        # first, and an average over them promised the slides still to score in seconds
        pace = (now - self.said) / (self.count - self.said_at) if self.said_at else (now - self.start) / self.count
        self.step, self.said, self.said_at = step, now, self.count
        left = pace * (self.total - self.count)
        logging.getLogger("weakstil").info(
            "%d of %d slides done%s, %s; about %s left", self.count, self.total,
            f" ({self.failed} failed)" if self.failed else "", _duration(now - self.start), _duration(left))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
