"""Tile measurements made with the reference stain are not compared with the training slides' (helper h47e).

A slide whose features' Macenko fit failed (too few stained pixels) is unmixed with the reference stain vectors and
strengths, on a scale not known for it: three in-distribution 0.3 mm slides read mean eosin 0.205 against the training
slides' 0.505-0.647 and were flagged "tile measurements outside the training range". Its stain is already said
not comparable (``stain_outside``); its tile measurements are now not compared either, and the stain flag says so
(the scored path: tests/test_a_hunt26.py::test_a_slide_of_few_tiles_is_judged_with_its_sampling_noise)."""

from __future__ import annotations

import json

import numpy as np

from weakstil.qc.flags import slide_flags
from weakstil.qc.morphometry import UNCOMPARED, morphometry_outside, morphometry_reference, stain_fitted
from weakstil.stain import SlideStain


def test_the_features_stain_attribute_says_whether_the_stain_was_fitted():
    fitted = SlideStain(SlideStain.reference().he, np.array([1.9, 0.9]))
    assert stain_fitted({"stain": json.dumps(fitted.to_dict())})
    assert not stain_fitted({"stain": json.dumps(SlideStain.reference().to_dict())})
    assert stain_fitted({})  # older files without the attribute: compared as before


def test_the_stain_flag_says_the_tile_measurements_were_not_compared():
    common = dict(ood_score=None, ood_threshold=None, n_bed_tiles=100, low=None, high=None, threshold=30,
                  image=None, image_ref=None)
    _, why = slide_flags(**common, morphometry_uncompared=UNCOMPARED)
    assert UNCOMPARED in why["stain_outside_training_range"], why
    assert "out_of_distribution" not in why, why
    _, plain = slide_flags(**common)
    assert "stain_outside_training_range" not in plain, plain


def test_a_fitted_slide_far_off_is_still_flagged():
    rng = np.random.default_rng(0)
    ref = morphometry_reference([np.array([0.5 + 0.05 * rng.random()]) for _ in range(30)], ["mean_e"])
    assert morphometry_outside(np.array([0.205]), ref).startswith("tile measurements outside the training range")
