"""A dense focus that holds tumour nests stays in the bed (hunt 46f, review r46d).

Was: the lymphoid-aggregate step (hunt 46d) took any compact, set-apart dense piece of an aggregate's size out of
the tissue the bed is drawn on, its holes filled so a TLS's germinal centre went with it. A small circumscribed
TIL-rich tumour focus (tumour nests inside dense lymphocytes, a pushing border, stroma round it, <= 0.3 mm²) passed
every test and was removed whole, nests included, although by the TILs WG's definition a piece that holds invasive
tumour is bed, never a TLS. Now a piece with more than two islands of paler cells that are not lymphocytes (holes of
at least a 25 µm nest, haematoxylin 0.1-0.4) is no aggregate. Also: model.json flags are read strictly ("false" was on), and the bed says how
many aggregates left its tissue on the mask grid (not how many were found at 4 µm/px).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

MPP = 4.0


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _focus_and_tls():
    """4 µm/px haematoxylin, 1.2 x 1.2 mm of stroma (0.05): a TIL-rich tumour focus (160 µm radius, 0.08 mm²) of
    dense lymphocytes (0.8) holding 12 tumour nests of 16 µm radius (0.3, paler: larger, open nuclei) at (75, 75),
    and a TLS (100 µm radius) with one paler germinal centre (40 µm radius) at (225, 225)."""
    shape = (300, 300)
    h = np.full(shape, 0.05, np.float32)
    h[_disc(shape, 75, 75, 40)] = 0.8
    nests = np.zeros(shape, bool)
    rng = np.random.default_rng(0)
    for _ in range(12):
        a, r = rng.uniform(0, 2 * np.pi), rng.uniform(0, 28)
        nests |= _disc(shape, 75 + r * np.sin(a), 75 + r * np.cos(a), 4)
    h[nests] = 0.3
    h[_disc(shape, 225, 225, 25)] = 0.85
    h[_disc(shape, 225, 225, 10)] = 0.4
    return h, nests


def test_a_dense_focus_holding_tumour_nests_stays_in_the_bed_and_a_tls_beside_it_does_not():
    from weakstil.bed_geometry import BedShape, bed_from_evidence
    from weakstil.tumorbed.aggregates import AggregateRule, aggregate_pieces, on_mask_grid

    h, nests = _focus_and_tls()
    stains = np.stack([h, np.full(h.shape, 0.5, np.float32)], axis=-1)
    agg, measures = aggregate_pieces(stains, MPP, AggregateRule(enabled=True))
    tls = _disc(h.shape, 225, 225, 25)
    assert agg[tls].mean() > 0.95  # the TLS, its germinal centre with it, is still found ...
    assert not agg[_disc(h.shape, 75, 75, 40)].any()  # ... the focus, as round and set apart, is not
    focus = [m for m in measures if abs(m["mm2"] - np.pi * 0.16 ** 2) < 0.01]
    assert len(focus) == 1 and focus[0]["solidity"] > 0.9 and focus[0]["ring_poor"] > 0.9  # it passes the rest
    # the bed drawn as detect_file draws it: 100 µm tiles (8 µm mask grid), the focus's tiles read as tumour
    rr, cc = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    coords = np.stack([cc.ravel() * 100.0, rr.ravel() * 100.0], axis=1)
    evidence = ((rr >= 1) & (rr <= 4) & (cc >= 1) & (cc <= 4)).ravel().astype(np.float32)
    tissue = np.ones((150, 150), bool)
    grid = on_mask_grid(agg, MPP, tissue.shape, 8.0)
    shape = BedShape(seed_threshold=0.5, bridge_um=0.0, margin_um=0.0)
    bed = bed_from_evidence(evidence, coords, 100.0, 1.0, tissue & ~grid, 8.0, shape)[0]
    nests8 = on_mask_grid(nests, MPP, tissue.shape, 8.0)
    assert nests8.any() and bed[nests8].all()  # every nest in the bed
    assert grid[on_mask_grid(tls, MPP, tissue.shape, 8.0)].all() and not bed[grid].any()


def test_a_tls_with_one_or_two_germinal_centres_empty_vessels_or_gaps_in_its_mantle_is_still_an_aggregate():
    from weakstil.tumorbed.aggregates import AggregateRule, aggregate_pieces

    shape = (120, 120)
    three = ((50, 50), (70, 70), (50, 70))
    for centres, lumen in (((60, 60),), 0.3), (((50, 50), (70, 72)), 0.3), (three, 0.02), (three, 0.45):
        h = np.full(shape, 0.05, np.float32)
        h[_disc(shape, 60, 60, 30)] = 0.85
        for cy, cx in centres:  # germinal centres (cellular, 0.3), vessels' lumens (no nuclei) or gaps in the mantle
            h[_disc(shape, cy, cx, 5)] = lumen
        agg, measures = aggregate_pieces(np.stack([h, np.full(shape, 0.5, np.float32)], -1), MPP,
                                         AggregateRule(enabled=True))
        assert agg[60, 60] and measures[0]["aggregate"], (centres, measures)
        assert measures[0]["islands"] == (len(centres) if 0.1 < lumen < 0.4 else 0)


@pytest.mark.parametrize("section, key", [("aggregates", "enabled"), ("front", "enabled"), ("ink_veto", "enabled"),
                                          ("ink_veto", "over_tissue"), ("tumour_cell_gate", "enabled"),
                                          ("lymphoid_veto", "restore_beyond_rim")])
def test_a_flag_edited_into_a_string_is_refused_not_read_as_on(tmp_path, section, key):
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed.aggregates import AggregateRule
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence

    ev = LogisticEvidence(np.ones(4, np.float32), 0.0, np.zeros(4, np.float32), np.ones(4, np.float32))
    TumorBedDetector(ev, aggregates=AggregateRule(enabled=True)).save(tmp_path / "d")
    meta_path = tmp_path / "d" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta.setdefault(section, {"enabled": True})[key] = False
    meta_path.write_text(json.dumps(meta))
    assert getattr(TumorBedDetector.load(tmp_path / "d"), {"tumour_cell_gate": "cell_gate", "lymphoid_veto": "veto"}
                   .get(section, section)).__getattribute__(key) is False  # JSON false: off, as before
    meta[section][key] = "false"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeakSTILError) as err:
        TumorBedDetector.load(tmp_path / "d")
    assert "model.json" in str(err.value) and "'false'" in str(err.value)


def test_the_bed_counts_the_aggregates_that_left_its_tissue_not_those_found():
    from weakstil.tumorbed.aggregates import kept_out_said

    tissue = np.zeros((20, 20), bool)
    tissue[:, :10] = True
    agg = np.zeros((20, 20), bool)
    agg[2:5, 2:5] = True  # in the tissue: 9 cells of 8 µm
    agg[12:15, 14:17] = True  # on glass (or gone on the mask grid): removes nothing
    assert kept_out_said(agg, tissue, 8.0) == "aggregates: 1 kept out (0.001 mm²)"
    assert kept_out_said(np.zeros((20, 20), bool), tissue, 8.0) == "aggregates: 0 kept out (0.000 mm²)"
    assert kept_out_said(None, tissue, 8.0) == "aggregates: slide not read"
