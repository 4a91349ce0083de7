"""A big slide scored with the widget's *Score slide*: its bed outline off the GUI thread, as on File > Open (hunt 33k).

Hunt 33e moved a big result's outline (a 100,000-tile slide's fragmented bed: 5.8 s to trace, 2.1 s for napari to
build its 5,324 paths, viewer frozen meanwhile) off the GUI thread for File > Open only: the result of *Score slide*
went through ``result_layers`` whole on the GUI thread, so the viewer froze those seconds once scoring had finished.
Now it takes ``outline_later``'s path too: the heatmap and the number at once, the outline traced in a worker thread
and added just above the result's layers, none added if the result is closed first. Under Xvfb (pytest-xvfb), the
plugin's scored synthetic slide scored again into a folder that holds its result already (the run returns at once),
with the size limits at 0 so that its small bed takes the big bed's path."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

pytest.importorskip("napari")

import napari_plugin_fixtures  # noqa: E402  (after the napari check)

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below


def _big(monkeypatch) -> None:
    from napari_weakstil import outline_later

    monkeypatch.setattr(outline_later, "BACKGROUND_PIXELS", 0)
    monkeypatch.setattr(outline_later, "BACKGROUND_TILES", 0)


def _role(viewer, role: str) -> list:
    return [ly for ly in viewer.layers if ly.metadata.get("role") == role]


def _scored_in_widget(make_napari_viewer, qtbot, scored, tmp_path):
    """(viewer, widget) once Score slide's result has been shown (the slide already scored in the Output folder)."""
    out = tmp_path / "scores"
    shutil.copytree(scored["scores"], out)  # already scored there: the run returns at once
    viewer = make_napari_viewer()
    viewer.open(scored["held"], plugin="napari-weakstil")
    widget = napari_plugin_fixtures.dock(viewer)
    widget.model_edit.value = scored["model"]
    widget.out_edit.value = out
    widget.weights_edit.setText("random")  # the fixture's encoder: seeded random small-cnn
    widget.score_button.click()
    qtbot.waitUntil(lambda: widget.last_row is not None, timeout=60_000)  # set in the GUI thread, just before shown
    assert widget.last_row["status"] == "ok", widget.last_row
    return viewer, widget


def test_score_slides_big_result_gets_its_outline_from_a_worker_thread_above_its_layers(
        make_napari_viewer, qtbot, scored, tmp_path, monkeypatch):
    """The heatmap and the number are shown at once, the outline is traced in a worker thread (old: on the GUI
    thread, before the result showed) and lands just above the result's layers with the paths File > Open gives."""
    import napari_weakstil.result_layers as rl
    from napari_weakstil import outline_later

    _big(monkeypatch)
    traced: list[bool] = []
    original = rl.mask_outline_paths
    monkeypatch.setattr(rl, "mask_outline_paths", lambda *a, **k: traced.append(
        threading.current_thread() is threading.main_thread()) or original(*a, **k))
    viewer, widget = _scored_in_widget(make_napari_viewer, qtbot, scored, tmp_path)
    (heat,) = _role(viewer, rl.HEATMAP)
    assert "%" in widget.stil_label.text()
    assert not _role(viewer, rl.TUMORBED), traced  # not built with the rest (old: it was, traced == [True])
    outline_later.wait(30)
    assert traced == [False], traced  # traced once, in a worker thread
    monkeypatch.undo()

    (bed,) = _role(viewer, rl.TUMORBED)
    layers = list(viewer.layers)
    mine = [i for i, ly in enumerate(layers) if ly.metadata.get("result") is heat.metadata["result"]]
    assert layers[mine[-1] + 1] is bed, [ly.name for ly in layers]  # just above the result's layers
    want_data, want_kw, _ = next(ly for ly in rl.result_layers(rl.read_result(heat.metadata["result"].path),
                                                               float(heat.metadata["slide_mpp"]))
                                 if ly[1]["metadata"]["role"] == rl.TUMORBED)  # what the GUI thread built before
    assert len(bed.data) == len(want_data) > 0
    assert all(np.allclose(a, b) for a, b in zip(bed.data, want_data))
    assert bed.name == want_kw["name"] and np.allclose(bed.edge_color[0], [0.0, 229 / 255, 1.0, 1.0])
    assert widget.toggles[rl.TUMORBED].isEnabled() and widget.toggles[rl.TUMORBED].isChecked()


def test_score_slides_big_result_closed_before_its_outline_is_ready_gets_none(make_napari_viewer, qtbot, scored,
                                                                               tmp_path, monkeypatch):
    """The result's layers removed before the outline is ready: no outline appears over the slide left open."""
    from napari_weakstil import outline_later
    from napari_weakstil.result_layers import TUMORBED

    _big(monkeypatch)
    viewer, _ = _scored_in_widget(make_napari_viewer, qtbot, scored, tmp_path)
    assert not _role(viewer, TUMORBED) and len(outline_later.pending) == 1  # old: built at once, nothing pending
    for ly in [ly for ly in viewer.layers if ly.metadata.get("weakstil_kind") == "result"]:
        viewer.layers.remove(ly)
    outline_later.wait(30)
    assert not outline_later.pending and [ly.metadata.get("weakstil_kind") for ly in viewer.layers] == ["slide"]
