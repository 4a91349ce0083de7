"""The slide ids of a batch: outputs are named by slide id, so one file per id.

When two listed files share an id (``S1.svs`` beside ``S1.jpg``, or an MRXS slide's data folder
``S1/`` beside another scan ``S1.tiff``), a file that opens as a slide takes the id before one that
does not, whatever the order they were listed in; the other gets an error row.
"""

from __future__ import annotations

from pathlib import Path

from weakstil.errors import WeakSTILError
from weakstil.slide import slide_id_from_path


def claim_ids(paths: list[Path], scored: dict[str, str] | None = None, id_of=slide_id_from_path
              ) -> tuple[list[Path], list[tuple[Path, WeakSTILError]]]:
    """(the files to score, one per slide id, in the order listed; the files refused, with why).

    ``scored``: the absolute path of the slide file an earlier run scored under each id (results.csv's
    finished rows). Of two slides listed under one id, that file keeps it, whatever the order: listed
    second, it was refused as the first one's namesake, and the first as the scored file's, so neither
    was scored and the finished slide's ``ok`` row got an ``error`` row under it (hunt 27a)."""
    import os

    from weakstil.slide_backend import can_open

    scored = scored or {}

    owner: dict[str, Path] = {}  # by the id case-folded: S1 and s1 are one file on macOS, Windows, SMB shares
    order: list[str] = []
    refused: list[tuple[Path, WeakSTILError]] = []
    for path in map(Path, paths):
        slide_id = id_of(path)
        if (bad := bad_id_error(path, slide_id)) is not None:
            refused.append((path, bad))
            continue
        key = slide_id.casefold()
        if key not in owner:
            owner[key] = path
            order.append(key)
            continue
        first = owner[key]
        if not opens_as_slide(first, can_open) and opens_as_slide(path, can_open):
            owner[key], path, first = path, first, path  # the slide takes the id; the other file is refused
        elif scored.get(slide_id) == os.path.abspath(path) != os.path.abspath(first) \
                and opens_as_slide(path, can_open):
            owner[key], path, first = path, first, path  # the file scored under this id keeps it
        refused.append((path, _refusal(path, id_of(path), first, can_open, id_of(first))))
    return [owner[i] for i in order], refused


def bad_id_error(path: Path, slide_id: str) -> WeakSTILError | None:
    """Why ``path`` cannot be processed under ``slide_id`` (:func:`weakstil.slide.slide_id_problem`, the rule a
    cohort CSV's slide_id follows), or ``None``: ``score`` wrote ``.dot.tiff``'s outputs as hidden files that
    ``train`` refused as a slide id."""
    from weakstil.slide import slide_id_problem

    why = slide_id_problem(slide_id)
    if why is None:
        return None
    return WeakSTILError(f"its {why.replace('slide_id', 'slide id', 1)}; train and evaluate refuse that id in a "
                         "cohort CSV too", path=path,
                         fix="rename the file (e.g. without the leading '.'), or list it in a CSV with another slide_id")


def same_id_problem(slide_id: str, owner: Path, owner_id: str | None = None) -> str:
    """Why a file whose slide id is ``owner``'s (or differs from ``owner_id`` only in case) is left out."""
    if owner_id is not None and owner_id != slide_id:  # hunt 32d: both were written, one file on a Mac or a share
        return (f"has the slide id '{slide_id}', which differs only in case from '{owner_id}' of {owner}: their "
                "outputs would be one file on a case-insensitive file system (macOS, Windows, SMB shares), as a cohort "
                "CSV refuses such ids")
    return f"has the same slide id '{slide_id}' as {owner}, and outputs are named by slide id"


def opens_as_slide(path: Path, can_open=None) -> bool:
    """Whether ``path`` is a file a slide backend recognises (never raises)."""
    if can_open is None:
        from weakstil.slide_backend import can_open
    try:
        return path.is_file() and can_open(path)
    except (OSError, WeakSTILError):
        return False


def _refusal(path: Path, slide_id: str, owner: Path, can_open, owner_id: str | None = None) -> WeakSTILError:
    if opens_as_slide(path, can_open):
        return WeakSTILError(same_id_problem(slide_id, owner, owner_id), path=path,
                             fix="rename one of the files, or score it into another --out")
    kind = "a folder" if path.is_dir() else "not a slide file WeakSTIL can open"
    return WeakSTILError(f"is {kind}; slide id '{slide_id}' is {owner}'s, which is scored", path=path,
                         fix="list only slide files (e.g. 'slides/*.svs' rather than 'slides/*')")
