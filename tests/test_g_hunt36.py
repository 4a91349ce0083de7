"""Hunt 36g: a tumour bed with (almost) no stroma, or of stroma alone, was scored as an ordinary slide.

What was wrong (hunt 36e's slides, the quick demo's model and detector): a 1.5 mm slide of solid
tumour with 1.8 % true stroma in its bed was scored 22.9 (interval 7.6-46.7, status ok), and a
slide of benign tissue without invasive tumour got a 32-tile detector bed around normal ducts and
was scored 20.9 (8.6-38.4, ok). By the TILs Working Group's definition neither has a meaningful
sTIL. Only ``out_of_distribution`` named a measurement, among others, over the *whole slide's* tiles.
The product measures each tile's stroma share by colour deconvolution; over the bed's tiles it read
0.234 on the solid tumour and 0.912 on the benign "bed", while the model's 32 training slides'
beds read 0.388-0.810 and 72 ordinary 1.5 mm slides (synth default, ``--look alt``, ``--hard``)
0.315-0.774. Now ``weakstil train`` records the training beds' range (``qc/reference.json``
``bed_stroma``) and a bed beyond it (plus the tile-measurement check's floor) is flagged
``bed_stroma_outside_training_range`` with the measurement and the range in words; a model
trained before has no reference and is not checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

NO_FLAG_INPUTS = dict(ood_score=None, ood_threshold=None, n_bed_tiles=100, low=None, high=None, threshold=30.0,
                      image=None, image_ref=None)
#: The demo model's training beds, retrained with this version (hunt 36g): 32 slides.
TRAINING_BEDS = np.linspace(0.388, 0.810, 32)


def bank_of(per_slide: list[tuple[np.ndarray, np.ndarray]]):
    """A feature bank of slides given as (stroma estimate per tile, bed per tile), the estimate held
    as the first appended tile measurement as a model trained with tile statistics holds it."""
    import torch

    from weakstil.mil.bank import FeatureBank, SlideBag
    from weakstil.tilestats import COLUMNS

    rows, bags, offset = [], [], 0
    for i, (stroma, bed) in enumerate(per_slide):
        n = len(stroma)
        stats = np.zeros((n, len(COLUMNS)), np.float32)
        stats[:, COLUMNS.index("stroma_estimate")] = stroma
        rows.append(np.concatenate([np.ones((n, 4), np.float32), stats], axis=1))
        bags.append(SlideBag(f"s{i}", offset, n, np.zeros((n, 2), np.int64), 224.0, np.asarray(bed, bool), Path(f"s{i}.h5")))
        offset += n
    bank = FeatureBank(torch.from_numpy(np.concatenate(rows)), bags, {})
    bank.tile_stats_columns = tuple(COLUMNS)
    return bank


def test_the_beds_stroma_is_measured_over_the_bed_and_held_against_the_training_beds():
    from weakstil.qc.bed_stroma import bed_stroma, bed_stroma_outside, bed_stroma_reference

    # each training slide: its bed at the value, the tissue outside the bed all stroma (not counted)
    training = bank_of([(np.r_[np.full(20, v), np.ones(20)], np.r_[np.ones(20), np.zeros(20)]) for v in TRAINING_BEDS])
    measured = [bed_stroma(training, i) for i in range(len(training))]
    assert np.allclose(measured, TRAINING_BEDS, atol=1e-6)  # the bed's tiles only
    ref = bed_stroma_reference(measured)
    assert ref is not None and ref["n_slides"] == 32
    assert ref["low"] < 0.388 and ref["high"] > 0.810  # the floor: a slide at the training extremes is not flagged
    # hunt 36e's solid tumour (0.234) and benign 'bed' (0.912): outside; the ordinary slides' extremes: inside
    assert "little stroma" in bed_stroma_outside(0.234, ref)
    assert "23.4 %" in bed_stroma_outside(0.234, ref) and "38.8 to 81.0 %" in bed_stroma_outside(0.234, ref)
    assert "almost only stroma" in bed_stroma_outside(0.912, ref)
    assert bed_stroma_outside(0.36, ref) == bed_stroma_outside(0.774, ref) == ""
    # too few training slides, or a model trained before hunt 36g: not checked
    assert bed_stroma_reference(measured[:19]) is None
    assert bed_stroma_outside(0.234, None) == ""


def test_a_bed_outside_the_training_beds_stroma_is_flagged():
    from weakstil.qc.bed_stroma import bed_stroma_outside, bed_stroma_reference
    from weakstil.qc.flags import FLAGS, slide_flags

    assert "bed_stroma_outside_training_range" in FLAGS
    why_low = bed_stroma_outside(0.234, bed_stroma_reference(list(TRAINING_BEDS)))
    flags, why = slide_flags(stil=22.9, bed_stroma=why_low, **NO_FLAG_INPUTS)
    assert flags == ["bed_stroma_outside_training_range"] and why[flags[0]] == why_low
    assert slide_flags(stil=22.9, bed_stroma="", **NO_FLAG_INPUTS)[0] == []
    assert slide_flags(stil=float("nan"), bed_stroma=why_low, **NO_FLAG_INPUTS)[0] == []  # not scored: nothing


@pytest.mark.parametrize("where", ["docs/scoring.md"])
def test_the_flag_table_of_the_docs_lists_it(where):
    doc = (Path(__file__).resolve().parents[1] / where).read_text(encoding="utf-8")
    assert "| `bed_stroma_outside_training_range` |" in doc
