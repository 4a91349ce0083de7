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
