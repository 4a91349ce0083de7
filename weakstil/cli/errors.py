"""How the commands fail: one ``error:`` line per problem, then exit code 1 (an input failed) or
2 (a usage error). Commands never catch :class:`~weakstil.errors.WeakSTILError` themselves:
:func:`reports_errors` wraps every command, and :class:`Failures` counts the inputs of a batch
that failed while the others go on.

Batch rule for I/O errors: an error writing one input's output is that input's failure and the
batch goes on, except when the output's file system is full (or read-only, or over quota): then
every later input would fail too, so the batch records the failure and stops
(:attr:`~weakstil.errors.OutputError.stops_batch`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import typer

from weakstil.cli.progress import EXIT_PIPE, quiet_closed_streams, stdout_closed  # noqa: F401 (EXIT_PIPE: said here too)
from weakstil.errors import RERUN_CONTINUES, OutputError, UsageError, WeakSTILError, from_os_error, short_reason, stop_fix

F = TypeVar("F", bound=Callable[..., Any])
#: Exit codes of a run stopped by Ctrl-C (128 + SIGINT) or SIGTERM (128 + SIGTERM), as shells report them.
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  #: (SIGHUP, when not ignored by nohup: 129)


def error_line(message: str) -> None:
    """One line on stderr, without rich wrapping."""
    text = " ".join(str(message).split())
    try:
        sys.stderr.write(f"error: {text}\n")
        sys.stderr.flush()
    except BrokenPipeError:
        if not stdout_closed():
            raise
        quiet_closed_streams()  # stderr's reader has gone (``2>&1 | head -1``): nobody to tell
        raise SystemExit(EXIT_PIPE) from None


def _stop_quietly_on_closed_stdout() -> None:
    """End the run as ``head``'s writer ends: nothing more to say (its reader is gone), exit 141."""
    quiet_closed_streams()
    raise typer.Exit(EXIT_PIPE)


def _verbose() -> bool:
    return logging.getLogger().isEnabledFor(logging.DEBUG)


#: Commands that keep each finished slide, so a rerun does only the rest (train, evaluate, tumorbed
#: train, report and demo write their output at the end: a rerun starts over; pretrain keeps checkpoints;
#: synth keeps each finished slide of a rerun with the same settings: weakstil.synth.generate_cohort).
PER_SLIDE_COMMANDS = frozenset({"tile", "embed", "score", "tumorbed_apply", "synth"})
#: Commands that load torch (warned of a small ``ulimit -v`` before they do, hunt 36f).
TORCH_COMMANDS = frozenset({"embed", "score", "train", "evaluate", "pretrain", "demo", "tumorbed_apply",
                            "tumorbed_train"})


def _unencodable(exc: Exception) -> str | None:
    """The one line for an error encoding a file name this locale or UTF-8 cannot hold, else None."""
    if not isinstance(exc, UnicodeEncodeError) or not isinstance(exc.object, str):
        return None
    from weakstil.errors import unencodable_name

    return unencodable_name(exc.object)


def _say_rerun(error: OutputError, command: str) -> None:
    """What a rerun of ``command`` does, in ``error``'s fix: only the per-slide commands continue."""
    if command not in PER_SLIDE_COMMANDS and error.fix:  # nothing of the run was kept to continue from
        error.fix = error.fix.replace(RERUN_CONTINUES, "--resume continues from its last checkpoint, if one "
                                      "was written" if command == "pretrain" else "a rerun starts over")


def reports_errors(command: F) -> F:
    """Run ``command``; a WeakSTILError ends it with its one line and exit 1 (2 for a UsageError).

    OS errors (disk full, permissions) and running out of memory are one line and exit 1 too;
    Ctrl-C is one line and exit 130 (SIGTERM: 143). Anything else is a bug: one line saying so (the traceback
    with ``--verbose``)."""
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        from weakstil.cli.progress import Terminated, interrupt_on_sigterm

        interrupt_on_sigterm()  # SIGTERM (e.g. SLURM's scancel) cleans up like Ctrl-C
        if command.__name__ in TORCH_COMMANDS:
            from weakstil.limits import small_address_space

            if (small := small_address_space()) is not None:  # said before torch can abort the process
                logging.getLogger("weakstil").warning("%s", small)
        try:
            return command(*args, **kwargs)
        except WeakSTILError as exc:
            if isinstance(exc, OutputError):  # e.g. train's HDF5 write on a full disk (it said 'a rerun continues')
                _say_rerun(exc, command.__name__)
            error_line(exc.one_line())
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None
        except OSError as exc:
            if isinstance(exc, BrokenPipeError) and stdout_closed():
                _stop_quietly_on_closed_stdout()
            error = from_os_error(exc)
            out = next((kwargs[k] for k in ("out", "out_option") if kwargs.get(k) is not None), None)
            if error.path is None and error.stops_batch and out is not None:
                # a write that names no file (PIL's PNG writer on a full disk): the folder it wrote into
                # (report said "error: No space left on device", naming nothing; hunt 35c; synth's --out
                # is its out_option, and said "error: File too large." naming nothing until hunt 44c)
                error = from_os_error(exc, out)
            _say_rerun(error, command.__name__)
            error_line(error.one_line())
            raise typer.Exit(1) from None
        except MemoryError as exc:
            from weakstil.limits import address_space_limit, resource_error_line

            error_line(resource_error_line(exc) if address_space_limit() is not None else  # (ulimit -v: hunt 36f)
                       "out of memory. Fix: lower --batch-size (or --crop-px, --workers), or use a machine with "
                       "more memory.")
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            signum = exc.signum if isinstance(exc, Terminated) else None
            rerun = ("a rerun continues where this one stopped" if command.__name__ in PER_SLIDE_COMMANDS
                     else "its last checkpoint, if one was written, is kept: --resume continues from it"
                     if command.__name__ == "pretrain"
                     else "a rerun starts over")
            import signal

            said = {None: "interrupted", int(signal.SIGTERM): "terminated (SIGTERM)"}.get(
                signum, "hung up (SIGHUP: its terminal closed)")
            try:
                error_line(f"{said}; unfinished outputs were removed ({rerun}).")
            except OSError:  # the terminal is gone (SIGHUP)
                pass
            raise typer.Exit(EXIT_INTERRUPTED if signum is None else 128 + signum) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:
            problem = _unencodable(exc)
            if problem is not None:  # a file name met past the slides' check (a cohort CSV's, --out)
                error_line(problem)
                raise typer.Exit(1) from None
            from weakstil.limits import resource_error_line

            limited = resource_error_line(exc)  # a limit of the machine (ulimit -v, -u), not a bug: hunt 36f
            if limited is not None:
                error_line(limited)
                raise typer.Exit(1) from None
            if _verbose():
                raise
            error_line(f"unexpected {type(exc).__name__}: {short_reason(exc)}. Fix: this is a bug in weakstil; "
                       "rerun with --verbose for the traceback and report it.")
            raise typer.Exit(1) from None

    return run  # type: ignore[return-value]


def _naming(exc: WeakSTILError, path: str | Path | None) -> WeakSTILError:
    """``exc`` naming the input ``path`` it failed on, when it names no file: a decode worker killed by
    the out-of-memory killer said "1 decode worker(s) died (exit code -9 ...)" in a batch of slides,
    naming none of them (hunt 36l)."""
    if path is not None and not exc.path and str(path) not in exc.message:
        exc.path = str(path)
    return exc


class Failures:
    """The inputs of a batch that failed: each is reported by one error line and the batch goes on
    (until an error that would fail every later input, see the module docstring)."""

    def __init__(self, memory_fix: str | None = None) -> None:
        self.memory_fix = memory_fix  #: the fix of an input out of memory (default: limits.MEMORY_FIX)
        self.count = 0
        self.inputs = 0  #: inputs seen (through :meth:`each`, or refused before it, e.g. a duplicate id)
        self._inside = False
        self.stopped: str | None = None  #: why the batch stopped early
        self.not_processed = 0  #: inputs left out after the batch stopped

    @contextlib.contextmanager
    def each(self, path: str | Path | None = None, out: str | Path | None = None) -> Iterator[None]:
        """Around one input: its WeakSTILError (or OSError) is reported and counted, not raised. ``out``: the
        folder its outputs go to, named by a full disk's error that names no file (PIL's PNG writer)."""
        self.inputs += 1
        self._inside = True
        try:
            yield
        except UsageError:
            raise
        except OutputError as exc:
            self.add(exc.one_line())
            if exc.stops_batch:
                self.stopped = exc.message
        except WeakSTILError as exc:
            self.add(_naming(exc, path).one_line())
        except OSError as exc:
            if isinstance(exc, BrokenPipeError) and stdout_closed():
                raise  # not this input's failure: the run ends (reports_errors)
            err = from_os_error(exc, path)
            if err.stops_batch and exc.filename is None and out is not None:  # the slide's name, "No space left"
                err = from_os_error(exc, out)  # the output's folder is full, not the slide's (tile; fault matrix h48d)
            self.add(err.one_line())
            if err.stops_batch:
                self.stopped = err.message
        except (MemoryError, RuntimeError) as exc:
            # this input's (a large slide's): the others go on, as in score. tile and embed ended the whole
            # batch with "out of memory", naming no slide (hunt 36l); another RuntimeError stays a bug
            from weakstil.limits import MEMORY_FIX, out_of_memory

            if (oom := out_of_memory(exc, path, self.memory_fix or MEMORY_FIX)) is None:
                raise
            self.add(oom.one_line())
        finally:
            self._inside = False

    @property
    def stop(self) -> bool:
        """True once an error means every later input would fail too (the batch then stops)."""
        return self.stopped is not None

    def add(self, message: str, *, counted: bool = False) -> None:
        """One failed input; ``counted``: it is already among :attr:`inputs` (a batch that counted them up front)."""
        self.count += 1
        self.inputs += 0 if self._inside or counted else 1
        error_line(message)

    def skipped(self, n: int) -> None:
        """Report the inputs left out after the batch stopped."""
        self.not_processed += n
        if n:
            error_line(f"stopped after: {self.stopped}; {n} more input(s) not processed. Fix: {stop_fix(self.stopped)} "
                       "(finished outputs are kept and skipped).")

    def exit(self) -> None:
        """Exit 1 when any input failed (after a summary line when the batch had several)."""
        if self.count:
            total = self.inputs + self.not_processed
            if total > 1:
                left = f", {self.not_processed} not processed" if self.not_processed else ""
                logging.getLogger("weakstil").warning("%d of %d inputs failed%s (the error lines above)", self.count,
                                                      total, left)
            raise typer.Exit(1)
