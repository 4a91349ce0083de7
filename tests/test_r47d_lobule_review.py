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
