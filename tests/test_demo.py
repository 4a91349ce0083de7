"""`weakstil demo --quick`: the whole method end to end on a small synthetic cohort."""

from __future__ import annotations

import json

import pandas as pd

from conftest import run_cli


def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = run_cli("demo", "--quick", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "held-out slides scored by `weakstil score`" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    held = summary["held_out"]
    assert len(held) == summary["plan"]["held_out"]
    results = pd.read_csv(out / "scores" / "results.csv")
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
