"""Hunt 42d: a TIL-rich bed whose seed tiles lie on its lymphocyte sheet keeps its bed.

An outside tester's slide of 66.8 % sTIL (og40i_024, ``benchmarks/outside_generator_40i.py``) fell back
to the whole tissue with "no tumour cells in the bed's 36 seed tiles, 33 of them lymphoid": the
detector's seeds lay on the bed's dense infiltrate, the tumour-cell gate kept them (a few pale
fragments beside them) and the seed check, which does not count lymphoid tiles, found no seed with
tumour cells, although a tile of tumour cells lay against the sheet. A lymphoid sheet at tumour cells
is the infiltrate of a TIL-rich bed; one away from any tumour cell (a lymph node) is not.
"""

from __future__ import annotations

import numpy as np

from weakstil.bed_geometry import BedShape
from weakstil.tilestats import COLUMNS
from weakstil.tumorbed.veto import DARK_NUCLEI_COLUMNS, TUMOUR_NUCLEI_COLUMNS, LymphoidVeto

N, TILE = 20, 224
SHAPE = BedShape(seed_threshold=0.5, bridge_um=150.0, margin_um=50.0, min_seed_share=0.1)


def _slide(tumour_at: tuple[int, int] | None):
    """A 20 x 20 tile grid: a lymphocyte sheet (dark nuclei over 0.6 of each tile, a few pale fragments,
    0.006) where the classifier fires (0.95), and one tile of tumour cells (pale tumour-sized nuclei
    over 0.1 of it) at ``tumour_at`` that the classifier reads weakly (0.3)."""
    from weakstil.tumorbed import SlideGeometry

    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(N), np.arange(N), indexing="ij"))
    coords = np.stack([cols * TILE, rows * TILE], axis=1)
    geom = SlideGeometry(N * TILE, N * TILE, 0.5, coords, float(TILE), np.ones((N * TILE // 16,) * 2, bool), 8.0)
    sheet = (rows >= 5) & (rows < 11) & (cols >= 5) & (cols < 11)
    stats = np.zeros((N * N, len(COLUMNS)), np.float32)
    stats[np.ix_(sheet, [COLUMNS.index(c) for c in DARK_NUCLEI_COLUMNS[:2]])] = 0.3
    stats[np.ix_(sheet, [COLUMNS.index(TUMOUR_NUCLEI_COLUMNS[0])])] = 0.006
    evidence = np.where(sheet, 0.95, 0.02).astype(np.float32)
    tumour = np.zeros(N * N, bool)
    if tumour_at is not None:
        tumour = (rows == tumour_at[0]) & (cols == tumour_at[1])
        stats[np.ix_(tumour, [COLUMNS.index(TUMOUR_NUCLEI_COLUMNS[-1])])] = 0.1
        evidence[tumour] = 0.3
    return geom, stats, evidence, sheet, tumour


def _detect(monkeypatch, tumour_at):
    from weakstil.tumorbed.cellgate import TumourCellGate
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence

    geom, stats, evidence, sheet, tumour = _slide(tumour_at)
    detector = TumorBedDetector(LogisticEvidence(np.ones(4, np.float32), 0.0, np.zeros(4, np.float32),
                                                 np.ones(4, np.float32)), shape=SHAPE, veto=LymphoidVeto(),
                                cell_gate=TumourCellGate())
    monkeypatch.setattr(detector, "tumour_evidence", lambda *a, **k: evidence)
    return detector.detect(np.zeros((N * N, 4), np.float32), geom, stats, list(COLUMNS)), sheet, tumour


def test_seeds_on_the_infiltrate_at_tumour_cells_keep_the_bed(monkeypatch):
    found, sheet, tumour = _detect(monkeypatch, (11, 7))  # tumour cells against the sheet's lower edge
    assert found.source.value == "model", found.detail
    assert found.tile_flags[sheet].mean() >= 0.9 and found.tile_flags[tumour].all()
    assert found.tile_flags[~sheet & ~tumour].mean() <= 0.1


def test_a_lymphoid_sheet_away_from_tumour_cells_is_still_no_tumour(monkeypatch):
    """A lymph node or an aggregate: no tumour cell touches it (none on the slide, or one far off),
    and its seeds still show no tumour cells (hunt 20)."""
    for tumour_at in (None, (17, 17)):
        found, _, _ = _detect(monkeypatch, tumour_at)
        assert found.source.value == "tissue-fallback", found.detail
        assert "no tumour cells in the bed's 36 seed tiles, 36 of them lymphoid" in found.detail
