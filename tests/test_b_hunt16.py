"""Hunt 16 (h16b): the tumour-bed detector across looks (issue 14).

A lymph node on a piece of tissue of its own, next to a tumour on another piece: the tile grid
makes the node's tiles neighbours of the tumour's across the glass between them, so the lymphoid
veto's restore rule ("a lymphoid group touching tumour keeps its evidence") restored the whole
node, and the bed grew over it (default-look detector on our hard look: synth_0008, a 6 % slide,
Dice 0.617: a 1 mm lymph node read as tumour with evidence 1.0, taken whole into the bed). An
infiltrate *at* the tumour lies on the tumour's own tissue; the restoring tumour must now be on
the lymphoid group's own piece of tissue.
"""

from __future__ import annotations

import numpy as np

from weakstil.tilestats import COLUMNS
from weakstil.tumorbed.veto import (DARK_NUCLEI_COLUMNS, TUMOUR_NUCLEI_COLUMNS, LymphoidVeto, tile_fragments,
                                    vetoed_tiles)

N, TILE = 20, 224


def _grid():
    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(N), np.arange(N), indexing="ij"))
    return rows, cols, np.stack([cols * TILE, rows * TILE], axis=1)


def _stats(lymphoid: np.ndarray, tumour_cells: np.ndarray) -> np.ndarray:
    stats = np.zeros((N * N, len(COLUMNS)), np.float32)
    stats[np.ix_(lymphoid, [COLUMNS.index(c) for c in DARK_NUCLEI_COLUMNS[:2]])] = 0.3  # 0.6 dark
    stats[np.ix_(tumour_cells, [COLUMNS.index(c) for c in TUMOUR_NUCLEI_COLUMNS[-1:]])] = 0.1
    return stats


def _two_pieces():
    """Tissue at 8 µm/px of a 0.5 µm/px slide (a tile is 14 mask px): a tumour piece (tile columns
    0-9) and, across a 40 µm cut, a lymph node's piece (columns 10-19); the node (rows 2-7, columns
    10-14) touches the tumour's last column along the cut; an infiltrate on the tumour's own piece."""
    rows, cols, coords = _grid()
    side = N * TILE // 16
    tissue = np.ones((side, side), bool)
    cut = int(10 * TILE / 16)
    tissue[:, cut - 3:cut + 2] = False
    tumour = (cols >= 4) & (cols < 10) & (rows < 9)
    node = (cols >= 10) & (cols < 15) & (rows >= 2) & (rows < 8)
    infiltrate = (cols < 4) & (rows < 9) & (rows >= 3)
    return rows, cols, coords, tissue, tumour, node, infiltrate


def test_tiles_are_told_apart_by_their_piece_of_tissue():
    rows, cols, coords, tissue, *_ = _two_pieces()
    fragments = tile_fragments(coords, TILE, tissue, 8.0, 0.5)
    assert len(np.unique(fragments[cols < 10])) == 1 and len(np.unique(fragments[cols >= 10])) == 1
    assert fragments[0] != fragments[-1] and (fragments > 0).all()
    assert tile_fragments(np.zeros((0, 2)), TILE, tissue, 8.0, 0.5).shape == (0,)


def test_a_lymph_node_on_its_own_piece_of_tissue_is_not_restored_by_the_tumour_of_another():
    rows, cols, coords, tissue, tumour, node, infiltrate = _two_pieces()
    stats = _stats(node | infiltrate, tumour)
    evidence = np.where(tumour | node | infiltrate, 0.95, 0.05).astype(np.float32)
    fragments = tile_fragments(coords, TILE, tissue, 8.0, 0.5)
    veto = vetoed_tiles(evidence, stats, COLUMNS, coords, TILE, LymphoidVeto(), fragments)
    assert veto[node].all()  # before: restored whole (the tumour touches it across the cut)
    assert not veto[infiltrate].any() and not veto[tumour].any()  # an infiltrate at the tumour keeps it
    # without the pieces of tissue (and by the rule a detector trained before keeps) it is restored
    assert not vetoed_tiles(evidence, stats, COLUMNS, coords, TILE, LymphoidVeto())[node].any()
    old = LymphoidVeto.from_dict({k: v for k, v in LymphoidVeto().to_dict().items() if k != "restore_same_fragment"})
    assert old.restore_same_fragment is False and LymphoidVeto().restore_same_fragment is True


def test_the_detector_draws_no_bed_over_a_lymph_node_on_its_own_piece():
    from weakstil.bed_geometry import BedShape
    from weakstil.tumorbed.bed import SlideGeometry
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence

    rows, cols, coords, tissue, tumour, node, infiltrate = _two_pieces()
    stats = _stats(node | infiltrate, tumour)
    # one feature: the classifier reads the node as tumour too (a look it has not seen)
    features = np.where(tumour | node | infiltrate, 1.0, -1.0).astype(np.float32)[:, None]
    geom = SlideGeometry(N * TILE, N * TILE, 0.5, coords, float(TILE), tissue, 8.0)
    shape = BedShape(seed_threshold=0.5, bridge_um=150.0, margin_um=50.0, min_seed_share=0.1)

    def bed_over_node(rule: LymphoidVeto) -> float:
        det = TumorBedDetector(LogisticEvidence(np.array([8.0], np.float32), np.float32(0.0),
                                                np.zeros(1, np.float32), np.ones(1, np.float32)), shape, veto=rule)
        bed = det.detect(features, geom, stats, list(COLUMNS))
        assert bed.source.value == "model" and bed.tile_flags[tumour].all()
        return float(bed.tile_flags[node].mean())

    assert bed_over_node(LymphoidVeto()) <= 0.2
    assert bed_over_node(LymphoidVeto(restore_same_fragment=False)) >= 0.9
