"""Train / evaluate / report defects of hunt 13 (area a): inputs kept inside a folder that
--overwrite replaces, a group column under another name, repeated slides in --oof predictions,
the leave-one-out interval of a 9-slide calibration, labels at the threshold, the features folder
in model.json."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from planted import make_planted_cohort

#: What these tests need of training: files written, not learning.
BRIEF = ("--hidden", "8", "--epochs", "2", "--members", "1", "--threads", "1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 10-slide planted cohort (5 groups) and a 2-fold model of it."""
    root = tmp_path_factory.mktemp("hunt13a")
    table, _ = make_planted_cohort(root / "cohort", 10, dim=8, tiles=(12, 20), n_groups=5, seed=13)
    proc = run_cli("train", root / "cohort" / "labels.csv", "--features", root / "cohort" / "features", "--out",
                   root / "model", "--folds", "2", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    return root, table


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_overwrite_never_deletes_an_input_kept_in_the_folder(trained, tmp_path):
    """#3: the cohort CSV (or a slide it lists) inside a model folder, an evaluation's cohort CSV and a
    report's --settings inside their folders went with the folder on --overwrite (exit 0)."""
    from weakstil.outputdir import mark

    root, _ = trained
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    labels = pd.read_csv(root / "cohort" / "labels.csv")
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    kept = model / "labels.csv"
    labels.to_csv(kept, index=False)
    proc = run_cli("train", kept, "--features", root / "cohort" / "features", "--out", model, "--folds", "2",
                   "--overwrite", *BRIEF)
    assert proc.returncode == 2 and "holds the cohort CSV input" in _errors(proc)[0], proc.stderr
    assert kept.is_file() and (model / "model.json").is_file()
    # a slide file listed by the cohort, kept in the model folder
    inside = model / "slides"
    inside.mkdir()
    shutil.copy(labels["path"][0], inside / "S000.tiff")
    labels.loc[0, "path"] = str(inside / "S000.tiff")
    labels.to_csv(tmp_path / "moved.csv", index=False)
    proc = run_cli("train", tmp_path / "moved.csv", "--features", root / "cohort" / "features", "--out", model,
                   "--folds", "2", "--overwrite", *BRIEF)
    assert proc.returncode == 2 and "holds the cohort slide input" in _errors(proc)[0], proc.stderr
    assert (inside / "S000.tiff").is_file()
    # evaluate --overwrite of an evaluation folder holding the cohort CSV
    evaluation = tmp_path / "eval"
    mark(evaluation, "evaluate")
    labels.iloc[1:].to_csv(evaluation / "labels.csv", index=False)
    proc = run_cli("evaluate", evaluation / "labels.csv", "--oof", root / "model" / "cv" / "oof_predictions.csv",
                   "--out", evaluation, "--overwrite")
    assert proc.returncode == 2 and "holds the cohort CSV input" in _errors(proc)[0], proc.stderr
    assert (evaluation / "labels.csv").is_file()
    # report --overwrite of a report folder holding its --settings file
    report = tmp_path / "report"
    mark(report, "report")
    (report / "settings.yaml").write_text("threads: 1\n")
    proc = run_cli("report", "--model", root / "model", "--out", report, "--settings", report / "settings.yaml",
                   "--overwrite")
    assert proc.returncode == 2 and "holds the --settings input" in _errors(proc)[0], proc.stderr
    assert (report / "settings.yaml").is_file()


def test_a_group_column_under_another_name_is_named(trained, tmp_path):
    """#5: a 'Patient ID' (or 'Group') column was left unused without a word: slides of one patient
    straddled the cross-validation folds."""
    root, _ = trained
    labels = pd.read_csv(root / "cohort" / "labels.csv").rename(columns={"group": "Patient ID"})
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels.to_csv(tmp_path / "patients.csv", index=False)
    proc = run_cli("train", tmp_path / "patients.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m", "--folds", "2", *BRIEF)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 0, proc.stderr
    assert "column 'Patient ID' is not used to keep groups apart" in said and "--group-column 'Patient ID'" in said
    # split by slide on purpose: no warning
    proc = run_cli("train", tmp_path / "patients.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m2", "--folds", "2", "--group-column", "none", *BRIEF)
    assert proc.returncode == 0 and "is not used to keep groups apart" not in " ".join(proc.stderr.split())


def test_oof_predictions_with_a_slide_on_two_differing_rows_are_refused(trained, tmp_path):
    """#4: two runs' predictions put together: the last row of a repeated slide was taken silently."""
    root, _ = trained
    oof = pd.read_csv(root / "model" / "cv" / "oof_predictions.csv", dtype={"slide_id": str})
    first = oof.iloc[[0]].copy()
    pd.concat([oof, oof.iloc[[1]]]).to_csv(tmp_path / "repeated.csv", index=False)  # an exact repeat: read once
    proc = run_cli("evaluate", root / "cohort" / "labels.csv", "--oof", tmp_path / "repeated.csv", "--out",
                   tmp_path / "same")
    assert proc.returncode == 0, proc.stderr
    first["stil_pred"] = 99.0
    pd.concat([oof, first]).to_csv(tmp_path / "two_runs.csv", index=False)
    proc = run_cli("evaluate", root / "cohort" / "labels.csv", "--oof", tmp_path / "two_runs.csv", "--out",
                   tmp_path / "e")
    assert proc.returncode == 1, proc.stderr
    error = _errors(proc)[0]
    assert f"{first['slide_id'].iloc[0]} on rows 2, {len(oof) + 2}" in error and "two_runs.csv" in error
    assert not (tmp_path / "e").exists()


def test_nine_slides_have_no_leave_one_out_interval_nor_its_coverage(trained, tmp_path):
    """#1: with 9 out-of-fold slides each leave-one-out calibration has 8, too few for a 90 % interval:
    every slide's was 0-100 and the leave-one-out coverage 100 %."""
    root, _ = trained
    labels = pd.read_csv(root / "cohort" / "labels.csv").iloc[:9]
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels.to_csv(tmp_path / "nine.csv", index=False)
    proc = run_cli("train", tmp_path / "nine.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m", "--folds", "3", "--group-column", "none", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    cal = json.loads((tmp_path / "m" / "qc" / "calibration.json").read_text())
    assert cal["n"] == 9 and cal["q"] is not None and cal["coverage_loo"] is None
    assert "leave-one-out n/a" in " ".join(proc.stderr.split())
    table = pd.read_csv(tmp_path / "m" / "qc" / "training_slides.csv")
    assert table["stil_lower_90"].isna().all() and table["stil_upper_90"].isna().all()
    # 10 slides (9 left for each): the interval and its coverage are there
    cal = json.loads((root / "model" / "qc" / "calibration.json").read_text())
    assert cal["n"] == 10 and cal["coverage_loo"] is not None
    table = pd.read_csv(root / "model" / "qc" / "training_slides.csv")
    assert np.isfinite(table["stil_lower_90"]).all() and np.isfinite(table["stil_upper_90"]).all()
    # each calibrated without the slide, bracketing its out-of-fold score
    assert (table["stil_lower_90"] <= table["stil_pred_oof"] + 1e-6).all()
    assert (table["stil_pred_oof"] <= table["stil_upper_90"] + 1e-6).all()


def test_a_label_at_the_threshold_is_high_in_cross_validation_as_in_evaluate(trained, tmp_path):
    """#2: train's cross-validation read the labels as float32: 45.1219 fell below a 45.1219 threshold
    (high_true 0), while evaluate --oof of the same file called it high."""
    root, _ = trained
    labels = pd.read_csv(root / "cohort" / "labels.csv")
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels.loc[0, "stil"] = 45.1219
    assert float(np.float32(45.1219)) < 45.1219  # what made it low
    labels.to_csv(tmp_path / "labels.csv", index=False)
    proc = run_cli("train", tmp_path / "labels.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m", "--folds", "2", "--threshold", "45.1219", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    oof = pd.read_csv(tmp_path / "m" / "cv" / "oof_predictions.csv", dtype={"slide_id": str}).set_index("slide_id")
    assert oof.loc[labels["slide_id"][0], "high_true"] == 1 and oof.loc[labels["slide_id"][0], "stil_true"] == 45.1219
    proc = run_cli("evaluate", tmp_path / "labels.csv", "--oof", tmp_path / "m" / "cv" / "oof_predictions.csv",
                   "--out", tmp_path / "e")
    assert proc.returncode == 0, proc.stderr
    at = [json.loads((d / "metrics.json").read_text())["classification"] for d in (tmp_path / "m" / "cv", tmp_path / "e")]
    assert [c["n_high"] for c in at[0]] == [c["n_high"] for c in at[1]]


def test_model_json_records_the_features_folder_and_the_epoch_kept(trained, tmp_path):
    """#6: model.json named the cohort but not the features trained on; #7: with --folds 1 --stopping
    early its final_epochs was the epochs run, not the best epoch whose weights were kept."""
    import re

    from weakstil.report import model_settings

    root, _ = trained
    meta = json.loads((root / "model" / "model.json").read_text())
    features = str((root / "cohort" / "features").resolve())
    assert meta["training"]["features"] == features
    assert ("training.features", features) in model_settings(meta)
    proc = run_cli("train", root / "cohort" / "labels.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m", "--folds", "1", "--stopping", "early", "--patience", "1", "--hidden", "8",
                   "--epochs", "30", "--lr", "0.3", "--threads", "1")  # stops at best + 1
    assert proc.returncode == 0, proc.stderr
    training = json.loads((tmp_path / "m" / "model.json").read_text())["training"]
    kept = int(re.search(r"best epoch (\d+)", training["final_model"]).group(1))
    assert training["final_epochs"] == kept


def test_oof_evaluation_excludes_a_slide_the_model_left_out(trained, tmp_path):
    """#8: train leaves out a slide whose given bed holds no tile (recorded in model.json); evaluate --oof of
    its own predictions with the same cohort CSV failed: '1 cohort slides have no prediction'."""
    root, table = trained
    model = tmp_path / "model"
    shutil.copytree(root / "model", model)
    gone = table["slide_id"].iloc[3]
    oof = pd.read_csv(model / "cv" / "oof_predictions.csv", dtype={"slide_id": str})
    oof[oof["slide_id"] != gone].to_csv(model / "cv" / "oof_predictions.csv", index=False)
    meta = json.loads((model / "model.json").read_text())
    meta["training"]["tumorbeds"]["left_out_no_tile_in_bed"] = [gone]  # as train records it (BedSources.record)
    (model / "model.json").write_text(json.dumps(meta))
    proc = run_cli("evaluate", root / "cohort" / "labels.csv", "--oof", model / "cv" / "oof_predictions.csv",
                   "--out", tmp_path / "e")
    assert proc.returncode == 0, proc.stderr
    pred = pd.read_csv(tmp_path / "e" / "predictions.csv", dtype={"slide_id": str}).set_index("slide_id")
    assert pred.loc[gone, "status"] == "no tumour bed" and np.isnan(pred.loc[gone, "stil_pred"])
    assert (pred.drop(index=gone)["status"] == "ok").all()
    folds = pd.read_csv(tmp_path / "e" / "predictions.csv", dtype=str, keep_default_na=False)["fold"]
    assert folds.str.fullmatch(r"\d*").all()  # whole numbers beside the empty one, not 2.0000
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["n"] == len(table) - 1 and metrics["excluded"] == [{"slide_id": gone, "reason": "no tumour bed"}]
    # a slide missing from predictions of no model (or not left out by it) is still an error
    shutil.copy(model / "cv" / "oof_predictions.csv", tmp_path / "elsewhere.csv")
    proc = run_cli("evaluate", root / "cohort" / "labels.csv", "--oof", tmp_path / "elsewhere.csv", "--out",
                   tmp_path / "e3")
    assert proc.returncode == 1 and f"have no prediction: {gone}" in _errors(proc)[0]
