"""The sTIL% interval's pure functions on toys whose coverage is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from weakstil.confidence import (Calibration, calibrate, conformal_quantile, coverage, fold_spread, from_scale,
                                 interval_columns, relative_small_sample_factor, slide_uncertainty,
                                 small_sample_factor, tile_standard_error, tile_standard_error_df, to_scale)


def _toy(n: int, rng: np.random.Generator, offset: float = 5.0, sd: float = 0.3):
    """Predictions in 0-70 %, truth off by a relative (log-scale) error: errors grow with the level."""
    pred = rng.uniform(0.0, 70.0, n)
    truth = from_scale(to_scale(pred, offset) + rng.normal(0.0, sd, n), offset)
    return truth, pred


def test_split_conformal_covers_the_nominal_share_of_new_slides():
    rng = np.random.default_rng(0)
    y_cal, p_cal = _toy(300, rng)
    cal = calibrate(y_cal, p_cal)
    assert cal.usable and cal.offset in (2.0, 5.0, 10.0)  # the relative error model is recognised
    y, p = _toy(5000, rng)
    lo, hi = cal.interval(p)
    cov = coverage(y, lo, hi)
    assert 0.87 <= cov <= 0.93, cov
    assert cal.coverage_oof >= 0.9 and 0.86 <= cal.coverage_loo <= 0.94
    # at 50 % nominal the interval is narrower and covers about half
    cal50 = calibrate(y_cal, p_cal, level=0.5)
    lo50, hi50 = cal50.interval(p)
    assert 0.45 <= coverage(y, lo50, hi50) <= 0.55
    assert np.all(hi50 - lo50 <= hi - lo + 1e-9)


def test_width_grows_with_the_level_and_the_interval_brackets_the_score():
    rng = np.random.default_rng(1)
    cal = calibrate(*_toy(200, rng))
    p = np.array([0.0, 2.0, 10.0, 30.0, 60.0, 100.0])
    lo, hi = cal.interval(p)
    assert np.all(lo <= p) and np.all(p <= hi) and np.all(lo >= 0) and np.all(hi <= 100)
    width = hi - lo
    assert np.all(np.diff(width[:5]) > 0)  # relative errors: wider at higher sTIL (until clipped at 100)
    # a constant-error toy picks a large offset: nearly constant widths
    y = np.clip(p_c := rng.uniform(0, 70, 300), 0, None) + rng.normal(0, 4.0, 300)
    cal_c = calibrate(np.clip(y, 0, 100), p_c)
    assert cal_c.offset >= 20.0


def test_slide_uncertainty_widens_the_interval():
    rng = np.random.default_rng(2)
    cal = calibrate(*_toy(200, rng))
    lo0, hi0 = cal.interval(20.0, 0.0)
    u = slide_uncertainty(20.0, tile_se=5.0, fold_stils=[15.0, 20.0, 28.0], offset=cal.offset)
    lo1, hi1 = cal.interval(20.0, u)
    assert u > 0 and lo1 < lo0 and hi1 > hi0
    assert fold_spread([20.0], cal.offset) == 0.0 and fold_spread(None, cal.offset) == 0.0


def test_fold_spread_is_counted_once():
    """Out-of-fold residuals are errors of the fold models, so their disagreement is already in
    the calibration: adding it per slide again (version 1) over-covers; version 2 does not."""
    rng = np.random.default_rng(5)

    def folds_toy(n):  # a shared error plus each fold model's own, of the same size (sTIL points)
        y = rng.uniform(0.0, 70.0, n)
        folds = np.clip(y[:, None] + rng.normal(0, 3.0, (n, 1)) + rng.normal(0, 3.0, (n, 4)), 0, 100)
        return y, folds

    y_cal, f_cal = folds_toy(400)
    cal = calibrate(y_cal, f_cal[:, 0], offset=200.0)  # each slide predicted by one fold model
    y, folds = folds_toy(4000)
    pred = folds[:, 1]  # a new slide scored by a model like the fold models
    for version, ok in ((2, lambda c: 0.87 <= c <= 0.93), (1, lambda c: c > 0.96)):
        cal.version = version
        u = np.array([cal.uncertainty(p, 0.0, f) for p, f in zip(pred, folds)])
        assert ok(coverage(y, *cal.interval(pred, u))), (version, coverage(y, *cal.interval(pred, u)))


def test_conformal_quantile_needs_enough_slides():
    scores = np.arange(1.0, 9.0)  # 8 slides: ceil(9 * 0.9) = 9 > 8
    assert conformal_quantile(scores, 0.9) == math.inf
    assert conformal_quantile(np.arange(1.0, 10.0), 0.9) == 9.0  # 9 slides: the largest
    assert conformal_quantile(np.arange(1.0, 20.0), 0.9) == 18.0  # ceil(20 * 0.9) = 18th
    cal = calibrate(np.arange(8.0), np.arange(8.0) + 1)
    assert not cal.usable
    d = cal.to_dict()
    assert d["q"] is None and not Calibration.from_dict(d).usable  # JSON-safe round trip


def test_tile_standard_error_is_the_bootstrap_of_the_weighted_mean():
    rng = np.random.default_rng(3)
    s = rng.uniform(0, 100, 400)
    w = np.full(400, 1 / 400)
    # independent tiles: the classical standard error of a mean
    assert tile_standard_error(s, w) == pytest.approx(np.std(s, ddof=1) / 20.0, rel=1e-9)
    # against a real bootstrap of the attention-style weighted mean
    w2 = rng.uniform(0.2, 1.0, 400)
    boots = []
    for _ in range(3000):
        i = rng.integers(0, 400, 400)
        boots.append((w2[i] * s[i]).sum() / w2[i].sum())
    assert tile_standard_error(s, w2) == pytest.approx(np.std(boots), rel=0.08)
    # tiles outside the bed (weight 0) do not count
    w3 = np.concatenate([w, np.zeros(100)])
    assert tile_standard_error(np.concatenate([s, np.full(100, 1e3)]), w3) == pytest.approx(tile_standard_error(s, w))
    # neighbouring tiles that share their score: the block bootstrap sees fewer independent units
    coords = np.array([(x, y) for y in range(20) for x in range(20)]) * 224
    block_scores = np.array([(x // 4 * 7 + y // 4 * 13) % 50 for x, y in coords // 224], float)
    independent = tile_standard_error(block_scores, w)
    blocked = tile_standard_error(block_scores, w, coords, 224.0)
    assert blocked > 3 * independent
    # two blocks of equally mixed tiles (outside fault hunt 7B): the two block sums cancel, and the
    # block estimate alone was 20 times below that of two of the tiles; never below the tiles' own
    coords = np.array([(0, 0), (224, 0), (1792, 448), (2016, 448)], float)
    mixed, w4 = np.array([30.7, 78.5, 82.7, 37.1]), np.full(4, 0.25)
    assert tile_standard_error(mixed, w4, coords, 224.0) == pytest.approx(tile_standard_error(mixed, w4))
    assert tile_standard_error(mixed, w4, coords, 224.0) > tile_standard_error(mixed[:2], w4[:2]) / 2 > 10


def test_a_standard_error_from_fewer_blocks_than_the_calibration_slides_widens_the_interval():
    """Hunt 9c #3: a bed of 2 tiles that happen to agree measured a standard error of 0.24 points
    and got an interval narrower than a 56-tile slide's. An error estimated from one difference
    is mostly noise: it is widened by Student's t for its degrees of freedom, relative to those of
    the calibration slides (whose typical uncertainty the conformal quantile already holds)."""
    assert small_sample_factor(1) == pytest.approx(6.3138 / 1.6449, rel=1e-3)  # ×3.84
    assert small_sample_factor(5) == pytest.approx(2.0150 / 1.6449, rel=1e-3)
    assert 1.0 < small_sample_factor(200) < 1.01
    assert small_sample_factor(math.nan) == 1.0 and small_sample_factor(math.inf) == 1.0
    assert relative_small_sample_factor(1, 20) == pytest.approx(small_sample_factor(1) / small_sample_factor(20))
    assert relative_small_sample_factor(30, 20) == relative_small_sample_factor(20, 20) == 1.0
    assert relative_small_sample_factor(1, math.nan) == relative_small_sample_factor(math.nan, 20) == 1.0
    # the degrees of freedom: tiles - 1 without coordinates, blocks - 1 with them
    two = tile_standard_error_df(np.array([10.0, 11.0]), np.full(2, 0.5))
    assert two == (pytest.approx(0.5), 1.0)
    coords = np.array([(x, y) for y in range(8) for x in range(8)]) * 224.0  # 64 tiles in 2 x 2 blocks of 4 x 4
    scores = np.random.default_rng(0).uniform(0, 60, 64)
    se, df = tile_standard_error_df(scores, np.full(64, 1 / 64), coords, 224.0)
    assert df == 3.0 and se == pytest.approx(tile_standard_error(scores, np.full(64, 1 / 64), coords, 224.0))
    assert tile_standard_error_df(scores, np.full(64, 1 / 64))[1] == 63.0
    assert all(math.isnan(v) for v in tile_standard_error_df(np.array([5.0]), np.array([1.0])))
    # calibrated on slides with 10-30 degrees of freedom: their scale is as without the widening,
    # a 2-tile bed's standard error is widened (×3.84 / t-factor of the median) and its interval too
    rng = np.random.default_rng(4)
    y = rng.uniform(0, 80, 60)
    pred = np.clip(y + rng.normal(0, 3, 60), 0, 100)
    se_cal, df_cal = rng.uniform(0.5, 3.0, 60), rng.integers(10, 31, 60).astype(float)
    cal = calibrate(y, pred, se_cal, tile_df=df_cal)
    plain = calibrate(y, pred, se_cal)
    assert cal.tile_df_reference == np.median(df_cal) and math.isnan(plain.tile_df_reference)
    assert cal.q == pytest.approx(plain.q, rel=0.05)  # below-median slides widen a little (df 10 vs 20)
    u_two, u_many = cal.uncertainty(10.5, 0.5, None, 1.0), cal.uncertainty(10.5, 0.5, None, 40.0)
    assert u_many == pytest.approx(float(slide_uncertainty(10.5, 0.5, None, cal.offset)))
    assert u_two == pytest.approx(relative_small_sample_factor(1.0, cal.tile_df_reference) * u_many, rel=1e-6)
    assert u_two > 3 * u_many
    assert np.subtract(*cal.interval(10.5, u_two)[::-1]) > np.subtract(*cal.interval(10.5, u_many)[::-1])
    # a calibration written before the reference (older model): scored as it was calibrated
    old = Calibration.from_dict({k: v for k, v in cal.to_dict().items() if k != "tile_df_reference"})
    assert math.isnan(old.tile_df_reference) and old.uncertainty(10.5, 0.5, None, 1.0) == pytest.approx(u_many)
    assert Calibration.from_dict(cal.to_dict()).tile_df_reference == cal.tile_df_reference


def test_interval_column_names():
    assert interval_columns() == ("stil_lower_90", "stil_upper_90")
    assert interval_columns(0.95) == ("stil_lower_95", "stil_upper_95")


@pytest.mark.parametrize("edit, says", [({"q": -1.5}, "'q' is -1.5"), ({"q": "abc"}, "'q' is 'abc'"),
                                        ({"sigma0": None}, "no 'sigma0'"), ({"level": 1.5}, "'level' is 1.5"),
                                        ({"offset": float("nan")}, "'offset' is nan")])
def test_a_calibration_edited_into_impossible_values_is_refused(edit, says):
    """A negative q gave intervals whose low end lay above the high end, with no word (outside fault hunt)."""
    from weakstil.confidence import Calibration, CalibrationError

    good = calibrate(np.linspace(1, 80, 20), np.linspace(2, 78, 20)).to_dict()
    assert Calibration.from_dict(good).usable
    bad = {k: v for k, v in {**good, **edit}.items() if v is not None}
    with pytest.raises(CalibrationError, match=says):
        Calibration.from_dict(bad)
    assert not math.isfinite(Calibration.from_dict({**good, "q": None}).q)  # too few slides: written as null


def test_a_small_cohort_takes_the_plainer_error_model_unless_the_evidence_is_clear():
    """The offset ``c`` is the largest within one standard error of the best leave-one-out
    interval score: 20 slides at 0-8 % predicted within a point and 4 at 30-70 % off by
    several points make ``c`` = 2 score best by a hair (the best score alone took it, and a
    24-slide cohort then had 70-point intervals above 30 %), but four slides cannot tell the
    two error models apart; 300 slides with relative errors still choose a small ``c``."""
    from weakstil.confidence import OFFSETS, _loo_interval_scores

    rng = np.random.default_rng(19)
    y_low = rng.uniform(0, 8, 20)
    p_low = np.clip(y_low + rng.normal(0, 1.0, 20), 0, 100)
    y_high = rng.uniform(30, 70, 4)
    p_high = np.clip(y_high + rng.normal(0, 8, 4), 0, 100)
    y, p = np.r_[y_low, y_high], np.r_[p_low, p_high]
    zero = np.zeros(len(y))
    means = {c: float(_loo_interval_scores(y, p, zero, zero, 0.9, c, 0.0).mean()) for c in OFFSETS}
    assert min(means, key=means.get) == 2.0  # the best mean alone would take the relative model
    cal = calibrate(y, p)
    assert cal.offset == 200.0 and cal.coverage_loo >= 0.85
    relative = calibrate(*_toy(300, np.random.default_rng(0)))
    assert relative.offset <= 10.0
