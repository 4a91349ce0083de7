"""The geometry of the tumour bed (weakstil.bed_geometry) on hand-made evidence maps: what the
TILs Working Group's definition says is in the bed is in, whatever the stroma looks like."""

from __future__ import annotations

import numpy as np
import pytest

from weakstil.bed_geometry import (BedShape, Plausibility, bed_from_evidence, check_bed, coarsen, grow_bed,
                                   take_in_infiltrate, tiles_to_mask)
from weakstil.bed_sweep import sweep_dice, sweep_shapes

MPP = 8.0  # µm per mask pixel
TILE = 224  # level-0 px per tile at 0.5 µm/px: 112 µm, 14 mask px


def _grid(n: int = 30):
    """An n x n tile grid (level-0 coords), its tissue mask and the (row, col) of every tile."""
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    coords = np.stack([cols.ravel() * TILE, rows.ravel() * TILE], axis=1)
    tissue = np.ones((n * 14, n * 14), bool)
    return coords, tissue, rows.ravel(), cols.ravel()


def _bed_tiles(bed: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Whether each tile's centre pixel is in the bed."""
    return bed[rows * 14 + 7, cols * 14 + 7]


SHAPE = BedShape(seed_threshold=0.5, bridge_um=150.0, margin_um=50.0, min_seed_mm2=0.02)


def test_lymphocyte_dense_stroma_between_and_around_tumour_nests_is_in_the_bed():
    coords, tissue, rows, cols = _grid()
    block = (rows >= 8) & (rows < 20) & (cols >= 8) & (cols < 20)
    nests = block & ((rows % 3 == 0) & (cols % 3 == 0))  # nests one tile wide, two tiles of stroma apart
    # the stroma between the nests is dense with lymphocytes: the classifier gives it no tumour
    # evidence at all, and that must not take it out of the bed
    evidence = np.where(nests, 0.95, 0.0)
    bed, seeds = bed_from_evidence(evidence, coords, TILE, 0.5, tissue, MPP, SHAPE)
    inside = _bed_tiles(bed, rows, cols)
    between = block & ~nests & (rows >= 9) & (rows <= 18) & (cols >= 9) & (cols <= 18)
    assert inside[between].all()
    assert inside[nests].all()
    assert seeds.any() and not seeds[bed == 0].any()


def test_a_lymphoid_aggregate_far_from_tumour_is_out():
    coords, tissue, rows, cols = _grid()
    tumour = (rows >= 4) & (rows < 10) & (cols >= 4) & (cols < 10)
    aggregate = (rows >= 20) & (rows < 25) & (cols >= 20) & (cols < 25)
    # the aggregate gets some (sub-threshold) evidence, and one lone tile of it a false high score
    evidence = np.where(tumour, 0.9, 0.0) + np.where(aggregate, 0.35, 0.0)
    evidence[np.flatnonzero(aggregate)[12]] = 0.8
    bed, _ = bed_from_evidence(evidence, coords, TILE, 0.5, tissue, MPP, SHAPE)
    inside = _bed_tiles(bed, rows, cols)
    assert inside[tumour].all()
    assert not inside[aggregate].any()  # a single false tile is below the smallest seed area
    # without that rule the lone tile would start a bed of its own: the rule is what removes it
    loose = BedShape(**{**SHAPE.to_dict(), "min_seed_mm2": 0.0})
    assert _bed_tiles(bed_from_evidence(evidence, coords, TILE, 0.5, tissue, MPP, loose)[0], rows, cols)[aggregate].any()


def test_a_small_look_alike_far_from_the_main_tumour_can_be_dropped_by_its_share():
    coords, tissue, rows, cols = _grid()
    tumour = (rows >= 4) & (rows < 14) & (cols >= 4) & (cols < 14)  # 100 tiles of tumour
    look_alike = (rows >= 22) & (rows < 25) & (cols >= 22) & (cols < 25)  # 9 tiles: a DCIS duct or lymph node
    evidence = np.where(tumour | look_alike, 0.9, 0.0)
    for share, kept in ((0.0, True), (0.25, False)):
        shape = BedShape(**{**SHAPE.to_dict(), "min_seed_share": share})
        inside = _bed_tiles(bed_from_evidence(evidence, coords, TILE, 0.5, tissue, MPP, shape)[0], rows, cols)
        assert inside[tumour].all() and inside[look_alike].all() == kept and inside[look_alike].any() == kept


def test_what_the_tumour_encloses_is_in_and_the_margin_is_in_micrometres():
    seeds = np.zeros((200, 200), bool)
    yy, xx = np.mgrid[:200, :200]
    r = np.hypot(yy - 100, xx - 100)
    seeds[(r >= 50) & (r < 56)] = True  # a ring of tumour, 800 µm across, enclosing a large stromal area
    tissue = np.ones_like(seeds)
    bed = grow_bed(seeds, tissue, MPP, BedShape(bridge_um=40.0, margin_um=80.0))
    assert bed[r < 50].all()  # enclosed
    # 80 µm = 10 px of invasive front beyond the outermost tumour, no further
    assert bed[(r > 56) & (r < 65)].all() and not bed[r > 67].any()
    # cut to the tissue
    tissue[:, :100] = False
    assert not grow_bed(seeds, tissue, MPP, BedShape(bridge_um=40.0, margin_um=80.0))[:, :100].any()


def test_dense_infiltrate_touching_the_bed_is_taken_in_up_to_its_reach_and_a_lone_aggregate_is_not():
    coords, tissue, rows, cols = _grid()
    evidence = (((rows >= 8) & (rows < 16) & (cols >= 8) & (cols < 16)) * 0.9).astype(np.float32)
    dark = np.full(len(rows), 0.05, np.float32)  # stroma with scattered lymphocytes everywhere
    lobe = (rows >= 16) & (rows < 22) & (cols >= 9) & (cols < 14)  # dense infiltrate, 6 tiles out from the tumour
    aggregate = (rows >= 3) & (rows < 6) & (cols >= 24) & (cols < 27)  # a lymphoid aggregate far from it
    dark[lobe | aggregate] = 0.6
    off = BedShape(seed_threshold=0.5, bridge_um=100.0, margin_um=50.0)
    plain, _ = bed_from_evidence(evidence, coords, TILE, 0.5, tissue, MPP, off)
    assert not _bed_tiles(plain, rows, cols)[lobe & (rows >= 17)].any()  # the tumour's bed alone
    near = BedShape(**{**off.to_dict(), "infiltrate_um": 300.0})
    bed, _ = bed_from_evidence(evidence, coords, TILE, 0.5, tissue, MPP, near, dark)
    inside = _bed_tiles(bed, rows, cols)
    d_um = (rows - 15.5) * 112.0  # how far each lobe tile's centre lies beyond the tumour, roughly
    assert inside[lobe & (d_um <= 250)].all() and not inside[lobe & (d_um > 400)].any()  # up to its reach
    assert not inside[aggregate].any()  # not touching the bed: out, however dense
    assert inside[evidence > 0].all() and not inside[~lobe & (rows >= 19)].any()
    # no tile statistics, or a reach of 0: the bed of the tumour alone
    assert np.array_equal(bed_from_evidence(evidence, coords, TILE, 0.5, tissue, MPP, near)[0], plain)
    assert np.array_equal(take_in_infiltrate(plain, np.ones(plain.shape), tissue, MPP, off), plain)


def test_sizes_are_micrometres_whatever_the_mask_resolution():
    fine = np.zeros((400, 400), bool)
    fine[150:250, 150:170] = fine[150:250, 230:250] = True  # two nests 240 µm apart at 4 µm/px
    shape = BedShape(bridge_um=150.0, margin_um=40.0)
    bed_fine = grow_bed(fine, np.ones_like(fine), 4.0, shape)
    bed_coarse = grow_bed(coarsen(fine, 2), np.ones((200, 200), bool), 8.0, shape)
    assert bed_fine[200, 200] and bed_coarse[100, 100]  # joined across the stroma at both resolutions
    assert abs(bed_fine.mean() - bed_coarse.mean()) < 0.01


def test_sweep_gives_the_same_beds_as_grow_bed():
    rng = np.random.default_rng(0)
    coords, tissue, rows, cols = _grid(16)
    tissue[:, :20] = False
    evidence = np.clip(rng.random(len(coords)) * ((rows - 8) ** 2 + (cols - 8) ** 2 < 30), 0, 1)
    emap = tiles_to_mask(evidence, coords, TILE, 0.5, tissue.shape, MPP)
    shapes = dict(seed_thresholds=(0.3, 0.7, 1.1), bridges_um=(0.0, 60.0), margins_um=(0.0, 30.0, 90.0),
                  min_seeds_mm2=(0.0, 0.02), min_seed_shares=(0.0, 0.5))
    n = 0
    for shape, bed in sweep_shapes(emap, tissue, MPP, **shapes):
        expected = grow_bed((emap >= shape.seed_threshold) & tissue, tissue, MPP, shape)
        assert np.array_equal(bed, expected), shape
        n += 1
    assert n == 3 * 2 * 3 * 2 * 2


def test_sweep_dice_is_the_dice_of_the_swept_beds():
    """The detector's settings search scores beds by component counts: the same Dice as the masks'
    (an empty bed and an empty target included)."""
    rng = np.random.default_rng(1)
    coords, tissue, rows, cols = _grid(16)
    tissue[:, :20] = False
    evidence = np.clip(rng.random(len(coords)) * (((rows - 8) ** 2 + (cols - 8) ** 2 < 30) | (cols == 14)), 0, 1)
    emap = tiles_to_mask(evidence, coords, TILE, 0.5, tissue.shape, MPP)
    shapes = dict(seed_thresholds=(0.3, 0.7, 1.1), bridges_um=(0.0, 60.0), margins_um=(0.0, 30.0, 90.0),
                  min_seeds_mm2=(0.0, 0.02), min_seed_shares=(0.0, 0.5))
    for i, target in enumerate(((emap > 0.2) & tissue, np.zeros_like(tissue))):
        dice = list(sweep_dice(emap, tissue, target, MPP, **shapes))
        beds = list(sweep_shapes(emap, tissue, MPP, **shapes))
        assert [s for s, _ in dice] == [s for s, _ in beds]
        for (shape, d), (_, bed) in zip(dice, beds):
            total = bed.sum() + target.sum()
            assert d == (1.0 if total == 0 else 2.0 * np.count_nonzero(bed & target) / total), shape
        assert len({round(d, 6) for _, d in dice}) > (3 if i == 0 else 1)  # different beds, not one


def test_missing_tiles_do_not_pull_the_evidence_down():
    coords, tissue, rows, cols = _grid(10)
    keep = cols < 5  # tiles only on the left half (the rest is glass)
    emap = tiles_to_mask(np.ones(keep.sum()), coords[keep], TILE, 0.5, tissue.shape, MPP)
    assert np.allclose(emap[:, : 5 * 14], 1.0)  # up to the last tile's edge, not faded
    assert (emap[:, 6 * 14:] == 0).all()  # beyond a tile's reach: no evidence


def test_an_empty_or_implausibly_small_bed_is_not_ok():
    evidence = np.full(400, 0.45)
    rule = Plausibility(min_bed_tiles=2, min_evidence_ratio=0.25)
    empty = check_bed(np.zeros(400, bool), evidence, rule)
    assert not empty.ok and "empty" in empty.reason and "180.0" in empty.reason
    small = np.zeros(400, bool)
    small[:10] = True  # 10 tiles next to 180 tiles' worth of evidence
    verdict = check_bed(small, evidence, rule)
    assert not verdict.ok and "implausibly few" in verdict.reason
    small[:60] = True
    assert check_bed(small, evidence, rule).ok
    assert check_bed(small[:5], np.zeros(5), rule).ok is True  # little evidence, little bed: plausible


@pytest.mark.parametrize("field", ["seed_threshold", "bridge_um", "margin_um", "infiltrate_um"])
def test_shape_roundtrips_through_json_dicts(field):
    shape = BedShape(**{field: 0.123})
    assert BedShape.from_dict(shape.to_dict()) == shape


def test_the_seed_share_is_judged_per_tissue_piece_where_tumour_cells_are():
    """Hunt 40e: given the tissue pieces, a second piece's smaller tumour focus (a core biopsy beside a larger
    one) is kept when 4 of its seed tiles show tumour cells; a small focus on the tumour's own piece, or a
    second piece's focus without them, is still dropped (before: every focus under the share, slide-wide)."""
    from scipy import ndimage as ndi

    coords, tissue, rows, cols = _grid()
    tissue[:, 18 * 14:20 * 14] = False  # 224 µm of glass down columns 18-19: two pieces
    tumour = (rows >= 4) & (rows < 14) & (cols >= 4) & (cols < 14)  # 100 tiles on the left piece
    core = (rows >= 22) & (rows < 25) & (cols >= 22) & (cols < 25)  # 9 tiles on the right piece
    duct = (rows >= 22) & (rows < 25) & (cols >= 4) & (cols < 7)  # 9 tiles on the left piece
    evidence = np.where(tumour | core | duct, 0.9, 0.0)
    shape = BedShape(**{**SHAPE.to_dict(), "min_seed_share": 0.25})
    pieces = lambda: ndi.label(tissue)[0]  # noqa: E731

    def inside(cells):
        bed = bed_from_evidence(evidence, coords, TILE, 0.5, tissue, MPP, shape, pieces=pieces, cells=cells,
                                min_cells=4)[0]
        return _bed_tiles(bed, rows, cols)

    with_cells = inside(tumour | core | duct)
    assert with_cells[tumour].all() and with_cells[core].all() and not with_cells[duct].any()
    without = inside(tumour | (core & (rows == 22)))  # 3 seed tiles of the right focus show tumour cells
    assert without[tumour].all() and not without[core].any() and not without[duct].any()
