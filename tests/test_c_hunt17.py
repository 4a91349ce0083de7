"""Fault hunt 17 (c): an outside user's faults in what consumes WeakSTIL's outputs (evaluate on a
results.csv, report, heatmaps, GeoJSON): every slide left out of a number is counted and named."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

TRUE = {"s0": 5.0, "s1": 20.0, "s2": 40.0, "s3": 70.0}
COLUMNS = ["slide_id", "path", "stil", "stil_lower_90", "stil_upper_90", "stil_high", "threshold", "n_tiles",
           "n_tumorbed_tiles", "tumorbed_source", "status", "qc", "qc_reasons", "error", "model_id", "encoder_id",
           "seconds"]


def _labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.csv"
    pd.DataFrame({"slide_id": list(TRUE), "path": [f"{s}.tiff" for s in TRUE], "stil": list(TRUE.values())}).to_csv(
        path, index=False)
    return path


def _results(tmp_path: Path, extra: dict[str, float], no_interval: tuple[str, ...] = ()) -> Path:
    rows = [{c: "" for c in COLUMNS} | {
        "slide_id": s, "path": f"/x/{s}.tiff", "stil": f"{v + 2:.4f}", "status": "ok", "threshold": "30",
        "stil_lower_90": "" if s in no_interval else f"{max(0, v - 5):.4f}",
        "stil_upper_90": "" if s in no_interval else f"{v + 6:.4f}", "model_id": "model@abc"}
        for s, v in {**TRUE, **extra}.items()]
    path = tmp_path / "results.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def test_scored_slides_without_a_label_are_counted_not_dropped_silently(tmp_path, caplog) -> None:
    """A results.csv of 6 slides judged against labels of 4: the 2 unlabelled slides used to vanish
    from the evaluation without a word (n 4, nothing in the log or metrics.json)."""
    from weakstil.evaluation import evaluate_oof

    results = _results(tmp_path, {"x1": 50.0, "x2": 10.0})
    with caplog.at_level(logging.WARNING):
        evaluate_oof(_labels(tmp_path), results, tmp_path / "ev")
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == 4
    assert metrics["unlabelled"] == ["x1", "x2"]
    said = " ".join(caplog.text.split())
    assert "2 slides are not in the cohort CSV (no label)" in said and "x1, x2" in said


def test_interval_coverage_says_how_many_scored_slides_had_no_interval(tmp_path) -> None:
    """Coverage 'of 3 labels' for an evaluation of 4 used to leave the fourth unexplained in the log."""
    from weakstil.evaluation import evaluate_oof
    from weakstil.evaluation_results import describe

    metrics = evaluate_oof(_labels(tmp_path), _results(tmp_path, {}, no_interval=("s2",)), tmp_path / "ev")
    said = describe(metrics)
    assert "of 3 labels" in said and "1 scored slide(s) without an interval left out of it" in said


def test_a_score_results_csv_as_the_labels_is_refused(tmp_path) -> None:
    """A copy of a results.csv passed as the COHORT (its stil is the model's prediction) used to be
    taken as the labels: the run judged against itself, R² 1.000 and MAE 0.00, without a word (only
    the very same path as --oof was refused)."""
    from conftest import run_cli

    results = _results(tmp_path, {})
    labels = tmp_path / "labels_from_excel.csv"
    labels.write_bytes(results.read_bytes())
    out = tmp_path / "ev"
    proc = run_cli("evaluate", labels, "--oof", results, "--out", out)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith("error:"), proc.stderr
    assert str(labels) in last and "results.csv of 'weakstil score'" in last and "not labels" in last
    assert not out.exists()
    # a lab's own cohort CSV with a 'status' column of its own (e.g. a patient's) is still read
    from weakstil.cohort import read_cohort

    own = tmp_path / "own.csv"
    own.write_text("slide_id,path,stil,status\ns0,s0.tiff,5,alive\n")
    assert read_cohort(own, check_files=False, truth=True).slide_ids == ["s0"]


def test_report_says_which_file_of_a_slide_without_heatmap_is_missing(tmp_path, caplog) -> None:
    """A model folder with cv/tiles partly deleted, or a slide moved: the warning used to say 'slide
    file or out-of-fold tile scores not found' for both, naming neither file."""
    from weakstil.report import _slide_rows

    slide = tmp_path / "s0.tiff"
    slide.write_bytes(b"x")
    table = pd.DataFrame({"slide_id": ["s0", "s1", "s2"], "stil_true": [5.0, 20.0, 40.0],
                          "stil_pred": [6.0, 19.0, 41.0]})
    tiles = tmp_path / "cv" / "tiles"
    with caplog.at_level(logging.WARNING):
        rows = _slide_rows(table, lambda sid: tiles / f"{sid}.h5", "out-of-fold", tmp_path / "out",
                           {"s0": slide, "s1": tmp_path / "moved" / "s1.tiff"}, None, None)
    assert len(rows) == 3
    said = " ".join(caplog.text.split())
    assert f"s0: no heatmap (out-of-fold tile scores {tiles / 's0.h5'} not found)" in said
    assert f"s1: no heatmap (slide file {tmp_path / 'moved' / 's1.tiff'} not found)" in said
    assert "s2: no heatmap (not in the cohort CSV)" in said


def test_metrics_csv_counts_the_slides_left_out(tmp_path) -> None:
    """metrics.csv (what a lab opens in a spreadsheet) said n 3 for a cohort of 4 with an error row,
    and nothing of the 2 scored slides without a label: only metrics.json and the log knew."""
    from weakstil.evaluation import evaluate_oof

    results = _results(tmp_path, {"x1": 50.0, "x2": 10.0})
    table = pd.read_csv(results, dtype=str, keep_default_na=False)
    table.loc[table["slide_id"] == "s1", ["stil", "stil_lower_90", "stil_upper_90", "status", "error"]] = \
        ["", "", "", "error", "boom"]
    table.to_csv(results, index=False)
    evaluate_oof(_labels(tmp_path), results, tmp_path / "ev")
    flat = pd.read_csv(tmp_path / "ev" / "metrics.csv").set_index("metric")["value"]
    assert flat["n"] == 3 and flat["n_excluded"] == 1 and flat["n_unlabelled"] == 2


def test_results_of_two_models_put_together_are_said(tmp_path, caplog) -> None:
    """Two score runs' results.csv concatenated (half the slides by another model, same threshold)
    were evaluated as one run without a word; metrics.json only listed both ids."""
    from weakstil.evaluation import evaluate_oof

    results = _results(tmp_path, {})
    table = pd.read_csv(results, dtype=str, keep_default_na=False)
    table.loc[table["slide_id"].isin(["s0", "s1"]), "model_id"] = "model@other"
    table.to_csv(results, index=False)
    with caplog.at_level(logging.WARNING):
        evaluate_oof(_labels(tmp_path), results, tmp_path / "ev")
    said = " ".join(caplog.text.split())
    assert "scored by 2 models (model@abc: 2 slides, model@other: 2 slides); the metrics mix them" in said


def test_report_of_a_model_whose_cohort_csv_moved_says_it_once(tmp_path, caplog) -> None:
    """The cohort CSV a model records, moved or deleted: the report used to warn 'no heatmap (slide
    file or out-of-fold tile scores not found)' once per slide, never naming the cause (the CSV) nor
    the fix (--cohort)."""
    import torch

    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.mil.config import TrainConfig
    from weakstil.report import build_report
    from weakstil.synth import generate_cohort
    from weakstil.train import train_cohort

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        labels = generate_cohort(tmp_path / "cohort", 4, 1, size_mm=(0.5, 0.5), n_groups=2, progress=False)
        encoder = create_encoder("small-cnn", "random")
        for rel in labels["path"]:
            embed_slide(tmp_path / "cohort" / rel, encoder, out_dir=tmp_path / "features")
        csv = tmp_path / "cohort" / "labels.csv"
        train_cohort(csv, tmp_path / "features", tmp_path / "model", TrainConfig(epochs=1, seed=0, device="cpu",
                                                                                 threads=1), n_folds=2)
    finally:
        torch.set_num_threads(threads)
    csv.rename(tmp_path / "cohort" / "labels_moved.csv")
    with caplog.at_level(logging.WARNING):
        build_report(tmp_path / "model", tmp_path / "rep")
    said = [" ".join(r.getMessage().split()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert [s for s in said if "the cohort CSV the model records is not found" in s and str(csv) in s
            and "--cohort" in s], said
    assert not [s for s in said if "no heatmap" in s], said


def test_a_spreadsheets_empty_rows_do_not_stay_in_results_csv(tmp_path) -> None:
    """results.csv opened and saved by a spreadsheet gains empty rows (',,,,'); every later score
    run rewrote them as a row of a slide with an empty id."""
    from weakstil.results_table import read_previous, write_results

    results = _results(tmp_path, {})
    results.write_text(results.read_text() + "," * (len(COLUMNS) - 1) + "\n")
    assert set(read_previous(results)) == set(TRUE)
    write_results(results, {}, [], COLUMNS)
    assert pd.read_csv(results, dtype=str)["slide_id"].tolist() == list(TRUE)


def test_score_results_with_a_refused_same_id_file_are_evaluated(tmp_path, caplog) -> None:
    """`score` given two files with one slide id scores the first and records the other as an
    error row of its own; `evaluate --oof` refused that results.csv of one run ('on two rows that
    differ ... keep the results.csv of one score run'). The labelled file's row is now the answer."""
    from weakstil.evaluation import evaluate_oof

    results = _results(tmp_path, {})
    table = pd.read_csv(results, dtype=str, keep_default_na=False)
    clash = {**table.iloc[0].to_dict(), "path": "/elsewhere/s0.tiff", "stil": "", "stil_lower_90": "",
             "stil_upper_90": "", "status": "error", "error": "/elsewhere/s0.tiff: has the same slide id 's0'"}
    pd.concat([table, pd.DataFrame([clash])]).to_csv(results, index=False)
    labels = _labels(tmp_path)
    with caplog.at_level(logging.WARNING):
        metrics = evaluate_oof(labels, results, tmp_path / "ev")
    assert metrics["n"] == 4 and metrics["excluded"] == []
    assert "row 6 (/elsewhere/s0.tiff) passed over" in " ".join(caplog.text.split())
    # the cohort labels the refused file: the other file's score is not taken for it
    cohort = pd.read_csv(labels)
    cohort.loc[0, "path"] = "/elsewhere/s0.tiff"
    cohort.to_csv(labels, index=False)
    metrics = evaluate_oof(labels, results, tmp_path / "ev2")
    assert metrics["n"] == 3 and [e["slide_id"] for e in metrics["excluded"]] == ["s0"]


def test_label_ids_with_the_slides_extension_get_a_fix_that_says_so(tmp_path) -> None:
    """Labels whose slide_id is the file name (s0.tiff) against results.csv's ids (s0, as score
    writes them): 'N cohort slides have no prediction' with the fix 'use predictions made for
    this cohort', which they were. The fix now says the ids differ by the extension."""
    from weakstil.errors import WeakSTILError
    from weakstil.evaluation import evaluate_oof

    labels = tmp_path / "labels.csv"
    pd.DataFrame({"slide_id": [f"{s}.tiff" for s in TRUE], "path": [f"{s}.tiff" for s in TRUE],
                  "stil": list(TRUE.values())}).to_csv(labels, index=False)
    try:
        evaluate_oof(labels, _results(tmp_path, {}), tmp_path / "ev")
    except WeakSTILError as exc:
        said = str(exc)
    else:
        raise AssertionError("evaluated labels that match no prediction")
    assert "4 of them differ from the predictions' ids only by a file extension ('s0.tiff' against 's0')" in said
    assert not (tmp_path / "ev").exists()
