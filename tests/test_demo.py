"""`weakstil demo --quick`: the whole method end to end on a small synthetic cohort (run to run the
same results: scoring again gives the same bytes in test_score.py, training again in test_qc.py)."""

from __future__ import annotations

import json

import pandas as pd

from conftest import SMALL_DEMO


def test_quick_demo_end_to_end(small_demo):
    import dataclasses

    from weakstil import demo

    out, proc = small_demo  # conftest's SMALL_DEMO plan
    assert "held-out slides scored by `weakstil score`" in proc.stdout
    # the held-out slides' truth outlines beside the training slides' are the demo's own doing: no warning of them
    assert "match no slide" not in proc.stderr, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan"] == dataclasses.asdict(dataclasses.replace(demo.QUICK, **SMALL_DEMO))  # --quick runs the quick plan
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
    _detected_bed_outline_is_in_the_interval(out, results)


def _detected_bed_outline_is_in_the_interval(out, results):
    """The model was calibrated on annotated beds and scores over its detector's: each scored
    slide's interval holds the outline error, measured again here from its score file's tiles
    (hunt 25, weakstil.qc.bed_outline)."""
    import math

    import h5py

    from weakstil.bed_edit import ScoredTiles
    from weakstil.confidence import Calibration
    from weakstil.qc.bed_outline import OUTLINE_SD_PER_RANGE, interior_and_grown

    cal = Calibration.from_dict(json.loads((out / "model" / "qc" / "calibration.json").read_text()))
    checked = 0
    for row in results[results["status"] == "ok"].itertuples():
        path = out / "scores" / f"{row.slide_id}.h5"
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
        assert attrs["tumorbed_source"] == "model"
        if not cal.usable:
            continue
        tiles = ScoredTiles.read(path)
        bed = tiles.original_flags
        interior, grown = interior_and_grown(tiles.geometry.coords, tiles.geometry.tile_size_level0, bed)
        values = [tiles.score_flags(flags).stil for flags in (interior, bed, grown) if flags.any()]
        expected = OUTLINE_SD_PER_RANGE * (max(values) - min(values))
        assert math.isclose(attrs["interval_bed_outline_sd"], expected, rel_tol=1e-4, abs_tol=1e-4)
        # it is part of the slide's uncertainty u, and the interval written is the calibration's of that u
        stil = float(attrs["stil"])
        assert attrs["interval_uncertainty"] >= expected / (stil + cal.offset) - 1e-9
        lo, hi = cal.interval(stil, attrs["interval_uncertainty"], attrs["interval_shift"])
        assert math.isclose(float(lo), row.stil_lower_90, abs_tol=1e-3)
        assert math.isclose(float(hi), row.stil_upper_90, abs_tol=1e-3)
        checked += 1
    assert checked or not cal.usable



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
