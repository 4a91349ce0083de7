"""The lymphoid veto may not take a TIL-rich bed (h48f, issue 14).

In a bed whose stroma is a sheet of lymphocytes, every tumour nest lies within a tile of the
infiltrate, so no nest reaches past the infiltrate's rim to restore it: the veto took 68 % of an
outside generator's 72 % sTIL slide's tumour evidence and the bed shrank to 0.21 x the truth
(Dice 0.09). The veto is for lymphoid tissue *away from* tumour: past ``max_evidence_share`` of the
slide's evidence, the lymphoid groups next to the evidence it leaves are given back; an aggregate
away from that evidence, and a lymph node on a piece of tissue of its own, stay vetoed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from weakstil.tilestats import COLUMNS
from weakstil.tumorbed.veto import LymphoidVeto, vetoed_tiles

from test_b_hunt16 import N, TILE, _grid, _stats  # the same 20 x 20 tile world and tile measurements


def test_a_til_rich_bed_keeps_its_evidence_and_a_far_aggregate_does_not():
    rows, cols, coords = _grid()
    bed = (rows >= 2) & (rows < 12) & (cols >= 2) & (cols < 12)
    nests = bed & (rows % 3 == 0) & (cols % 3 == 0)  # small nests, each ringed by lymphocytes
    infiltrate = bed & ~nests
    aggregate = (rows >= 15) & (rows < 19) & (cols >= 15) & (cols < 19)  # far from the bed
    stats = _stats(infiltrate | aggregate, nests)
    evidence = np.where(bed | aggregate, 0.9, 0.1).astype(np.float32)
    uncapped = vetoed_tiles(evidence, stats, COLUMNS, coords, TILE, LymphoidVeto(max_evidence_share=1.0))
    assert uncapped[infiltrate].all()  # the rule before the cap: the bed's infiltrate vetoed
    assert evidence[uncapped].sum() > 0.5 * evidence.sum()
    veto = vetoed_tiles(evidence, stats, COLUMNS, coords, TILE, LymphoidVeto())
    assert not veto[infiltrate].any() and not veto[nests].any()
    assert veto[aggregate].all()  # away from the evidence: still vetoed
    assert evidence[veto].sum() <= 0.5 * evidence.sum()


def test_a_lymph_node_on_its_own_piece_of_tissue_is_never_given_back():
    rows, cols, coords = _grid()
    tumour = (rows >= 2) & (rows < 4) & (cols >= 2) & (cols < 4)
    node = (rows >= 4) & (rows < 10) & (cols >= 2) & (cols < 8)  # grid neighbour of the tumour, across glass
    fragments = np.where(node, 2, 1)
    evidence = np.where(tumour | node, 0.9, 0.0).astype(np.float32)
    stats = _stats(node, tumour)
    veto = vetoed_tiles(evidence, stats, COLUMNS, coords, TILE, LymphoidVeto(), fragments)
    assert evidence[veto].sum() > 0.5 * evidence.sum()  # over the share, and yet
    assert veto[node].all() and not veto[tumour].any()
    # on one piece of tissue the same node, touching the tumour past its rim, is restored by it
    assert not vetoed_tiles(evidence, stats, COLUMNS, coords, TILE, LymphoidVeto(), np.ones(N * N, int))[node].any()


def test_the_cap_is_recorded_and_checked(tmp_path):
    rule = LymphoidVeto(max_evidence_share=0.7)
    assert LymphoidVeto.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    old = {k: v for k, v in LymphoidVeto().to_dict().items() if k != "max_evidence_share"}
    assert LymphoidVeto.from_dict(old).max_evidence_share == 0.5  # detectors written before it: the cap
    for bad in (0.0, -0.1, 1.5, float("nan")):  # (the detector's loader says it as one line naming model.json)
        with pytest.raises(ValueError, match="max_evidence_share"):
            LymphoidVeto.from_dict({**old, "max_evidence_share": bad})
