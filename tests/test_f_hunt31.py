"""Hunt 31f: a researcher retraining on a new cohort (labels given as fractions; a skewed, TCGA-like
label spread and the cross-validation's error by band of the true sTIL%)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from planted import TRAIN_BRIEF as BRIEF
from planted import make_planted_cohort
from planted import said as _said


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 12-slide planted cohort (features only; 4 groups)."""
    root = tmp_path_factory.mktemp("hunt31f")
    table, _ = make_planted_cohort(root / "cohort", 12, dim=8, tiles=(12, 20), n_groups=4, seed=31)
    return root, table


def test_train_refuses_labels_given_as_fractions(planted, tmp_path):
    """Finding 1: a cohort CSV whose sTIL labels are fractions (0.45 for 45 %, a spreadsheet's
    percentage cells exported as values) was trained on with only a warning ('multiply them by 100
    if so'), exit 0: on 12 demo slides (true sTIL 0.5-85 %) every out-of-fold score came out
    0.05-0.72 %, and the model would score every new slide under 1 %. Now train refuses, naming the
    fix, and writes nothing."""
    root, table = planted
    csv = root / "cohort" / "fractions.csv"
    table.assign(stil=(table["stil"] / 100).round(5)).to_csv(csv, index=False)
    out = tmp_path / "m"
    proc = run_cli("train", csv, "-f", root / "cohort" / "features", "-o", out, "--folds", "2", *BRIEF)
    said = _said(proc)
    assert proc.returncode != 0, said
    assert "every sTIL label is at most 1" in said and "look like fractions" in said
    assert "multiply the stil column by 100" in said
    assert not out.exists() and not list(tmp_path.glob(".m.tmp-*"))
    # labels of 1 % or less beside higher ones are percentages as written: trained on
    csv.write_text(table.assign(stil=np.where(np.arange(len(table)) < 3, 0.5, table["stil"])).to_csv(index=False))
    proc = run_cli("train", csv, "-f", root / "cohort" / "features", "-o", out, "--folds", "2", *BRIEF)
    assert proc.returncode == 0, proc.stderr


def test_cross_validation_reports_its_error_by_band_of_the_true_stil(planted, tmp_path):
    """Finding 2: a cohort like TCGA-BRCA's is mostly sTIL-low (median 12.5 %, 9 % of slides at 50 %
    or more), and train reported one MAE, made mostly of the low slides, and a calibration table
    binned by the *prediction*, where sTIL-high slides scored too low sit in the middle bins: the
    demo cohort's 2 slides at >= 60 % came out 7.3 points low on average (the colour rule's 10.1)
    while the overall MAE was 3.4, and nothing said so. Now cv/metrics.json and metrics.csv give
    n, MAE and bias per band of the true sTIL% (< 10, 10-30, 30-60, >= 60), the log says it,
    model.json records the label spread trained on, and a model that scores its highest band 10
    or more points low on average is warned about."""
    root, table = planted
    out = tmp_path / "m"
    proc = run_cli("train", root / "cohort" / "labels.csv", "-f", root / "cohort" / "features", "-o", out,
                   "--folds", "4", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    said = _said(proc)
    oof = pd.read_csv(out / "cv" / "oof_predictions.csv")
    y, p = oof["stil_true"].to_numpy(float), oof["stil_pred"].to_numpy(float)
    metrics = json.loads((out / "cv" / "metrics.json").read_text(encoding="utf-8"))
    bands = {b["band"]: b for b in metrics["error_by_band"]}
    assert list(bands) == ["<10", "10-30", "30-60", ">=60"]
    edges = {"<10": (-np.inf, 10), "10-30": (10, 30), "30-60": (30, 60), ">=60": (60, np.inf)}
    for name, (lo, hi) in edges.items():
        sel = (y >= lo) & (y < hi)
        assert bands[name]["n"] == int(sel.sum())
        if sel.any():
            assert bands[name]["mae"] == pytest.approx(np.abs(p[sel] - y[sel]).mean(), abs=1e-3)
            assert bands[name]["bias"] == pytest.approx((p[sel] - y[sel]).mean(), abs=1e-3)
    assert sum(b["n"] for b in bands.values()) == len(oof) == 12
    flat = pd.read_csv(out / "cv" / "metrics.csv").set_index("metric")["value"]
    top = max((b for b in bands.values() if b["n"]), key=lambda b: list(bands).index(b["band"]))
    assert float(flat[f"mae_true_{top['band']}"]) == pytest.approx(top["mae"], abs=1e-6)
    assert float(flat[f"bias_true_{top['band']}"]) == pytest.approx(top["bias"], abs=1e-6)
    assert "cross-validation by true sTIL%:" in said and "holds out" not in said  # 4 groups of 3: balanced folds
    assert f"{top['band']} %: {top['n']} slide" in said and f"bias {top['bias']:+.1f}" in said
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))["training"]
    assert meta["cross_validation"]["error_by_band"] == metrics["error_by_band"]
    labels = meta["labels"]
    assert labels["n"] == 12 and labels["max"] == pytest.approx(table["stil"].max())
    assert labels["median"] == pytest.approx(table["stil"].median())
    assert labels["by_band"] == {name: b["n"] for name, b in bands.items()}
    # the model's report shows them beside the one MAE, and the labels it was trained on
    proc = run_cli("report", "--model", out, "--out", tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert f"| MAE (bias), true sTIL {top['band']}%, {top['n']} slide" in md
    assert f"{top['mae']:.2f} ({top['bias']:+.2f}) |" in md and "| training.labels.median |" in md
    # evaluate reports the same bands (here of the same out-of-fold predictions)
    proc = run_cli("evaluate", root / "cohort" / "labels.csv", "--oof", out / "cv" / "oof_predictions.csv",
                   "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    ev = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))
    for a, b in zip(ev["error_by_band"], metrics["error_by_band"], strict=True):
        assert a["band"] == b["band"] and a["n"] == b["n"]
        assert a["mae"] == pytest.approx(b["mae"], abs=1e-3, nan_ok=True)  # oof_predictions.csv: 4 decimals
    assert "by true sTIL%: " in _said(proc) and f"bias {top['bias']:+.1f}" in _said(proc)
    # two epochs of an 8-unit model pull every slide towards the cohort's mean: its highest band is
    # scored far too low, and train says so
    worst = [b for b in bands.values() if b["n"] >= 2][-1]
    assert worst["bias"] <= -10, bands
    assert (f"the out-of-fold sTIL% of the {worst['n']} slides at {worst['band']} % is "
            f"{-worst['bias']:.1f} points below their labels") in said


def test_a_well_fitted_model_is_not_warned_about(planted, tmp_path, caplog):
    """The under-scoring warning is not raised by a model that scores its high band as labelled."""
    from weakstil.train_labels import warn_band_errors
    from weakstil.metrics import error_by_band

    y = np.array([2.0, 5, 12, 25, 40, 55, 70, 85])
    with caplog.at_level("INFO", logger="weakstil.train"):
        warn_band_errors(error_by_band(y, y + np.array([1, -1, 2, -2, 3, -3, -4, 2])), "c.csv")
        said = caplog.messages
        assert not any("below their labels" in r for r in said) and any("by true sTIL" in r for r in said), said
        caplog.clear()
        warn_band_errors(error_by_band(y, np.minimum(y, 50)), "c.csv")
        assert any("2 slides at >=60 % is 27.5 points below" in r for r in caplog.messages), caplog.messages


def test_a_pathologists_shorthand_label_is_refused_with_what_to_write(tmp_path):
    """Finding 3: labels as pathologists jot them down, a bound ('<1', '>90'), a range ('5-10') or an
    approximation ('~20'), and R's 'NA' were refused as "stil '5-10' is not a number" without saying
    what to write; now each reason names it (the number alone, a midpoint, an estimate, a missing label)."""
    from weakstil.cohort import read_cohort
    from weakstil.cohort_csv import CohortError

    (tmp_path / "slides").mkdir()
    labels = ["<1", ">90", "5-10", "~20", "NA", "30,5", "<10", "10 to 20", "12"]
    for i in range(len(labels)):
        (tmp_path / "slides" / f"s{i}.tiff").write_bytes(b"x")
    csv = tmp_path / "c.csv"
    csv.write_text("slide_id,path,stil\n" + "".join(f's{i},slides/s{i}.tiff,"{v}"\n' for i, v in enumerate(labels)),
                   encoding="utf-8")
    with pytest.raises(CohortError) as err:
        read_cohort(csv, check_files=False)
    said = str(err.value)
    assert "8 bad rows" in said
    assert "stil '<1' is not a number (a bound, not a score: write one sTIL% 0-100, the pathologist's estimate, " \
           "e.g. 1, or leave the slide out)" in said
    assert "'>90' is not a number (a bound, not a score" in said and "e.g. 95," in said
    assert "stil '5-10' is not a number (a range: write one sTIL% 0-100, e.g. its midpoint 7.5)" in said
    assert "'10 to 20' is not a number (a range: write one sTIL% 0-100, e.g. its midpoint 15)" in said
    assert "stil '~20' is not a number (write the number alone: 20)" in said
    assert "stil 'NA' is not a number (a missing label: give the slide's sTIL% or remove its row)" in said
    assert "'30,5' is not a number (write decimals with a point" in said and "'<10' is not a number (a bound, not a score: write one sTIL% 0-100, the pathologist's estimate, e.g. 5," in said
    assert "(s8)" not in said  # 12 is a label


def test_a_fold_that_trains_on_under_half_the_slides_is_warned_about(planted, tmp_path):
    """Finding 4: a cohort with one centre holding most slides (12 demo slides, 9 of centre_A and one
    each of 3 others) was cross-validated leave-one-centre-out without a word that one fold trained on
    3 slides to score the other 9: CV R² 0.24 (by slide 0.92; the model then scored 28 new slides at
    R² 0.90), an interval calibrated on those residuals, and that fold's models a quarter of the
    scoring ensemble. Now train warns, naming the fold, the group and the fix."""
    root, table = planted
    csv = root / "cohort" / "one_big_centre.csv"
    table.assign(group=["big"] * 9 + ["G1", "G2", "G3"]).to_csv(csv, index=False)
    proc = run_cli("train", csv, "-f", root / "cohort" / "features", "-o", tmp_path / "m", "--folds", "4", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    said = _said(proc)
    assert "holds out 9 of the 12 slides (group 'big'), so its models train on 3" in said
    assert "weigh 1/4 in --scoring ensemble" in said and "pass --group-column none if" in said
    fold = pd.read_csv(tmp_path / "m" / "cv" / "oof_predictions.csv").query("group == 'big'")["fold"].unique()
    assert f"fold {int(fold[0])} of 4 holds out" in said and len(fold) == 1


def test_the_workflow_preflight_refuses_fraction_labels_before_anything_runs(tmp_path):
    """The Snakemake workflow's preflight read the cohort CSV with only the fractions warning, so a
    run embedded every slide for hours and then failed at its train job (train refuses them now)."""
    from test_pipeline_preflight import cohort_csv, workflow_config

    from weakstil.pipeline_preflight import PreflightError, check_cohort

    cohort_csv(tmp_path, stil="0.35")
    with pytest.raises(PreflightError) as err:
        check_cohort(workflow_config(tmp_path))
    said = err.value.one_line()
    assert "every sTIL label is at most 1" in said and "multiply the stil column by 100" in said
    assert "the `cohort` key of the workflow config" in said
