"""The detector's settings search (weakstil.bed_sweep) shares work between settings; every shortcut
must give the beds of :func:`weakstil.bed_geometry.grow_bed` to the pixel and their Dice to the bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from weakstil.bed_geometry import BedShape, grow_bed, tiles_to_mask
from weakstil.bed_sweep import depth_in, distance_to, fill_holes, sweep_counts, sweep_dice_table

MPP = 8.0
TILE = 224  # 112 µm at 0.5 µm/px: 14 mask px


def _masks():
    rng = np.random.default_rng(3)
    for shape, p, blur in (((40, 57), 0.5, 0), ((64, 48), 0.4, 2), ((30, 30), 0.15, 1), ((1, 9), 0.5, 0),
                           ((9, 1), 0.5, 0)):
        noise = rng.random(shape)
        yield ndi.gaussian_filter(noise, blur) > 0.5 if blur else noise < p
    ring = np.zeros((20, 20), bool)
    ring[2:12, 2:12] = True
    ring[4:10, 4:10] = False  # a hole
    ring[0:5, 15:20] = True
    ring[1:3, 16:19] = False  # a "hole" open to the edge: not filled
    yield ring
    yield np.ones((12, 15), bool)
    yield np.zeros((12, 15), bool)


@pytest.mark.parametrize("use_cv2", [True, False])
def test_holes_are_filled_as_scipy_fills_them(use_cv2):
    for m in _masks():
        assert np.array_equal(fill_holes(m, use_cv2), ndi.binary_fill_holes(m)), m.shape


def test_distances_are_scipys_where_they_are_asked_for():
    for m in _masks():
        if not m.any():
            continue
        outside = ndi.distance_transform_edt(~m)
        for reach in (0.5, 1.0, 2.9, 7.0, 100.0):
            near = distance_to(m, reach)
            within = outside <= reach
            assert np.array_equal(near[within], outside[within])  # the same numbers, to the bit
            assert (near[~within] > reach).all()
        assert np.array_equal(depth_in(m), ndi.distance_transform_edt(m))


def _evidence_map(seed: int, n: int = 12):
    rng = np.random.default_rng(seed)
    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    coords = np.stack([cols * TILE, rows * TILE], axis=1)
    evidence = rng.random(n * n) * (((rows - 5) ** 2 + (cols - 4) ** 2 < 12) | (cols == n - 1) | (rows == 0))
    tissue = np.ones((n * 14, n * 14), bool)
    tissue[:, :10] = False
    tissue[60:70, 60:75] = False  # a hole in the tissue
    return tiles_to_mask(evidence, coords, TILE, 0.5, tissue.shape, MPP, 0.0), tissue


GRID = dict(seed_thresholds=(0.2, 0.5, 0.9, 1.5), bridges_um=(0.0, 40.0, 96.0), margins_um=(0.0, 40.0, 56.0, 96.0),
            min_seeds_mm2=(0.0, 0.01), min_seed_shares=(0.0, 0.3))


@pytest.mark.parametrize("use_cv2", [True, False])
def test_the_table_is_the_dice_of_every_grown_bed(use_cv2):
    """Margins equal to a bridge (the grown region itself), larger and smaller, a threshold no pixel
    reaches, seeds at the image's edges, filters that drop components: each entry is the Dice of the
    bed grow_bed gives, exactly."""
    emap, tissue = _evidence_map(0 if use_cv2 else 1)
    target = ndi.binary_dilation((emap > 0.4) & tissue, iterations=3) & tissue
    table = sweep_dice_table(emap, tissue, target, MPP, use_cv2=use_cv2, **GRID)
    assert table.shape == (4, 3, 4, 4)
    for (t, b, m, f), dice in np.ndenumerate(table):
        mm2, share = [(x, y) for x in GRID["min_seeds_mm2"] for y in GRID["min_seed_shares"]][f]
        shape = BedShape(GRID["seed_thresholds"][t], 0.0, GRID["bridges_um"][b], GRID["margins_um"][m], mm2, share)
        bed = grow_bed((emap >= shape.seed_threshold) & tissue, tissue, MPP, shape)
        total = int(bed.sum() + target.sum())
        assert dice == (1.0 if total == 0 else 2.0 * np.count_nonzero(bed & target) / total), shape
    assert (table[-1] == 0.0).all() and len(np.unique(table)) > 20  # none reach 1.5; the others differ


def test_counts_met_before_are_taken_from_the_memo():
    emap, tissue = _evidence_map(0)
    target = (emap > 0.3) & tissue
    memo: dict = {}
    first = sweep_counts(emap, tissue, target, MPP, memo=memo, **GRID)
    assert len(memo) == 3  # one entry per non-empty seed mask
    shifted = np.where(emap >= 0.5, emap, emap * 0.5)  # the same seeds at 0.5 and 0.9, others at 0.2
    again = sweep_counts(shifted, tissue, target, MPP, memo=memo, **GRID)
    fresh = sweep_counts(shifted, tissue, target, MPP, **GRID)
    assert all(np.array_equal(a, b) for a, b in zip(again, fresh))
    assert all(np.array_equal(a[1:3], b[1:3]) for a, b in zip(again, first)) and len(memo) == 4


def test_the_search_takes_the_setting_of_best_mean_dice_over_the_grown_beds(monkeypatch):
    """search_shape (one table per slide, means over the slides at once) against its definition: each
    setting's beds grown one by one, the mean and worst Dice per setting, the documented tie-breaks."""
    import weakstil.tumorbed.training as training
    from weakstil.tumorbed.bed import SlideGeometry

    for name, values in (("SEED_THRESHOLDS", (0.3, 0.6)), ("SMOOTHING_UM", (0.0, 60.0)), ("BRIDGES_UM", (0.0, 100.0)),
                         ("MARGINS_UM", (0.0, 50.0, 100.0)), ("MIN_SEEDS_MM2", (0.0, 0.02)),
                         ("MIN_SEED_SHARES", (0.0, 0.5))):
        monkeypatch.setattr(training, name, values)
    n = 12
    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    coords = np.stack([cols * TILE, rows * TILE], axis=1)
    slides, evidence = [], []
    for i in range(3):
        rng = np.random.default_rng(10 + i)
        tumour = ((rows - 4 - i) ** 2 + (cols - 5) ** 2 < 10) | ((rows == 10) & (cols == 2 + i))  # and a look-alike
        evidence.append(np.clip(tumour * rng.uniform(0.4, 1.0, n * n) + rng.uniform(0, 0.35, n * n), 0, 1))
        bed = np.zeros((n * 14, n * 14), bool)
        bed[(2 + i) * 14:(8 + i) * 14, 2 * 14:9 * 14] = True
        geom = SlideGeometry(n * TILE, n * TILE, 0.5, coords, float(TILE), np.ones_like(bed), MPP)
        slides.append(training.AnnotatedSlide(f"s{i}", rng.normal(size=(n * n, 2)), geom, bed))
    best, table, dice = training.search_shape(slides, evidence)
    rows_ = []
    for smooth in training.SMOOTHING_UM:
        for thr in training.SEED_THRESHOLDS:
            for bridge in training.BRIDGES_UM:
                for margin in training.MARGINS_UM:
                    for mm2 in training.MIN_SEEDS_MM2:
                        for share in training.MIN_SEED_SHARES:
                            shape = BedShape(thr, smooth, bridge, margin, mm2, share)
                            per_slide = []
                            for s, ev in zip(slides, evidence):
                                mpp, tissue, target = training._search_grid(s)
                                g = s.geom
                                emap = tiles_to_mask(ev, g.coords, TILE, 0.5, tissue.shape, mpp, smooth)
                                bed = grow_bed((emap >= thr) & tissue, tissue, mpp, shape)
                                total = int(bed.sum() + target.sum())
                                per_slide.append(1.0 if total == 0 else 2.0 * np.count_nonzero(bed & target) / total)
                            rows_.append((shape, per_slide))
    want = [{**shape.to_dict(), "dice_mean": float(np.mean(d)), "dice_min": float(np.min(d))} for shape, d in rows_]
    assert table == want  # every setting, in order, the same numbers to the bit
    key = [(round(r["dice_mean"], 4), round(r["dice_min"], 4), -r["bridge_um"], -r["smooth_um"], -r["min_seed_mm2"],
            r["min_seed_share"], -r["margin_um"]) for r in want]
    chosen = max(range(len(key)), key=key.__getitem__)
    assert best == rows_[chosen][0] and dice.tolist() == rows_[chosen][1]
    assert len({r["dice_mean"] for r in table}) > 10  # the settings differ: the choice means something
