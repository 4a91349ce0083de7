"""The dock widget's scoring run: errors, Cancel, the widget closing, the slide changing, the
µm/px a slide is scored and shown at; the bed editor's cache; the high/low call (outside tester,
round 9). A real viewer under Xvfb, the conftest's model and synthetic slides."""

from __future__ import annotations

import os
import shutil
import sys

import h5py
import numpy as np
import pytest

from napari_weakstil._widget import ScoringWidget
from napari_weakstil.result_layers import HEATMAP, TISSUE

WAIT_MS = 120_000


def _dock(viewer) -> ScoringWidget:
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    return widget


def _ready(viewer, scored, out, slide=None) -> ScoringWidget:
    """The widget over ``slide`` (the conftest's held-out slide), its model and the output folder."""
    viewer.open(slide or scored["held"], plugin="napari-weakstil")
    widget = _dock(viewer)
    widget.model_edit.value = scored["model"]
    widget.out_edit.value = out
    widget.weights_edit.setText("random")  # the conftest's encoder: seeded random small-cnn
    return widget


def _result_layers(viewer) -> list:
    return [ly for ly in viewer.layers if ly.metadata.get("weakstil_kind") == "result"]


def test_a_model_that_fails_to_load_is_reported_in_one_line(make_napari_viewer, qtbot, scored, tmp_path):
    """Weights cut short: the status says why in one line, and nothing is raised again in the GUI
    thread (outside napari.run() that aborted Python; pytest-qt fails a test on it)."""
    model = tmp_path / "model"
    shutil.copytree(scored["model"], model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    viewer = make_napari_viewer()
    widget = _ready(viewer, scored, tmp_path / "scores")
    widget.model_edit.value = model
    widget.score_button.click()
    qtbot.waitUntil(widget.score_button.isEnabled, timeout=WAIT_MS)
    status = widget.status_label.text()
    assert "model.safetensors" in status and "Fix:" in status and "\n" not in status
    assert not widget.cancel_button.isEnabled() and not _result_layers(viewer)


def test_cancel_stops_scoring_and_leaves_no_result(make_napari_viewer, qtbot, scored, tmp_path):
    viewer = make_napari_viewer()
    out = tmp_path / "scores"
    widget = _ready(viewer, scored, out)
    assert not widget.cancel_button.isEnabled()
    widget.score_button.click()
    assert widget.cancel_button.isEnabled()
    widget.cancel_button.click()  # takes effect at the first batch of tiles
    qtbot.waitUntil(widget.score_button.isEnabled, timeout=WAIT_MS)
    assert "cancelled" in widget.status_label.text()
    assert widget.last_row is None and not _result_layers(viewer)
    assert not list(out.glob("*.h5")) and not widget.cancel_button.isEnabled()


def test_deleting_the_widget_while_it_scores_stops_the_run(make_napari_viewer, qtbot, scored, tmp_path,
                                                          monkeypatch):
    """The viewer closed mid-score deletes the widget: the run stops at its next batch of tiles
    without calling the deleted widget (which raised 'wrapped C/C++ object ... has been deleted' in
    the scoring thread, where Qt hands it to sys.excepthook: outside napari.run() an abort)."""
    unhandled: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, exc, tb: unhandled.append(exc))
    viewer = make_napari_viewer()
    out = tmp_path / "scores"
    widget = _ready(viewer, scored, out)
    widget.score_button.click()
    with qtbot.waitSignal(widget.worker.finished, timeout=60_000):  # old code: its thread died, never finished
        widget.deleteLater()
    assert not unhandled
    assert not list(out.glob("*.h5"))


def test_a_result_is_not_drawn_once_its_slide_layer_is_gone(make_napari_viewer, qtbot, scored, tmp_path):
    """The slide closed and another opened while it scored: the result is not drawn over the new
    layer (here the same file opened again, a new layer all the same), and the status says so."""
    out = tmp_path / "scores"
    shutil.copytree(scored["scores"], out)  # already scored there: the run returns at once
    viewer = make_napari_viewer()
    widget = _ready(viewer, scored, out)
    widget.score_button.click()
    viewer.layers.clear()  # before the GUI thread hears of the result
    viewer.open(scored["held"], plugin="napari-weakstil")
    qtbot.waitUntil(lambda: widget.last_row is not None, timeout=WAIT_MS)
    assert widget.last_row["status"] == "ok"
    assert not _result_layers(viewer)
    assert "not shown" in widget.status_label.text() and widget.result is None


def _extent_max(layer) -> np.ndarray:
    return np.asarray(layer.extent.world[1][-2:], float)


def test_masks_land_on_a_slide_shown_at_another_mpp(make_napari_viewer, qtbot, scored, tmp_path):
    """Scored with a Scan µm/px other than the file's, the slide stays at the file's: the masks,
    in the scored µm, are rescaled to it like the tile grid (the tissue mask covers the slide)."""
    viewer = make_napari_viewer()
    widget = _ready(viewer, scored, tmp_path / "scores")
    slide = viewer.layers[0]
    file_mpp = slide.metadata["mpp"]
    widget.slide_mpp_spin.setValue(0.9 * file_mpp)
    widget.score_button.click()
    qtbot.waitUntil(lambda: widget.last_row is not None, timeout=WAIT_MS)
    assert widget.last_row["status"] == "ok", widget.last_row
    assert slide.metadata["mpp"] == file_mpp and slide.scale[-1] == file_mpp
    tissue = widget.result_layer(TISSUE, widget.result_path)
    mask_px = float(tissue.scale[-1])
    np.testing.assert_allclose(_extent_max(tissue), _extent_max(slide), atol=1.5 * mask_px)
    heat = widget.result_layer(HEATMAP, widget.result_path)
    assert np.all(_extent_max(heat) <= _extent_max(slide) + 1e-6)


def test_a_mistyped_scan_mpp_does_not_stick_to_the_slide(make_napari_viewer, qtbot, scored, tmp_path):
    """A slide without µm/px: a wrong Scan µm/px fails and leaves the layer in pixels (with a hint
    in the widget's words); the corrected one scores and the layer takes it."""
    import tifffile

    with tifffile.TiffFile(scored["held"]) as tif:
        rgb = tif.pages[0].asarray()
        true_mpp = 1e4 / tif.pages[0].tags["XResolution"].value[0] * tif.pages[0].tags["XResolution"].value[1]
    no_mpp = tmp_path / "no_mpp.tiff"
    tifffile.imwrite(no_mpp, rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    viewer = make_napari_viewer()
    widget = _ready(viewer, scored, tmp_path / "scores", slide=no_mpp)
    slide = viewer.layers[0]
    assert slide.metadata["mpp"] is None
    widget.slide_mpp_spin.setValue(4 * true_mpp)  # a typo: coarser than the model reads
    widget.score_button.click()
    qtbot.waitUntil(widget.score_button.isEnabled, timeout=WAIT_MS)
    assert widget.last_row["status"] == "error"
    status = widget.status_label.text()
    assert "Allow upsampling" in status and "Scan µm/px is set to" in status
    # 5 µm/px and coarser reads as a magnification typed as µm/px (hunt 25d): the fix is the
    # scan's µm/px in the widget's words, not upsampling tiles 10-fold
    widget.slide_mpp_spin.setValue(10 * true_mpp)
    widget.score_button.click()
    qtbot.waitUntil(widget.score_button.isEnabled, timeout=WAIT_MS)
    assert widget.last_row["status"] == "error"
    status = widget.status_label.text()
    assert "set Scan µm/px (--slide-mpp) to the scan's µm/px" in status and "Allow upsampling" not in status
    assert "Scan µm/px is set to 5" in status
    assert slide.metadata["mpp"] is None and slide.scale[-1] == 1.0
    widget.last_row = None
    widget.slide_mpp_spin.setValue(true_mpp)
    widget.score_button.click()
    qtbot.waitUntil(lambda: widget.last_row is not None, timeout=WAIT_MS)
    assert widget.last_row["status"] == "ok", widget.last_row
    assert slide.metadata["mpp"] == pytest.approx(true_mpp) and slide.scale[-1] == pytest.approx(true_mpp)
    tissue = widget.result_layer(TISSUE, widget.result_path)
    np.testing.assert_allclose(_extent_max(tissue), _extent_max(slide), atol=1.5 * float(tissue.scale[-1]))


def test_the_call_at_the_threshold_is_the_clis(make_napari_viewer, scored_copy):
    """29.99996 is written 30.0000 by 'weakstil score' and called high at 30: so in the widget."""
    path = scored_copy(stil=29.99996, threshold=30.0)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    assert "sTIL 30.0 %" in widget.stil_label.text() and "· high (threshold 30 %)" in widget.stil_label.text()


def test_the_bed_editor_reads_a_rewritten_result_again(make_napari_viewer, scored, tmp_path):
    """The result file written again (scored with another threshold) and opened again: Rescore uses
    the new file's threshold and scores, not the first file's cached ones."""
    path = tmp_path / scored["score_h5"].name
    shutil.copy(scored["score_h5"], path)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    widget.bed_editor.edit_bed()
    first = widget.bed_editor.rescore()
    rewritten = tmp_path / "rewritten.h5"
    shutil.copy(path, rewritten)
    with h5py.File(rewritten, "r+") as f:  # as 'weakstil score --threshold 95 --overwrite' writes it
        f.attrs["threshold"] = 95.0
        f["tile_scores"][...] = np.asarray(f["tile_scores"]) * 0.5
        f["tile_scores_model"][...] = np.asarray(f["tile_scores_model"]) * 0.5
    os.replace(rewritten, path)  # written beside and renamed over, as score writes its files
    viewer.layers.clear()
    viewer.open(path, plugin="napari-weakstil")
    widget.bed_editor.edit_bed()
    again = widget.bed_editor.rescore()
    assert again.threshold == 95.0 and first.threshold != 95.0
    assert again.stil == pytest.approx(first.stil * 0.5, rel=1e-3)
