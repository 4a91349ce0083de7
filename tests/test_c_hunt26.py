"""Hunt 26c: the tile-measurement out-of-distribution reason in a pathologist's words, with units."""

from __future__ import annotations

import numpy as np

from weakstil.qc.morphometry import morphometry_outside, morphometry_reference
from weakstil.tilestats import COLUMNS


def _cmu_like():
    """Training slides around the quick demo model's medians; a slide like CMU-1-Small-Region
    (skin, scored with that model: small dark nuclei outside stroma 2.29 % of the tile area, the
    training slides 0.109 to 0.496 %)."""
    rng = np.random.default_rng(0)
    j = COLUMNS.index("small_dark_nest")
    train = []
    for _ in range(24):  # the check needs 20 training slides (MIN_SLIDES, hunt 26a)
        x = np.full(len(COLUMNS), 0.1) * (1 + 0.05 * rng.random(len(COLUMNS)))
        x[j] = 0.00109 + (0.00496 - 0.00109) * rng.random()
        train.append(x)
    ref = morphometry_reference(train, COLUMNS)
    slide = np.median(np.asarray(train), axis=0)
    slide[j] = 0.0229
    return ref, slide


def test_reason_names_the_measurement_in_words_with_units():
    ref, slide = _cmu_like()
    reason = morphometry_outside(slide, ref)
    # it said 'small_dark_nest 0.0229 (training slides 0.00109-0.00496, median 0.00249)': a
    # variable name and a bare fraction a pathologist cannot read as an area or a count
    assert reason.startswith("tile measurements outside the training range: ")
    assert "lymphocyte-sized nuclei (12-75 µm²) outside stroma" in reason
    assert "2.29 % of the tile area" in reason
    assert "training slides" in reason and reason.count(" %") >= 3
    assert "[small_dark_nest]" in reason  # the column, for whoever looks it up in the HDF5


def test_every_tile_measurement_has_words():
    from weakstil.qc.morphometry import describe  # new in hunt 26

    for c in COLUMNS:
        words, scale, unit = describe(c)
        assert words != c and "_" not in words, c
        assert (scale, unit) in ((100.0, " %"), (1.0, "")), c
    # a blob count per area says it counts specks too: on the 32 Kather tiles stroma (STR) reads
    # 4.8 per 100 µm² and lymphocytes (LYM) 3.1, so it is not a nuclear density
    assert "specks" in describe("nuclei_per_100um2")[0]


def test_a_negative_training_minimum_is_not_read_as_a_subtraction():
    # mean relative haematoxylin can be below 0 (the quick demo's training slides: -0.0367 to 0.258)
    rng = np.random.default_rng(1)
    j = COLUMNS.index("mean_h")
    train = [np.full(len(COLUMNS), 0.1) * (1 + 0.05 * rng.random(len(COLUMNS))) for _ in range(24)]
    for t, v in zip(train, np.linspace(-0.0367, 0.258, 24)):
        t[j] = v
    ref = morphometry_reference(train, COLUMNS)
    slide = np.median(np.asarray(train), axis=0)
    slide[j] = 0.9
    reason = morphometry_outside(slide, ref)
    assert "training slides -0.0367 to 0.258" in reason, reason
    assert "mean haematoxylin in tissue" in reason
