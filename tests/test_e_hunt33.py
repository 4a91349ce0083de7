"""Opening a big result in napari without freezing the viewer (hunt 33e): on a 100,000-tile slide's fragmented bed
File > Open traced the scored bed's outline (5.8 s) and napari built its 5,324 paths' triangles (2.1 s) on the GUI
thread, and the line on a saved bed (read and rescored, about 5 s) was worked out there too, so the viewer stood
frozen 8-31 s. Both now run in worker threads; the outline layer is added, on the same pixels, when ready. Headless
under Xvfb (pytest-xvfb) on the plugin's scored synthetic slide, with the size limits set to 0 so that its small bed
takes the big bed's path; ``benchmarks/napari_big_bed.py`` times the same on a 100,000-tile slide."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("napari")

import napari_plugin_fixtures  # noqa: E402  (after the napari check)

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below


def _threads_of(monkeypatch, module, name: str) -> list[bool]:
    """Whether each call of ``module.name`` ran on the main (GUI) thread."""
    calls: list[bool] = []
    original = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, _f=original, **k: calls.append(
        threading.current_thread() is threading.main_thread()) or _f(*a, **k))
    return calls


def _big(monkeypatch) -> None:
    """The size limits at 0: the small synthetic bed takes the big bed's path (old code: there is none)."""
    from napari_weakstil import bed_saved

    try:
        from napari_weakstil import outline_later
    except ImportError:  # before hunt 33e: every outline traced inside File > Open
        outline_later = None
    if outline_later is not None:
        monkeypatch.setattr(outline_later, "BACKGROUND_PIXELS", 0)
        monkeypatch.setattr(outline_later, "BACKGROUND_TILES", 0)
    monkeypatch.setattr(bed_saved, "BACKGROUND_TILES", 0, raising=False)


def _role(layers, role: str) -> list:
    return [ly for ly in getattr(layers, "layers", layers) if ly.metadata.get("role") == role]


def test_a_big_beds_outline_is_traced_off_the_gui_thread_and_lands_on_the_same_pixels(make_napari_viewer, scored,
                                                                                    tmp_path, monkeypatch, qtbot):
    """The outline is traced in a worker thread (old: on the GUI thread, inside File > Open), the heatmap and the
    number are shown at once, and the outline layer arrives above the heatmap with the very paths, colour and width
    the synchronous reader gives; the widget's outline toggle follows it."""
    import napari_weakstil.result_layers as rl

    _big(monkeypatch)
    path = napari_plugin_fixtures.copied_result(scored, tmp_path / "scores")
    viewer = make_napari_viewer()
    widget = napari_plugin_fixtures.dock(viewer)
    traced = _threads_of(monkeypatch, rl, "mask_outline_paths")
    viewer.open(path, plugin="napari-weakstil")
    assert _role(viewer, rl.HEATMAP) and "%" in widget.stil_label.text()  # the number at once
    qtbot.waitUntil(lambda: bool(_role(viewer, rl.TUMORBED)), timeout=30_000)
    assert traced == [False], traced  # traced once, in a worker thread (old: [True])
    monkeypatch.undo()

    (bed,) = _role(viewer, rl.TUMORBED)
    want_data, want_kw, _ = next(ly for ly in rl.result_layers(rl.read_result(path), float(bed.metadata["slide_mpp"]))
                                 if ly[1]["metadata"]["role"] == rl.TUMORBED)  # what File > Open gave at once
    assert len(bed.data) == len(want_data) > 0
    assert all(np.allclose(a, b) for a, b in zip(bed.data, want_data))
    assert bed.name == want_kw["name"] and bed.metadata["result_path"] == str(path)
    assert [str(u) for u in bed.units] == ["micrometer", "micrometer"]
    assert np.allclose(bed.edge_color[0], [0.0, 229 / 255, 1.0, 1.0])  # the scored bed's cyan
    names = [ly.name for ly in viewer.layers]
    assert names.index(bed.name) > names.index(_role(viewer, rl.HEATMAP)[0].name)  # drawn over the heatmap
    assert widget.toggles[rl.TUMORBED].isEnabled() and widget.toggles[rl.TUMORBED].isChecked()


def test_a_result_closed_before_its_outline_is_ready_gets_none_and_one_opened_twice_gets_two(
        make_napari_viewer, scored, tmp_path, monkeypatch, qtbot):
    """Closed while its outline is being traced: no outline appears afterwards over nothing, and nothing raises;
    the same file opened twice: each opening gets its own outline, just above its own heatmap."""
    from napari_weakstil.result_layers import HEATMAP, TUMORBED

    _big(monkeypatch)
    path = napari_plugin_fixtures.copied_result(scored, tmp_path / "scores")
    viewer = make_napari_viewer()
    widget = napari_plugin_fixtures.dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    assert not _role(viewer, TUMORBED)  # not traced inside File > Open (old: it was, the viewer frozen meanwhile)
    from napari_weakstil import outline_later

    assert len(outline_later.pending) == 1
    viewer.layers.clear()  # closed before the event loop ran: the outline is not even started
    outline_later.wait(30)
    assert len(viewer.layers) == 0 and not outline_later.pending

    viewer.open(path, plugin="napari-weakstil")
    qtbot.waitUntil(lambda: outline_later.pending[0].worker is not None, timeout=10_000)  # being traced now
    viewer.layers.clear()
    outline_later.wait(30)
    assert len(viewer.layers) == 0 and not outline_later.pending

    viewer.open(path, plugin="napari-weakstil")
    viewer.open(path, plugin="napari-weakstil")  # the same file again
    chosen = viewer.layers.selection.active
    outline_later.wait(30)
    heats, beds = _role(viewer, HEATMAP), _role(viewer, TUMORBED)
    assert len(heats) == len(beds) == 2
    layers = list(viewer.layers)
    for heat in heats:  # each opening's outline just above its own result's layers
        mine = [i for i, ly in enumerate(layers) if ly.metadata.get("result") is heat.metadata["result"]]
        assert layers[mine[-1] + 1].metadata.get("role") == TUMORBED, [ly.name for ly in layers]
    assert viewer.layers.selection.active is chosen is not None  # a late outline takes no selection
    assert widget.toggles[TUMORBED].isEnabled() and widget.toggles[TUMORBED].isChecked()


def test_the_saved_beds_line_is_worked_out_off_the_gui_thread_at_open(make_napari_viewer, scored, tmp_path,
                                                                      monkeypatch, qtbot):
    """A result whose slide has a saved bed, opened again: the line says the bed is being worked out, the file is read
    and rescored in a worker thread (old: on the GUI thread, inside File > Open), and the line then gives what
    `weakstil score --annotations` gives the file."""
    import weakstil.annotations
    from napari_weakstil import bed_saved
    from weakstil.bed_edit import ScoredTiles

    viewer, widget = napari_plugin_fixtures.opened_result(scored, tmp_path, make_napari_viewer)
    assert _role(viewer, "tumour bed")  # a small result's outline: at once, inside File > Open, as before
    editor = widget.bed_editor
    editor.edit_bed()
    saved = editor.save_bed()
    assert saved is not None and saved.is_file()
    viewer.layers.clear()

    _big(monkeypatch)
    read = _threads_of(monkeypatch, weakstil.annotations, "load_polygons")
    lines: list[str] = []  # what the widget was told at each ask (the label may be updated before open returns)
    monkeypatch.setattr(bed_saved, "saved_bed_line", lambda *a, _f=bed_saved.saved_bed_line: lines.append(_f(*a))
                        or lines[-1])
    viewer.open(tmp_path / "scores" / scored["score_h5"].name, plugin="napari-weakstil")  # opened again
    assert lines and lines[0] == f"Working out what the bed saved in {saved} gives…", lines
    qtbot.waitUntil(lambda: "gives" in widget.detail_label.text() and "Working out" not in
                    widget.detail_label.text(), timeout=30_000)
    assert read == [False], read  # read once, in a worker thread (old: [True])
    monkeypatch.undo()
    tiles = ScoredTiles.read(widget.result.path)
    want = tiles.rescore_shape(weakstil.annotations.load_polygons(saved, tiles.geometry), clip=True)
    detail = widget.detail_label.text()
    assert f"The bed saved in {saved} gives {want.label()} over {want.n_bed_tiles:,} tiles" in detail, detail
