"""The dock widget scoring a small synthetic slide in a real viewer under Xvfb."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_weakstil._compat import camera
from napari_weakstil._widget import SELECTED_TILE, ScoringWidget
from napari_weakstil.result_layers import HEATMAP, TUMORBED


def _dock(viewer) -> ScoringWidget:
    """The widget as a user opens it: Plugins > WeakSTIL > sTIL scoring (via the npe2 manifest)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    assert isinstance(widget, ScoringWidget)
    return widget


def test_widget_scores_the_open_slide(make_napari_viewer, qtbot, scored, tmp_path):
    viewer = make_napari_viewer(show=True)
    viewer.open(scored["held"], plugin="napari-weakstil")
    widget = _dock(viewer)
    assert widget.slide_combo.currentText() == scored["held"].name
    out = tmp_path / "scores"
    widget.model_edit.value = scored["model"]
    widget.out_edit.value = out
    widget.weights_edit.setText("random")  # the fixture's encoder: seeded random small-cnn
    seen: list[tuple[int, int]] = []
    widget.tiles_progress.connect(lambda done, total: seen.append((done, total)))

    widget.score_button.click()
    qtbot.waitUntil(lambda: widget.last_row is not None, timeout=180_000)
    row = widget.last_row
    assert row["status"] == "ok", row
    # the same numbers as the CLI's results.csv, shown with the high/low call
    results = pd.read_csv(out / "results.csv")
    stil = float(results.loc[0, "stil"])
    assert f"sTIL {stil:.1f} %" in widget.stil_label.text()
    assert ("high" if stil >= float(results.loc[0, "threshold"]) else "low") in widget.stil_label.text()
    # the progress bar followed the tiles to the end
    assert seen and seen[-1][0] == seen[-1][1] == int(results.loc[0, "n_tiles"])
    slide_id = scored["held"].stem
    heat = viewer.layers[f"{slide_id} {HEATMAP}"]
    with h5py.File(out / f"{slide_id}.h5") as f:
        coords, tile_scores = f["coords"][:], f["tile_scores"][:]
    assert np.isfinite(heat.data).sum() == len(tile_scores)

    # colour range slider drives the heatmap's contrast limits
    widget.range_slider.setValue((20.0, 60.0))
    assert tuple(heat.contrast_limits) == (20.0, 60.0)
    widget.range_slider.setValue((30.0, 30.0))  # an empty range is not applied, and the slider says so
    assert tuple(heat.contrast_limits) == (20.0, 60.0) == tuple(widget.range_slider.value())
    heat.contrast_limits = (10.0, 50.0)  # napari's own layer controls: the slider follows
    assert tuple(widget.range_slider.value()) == (10.0, 50.0)
    # layer toggles
    outline = viewer.layers[f"{slide_id} {TUMORBED}"]
    widget.toggles[TUMORBED].setChecked(False)
    assert not outline.visible
    widget.toggles[TUMORBED].setChecked(True)
    assert outline.visible

    # a click on a tile shows that tile's score and coordinates, and outlines it
    i = int(np.argmax(tile_scores))
    x, y = coords[i]
    mpp = heat.metadata["slide_mpp"]
    tsl0 = heat.metadata["result"].tile_size
    info = widget.inspect_at(((y + tsl0 / 2) * mpp, (x + tsl0 / 2) * mpp))
    assert info["index"] == i and info["score"] == float(tile_scores[i])
    assert f"{tile_scores[i]:.1f}" in widget.tile_label.text() and f"{x:,}" in widget.tile_label.text()
    assert SELECTED_TILE in viewer.layers
    # outlines keep their on-screen width when zooming in
    width_before = float(np.max(outline.edge_width))
    camera(viewer).zoom *= 4
    assert float(np.max(outline.edge_width)) == pytest.approx(width_before / 4)

    # export of the view
    png = widget.export_png(tmp_path / "view.png")
    img = np.asarray(Image.open(png))
    assert img.shape[0] > 100 and img[..., :3].std() > 5


def test_widget_refuses_a_folder_that_is_not_a_model(make_napari_viewer, scored, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(scored["held"], plugin="napari-weakstil")
    widget = _dock(viewer)
    widget.model_edit.value = tmp_path
    widget.score()
    assert "not a WeakSTIL model folder" in widget.status_label.text()
    assert widget.worker is None and widget.score_button.isEnabled()


def test_widget_shows_the_score_of_an_opened_result(make_napari_viewer, scored):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    with h5py.File(scored["score_h5"]) as f:
        stil = float(f.attrs["stil"])
    assert f"sTIL {stil:.1f} %" in widget.stil_label.text()
    # the fixture's model is calibrated on 4 out-of-fold slides, too few for a 90 % interval
    assert "interval" not in widget.stil_label.text()
    assert widget.toggles[HEATMAP].isEnabled() and widget.toggles[HEATMAP].isChecked()


def test_widget_reports_a_slide_without_mpp_and_accepts_the_scan_resolution(make_napari_viewer, qtbot, scored,
                                                                            tmp_path):
    from pathlib import Path

    no_mpp = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "slides" / \
        "tcga-cr-7395-01a-01-ts1_jp2k.svs"
    if not no_mpp.exists():
        pytest.skip(f"needs {no_mpp}")
    viewer = make_napari_viewer()
    (slide,) = viewer.open(no_mpp, plugin="napari-weakstil")
    assert slide.scale[-1] == 1.0  # shown in pixels: the file records no µm/px
    widget = _dock(viewer)
    widget.model_edit.value = scored["model"]
    widget.out_edit.value = tmp_path / "scores"
    widget.score()
    # done when the worker has ended: its `returned` signal (the row) comes before `finished`
    # (which re-enables the button), so waiting for the row alone races the button
    qtbot.waitUntil(widget.score_button.isEnabled, timeout=120_000)
    status = widget.status_label.text()
    assert widget.last_row is not None, status
    assert widget.last_row["status"] == "error"
    assert str(no_mpp) in status and "microns-per-pixel" in status and "Fix:" in status
    # giving the scan resolution puts the slide in µm, where its results will be placed
    from napari_weakstil.slide_layers import set_scan_mpp

    set_scan_mpp(slide, 0.25)  # as the widget does once a score succeeds with it
    assert tuple(slide.scale[-2:]) == (0.25, 0.25) and slide.metadata["mpp"] == 0.25


def test_widget_shows_the_interval_and_qc_flags_of_a_result(make_napari_viewer, scored, tmp_path):
    """A score file with an interval and flags (as `weakstil score` writes them with a model
    calibrated on enough slides): the widget reads "sTIL 23.4 % (90 % interval 17.1–30.2)"."""
    import json

    from weakstil.files import SlideScoresFile

    f = SlideScoresFile.read(scored["score_h5"])
    stil = float(f.attrs["stil"])
    f.attrs.update({"stil_lower_90": max(0.0, stil - 6.3), "stil_upper_90": stil + 6.8, "interval_level": 0.9,
                    "qc": "out_of_distribution;near_threshold",
                    "qc_reasons": json.dumps({"out_of_distribution": "OOD score 2.10 > 1.60",
                                              "near_threshold": "interval contains the threshold"})})
    path = f.write(tmp_path / scored["score_h5"].name)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    text = widget.stil_label.text()
    assert f"sTIL {stil:.1f} % (90 % interval {max(0.0, stil - 6.3):.1f}–{stil + 6.8:.1f})" in text
    # the flags in the heatmap title's words (qc.flags.LABEL; hunt 38j: "qc: out of distribution, near threshold"),
    # the tooltip with each code, as results.csv's qc column names it, and its reason
    assert widget.qc_label.text() == "qc: tissue unlike the training slides, high/low call uncertain"
    assert widget.qc_label.toolTip().splitlines() == [
        "tissue unlike the training slides (out_of_distribution): OOD score 2.10 > 1.60",
        "high/low call uncertain (near_threshold): interval contains the threshold"]


def test_selecting_another_results_layer_shows_that_result(make_napari_viewer, scored):
    """Two results open: the widget shows the newest, and selecting a layer of the other one
    switches its number, flags and bed to that result."""
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    other = sorted(scored["cv_tiles"].glob("*.h5"))[0]
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    first = widget.result.slide_id
    viewer.open(other, plugin="napari-weakstil")
    assert widget.result.slide_id != first
    heat = next(ly for ly in viewer.layers if ly.metadata.get("weakstil_kind") == "result"
                and ly.metadata.get("slide_id") == first and ly.name.endswith(HEATMAP))
    viewer.layers.selection.active = heat
    assert widget.result.slide_id == first and first in widget.detail_label.text()


def test_two_results_of_one_slide_are_told_apart(make_napari_viewer, scored, tmp_path):
    """Two results of the same slide (another model, a rescore with other beds): the widget shows the
    newest, selecting the other's layer shows that one (its number, its heatmap's tiles and range),
    and with every result closed it shows no number (an outside tester saw the first file's 39.9 %
    beside the second file's heatmap)."""
    import shutil

    second = tmp_path / "other_model" / scored["score_h5"].name
    second.parent.mkdir()
    shutil.copy(scored["score_h5"], second)
    with h5py.File(second, "r+") as f:  # the same slide scored otherwise
        f.attrs["stil"] = 87.5
        f["tile_scores"][...] = 99.0
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    first_text = widget.stil_label.text()
    viewer.open(second, plugin="napari-weakstil")
    assert widget.result.path == second and "sTIL 87.5 %" in widget.stil_label.text()
    heat = widget.result_layer(HEATMAP, widget.result_path)
    assert heat.metadata["result_path"] == str(second)
    coords = widget.result.coords[0] + widget.result.tile_size / 2
    info = widget.inspect_at(tuple(float(v) * heat.metadata["slide_mpp"] for v in coords[::-1]))
    assert info is not None and info["score"] == pytest.approx(99.0)
    widget.range_slider.setValue((10.0, 60.0))
    assert tuple(heat.contrast_limits) == (10.0, 60.0)
    first_heat = next(ly for ly in viewer.layers if ly.metadata.get("result_path") == str(scored["score_h5"])
                      and ly.name.endswith(HEATMAP))
    assert tuple(first_heat.contrast_limits) == (0.0, 100.0)
    viewer.layers.selection.active = first_heat
    assert widget.result.path == scored["score_h5"] and widget.stil_label.text() == first_text
    viewer.layers.clear()
    assert widget.result is None and widget.stil_label.text() == "" and widget.detail_label.text() == ""


def test_widget_does_not_score_into_a_model_folder(make_napari_viewer, scored):
    """As 'weakstil score' refuses an --out inside a model (train --overwrite replaces it whole), the
    widget refuses that output folder before scoring, and writes nothing there."""
    viewer = make_napari_viewer()
    viewer.open(scored["held"], plugin="napari-weakstil")
    widget = _dock(viewer)
    widget.model_edit.value = scored["model"]
    widget.out_edit.value = scored["model"] / "qc_scores"
    widget.weights_edit.setText("random")
    widget.score_button.click()
    assert "inside the model folder" in widget.status_label.text() and widget.worker is None
    assert not (scored["model"] / "qc_scores").exists()
