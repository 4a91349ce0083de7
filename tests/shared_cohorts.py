"""Cohorts that several test modules share, built once per test run (not once per module).

Seven modules each trained their own :func:`conftest.one_epoch_model` (four 0.6 mm synthetic slides,
embedded, a one-epoch ``--folds 1`` model) from a seed of their own: about 2.5 s of CPU each, the same
kind of model every time, and none of their checks depends on which seed made the slides.
:func:`one_epoch_model_copy` builds it once per run and copies it into the module's folder (test_a_hunt19
trains its 2-fold model on the copy's slides and features instead of embedding four of its own).
test_c_hunt25 and test_a_hunt26 each embedded nine / eight 0.8 mm slides for a one-epoch model whose
tile-measurement check (MIN_SLIDES lowered to 8) they try: :func:`eight_slide_morphometry_model`.

The build is shared by the pytest-xdist workers of one run (their common base folder, under a lock,
as the napari plugin's ``scored`` fixture): a worker that needs it while another builds it waits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from conftest import built_once

#: the seed of the shared cohort's slides (the one test_a_hunt20 used)
SHARED_SEED = 20


def _labels(folder: Path) -> pd.DataFrame:
    """The labels table a build saved (as JSON: the slide ids stay text, the labels numbers)."""
    return pd.read_json(folder / "labels.json", orient="split", dtype=False)


def one_epoch_model_copy(tmp_path_factory, root: Path):
    """:func:`conftest.one_epoch_model` of :data:`SHARED_SEED` (4 slides of 0.6 mm) copied into ``root``
    (``root/model``, ``root/cohort``, ``root/features``, ``root/train.csv``; tests may change their copy):
    ``(model, cohort, labels, features)``. Paths recorded inside (the model's training CSV, the feature
    files' slide paths) name the shared build, which stays for the whole run."""
    from conftest import one_epoch_model

    def build(folder: Path) -> None:
        _, _, labels, _ = one_epoch_model(folder, seed=SHARED_SEED)
        labels.to_json(folder / "labels.json", orient="split", index=False)

    build_dir = built_once(tmp_path_factory, "shared-one-epoch-model", build)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(build_dir, root, dirs_exist_ok=True)
    return root / "model", root / "cohort", _labels(root), root / "features"


def eight_slide_morphometry_model(tmp_path_factory):
    """Nine default-look 0.8 mm slides (seed 25) embedded in ``ROOT/train`` (cohort and features), and
    ``ROOT/model``: one epoch, ``--folds 1``, trained on the first eight (``ROOT/train.csv``) with the
    tile-measurement check on from 8 slides (``weakstil.qc.morphometry.MIN_SLIDES``, 20 in earnest).
    Built once per run; shared, so tests only read it: ``(ROOT, cohort, labels, features)``."""
    import pytest

    from conftest import embedded_cohort, run_cli, write_training_csv

    def build(root: Path) -> None:
        cohort, labels, features = embedded_cohort(root / "train", 9, seed=25, size_mm=(0.8, 0.8))
        write_training_csv(root / "train.csv", labels.iloc[:8], cohort)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("weakstil.qc.morphometry.MIN_SLIDES", 8)
            run_cli("train", root / "train.csv", "-f", features, "-o", root / "model", "--folds", "1", "--epochs",
                    "1", check=True)
        labels.to_json(root / "labels.json", orient="split", index=False)

    root = built_once(tmp_path_factory, "shared-morphometry-model", build)
    return root, root / "train" / "cohort", _labels(root), root / "train" / "features"


def two_cached_slides(demo: Path, tmp_path: Path) -> tuple[Path, Path, bytes, Path]:
    """``(folder, first cache, its bytes, its slide)``: a copy of two of the demo's feature caches in a folder of
    their own, for ``embed --overwrite`` of the first slide alone (hunts 38b, 39c)."""
    caches = sorted((demo / "features").glob("*.h5"))[:2]
    folder = tmp_path / "features"
    folder.mkdir()
    for cache in caches:
        shutil.copy2(cache, folder / cache.name)
    first = folder / caches[0].name
    return folder, first, first.read_bytes(), demo / "cohort" / "slides" / f"{first.stem}.tiff"
