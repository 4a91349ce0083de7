"""The napari bed editor as a pathologist drives it (hunt 22, area a): what the widget shows must be
the result its layers show. Headless under Xvfb (pytest-xvfb), like the plugin's own viewer tests,
on the plugin's scored synthetic slide."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("napari")

import napari_plugin_fixtures  # noqa: E402  (after the napari check)

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below
_dock = napari_plugin_fixtures.dock


def _left_half_of_the_bed(layer, f) -> np.ndarray:
    """Every shape deleted and the left half of the scored bed's tiles drawn again (level-0 (y, x))."""
    coords, tile = np.asarray(f.coords), float(f.attrs["tile_size_level0"])
    flags = np.asarray(f.tumorbed, bool)
    columns = np.unique(coords[flags, 0])
    mid = float(columns[len(columns) // 2])
    top, bottom = coords[flags, 1].min() - tile, coords[flags, 1].max() + 2 * tile
    left = coords[flags, 0].min() - tile
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    layer.add_polygons([np.array([[top, left], [top, mid], [bottom, mid], [bottom, left]], float)])
    return flags & (coords[:, 0] + tile / 2 < mid)


def test_closing_the_edited_bed_shows_the_scored_result_again(make_napari_viewer, scored, tmp_path):
    """Rescore of an edited bed, then its layer deleted (the edit discarded): the widget went on showing
    the edit's number and call ('edited bed, no interval'), the heatmap its tile scores and tile clicks
    'outside the edited bed', while Save bed said 'Press Edit bed first': a number of no bed anywhere."""
    from weakstil.files import SlideScoresFile

    path = tmp_path / scored["score_h5"].name
    shutil.copy(scored["score_h5"], path)
    f = SlideScoresFile.read(path)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    scored_text, scored_qc = widget.stil_label.text(), widget.qc_label.text()
    heat = widget.result_layer("sTIL score", path)
    painted = np.array(heat.data)
    editor = widget.bed_editor
    layer = editor.edit_bed()
    want = _left_half_of_the_bed(layer, f)
    new = editor.rescore()
    np.testing.assert_array_equal(new.tile_flags, want)
    assert "edited bed" in widget.stil_label.text() and not np.allclose(np.nan_to_num(heat.data), np.nan_to_num(painted))

    viewer.layers.remove(layer)  # the pathologist throws the edit away
    assert widget.stil_label.text() == scored_text and widget.qc_label.text() == scored_qc
    assert "edited bed was closed" in editor.label.text() and editor.last_rescore is None
    np.testing.assert_array_equal(np.asarray(heat.data), painted)  # the file's tile scores again
    bed_tile = int(np.flatnonzero(np.asarray(f.tumorbed, bool) & ~want)[0])  # in the scored bed, not in the edit
    x, y = (float(v) for v in np.asarray(f.coords)[bed_tile])
    mpp, tile = float(f.attrs["slide_mpp"]), float(f.attrs["tile_size_level0"])
    info = widget.inspect_at(((y + tile / 2) * mpp, (x + tile / 2) * mpp))
    assert info["index"] == bed_tile and info["tumorbed"] and "edited_bed" not in info
    assert "in the tumour bed" in widget.tile_label.text()
    assert editor.edit_bed() is not None and editor.rescore().stil == pytest.approx(float(f.attrs["stil"]), abs=1e-4)


def _rewrite(path: Path) -> None:
    """The result written again at its path (as 'weakstil score' rewrites a slide scored again into its
    folder, say with the saved bed as --annotations): other tile scores, written beside and renamed over."""
    again = path.with_name("again.h5")
    shutil.copy(path, again)
    with h5py.File(again, "r+") as f:
        f["tile_scores"][...] = np.asarray(f["tile_scores"]) * 0.5
        f["tile_scores_model"][...] = np.asarray(f["tile_scores_model"]) * 0.5
        f.attrs["stil"] = float(f.attrs["stil"]) * 0.5
    os.replace(again, path)


def test_a_result_written_again_since_it_was_opened_is_not_edited_under_the_old_layers(make_napari_viewer, scored,
                                                                                       tmp_path):
    """The slide scored again into the result's folder while napari showed the result: Edit bed put the new
    file's bed over the old file's outline, and Rescore of it gave the new file's number under the old one's
    (interval, call and flags of the file as opened), 'the scored bed gave' another number than the one
    shown. Now the editor edits the file its layers show, or says to open it again."""
    from weakstil.files import SlideScoresFile

    path = tmp_path / scored["score_h5"].name
    shutil.copy(scored["score_h5"], path)
    stil = float(SlideScoresFile.read(path).attrs["stil"])
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    editor = widget.bed_editor

    # edited before the file was written again: Rescore goes on with the tiles of the file shown
    assert editor.edit_bed() is not None
    _rewrite(path)
    unedited = editor.rescore()
    assert unedited.stil == pytest.approx(stil, abs=1e-4)
    assert f"gave {stil:.1f} %" in editor.label.text()

    # opened, then written again before Edit bed: refused with the fix, nothing drawn
    viewer.layers.clear()
    viewer.open(path, plugin="napari-weakstil")
    shown = widget.stil_label.text()
    _rewrite(path)
    assert editor.edit_bed() is None and editor.layer() is None
    assert "written again since it was opened" in widget.status_label.text()
    assert "open it again" in widget.status_label.text() and widget.stil_label.text() == shown

    viewer.open(path, plugin="napari-weakstil")  # opened again: its bed and numbers are the new file's
    assert editor.edit_bed() is not None
    assert editor.rescore().stil == pytest.approx(stil * 0.25, rel=1e-3)


def test_a_result_moved_away_since_it_was_opened_says_so_and_saves_no_bed_where_it_was(make_napari_viewer, scored,
                                                                                        tmp_path):
    """The results folder moved while napari showed a result: Edit bed said a bare 'file not found.', and
    Save bed into the default folder made the moved folder again (with beds/ in it) at its old place."""
    folder = tmp_path / "scores"
    folder.mkdir()
    path = folder / scored["score_h5"].name
    shutil.copy(scored["score_h5"], path)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    editor = widget.bed_editor
    moved = tmp_path / "moved"
    folder.rename(moved)
    assert editor.edit_bed() is None
    text = widget.status_label.text()
    assert str(path) in text and "moved or deleted since it was opened" in text and "Fix:" in text

    folder.mkdir()  # back for Edit bed, then moved away again
    shutil.copy(moved / path.name, path)
    viewer.layers.clear()
    viewer.open(path, plugin="napari-weakstil")
    assert editor.edit_bed() is not None
    shutil.rmtree(folder)
    assert editor.rescore() is not None  # the tiles read from the file shown
    assert editor.save_bed() is None and not folder.exists()
    assert "Fix: choose a bed folder" in widget.status_label.text()
    editor.folder_edit.value = tmp_path / "beds"
    assert editor.save_bed() == tmp_path / "beds" / f"{path.stem}.geojson"


def test_rescoring_a_bed_whose_result_is_closed_names_it_and_keeps_its_edits(make_napari_viewer, scored, tmp_path):
    """A bed drawn on while every layer of its result is closed (another result shown): Rescore and Save bed
    said 'Press Edit bed first', which would start another result's bed. Now the line names the bed's
    result and says to open it again; opened again, the bed's edits rescore."""
    from weakstil.files import SlideScoresFile

    first, second = tmp_path / "first" / scored["score_h5"].name, tmp_path / "second" / scored["score_h5"].name
    for path in (first, second):
        path.parent.mkdir()
        shutil.copy(scored["score_h5"], path)
    f = SlideScoresFile.read(first)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(first, plugin="napari-weakstil")
    editor = widget.bed_editor
    bed = editor.edit_bed()
    want = _left_half_of_the_bed(bed, f)
    viewer.open(second, plugin="napari-weakstil")
    for layer in [ly for ly in viewer.layers if ly.metadata.get("weakstil_kind") == "result"
                  and ly.metadata.get("result_path") == str(first)]:
        viewer.layers.remove(layer)  # the first result closed, its edited bed left open
    viewer.layers.selection.active = bed
    assert widget.result_path == str(second)
    assert editor.rescore() is None and editor.save_bed() is None
    text = widget.status_label.text()
    assert str(first) in text and "open synth" in text and "Press Edit bed first" not in text
    assert not (tmp_path / "second" / "beds").exists()

    viewer.open(first, plugin="napari-weakstil")
    viewer.layers.selection.active = bed
    assert widget.result_path == str(first)
    np.testing.assert_array_equal(editor.rescore().tile_flags, want)


def test_saving_a_bed_over_no_tile_says_what_score_and_train_make_of_it(make_napari_viewer, scored, tmp_path):
    """A bed drawn over the slide's background (no tile half inside it) was saved with 'Bed saved to ...;
    use it with --annotations' and nothing more; 'score --annotations' then gives the slide no score and
    'train' leaves it out. The line now says so (the file is still written: it is a valid annotation)."""
    from weakstil.annotations import find_annotation
    from weakstil.files import SlideScoresFile

    path = tmp_path / scored["score_h5"].name
    shutil.copy(scored["score_h5"], path)
    f = SlideScoresFile.read(path)
    coords, tile = np.asarray(f.coords), float(f.attrs["tile_size_level0"])
    width, height = int(f.attrs["slide_width"]), int(f.attrs["slide_height"])
    # a square of one tile's side on the slide that overlaps no tile
    step = tile / 4
    spot = next((x, y) for y in np.arange(0, height - tile, step) for x in np.arange(0, width - tile, step)
                if not ((np.abs(coords[:, 0] - x) < tile) & (np.abs(coords[:, 1] - y) < tile)).any())
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    editor = widget.bed_editor
    layer = editor.edit_bed()
    editor.folder_edit.value = tmp_path / "beds"
    assert editor.save_bed() is not None and "holds no tile" not in widget.status_label.text()  # the scored bed
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    x, y = spot
    layer.add_rectangles([np.array([[y, x], [y + tile, x + tile]], float)])
    assert editor.rescore().n_bed_tiles == 0
    saved = editor.save_bed()
    assert saved == find_annotation(tmp_path / "beds", f.attrs["slide_id"])
    text = widget.status_label.text()
    assert "holds no tile of the slide" in text and "no tumour bed" in text and "train" in text


def test_score_slide_scores_the_slide_opened_last_or_selected(make_napari_viewer, scored):
    """One session, slides opened one after another: the widget's Slide box stayed on the first slide
    opened, so Score slide after opening a second slide scored the first one again (its result was
    'already scored' and shown at once: 'Scored in 12 s', CMU's 44.2 % over the new slide). The box now
    follows the slide opened last, and the slide layer selected in the layer list."""
    slides = sorted(p for p in (scored["cohort"] / "slides").iterdir() if p.suffix == ".tiff")[:2]
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    layers = []
    for slide in slides:
        layers += viewer.open(slide, plugin="napari-weakstil")
        assert widget.slide_combo.currentText() == layers[-1].name
        assert widget.selected_slide_layer().metadata["slide_path"] == str(slide)
    viewer.layers.selection.active = layers[0]  # the pathologist picks the first slide in the layer list
    assert widget.selected_slide_layer().metadata["slide_path"] == str(slides[0])
    viewer.layers.selection.active = layers[1]
    assert widget.selected_slide_layer().metadata["slide_path"] == str(slides[1])


def test_a_scan_mpp_entered_for_one_slide_does_not_score_the_next(make_napari_viewer, scored):
    """Scan µm/px entered for a slide that records none (the JPEG 2000 SVS, 0.25) stayed in the box when
    the next slide was opened, and Score slide overrode that slide's own 0.5 µm/px with it: synth_0001
    scored 30.5 % high over 18 tiles instead of 6.9 % low over 67 (qc 'mpp overridden' the only hint).
    The box now shows the chosen slide's own: the µm/px it was scored with, else 'from the file'."""
    from napari_weakstil.slide_layers import set_scan_mpp

    slides = sorted(p for p in (scored["cohort"] / "slides").iterdir() if p.suffix == ".tiff")[:2]
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    first = viewer.open(slides[0], plugin="napari-weakstil")[0]
    widget.slide_mpp_spin.setValue(0.25)  # entered for the first slide
    set_scan_mpp(first, 0.25)  # as a successful Score slide records it on the layer
    second = viewer.open(slides[1], plugin="napari-weakstil")[0]
    assert widget.selected_slide_layer() is second
    assert widget.slide_mpp_spin.value() == 0.0 and widget.slide_mpp_spin.text() == "from the file"
    viewer.layers.selection.active = first  # back to the first: the µm/px it was scored with
    assert widget.selected_slide_layer() is first and widget.slide_mpp_spin.value() == pytest.approx(0.25)
    viewer.layers.selection.active = second
    assert widget.slide_mpp_spin.value() == 0.0
