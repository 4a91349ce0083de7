"""Atomic output files: write to a temporary name beside the target, then rename.

A killed run therefore never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it into place on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temps(path: str | Path) -> int:
    """Delete temporary files a killed run left for ``path`` (``.NAME.xxxx.tmp``); returns how many.

    Assumes one run writes to a directory at a time.
    """
    path = Path(path)
    n = 0
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            try:
                tmp.unlink()
                n += 1
            except FileNotFoundError:
                pass
    if n:
        log.info("%s: removed %d leftover temporary file(s) of an interrupted run", path, n)
    return n
