"""The interval widened by a slide's shift from the training cohort (normalised split conformal)
on toys whose errors grow with the shift, and the shift's leave-group-out measurement."""

from __future__ import annotations

import numpy as np
import pytest

from weakstil.confidence import SHIFT_WEIGHT_FLOOR, Calibration, calibrate, coverage, from_scale, to_scale
from weakstil.qc.embedding import fit_reference
from weakstil.qc.shift import leave_group_out_distances, shift_reference, slide_shift

OFFSET = 5.0


def _toy(n: int, rng: np.random.Generator, shift: np.ndarray, sd: float = 0.2, growth: float = 1.5):
    """Errors on the log scale whose spread grows as ``1 + growth·shift``."""
    pred = rng.uniform(0.0, 70.0, n)
    truth = from_scale(to_scale(pred, OFFSET) + rng.normal(0.0, 1.0, n) * sd * (1.0 + growth * shift), OFFSET)
    return truth, pred


def test_shift_weight_is_fitted_and_coverage_holds_near_and_far_from_training():
    rng = np.random.default_rng(0)
    s_cal = rng.uniform(0.0, 1.0, 300)
    y_cal, p_cal = _toy(300, rng, s_cal)
    cal = calibrate(y_cal, p_cal, shift=s_cal, offset=OFFSET)
    plain = calibrate(y_cal, p_cal, offset=OFFSET)
    assert 1.0 <= cal.shift_weight_fitted <= 2.0 and cal.shift_weight == cal.shift_weight_fitted
    assert plain.shift_weight == 0.0
    for s in (0.0, 1.0):  # a slide like the training slides, and one further than most
        shift = np.full(4000, s)
        y, p = _toy(4000, rng, shift)
        lo, hi = cal.interval(p, 0.0, shift)
        assert 0.85 <= coverage(y, lo, hi) <= 0.95, (s, coverage(y, lo, hi))
        plo, phi = plain.interval(p)
        if s == 0.0:  # the constant-scale interval over-covers near the training cohort ...
            assert coverage(y, plo, phi) > 0.95 and np.median(hi - lo) < np.median(phi - plo)
        else:  # ... and under-covers far from it
            assert coverage(y, plo, phi) < 0.85


def test_no_shift_effect_fits_no_weight_but_the_floor_holds_and_old_calibrations_load():
    rng = np.random.default_rng(1)
    s_cal = rng.uniform(0.0, 1.0, 200)
    y_cal, p_cal = _toy(200, rng, s_cal, growth=0.0)
    cal = calibrate(y_cal, p_cal, shift=s_cal, offset=OFFSET)
    # the fit sees no growth; the stored β is the floor (a prior for slides further away)
    assert cal.shift_weight_fitted <= 0.25 and cal.shift_weight == SHIFT_WEIGHT_FLOOR == cal.shift_weight_floor
    assert calibrate(y_cal, p_cal, shift=s_cal, offset=OFFSET, shift_weight_floor=0.0).shift_weight <= 0.25
    # the floor does not cost coverage on slides like the calibration slides (q is set after β)
    y, p = _toy(4000, rng, s := rng.uniform(0.0, 1.0, 4000), growth=0.0)
    assert 0.87 <= coverage(y, *cal.interval(p, 0.0, s)) <= 0.95
    d = cal.to_dict()
    back = Calibration.from_dict(d)
    assert back.shift_weight == cal.shift_weight and back.shift_reference == cal.shift_reference and back.version == 2
    old = {k: v for k, v in d.items() if k not in ("shift_weight", "shift_weight_fitted", "shift_reference",
                                                   "shift_weight_floor", "version")}
    old_cal = Calibration.from_dict(old)  # a model calibrated before the shift term: scored as before
    assert old_cal.shift_weight == 0.0 and not old_cal.shift_reference and old_cal.version == 1
    with pytest.raises(ValueError, match="version 3 is newer"):
        Calibration.from_dict({**d, "version": 3})


def test_shift_is_zero_for_a_typical_slide_and_grows_with_distance():
    ref = shift_reference(np.array([1.0, 2.0, 3.0]), [{"h_angle": 1.0, "od": 0.05}] * 3)
    assert ref["embedding_distance"] == 2.0 and ref["stain_scale"]["h_angle"] == 4.0
    assert slide_shift(ref, embedding_distance=2.0, stain={"h_angle": 2.0, "od": 0.1}) == 0.0
    assert np.isclose(slide_shift(ref, embedding_distance=4.0, stain={"h_angle": 2.0}), 1.0)
    assert np.isclose(slide_shift(ref, embedding_distance=2.0, stain={"h_angle": 8.0}), 1.0)
    assert slide_shift(ref, embedding_distance=float("nan")) == 1.0  # unmeasurable: twice the typical
    assert slide_shift({}, embedding_distance=9.0) == 0.0  # nothing to compare with
    # the unfamiliar share (version 2): 0 at the training slides' median, 1 where it flags the slide;
    # a reference written before it has no such part
    ref2 = shift_reference(np.array([1.0, 2.0, 3.0]), None, np.array([0.0, 0.01, 0.02]), 0.06)
    assert ref2["version"] >= 2 and ref2["unfamiliar"] == {"median": 0.01, "scale": pytest.approx(0.05)}
    assert slide_shift(ref2, embedding_distance=2.0, unfamiliar_share=0.01) == 0.0
    assert np.isclose(slide_shift(ref2, embedding_distance=2.0, unfamiliar_share=0.06), 1.0)
    assert np.isclose(slide_shift(ref2, embedding_distance=4.0, unfamiliar_share=0.11), 3.0)
    assert slide_shift(ref, embedding_distance=2.0, unfamiliar_share=0.5) == 0.0


def test_leave_group_out_distance_sees_a_centre_unlike_the_others():
    rng = np.random.default_rng(2)
    # centres a and b alike, centre c elsewhere in feature space: its slides are close to each
    # other (leave-slide-out) but far from the other centres (leave-group-out)
    slides = [rng.normal(0.0, 1.0, (60, 8)) + (6.0 if g == "c" else 0.0) for g in "aabbcc"]
    ref, lso = fit_reference(slides, seed=0)
    lgo = leave_group_out_distances(ref, slides, list("aabbcc"))
    assert np.all(lgo >= lso - 1e-6)
    assert lgo[4:].min() > 2 * lgo[:4].max()
    # with a tile threshold: the share of each slide's tiles beyond it, from the other centres
    same, shares = leave_group_out_distances(ref, slides, list("aabbcc"), tile_threshold=float(np.median(lso)) * 2)
    np.testing.assert_allclose(same, lgo)
    assert shares[4:].min() > 0.9 and shares[:4].max() < 0.1
