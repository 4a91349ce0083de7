"""A lone seed tile is no nest region: it seeds nothing (issue 14, hunt 48a).

Was: on hunt 41a's TIL-poor slides the tile classifier fired on single tiles of plain stroma or fat 50-300 µm beyond
the tumour (4-5 per slide; no tumour nucleus measured in any of them, nor in most true seeds of 41a's looks, so the
tumour-cell gate was off), and the 150 µm bridge joined each, with the stroma round it, to the bed (og41a_006: bed
1.9 x its truth, Dice 0.653). Now a seed tile needs ``min_neighbours`` seed tiles among its eight neighbours (the TILs
WG's bed is the region of cohesive nests of tumour cells); the rule stands aside where every seed is alone. Training
chooses the level by held-out Dice; a detector written before has no rule and draws the beds it drew.
"""

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


def test_a_lone_seed_and_a_pair_are_no_nest_region_a_block_is():
    from weakstil.tumorbed.nests import lone_seeds

    rr, cc, coords, _ = _grid()
    block = (rr >= 3) & (rr <= 5) & (cc >= 3) & (cc <= 5)  # 3 x 3 tiles of tumour
    lone = (rr == 9) & (cc == 9)
    pair = (rr == 1) & ((cc == 9) | (cc == 10))
    line = (rr == 9) & (cc >= 1) & (cc <= 3)  # three tiles in a row: its middle has two neighbours
    evidence = np.where(block | lone | pair | line, 0.9, 0.1).astype(np.float32)
    one = lone_seeds(evidence, coords, 100.0, 0.5, 1)
    assert np.flatnonzero(one).tolist() == np.flatnonzero(lone).tolist()
    two = lone_seeds(evidence, coords, 100.0, 0.5, 2)
    assert set(np.flatnonzero(two)) == set(np.flatnonzero(lone | pair | (line & (cc != 2))))
    assert not two[block].any()
    # seeds under the threshold are not counted as neighbours; a slide whose every seed is alone keeps them
    assert lone_seeds(np.where(lone | pair, 0.9, 0.1), coords, 100.0, 0.5, 2).sum() == 0
    assert lone_seeds(np.where(block, 0.4, 0.1), coords, 100.0, 0.5, 1).sum() == 0
    # a detector seeding only at 0.95: the nest's tiles round a seed show tumour at 0.5-0.95 and keep it in a region
    sparse = np.where(block, 0.7, 0.1)
    sparse[(rr == 4) & (cc == 4)] = 0.97
    sparse[lone | pair] = 0.97
    strict = lone_seeds(sparse, coords, 100.0, 0.95, 1)
    assert not strict[(rr == 4) & (cc == 4)].any() and strict[lone].all() and not strict[pair].any()
    assert lone_seeds(sparse, coords, 100.0, 0.95, 1, neighbour_evidence=0.95)[(rr == 4) & (cc == 4)].all()


def test_a_lone_false_seed_beside_the_tumour_is_not_bridged_into_the_bed():
    """With the rule the lone tile (100 µm beyond the tumour, within the bridge) is no seed and the bed is the tumour's;
    the same detector without it bridges the tile and its stroma in. The bed says how many tiles the rule took."""
    from weakstil.bed_geometry import BedShape
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence
    from weakstil.tumorbed.nests import NestRule
    from weakstil.tumorbed.veto import LymphoidVeto

    rr, cc, coords, g = _grid(10)
    tumour = (rr >= 3) & (rr <= 6) & (cc >= 2) & (cc <= 5)
    stray = (rr == 4) & (cc == 7)
    x = np.where((tumour | stray)[:, None], 1.0, -1.0).astype(np.float32)
    ev = LogisticEvidence(np.full(1, 8.0, np.float32), 0.0, np.zeros(1, np.float32), np.ones(1, np.float32))
    shape = BedShape(seed_threshold=0.5, bridge_um=100.0, margin_um=0.0)
    without = TumorBedDetector(ev, shape, veto=LymphoidVeto(enabled=False)).detect(x, g)
    with_rule = TumorBedDetector(ev, shape, veto=LymphoidVeto(enabled=False), nests=NestRule(True, 2)).detect(x, g)
    assert without.tile_flags[stray].all()
    assert not with_rule.tile_flags[stray].any()
    assert with_rule.tile_flags[tumour].all() and with_rule.tile_flags.sum() == tumour.sum()
    assert "lone seeds: 1 tiles" in with_rule.seed_vetoes and "lone seeds" not in without.seed_vetoes


def test_an_old_detector_has_no_rule_a_new_one_round_trips_and_training_chooses_it_by_held_out_dice(tmp_path):
    from weakstil.bed_geometry import BedShape
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence
    from weakstil.tumorbed.nests import NestRule, choose_nests

    ev = LogisticEvidence(np.ones(4, np.float32), 0.0, np.zeros(4, np.float32), np.ones(4, np.float32))
    TumorBedDetector(ev).save(tmp_path / "old")
    assert "nests" not in json.loads((tmp_path / "old" / "model.json").read_text())
    assert not TumorBedDetector.load(tmp_path / "old").nests.enabled
    TumorBedDetector(ev, nests=NestRule(True, 1)).save(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "model.json").read_text())["nests"] == {"enabled": True, "min_neighbours": 1,
                                                                                  "neighbour_evidence": 0.5}
    assert TumorBedDetector.load(tmp_path / "new").nests == NestRule(True, 1)
    for bad in ({"enabled": True, "min_neighbours": 0}, {"enabled": True, "min_neighbours": 1.5},
                {"enabled": "true"}, {"enabled": True, "neighbours": 2}, {"enabled": True, "neighbour_evidence": "0.5"}):
        meta = json.loads((tmp_path / "new" / "model.json").read_text())
        meta["nests"] = bad
        (tmp_path / "new" / "model.json").write_text(json.dumps(meta))
        with pytest.raises(WeakSTILError, match="model.json"):
            TumorBedDetector.load(tmp_path / "new")

    rr, cc, coords, g = _grid()
    tumour = (rr >= 3) & (rr <= 6) & (cc >= 3) & (cc <= 6)
    stray = (rr == 4) & (cc == 8)
    evidence = (tumour | stray).astype(np.float32)
    shape = BedShape(seed_threshold=0.5, bridge_um=100.0, margin_um=0.0)
    for drawn_in in (False, True):  # the annotator drew the lone tile's focus in (a true satellite nest): off
        truth = np.zeros((120, 120), bool)
        truth[30:70, 30:70] = True
        truth[40:50, 70:90] |= drawn_in
        s = SimpleNamespace(slide_id=f"s{int(drawn_in)}", geom=g, tile_stats=None, stats_columns=None, bed_mask=truth)
        rule, record = choose_nests([s], [evidence], shape)
        assert rule.enabled == (not drawn_in)
        assert record["per_slide"][s.slide_id]["lone_1"] == 1
        assert (record["dice_mean"]["1"] > record["dice_mean"]["off"]) == (not drawn_in)
