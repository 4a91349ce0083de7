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


def test_the_bed_says_when_the_cap_gave_lymphoid_tiles_back(monkeypatch):
    """A TIL-rich bed (nests ringed by lymphocytes) and a far aggregate: the cap gives the bed's infiltrate back and
    the bed file says so; the veto's word stays as it was ("lymphoid: N tiles") where the cap did not act."""
    from weakstil.tilestats import COLUMNS
    from weakstil.tumorbed import SlideGeometry
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence
    from weakstil.tumorbed.veto import DARK_NUCLEI_COLUMNS, TUMOUR_NUCLEI_COLUMNS, LymphoidVeto

    n, tile = 20, 224
    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    coords = np.stack([cols * tile, rows * tile], axis=1)
    geom = SlideGeometry(n * tile, n * tile, 0.5, coords, float(tile), np.ones((n * tile // 16,) * 2, bool), 8.0)
    bed = (rows >= 2) & (rows < 12) & (cols >= 2) & (cols < 12)
    nests = bed & (rows % 3 == 0) & (cols % 3 == 0)
    aggregate = (rows >= 15) & (rows < 19) & (cols >= 15) & (cols < 19)
    stats = np.zeros((n * n, len(COLUMNS)), np.float32)
    stats[np.ix_((bed & ~nests) | aggregate, [COLUMNS.index(c) for c in DARK_NUCLEI_COLUMNS[:2]])] = 0.3
    stats[np.ix_(nests, [COLUMNS.index(c) for c in TUMOUR_NUCLEI_COLUMNS[-1:]])] = 0.1
    detector = TumorBedDetector(LogisticEvidence(np.ones(4, np.float32), 0.0, np.zeros(4, np.float32),
                                                 np.ones(4, np.float32)), veto=LymphoidVeto())
    for evidence, capped in ((np.where(bed | aggregate, 0.9, 0.1), True), (np.where(nests, 0.9, 0.1), False)):
        monkeypatch.setattr(detector, "tumour_evidence", lambda *a, ev=evidence.astype(np.float32), **k: ev)
        found = detector.detect(np.zeros((n * n, 4), np.float32), geom, stats, list(COLUMNS))
        word = next(w for w in found.seed_vetoes.split("; ") if w.startswith("lymphoid: "))
        if capped:  # the infiltrate given back, the aggregate still vetoed
            assert word == (f"lymphoid: {aggregate.sum()} tiles (capped at 50% of the evidence: "
                            f"{(bed & ~nests).sum()} lymphoid tiles beside the rest of it given back)")
        else:  # the classifier reads the nests only: the veto takes a small share, as before
            assert word == f"lymphoid: {((bed & ~nests) | aggregate).sum()} tiles"
