"""napari on big slides from a pathologist's chair (hunt 31e): a bed napari would draw for minutes in pure Python
(the viewer frozen, read as a hang) is said first with the fix, and a zoom over a big bed's thousands of outlines
sets their width once it settles, not at every wheel notch. Headless under Xvfb (pytest-xvfb), on the plugin's
scored synthetic slide; ``benchmarks/napari_big_bed.py`` times the same on a 100,000-tile slide."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

import napari_plugin_fixtures  # noqa: E402  (after the napari check)

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below
_dock = napari_plugin_fixtures.dock
_result = napari_plugin_fixtures.copied_result


_opened = napari_plugin_fixtures.opened_result


@pytest.fixture
def pure_python_triangulation():
    """napari triangulating in pure Python, as where no compiled backend (bermuda, ...) is installed."""
    from napari.utils.triangulation_backend import TriangulationBackend, set_backend

    before = set_backend(TriangulationBackend.pure_python)
    yield
    set_backend(before)


def test_edit_bed_says_first_that_napari_would_draw_the_bed_for_minutes_and_the_fix(
        make_napari_viewer, scored, tmp_path, monkeypatch, pure_python_triangulation):
    """Edit bed on a 100,000-tile slide's fragmented bed (5,293 outlines, 545,000 vertices) froze napari for over a
    quarter of an hour on 2 busy cores with napari's pure-Python triangulation (no word, no progress: a hang to a
    pathologist); napari's compiled one (bermuda) draws it in 15 s. Such a bed is now said first, with its size and
    the fix; pressed again, it is drawn. This slide's small bed stands for the big one (the limit set just under
    its vertices)."""
    from napari_weakstil import bed_layer

    viewer, widget = _opened(scored, tmp_path, make_napari_viewer)
    editor = widget.bed_editor
    rings, _ = editor.scored_tiles().bed_parts()
    vertices = sum(len(r) for r in rings)
    assert vertices > 8
    monkeypatch.setattr(bed_layer, "SLOW_VERTICES", vertices - 1, raising=False)  # old: no limit (drawn, however long)
    assert editor.edit_bed() is None
    status = widget.status_label.text()
    assert "pip install bermuda" in status and f"{vertices:,} vertices" in status and "again" in status, status
    assert editor.layer() is None and not any(ly.name.endswith(bed_layer.BED_EDIT) for ly in viewer.layers)
    layer = editor.edit_bed()  # pressed again: the pathologist chose to wait
    assert layer is not None and len(layer.data) == len(rings)
    assert sum(len(d) for d in layer.data) == vertices
    monkeypatch.setattr(bed_layer, "SLOW_VERTICES", vertices, raising=False)  # a bed under the limit: drawn at once
    viewer.layers.remove(layer)
    assert editor.edit_bed() is not None


def test_a_zoom_over_a_big_bed_sets_its_outline_width_once_it_settles_not_at_every_notch(
        make_napari_viewer, scored, tmp_path, monkeypatch, qtbot):
    """The outlines keep 2.5 screen px at every zoom: every zoom event set every shape's width again (napari sets
    it shape by shape: 0.5 s for the 5,293 outlines of a big slide's bed, per layer, per wheel notch, on 2 busy
    cores), and so did every layer added or removed. A big bed (here 600 islands) now follows once the zoom rests,
    and a layer already at its width is left alone."""
    import h5py

    from napari_weakstil._compat import camera
    from napari_weakstil.result_layers import TUMORBED

    path = _result(scored, tmp_path / "scores")
    with h5py.File(path, "r+") as f:  # the detector's bed made a lace of islands, as on a big slide
        mask = np.zeros(f["tumorbed_mask"].shape, f["tumorbed_mask"].dtype)
        mask[1::3, 1::3][:30, :20] = 1
        assert mask.sum() == 600, mask.shape
        f["tumorbed_mask"][...] = mask
    viewer = make_napari_viewer()
    _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    outline = next(ly for ly in viewer.layers if ly.metadata.get("role") == TUMORBED)
    assert len(outline.data) == 600
    sets = []  # each time the layer's width is set (a spy: napari's own update still runs)
    update = type(outline._data_view).update_edge_width

    def spy(self, index, width):
        if self is outline._data_view and index == 0:
            sets.append(width)
        return update(self, index, width)

    monkeypatch.setattr(type(outline._data_view), "update_edge_width", spy)
    before = list(outline.edge_width)
    cam = camera(viewer)
    for _ in range(10):  # a wheel turned ten notches
        cam.zoom = cam.zoom * 1.1
    assert sets == [] and list(outline.edge_width) == before, len(sets)  # old: 10 (every shape at every notch)
    qtbot.wait(600)
    assert len(sets) == 1
    want = 2.5 / cam.zoom / float(outline.scale[-1])
    assert np.allclose(outline.edge_width, want)  # on screen as wide as before the zoom
    viewer.add_image(np.zeros((4, 4)), name="another layer")  # a layer change at the same zoom: nothing to set
    qtbot.wait(400)
    assert len(sets) == 1  # old: set again


@pytest.mark.parametrize("mpp,overlap", [(0.499, 0.0), (0.499, 0.25), (0.3, 0.5)])
def test_a_heatmap_of_a_file_without_its_stride_lands_on_its_tiles_across_a_big_slide(mpp, overlap):
    """A result that does not record its overlap has its grid step inferred from the tile corners (whole level-0
    pixels, while the step is not: 224.45 px at 0.499 µm/px). The median step (224) counted 400 steps across a
    span of 399 on a 400-tile-wide slide with gaps, and the heatmap drifted to 111 level-0 px (half a tile) off its
    tiles at the far side (84 px with 25 % overlap, 93 px with 50 %); clicks, looked up by tile centre, were right,
    so a tile clicked and the colour under it disagreed. The mean of the single steps counts the span right."""
    from napari_weakstil.result_layers import TileRaster

    side = 224 * 0.5 / mpp  # level-0 px of a 224-px tile at 0.5 µm/px
    stride = side * (1 - overlap)
    cols, rows = np.meshgrid(np.arange(400), np.arange(400))
    keep = np.random.default_rng(0).random(cols.size) < 0.7  # tissue with gaps
    x = np.round(7 + cols.ravel()[keep] * stride)
    y = np.round(3 + rows.ravel()[keep] * stride)
    raster = TileRaster.from_coords(np.stack([x, y], 1), side)  # no stride given: inferred
    place = raster.placement(mpp)
    # the world centre of each tile's own raster pixels against the tile's centre on the slide
    px = place["translate"][1] + (raster.cols * raster.sub + raster.pad + (raster.sub - 1) / 2) * place["scale"][1]
    py = place["translate"][0] + (raster.rows * raster.sub + raster.pad + (raster.sub - 1) / 2) * place["scale"][0]
    off = max(np.abs(px / mpp - (x + side / 2 - 0.5)).max(), np.abs(py / mpp - (y + side / 2 - 0.5)).max())
    assert off < 1.0, off  # old: 111, 84 and 93 level-0 px
    assert raster.stride == pytest.approx(stride, abs=0.01)


def test_save_bed_after_rescore_does_not_rasterise_the_same_bed_again(make_napari_viewer, scored, tmp_path, monkeypatch):
    """Save bed rasterised the bed once more to tell a bed over no tile (a second Rescore's work: half of Save bed
    on a big slide's fragmented bed); the bed just rescored, unchanged since, gives its tile count. A bed changed
    after Rescore is still rasterised, and a bed over no tile is still said."""
    import weakstil.bed_edit as bed_edit

    viewer, widget = _opened(scored, tmp_path, make_napari_viewer)
    editor = widget.bed_editor
    layer = editor.edit_bed()
    calls = []
    flags = bed_edit.bed_tile_flags

    def counted(*args, **kwargs):
        calls.append(1)
        return flags(*args, **kwargs)

    monkeypatch.setattr(bed_edit, "bed_tile_flags", counted)
    assert editor.rescore() is not None and len(calls) == 1
    assert editor.save_bed() is not None
    assert len(calls) == 1  # old: 2 (the same bed rasterised again)
    layer.data = [np.array([[1.0, 1.0], [1.0, 11.0], [11.0, 11.0], [11.0, 1.0]])]  # a speck: no tile half in it
    assert editor.save_bed() is not None and len(calls) == 2  # changed since Rescore: rasterised
    assert "holds no tile" in widget.status_label.text()
    assert editor.rescore() is not None and len(calls) == 3
    assert editor.save_bed() is not None and len(calls) == 3 and "holds no tile" in widget.status_label.text()
