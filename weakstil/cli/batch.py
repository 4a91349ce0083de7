"""The loop every per-slide command runs: one slide id per output, slides shared out between runs
writing the same folder (:func:`weakstil.locks.in_turn`), one error line per failed slide, and a
stop when the output's file system is full (see :mod:`weakstil.cli.errors`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from weakstil.cli.errors import Failures
from weakstil.locks import in_turn

log = logging.getLogger(__name__)


def nameable(paths: list[Path], refuse: Callable[[str], None]) -> list[Path]:
    """``paths`` without the files whose names cannot be written into outputs in UTF-8 or cannot
    be encoded by the locale (:func:`weakstil.errors.unencodable_name`): each is ``refuse``d with
    one line (an error line of the batch) and the others go on; without this check such a slide's
    first output raised "a bug" and stopped the batch."""
    from weakstil.errors import unencodable_name

    kept = []
    for path in paths:
        problem = unencodable_name(str(path))
        if problem is None:
            kept.append(path)
        else:
            refuse(problem)
    return kept


def matched(paths: list[Path], refuse: Callable[[str], None]) -> list[Path]:
    """``paths`` without the glob patterns that matched nothing (an empty folder, a typo in
    ``'batch7/*.svs'``): each is ``refuse``d with one error line. ``score`` wrote such a pattern into
    results.csv as an ``error`` row of a slide named ``*.svs``, which stayed beside the slides of the
    corrected run (its report counted one slide more, in error) (hunt 31d)."""
    import glob
    import os

    from weakstil.errors import glob_miss_fix
    from weakstil.slide import SlideError

    kept = []
    for path in paths:
        if glob.has_magic(str(path)) and not os.path.lexists(path):
            refuse(SlideError("no file matches this pattern", path=path, fix=glob_miss_fix(str(path))).one_line())
        else:
            kept.append(path)
    return kept


def without_own_outputs(paths: list[Path], out: Path, suffixes: tuple[str, ...], command: str) -> list[Path]:
    """``paths`` without ``out`` itself and the files named like this command's outputs in it (``suffixes``:
    ``.h5``, ``_tiles.png``; hidden files: its marker, locks, temporaries). ``tile 'slides/**/*' --out
    slides/tiles`` (or ``--out slides`` with ``'slides/*'``) listed them as slides when run again: an error line
    each, exit 1 on every rerun (hunt 37c; ``score`` has its own, :func:`weakstil.cli.score._not_our_outputs`)."""
    import os

    out_r = os.path.realpath(out)

    def ours(p: Path) -> bool:
        if os.path.realpath(p) == out_r:
            return True
        return os.path.realpath(p.parent) == out_r and (p.name.startswith(".") or p.name.endswith(suffixes))

    kept, skipped = [], []
    for p in paths:
        (skipped if ours(p) else kept).append(p)
    if skipped:
        log.info("%d of the listed files are %s's own outputs in %s (%s...); not read as slides", len(skipped),
                 command, out, skipped[0].name)
    return kept


def unique_ids(paths: list[Path], failures: Failures, id_of: Callable[[Path], str] | None = None,
               made_from: Callable[[str], str | None] | None = None) -> list[Path]:
    """``paths`` with one file per slide id (each file left out gets one error line naming both
    files): outputs are named by slide id, so the second would overwrite the first. As in ``score``
    (:func:`weakstil.slide_ids.claim_ids`), a file that opens as a slide takes the id before one that
    does not (``S1.h5`` or ``S1.jpg`` listed before ``S1.svs`` by a ``slides/*`` glob), whatever the
    order; two slides: the first listed, unless the other is the file the id's existing output was made
    from (``made_from(id)``: its absolute path), which keeps it (listed second, its output was replaced by
    the first's; hunt 27a). (A file listed twice was already kept once by
    :func:`~weakstil.cli.options.expand_slides`.)"""
    import os

    from weakstil.slide import slide_id_from_path
    from weakstil.slide_ids import bad_id_error, opens_as_slide, same_id_problem

    id_of = id_of or slide_id_from_path
    paths = nameable(paths, failures.add)
    owner: dict[str, Path] = {}
    order: list[str] = []
    for path in paths:
        sid = id_of(path)
        if (bad := bad_id_error(path, sid)) is not None:  # as score refuses it (one rule for every command)
            failures.add(bad.one_line())
            continue
        key = sid.casefold()  # S1 and s1: one output file on macOS, Windows and SMB shares (hunt 32d)
        if key not in owner:
            owner[key] = path
            order.append(key)
            continue
        first = owner[key]
        first_opens, path_opens = opens_as_slide(first), opens_as_slide(path)
        if path_opens and not first_opens:  # the slide takes the id; the other file is left out
            owner[key], path, first = path, first, path
            first_opens, path_opens = True, False
        elif path_opens and made_from is not None and made_from(sid) == os.path.abspath(path) != os.path.abspath(first):
            owner[key], path, first = path, first, path  # the file the existing output was made from keeps the id
        sid = id_of(path)
        if path_opens or not first_opens:
            failures.add(f"{path}: {same_id_problem(sid, first, id_of(first))} ({sid}.h5). Fix: rename one of the "
                         "files, or give each its own --out folder.")
        else:
            kind = "a folder" if path.is_dir() else "not a slide file WeakSTIL can open"
            failures.add(f"{path}: is {kind}; slide id '{sid}' is {first}'s, which is processed. Fix: list only "
                         f"slide files (e.g. 'slides/*.svs' rather than 'slides/*').")
    return [owner[i] for i in order]


def for_each_slide(paths: list[Path], failures: Failures, target_of: Callable[[Path], Path],
                   work: Callable[[Path], None], written_meanwhile: set[Path] | None = None) -> None:
    """``work(path)`` for every path with its output's lock held; failures are counted and the
    batch goes on, unless an error means every later slide would fail too (disk full).
    ``written_meanwhile``: see :func:`weakstil.locks.in_turn` (for ``--overwrite``)."""
    def busy(path: Path, exc: Exception) -> None:  # held by another run past WEAKSTIL_LOCK_TIMEOUT: one line
        with failures.each(path):
            raise exc

    with contextlib.closing(in_turn(paths, target_of, written_meanwhile, busy)) as turns:
        for done, path in enumerate(turns, start=1):
            with failures.each(path, out=target_of(path).parent):
                work(path)
            if failures.stop:
                failures.skipped(len(paths) - done)
                break


def say_done(failures: Failures, verb: str, out: Path, up_to_date: int = 0) -> None:
    """The batch's closing line ('2 of 3 slides embedded -> OUT'), shown under ``-q`` as ``score``'s is:
    ``weakstil -q embed`` and ``-q tile`` printed nothing at all of a batch that succeeded (helper h40d)."""
    from weakstil.cli.progress import RESULT

    done = failures.inputs - failures.count  # (inputs: those tried and those refused before, e.g. a duplicate id)
    if not done and failures.count:  # nothing made: the error lines say it all, the last one last (as before)
        return
    log.info("%d of %d slides %s%s -> %s", done, failures.inputs + failures.not_processed, verb,
             f" ({up_to_date} of them up to date: skipped)" if up_to_date else "", out, extra=RESULT)
