"""Tile-grid geometry, tested without any slide."""

from __future__ import annotations

import numpy as np
import pytest

from weakstil.tiling import TileGrid, TileMode, mask_fractions, select_tiles


def test_grid_exact_multiple_gives_every_tile():
    grid = TileGrid(224 * 10, 224 * 5, slide_mpp=0.5, mpp=0.5, tile_px=224)
    assert grid.shape == (5, 10)
    coords = grid.coords()
    assert coords.shape == (50, 2)
    assert coords[0].tolist() == [0, 0]
    assert coords[-1].tolist() == [224 * 9, 224 * 4]
    assert grid.tile_um == pytest.approx(112.0)


def test_grid_skips_partial_edge_tiles_and_overflow_keeps_them():
    grid = TileGrid(1000, 500, slide_mpp=0.5, mpp=0.5, tile_px=224)
    assert grid.shape == (2, 4)
    assert (grid.coords()[:, 0] + 224 <= 1000).all()
    over = TileGrid(1000, 500, slide_mpp=0.5, mpp=0.5, tile_px=224, mode=TileMode.OVERFLOW)
    assert over.shape == (3, 5)


def test_grid_at_other_resolution_scales_level0_size():
    # a 40x scan (0.25 µm/px) tiled at 0.5 µm/px: each tile spans 448 level-0 px
    grid = TileGrid(4480, 4480, slide_mpp=0.25, mpp=0.5, tile_px=224)
    assert grid.tile_size_level0 == pytest.approx(448)
    assert grid.shape == (10, 10)
    # fractional: 0.499 µm/px scan
    g2 = TileGrid(2220, 2967, slide_mpp=0.499, mpp=0.5, tile_px=224)
    assert g2.tile_size_level0 == pytest.approx(224 * 0.5 / 0.499)
    c = g2.coords()
    assert (c[:, 0] + g2.tile_size_level0 <= 2220 + 1e-6).all()
    assert (c[:, 1] + g2.tile_size_level0 <= 2967 + 1e-6).all()


def test_overlap_shrinks_stride():
    grid = TileGrid(1024, 256, slide_mpp=0.5, mpp=0.5, tile_px=256, overlap_px=128)
    assert grid.stride_level0 == 128
    assert grid.shape == (1, 7)
    with pytest.raises(ValueError):
        TileGrid(1024, 256, slide_mpp=0.5, tile_px=256, overlap_px=256)


def test_slide_smaller_than_a_tile_has_no_tiles():
    grid = TileGrid(100, 100, slide_mpp=0.5)
    assert len(grid) == 0
    assert grid.coords().shape == (0, 2)


def test_mask_fractions_match_brute_force():
    rng = np.random.default_rng(0)
    mask = rng.random((60, 80)) > 0.6
    # mask at 8 µm/px over a 0.5 µm/px slide: 16 level-0 px per mask px; tile 224 px = 14 mask px
    grid = TileGrid(80 * 16, 60 * 16, slide_mpp=0.5, mpp=0.5, tile_px=224)
    coords = grid.coords()
    got = mask_fractions(coords, grid.tile_size_level0, mask, 8.0, 0.5)
    for (x, y), frac in zip(coords, got):
        mx, my = x // 16, y // 16
        assert frac == pytest.approx(mask[my : my + 14, mx : mx + 14].mean(), abs=1e-6)


def test_select_tiles_keeps_only_tiles_over_threshold():
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True  # left half tissue
    grid = TileGrid(64 * 16, 64 * 16, slide_mpp=0.5, mpp=0.5, tile_px=224)
    coords, fr = select_tiles(grid, mask, 8.0, threshold=0.5)
    assert len(coords) > 0
    assert (fr >= 0.5).all()
    assert (coords[:, 0] + 224 / 2 <= 32 * 16 + 1).all()
    none, _ = select_tiles(grid, np.zeros_like(mask), 8.0, threshold=0.0)
    assert len(none) == 0
