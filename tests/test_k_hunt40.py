"""Helper h40k (issue 16): the interval of a slide scored over its whole tissue by a model trained on beds.

An outside tester's 40 slides scored by the quick demo's model (hunt 40c) covered 26 of the 26 slides
with a detected bed but 6 of the 14 whose bed fell back to the whole tissue (`bed fallback: tissue`):
the whole tissue dilutes the bed's lymphocytes (83.1 % read 23.0, interval 0.0-83.0) and the interval,
calibrated on beds, did not know it. ``weakstil train`` now scores each training slide's whole tissue
with its out-of-fold tile scores and stores the conformal tails of their residuals against the labels
(``calibration.json`` ``extra.bed_fallback``, :mod:`weakstil.qc.bed_fallback`); such a slide's interval
comes from them (asymmetric: upwards where the dilution is systematic), and from a model calibrated
before, 0-100. The og40 slides: coverage 32/40 -> 40/40, fallbacks 6/14 -> 14/14, beds unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from weakstil.confidence import Calibration, calibrate, tile_standard_error_df
from weakstil.mil.model import SlideScores
from weakstil.qc import bed_fallback
from weakstil.qc.bed_fallback import needs_whole_tissue_interval, tail_quantiles


class _Bag:  # what the fit reads of a feature bag: its tile grid and bed
    def __init__(self, coords, bed):
        self.coords, self.tile_size_level0, self.tile_mask = coords, 224.0, bed


def _cohort(n: int, seed: int):
    """Slides of 8 x 8 tiles whose central 4 x 8 are the bed: its tiles score the label, the
    stroma outside a fifth of it (a TIL-rich bed is diluted most), as the hunt-40c slides were."""
    rng = np.random.default_rng(seed)
    coords = np.array([[c * 224, r * 224] for r in range(8) for c in range(8)], np.int64)
    bed = (coords[:, 1] // 224 >= 2) & (coords[:, 1] // 224 < 6)
    labels, oof, bags = [], [], []
    for i in range(n):
        y = float(rng.uniform(1, 85))
        tiles = np.where(bed, y, y / 5) * rng.lognormal(0, 0.15, len(bed))
        stroma = np.full(len(bed), 0.6, np.float32)
        pred = float(tiles[bed].mean())
        oof.append(SlideScores(f"s{i}", pred, tiles.astype(np.float32), bed.astype(np.float32), None, stroma))
        bags.append(_Bag(coords, bed))
        labels.append(y)
    return np.array(labels), oof, bags


def test_a_whole_tissue_slide_gets_the_calibrated_interval_of_whole_tissue_scoring_not_the_beds():
    labels, oof, bags = _cohort(30, seed=1)
    pred = np.array([s.stil for s in oof])
    cal = calibrate(labels, pred, shift=np.zeros(len(labels)))
    record = bed_fallback.fit(cal, labels, oof, bags, np.zeros(len(labels)))
    cal.extra[bed_fallback.KEY] = record
    assert record["n"] == 30 and record["q_high"] > record["q_low"] > 0  # the whole tissue reads systematically low
    # new slides scored over their whole tissue (the detector found no bed): the bed interval misses the TIL-rich
    new_y, new_oof, new_bags = _cohort(40, seed=2)
    whole, weights, _ = bed_fallback.whole_tissue_oof(new_oof, new_bags)
    # each slide's u as 'weakstil score' takes it: the tile standard error over the tiles scored (the whole tissue)
    se_df = [tile_standard_error_df(s.tile_scores, ws, b.coords, 224.0, grid_offsets=4) for s, ws, b in
             zip(new_oof, weights, new_bags)]
    u = np.array([cal.uncertainty(w, se, None, df) for w, (se, df) in zip(whole, se_df)])
    bed_lo, bed_hi = cal.interval(whole, u)
    assert np.mean((new_y >= bed_lo) & (new_y <= bed_hi)) < 0.5
    ends = np.array([bed_fallback.interval(cal, float(w), float(u_i), 0.0)[:2] for w, u_i in zip(whole, u)])
    assert np.mean((new_y >= ends[:, 0]) & (new_y <= ends[:, 1])) >= 0.85
    assert ((ends[:, 1] - whole) > (whole - ends[:, 0])).all()  # reaching upwards: the truth lies above a diluted number
    # the record survives calibration.json
    again = Calibration.from_dict(cal.to_dict())
    assert bed_fallback.interval(again, 23.0, 0.0, 0.0) == bed_fallback.interval(cal, 23.0, 0.0, 0.0)


def test_a_model_calibrated_before_gives_a_whole_tissue_slide_0_to_100_and_beds_keep_their_interval():
    labels, oof, _ = _cohort(20, seed=3)
    cal = calibrate(labels, np.array([s.stil for s in oof]))
    low, high, how = bed_fallback.interval(cal, 23.0, 0.0, 0.0)
    assert (low, high) == (0.0, 100.0) and "calibrated before" in how
    beds = {"slides": {"annotation": 32}}
    assert needs_whole_tissue_interval("tissue-fallback", beds) and needs_whole_tissue_interval("tissue", beds)
    for source in ("annotation", "model", None):  # a bed: the calibration's own region
        assert not needs_whole_tissue_interval(source, beds)
    # a model trained over the whole tissue was calibrated on it
    assert not needs_whole_tissue_interval("tissue-fallback", {"slides": {"tissue": 20, "annotation": 2}})
    assert not needs_whole_tissue_interval("tissue", {})  # no record of its beds: as flagged, nothing said


def test_tail_quantiles_are_split_conformal_per_tail():
    s = np.arange(1, 20, dtype=float)  # 19 scores at 90 %: the smallest and the largest
    assert tail_quantiles(s, 0.9) == (1.0, 19.0)
    low, high = tail_quantiles(s[:18], 0.9)  # 18: too few for either tail
    assert math.isinf(low) and math.isinf(high)


def test_a_whole_tissue_interval_holds_its_score_so_a_call_against_it_is_flagged_near_threshold():
    """Review h40m: with a lower tail above 0 (every training slide's whole tissue read low) the interval was
    ``t(ŷ) + σ·[q_low, q_high]`` as is, so a wider ``σ`` lifted its lower end over the score: 23.0 read
    47.6-100 (u 0.2) and 100.0-100.0 (u 5), the call 'low' at 30 against an interval wholly above it and no
    ``near_threshold`` (u 0: 23.4-26.3). Now the interval holds the score (23.0-100), and the flag is raised."""
    from weakstil.qc.flags import slide_flags

    labels, oof, bags = _cohort(30, seed=1)
    cal = calibrate(labels, np.array([s.stil for s in oof]), shift=np.zeros(len(labels)))
    cal.extra[bed_fallback.KEY] = bed_fallback.fit(cal, labels, oof, bags, np.zeros(len(labels)))
    assert cal.extra[bed_fallback.KEY]["q_low"] > 0  # the premise
    for u in (0.0, 0.2, 5.0):
        low, high, _ = bed_fallback.interval(cal, 23.0, u, 0.0)
        assert low <= 23.0 < high, (u, low, high)  # old code: (23.4, 26.3), (47.6, 100.0), (100.0, 100.0)
    low, high, _ = bed_fallback.interval(cal, 23.0, 0.2, 0.0)
    flags, _ = slide_flags(ood_score=None, ood_threshold=None, n_bed_tiles=64, low=low, high=high, threshold=30.0,
                           image=None, image_ref=None, stil=23.0)
    assert "near_threshold" in flags
