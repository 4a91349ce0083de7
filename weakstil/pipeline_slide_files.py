"""The workflow's look at its slide files before the first job: each cohort slide opens, has a µm/px (its
file's, the cohort CSV's ``mpp`` column or ``slide_mpp``) and is not scanned coarser than the workflow's
``mpp`` (its tile job refuses such a scan, and the workflow has no ``--allow-upsample``); the score slides
that cannot be tiled. Each file is opened, not read."""

from __future__ import annotations

import math
import os

from weakstil.errors import WeakSTILError


def _read_mpp(path: str) -> tuple[float | None, str | None]:
    """(the µm/px the slide states, None when none; why it cannot be opened or None)."""
    from weakstil.slide_backend import open_backend

    try:
        backend = open_backend(path)
    except WeakSTILError as exc:
        return None, exc.message
    except Exception as exc:
        return None, f"cannot be opened ({type(exc).__name__}: {exc})"
    try:
        return backend.mpp, None
    finally:
        backend.close()


def check_cohort_slides(config: dict, table, csv_path=None) -> None:
    """Every cohort slide (``table``, the cohort reader's) opens and states its µm/px, or its CSV's ``mpp`` or
    ``slide_mpp`` gives it, as score slides are checked, and is not coarser than ``mpp``: a bad one would fail
    its tile job, and training, later (hunt 37h: a 1 and a 2 µm/px scan passed this check, and their tile
    jobs then failed with the fix 'pass --allow-upsample', which the workflow has no key for)."""
    from weakstil.slide import COARSER_TOLERANCE
    from weakstil.slide_list import cohort_mpps
    slide_mpp, listed = config.get("slide_mpp"), cohort_mpps(csv_path, table) if csv_path else {}
    bad, coarse = [], []
    try:
        target = float(config.get("mpp") or 0.5)
    except (TypeError, ValueError):  # a bad mpp is the settings check's to name (a skipped one too)
        target = math.inf
    for path in table["path"]:
        mpp, why = _read_mpp(str(path))
        mpp = listed.get(os.path.abspath(str(path)), mpp if mpp is not None else slide_mpp)
        if why or mpp in (None, ""):
            bad.append(f"{path} ({why or 'states no microns-per-pixel and slide_mpp is null'})")
        elif isinstance(mpp, (int, float)) and mpp > target * (1 + COARSER_TOLERANCE):  # (a bad slide_mpp: named apart)
            coarse.append(f"{path} ({float(mpp):.4g} µm/px)")
    said, fixes = [], []  # both kinds at once: mending one should not reveal the other a run later
    if bad:
        said.append(f"{len(bad)} cohort slide{'s' if len(bad) > 1 else ''} cannot be tiled: {'; '.join(bad)}")
        fixes.append("replace or remove those rows; for slides stating no µm/px write each one's in an mpp column "
                     "of the CSV, or set slide_mpp for them all")
    if coarse:
        said.append(f"{len(coarse)} cohort slide{'s are' if len(coarse) > 1 else ' is'} scanned coarser than mpp "
                    f"{target:g} µm/px, which the workflow does not upsample: {'; '.join(coarse)}")
        fixes.append("remove the coarser scans' rows (or use finer scans of them), or set mpp to the coarsest "
                     "scan's µm/px for the whole cohort; when a file's µm/px is wrong, write the right one in the "
                     "CSV's mpp column")
    if said:
        raise WeakSTILError("; and ".join(said), path=config.get("cohort"), fix="; ".join(fixes))


def unusable_score_slides(config: dict, files: dict[str, str], score_keys: list[str],
                          cohort_keys: list[str]) -> tuple[set[str], dict[str, str]]:
    """(the slides whose files state no µm/px, when ``slide_mpp`` is set: it goes to them alone; the
    score slides outside the cohort that cannot be tiled -> why: they get no per-slide jobs, and
    the scoring gives them an error row). Each slide file is opened, not read."""
    slide_mpp = config.get("slide_mpp")
    checked = {k: _read_mpp(path) for k, path in files.items()
               if k in score_keys and k not in cohort_keys or slide_mpp is not None}
    no_mpp = {k for k, (mpp, why) in checked.items() if mpp is None and not why} if slide_mpp is not None else set()
    unusable = {k: why or "states no microns-per-pixel and slide_mpp is null" for k, (mpp, why) in checked.items()
                if k in score_keys and k not in cohort_keys and (why or (mpp is None and slide_mpp is None))}
    return no_mpp, unusable
