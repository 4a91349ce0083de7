"""Review r48b of helper h48b's bound on the front's growth (issue 14).

1. ``front`` in model.json was read loosely: ``float()`` took a hand-edited ``"1.5"`` or ``true`` as ``band_tiles``,
   NaN passed, and a misspelt ``grow_tiles`` was dropped, its detector drawing unbounded beds without a word. It is
   now read as the other steps' rules are (:func:`weakstil.tumorbed.flags.rule_from_json`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest


def _saved(tmp_path, front: dict):
    from weakstil.bed_geometry import BedShape
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence
    from weakstil.tumorbed.front import FrontRefine

    one = np.ones(1, np.float32)
    TumorBedDetector(LogisticEvidence(one, 0.0, 0 * one, one), BedShape(), front=FrontRefine(True)).save(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["front"] = front
    (tmp_path / "model.json").write_text(json.dumps(meta))
    return TumorBedDetector.load


@pytest.mark.parametrize("front", [{"enabled": True, "band_tiles": "1.5"}, {"enabled": True, "band_tiles": True},
                                   {"enabled": True, "band_tiles": float("nan")},
                                   {"enabled": True, "band_tiles": 1.0, "grow_tile": 0.25},
                                   {"enabled": True, "band_tiles": 1.0, "grow_tiles": None},
                                   {"enabled": True, "band_tiles": -1.0}])
def test_a_hand_edited_front_is_refused_in_one_line(tmp_path, front):
    from weakstil.errors import WeakSTILError

    load = _saved(tmp_path, front)
    with pytest.raises(WeakSTILError, match="model.json") as err:
        load(tmp_path)
    assert "\n" not in str(err.value).strip() and ("band_tiles" in str(err.value) or "grow_tile" in str(err.value))


def test_old_and_bounded_fronts_still_load(tmp_path):
    from weakstil.tumorbed.front import FrontRefine

    assert _saved(tmp_path / "a", {"enabled": True, "band_tiles": 1})(tmp_path / "a").front == FrontRefine(True, 1.0)
    assert _saved(tmp_path / "b", {"enabled": True, "band_tiles": 1.5, "grow_tiles": 0})(tmp_path / "b").front == \
        FrontRefine(True, 1.5, 0.0)
