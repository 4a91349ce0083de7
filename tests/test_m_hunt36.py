"""Hunt 36m: feature files an older WeakSTIL embedded (their slides' stain estimated by another method).

1. ``weakstil tumorbed train`` on such a folder (hunt 36k's 4d85eb1 files: ``stain_estimate_version`` 5,
   this version writes 8) trained the detector without a word (exit 0) and wrote it; the resolver then
   refused it at ``tumorbed apply`` / ``score`` of every newly embedded slide ('was trained on features
   whose slide stain was estimated by method 5, but these features' by method 8'): the training was
   wasted. ``weakstil train`` refused the same features up front since hunt 36k; now ``tumorbed train``
   does so too (the same check, mil.identity.check_features_current): one line naming the first feature
   file, the methods and the fix (embed the slides again into that folder), and no detector folder.
2. A features folder mixing files of two versions (2 of 4 slides at method 5, 2 at 8) was refused by
   ``train`` with 'feature files come from different encoders, stain normalisations or tile settings ...
   (stain_estimate_version 5 (the others: 8))', fix 'embed all slides of the cohort with the same encoder,
   weights, --stain-norm and tiling', which they were. Now the error says that the files were embedded by
   another WeakSTIL version (stain estimate method 5, the others' 8), names those slides and says to embed
   them again.

Old-style files are made as in test_k_hunt36 (copies of this version's, the attribute rewritten to 5).
"""

from __future__ import annotations

import shutil

import h5py

from conftest import run_cli
from shared_cohorts import one_epoch_model_copy


def _stain_method_5(paths) -> None:
    for path in paths:
        with h5py.File(path, "r+") as f:
            f.attrs["stain_estimate_version"] = 5


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_tumorbed_train_refuses_features_of_an_older_stain_estimate(tmp_path_factory, tmp_path):
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    _, cohort, labels, features = one_epoch_model_copy(tmp_path_factory, tmp_path / "w")
    old = tmp_path / "old_features"
    shutil.copytree(features, old)
    _stain_method_5(sorted(old.glob("*.h5")))
    proc = run_cli("tumorbed", "train", "--features", old, "--annotations", cohort / "truth",
                   "--out", tmp_path / "detector")
    assert proc.returncode == 1, proc.stderr
    errors = _errors(proc)
    assert len(errors) == 1, proc.stderr
    first = sorted(labels["slide_id"])[0]
    assert f"{old / first}.h5: embedded by an older WeakSTIL (and the other {len(labels) - 1} feature files)" in errors[0]
    assert f"estimated by method 5, this WeakSTIL's by method {STAIN_ESTIMATE_VERSION}" in errors[0]
    assert "'weakstil score' refuses a detector trained on them" in errors[0]
    assert f"Fix: embed the slides again into {old}" in errors[0]
    assert not (tmp_path / "detector").exists()
    assert not list(tmp_path.glob(".detector*"))


def test_mixed_versions_folder_names_the_older_stain_estimate(tmp_path_factory, tmp_path):
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    _, _, labels, features = one_epoch_model_copy(tmp_path_factory, tmp_path / "w")
    older = sorted(labels["slide_id"])[:2]
    _stain_method_5([features / f"{sid}.h5" for sid in older])
    proc = run_cli("train", tmp_path / "w" / "train.csv", "-f", features, "-o", tmp_path / "model_new",
                   "--folds", "1", "--epochs", "1")
    assert proc.returncode == 1, proc.stderr
    errors = _errors(proc)
    assert len(errors) == 1, proc.stderr
    assert (f"2 of {len(labels)} feature files were embedded by another WeakSTIL version: their slides' stain was "
            f"estimated by method 5, the other slides' by method {STAIN_ESTIMATE_VERSION}") in errors[0]
    assert f"e.g. {', '.join(older)}" in errors[0]
    assert "Fix: embed those slides again with this WeakSTIL" in errors[0]
    assert "same encoder" not in errors[0]
    assert not (tmp_path / "model_new").exists()
