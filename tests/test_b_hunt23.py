"""The napari plugin as a pathologist drives it across slides and sessions (hunt 23, area b): the
scoring settings follow the chosen slide, a saved bed is edited again in a later session, every line
agrees with the number shown, and a closed widget leaves the viewer. Headless under Xvfb
(pytest-xvfb), on the plugin's scored synthetic slide."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("napari")

import napari_plugin_fixtures  # noqa: E402  (after the napari check)

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below
_dock = napari_plugin_fixtures.dock


_result = napari_plugin_fixtures.copied_result


def _bed_box(f) -> tuple[float, float, float, float]:
    """The scored bed's tiles' bounds in level-0 px (left, top, right, bottom) and the tile side."""
    coords, tile = np.asarray(f.coords), float(f.attrs["tile_size_level0"])
    flags = np.asarray(f.tumorbed, bool)
    return coords[flags, 0].min(), coords[flags, 1].min(), coords[flags, 0].max() + tile, coords[flags, 1].max() + tile


def _rect(left, top, right, bottom) -> np.ndarray:
    return np.array([[top, left], [top, right], [bottom, right], [bottom, left]], float)  # napari's (y, x)


def test_allow_upsampling_follows_the_chosen_slide(make_napari_viewer, scored, tmp_path):
    """Allow upsampling ticked to score one slide (a scan coarser than the model's µm/px) stayed ticked for
    the next slide opened, so Score slide read that slide upsampled too (and scored again a slide scored
    without it) instead of refusing a coarse scan with the fix. Like Scan µm/px, the box now shows the
    chosen slide's own: ticked for a slide scored with it, else off."""
    from napari_weakstil._scoring import ScoringJob
    from weakstil.score import ScoreOptions

    out = tmp_path / "scores"
    _result(scored, out)
    held = scored["held"]
    other = next(p for p in sorted((scored["cohort"] / "slides").iterdir()) if p.suffix == ".tiff" and p != held)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    first = viewer.open(held, plugin="napari-weakstil")[0]
    widget.upsample_box.setChecked(True)  # ticked to score the first slide
    opts = ScoreOptions(model=scored["model"], out=out, allow_upsample=True)
    job = ScoringJob(widget, first, opts, None)
    job._on_returned({"slide_id": held.stem, "status": "ok", "n_tiles": 51, "seconds": 1.0})  # its score came back
    assert widget.result_layer("sTIL score") is not None

    second = viewer.open(other, plugin="napari-weakstil")[0]
    assert widget.selected_slide_layer() is second
    assert not widget.upsample_box.isChecked()  # the next slide: not read upsampled unless ticked for it
    viewer.layers.selection.active = first  # back to the first: scored with upsampling
    assert widget.selected_slide_layer() is first and widget.upsample_box.isChecked()
    viewer.layers.selection.active = second
    assert not widget.upsample_box.isChecked()


def test_a_saved_bed_is_edited_again_in_a_later_session_and_rescores_as_the_cli(make_napari_viewer, scored, tmp_path):
    """A bed corrected and saved yesterday (<slide_id>.geojson in the bed folder) could not be loaded back:
    Edit bed always started from the scored bed, so the next session's Rescore gave the scored number, not
    the saved bed's. Edit bed now continues the bed saved for the slide (the status line says so; pressed
    again, the scored bed), and its Rescore gives what 'weakstil score --annotations' gives for that file."""
    from weakstil.bed_edit import BED_PART, HOLE_PART
    from weakstil.files import SlideScoresFile
    from weakstil.score import ScoreOptions, score_batch

    path = _result(scored, tmp_path / "scores")
    f = SlideScoresFile.read(path)
    left, top, right, bottom = _bed_box(f)
    w, h = right - left, bottom - top
    beds = tmp_path / "beds"

    viewer = make_napari_viewer()  # yesterday: a bed with a hole, and an island of bed inside the hole
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    editor = widget.bed_editor
    editor.folder_edit.value = beds
    layer = editor.edit_bed()
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    layer.add_polygons([_rect(left + 0.1 * w, top + 0.05 * h, right - 0.05 * w, bottom - 0.1 * h)])
    editor.holes_box.setChecked(True)
    layer.add_polygons([_rect(left + 0.3 * w, top + 0.3 * h, right - 0.2 * w, bottom - 0.3 * h)])
    editor.holes_box.setChecked(False)
    layer.add_polygons([_rect(left + 0.45 * w, top + 0.45 * h, right - 0.4 * w, bottom - 0.45 * h)])
    yesterday = editor.rescore()
    assert yesterday.n_bed_tiles not in (0, int(np.asarray(f.tumorbed).sum()))
    saved = editor.save_bed()
    assert saved == beds / f"{f.attrs['slide_id']}.geojson"

    viewer = make_napari_viewer()  # today, a new session
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    editor = widget.bed_editor
    editor.folder_edit.value = beds
    layer = editor.edit_bed()
    status, note = widget.status_label.text(), editor.label.text()
    today = editor.rescore()
    np.testing.assert_array_equal(today.tile_flags, yesterday.tile_flags)
    assert f"continues the bed saved in {saved}" in status and "the bed saved in" in note
    assert list(layer.features["part"]) == [BED_PART, HOLE_PART, BED_PART]

    cli = tmp_path / "cli"  # what 'weakstil score --annotations beds' gives (the scored slide's features reused)
    shutil.copytree(scored["scores"] / "features", cli / "features")
    row = score_batch([scored["held"]], ScoreOptions(model=scored["model"], out=cli, weights="random", device="cpu",
                                                     workers=1, annotations=beds), progress=False)[0]
    assert row["status"] == "ok" and row["tumorbed_source"] == "annotation"
    assert int(row["n_tumorbed_tiles"]) == today.n_bed_tiles
    assert round(today.stil, 4) == pytest.approx(round(float(row["stil"]), 4), abs=1.01e-4)

    assert editor.edit_bed() is not None  # pressed again: the scored bed
    assert editor.rescore().stil == pytest.approx(float(f.attrs["stil"]), abs=1e-4)

    broken = tmp_path / "broken"  # a bed file that cannot be read: said with the file, no edit started
    broken.mkdir()
    (broken / saved.name).write_text("{not json")
    editor.folder_edit.value = broken
    viewer.layers.remove(editor.layer())
    assert editor.edit_bed() is None and editor.layer() is None
    assert str(broken / saved.name) in widget.status_label.text() and "Fix:" in widget.status_label.text()


def test_after_rescore_every_line_gives_the_edited_bed(make_napari_viewer, scored, tmp_path):
    """After Rescore the sTIL line and the bed box gave the edited bed's number and tile count, while the
    detail line beneath the number still said '51 in the tumour bed' (the scored bed's), and a tile clicked
    before still said 'in the tumour bed' though the edit left it out. Now the detail line gives the edited
    bed's count (with the scored bed's beside it), also when its result is shown again, the clicked tile's
    line is for the edited bed, and the scored count comes back once the edit is reset."""
    from weakstil.files import SlideScoresFile

    first, second = _result(scored, tmp_path / "first"), _result(scored, tmp_path / "second")
    f = SlideScoresFile.read(first)
    n_scored = int(np.asarray(f.tumorbed).sum())
    left, top, right, bottom = _bed_box(f)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(first, plugin="napari-weakstil")
    editor = widget.bed_editor
    layer = editor.edit_bed()
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    layer.add_polygons([_rect(left, top, (left + right) / 2, bottom)])  # the left half of the bed
    coords, tile, mpp = np.asarray(f.coords), float(f.attrs["tile_size_level0"]), float(f.attrs["slide_mpp"])
    x, y = coords[np.asarray(f.tumorbed, bool)][np.argmax(coords[np.asarray(f.tumorbed, bool), 0])]  # right edge
    widget.inspect_at(((y + tile / 2) * mpp, (x + tile / 2) * mpp))  # a tile clicked before the Rescore
    assert "in the tumour bed" in widget.tile_label.text()
    viewer.layers.selection.active = layer  # back to drawing
    new = editor.rescore()
    assert 0 < new.n_bed_tiles < n_scored
    for text in (widget.detail_label.text(), editor.label.text()):
        assert f"{new.n_bed_tiles:,} " in text
    assert "outside the edited bed" in widget.tile_label.text()  # the clicked tile's line: for this bed
    assert viewer.layers.selection.active is layer  # still drawing on the bed
    assert f"{new.n_bed_tiles:,} in the edited bed (scored bed: {n_scored:,}" in widget.detail_label.text()
    assert f"{n_scored:,} in the tumour bed" not in widget.detail_label.text()

    viewer.open(second, plugin="napari-weakstil")  # another result shown: its own scored count
    assert widget.result_path == str(second) and f"{n_scored:,} in the tumour bed" in widget.detail_label.text()
    viewer.layers.selection.active = widget.result_layer("sTIL score", first)  # the edited one again
    assert widget.result_path == str(first)
    assert f"{new.n_bed_tiles:,} in the edited bed" in widget.detail_label.text() and "edited bed" in \
        widget.stil_label.text()
    assert editor.edit_bed() is None  # its changes are not saved: said first (hunt 30e), and kept
    editor.edit_bed()  # pressed again: back to the scored bed, its number and count
    assert f"{n_scored:,} in the tumour bed" in widget.detail_label.text()


class _Press:
    type = "mouse_press"

    def __init__(self, yx):
        self.position = yx


def test_a_closed_widget_leaves_the_viewer(make_napari_viewer, scored, tmp_path):
    """The dock widget closed with its close button and docked again: the closed one stayed connected to the
    viewer (its click, layer and selection callbacks), so two widgets answered every click and layer change.
    It is now disconnected when closed, and connected again if it is docked again."""
    from qtpy.QtWidgets import QApplication

    from weakstil.files import SlideScoresFile

    path = _result(scored, tmp_path / "scores")
    f = SlideScoresFile.read(path)
    viewer = make_napari_viewer()
    viewer.open(path, plugin="napari-weakstil")
    dock, closed = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    dock.title.close_button.click()  # the pathologist closes the panel
    QApplication.processEvents()
    widget = _dock(viewer)  # and opens it again from the Plugins menu
    assert widget is not closed

    owners = [getattr(cb, "__self__", None) for cb in viewer.mouse_drag_callbacks]
    assert widget in owners and closed not in owners
    answered = []
    for w in (widget, closed):
        w.inspect_at = lambda yx, w=w: answered.append(w)
    x, y = (float(v) for v in np.asarray(f.coords)[0])
    mpp, tile = float(f.attrs["slide_mpp"]), float(f.attrs["tile_size_level0"])
    for callback in list(viewer.mouse_drag_callbacks):
        callback(viewer, _Press(((y + tile / 2) * mpp, (x + tile / 2) * mpp)))
    assert answered == [widget]  # one click, one widget

    slide = next(p for p in sorted((scored["cohort"] / "slides").iterdir()) if p.suffix == ".tiff")
    before = closed.slide_combo.count()
    viewer.open(slide, plugin="napari-weakstil")
    assert widget.slide_combo.currentText() == slide.name and closed.slide_combo.count() == before

    viewer.window.remove_dock_widget(widget)  # the first one docked again: it follows the viewer again
    viewer.window.add_dock_widget(closed, name="sTIL scoring")
    owners = [getattr(cb, "__self__", None) for cb in viewer.mouse_drag_callbacks]
    assert owners.count(closed) == 1 and widget not in owners
    assert closed.slide_combo.findText(slide.name) >= 0
