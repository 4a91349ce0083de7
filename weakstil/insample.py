"""Which evaluated slides a model was trained on (``weakstil evaluate``: their metrics are in-sample).

By content where both sides record it: every training slide's scan fingerprint
(:mod:`weakstil.fingerprint`) is stored in ``MODEL/qc/training_slides.csv`` (column
``slide_fingerprint``, whatever the fold count) and in the cross-validation tile scores, so
another scan under a training slide's id is not a training slide and a training scan under
another id (a cohort keyed by patient) is one. Models written before the column existed, and
slides whose feature files record no fingerprint, fall back to the slide ids.
"""

from __future__ import annotations

from pathlib import Path


from weakstil import csv_cells
from weakstil.errors import WeakSTILError
from weakstil.fingerprint import ATTR


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
