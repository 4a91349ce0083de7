"""Review r47d of hunt 47d's normal-lobule step.

Was: a cluster of >= 4 small round lumens ringed by cells, <= 0.06 mm², was a "lobule" whatever lay between the lumens,
so an invasive cribriform carcinoma's nests (lumens punched in a solid sheet of tumour cells, each nest 0.01-0.04 mm²,
set apart by stroma) left the bed: 3-11 % of a drawn cribriform tumour's epithelium was cut out (r47d_play/tub.py).
Now a cluster whose grown hull, beyond each lumen's own epithelium, is mostly cell-dense is a tumour nest (the TILs
WG's lobule is acini in paler intralobular stroma), and model.json's lobule numbers are read strictly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

MPP = 4.0
GLASS, EPI, STROMA = (245, 245, 245), (120, 60, 150), (225, 150, 190)


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _map():
    """A 4 µm/px map: a normal lobule (7 acini, lumens ringed by one cell layer, in pale stroma, 40 µm apart) and two
    cribriform nests (a 100 µm-radius sheet of tumour cells with 6 punched-out lumens), 200 µm of stroma apart."""
    shape = (240, 240)
    rgb = np.full(shape + (3,), GLASS, np.uint8)
    h = np.zeros(shape, np.float32)
    tissue = _disc(shape, 120, 120, 115)
    rgb[tissue], h[tissue] = STROMA, 0.05
    acini = [(60 + 10 * dy, 120 + 10 * dx) for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1), (-1, 0), (0, -1), (1, -1))]
    for cy, cx in acini:
        ring = _disc(shape, cy, cx, 4) & ~_disc(shape, cy, cx, 2)
        rgb[ring], h[ring] = EPI, 0.8
        rgb[_disc(shape, cy, cx, 2)], h[_disc(shape, cy, cx, 2)] = GLASS, 0.0
    nests = []
    for ny, nx in ((160, 70), (160, 170)):
        nest = _disc(shape, ny, nx, 22)
        rgb[nest], h[nest] = EPI, 0.6
        nests.append(nest)
        for dy, dx in ((-7, -7), (-7, 7), (7, -7), (7, 7), (0, 0), (0, -10)):
            lum = _disc(shape, ny + dy, nx + dx, 2.5)
            rgb[lum], h[lum] = GLASS, 0.0
    return rgb, h, acini, nests


def test_cribriform_nests_stay_in_the_bed_and_the_lobule_is_still_kept_out():
    from weakstil.tumorbed.lobules import LobuleRule, lobule_mask, lumens

    rgb, h, acini, nests = _map()
    rule = LobuleRule(enabled=True)
    assert len(lumens(rgb, h, MPP, rule)) == len(acini) + 12  # every lumen is read as one
    mask, measures = lobule_mask(rgb, h, MPP, rule)
    assert all(mask[cy, cx] for cy, cx in acini)
    assert not any(mask[n].any() for n in nests)  # h47d: both nests kept out
    solid = [m for m in measures if m["solid"]]
    assert len(solid) == 2 and not any(m["lobule"] for m in solid) and all(m["mm2"] <= rule.max_mm2 for m in solid)
    assert sum(m["lobule"] for m in measures) == 1
    # the bound is what decides: with it at 1.01 the nests are "lobules" again
    loose, _ = lobule_mask(rgb, h, MPP, LobuleRule(enabled=True, solid_max=1.01))
    assert all(loose[n].any() for n in nests)


@pytest.mark.parametrize("bad", [{"max_mm2": "0.06"}, {"max_mm2": float("nan")}, {"min_lumens": 4.7},
                                 {"min_lumens": True}, {"rim_h": None}, {"max_mm": 0.06}])
def test_model_json_lobule_numbers_are_read_strictly(tmp_path, bad):
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence
    from weakstil.tumorbed.lobules import LobuleRule

    ev = LogisticEvidence(np.ones(4, np.float32), 0.0, np.zeros(4, np.float32), np.ones(4, np.float32))
    TumorBedDetector(ev, lobules=LobuleRule(enabled=True)).save(tmp_path / "d")
    meta_path = tmp_path / "d" / "model.json"
    meta = json.loads(meta_path.read_text())
    assert TumorBedDetector.load(tmp_path / "d").lobules == LobuleRule(enabled=True)
    meta["lobules"].update(bad)
    meta_path.write_text(json.dumps(meta))  # NaN is written as the JSON extension NaN, which Python reads back
    with pytest.raises(WeakSTILError, match="model.json"):
        TumorBedDetector.load(tmp_path / "d")
    assert LobuleRule.from_dict({"enabled": True, "min_lumens": 5.0, "max_mm2": 1}) == \
        LobuleRule(enabled=True, min_lumens=5, max_mm2=1.0)


def test_a_slide_too_large_for_the_lobule_read_is_not_read_and_says_so(tmp_path, monkeypatch):
    """Was: read whole at 4 µm/px, uncapped (a 30 x 20 mm section: 37.5 MP, 2.5 GB of float64 maps). Now over
    LOBULE_MAX_PIXELS the step is skipped before any read, said as "slide not read" (the bed is drawn without it)."""
    import weakstil.slide
    import weakstil.tumorbed.lobules as lobules
    from weakstil.stain import SlideStain

    calls = []

    class Fake:
        dimensions, mpp = (80_000, 60_000), 0.5  # 40 x 30 mm: 75 MP at 4 µm/px

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read_thumbnail(self, mpp):
            calls.append(mpp)
            return np.full((int(self.dimensions[1] * 0.5 / mpp), int(self.dimensions[0] * 0.5 / mpp), 3), 240, np.uint8)

    (tmp_path / "s.tiff").write_bytes(b"x")
    monkeypatch.setattr(weakstil.slide.Slide, "open", classmethod(lambda cls, *a, **k: Fake()))
    stain = SlideStain(np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]]), np.ones(2)).to_dict()
    attrs = {"slide_id": "s", "slide_path": str(tmp_path / "s.tiff"), "slide_mpp": 0.5, "slide_width": 80_000,
             "stain": json.dumps(stain) if not isinstance(stain, str) else stain}
    coords = np.zeros((1, 2))
    mask, tiles, said = lobules.slide_lobules(attrs, (300, 400), 100.0, coords, 224.0,
                                              lobules.LobuleRule(enabled=True), tmp_path / "s.tiff")
    assert mask is None and tiles is None and said.startswith(lobules.NOT_READ) and "MP" in said and not calls
    Fake.dimensions = (8_000, 6_000)  # 4 x 3 mm: 0.75 MP, under the cap: read at 4 µm/px
    attrs["slide_width"] = 8_000
    mask, tiles, said = lobules.slide_lobules(attrs, (300, 400), 100.0, coords, 224.0,
                                              lobules.LobuleRule(enabled=True), tmp_path / "s.tiff")
    assert calls == [lobules.LOBULE_MPP] and mask is not None and said.startswith("lobules: 0 kept out")


def test_the_apply_summary_names_the_step_that_lost_the_slide():
    """Was: a bed whose lobule step alone lost the slide (now also: over the lobule read's cap) was summarised as
    "lymphoid aggregates not kept out"."""
    from pathlib import Path

    from weakstil.tumorbed.apply import AppliedBed
    from weakstil.tumorbed.bed import TumorBed, TumorBedSource

    def applied(vetoes):
        bed = TumorBed(np.ones((4, 4), bool), 8.0, np.ones(2, np.float32), TumorBedSource.MODEL, "d", seed_vetoes=vetoes)
        return AppliedBed("s", bed, Path("s.h5"), Path("s.geojson"))

    lob = applied("lymphoid: 0 tiles; aggregates: 1 kept out (0.050 mm²); lobules: slide not read (over 60 MP at 4 µm/px)")
    assert lob.aggregates_unread and "(normal lobules not kept out: slide not read)" in lob.summary()
    assert "lymphoid aggregates not kept out" not in lob.summary()
    both = applied("aggregates: slide not read; lobules: slide not read").summary()
    assert "lymphoid aggregates not kept out" in both and "normal lobules not kept out" in both


@pytest.mark.parametrize("bad", [{"min_solidity": "0.9"}, {"ring_um": float("nan")}, {"max_islands": 2.5},
                                 {"max_islands": True}, {"poor_h": None}, {"min_solidty": 0.8}])
def test_model_json_aggregate_numbers_are_read_strictly(tmp_path, bad):
    """The aggregate rule's numbers as the lobule rule's: float("0.9") took a hand-edited string, int(2.5) a
    fraction, and a misspelt key was dropped for its default."""
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed.aggregates import AggregateRule
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence

    ev = LogisticEvidence(np.ones(4, np.float32), 0.0, np.zeros(4, np.float32), np.ones(4, np.float32))
    TumorBedDetector(ev, aggregates=AggregateRule(enabled=True)).save(tmp_path / "d")
    meta_path = tmp_path / "d" / "model.json"
    meta = json.loads(meta_path.read_text())
    assert TumorBedDetector.load(tmp_path / "d").aggregates == AggregateRule(enabled=True)
    meta["aggregates"].update(bad)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeakSTILError, match="model.json"):
        TumorBedDetector.load(tmp_path / "d")
    assert AggregateRule.from_dict({"enabled": True, "max_islands": 3.0, "max_mm2": 1}) == \
        AggregateRule(enabled=True, max_islands=3, max_mm2=1.0)
