"""Tile and mask placement maths, without a viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakstil.result_layers import TileRaster, infer_stride, mask_outline_paths, mask_placement


def test_tile_raster_puts_each_tile_in_its_cell_despite_rounded_corners():
    tile = 448.9  # fractional level-0 tile side: corners are rounded to whole pixels
    coords = np.array([[round(100 + c * tile), round(60 + r * tile)] for r in range(4) for c in range(7)])
    keep = np.r_[0:5, 9, 13, 20:28]
    raster = TileRaster.from_coords(coords[keep], tile, stride=tile)
    assert raster.shape == (4, 7)
    img = raster.paint(np.arange(len(keep), dtype=np.float32))
    assert np.isfinite(img).sum() == len(keep)
    for value, i in enumerate(keep):
        assert img[i // 7, i % 7] == value


def test_placement_maps_tile_centres_to_world_micrometres():
    mpp, tile = 0.25, 448.0
    coords = np.array([[1000, 2000], [1448, 2000], [1000, 2448]])
    raster = TileRaster.from_coords(coords, tile)
    place = raster.placement(mpp)
    assert place["scale"] == (tile * mpp, tile * mpp)
    for (x, y), r, c in zip(coords, raster.rows, raster.cols):
        # napari centres pixel (r, c) at translate + (r, c)·scale; a slide pixel x is centred at x·mpp
        centre_y = place["translate"][0] + r * place["scale"][0]
        centre_x = place["translate"][1] + c * place["scale"][1]
        assert centre_x == pytest.approx((x + tile / 2 - 0.5) * mpp)
        assert centre_y == pytest.approx((y + tile / 2 - 0.5) * mpp)


def test_click_lookup_finds_the_tile_and_nothing_between():
    mpp, tile = 0.5, 224.0
    coords = np.array([[0, 0], [224, 0], [448, 224]])
    raster = TileRaster.from_coords(coords, tile)
    index = raster.index_image()
    for i, (x, y) in enumerate(coords):
        for dx, dy in ((1, 1), (223, 223), (112, 5)):
            assert raster.tile_at(((y + dy) * mpp, (x + dx) * mpp), mpp, index) == i
    assert raster.tile_at((300 * mpp, 100 * mpp), mpp, index) is None  # the empty cell (row 1, col 0)
    assert raster.tile_at((-200.0, -200.0), mpp, index) is None


def test_overlapping_grid_stride_is_inferred():
    coords = np.array([[x, y] for y in (0, 112, 224) for x in (0, 112, 224, 336)])
    assert infer_stride(coords, 224.0) == 112.0
    assert infer_stride(np.array([[5, 5]]), 224.0) == 224.0


def test_a_fractional_stride_is_inferred_over_the_whole_grid():
    """Tiles of 112 µm at 0.494 µm/px are 226.72 px apart, their corners rounded down to whole
    pixels (steps of 226 and 227): the median step (227) put every tile past the 200th a cell off."""
    stride = 112.0 / 0.494
    xs = np.floor(np.arange(400) * stride)
    coords = np.array([[x, y] for y in xs[:3] for x in xs])
    got = infer_stride(coords, 227.0)
    assert abs(got - stride) < 0.01
    raster = TileRaster.from_coords(coords, 227.0)
    assert np.array_equal(raster.cols[:400], np.arange(400))


def test_mask_outline_sits_on_the_mask_edges():
    mask = np.zeros((20, 30), bool)
    mask[4:10, 6:21] = True
    m, mpp = 8.0, 0.5
    paths = mask_outline_paths(mask, m, mpp)
    assert len(paths) == 1
    ys, xs = paths[0][:, 0], paths[0][:, 1]
    t = mask_placement(m, mpp)["translate"][0]
    # find_contours runs half-way between inside and outside pixel centres
    assert ys.min() == pytest.approx(t + 3.5 * m) and ys.max() == pytest.approx(t + 9.5 * m)
    assert xs.min() == pytest.approx(t + 5.5 * m) and xs.max() == pytest.approx(t + 20.5 * m)
    assert mask_outline_paths(np.zeros((5, 5), bool), m, mpp) == []


def test_result_layers_of_an_attention_model(marked_slide):
    """An attention model's result adds a hidden attention layer with the same placement."""
    import h5py

    from napari_weakstil.result_layers import ATTENTION, HEATMAP, read_result, result_layers

    n = len(marked_slide["coords"])
    with h5py.File(marked_slide["result"], "a") as f:
        f.create_dataset("attention", data=np.linspace(0, 1, n, dtype=np.float32) / n)
    res = read_result(marked_slide["result"])
    layers = {kw["name"]: (data, kw) for data, kw, _ in result_layers(res)}
    heat, heat_kw = layers[f"marked {HEATMAP}"]
    att, att_kw = layers[f"marked {ATTENTION}"]
    assert att_kw["visible"] is False and att_kw["scale"] == heat_kw["scale"]
    assert att_kw["translate"] == heat_kw["translate"]
    np.testing.assert_array_equal(np.isfinite(att), np.isfinite(heat))
    assert att_kw["contrast_limits"][1] == pytest.approx(float(np.nanmax(att)))


@pytest.mark.parametrize("tile_px, overlap_px", [(224, 112), (224, 32)])
def test_overlapping_border_tiles_are_drawn_and_clicked_to_their_edges(tile_px, overlap_px):
    """With overlap a grid cell is smaller than a tile: border tiles reach past the outer cells (and
    into holes). Every point inside a tile must click to the nearest-centred tile containing it, and
    every raster pixel whose centre lies in a tile must be painted with that tile (an outside tester
    found 9 % of clicks in border tiles answered "No tile here"). Clicks: the nearest exactly; painting:
    nearest up to the corners' rounding to whole pixels, and in a grid cell without a tile up to the raster's pixels."""
    mpp, tile = 0.25, 448.9  # fractional level-0 tile side, corners rounded
    stride = tile * (tile_px - overlap_px) / tile_px
    grid = [(c, r) for r in range(6) for c in range(7) if (c, r) not in ((3, 2), (3, 3), (0, 0))]  # a hole, a notch
    coords = np.array([[round(50 + c * stride), round(80 + r * stride)] for c, r in grid], float)
    raster = TileRaster.from_coords(coords, tile, stride=stride)
    index = raster.index_image()
    centres = coords + tile / 2 - 0.5

    def containing(x, y):
        inside = (np.abs(x - centres[:, 0]) <= tile / 2) & (np.abs(y - centres[:, 1]) <= tile / 2)
        d = np.where(inside, (x - centres[:, 0]) ** 2 + (y - centres[:, 1]) ** 2, np.inf)
        return int(np.argmin(d)) if inside.any() else None, d

    rng = np.random.default_rng(1)
    for _ in range(3000):
        i = rng.integers(len(coords))
        x, y = coords[i] - 0.5 + rng.uniform(0, tile, 2)  # a level-0 point inside tile i
        j = raster.tile_at((y * mpp, x * mpp), mpp, index)
        want, d = containing(x, y)
        assert j is not None and np.isfinite(d[j]), (x, y, want)  # a tile containing the click
        # the nearest-centred one exactly, not the one painted on the raster pixel under the click (a
        # pixel spans level-0 pixels over which the nearest centre changes: outside tester, round 11)
        assert d[j] == pytest.approx(d[want]), (x, y, want, j)
    place = raster.placement(1.0)  # world = level-0 px
    for r in range(raster.shape[0]):
        for c in range(raster.shape[1]):
            x, y = place["translate"][1] + c * place["scale"][1], place["translate"][0] + r * place["scale"][0]
            want, d = containing(x, y)
            if want is None and index[r, c] < 0:
                continue
            assert index[r, c] >= 0 and want is not None, (r, c)  # painted exactly where the tiles are
            assert np.isfinite(d[index[r, c]]) and np.sqrt(d[index[r, c]]) <= np.sqrt(d[want]) + 1.0
    # the painted extent reaches the outer tile edges (within half a raster pixel)
    painted = np.nonzero(index >= 0)
    left = place["translate"][1] + painted[1].min() * place["scale"][1] - place["scale"][1] / 2
    edge_px = abs(left - (coords[:, 0].min() - 0.5))
    assert edge_px <= max(0.5, place["scale"][1] / 2)
    values = raster.paint(np.arange(len(coords), dtype=np.float32))
    np.testing.assert_array_equal(np.isfinite(values), index >= 0)


def test_a_grid_without_overlap_keeps_one_pixel_per_tile():
    tile = 448.9
    coords = np.array([[round(100 + c * tile), round(60 + r * tile)] for r in range(3) for c in range(4)])
    raster = TileRaster.from_coords(coords, tile, stride=tile)
    assert raster.shape == (3, 4) and raster.placement(0.25)["scale"] == (tile * 0.25, tile * 0.25)
