"""Hunt 38b: four command-line and cohort defects, each now refused (or accepted) where it starts.

1. ``score`` with a model folder copied without its ``encoder/`` (the model records a pretrained
   encoder, no built-in one) wrote the same error line once per slide and went on through the batch
   (10 of 10 demo slides: 10 error lines, an error row each in a results.csv, exit 1). Now one line
   before any slide, nothing written.
2. ``--group-column stil`` (the label column) was taken: evaluate's metrics_by_group.csv had one
   "group" per label value (train's folds likewise follow the labels), exit 0. The label, slide id and
   path columns are refused now (exit 2), naming the column and the fix.
3. ``evaluate --oof PRED --labels`` refused a labels CSV without a ``path`` column ("missing column path")
   that it never reads. slide_id and stil (and the group column, when asked) are enough now.
4. ``embed --overwrite`` of one slide of a folder with another encoder replaced that slide's cache and
   kept the others: a folder of two encoders (``small-cnn`` beside the demo's own), exit 0, that
   train and evaluate refuse later. Now refused before any work (exit 2), naming the folder, both
   encoders and the fix; the cache is left as it was.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from conftest import run_cli
from shared_cohorts import two_cached_slides


def _said(stderr: str) -> str:
    return " ".join(stderr.split())


def _training_labels(demo, path, columns):
    """The demo model's training slides (those with an out-of-fold prediction) of its labels.csv, in ``columns``."""
    trained = set(pd.read_csv(demo / "model" / "qc" / "training_slides.csv", dtype={"slide_id": str})["slide_id"])
    labels = pd.read_csv(demo / "cohort" / "labels.csv", dtype={"slide_id": str})
    labels = labels[labels["slide_id"].isin(trained)]
    labels[list(columns)].to_csv(path, index=False)
    return labels


def test_model_folder_without_its_encoder_fails_once_before_any_slide(tmp_path, small_demo, one_torch_thread):
    demo = small_demo[0]
    model = tmp_path / "model"
    shutil.copytree(demo / "model", model, ignore=lambda folder, names: ["encoder"] if folder == str(demo / "model")
                    else [])
    slides = sorted((demo / "cohort" / "slides").glob("*.tiff"))[:3]
    out = tmp_path / "sc"
    r = run_cli("score", *slides, "--model", model, "--out", out, "--threads", "1")
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and len(errors) == 1, r.stderr  # was: 3 error lines, one per slide
    assert "has no encoder/ folder (copied without it" in _said(r.stderr) and str(model) in errors[0]
    assert not out.exists()  # was: results.csv with 3 error rows


def test_group_column_that_is_the_label_slide_id_or_path_is_refused(tmp_path, small_demo):
    from weakstil.cohort import read_cohort
    from weakstil.errors import UsageError

    demo = small_demo[0]
    _training_labels(demo, tmp_path / "labels.csv", ("slide_id", "path", "stil", "group"))
    r = run_cli("evaluate", tmp_path / "labels.csv", "--oof", demo / "model" / "cv" / "oof_predictions.csv",
                "--group-column", "stil", "--out", tmp_path / "ev")
    said = _said(r.stderr)
    assert r.returncode == 2, said  # was 0, metrics_by_group.csv by label value
    assert "--group-column 'stil' is the label column" in said and "--group-column none" in said
    assert not (tmp_path / "ev").exists()
    for column in ("slide_id", "path", "STIL"):
        with pytest.raises(UsageError, match=f"--group-column '{column}' is the"):
            read_cohort(tmp_path / "labels.csv", group_column=column, check_files=False)


def test_evaluate_oof_labels_need_no_path_column(tmp_path, small_demo):
    demo = small_demo[0]
    labels = _training_labels(demo, tmp_path / "labels.csv", ("slide_id", "stil", "group"))
    r = run_cli("evaluate", tmp_path / "labels.csv", "--oof", demo / "model" / "cv" / "oof_predictions.csv",
                "--out", tmp_path / "ev")
    assert r.returncode == 0, _said(r.stderr)  # was 1: "missing column path (found: slide_id, stil, group)"
    pred = pd.read_csv(tmp_path / "ev" / "predictions.csv", dtype={"slide_id": str, "group": str})
    assert sorted(pred["slide_id"]) == sorted(labels["slide_id"])
    assert dict(zip(pred["slide_id"], pred["group"])) == dict(zip(labels["slide_id"], labels["group"]))


def test_embed_overwrite_of_some_slides_with_another_encoder_is_refused(tmp_path, small_demo, one_torch_thread):
    demo = small_demo[0]
    folder, first, before, slide = two_cached_slides(demo, tmp_path)
    r = run_cli("embed", slide, "--out", folder, "--encoder", "small-cnn", "--weights", "random", "--overwrite",
                "--threads", "1")
    said = _said(r.stderr)
    assert r.returncode == 2, said  # was 0: the folder held small-cnn and the demo's encoder side by side
    assert f"{folder}: --overwrite would replace the feature caches of this run's 1 slide(s) only" in said
    assert "'encoder' (weights" in said and "not this run's 'small-cnn' (weights" in said and "new --out" in said
    assert first.read_bytes() == before
    # every cache replaced, or the other caches of this very encoder and tiling: no mixing, no refusal
    from weakstil.encoders.factory import create_encoder
    from weakstil.feature_cache import refuse_partial_overwrite
    from weakstil.files import FeaturesFile
    from weakstil.tiles import TilingParams

    attrs, _ = FeaturesFile.read_header(first)
    params = TilingParams(mpp=float(attrs["mpp"]), tile_px=int(attrs["tile_px"]), overlap_px=int(attrs["overlap_px"]),
                          tissue_threshold=float(attrs["tissue_threshold"]))
    random = create_encoder("small-cnn", weights="random")
    refuse_partial_overwrite(folder, random, params, {c.name for c in folder.glob("*.h5")})
    refuse_partial_overwrite(folder, create_encoder(demo / "model" / "encoder"), params, {first.name})
