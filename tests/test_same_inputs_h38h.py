"""Same inputs, same outputs, whatever order the slides are listed in (hunt 38h).

A rerun of a study, or a lab validating the tool, lists the same slides in another row order
(sorted by date instead of id, a merged CSV). `train` already ordered its slides by id (a reversed
cohort CSV gave byte-identical weights and CV metrics), but two commands followed the rows:

- `evaluate`: its bootstrap draws slides by their position, so the same 6 slides with the cohort
  CSV reversed gave another 95 % interval (R² low 0.798 vs 0.684, MAE low 0.995 vs 1.090; Pearson
  r in the 16th digit). Now the metrics are computed on the slides in id order
  (`weakstil.evaluation.in_slide_order`); `predictions.csv` keeps the cohort's order.
- `tumorbed train --cohort`: the detector was fitted on the slides in the CSV's order, so a
  reversed CSV gave other weights (up to 2.4e-5, another `detector_weights_sha256`, other outline
  hashes downstream). Now the chosen slides are fitted in id order (`--max-slides` still picks the
  first usable ones of the CSV).

Both on the conftest quick demo's slides (no new cohort).
"""
from __future__ import annotations

import json

import pandas as pd

from conftest import run_cli


def test_evaluate_gives_the_same_intervals_for_the_cohort_listed_in_another_order(small_demo, tmp_path):
    out, _ = small_demo
    oof = pd.read_csv(out / "model" / "cv" / "oof_predictions.csv", dtype={"slide_id": str})
    labels = pd.read_csv(out / "cohort" / "labels.csv", dtype={"slide_id": str})
    labels = labels[labels["slide_id"].isin(oof["slide_id"])]
    assert len(labels) >= 6
    metrics = []
    for name, rows in (("sorted", slice(None)), ("reversed", slice(None, None, -1))):
        labels.iloc[rows].to_csv(tmp_path / f"{name}.csv", index=False)
        oof[["slide_id", "stil_pred"]].iloc[rows].to_csv(tmp_path / f"{name}_oof.csv", index=False)
        run_cli("evaluate", tmp_path / f"{name}.csv", "--oof", tmp_path / f"{name}_oof.csv",
                "--out", tmp_path / name, check=True)
        m = json.loads((tmp_path / name / "metrics.json").read_text(encoding="utf-8"))
        metrics.append({k: m[k] for k in ("r2", "pearson_r", "mae", "ci95", "classification")})
    assert metrics[0]["ci95"] == metrics[1]["ci95"], "the bootstrap interval followed the CSV's row order"
    assert metrics[0] == metrics[1]
    # the predictions themselves stay in the order the cohort listed them
    written = pd.read_csv(tmp_path / "reversed" / "predictions.csv", dtype={"slide_id": str})
    assert list(written["slide_id"]) == list(labels["slide_id"])[::-1]


def test_the_tumour_bed_detector_does_not_depend_on_the_order_of_its_slides(small_demo):
    from weakstil.tumorbed.training_cache import train_tumorbed_from_cache

    out, _ = small_demo
    ids = sorted(p.stem for p in (out / "features").glob("*.h5"))[:2]  # two slides: fast, and order matters
    weights = []
    for order in (ids, ids[::-1]):
        detector = train_tumorbed_from_cache(out / "features", out / "cohort" / "truth", slide_ids=order,
                                             warn_unmatched=False)
        assert detector.meta["model_id"] == "tumorbed-2slides"
        weights.append(detector.evidence.tensors())  # what model.safetensors holds
    first, second = weights
    assert first.keys() == second.keys()
    for key in first:
        assert (first[key] == second[key]).all(), f"detector {key} followed the order of the slides"
