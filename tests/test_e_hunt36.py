"""Hunt 36e (outside fault hunt on the sTIL definition's edge cases): a bed grown on lymphoid tissue.

What was wrong: when the tumour-bed detector's lymphoid veto left no plausible bed it was set aside
and the bed grew on the evidence the veto had taken for lymphoid tissue; only a log line and the
score file's ``tumorbed_seed_vetoes`` attribute said so. On a 1.5 mm synthetic slide with a dense
lymphoid region (outside the bed, never counted) beside a bed of true sTIL 4.9 %, the demo model's
detector drew a 2-tile bed on that region and the slide was scored 97.2 % (interval 36-100,
``stil_high`` True) with ``status ok``; results.csv's qc named nothing about the lymphoid veto (a
larger lymph node would not even have raised ``few_tumorbed_tiles``). Now such a slide carries the
qc flag ``tumorbed_lymphoid`` with the detector's own words, and score passes the bed's vetoes on.
"""

from __future__ import annotations

from weakstil.tumorbed.detector import VETO_SET_ASIDE

NO_FLAG_INPUTS = dict(ood_score=None, ood_threshold=None, n_bed_tiles=100, low=None, high=None, threshold=30.0,
                      image=None, image_ref=None)
VETOES = (f"tumour cells: 19 tiles; lymphoid: 22 tiles; ink: 0 tiles; {VETO_SET_ASIDE} (with it: detected tumour "
          "bed is empty (tumour evidence of 3.2 tiles); a TIL-rich bed?)")


def test_a_bed_grown_past_the_lymphoid_veto_is_flagged():
    from weakstil.qc.flags import FLAGS, slide_flags

    assert "tumorbed_lymphoid" in FLAGS
    flags, why = slide_flags(stil=97.2, bed_lymphoid=VETOES, **NO_FLAG_INPUTS)
    assert flags == ["tumorbed_lymphoid"]
    assert VETO_SET_ASIDE in why["tumorbed_lymphoid"] and "check the bed" in why["tumorbed_lymphoid"]
    # an ordinary bed, or a slide without a score: nothing to say
    assert slide_flags(stil=97.2, bed_lymphoid="", **NO_FLAG_INPUTS)[0] == []
    assert slide_flags(stil=float("nan"), bed_lymphoid=VETOES, **NO_FLAG_INPUTS)[0] == []


def test_the_flag_table_of_the_docs_lists_it():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "scoring.md").read_text(encoding="utf-8")
    assert "| `tumorbed_lymphoid` |" in doc
