"""Correcting the tumour bed in a real viewer (Xvfb): edit the Shapes layer, Rescore, Save bed."""

from __future__ import annotations

import numpy as np
import pytest

from napari_weakstil.bed_layer import BED, HOLE, shapes_to_rings


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    return widget


def test_editing_the_bed_rescores_the_slide_and_saves_an_annotation(make_napari_viewer, scored, tmp_path):
    from weakstil.annotations import find_annotation
    from weakstil.bed_edit import bed_shape, bed_tile_flags
    from weakstil.files import SlideScoresFile
    from weakstil.tumorbed.bed import SlideGeometry, from_annotation

    f = SlideScoresFile.read(scored["score_h5"])
    assert f.attrs["aggregator"] == "stroma"  # the default: the stroma-weighted ratio of the definition
    weights = np.asarray(f.stroma_weight, np.float64)
    assert weights.shape == (len(f.tile_scores),) and weights.min() >= 0 and weights.max() <= 1
    # the tiles' own scores, which `weakstil score` aggregates (tile_scores: the published blend)
    scores, coords, flags0 = np.asarray(f.tile_scores_model), np.asarray(f.coords), np.asarray(f.tumorbed, bool)
    stil0, tile = float(f.attrs["stil"]), float(f.attrs["tile_size_level0"])
    published = np.asarray(f.tile_scores, np.float64)
    assert float((weights[flags0] * published[flags0]).sum() / weights[flags0].sum()) == pytest.approx(stil0, abs=1e-3)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    editor = widget.bed_editor

    layer = editor.edit_bed()
    assert layer is not None
    assert len(layer.data) >= 1
    assert viewer.layers.selection.active.name == layer.name  # (the plugin sees proxies of layers)
    assert tuple(layer.scale[-2:]) == (f.attrs["slide_mpp"],) * 2  # level-0 px, like the heatmap's slide
    # the scored tiles aggregated as `weakstil score` did give its sTIL% exactly
    assert editor.scored_tiles().score_flags(flags0).stil == pytest.approx(stil0, abs=1e-4)
    scored_qc = widget.qc_label.text()
    unedited = editor.rescore()  # the scored bed, as polygons, gives back its very tiles and score
    np.testing.assert_array_equal(unedited.tile_flags, flags0)
    assert unedited.stil == pytest.approx(stil0, abs=1e-4)
    # the scored bed's qc flags are not shown as the edited bed's
    assert widget.qc_label.text().startswith("qc (edited bed): ") and "score --annotations" in widget.qc_label.text()
    assert editor.edit_bed() is not None and widget.qc_label.text() == scored_qc  # Edit bed again: the scored one
    layer = editor.layer()

    # the pathologist removes the right half of the bed: delete every shape, draw the left half again
    bed_x = coords[flags0, 0]
    columns = np.unique(bed_x)
    mid = float(columns[len(columns) // 2])  # a tile column's left edge: tiles lie either side of it
    top, bottom = coords[flags0, 1].min() - tile, coords[flags0, 1].max() + 2 * tile
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    left = bed_x.min() - tile
    ys = np.linspace(top, bottom, 40)
    outline = np.concatenate([np.stack([ys, np.full_like(ys, left)], 1),
                              np.stack([ys[::-1], np.full_like(ys, mid)], 1)])  # (y, x), 80 vertices
    layer.add_polygons([outline])
    widget.bed_editor.rescore_button.click()  # rasterised in a worker thread (hunt 32e)
    widget.bed_editor.tasks.wait()
    new = editor.last_rescore
    want = flags0 & (coords[:, 0] + tile / 2 < mid)
    np.testing.assert_array_equal(new.tile_flags, want)
    assert new.n_bed_tiles == int(want.sum()) and 0 < new.n_bed_tiles < flags0.sum()
    # the remaining tiles' scores, each weighted by its stroma (as `weakstil score` aggregates)
    assert new.stil == pytest.approx(float((weights[want] * scores[want]).sum() / weights[want].sum()), abs=1e-3)
    assert abs(new.stil - stil0) > 0.01
    assert ("few tumour-bed tiles" in widget.qc_label.text()) == (new.n_bed_tiles < 16)
    assert f"sTIL {new.stil:.1f} %" in widget.stil_label.text()
    assert ("high" if new.stil >= float(f.attrs["threshold"]) else "low") in widget.stil_label.text()

    # Save bed: <slide_id>.geojson that --annotations finds and reads back to the same tiles
    editor.folder_edit.value = tmp_path / "beds"
    editor.save_button.click()  # written in a worker thread (hunt 32e)
    editor.tasks.wait()
    slide_id = f.attrs["slide_id"]
    saved = find_annotation(tmp_path / "beds", slide_id)
    assert saved == tmp_path / "beds" / f"{slide_id}.geojson"
    read_back = from_annotation(saved, SlideGeometry.from_file(f))
    np.testing.assert_array_equal(read_back.tile_flags, new.tile_flags)
    rings = shapes_to_rings(list(layer.data), list(layer.shape_type), list(layer.features["part"]))
    np.testing.assert_array_equal(bed_tile_flags(bed_shape(*rings), SlideGeometry.from_file(f)), new.tile_flags)

    # a hole drawn with "new shapes are holes" takes the tiles under it out of the bed
    editor.holes_box.setChecked(True)
    first = coords[new.tile_flags][0]  # (x, y) of one bed tile: cover it whole
    layer.add_rectangles([np.array([[first[1], first[0]], [first[1] + tile, first[0] + tile]], float)])
    assert list(layer.features["part"])[-1] == "hole"
    holed = editor.rescore()
    gone = new.tile_flags & ~holed.tile_flags
    assert gone.sum() == 1 and np.array_equal(coords[gone][0], first)
    hw = weights[holed.tile_flags]
    assert holed.stil == pytest.approx(float((hw * scores[holed.tile_flags]).sum() / hw.sum()), abs=1e-3)


def test_shapes_become_bed_and_hole_rings():
    square = np.array([[0, 0], [0, 10], [10, 10], [10, 0]], float)  # (y, x)
    polygons, holes = shapes_to_rings([square, square + 2, square[:2], square], ["polygon", "rectangle", "path",
                                                                                 "ellipse"],
                                      [BED, HOLE, BED, BED])
    assert len(polygons) == 2 and len(holes) == 1
    np.testing.assert_array_equal(polygons[0], square[:, ::-1])  # [x, y]
    ellipse = polygons[1]
    assert len(ellipse) == 64 and np.allclose(ellipse.mean(0), [5, 5])
    assert np.allclose(np.hypot(*(ellipse - 5).T), 5)


def test_save_bed_defaults_outside_folders_that_overwrite_replaces(scored, tmp_path):
    """Beds saved from a model's cross-validation tiles (or an evaluation's) go beside that folder, not
    into it: 'train --overwrite' would delete them with the model (an outside tester lost them so)."""
    from napari_weakstil.bed_editor import default_bed_folder

    cv_result = sorted(scored["cv_tiles"].glob("*.h5"))[0]
    assert default_bed_folder(cv_result) == scored["model"].parent / f"{scored['model'].name}_beds"
    assert default_bed_folder(scored["score_h5"]) == scored["score_h5"].parent / "beds"


def test_rescore_of_a_bed_over_no_tile_says_so_not_that_save_bed_keeps_it(make_napari_viewer, scored):
    """Hunt 37m: every shape deleted (or the bed drawn on the background), Rescore showed "sTIL: — (no tumour bed)"
    and the status line read "Rescored … with the edited bed (Save bed keeps it).", though Save bed refuses an empty
    bed and a bed over no tile gives the slide no score in 'score --annotations'. Now the line says the bed holds no
    tile, so no sTIL%, and the fix."""
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    editor = widget.bed_editor
    layer = editor.edit_bed()
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    for draw in (None, [np.array([[0.0, 0.0], [3.0, 3.0]])]):  # no shape; then a 3-px square in the slide's corner
        if draw is not None:
            layer.add_rectangles(draw)
        new = editor.rescore()
        assert new is not None and new.n_bed_tiles == 0
        status = widget.status_label.text()
        assert "Save bed keeps it" not in status, status
        assert "holds no tile" in status and "Fix:" in status and "ff6b6b" in widget.status_label.styleSheet()
        assert "nan" not in widget.stil_label.text().lower() and "no tumour bed" in widget.stil_label.text()
