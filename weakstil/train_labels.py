"""What ``weakstil train`` says about its labels: their spread in ``model.json``
(``training.labels``: what the model was trained on) and the cross-validation's error by band of
the true sTIL% (the log, ``cv/metrics.json``'s ``error_by_band``).

A cohort like TCGA-BRCA's (342 pathologist scores: median 12.5 %, 9 % of slides at 50 % or more)
is mostly sTIL-low; a regressor trained on it pulls its few sTIL-high slides towards the mean, and
the overall MAE, made mostly of low slides, does not show it."""

from __future__ import annotations

import logging
import math

import numpy as np

from weakstil.metrics import band_text, bands

log = logging.getLogger("weakstil.train")

#: Mean under-scoring (points) of the highest band holding 2 or more slides that is warned about.
UNDER_SCORING_WARN = 10.0


def label_summary(labels) -> dict[str, object]:
    """n, min, median, max and the slides per true-sTIL% band of the labels trained on."""
    y = np.asarray(labels, dtype=float)
    y = y[np.isfinite(y)]
    return {"n": int(len(y)), "min": round(float(y.min()), 4), "median": round(float(np.median(y)), 4),
            "max": round(float(y.max()), 4),
            "by_band": {name: int(((y >= lo) & (y < hi)).sum()) for name, lo, hi in bands()}}


def warn_band_errors(rows: list[dict[str, object]], csv_path) -> None:
    """Log the out-of-fold error per band of the true sTIL%, and warn when the highest band with 2
    or more slides is scored lower by more than :data:`UNDER_SCORING_WARN` points on average."""
    text = band_text(rows)
    if not text:
        return
    log.info("cross-validation by true sTIL%%: %s", text)
    top = [r for r in rows if r["n"] >= 2 and not math.isnan(r["bias"])]
    if top and top[-1]["bias"] <= -UNDER_SCORING_WARN:
        r = top[-1]
        log.warning("%s: the out-of-fold sTIL%% of the %d slides at %s %% is %.1f points below their labels on "
                    "average (MAE %.1f): the model pulls sTIL-high slides towards the cohort's mean; its scores "
                    "there are low (more sTIL-high slides in training help)", csv_path, r["n"], r["band"],
                    -r["bias"], r["mae"])
