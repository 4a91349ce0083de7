"""napari's long bed steps off the GUI thread (hunt 32e): on a 100,000-tile slide's fragmented bed Edit bed, Rescore
and Save bed took 14-20 s each on the GUI thread with no word (the viewer frozen: a hang to a pathologist), and
closing the edited bed after Save bed took 47-142 s (the saved file read and its rings put together again, ring by
ring, for the line beneath the number). The buttons now run the work in a worker thread (busy bar, seconds, buttons
disabled, errors said in the widget), and Save bed keeps what the file gives. Headless under Xvfb (pytest-xvfb), on
the plugin's scored synthetic slide; ``benchmarks/napari_big_bed.py`` times the same on a 100,000-tile slide."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

import napari_plugin_fixtures  # noqa: E402  (after the napari check)

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below
_opened = napari_plugin_fixtures.opened_result


def _press(qtbot, editor, button) -> None:
    """A bed box button pressed: the step runs in a worker thread, the box busy until its result is applied."""
    button.click()
    status = editor.owner.status_label.text()
    assert status.endswith("…"), status  # the step said while it runs (old: done at once, on the GUI thread)
    assert editor.tasks.busy
    assert not any(b.isEnabled() for b in (editor.edit_button, editor.rescore_button, editor.save_button))
    assert editor.tasks.bar.isVisibleTo(editor)
    qtbot.waitUntil(lambda: not editor.tasks.busy, timeout=60_000)
    assert all(b.isEnabled() for b in (editor.edit_button, editor.rescore_button, editor.save_button))
    assert not editor.tasks.bar.isVisibleTo(editor)


def _left_half_hole(tiles) -> np.ndarray:
    """A hole (level-0 ``[y, x]``) over the left half of the scored bed's tiles."""
    coords, flags, s = tiles.geometry.coords, tiles.original_flags, tiles.geometry.tile_size_level0
    bed = coords[flags]
    mid = float(np.unique(bed[:, 0])[len(np.unique(bed[:, 0])) // 2])
    top, bottom, left = bed[:, 1].min() - s, bed[:, 1].max() + 2 * s, bed[:, 0].min() - s
    return np.array([[top, left], [top, mid], [bottom, mid], [bottom, left]], float)


def test_bed_buttons_run_off_the_gui_thread_and_rescore_gives_the_cli_number(make_napari_viewer, scored, tmp_path,
                                                                            qtbot):
    """Edit bed, Rescore and Save bed pressed: each runs in a worker thread, the buttons disabled and a busy bar
    shown meanwhile (old: the GUI thread did the work, the window frozen, no word), and the result is applied in the
    GUI thread: the edited bed's sTIL% is the one `weakstil score --annotations` gives its saved file."""
    from weakstil.score import ScoreOptions, score_batch

    viewer, widget = _opened(scored, tmp_path, make_napari_viewer)
    editor = widget.bed_editor
    tiles = editor.scored_tiles()
    _press(qtbot, editor, editor.edit_button)
    layer = editor.layer()
    assert layer is not None and viewer.layers.selection.active is layer and len(layer.data) > 0
    assert "starts from the scored bed" in widget.status_label.text()

    _press(qtbot, editor, editor.rescore_button)  # the unedited bed: the scored number, exactly
    assert editor.last_rescore.stil == pytest.approx(tiles.original_stil, abs=1e-4)  # (stored as float32)
    assert np.array_equal(editor.last_rescore.tile_flags, tiles.original_flags)

    editor.holes_box.setChecked(True)
    layer.add_polygons([_left_half_hole(tiles)])
    _press(qtbot, editor, editor.rescore_button)
    new = editor.last_rescore
    assert 0 < new.n_bed_tiles < int(tiles.original_flags.sum())
    assert f"{new.label()} · edited bed" in widget.stil_label.text(), widget.stil_label.text()
    assert "Rescored" in widget.status_label.text()

    _press(qtbot, editor, editor.save_button)
    beds = tmp_path / "scores" / "beds"
    assert f"Bed saved to {beds / (tiles.slide_id + '.geojson')}" in widget.status_label.text()
    rows = score_batch([scored["held"]], ScoreOptions(model=scored["model"], out=tmp_path / "cli", weights="random",
                                                      device="cpu", workers=1, features=scored["scores"] / "features",
                                                      annotations=beds), progress=False)
    assert rows[0]["status"] == "ok", rows[0]
    assert float(rows[0]["stil"]) == pytest.approx(new.stil, abs=1e-3)


def test_an_error_in_a_bed_step_is_said_in_the_widget_not_lost_in_the_thread(make_napari_viewer, scored, tmp_path,
                                                                            qtbot, monkeypatch):
    """A step that fails in its worker thread says why in the widget's status line, in red, and frees the buttons:
    a bed folder that cannot be made (a file there) names the folder and the fix; an unexpected error names the step
    and the error (old: raised in the GUI thread's slot, Qt's event loop its only witness)."""
    from weakstil.bed_edit import ScoredTiles

    viewer, widget = _opened(scored, tmp_path, make_napari_viewer)
    editor = widget.bed_editor
    assert editor.edit_bed() is not None  # called from Python: at once, as before
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the bed folder should be")
    editor.folder_edit.value = str(blocker / "beds")
    _press(qtbot, editor, editor.save_button)
    status = widget.status_label.text()
    assert "cannot write the bed" in status and "choose a writable bed folder" in status, status
    assert "ff6b6b" in widget.status_label.styleSheet()
    assert not (blocker / "beds").exists()

    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug in the rasteriser")

    monkeypatch.setattr(ScoredTiles, "rescore_parts", broken)
    _press(qtbot, editor, editor.rescore_button)
    status = widget.status_label.text()
    assert "Rescoring" in status and "failed (RuntimeError: a bug in the rasteriser)" in status, status
    assert editor.last_rescore is None


def test_closing_the_saved_edited_bed_does_not_read_and_rescore_its_file_again(make_napari_viewer, scored, tmp_path,
                                                                             monkeypatch, qtbot):
    """Closing the edited bed's layer after Save bed took 47-142 s on a 100,000-tile slide's fragmented bed: the
    line beneath the number (what the saved bed gives) read the file just written and put its rings together again
    ring by ring. Save bed now keeps what the file gives, so closing reads nothing, and the line is the file's as
    `weakstil score --annotations` reads it."""
    import weakstil.annotations
    import weakstil.bed_read
    from weakstil.bed_edit import ScoredTiles

    viewer, widget = _opened(scored, tmp_path, make_napari_viewer)
    editor = widget.bed_editor
    tiles = editor.scored_tiles()
    layer = editor.edit_bed()
    editor.holes_box.setChecked(True)
    layer.add_polygons([_left_half_hole(tiles)])
    saved = editor.save_bed()  # not rescored first: Save bed scores the file's shape itself
    assert saved is not None and saved.is_file()

    reads: list[str] = []
    import napari_weakstil.bed_saved

    for module, name in ((weakstil.annotations, "load_polygons"), (weakstil.bed_read, "read_bed_parts"),
                         (napari_weakstil.bed_saved, "read_saved")):  # the widget's reader since hunt 41f
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _f=original, _n=name, **k: reads.append(_n) or _f(*a, **k))
    viewer.layers.remove(layer)
    assert reads == [], reads  # old: the file read again (and rescored ring by ring) on the GUI thread
    monkeypatch.undo()

    want = ScoredTiles.read(editor.scored_tiles().path).rescore_shape(weakstil.annotations.load_polygons(
        saved, tiles.geometry), clip=True)  # the file as 'score --annotations' reads it
    assert 0 < want.n_bed_tiles < int(tiles.original_flags.sum())
    detail = widget.detail_label.text()
    assert f"The bed saved in {saved} gives {want.label()} over {want.n_bed_tiles:,} tiles" in detail, detail

    _press(qtbot, editor, editor.edit_button)  # continues the saved bed, its number worked out in the thread too
    assert f"{want.label()} · edited bed" in widget.stil_label.text(), widget.stil_label.text()
    assert editor.last_rescore.n_bed_tiles == want.n_bed_tiles and str(saved) in widget.status_label.text()


def test_a_bed_file_of_islands_that_do_not_overlap_is_read_without_a_union_of_them_all(tmp_path, monkeypatch):
    """Reading a big saved bed (1,565 islands, what Edit bed continues, the saved bed's line and `score
    --annotations` read) spent 26 s in a union of polygons that were disjoint already (Save bed writes one valid
    MultiPolygon): they are now checked to be disjoint (2 s) and kept as they are, the very same area; polygons
    that overlap are still merged."""
    import json

    import shapely
    import shapely.ops
    from shapely.geometry import MultiPolygon, box, mapping

    from weakstil.annotations import load_polygons, write_geojson

    islands = [box(x, y, x + 60, y + 40) for x in range(0, 3000, 100) for y in range(0, 2000, 100)]
    islands[7] = islands[7].difference(box(islands[7].bounds[0] + 10, islands[7].bounds[1] + 10,
                                           islands[7].bounds[0] + 30, islands[7].bounds[1] + 30))  # one with a hole
    path = tmp_path / "S1.geojson"
    write_geojson(MultiPolygon(islands), path, written_by="weakstil bed editor")
    unions: list[int] = []
    original = shapely.ops.unary_union
    monkeypatch.setattr(shapely.ops, "unary_union", lambda *a, **k: unions.append(1) or original(*a, **k))
    read = load_polygons(path)
    assert unions == []  # old: one union of all 600 islands
    assert len(read.geoms) == len(islands) and sum(len(g.interiors) for g in read.geoms) == 1
    assert read.symmetric_difference(shapely.union_all(islands)).area == 0.0

    overlapping = [box(0, 0, 100, 100), box(50, 0, 300, 100)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(g), "properties": {"objectType": "annotation"}} for g in overlapping]}))
    merged = load_polygons(path)
    assert unions and len(merged.geoms) == 1 and merged.area == pytest.approx(300 * 100)


def test_a_saved_bed_is_read_back_level_by_level_in_few_runs_and_the_same_shape():
    """A saved bed continued in napari became rings polygon by polygon (outline, its holes, the next outline, ...):
    a big slide's 1,565 islands made 78 alternating runs, each a union or difference of the whole bed, so its Rescore
    and Save bed took 115 s. Rings now come level by level (outlines, their holes, islands in those holes, theirs):
    two runs a level, the very same shape."""
    from itertools import groupby

    from shapely.geometry import MultiPolygon, box

    from weakstil.bed_edit import ordered_bed_shape
    from weakstil.bed_read import shape_parts

    polygons = []
    for x in range(0, 4000, 200):  # 20 islands, each with a hole, and an island (with its own hole) in every hole
        outer = box(x, 0, x + 150, 150).difference(box(x + 20, 20, x + 130, 130))
        inner = box(x + 40, 40, x + 110, 110).difference(box(x + 60, 60, x + 90, 90))
        polygons += [outer, inner]
    shape = MultiPolygon(polygons)
    assert shape.is_valid
    rings, parts = shape_parts(shape)
    assert len(rings) == 80
    runs = [k for k, _ in groupby(parts)]
    assert runs == ["bed", "hole", "bed", "hole"], runs  # old: 40 alternating runs of bed and hole
    assert ordered_bed_shape(rings, parts).symmetric_difference(shape).area == 0.0
