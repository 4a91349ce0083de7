"""Where the slide of a WeakSTIL result file is: its recorded path, or where it was beside the result
(the slide and result folders moved or copied since scoring). A file found is used only when it is
the scan the result was made from (its content fingerprint)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)


class ResultFile(Protocol):
    """What this module reads of :class:`napari_weakstil.result_layers.ResultFile` (named here,
    not imported: result_layers imports this module)."""

    path: Path
    slide_id: str
    attrs: dict[str, Any] | None


def find_slide(res: ResultFile) -> Path | None:
    """The slide a result belongs to: its recorded path, else where it was relative to the result
    (``slide_relpath``: the slide and score folders moved or copied together), else a slide file of
    its name or named after the slide id beside the result or one folder up (results are often
    copied with their slides).
    A file that is not the scan the result was made from (its content fingerprint differs from
    the one the result records) is passed over with a warning: the heatmap would sit on other tissue."""
    for c in slide_candidates(res):
        if c.is_file() and _same_scan(res, c):
            return c
    return None


def slide_candidates(res: ResultFile) -> list[Path]:
    """Where a result's slide may be, in the order :func:`find_slide` tries them."""
    from napari_weakstil.slide_layers import SLIDE_SUFFIXES

    candidates: list[Path] = []
    recorded = (res.attrs or {}).get("slide_path")
    if recorded:
        p = Path(str(recorded))
        candidates += [p, res.path.parent / p] if not p.is_absolute() else [p]
    relative = (res.attrs or {}).get("slide_relpath")  # from the score's folder, when it was scored
    if relative:
        candidates.append(Path(os.path.normpath(res.path.parent / str(relative))))
    # (not every folder beside the result's: any folder of the same scan, another copy, would be taken)
    names = ([Path(str(recorded)).name] if recorded else []) + [f"{res.slide_id}{suffix}" for suffix in SLIDE_SUFFIXES]
    candidates += [folder / name for folder in (res.path.parent, res.path.parent.parent) for name in dict.fromkeys(names)]
    return list(dict.fromkeys(candidates))


def _same_scan(res: ResultFile, path: Path) -> bool:
    """Whether ``path`` is the scan ``res`` was made from (True when the result records no fingerprint)."""
    from weakstil.fingerprint import slide_fingerprint

    recorded = (res.attrs or {}).get("slide_fingerprint")
    if not recorded:
        return True
    found = slide_fingerprint(path)
    if found is None or found == str(recorded):
        return True
    log.warning("%s: %s is not the scan this result was made from (its content fingerprint differs); not shown "
                "under it", res.path, path)
    return False
