"""`weakstil demo --quick`: the whole method end to end on a small synthetic cohort, and run to run
the same results (scoring again with the demo's own model gives the same bytes; training again:
test_qc.py)."""

from __future__ import annotations

import json
import shutil
import sys

import pandas as pd

from conftest import ROOT, run_cli

sys.path.insert(0, str(ROOT / "benchmarks"))
from compare_outputs import compare_dirs  # noqa: E402


def test_quick_demo_end_to_end_and_reproducible(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--quick", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "held-out slides scored by `weakstil score`" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    held = summary["held_out"]
    assert len(held) == summary["plan"]["held_out"]
    # qc as text ('' when not flagged): three unflagged rows read alone would otherwise be a float column
    results = pd.read_csv(out / "scores" / "results.csv", dtype={"qc": "string"}).fillna({"qc": ""})
    assert set(results["status"]) <= {"ok", "no tumour bed"}
    for row in results.itertuples():
        assert (out / "scores" / f"{row.slide_id}_heatmap.png").stat().st_size > 10_000
        assert (out / "scores" / f"{row.slide_id}.geojson").exists()
    # the model is self-contained: encoder and tumour-bed detector travel with it
    assert (out / "model" / "encoder" / "card.yaml").exists()
    assert (out / "model" / "tumorbed" / "model.json").exists()
    # predictions are percentages for the scored slides (accuracy is measured in benchmarks/)
    ok = [r for r in held if r["status"] == "ok"]
    assert ok and all(0 <= r["pred_stil"] <= 100 for r in ok)
    assert summary["cv_metrics"]["n"] >= 8

    # run to run: scoring held-out slides again gives the same per-slide files and results (three of
    # them: the lowest, a middle and the highest score, to keep the suite's time; training twice gives the
    # same bytes: test_qc.py)
    again = tmp_path / "again"
    picked = list(results.sort_values("stil")["slide_id"].iloc[[0, len(results) // 2, -1]])
    slides = [(out / "cohort" / p).resolve() for p in pd.read_csv(out / "cohort" / "labels.csv").set_index("slide_id")
              .loc[picked, "path"]]
    proc = run_cli("score", *slides, "--model", out / "model", "--out", again / "scores", "--features",
                   out / "features", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    for name, folder in (("first", out / "scores"), ("second", again / "scores")):
        (tmp_path / name).mkdir()
        for sid in picked:
            for suffix in (".h5", "_heatmap.png", ".geojson"):
                shutil.copy(folder / f"{sid}{suffix}", tmp_path / name / f"{sid}{suffix}")
    assert compare_dirs(tmp_path / "first", tmp_path / "second") == []
    columns = ["slide_id", "stil", "stil_lower_90", "stil_upper_90", "stil_high", "n_tiles", "qc", "status"]
    again_rows = (pd.read_csv(again / "scores" / "results.csv", dtype={"qc": "string"}).fillna({"qc": ""})
                  .set_index("slide_id").loc[picked].reset_index())
    pd.testing.assert_frame_equal(results.set_index("slide_id").loc[picked].reset_index()[columns],
                                  again_rows[columns])


def test_demo_holds_out_one_slide_per_stil_block_never_the_top_one():
    import numpy as np

    from weakstil.demo import held_out_indices

    for seed in range(20):
        rng = np.random.default_rng(seed)
        stil = rng.random(40) * 90
        held = held_out_indices(stil, 8, rng)
        assert len(set(held)) == 8 and stil.argmax() not in held
        ranks = np.sort(np.argsort(np.argsort(stil))[held])  # 0 = lowest sTIL%
        # one per block of about 5 slides by sTIL%: the held-out slides span the range as training does
        edges = [0, 5, 10, 15, 20, 24, 29, 34, 39]
        assert all(lo <= r < hi for r, lo, hi in zip(ranks, edges[:-1], edges[1:]))
