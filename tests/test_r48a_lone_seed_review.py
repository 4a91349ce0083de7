"""Review r48a of the lone-seed rule (weakstil/tumorbed/nests.py, hunt 48a)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest


def _grid(n: int = 12):
    from weakstil.tumorbed.bed import SlideGeometry

    rr, cc = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    coords = np.stack([cc.ravel() * 100.0, rr.ravel() * 100.0], axis=1)
    return rr.ravel(), cc.ravel(), coords, SlideGeometry(n * 100, n * 100, 1.0, coords, 100.0,
                                                         np.ones((n * 10, n * 10), bool), 10.0)


def _evidence_model():
    from weakstil.tumorbed.evidence import LogisticEvidence

    return LogisticEvidence(np.full(1, 8.0, np.float32), 0.0, np.zeros(1, np.float32), np.ones(1, np.float32))


@pytest.mark.parametrize("value", [0.0, -1.0, 1.5])
def test_a_neighbour_evidence_that_makes_every_tile_a_neighbour_is_refused(tmp_path, value):
    """neighbour_evidence 0 (or below) counts every tile as showing tumour, so no seed is ever lone: a model.json edited
    so is the rule silently off, and is refused as a wrong value like the rule's other settings."""
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.nests import NestRule

    TumorBedDetector(_evidence_model(), nests=NestRule(True, 1)).save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["nests"]["neighbour_evidence"] = value
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(WeakSTILError, match="model.json.*neighbour_evidence"):
        TumorBedDetector.load(tmp_path)


def test_the_lone_seed_choice_is_the_other_steps_gate_and_says_what_the_rule_cost():
    """choose_nests keeps a level through flags.gate_chosen, as the aggregate, lobule and mucin steps: a rule left off
    says it cost the annotated slides (it said a bare "off"), and the means off / on are recorded."""
    from weakstil.bed_geometry import BedShape
    from weakstil.tumorbed.nests import NEST_MAX_LOSS, choose_nests

    rr, cc, _, g = _grid()
    tumour = (rr >= 3) & (rr <= 6) & (cc >= 3) & (cc <= 6)
    stray = (rr == 4) & (cc == 9)  # beyond the bridge: with the rule the annotated satellite nest is lost
    evidence = (tumour | stray).astype(np.float32)
    shape = BedShape(seed_threshold=0.5, bridge_um=100.0, margin_um=0.0)
    for drawn_in in (False, True):
        truth = np.zeros((120, 120), bool)
        truth[30:70, 30:70] = True
        truth[40:50, 90:100] |= drawn_in
        s = SimpleNamespace(slide_id="s", geom=g, tile_stats=None, stats_columns=None, bed_mask=truth)
        rule, record = choose_nests([s], [evidence], shape)
        assert record["dice_off"] == record["dice_mean"]["off"] and record["dice_on"] == record["dice_mean"]["1"]
        if drawn_in:
            assert not rule.enabled and record["chosen"].startswith("off: costs")
            assert record["dice_off"] - record["dice_on"] >= NEST_MAX_LOSS
        else:
            assert rule.enabled and record["chosen"] == "on: 1 seed neighbours"
    assert choose_nests([], [], shape)[1]["chosen"].startswith("off: no annotated slide")


def test_a_biopsy_whose_every_seed_is_alone_keeps_its_bed_and_says_the_rule_stood_aside():
    """A small biopsy whose whole tumour is one tile: the rule stands aside and the bed is the tile's, as without the
    rule; its seed_vetoes says so (it said "lone seeds: 0 tiles", as for a slide with no lone seed at all)."""
    from weakstil.bed_geometry import BedShape
    from weakstil.tumorbed.bed import TumorBedSource
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.nests import NestRule
    from weakstil.tumorbed.veto import LymphoidVeto

    rr, cc, coords, g = _grid(6)
    nest = (rr == 2) & (cc == 3)
    x = np.where(nest[:, None], 1.0, -1.0).astype(np.float32)
    shape = BedShape(seed_threshold=0.5, bridge_um=100.0, margin_um=100.0)
    kw = dict(veto=LymphoidVeto(enabled=False))
    without = TumorBedDetector(_evidence_model(), shape, **kw).detect(x, g)
    for level in (1, 2):
        bed = TumorBedDetector(_evidence_model(), shape, nests=NestRule(True, level), **kw).detect(x, g)
        assert bed.source is TumorBedSource.MODEL and bed.tile_flags[nest].all()
        assert np.array_equal(bed.mask, without.mask)
        assert "lone seeds: stood aside, every seed tile alone (1 kept)" in bed.seed_vetoes
        assert "0 tiles" not in bed.seed_vetoes
    # beside a nest of several tiles the same lone tile is taken, and that is said as a count
    block = (rr >= 3) & (rr <= 5) & (cc <= 1)
    x = np.where((nest | block)[:, None], 1.0, -1.0).astype(np.float32)
    bed = TumorBedDetector(_evidence_model(), shape, nests=NestRule(True, 1), **kw).detect(x, g)
    assert "lone seeds: 1 tiles" in bed.seed_vetoes and not bed.tile_flags[nest].any()


def test_lone_seeds_the_rule_took_are_not_weighed_against_the_bed_nor_brought_back_as_a_set_aside_veto():
    """A slide with a nest of 2 x 2 tiles and eight lone false seeds far from it (a TIL-poor slide's stroma): with the
    rule the bed is the nest's. The bed was weighed against evidence that still held the lone seeds, found implausibly
    small, and the detector (lymphoid veto on) 'set the veto aside' and drew the bed from evidence without the rule
    (the veto had taken nothing), or drew the whole tissue. Now the lone seeds leave that evidence too."""
    from weakstil.bed_geometry import BEFORE_LYMPHOID_VETO, BedShape, Plausibility
    from weakstil.tumorbed.bed import TumorBedSource
    from weakstil.tumorbed.detector import VETO_SET_ASIDE, TumorBedDetector
    from weakstil.tumorbed.nests import NestRule
    from weakstil.tumorbed.veto import LymphoidVeto

    rr, cc, coords, g = _grid(12)
    nest = (rr >= 5) & (rr <= 6) & (cc >= 5) & (cc <= 6)
    lone = np.isin(rr, (0, 11)) & np.isin(cc, (0, 4, 7, 11))
    x = np.where((nest | lone)[:, None], 1.0, -1.0).astype(np.float32)
    shape = BedShape(seed_threshold=0.5, bridge_um=100.0, margin_um=0.0)
    rule = Plausibility(min_bed_tiles=2, min_evidence_ratio=0.5, evidence=BEFORE_LYMPHOID_VETO)
    for veto in (LymphoidVeto(enabled=True), LymphoidVeto(enabled=False)):
        bed = TumorBedDetector(_evidence_model(), shape, rule, veto=veto, nests=NestRule(True, 1)).detect(x, g)
        assert bed.source is TumorBedSource.MODEL, bed.detail
        assert VETO_SET_ASIDE not in bed.seed_vetoes and "lone seeds: 8 tiles" in bed.seed_vetoes
        assert bed.tile_flags[nest].all() and not bed.tile_flags[lone].any()
    # without the rule the lone seeds are evidence and seeds alike: the same detector draws them as before
    old = TumorBedDetector(_evidence_model(), shape, rule, veto=LymphoidVeto(enabled=False)).detect(x, g)
    assert old.tile_flags[lone].all() and old.source is TumorBedSource.MODEL


def test_the_lone_seed_choice_is_made_on_the_evidence_the_chosen_lobule_step_leaves():
    """A false seed beside a normal lobule's tile (itself read as tumour): the detector takes the lobule tile's evidence
    before the rule, so the false seed is lone there and the rule takes it. Training chose the rule on the evidence
    with the lobule tile still in, where the false seed had a neighbour and the rule did nothing (as for the aggregates;
    the mucin pools alone were applied)."""
    from weakstil.bed_geometry import BedShape
    from weakstil.tumorbed.mucin import chosen_structure
    from weakstil.tumorbed.nests import choose_nests

    rr, cc, _, g = _grid()
    tumour = (rr >= 3) & (rr <= 6) & (cc >= 3) & (cc <= 6)
    stray, lobule_tile = (rr == 4) & (cc == 8), (rr == 4) & (cc == 9)
    evidence = (tumour | stray | lobule_tile).astype(np.float32)
    lobule = np.zeros((120, 120), bool)
    lobule[40:50, 90:100] = True
    truth = np.zeros((120, 120), bool)
    truth[30:70, 30:70] = True
    s = SimpleNamespace(slide_id="s", geom=g, tile_stats=None, stats_columns=None, bed_mask=truth)
    shape = BedShape(seed_threshold=0.5, bridge_um=100.0, margin_um=0.0)
    prepare = chosen_structure(None, lambda sid, geom: (lobule, lobule_tile), None)
    _, record = choose_nests([s], [evidence], shape, prepare)
    assert record["per_slide"]["s"]["lone_1"] == 1 and record["dice_mean"]["1"] > record["dice_mean"]["off"]
    _, as_is = choose_nests([s], [evidence], shape)  # without the lobule step: nothing is lone
    assert as_is["per_slide"]["s"]["lone_1"] == 0


def test_the_refined_front_is_weighed_against_the_evidence_the_tiles_bed_was():
    """The same slide with the front refinement: the tiles' bed of the nest passed the plausibility check against the
    evidence with the lone seeds taken, and its redrawn front was checked against the evidence with them in and
    thrown away as 'implausible'."""
    import dataclasses

    from weakstil.bed_geometry import BEFORE_LYMPHOID_VETO, BedShape, Plausibility
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.front import FRONT_REFINED, FrontRefine
    from weakstil.tumorbed.nests import NestRule
    from weakstil.tumorbed.veto import LymphoidVeto

    rr, cc, coords, g = _grid(12)
    nest = (rr >= 5) & (rr <= 6) & (cc >= 5) & (cc <= 6)
    lone = np.isin(rr, (0, 11)) & np.isin(cc, (0, 4, 7, 11))
    x = np.where((nest | lone)[:, None], 1.0, -1.0).astype(np.float32)

    def embed(xy):  # a shifted tile reads as tumour when its centre lies on the nest (500-700 µm both ways)
        c = xy + 50.0
        return np.where(((c >= 500) & (c < 700)).all(axis=1), 1.0, -1.0).astype(np.float32)[:, None]

    det = TumorBedDetector(_evidence_model(), BedShape(seed_threshold=0.5, bridge_um=100.0, margin_um=0.0),
                           Plausibility(min_bed_tiles=2, min_evidence_ratio=0.5, evidence=BEFORE_LYMPHOID_VETO),
                           veto=LymphoidVeto(enabled=False), front=FrontRefine(True, 1.0), nests=NestRule(True, 1))
    bed = det.detect(x, g)
    assert bed.tile_flags[nest].all() and not bed.tile_flags[lone].any()
    out = det.refine_front(dataclasses.replace(bed), x, g, None, None, None, embed)
    assert out.front == FRONT_REFINED and "implausible" not in out.seed_vetoes, out.seed_vetoes
