"""The napari bed editor as a pathologist drives it (hunt 22, area a): what the widget shows must be
the result its layers show. Headless under Xvfb (pytest-xvfb), like the plugin's own viewer tests,
on the plugin's scored synthetic slide."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("napari")


def _plugin_fixtures():
    """The napari plugin's fixtures (its tests' conftest: a small trained model and a scored slide,
    built once per run and shared with the plugin's tests)."""
    path = Path(__file__).resolve().parents[1] / "plugins" / "napari_weakstil" / "tests" / "conftest.py"
    spec = importlib.util.spec_from_file_location("napari_weakstil_test_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scored = _plugin_fixtures().scored  # a pytest fixture, used by name below


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    return widget


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
