"""The bed editor and the reader as an outside tester found them (round 13, area c): a bed dragged
whole with napari's transform mode is scored and saved where it is shown; a tile clicked after
Rescore says whether it is in the edited bed; Save bed says when it replaces its earlier save; a
result whose slide is not found says so in the viewer, naming the other slide it lies over, and
goes over its very scan opened from another file. A real viewer under Xvfb, the conftest's model."""

from __future__ import annotations

import json
import logging
import shutil

import h5py
import numpy as np

from napari_weakstil.result_layers import HEATMAP


def _editing(make_napari_viewer, scored):
    """A viewer with the widget docked, the scored result open and its bed in edit: (viewer, widget,
    editor, result, bed layer)."""
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    return viewer, widget, widget.bed_editor, widget.result, widget.bed_editor.edit_bed()


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    return widget


def test_a_bed_dragged_with_the_transform_mode_is_scored_where_it_is_shown(make_napari_viewer, scored, tmp_path):
    """The transform mode moves a layer's affine, not its data: Rescore scored the bed where it had been."""
    viewer, widget, editor, res, layer = _editing(make_napari_viewer, scored)
    before = editor.rescore()
    shift = 2 * res.tile_size  # level-0 px, to the right
    layer.affine = [[1.0, 0.0, 0.0], [0.0, 1.0, shift * res.slide_mpp], [0.0, 0.0, 1.0]]  # world µm
    dragged = editor.rescore()
    moved = editor.scored_tiles().rescore_parts([r[:, ::-1] + [shift, 0.0] for r in layer.data],
                                                list(layer.features["part"]), clip=True)
    assert dragged.n_bed_tiles != before.n_bed_tiles or dragged.stil != before.stil
    assert np.array_equal(dragged.tile_flags, moved.tile_flags) and dragged.stil == moved.stil
    editor.folder_edit.value = str(tmp_path / "beds")
    saved = editor.save_bed()
    xs = [x for f in json.loads(saved.read_text())["features"] for ring in f["geometry"]["coordinates"]
          for x, _ in ring]
    assert min(xs) >= min(float(r[:, 1].min()) for r in layer.data) + shift - 1e-6


def test_a_tile_clicked_after_rescore_says_whether_it_is_in_the_edited_bed(make_napari_viewer, scored, tmp_path):
    viewer, widget, editor, res, layer = _editing(make_napari_viewer, scored)
    one = 0  # the edited bed: this tile alone
    other = int(np.nonzero(res.tumorbed)[0][-1])  # in the scored bed, not in the edited one
    x, y = res.coords[one]
    s = res.tile_size
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    layer.add_polygons([np.array([[y, x], [y, x + s], [y + s, x + s], [y + s, x]], float)])
    new = editor.rescore()
    assert new.tile_flags[one] and not new.tile_flags[other] and res.tumorbed[other]
    mpp = res.slide_mpp

    def click(i):
        cx, cy = res.coords[i] + s / 2
        widget.inspect_at((cy * mpp, cx * mpp))
        return widget.tile_label.text()

    assert "in the edited bed" in click(one)
    assert "outside the edited bed" in click(other)  # it said "in the tumour bed" (the scored bed's flag)
    editor.folder_edit.value = str(tmp_path)
    editor.save_bed()
    editor.save_bed()  # again: its own earlier save is replaced, and it says so
    assert "replaced" in widget.status_label.text()
    editor.edit_bed()  # back to the scored bed: the scored bed's flags
    assert "in the tumour bed" in click(other)


def _orphan(scored, tmp_path):
    """A copy of the scored result whose slide is neither at its recorded path nor beside it."""
    path = tmp_path / "results" / scored["score_h5"].name
    path.parent.mkdir()
    shutil.copy(scored["score_h5"], path)
    with h5py.File(path, "r+") as f:
        f.attrs["slide_path"] = str(tmp_path / "gone" / scored["held"].name)
    return path


def test_a_result_without_its_slide_says_in_the_viewer_what_it_lies_over(make_napari_viewer, scored, tmp_path, caplog):
    other = sorted(p for p in (scored["cohort"] / "slides").glob("*.tif*") if p.name != scored["held"].name)[0]
    path = _orphan(scored, tmp_path)
    viewer = make_napari_viewer()
    viewer.open(other, plugin="napari-weakstil")
    with caplog.at_level(logging.WARNING, logger="napari_weakstil"):
        viewer.open(path, plugin="napari-weakstil")
    assert "not found" in caplog.text and f"over the open slide layer(s) {other.name}" in caplog.text


def test_a_result_goes_over_its_very_scan_opened_from_another_file(make_napari_viewer, scored, tmp_path, caplog):
    copy = tmp_path / "moved" / f"renamed{scored['held'].suffix}"
    copy.parent.mkdir()
    shutil.copy(scored["held"], copy)
    path = _orphan(scored, tmp_path)
    viewer = make_napari_viewer()
    viewer.open(copy, plugin="napari-weakstil")
    with caplog.at_level(logging.WARNING, logger="napari_weakstil"):
        viewer.open(path, plugin="napari-weakstil")
    assert "not found" not in caplog.text
    slides = [ly for ly in viewer.layers if ly.metadata.get("weakstil_kind") == "slide"]
    assert [ly.metadata["slide_path"] for ly in slides] == [str(copy)]
    heat = next(ly for ly in viewer.layers if ly.metadata.get("role") == HEATMAP)
    assert heat.metadata["slide_mpp"] == slides[0].scale[-1]


def test_a_bed_drawn_with_the_path_tool_is_said_to_be_left_out(make_napari_viewer, scored):
    """Lines and paths enclose no area: Rescore gave 'no tumour bed' without a word why."""
    viewer, widget, editor, res, layer = _editing(make_napari_viewer, scored)
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    (x0, y0), (x1, y1) = res.coords.min(0), res.coords.max(0) + res.tile_size
    layer.add_paths([np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0], [y0, x0]], float)])
    new = editor.rescore()
    assert not new.found and "1 line or path shape(s) left out" in editor.label.text()
    assert editor.save_bed() is None and "left out" in widget.status_label.text()


def test_edit_bed_works_with_the_heatmap_closed(make_napari_viewer, scored):
    """Edit bed did nothing and said nothing once the heatmap layer was closed."""
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    path = widget.result.path
    viewer.layers.remove(widget.result_layer(HEATMAP, path))
    assert widget.result is not None and widget.result.path == path
    layer = widget.bed_editor.edit_bed()
    assert layer is not None and len(layer.data) >= 1
    assert abs(widget.bed_editor.rescore().stil - widget.bed_editor.scored_tiles().original_stil) < 1e-3


def test_the_widget_shows_a_score_just_under_the_threshold_on_its_side(make_napari_viewer, scored_copy):
    path = scored_copy(stil=29.96, threshold=30.0)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    assert widget.stil_label.text().startswith("sTIL 29.96 %") and "low (threshold 30 %)" in widget.stil_label.text()
