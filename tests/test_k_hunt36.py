"""Outside fault hunt 36k: the upgrade path (outputs of an older WeakSTIL read by this one).

A lab that upgraded from commit 4d85eb1 (a day older; its feature caches record
``stain_estimate_version`` 5 and ``tissue_version`` 7, no ``library_versions`` and no ``sharpening``,
this version writes 8 and 8) and retrained on its old features folder got a model without a word
(``weakstil train cohort.csv --features features --out model_new``: exit 0, 17 s), and every
``weakstil score`` with it was then refused before any slide ('the model fits no slide scored by this
WeakSTIL: the slides' stain was estimated by method 8 but the model was trained on features whose
stain was estimated by method 5'): the training was wasted and its fix ('train the model again on
features embedded by this WeakSTIL version') was not said where it could be acted on. Now ``train``
refuses such features in one line naming the first feature file, the method numbers and the fix
(embed them again into that folder, which remakes an older version's caches), and leaves no model
folder. Features of this version still train (the shared fixture's model is trained on them).

The workflow in an old run folder (4d85eb1's Snakefile run, then this version's): the dry run planned
settings.json and the report only (3 jobs), keeping the old features and model; with a new score slide
the run deleted results/scores and its score job was refused as above (exit 1). Now every run is
refused before any job, naming a feature file and the fix (delete results/features and
results/score_slides; done so, the measured run re-embedded, retrained and scored, exit 0 in 2 min).

The old-style feature files are made here by writing the attributes 4d85eb1 wrote into copies of
this version's files (the embeddings themselves are the same for these slides: a model trained on
either had weights hash 575f7c290f44).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py

from conftest import run_cli
from shared_cohorts import one_epoch_model_copy


def _as_4d85eb1_wrote(features) -> None:
    """The attributes of a feature cache embedded by commit 4d85eb1 (hunt 36k's measured files)."""
    for path in sorted(features.glob("*.h5")):
        with h5py.File(path, "r+") as f:
            f.attrs["stain_estimate_version"] = 5
            f.attrs["tissue_version"] = 7
            for new in ("library_versions", "sharpening"):
                if new in f.attrs:
                    del f.attrs[new]


def test_train_refuses_features_of_an_older_stain_estimate(tmp_path_factory, tmp_path):
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    _, _, labels, features = one_epoch_model_copy(tmp_path_factory, tmp_path / "w")
    old = tmp_path / "old_features"
    shutil.copytree(features, old)
    _as_4d85eb1_wrote(old)
    proc = run_cli("train", tmp_path / "w" / "train.csv", "-f", old, "-o", tmp_path / "model_new", "--folds", "1",
                   "--epochs", "1")
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    first = sorted(labels["slide_id"])[0]
    assert f"{old / first}.h5: embedded by an older WeakSTIL (and the other {len(labels) - 1} feature files)" in errors[0]
    assert f"estimated by method 5, this WeakSTIL's by method {STAIN_ESTIMATE_VERSION}" in errors[0]
    assert f"Fix: embed the slides again into {old}" in errors[0]
    assert not (tmp_path / "model_new").exists()
    assert not list(tmp_path.glob(".model_new.tmp-*"))


def test_workflow_refuses_an_upgraded_run_folders_older_features(tmp_path_factory, tmp_path):
    """The workflow (pipelines/Snakefile fails with this line before any job, dry runs too) in a run folder
    whose features an older WeakSTIL embedded: it planned settings.json and the report only, kept the old
    features and model, and its score job then deleted results/scores and was refused."""
    from weakstil.pipeline_reruns import older_features

    _, _, labels, features = one_epoch_model_copy(tmp_path_factory, tmp_path / "w")
    out = tmp_path / "results"
    shutil.copytree(features, out / "features")
    assert older_features(out) is None  # this version's features: the run goes on
    assert older_features(tmp_path / "nothing_yet") is None
    _as_4d85eb1_wrote(out / "features")
    line = older_features(out)
    first = sorted(labels["slide_id"])[0]
    assert line.startswith(f"{out / 'features' / first}.h5 (and {len(labels) - 1} other feature files): embedded by "
                           "another WeakSTIL (slide stain estimated by method 5")
    assert f"Fix: delete {out / 'features'} and {out / 'score_slides'} and run again" in line
    snakefile = (Path(__file__).resolve().parents[1] / "pipelines" / "Snakefile").read_text(encoding="utf-8")
    assert "fail(_older)" in snakefile and "older_features(OUT)" in snakefile
