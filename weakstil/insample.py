"""Which evaluated slides a model was trained on (``weakstil evaluate``: their metrics are in-sample).

By content where both sides record it: every training slide's scan fingerprint
(:mod:`weakstil.fingerprint`) is stored in ``MODEL/qc/training_slides.csv`` (column
``slide_fingerprint``, whatever the fold count) and in the cross-validation tile scores, so
another scan under a training slide's id is not a training slide and a training scan under
another id (a cohort keyed by patient) is one. Models written before the column existed, and
slides whose feature files record no fingerprint, fall back to the slide ids.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from weakstil import csv_cells
from weakstil.errors import WeakSTILError
from weakstil.fingerprint import ATTR

log = logging.getLogger("weakstil.evaluation")


def training_slide_ids(model_dir: str | Path, meta: dict) -> set[str] | None:
    """The slide ids the model was trained on (its qc table, out-of-fold predictions or recorded
    cohort CSV); ``None`` when none of them can be read."""
    from weakstil.modeldir import ModelDir

    folder = ModelDir(model_dir)
    for path in (folder.qc_slides_path, folder.oof_path):
        try:
            return set(csv_cells.read_csv(path, dtype={"slide_id": str}, keep_default_na=False)["slide_id"])
        except (OSError, KeyError, ValueError):
            continue
    recorded = (meta.get("training") or {}).get("cohort")
    if recorded and Path(recorded).is_file():
        from weakstil.cohort import read_cohort

        try:
            return set(read_cohort(recorded, check_files=False, require_labels=False).slide_ids)
        except WeakSTILError:
            return None
    return None


def training_fingerprints(model_dir: str | Path) -> dict[str, str]:
    """``{scan fingerprint: training slide id}`` from the model's qc table (every training slide,
    with or without cross-validation) and its cross-validation tile scores (models written
    before the table had the column)."""
    from weakstil.files import TileScoresFile
    from weakstil.modeldir import TILES_DIR, ModelDir

    folder = ModelDir(model_dir)
    found = {}
    for path in sorted((folder.cv_dir / TILES_DIR).glob("*.h5")):
        try:
            attrs, _ = TileScoresFile.read_header(path)
        except WeakSTILError:
            continue
        if attrs.get(ATTR):
            found[str(attrs[ATTR])] = path.stem
    try:
        table = csv_cells.read_csv(folder.qc_slides_path, dtype={"slide_id": str, ATTR: str}, keep_default_na=False)
        found.update({fp: sid for sid, fp in zip(table["slide_id"], table[ATTR]) if fp})
    except (OSError, KeyError, ValueError):
        pass
    return found


def training_slides_among(fingerprint_of: dict[str, str], model_dir: str | Path,
                          meta: dict) -> tuple[set[str] | None, dict[str, str], bool]:
    """Of the evaluated slides (``{slide id: its scan fingerprint or ''}``): the training slides
    (``None``: the model does not say what it was trained on), ``{evaluated id: training id}``
    for training scans under another id, and whether the model lists its training slide ids."""
    trained_on = training_slide_ids(model_dir, meta)
    scans = training_fingerprints(model_dir)
    renamed = {sid: scans[fp] for sid, fp in fingerprint_of.items() if fp in scans and scans[fp] != sid}

    def is_training(sid: str) -> bool:
        """By the scan where both sides record one: another generator's or centre's synth_0000 is
        not the training synth_0000, and a training scan under another id is still one."""
        fp = fingerprint_of.get(sid, "")
        if fp and (fp in scans or sid in scans.values()):
            return fp in scans
        return trained_on is not None and sid in trained_on

    known = None if trained_on is None and not scans else {sid for sid in fingerprint_of if is_training(sid)}
    return known, renamed, trained_on is not None


def training_slides_of_run(results_csv: Path, table, predicted) -> int | None:
    """``evaluate --oof results.csv``: how many judged slides (``table`` rows where ``predicted``)
    the model that scored them was trained on, by the model folder and scan fingerprint each
    slide's score file records; ``None`` when no such model folder is still there with the same
    weights. Sets ``table['training_slide']`` and warns, as ``evaluate --model`` does: a score run of
    the training slides was judged without a word, its in-sample R² read as the model's on new slides."""
    from weakstil.modeldir import ModelDir
    from weakstil.results_check import score_attrs

    by_model: dict[tuple[str, str], dict[str, str]] = {}
    for sid in table.loc[predicted, "slide_id"].astype(str):
        attrs = score_attrs(Path(results_csv).parent, sid)
        if attrs.get("model_path"):
            key = (str(attrs["model_path"]), str(attrs.get("model_id", "")).rpartition("@")[2])
            by_model.setdefault(key, {})[sid] = str(attrs.get(ATTR) or "")
    known: set[str] | None = None
    for (folder, weights_id), fingerprint_of in by_model.items():
        try:
            meta = ModelDir(folder).read_meta()
        except (WeakSTILError, OSError):
            continue
        if ModelDir(folder).model_id(meta).rpartition("@")[2] != weights_id:
            continue  # the folder holds another model now: it says nothing of this run's
        seen = training_slides_among(fingerprint_of, folder, meta)[0]
        known = None if seen is None and known is None else (known or set()) | (seen or set())
    if known is None:
        return None
    table["training_slide"] = pd.array([s in known if p else None for s, p in zip(table["slide_id"], predicted)],
                                       dtype="boolean")
    if known:
        log.warning("%d of the %d judged slides are training slides of the model that scored them (%s%s): their "
                    "metrics are in-sample and overstate its accuracy on new slides (R² is inflated); judge a "
                    "run on held-out slides, or use 'weakstil evaluate --oof MODEL/cv/oof_predictions.csv'",
                    len(known), int(predicted.sum()), ", ".join(sorted(known)[:5]), " ..." if len(known) > 5 else "")
    return len(known)
