"""The dock widget follows napari's batches of layer removals (the viewer closing: ``layers.clear()``; the layer
list's delete button: ``remove_selected()``) with one refresh at the batch's end, not one per layer removed (helper
h48c's profile: 18 of the 26 s spent closing viewers went to the widget redrawing after each layer), and a single
change still at once. A real viewer under Xvfb, the conftest's scored results."""

from __future__ import annotations

from napari_weakstil._widget import TOGGLES, ScoringWidget
from napari_weakstil.result_layers import HEATMAP


def _two_results(make_napari_viewer, scored, monkeypatch):
    """A viewer with the widget docked and two results open (the second shown); the list ``refreshes`` grows at
    each refresh of the widget (each ends by setting the outlines' width)."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    assert isinstance(widget, ScoringWidget)
    viewer.open(sorted(scored["cv_tiles"].glob("*.h5"))[0], plugin="napari-weakstil")
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    refreshes: list = []
    keep = widget._keep_outline_width
    monkeypatch.setattr(widget, "_keep_outline_width", lambda event=None: (refreshes.append(event), keep(event)))
    return viewer, widget, refreshes


def _of(viewer, path) -> list:
    return [ly for ly in viewer.layers if ly.metadata.get("result_path") == str(path)]


def test_removing_the_selected_layers_refreshes_the_widget_once(make_napari_viewer, scored, monkeypatch):
    viewer, widget, refreshes = _two_results(make_napari_viewer, scored, monkeypatch)
    second = widget.result.path
    assert second == scored["score_h5"]
    # one layer closed: shown at once (its toggle goes with it)
    role = next(suffix for suffix in TOGGLES.values() if suffix != HEATMAP and widget.toggles[suffix].isEnabled())
    one = widget.result_layer(role, second)
    viewer.layers.remove(one)
    assert len(refreshes) == 1 and widget.result.path == second and not widget.toggles[role].isEnabled()
    # the second result's other layers selected and deleted: one refresh, and the first result is shown
    gone = _of(viewer, second)
    assert len(gone) >= 2
    viewer.layers.selection.clear()
    viewer.layers.selection.update(gone)
    viewer.layers.remove_selected()
    assert not _of(viewer, second)
    assert len(refreshes) == 2, f"{len(refreshes) - 1} refreshes for {len(gone)} layers removed at once"
    assert widget.result.path != second and widget.result.path.parent == scored["cv_tiles"]
    heat = widget.result_layer(HEATMAP, widget.result_path)
    assert heat is not None and heat.colorbar.visible and widget.toggles[HEATMAP].isChecked()
    assert widget.result.slide_id in widget.detail_label.text()


def test_clearing_the_layers_as_the_viewer_closes_refreshes_the_widget_once(make_napari_viewer, scored,
                                                                            monkeypatch):
    viewer, widget, refreshes = _two_results(make_napari_viewer, scored, monkeypatch)
    n = len(viewer.layers)
    assert n >= 4
    viewer.layers.clear()  # what viewer.close() does first
    assert len(refreshes) == 1, f"{len(refreshes)} refreshes for {n} layers removed at once"
    assert widget.result is None and widget.stil_label.text() == "" and widget.detail_label.text() == ""
    assert widget.slide_combo.count() == 0
    assert not any(box.isEnabled() for box in widget.toggles.values())
