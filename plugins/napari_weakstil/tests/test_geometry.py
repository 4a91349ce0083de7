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
