"""The loop every per-slide command runs: one slide id per output, slides shared out between runs
writing the same folder (:func:`weakstil.locks.in_turn`), one error line per failed slide, and a
stop when the output's file system is full (see :mod:`weakstil.cli.errors`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from weakstil.cli.errors import Failures
from weakstil.locks import in_turn


def unique_ids(paths: list[Path], failures: Failures, id_of: Callable[[Path], str] | None = None) -> list[Path]:
    """``paths`` without the files whose slide id an earlier file already has (each one error
    line naming both files): outputs are named by slide id, so the second would overwrite the
    first. (A file listed twice was already kept once by :func:`~weakstil.cli.options.expand_slides`.)"""
    from weakstil.slide import slide_id_from_path

    id_of = id_of or slide_id_from_path
    seen: dict[str, Path] = {}
    kept = []
    for path in paths:
        sid = id_of(path)
        if sid in seen:
            failures.add(f"{path}: has the same slide id '{sid}' as {seen[sid]}, and outputs are named by slide id "
                         f"({sid}.h5). Fix: rename one of the files, or give each its own --out folder.")
            continue
        seen[sid] = path
        kept.append(path)
    return kept


def for_each_slide(paths: list[Path], failures: Failures, target_of: Callable[[Path], Path],
                   work: Callable[[Path], None]) -> None:
    """``work(path)`` for every path with its output's lock held; failures are counted and the
    batch goes on, unless an error means every later slide would fail too (disk full)."""
    with contextlib.closing(in_turn(paths, target_of)) as turns:
        for done, path in enumerate(turns, start=1):
            with failures.each(path):
                work(path)
            if failures.stop:
                failures.skipped(len(paths) - done)
                break
