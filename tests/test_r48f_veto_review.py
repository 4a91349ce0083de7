"""Review r48f of the lymphoid veto's evidence cap (h48f): model.json's ``lymphoid_veto`` read strictly, as the
other rules are (flags.rule_from_json), and the cap's action said in the bed's ``seed_vetoes``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weakstil.errors import WeakSTILError


def _saved(tmp_path):
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence
    from weakstil.tumorbed.veto import LymphoidVeto

    ev = LogisticEvidence(np.ones(4, np.float32), 0.0, np.zeros(4, np.float32), np.ones(4, np.float32))
    TumorBedDetector(ev, veto=LymphoidVeto()).save(tmp_path / "d")
    return TumorBedDetector, tmp_path / "d" / "model.json"


@pytest.mark.parametrize("key, value", [("max_evidence_share", "0.5"), ("max_evidence_share", True),
                                        ("max_evidence_share", 1.5), ("max_evidence_shares", 0.7),
                                        ("min_dark_area", "0.4")])
def test_a_hand_edited_cap_is_refused_in_one_line_naming_model_json(tmp_path, key, value):
    detector, meta_path = _saved(tmp_path)
    meta = json.loads(meta_path.read_text())
    assert detector.load(meta_path.parent).veto.max_evidence_share == 0.5  # as written: read
    meta["lymphoid_veto"][key] = value
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(WeakSTILError) as err:  # not read as 0.5 / 1.0 (no cap), nor a misspelt key dropped
        detector.load(meta_path.parent)
    assert str(meta_path) in str(err.value) and key in str(err.value)
