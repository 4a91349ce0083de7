"""Review r47f of hunt 47f's mucin pools: what the lobule or aggregate step kept out of the bed stays out when a pool
round it seeds the bed (a lobule's acini in its pale loose stroma read as clusters floating in a pool)."""

from __future__ import annotations

import dataclasses

import numpy as np


def _detector(lobules: bool):
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence
    from weakstil.tumorbed.lobules import LobuleRule
    from weakstil.tumorbed.mucin import MucinRule

    ev = LogisticEvidence(np.ones(4, np.float32), 0.0, np.zeros(4, np.float32), np.ones(4, np.float32))
    return dataclasses.replace(TumorBedDetector(ev), lobules=LobuleRule(enabled=lobules), mucin=MucinRule(enabled=True))


def _scene(monkeypatch, lob_mask):
    """A 40 x 40 mask grid: a pool (filled, as pool_mask gives it) round a structure in its middle."""
    from weakstil.tumorbed import lobules, mucin
    from weakstil.tumorbed.bed import SlideGeometry

    pool = np.zeros((40, 40), bool)
    pool[10:30, 10:30] = True
    inner = np.zeros((40, 40), bool)
    inner[16:24, 16:24] = True
    monkeypatch.setattr(lobules, "read_at_4um", lambda *a, **k: ("thumb", 4.0, "conc"))
    monkeypatch.setattr(lobules, "slide_lobules", lambda *a, **k: (inner if lob_mask else None, None,
                                                                   "lobules: 1 kept out"))
    monkeypatch.setattr(mucin, "slide_mucin", lambda *a, **k: (pool, "mucin pools: 1 with floating clusters seeded"))
    geom = SlideGeometry(400, 400, 1.0, np.zeros((1, 2)), 100.0, np.ones((40, 40), bool), 10.0)
    return geom, pool, inner


def test_a_pool_round_a_normal_lobule_does_not_seed_it_back_into_the_bed(monkeypatch):
    from weakstil.tumorbed.mucin import structure_steps

    geom, pool, lob = _scene(monkeypatch, True)
    _, said = structure_steps(_detector(True), {}, geom, None)
    assert "lobules: 1 kept out" in said and "mucin pools: 1" in said
    assert not (geom.tissue_mask & lob).any()  # the lobule stays out of the tissue the bed is drawn on ...
    assert not (geom.seed_pixels & lob).any()  # ... and seeds nothing
    assert (geom.seed_pixels == (pool & ~lob)).all()  # the rest of the pool still seeds


def test_a_pool_round_a_lymphoid_aggregate_does_not_seed_it_back_into_the_bed(monkeypatch):
    from weakstil.tumorbed.mucin import structure_steps

    geom, pool, agg = _scene(monkeypatch, False)
    geom.tissue_mask = geom.tissue_mask & ~agg  # as detect_file leaves it after the aggregate step
    structure_steps(_detector(False), {}, geom, None, agg)
    assert not (geom.tissue_mask & agg).any() and not (geom.seed_pixels & agg).any()
    assert (geom.seed_pixels == (pool & ~agg)).all()
