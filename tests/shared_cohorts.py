"""Cohorts that several test modules share, built once per test run (not once per module).

Seven modules each trained their own :func:`conftest.one_epoch_model` (four 0.6 mm synthetic slides,
embedded, a one-epoch ``--folds 1`` model) from a seed of their own: about 2.5 s of CPU each, the same
kind of model every time, and none of their checks depends on which seed made the slides.
:func:`one_epoch_model_copy` builds it once per run and copies it into the module's folder.

The build is shared by the pytest-xdist workers of one run (their common base folder, under a lock,
as the napari plugin's ``scored`` fixture): a worker that needs it while another builds it waits."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import pandas as pd

#: the seed of the shared cohort's slides (the one test_a_hunt20 used)
SHARED_SEED = 20


def one_epoch_model_copy(tmp_path_factory, root: Path):
    """:func:`conftest.one_epoch_model` of :data:`SHARED_SEED` (4 slides of 0.6 mm) copied into ``root``
    (``root/model``, ``root/cohort``, ``root/features``, ``root/train.csv``; tests may change their copy):
    ``(model, cohort, labels, features)``. Paths recorded inside (the model's training CSV, the feature
    files' slide paths) name the shared build, which stays for the whole run."""
    from conftest import one_epoch_model

    base = tmp_path_factory.getbasetemp()
    cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-one-epoch-model"
    cache.mkdir(parents=True, exist_ok=True)
    build, done = cache / "build", cache / "labels.pkl"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(build, ignore_errors=True)  # a worker that failed half-way
            _, _, labels, _ = one_epoch_model(build, seed=SHARED_SEED)
            labels.to_pickle(cache / ".labels.pkl")
            os.replace(cache / ".labels.pkl", done)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(build, root, dirs_exist_ok=True)
    return root / "model", root / "cohort", pd.read_pickle(done), root / "features"
