"""What the cohort workflow (pipelines/Snakefile) and ``weakstil preflight`` say before any job runs about
the tumour beds and a rerun: the cohort slides that ``annotations`` does not outline, and a changed setting
that Snakemake cannot redo because its records of the ``out`` folder are gone.

Snakemake redoes a job whose settings changed by its records of the job (``.snakemake/metadata`` in the
directory it runs in). With those records deleted (``rm -rf .snakemake``, a fresh clone, the project
moved to another directory), it compares file times alone: a run with a new ``mpp`` said "Nothing to be
done" and kept the tiles, features, beds and model of the old tiling (hunt 27e; 0 of 24 jobs). The last
run's ``settings.json`` says what the outputs were made with, the model's out-of-fold predictions which slides,
labels and groups it was trained on, and each tiles file which scan it was cut from (``slide_fingerprint``) at which
µm/px (``slide_mpp``: an edited ``mpp`` cell of the cohort CSV kept the old tiles, hunt 34c): a run that
finds one of them changed, no record of it, and the outputs it makes stale still in place is refused with the
folders (or a slide's files) to delete; and a run of another cohort into an `out` holding a trained cohort's
results (:func:`other_cohort`). Not covered: another encoder or detector written into the same folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TILING = ("tiles", "features", "score_slides")
_BEDS = ("tumorbed", "detector", "score_slides", "model")  # (beds set to null: the model's input set shrinks)
_MODEL = ("model",)

#: The folders under ``out`` each setting's jobs write: deleted, they are made again (and what reads them
#: follows by file time: new tiles re-embed, new features redo the beds, new beds retrain...). Keys that no
#: job's result depends on (``device``, ``threads``, ``weakstil``, ``slurm``) are not here, nor ``cohort``: its content
#: counts, not its path (:func:`_cohort_differs`).
STALE_WITH: dict[str, tuple[str, ...]] = {
    "mpp": _TILING, "tile_size": _TILING, "tissue_threshold": _TILING, "slide_mpp": _TILING,
    "encoder": ("features", "score_slides"), "weights": ("features", "score_slides"),
    "annotations": _BEDS, "tumorbed": _BEDS, "tumorbed_max_slides": _BEDS,
    "folds": _MODEL, "aggregator": _MODEL, "epochs": _MODEL, "members": _MODEL, "seed": _MODEL,
    "threshold": _MODEL, "group_column": _MODEL, "train_extra": _MODEL,
    "report_title": ("report",), "score_slides": ("scores",),
}
_PATH_KEYS = ("cohort", "annotations", "tumorbed", "encoder", "weights")


def unoutlined_slides(annotations: str | Path | None, keys: list[str], slide_ids: list[str]) -> list[str]:
    """The cohort slides (their CSV slide ids) without an outline in ``annotations``: found by the slide id,
    else by the slide file's name (``keys``), as the workflow's jobs and ``weakstil train --annotations`` find
    it."""
    from weakstil.annotations import find_annotation

    if not annotations:
        return []
    return [str(sid) for key, sid in zip(keys, slide_ids)
            if not any(find_annotation(annotations, name) for name in dict.fromkeys([str(sid), key]))]


def unoutlined_warning(annotations: str | Path | None, detector: Any, keys: list[str],
                       slide_ids: list[str], others: list[str] | tuple[str, ...] = ()) -> str | None:
    """The warning (without ``warning:``) for cohort slides that ``annotations`` does not outline while no
    detector is set: their tumour bed is the whole tissue in training. The workflow printed it at its start,
    ``weakstil preflight`` said nothing (hunt 27e). It names the outlines in the folder that match no slide
    (``keys``, ``slide_ids`` or ``others``: the score slides' keys), likely the missing ones misnamed, as
    ``weakstil train --annotations`` does (the workflow did not: hunt 34c)."""
    from weakstil.annotations import unmatched_annotations

    missing = [] if detector else unoutlined_slides(annotations, keys, slide_ids)
    if not missing:
        return None
    shown = ", ".join(missing[:10]) + (", ..." if len(missing) > 10 else "")
    unused = [p.name for p in unmatched_annotations(annotations, [*keys, *map(str, slide_ids), *others])]
    stray = (f"; {len(unused)} outline(s) there match no slide ({', '.join(unused[:5])}"
             f"{', ...' if len(unused) > 5 else ''}): misnamed?" if unused else "")
    return (f"{len(missing)} of {len(keys)} cohort slide(s) have no outline in {annotations} ({shown}): their "
            f"tumour bed is the whole tissue in training{stray}. Fix: name each outline <slide_id>.geojson or .xml "
            "(or the slide file's name), or set tumorbed to a detector folder or train")


def snakemake_record(path: str | Path, workdir: str | Path = ".") -> Path:
    """Where Snakemake (its file persistence) keeps the record of the job that made ``path``, as written."""
    from base64 import urlsafe_b64encode

    b64 = urlsafe_b64encode(str(path).encode()).decode()
    chunks = [b64[i:i + 254] for i in range(0, len(b64), 254)]  # (NAME_MAX 255: longer ids are split)
    return Path(workdir, ".snakemake", "metadata", *["@" + c for c in chunks[:-1]], chunks[-1])


def _same(key: str, last: Any, now: Any) -> bool:
    if last == now:
        return True
    if key in _PATH_KEYS and isinstance(last, str) and isinstance(now, str):
        try:
            return os.path.samefile(last, now)  # one file spelt two ways (settings.json keeps the spelling)
        except OSError:
            return False
    return False


def group_column_of(config: dict) -> str | None:
    """The cohort's group column: ``group_column``, else ``--group-column`` in ``train_extra``."""
    if config.get("group_column") not in (None, ""):
        return str(config["group_column"])
    import shlex

    extra = shlex.split(str(config.get("train_extra") or ""))
    for i, arg in enumerate(extra):
        if arg == "--group-column" and i + 1 < len(extra):
            return extra[i + 1]
        if arg.startswith("--group-column="):
            return arg.split("=", 1)[1]
    return None


def group_option_of(config: dict) -> str:
    """Where the workflow's user named the group column, as its errors say it: the ``group_column`` key,
    else ``--group-column`` (in ``train_extra``)."""
    return "group_column" if config.get("group_column") not in (None, "") else "--group-column"


def _cohort_differs(cohort: Any, oof: Path, group_column: str | None = None) -> bool:
    """The cohort CSV holds other slides, labels or groups than the model was trained on (its out-of-fold
    predictions, ``cv/oof_predictions.csv``: slide ids, true labels and the group of each): slides added or
    taken off, labels corrected in place, a slide moved to another patient or centre (another fold split: a
    patient's slides on both sides of it). Its content is a param of the train job, which Snakemake compares
    only with its records. ``group_column``: the train job's (None: ``group`` where the CSV has one)."""
    from weakstil import csv_cells
    from weakstil.cohort import read_cohort
    from weakstil.errors import WeakSTILError

    if not isinstance(cohort, str) or not oof.is_file():
        return False
    try:
        table = read_cohort(cohort, check_files=False, group_column=group_column).table
        # (csv_cells: the file's '=b is the slide =b, as write_predictions marked it; read raw, a cohort with such
        # an id always 'differed' and a run without Snakemake's records was refused, hunt 38c)
        trained = csv_cells.read_csv(oof, dtype={"slide_id": str, "group": str}, keep_default_na=False)
        now = sorted(zip(table["slide_id"].astype(str), table["stil"].astype(float).round(3),
                         table["group"].astype(str) if "group" in trained else table["slide_id"]))
        return now != sorted(zip(trained["slide_id"].astype(str), trained["stil_true"].astype(float).round(3),
                                 trained["group"] if "group" in trained else trained["slide_id"]))
    except (WeakSTILError, OSError, ValueError, KeyError):
        return False


def replaced_scans(out: str | Path, slides: dict[str, str], fingerprint: Callable[[str], Any],
                   mpp_of: Callable[[str], Any] | None = None,
                   mpp_source: Callable[[str], str] | None = None) -> tuple[list[str], list[str]]:
    """(the per-slide files (tiles, features, bed) made from another scan or at another µm/px, why: one
    phrase a slide). Another scan: the slide's file now holds another one than its tiles were made from (the
    tiles' recorded ``slide_fingerprint``); the tile job takes the scan's fingerprint as a param, which
    Snakemake compares only with its records (the slide file is no input of it). Another µm/px: ``mpp_of(key)``,
    the ``--slide-mpp`` its tile job now gets (the cohort CSV's ``mpp`` cell, ``slide_mpp``; None: the file's
    own), is not the ``slide_mpp`` its tiles were made at; the cohort CSV is no input of the tile job either,
    and an edited ``mpp`` cell kept the tiles (and features, bed, model) of the old resolution. ``mpp_source(key)``:
    where that --slide-mpp comes from (:func:`mpp_sources`), named in the phrase."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import TilesFile

    stale, why = [], []
    for key, path in slides.items():
        tiles = Path(out) / "tiles" / f"{key}.h5"
        try:
            attrs = TilesFile.read_header(tiles)[0] if tiles.is_file() else {}
        except WeakSTILError:
            continue
        made_from = attrs.get("slide_fingerprint")
        if made_from and (now := fingerprint(path)) not in (None, "None") and str(now) != str(made_from):
            why.append(f"{key}: its file holds another scan than its tiles were made from")
        elif mpp_of and (moved := _other_mpp(attrs, mpp_of(key), path, mpp_source and (lambda k=key: mpp_source(k)))):
            why.append(f"{key}: {moved}")
        else:
            continue
        stale += [str(f) for f in (tiles, Path(out) / "features" / f"{key}.h5", Path(out) / "tumorbed" / f"{key}.h5")
                  if f.exists()]
    return stale, why


def _other_mpp(attrs: dict, wanted: Any, path: str, source: Callable[[], str] | None = None) -> str | None:
    """How the µm/px a slide is now to be tiled at (``wanted``: its --slide-mpp, from ``source()``; None: its
    file's own) differs from its tiles' ``slide_mpp``; None when the same (6 decimals, as the caches compare) or
    not recorded."""
    from weakstil.slide_list import stated_mpp

    try:
        made = float(attrs["slide_mpp"])
        overridden = attrs.get("slide_mpp_source") == "override"
        if wanted is None and not overridden:
            return None  # read at the file's own µm/px then and now
        now = float(wanted) if wanted is not None else stated_mpp(path)
    except (KeyError, TypeError, ValueError):
        return None
    if now is not None and round(now, 6) == round(made, 6):
        return None
    said = f"{now:g} µm/px" if now is not None else "no µm/px"
    # which of the two gave it: "the cohort CSV mpp cell or slide_mpp" left the lab to guess (hunt 34f)
    given = (source() if source else "the cohort CSV mpp cell or slide_mpp") if wanted is not None else "its file"
    return f"its tiles were made at {made:g} µm/px, it is now read at {said} ({given})"


def _listed_mpps(cohort: str | Path, table, cohort_keys: list[str]) -> dict[str, tuple[Any, Any]]:
    """key -> (its mpp cell in the cohort CSV, the CSV line it is on, or None) for the slides that have one."""
    from weakstil.slide_list import cohort_mpps

    listed = cohort_mpps(Path(cohort), table)
    rows = table["row"] if "row" in table else [None] * len(table)
    return {k: (listed[p], r) for k, p, r in zip(cohort_keys, map(os.path.abspath, map(str, table["path"])), rows)
            if p in listed}


def mpp_sources(cohort: str | Path, table, cohort_keys: list[str]) -> Callable[[str], str]:
    """key -> where the workflow's --slide-mpp of that slide comes from (:func:`given_mpps`, the Snakefile's
    ``given_mpp``): its mpp cell in the cohort CSV (with the line), else the config's ``slide_mpp``. The CSV is
    read when first asked (only for a slide found tiled at another µm/px)."""
    import functools

    @functools.cache
    def lines() -> dict[str, Any]:
        return {k: row for k, (_, row) in _listed_mpps(cohort, table, cohort_keys).items()}

    def source(key: str) -> str:
        if key not in lines():
            return "the config's slide_mpp"
        row = lines()[key]
        return f"the mpp cell of the cohort CSV {cohort}" + (f", line {int(row)}" if row is not None else f", {key}")
    return source


def given_mpps(config: dict, cohort: str | Path, table, files: dict[str, str], cohort_keys: list[str],
               no_mpp: set[str]) -> Callable[[str], Any]:
    """key -> the --slide-mpp the workflow's jobs give that slide (the cohort CSV's mpp cell where it differs from
    what its file states, else ``slide_mpp`` for a slide in ``no_mpp``; None: its file's own), as the Snakefile's
    ``given_mpp``: for ``weakstil preflight``'s check of outputs tiled at another µm/px."""
    from weakstil.slide_list import overriding_mpps

    by_key = {k: mpp for k, (mpp, _) in _listed_mpps(cohort, table, cohort_keys).items()}

    def given(key: str) -> Any:
        if key in by_key:
            return overriding_mpps({files[key]: by_key[key]}).get(files[key])
        return config.get("slide_mpp") if key in no_mpp else None
    return given


def stale_without_records(out: str | Path, config: dict, slides: dict[str, str] | None = None,
                          fingerprint: Callable[[str], Any] | None = None,
                          mpp_of: Callable[[str], Any] | None = None,
                          mpp_source: Callable[[str], str] | None = None) -> str | None:
    """Why this run would keep outputs made with other settings, with the fix; None when Snakemake has its
    records of ``out`` here (it redoes what changed), when ``out`` holds no earlier run's ``settings.json``, or
    when no setting that a job's result depends on changed. The fix names the folders (and ``settings.json``)
    to delete; once deleted the run passes and makes them again. ``slides`` (key -> file), ``fingerprint`` and
    ``mpp_of`` (key -> its tile job's --slide-mpp; ``mpp_source``: where it comes from): per-slide files of another
    scan or µm/px (:func:`replaced_scans`)."""
    if not isinstance(out, (str, Path)) or not str(out).strip():
        return None
    settings = Path(out) / "settings.json"
    if not settings.is_file() or snakemake_record(settings).exists():
        return None
    try:
        last = json.loads(settings.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    now = json.loads(json.dumps(dict(config), default=str))  # as the settings rule writes it
    if not isinstance(last, dict):
        return None
    changed = [k for k in STALE_WITH if not _same(k, last.get(k), now.get(k))]
    folders = dict.fromkeys(f for k in changed for f in STALE_WITH[k])
    if _cohort_differs(now.get("cohort"), Path(out) / "model" / "cv" / "oof_predictions.csv", group_column_of(now)):
        changed.append("cohort")
        folders.update(dict.fromkeys(_MODEL))
    stale = [str(Path(out) / f) for f in folders if (Path(out) / f).exists()]
    rescanned, slides_why = (replaced_scans(out, slides, fingerprint, mpp_of, mpp_source)
                             if slides and fingerprint and "tiles" not in folders else ([], []))
    if rescanned:
        changed.append("scans")
        stale += rescanned
    if not stale:
        return None
    said = {"cohort": f"cohort {now['cohort']}: other slides, labels or groups than the model was trained on",
            "scans": "slide " + "; ".join(slides_why[:5]) + ("; ..." if len(slides_why) > 5 else "")}
    what = ", ".join(said.get(k) or f"{k} {json.dumps(last.get(k))} -> {json.dumps(now.get(k))}" for k in changed)
    back = [k for k in changed if k not in said]  # (an edited cohort or a new scan has no setting to set back)
    return (f"{out} was made with other settings or slides ({what}: its settings.json, tiles and model say so) and "
            f"Snakemake has no record of it in "
            f"this directory ({Path('.snakemake').resolve()}: deleted, or the project moved), so it would keep the "
            f"old outputs (\"Nothing to be done\"). Fix: delete {' '.join(stale)} {settings} (the run makes what the "
            f"new settings need again)" + (f", or set {', '.join(back)} back" if back else ""))


def older_features(out: str | Path) -> str | None:
    """Why ``out/features`` holds feature caches an older (or newer) WeakSTIL embedded, with the fix; None when
    none does. Snakemake's records follow the Snakefile and the settings, not the installed WeakSTIL: after an
    upgrade a run in an old run folder planned only settings.json and the report (hunt 36k: features of stain
    estimate 5 under a WeakSTIL of 8, and their model, kept), and its score job then deleted the earlier
    scores and was refused ('the model fits no slide scored by this WeakSTIL'), with a fix ('train the model
    again') that rerunning the workflow does not carry out. Deleted, the features are embedded again and the
    beds, model and scores follow by file time."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import FeaturesFile
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    folder = Path(out) / "features"
    older: dict[Path, object] = {}
    for path in sorted(folder.glob("*.h5")) if isinstance(out, (str, Path)) and str(out).strip() else []:
        try:
            version = FeaturesFile.read_header(path)[0].get("stain_estimate_version")
        except (WeakSTILError, OSError):
            continue  # a damaged cache (or another kind of file) is the embed job's to remake or refuse
        if version is None or str(version) != str(STAIN_ESTIMATE_VERSION):
            older[path] = version
    if not older:
        return None
    first, version = next(iter(older.items()))
    others = f" (and {len(older) - 1} other feature files)" if len(older) > 1 else ""
    return (f"{first}{others}: embedded by another WeakSTIL (slide stain estimated by method "
            f"{version if version is not None else '3 or older'}, this WeakSTIL's by method {STAIN_ESTIMATE_VERSION}): "
            "this run would keep them and the model trained on them, which 'weakstil score' refuses. Fix: delete "
            f"{folder} and {Path(out) / 'score_slides'} and run again (the features are embedded again; the beds, "
            "model, evaluation, report and scores follow)")


def other_cohort(out: str | Path, cohort: str | Path, slides: dict[str, str],
                 fingerprint: Callable[[str], Any]) -> str | None:
    """The refusal (without ``error:``) of a run of another cohort into an ``out`` that holds a trained cohort's
    results: its last ``settings.json`` names another cohort CSV, and no slide of this cohort (``slides``: key ->
    file) is listed in that CSV or one whose tiles are there (their recorded ``slide_fingerprint``). Such a run (a second config file
    that kept the default ``out``) replaced the first cohort's model, report and scores without a word, and
    slides of one file name in both were tiled and embedded again at each switch (hunt 38k). A CSV moved or
    renamed, or a new CSV holding some of the same slides, shares tiles and passes; so does a first run."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import TilesFile

    out = Path(out)
    try:
        last = json.loads((out / "settings.json").read_text(encoding="utf-8")).get("cohort")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(last, str) or not last or not (out / "model").is_dir():
        return None
    try:
        if os.path.samefile(last, cohort):
            return None
        from weakstil.cohort import read_cohort

        table = read_cohort(last, check_files=False, require_labels=False).table
        listed = {os.path.realpath(str(p)) for p in table["path"]}
        if listed & {os.path.realpath(p) for p in slides.values()}:  # a slide taken off into a new CSV...
            return None
    except (OSError, WeakSTILError):  # the last CSV is gone (moved): the tiles of its slides decide
        pass
    for key, path in slides.items():
        tiles = out / "tiles" / f"{key}.h5"
        try:
            made_from = TilesFile.read_header(tiles)[0].get("slide_fingerprint") if tiles.is_file() else None
        except WeakSTILError:
            continue
        if made_from and str(made_from) == str(fingerprint(path)):
            return None
    return (f"{out} holds the results of another cohort ({last}, as its settings.json says), which shares no slide "
            f"with {cohort}: this run would replace its model, report and scores. Fix: give this cohort its own out "
            f"(--config out=... or `out:` in its config file), or delete {out / 'settings.json'} to replace them")
