"""Errors that reach the user as one clear line."""

from __future__ import annotations

from pathlib import Path


class WeakSTILError(Exception):
    """A problem with the user's input or settings, explained in one line.

    ``path`` names the offending file; ``fix`` says what the user can do about it.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = []
        if self.path:
            parts.append(f"{self.path}: ")
        parts.append(self.message.rstrip("."))
        if self.fix:
            parts.append(f". Fix: {self.fix.rstrip('.')}")
        text = "".join(parts) + "."
        return " ".join(text.split())  # always one line


class SlideError(WeakSTILError):
    """The slide cannot be used (unreadable, no resolution, too coarse...)."""


class NoTissueError(WeakSTILError):
    """Tissue detection found nothing to tile; ``warnings`` says why the image may not be
    brightfield H&E (e.g. a fluorescence scan)."""

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None,
                 warnings: list[str] | None = None):
        self.warnings = list(warnings or [])
        super().__init__(message, path=path, fix=fix)


class UsageError(WeakSTILError):
    """The command line itself is wrong (an unknown device, contradictory options): exit code 2."""


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """An exception's message on one line, cut to ``limit`` characters (for ``error:`` lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < limit else text[:limit - 3] + "..."
