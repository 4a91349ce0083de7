"""The interval of a slide scored over its whole tissue by a model trained on tumour beds.

A model's interval is calibrated on its out-of-fold predictions over the beds its training slides had.
A slide scored over the whole tissue instead (a detected bed that fell back to it, status ``bed fallback:
tissue``, or no bed source at all) is a number of another region: the stroma outside the bed holds fewer
TILs, so the whole tissue's score is diluted, most on TIL-rich slides. An outside tester's 40 slides
scored by the quick demo's model (hunt 40c) fell back on 14, whose 90 % intervals covered 6 (83.1 %
read 23.0 with an interval of a few points), while the 26 with a detected bed were covered 26 of 26.

The calibration: ``weakstil train`` scores every training slide's whole tissue with its out-of-fold
tile scores (the same fold model, the bed mask dropped) and takes the normalised residuals of those
whole-tissue scores against the labels, ``e = (t(y) − t(ŷ_whole)) / σ`` on the interval's scale
``t = log(y + c)`` with each slide's own ``σ`` (:meth:`weakstil.confidence.Calibration.sigma`, its
tile standard error over the whole tissue). Their conformal quantiles at each tail (``α/2``: split
conformal, one per end, so the interval is asymmetric where the dilution is systematic: it reaches
upwards for a TIL-rich slide) are stored in ``calibration.json`` under ``extra.bed_fallback``; at
``weakstil score`` a whole-tissue slide's interval is ``t(ŷ) + σ·[q_low, q_high]``, widened to hold ``ŷ``
itself (the high/low call is made on it, and ``near_threshold`` on the interval).

A model calibrated before this (no ``bed_fallback`` record), or on too few slides for the tails
(fewer than 19 at 90 %), gives such a slide the interval 0–100: its bed interval was measured to cover
6 of 14, so the honest statement is that the model's calibration does not say how far off it is.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil.qc.flags import WHOLE_TISSUE, bed_unlike_training

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.confidence import Calibration

#: The key in ``calibration.json``'s ``extra``.
KEY = "bed_fallback"


def needs_whole_tissue_interval(bed_source: str | None, training_beds: dict | None) -> bool:
    """Whether a slide's interval is of another region than the model was calibrated on: scored over
    the whole tissue while more than half the model's training slides had a tumour bed (as
    :func:`weakstil.qc.flags.bed_unlike_training` flags it)."""
    # the flag's own rule (for a whole-tissue source it speaks of nothing else), not a second tally of the sources
    return bed_source in WHOLE_TISSUE and bed_unlike_training(bed_source, training_beds) is not None


def tail_quantiles(scores: np.ndarray, level: float) -> tuple[float, float]:
    """Split conformal quantiles of both tails at ``(1 − level) / 2`` each: the ``⌊(n + 1)α/2⌋``-th
    smallest and ``⌈(n + 1)(1 − α/2)⌉``-th smallest score; ``∓inf`` where the slides are too few."""
    s = np.sort(np.asarray(scores, np.float64)[np.isfinite(scores)])
    n, half = len(s), (1.0 - level) / 2.0
    k_low = math.floor(round((n + 1) * half, 9))
    k_high = math.ceil(round((n + 1) * (1.0 - half), 9))
    low = float(s[k_low - 1]) if 1 <= k_low <= n else -math.inf
    high = float(s[k_high - 1]) if 1 <= k_high <= n else math.inf
    return low, high


def whole_tissue_oof(oof: list, bags: list) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """Each training slide's out-of-fold sTIL% over its whole tissue (its fold model's tile scores, the bed
    mask dropped, aggregated as the model does), its aggregation weights, and whether its bed was smaller
    than its tissue."""
    from weakstil.mil.aggregate import slide_score

    stils, weights, smaller = [], [], []
    for s, b in zip(oof, bags):
        aggregator = "attention" if s.attention is not None else "stroma" if s.stroma is not None else "mean"
        stil, w = slide_score(s.tile_scores, s.stroma, None, aggregator, attention=s.attention)
        stils.append(stil)
        weights.append(w)
        smaller.append(bool(len(b.tile_mask)) and not bool(np.asarray(b.tile_mask, bool).all()))
    return np.asarray(stils, np.float64), weights, smaller


def fit(cal: Calibration, labels: np.ndarray, oof: list, bags: list, shift: np.ndarray,
        bed_se_df: np.ndarray | None = None) -> dict[str, Any]:
    """The ``bed_fallback`` record of ``cal`` from the out-of-fold scores ``oof`` of the training ``bags``
    (their labels and shifts from the other centres, as the bed interval was fitted). ``bed_se_df``: each
    slide's (tile standard error, df) over its bed with ``GRID_OFFSETS`` (the bed interval's), taken as the
    whole tissue's where the whole-tissue weights are the bed's to the bit: the same computation, not made
    twice (a bed of all tiles under the mean aggregator; the stroma and attention weights recomputed here
    differ from the model's in the last bits, so theirs are computed again)."""
    from weakstil.confidence import GRID_OFFSETS, scale_sd, tile_standard_error_df, to_scale

    whole, weights, smaller = whole_tissue_oof(oof, bags)
    se_df = np.array([bed_se_df[i] if bed_se_df is not None and np.array_equal(w, s.weights) else
                      tile_standard_error_df(s.tile_scores, w, b.coords, b.tile_size_level0, grid_offsets=GRID_OFFSETS)
                      for i, (s, w, b) in enumerate(zip(oof, weights, bags))], np.float64).reshape(-1, 2)
    se = cal.widened_se(np.nan_to_num(se_df[:, 0]), se_df[:, 1])
    y = np.asarray(labels, np.float64)
    ok = np.isfinite(y) & np.isfinite(whole)
    sigma = cal.sigma(scale_sd(whole, se, cal.offset), shift)
    residual = to_scale(y, cal.offset) - to_scale(whole, cal.offset)
    scores = (residual / sigma)[ok]
    low, high = tail_quantiles(scores, cal.level)
    return {"n": int(ok.sum()), "n_bed_smaller": int(np.sum(np.asarray(smaller) & ok)),
            "q_low": low if math.isfinite(low) else None, "q_high": high if math.isfinite(high) else None,
            "residual_median": float(np.median(residual[ok])) if ok.any() else None,
            "whole_over_bed_median": float(np.median(whole[ok] / np.maximum(
                np.array([s.stil for s in oof], np.float64)[ok], 1e-9))) if ok.any() else None,
            "method": "split conformal per tail ((1 - level)/2 each) of (t(y) - t(whole-tissue out-of-fold score)) / "
                      "sigma over the training slides; a whole-tissue slide's interval is t(pred) + sigma [q_low, q_high]"}


def interval(cal: Calibration, stil: float, u: float, shift: float) -> tuple[float, float, str]:
    """``(low, high, how)`` of a slide scored over its whole tissue (see the module): from ``cal``'s
    ``bed_fallback`` record, else 0–100."""
    from weakstil.confidence import from_scale, to_scale

    record = (cal.extra or {}).get(KEY) or {}
    q_low, q_high = record.get("q_low"), record.get("q_high")
    if q_low is None or q_high is None:
        why = "the model's calibration has no whole-tissue record (calibrated before helper h40k, issue 16)" if not record else \
            f"the model's {record.get('n', 0)} training slides are too few for its tails"
        return 0.0, 100.0, f"0-100: {why}"
    sigma = float(cal.sigma(u, shift))
    t = float(to_scale(stil, cal.offset))
    # ... holding the score itself: a lower tail above 0 times a wide sigma had put it over the score (23.0 read
    # 47.6-100, and 100.0-100.0 under a larger shift), so the call was 'low' against an interval wholly above the
    # threshold and near_threshold (lower < threshold <= upper) was not raised
    low = float(np.clip(min(from_scale(t + q_low * sigma, cal.offset), stil), 0.0, 100.0))
    high = float(np.clip(max(from_scale(t + q_high * sigma, cal.offset), stil), 0.0, 100.0))
    return low, high, f"whole-tissue calibration of {record.get('n')} training slides"
