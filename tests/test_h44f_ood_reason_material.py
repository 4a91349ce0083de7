"""Hunt 44b: the tile-measurement out-of-distribution reason names the causes that make up the distance.

An outside tester's slide of pure lymphocyte sheets (sTIL 85 %, above every training label) was rightly flagged
out_of_distribution, but its reason named "crush artefact: 2.7 % of the tile area (training slides 0.000111 to
0.674 %)" second, 2 points of the tile area beside 10-16 points of nuclear and eosin area, and "dark nuclei over
160 µm² outside stroma (in nests)" for its touching lymphocytes: a pathologist looked for crush and tumour. An area
share outside by a small part of the tile area against the slide's largest excess is now only counted, and the
large-blob bins say touching nuclei count as one.
"""

from __future__ import annotations

import numpy as np

from weakstil.qc.morphometry import describe, morphometry_outside, morphometry_reference
from weakstil.tilestats import COLUMNS

#: The outside tester's model's training range of the four measurements outside on its slide og44b_015 (area shares).
RANGES = {"large_dark_nest": (0.0, 0.0467), "crush_share": (0.00000111, 0.00674), "nuclear": (0.0455, 0.235),
          "eosin_dominant": (0.687, 0.926)}
SHEET = {"large_dark_nest": 0.205, "crush_share": 0.027, "nuclear": 0.338, "eosin_dominant": 0.586}


def _reference():
    rng = np.random.default_rng(0)
    train = np.full((24, len(COLUMNS)), 0.1) * (1 + 0.05 * rng.random((24, len(COLUMNS))))
    for name, (lo, hi) in RANGES.items():
        train[:, COLUMNS.index(name)] = rng.permutation(np.linspace(lo, hi, 24))
    return morphometry_reference(list(train), COLUMNS), np.median(train, axis=0)


def _slide(centre, **values):
    x = centre.copy()
    for name, v in values.items():
        x[COLUMNS.index(name)] = v
    return x


def test_a_lymphocyte_sheet_names_its_material_changes_not_a_sliver_of_crush():
    ref, centre = _reference()
    reason = morphometry_outside(_slide(centre, **SHEET), ref)
    assert reason.startswith("tile measurements outside the training range: "), reason
    for name in ("large_dark_nest", "nuclear", "eosin_dominant"):
        assert f"[{name}]" in reason, reason
    assert "crush" not in reason and reason.endswith(" and 1 more"), reason  # counted, not named
    assert "touching" in reason  # the large blobs of a lymphocyte sheet are touching nuclei


def test_crush_is_named_when_it_is_what_lies_outside():
    ref, centre = _reference()
    alone = morphometry_outside(_slide(centre, crush_share=0.027), ref)
    assert "[crush_share]" in alone and "more" not in alone, alone  # alone outside: named, however small
    crushed = morphometry_outside(_slide(centre, crush_share=0.20, nuclear=0.338), ref)
    assert "[crush_share]" in crushed and "[nuclear]" in crushed, crushed  # a material share: named


def test_blob_bins_say_touching_nuclei_read_as_one():
    for size in ("medium", "large"):
        words = describe(f"{size}_dark_nest")[0]
        assert "touching" in words and "cell sheets" in words, words
    assert "touching" not in describe("small_dark_stroma")[0]
