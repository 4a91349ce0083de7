"""The stain check's training range from one odd training slide (helper h44d). The range was 1.5 x the furthest
training slide's distance, and a colour warning any one training slide carried was no reason: one yellowed slide
among 7 pink ones stretched the haematoxylin angle's limit from 3.1 to 43.6 degrees and excused "not pink/purple",
so no yellowed slide scored was flagged. A look is in range now when at least two training slides had it."""

from __future__ import annotations

import pytest

from test_h41a_stain_flag_training_colours import PINK, YELLOWED, stats


@pytest.fixture(scope="module")
def looks():
    return [stats(PINK, s) for s in range(3)], [stats(YELLOWED, 10 + s) for s in range(3)]


def test_one_odd_training_slide_excuses_no_slide_like_it(looks):
    from weakstil.qc.flags import stain_outside, stain_reference

    pink, yellowed = looks
    reference = stain_reference(pink[:2] + yellowed[:1])
    reasons = stain_outside(yellowed[2], reference)
    assert any("not pink/purple" in r for r in reasons) and any(r.startswith("h_angle") for r in reasons), reasons
    assert reference["thresholds"]["h_angle"] < 5.0 and not reference["training_warnings"]
    assert not stain_outside(pink[2], reference)  # the pink slides' own range is kept


def test_two_training_slides_of_a_look_make_it_in_range(looks):
    from weakstil.qc.flags import stain_outside, stain_reference

    pink, yellowed = looks
    reference = stain_reference(pink[:2] + yellowed[:2])
    assert not stain_outside(yellowed[2], reference) and reference["look_slides"] == 2
    # a single-slide cohort: its colour warning is no range either
    assert any("not pink/purple" in r for r in stain_outside(yellowed[2], stain_reference(yellowed[:1])))
