"""How the commands fail: one ``error:`` line per problem, then exit code 1 (an input failed) or
2 (a usage error). Commands never catch :class:`~weakstil.errors.WeakSTILError` themselves:
:func:`reports_errors` wraps every command, and :class:`Failures` counts the inputs of a batch
that failed while the others go on.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer

from weakstil.errors import UsageError, WeakSTILError

F = TypeVar("F", bound=Callable[..., Any])


def error_line(message: str) -> None:
    """One line on stderr, without rich wrapping."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def reports_errors(command: F) -> F:
    """Run ``command``; a WeakSTILError ends it with its one line and exit 1 (2 for a UsageError)."""
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WeakSTILError as exc:
            error_line(exc.one_line())
            raise typer.Exit(2 if isinstance(exc, UsageError) else 1) from None

    return run  # type: ignore[return-value]


class Failures:
    """The inputs of a batch that failed: each is reported by one error line and the batch goes on."""

    def __init__(self) -> None:
        self.count = 0

    @contextlib.contextmanager
    def each(self) -> Iterator[None]:
        """Around one input: its WeakSTILError is reported and counted, not raised."""
        try:
            yield
        except UsageError:
            raise
        except WeakSTILError as exc:
            self.add(exc.one_line())

    def add(self, message: str) -> None:
        self.count += 1
        error_line(message)

    def exit(self) -> None:
        """Exit 1 when any input failed."""
        if self.count:
            raise typer.Exit(1)
