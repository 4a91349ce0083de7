"""`weakstil train` and `weakstil evaluate` as a user runs them."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import run_cli
from planted import make_planted_cohort, write_feature_file
from weakstil import settings

FAST = ("--hidden", "16", "--epochs", "40", "--patience", "8", "--lr", "3e-3")
#: For tests of what training writes or refuses, not of what it learns.
BRIEF = ("--hidden", "8", "--epochs", "3")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    table, truth = make_planted_cohort(root, 24, n_groups=6, seed=1)
    return root, table, truth


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_train_then_evaluate_end_to_end(cohort, tmp_path):
    root, table, truth = cohort
    model = tmp_path / "model"
    killed = tmp_path / ".model.tmp-0badc0de"  # what a kill -9 mid-training leaves: removed by the next run
    (killed / "cv").mkdir(parents=True)
    proc = run_cli("train", root / "labels.csv", "--features", root / "features", "--out", model, "--folds", "3", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "CV (3 folds)" in proc.stderr
    for rel in ("model.safetensors", "model.json", "cv/oof_predictions.csv", "cv/metrics.json", "cv/metrics.csv",
                "cv/calibration.csv", "cv/scatter.png", "cv/roc.png"):
        assert (model / rel).is_file(), rel
    assert not list(tmp_path.glob(".model.tmp-*"))
    meta = json.loads((model / "model.json").read_text())
    assert meta["architecture"] == {"input_dim": 32, "hidden": 16, "layers": 1, "dropout": 0.25,
                                    "aggregator": "stroma", "attention_dim": 64, "stroma_weight": "learned",
                                    "tile_stats": False,  # the planted features have no tile measurements
                                    "centre_embeddings": False}
    # the cross-validation fold models are kept beside the final model, listed with their hashes
    assert [f["file"] for f in meta["folds"]] == [f"folds/fold_{k}_{m}.safetensors" for k in (1, 2, 3)
                                                  for m in range(1, settings.MEMBERS + 1)]
    assert all((model / f["file"]).is_file() for f in meta["folds"])
    assert meta["encoder"]["name"] == "planted" and meta["encoder"]["weights_sha256"] == "ab" * 32
    assert meta["threshold"] == 30.0 and meta["seed"] == 0
    assert set(meta["versions"]) >= {"weakstil", "torch", "python"}
    assert meta["training"]["cross_validation"]["folds"] == 3

    oof = pd.read_csv(model / "cv" / "oof_predictions.csv")
    assert list(oof.columns[:5]) == ["slide_id", "stil_true", "stil_pred", "fold", "group"]
    assert sorted(oof["slide_id"]) == sorted(table["slide_id"])
    assert oof.groupby("group")["fold"].nunique().max() == 1  # no group on both sides
    cv_metrics = json.loads((model / "cv" / "metrics.json").read_text())
    assert cv_metrics["r2"] == pytest.approx(meta["training"]["cross_validation"]["metrics"]["r2"])
    assert cv_metrics["r2"] > 0.8

    with h5py.File(model / "cv" / "tiles" / "S003.h5") as f, h5py.File(root / "features" / "S003.h5") as g:
        assert np.array_equal(f["coords"][:], g["coords"][:])
        assert f["tile_scores"].shape == (g["features"].shape[0],)
        assert f.attrs["tile_size_level0"] == pytest.approx(g.attrs["tile_size_level0"])
        assert f.attrs["fold"] == oof.set_index("slide_id").loc["S003", "fold"]

    out = tmp_path / "eval"
    proc = run_cli("evaluate", root / "labels.csv", "--model", model, "--features", root / "features", "--out", out)
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 24 and {"r2", "pearson_r", "spearman_rho", "mae", "rmse", "calibration"} <= set(m)
    assert [c["threshold"] for c in m["classification"]] == [10.0, 30.0, 50.0]
    assert m["r2"] > 0.8  # the final model has seen these slides
    flat = pd.read_csv(out / "metrics.csv")
    assert set(flat["metric"]) >= {"r2", "mae", "auc", "sensitivity", "specificity"}
    assert flat.query("metric == 'auc' and threshold == 30")["value"].iloc[0] == pytest.approx(
        m["classification"][1]["auc"])
    calib = pd.read_csv(out / "calibration.csv")
    assert calib["n"].sum() == 24
    for png in ("scatter.png", "roc.png"):
        with Image.open(out / png) as im:
            assert im.format == "PNG" and im.size[0] > 300
    pred = pd.read_csv(out / "predictions.csv")
    with h5py.File(out / "tiles" / "S010.h5") as f:
        assert f.attrs["stil_pred"] == pytest.approx(pred.set_index("slide_id").loc["S010", "stil_pred"], abs=1e-3)
        # stroma aggregator (the default): the stroma-weighted mean of the tile scores, weights saved
        scores, stroma = f["tile_scores"][:], f["stroma_weight"][:]
        assert ((stroma > 0) & (stroma < 1)).all()
        assert (stroma * scores).sum() / stroma.sum() == pytest.approx(f.attrs["stil_pred"], abs=1e-3)

    # metrics of the saved out-of-fold predictions
    out2 = tmp_path / "oof"
    proc = run_cli("evaluate", root / "labels.csv", "--oof", model / "cv" / "oof_predictions.csv", "--out", out2)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out2 / "metrics.json").read_text())["r2"] == pytest.approx(cv_metrics["r2"])


def test_bad_cohort_fails_with_one_error_and_no_model(cohort, tmp_path):
    root, table, _ = cohort
    bad = table.copy().astype(object)
    bad.loc[2, "stil"] = "abc"
    bad.loc[5, "path"] = "slides/none.tiff"
    bad.loc[7, "slide_id"] = bad.loc[6, "slide_id"]
    csv = root / "bad.csv"  # beside labels.csv so the relative paths resolve
    bad.to_csv(csv, index=False)
    model = tmp_path / "model"
    proc = run_cli("train", csv, "--features", root / "features", "--out", model, *BRIEF)
    assert proc.returncode == 1
    errors = _errors(proc)
    assert len(errors) == 1, proc.stderr
    assert "3 bad rows" in errors[0] and "row 4 (S002)" in errors[0] and "row 7 (S005)" in errors[0]
    assert "row 9 (S006): duplicate slide_id" in errors[0]
    assert not model.exists() and not list(tmp_path.glob(".model*"))


def test_too_few_groups_and_existing_output(cohort, tmp_path):
    root, _, _ = cohort
    # groups asked for, too few for the folds: refused before anything is written
    proc = run_cli("train", root / "labels.csv", "--features", root / "features", "--out", tmp_path / "m",
                   "--folds", "8", "--group-column", "group", *BRIEF)
    assert proc.returncode == 1
    assert "6 groups but 8 folds" in _errors(proc)[0] and "--group-column none" in _errors(proc)[0]
    assert not (tmp_path / "m").exists()
    # the CSV's own group column, not asked for: its groups kept apart in 6 folds, with a warning
    proc = run_cli("train", root / "labels.csv", "--features", root / "features", "--out", tmp_path / "g",
                   "--folds", "8", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "6 groups in column 'group' but 8 folds: cross-validating leave-one-group-out in 6 folds" in said
    cv = pd.read_csv(tmp_path / "g" / "cv" / "oof_predictions.csv")
    assert cv["fold"].nunique() == 6 and (cv.groupby("group")["fold"].nunique() == 1).all()
    # one group in the CSV's column: cross-validated by slide
    one = root / "one_group.csv"  # beside labels.csv so the relative paths resolve
    pd.read_csv(root / "labels.csv").assign(group="centre_0").to_csv(one, index=False)
    proc = run_cli("train", one, "--features", root / "features", "--out", tmp_path / "o", "--folds", "3", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    assert "one group in column 'group': cross-validating by slide" in " ".join(proc.stderr.split())
    assert pd.read_csv(tmp_path / "o" / "cv" / "oof_predictions.csv")["fold"].nunique() == 3
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("x")
    proc = run_cli("train", root / "labels.csv", "--features", root / "features", "--out", tmp_path / "m", *BRIEF)
    # a folder train did not write: --overwrite would be refused too, so it is not offered
    assert proc.returncode == 2 and "choose a new --out" in _errors(proc)[0] and "--overwrite" not in _errors(proc)[0]
    assert (tmp_path / "m" / "keep.txt").exists()


def test_evaluate_refuses_features_of_another_encoder(cohort, tmp_path):
    root, table, _ = cohort
    model = tmp_path / "model"
    run_cli("train", root / "labels.csv", "--features", root / "features", "--out", model, "--folds", "1",
            "--aggregator", "attention", *BRIEF, check=True)
    assert json.loads((model / "model.json").read_text())["training"]["cross_validation"] is None
    other = tmp_path / "other"
    for sid in table["slide_id"]:
        with h5py.File(root / "features" / f"{sid}.h5") as f:
            write_feature_file(other / f"{sid}.h5", sid, f["features"][:], f["coords"][:], encoder="ctranspath",
                               weights_sha256="cd" * 32)
    proc = run_cli("evaluate", root / "labels.csv", "--model", model, "--features", other, "--out", tmp_path / "e")
    assert proc.returncode == 1
    err = _errors(proc)
    assert len(err) == 1 and "encoder 'ctranspath' but the model was trained on 'planted'" in err[0]
    assert "Fix:" in err[0]
    proc = run_cli("evaluate", root / "labels.csv", "--out", tmp_path / "e")
    assert proc.returncode == 2 and "--oof" in _errors(proc)[0]


@pytest.mark.slow
def test_synthetic_slides_end_to_end(tmp_path):
    """synth -> embed (random small CNN) -> train -> evaluate, all through the CLI. Slides of 0.6 mm: the
    checks are of what the commands write, not of what the model learns (with 1 mm slides this module took 43 s
    of CPU, 31 s now)."""
    pytest.importorskip("weakstil.synth")
    pytest.importorskip("weakstil.embed")
    cohort = tmp_path / "cohort"
    run_cli("synth", cohort, "--slides", "6", "--size-mm", "0.6", "0.6", "--groups", "3", "--seed", "3", check=True)
    cache = tmp_path / "cache"
    run_cli("embed", str(cohort / "slides" / "*.tiff"), "--encoder", "small-cnn", "--weights", "random",
            "--device", "cpu", "--out", cache, check=True)
    model = tmp_path / "model"
    run_cli("train", cohort / "labels.csv", "--features", cache, "--out", model, "--folds", "2", "--epochs", "10",
            "--hidden", "16", "--device", "cpu", check=True)
    out = tmp_path / "eval"
    run_cli("evaluate", cohort / "labels.csv", "--model", model, "--features", cache, "--out", out, check=True)
    meta = json.loads((model / "model.json").read_text())
    assert meta["encoder"]["name"] == "small-cnn" and len(meta["encoder"]["weights_sha256"]) == 64
    assert meta["tiling"]["mpp"] == 0.5 and meta["tiling"]["tile_px"] == 224
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 6 and np.isfinite(m["mae"])
    labels = pd.read_csv(cohort / "labels.csv")
    oof = pd.read_csv(model / "cv" / "oof_predictions.csv")
    assert sorted(oof["slide_id"]) == sorted(labels["slide_id"])
    assert oof.groupby("group")["fold"].nunique().max() == 1
    # tile scores sit on the generator's tile grid (level-0 coordinates)
    sid = labels["slide_id"].iloc[0]
    with h5py.File(out / "tiles" / f"{sid}.h5") as f, h5py.File(cohort / "truth" / f"{sid}.h5") as t:
        ours = {tuple(c) for c in f["coords"][:]}
        truth = {tuple(c) for c in t["tiles/coords"][:]}
        assert ours and ours <= truth
        assert f.attrs["tile_size_level0"] == pytest.approx(t["tiles"].attrs["tile_size_level0"])
    # one slide in two rows: the same file under another id, or a copy of it with its features, sat in
    # two folds (trained on and tested on; a hunter's cohort gained R² -1.1 -> 0.13 from the leak alone)
    first = labels.iloc[0]
    shutil.copy(cohort / first["path"], cohort / "slides" / "copy.tiff")
    shutil.copy(cache / f"{sid}.h5", cache / "copy.h5")
    for extra in ({"slide_id": "again", "path": first["path"]}, {"slide_id": "copy", "path": "slides/copy.tiff"}):
        twice = pd.concat([labels, pd.DataFrame([{**first.to_dict(), **extra}])], ignore_index=True)
        twice.to_csv(cohort / "twice.csv", index=False)
        shutil.copy(cache / f"{sid}.h5", cache / "again.h5")
        proc = run_cli("train", cohort / "twice.csv", "--features", cache, "--out", tmp_path / "m2", *BRIEF)
        assert proc.returncode == 1
        assert f"row 8 ({extra['slide_id']}):" in _errors(proc)[0] and f"row 2 ({sid})" in _errors(proc)[0]
        assert ("the same slide file as" if extra["slide_id"] == "again" else "a copy of the slide file of") \
            in _errors(proc)[0]
        assert not (tmp_path / "m2").exists()
