"""Hunt 34i: an outside audit recomputed every figure of a quick demo's outputs (a 6-slide `score` run,
`evaluate --oof results.csv`, `report --scores`, `report --model`; n=2 and n=3 cohorts) with its own
pandas/scipy script. The numbers matched (R², Pearson/Spearman and their bootstrap CIs, MAE, RMSE, AUC,
sensitivity/specificity/accuracy, calibration, bands, interval coverage and widths, flag shares, counts,
per-slide sTIL% in results.csv = HDF5 = heatmap PNG = GeoJSON = report), but what was written around them
was not:

* ``scatter.png`` of a 2-slide evaluation was titled ``R²=-0.397, r=nan`` (Pearson is undefined for two
  points; every other output says ``n/a``);
* ``metrics.csv`` wrote counts as floats: ``n,,6.0``, ``n_high,30.0,2.0``, ``n_unlabelled,,4.0``;
* ``calibration.csv`` binned the unrounded prediction, while predictions.csv writes it to 4 decimals
  and calls it from that: 29.99996 was ``30.0000``, high at 30, and counted in the 20-30 bin;
* the cohort report's headline gave ``MAE (sTIL points)`` a unit and ``RMSE`` none.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_two_slide_scatter_says_pearson_na_not_nan(tmp_path, monkeypatch):
    import matplotlib.axes

    from weakstil.evaluation import write_metrics

    titles = []
    real = matplotlib.axes.Axes.set_title

    def set_title(self, label, *args, **kw):
        titles.append(str(label))
        return real(self, label, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", set_title)
    pred = pd.DataFrame({"slide_id": ["a", "b"], "stil_true": [5.2649, 0.8202], "stil_pred": [6.8265, 4.1913]})
    m = write_metrics(pred, tmp_path, threshold=30.0)
    assert m["n"] == 2 and np.isnan(m["pearson_r"])
    scatter = next(t for t in titles if "R²" in t)
    assert "nan" not in scatter and "r=n/a" in scatter, scatter


def test_metrics_csv_writes_counts_as_whole_numbers(tmp_path):
    from weakstil.evaluation import write_metrics

    pred = pd.DataFrame({"slide_id": ["a", "b"], "stil_true": [5.2649, 0.8202], "stil_pred": [6.8265, 4.1913]})
    write_metrics(pred, tmp_path, threshold=30.0)
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    counts = [line for line in lines if line.split(",")[0] in ("n", "n_high", "n_low", "n_true_<10")]
    assert "n,,2" in counts and "n_high,30.0,0" in counts and "n_low,30.0,2" in counts, counts
    assert not any(line.endswith(".0") for line in counts), counts


def test_calibration_bins_a_prediction_as_written_and_called(tmp_path):
    from weakstil.evaluation import write_predictions
    from weakstil.metrics import calibration_table, called_high

    pred = pd.DataFrame({"slide_id": ["a"], "stil_true": [25.0], "stil_pred": [29.99996]})
    written = pd.read_csv(write_predictions(pred, tmp_path / "p.csv", 30.0)).iloc[0]
    assert written["stil_pred"] == 30.0 and written["high_pred"] == 1 and called_high(29.99996, 30.0)
    rows = {(r["bin_low"], r["bin_high"]): r["n"] for r in calibration_table([25.0], [29.99996])}
    assert rows[(30.0, 40.0)] == 1 and rows[(20.0, 30.0)] == 0, rows


def test_report_headline_gives_every_error_its_unit():
    from weakstil.report import headline

    h = headline({"n": 6, "r2": 0.9, "mae": 4.34, "rmse": 4.98, "classification": []}, 30.0)
    assert h.get("RMSE (sTIL points)") == 4.98 and h.get("MAE (sTIL points)") == 4.34, list(h)


def test_report_headline_gives_interval_coverage_as_percent_with_each_figure_s_n():
    """The 90 % interval's coverage stood as 0.906 under "90 %" (evaluate logs "covers 67 %"), and an
    evaluation's bare "n" stood beside the training slides' coverage with no n of its own."""
    from weakstil.report import confidence_headline, headline

    meta = {"qc": {"training_flagged": 0.125, "confidence": {"level": 0.9, "n": 32, "q": 1.0,
                                                             "coverage_loo": 0.90625, "width_median": 12.0}}}
    conf = confidence_headline(meta)
    assert conf.get("90 % interval coverage, out of fold (leave-one-out, 32 training slides)") == "90.6 %", conf
    assert conf.get("share of training slides with a qc flag") == "12.5 %", conf
    h = headline({"n": 2, "classification": []}, 30.0, "evaluation")
    assert h.get("n (evaluation slides)") == 2, list(h)
