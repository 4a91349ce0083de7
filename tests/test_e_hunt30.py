"""The napari plugin from a pathologist's chair (hunt 30e): a corrected bed saved in an earlier session is
said beside the scored number when its slide is opened again (it was mentioned nowhere until Edit bed, and
even then the number shown stayed the detector's), and an edited bed with changes not saved is not thrown
away silently (Edit bed pressed again, or its layer closed). Headless under Xvfb (pytest-xvfb), on the
plugin's scored synthetic slide."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

import napari_plugin_fixtures  # noqa: E402  (after the napari check)

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below
_dock = napari_plugin_fixtures.dock


_result = napari_plugin_fixtures.copied_result


def _editing(scored, tmp_path: Path, make_napari_viewer):
    """A copy of the scored result opened in a viewer with the widget docked, its bed being edited."""
    viewer, widget = napari_plugin_fixtures.opened_result(scored, tmp_path, make_napari_viewer)
    editor = widget.bed_editor
    return viewer, widget, editor, editor.edit_bed()


def _tile_ring(tiles, i: int) -> np.ndarray:
    """Level-0 [x, y] outline of tile ``i`` (the whole tile: it counts as in the bed)."""
    g = tiles.geometry
    x, y = np.asarray(g.coords, float)[i]
    s = float(g.tile_size_level0)
    return np.array([[x, y], [x + s, y], [x + s, y + s], [x, y + s]])


def _opposite_call_bed(tiles):
    """A one-tile bed whose sTIL% falls on the other side of the threshold from the scored number (the most
    unlike tile when none does), and its rescore."""
    scored_high = tiles.original_stil >= tiles.rescore([_tile_ring(tiles, 0)]).threshold
    order = np.argsort(np.asarray(tiles.tile_scores))
    for i in (order if scored_high else order[::-1])[:10]:
        new = tiles.rescore([_tile_ring(tiles, int(i))])
        if new.found and new.stil_high != scored_high:
            return [_tile_ring(tiles, int(i))], new, True
    i = int(order[0] if scored_high else order[-1])
    return [_tile_ring(tiles, i)], tiles.rescore([_tile_ring(tiles, i)]), False


def test_a_saved_corrected_bed_is_said_beside_the_scored_number_when_the_slide_is_opened_again(
        make_napari_viewer, scored, tmp_path):
    """A bed corrected and saved in an earlier session (beds/<slide_id>.geojson, what `score --annotations beds`
    reads) was mentioned nowhere when the slide was opened again: the widget showed the detector's number and
    call alone (on a demo slide 33.0 % high beside a saved bed of 29.1 % low), and Edit bed, which loads the saved
    bed, still showed the detector's number until Rescore. The detail line now gives the saved bed's sTIL% and
    call, and Edit bed shows the number of the bed it puts on the canvas."""
    from weakstil.bed_edit import ScoredTiles, write_bed_geojson
    from weakstil.metrics import stil_text

    path = _result(scored, tmp_path / "scores")
    tiles = ScoredTiles.read(path)
    rings, want, flipped = _opposite_call_bed(tiles)
    g = tiles.geometry
    saved = write_bed_geojson(tmp_path / "scores" / "beds", rings, tiles.slide_id, slide_size=(g.width, g.height))

    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    shown = widget.stil_label.text()
    assert stil_text(tiles.original_stil, want.threshold) in shown  # the number is the scored file's, as before
    detail = widget.detail_label.text()
    assert str(saved) in detail and want.label() in detail, detail  # old: no word of the saved bed
    assert ("another call" in detail) == flipped, detail
    assert "score --annotations" in detail

    widget.bed_editor.edit_bed()  # the saved bed on the canvas: its number shown, not the detector's
    assert want.label() in widget.stil_label.text(), widget.stil_label.text()  # old: the scored number
    assert widget.bed_editor.last_rescore.n_bed_tiles == want.n_bed_tiles == 1
    assert str(saved) in widget.status_label.text()

    (tmp_path / "scores" / "beds" / saved.name).write_text("{not json")  # a broken bed: one line, no traceback
    viewer2 = make_napari_viewer()
    widget2 = _dock(viewer2)
    viewer2.open(path, plugin="napari-weakstil")
    assert "cannot be read" in widget2.detail_label.text() and "\n" in widget2.detail_label.text()


def test_edit_bed_pressed_again_asks_before_throwing_unsaved_changes_away(make_napari_viewer, scored, tmp_path):
    """Edit bed pressed again while editing went back to the scored bed at once: every shape drawn and not saved
    was gone (4 shapes -> 1 on a demo slide), with no word of it. It now says the changes are not saved, keeps
    them, and a second press throws them away; a bed saved (or never changed) goes back at the first press."""
    viewer, widget, editor, layer = _editing(scored, tmp_path, make_napari_viewer)
    n, before = len(layer.data), len(viewer.layers)
    layer.add_polygons([np.array([[10, 10], [10, 200], [200, 200]], float)])
    assert editor.edit_bed() is None  # old: a new layer of the scored bed, the drawn shape gone
    assert len(viewer.layers) == before and len(editor.layer().data) == n + 1  # kept, with its shape
    assert "not saved" in widget.status_label.text() and "Press Edit bed again" in widget.status_label.text()
    again = editor.edit_bed()  # pressed again: thrown away, as asked
    assert again is not None and len(again.data) == n and len(viewer.layers) == before
    assert "not saved" not in widget.status_label.text()

    again.add_polygons([np.array([[10, 10], [10, 200], [200, 200]], float)])
    editor.folder_edit.value = tmp_path / "beds"
    assert editor.save_bed() is not None
    third = editor.edit_bed()  # saved: nothing to lose, back to the scored bed at once
    assert third is not None and len(third.data) == n


def test_closing_an_edited_bed_with_changes_not_saved_says_they_are_gone(make_napari_viewer, scored, tmp_path):
    """Closing the edited bed's layer threw its unsaved shapes away while the line said only "The edited bed was
    closed". Now the status line says its changes were not saved and are gone; a layer closed unchanged or saved
    is closed without that warning."""
    viewer, widget, editor, layer = _editing(scored, tmp_path, make_napari_viewer)
    viewer.layers.remove(layer)  # unchanged: nothing lost
    assert "not saved" not in widget.status_label.text()
    layer = editor.edit_bed()
    layer.add_polygons([np.array([[10, 10], [10, 200], [200, 200]], float)])
    editor.rescore()
    viewer.layers.remove(layer)
    status = widget.status_label.text()
    assert "changes not saved" in status and layer.name in status, status  # old: no word of the lost shapes


def test_a_bed_of_thousands_of_islands_and_holes_is_rasterized_in_seconds_not_minutes():
    """Rescore (and `score --annotations`) of a big slide's bed with thousands of islands and holes ran for minutes:
    every ring was filled over the whole tissue-mask grid (a 100,000-tile slide's detector bed of 3,641 islands and
    3,163 holes: Rescore over 5 minutes, the docs say under 1 s; 2 s now). Each ring is now filled within its box:
    the same pixels, in a fraction of the time."""
    import time

    from shapely.geometry import MultiPolygon, Polygon, box

    from weakstil.annotations import rasterize

    holes = [[(x, y), (x + 6, y), (x + 6, y + 6), (x, y + 6)] for x in range(20, 3900, 40) for y in range(20, 1000, 40)]
    body = Polygon([(0, 0), (4000, 0), (4000, 1040), (0, 1040)], holes)  # one polygon, 2,425 holes
    islands = [box(x, y, x + 13.3, y + 9.7) for x in range(3, 3990, 45) for y in range(1100, 3990, 45)]  # 5,785
    shape = MultiPolygon([body, *islands])
    t0 = time.perf_counter()
    mask = rasterize(shape, 4000, 4000, slide_mpp=1.0, mask_mpp=1.0)
    seconds = time.perf_counter() - t0
    assert seconds < 12, seconds  # old: minutes (the whole 4000 x 4000 grid filled for every ring); now about 1 s
    assert mask.shape == (4000, 4000)
    assert mask[:1040].sum() == 4000 * 1040 - len(holes) * 36  # holes: 6 x 6 pixel centres each
    assert mask[1100:1110, 3:16].all() and not mask[1110:1145, 3:48].any()  # an island: 13 x 10 centres, then a gap
    assert mask[1100:].sum() == len(islands) * 13 * 10


def test_a_bed_of_many_islands_is_drawn_in_order_in_seconds_not_minutes():
    """The edited bed's rings were joined one by one (each union copying all before it): 3,200 islands and 800
    holes took 165 s before a single tile was flagged. Runs of beds (or holes) drawn one after another are now
    joined at once, with the same area, and the order still counts (a bed drawn inside an earlier hole is bed)."""
    import time

    from weakstil.bed_edit import ordered_bed_shape

    def square(x, y, side):
        return np.array([[x, y], [x + side, y], [x + side, y + side], [x, y + side]], float)

    beds = [square(x, y, 20) for x in range(0, 4000, 50) for y in range(0, 1000, 50)]  # 1,600 islands
    holes = [square(x + 5, y + 5, 5) for x in range(0, 4000, 100) for y in range(0, 1000, 100)]  # 400 holes
    again = [square(x + 6, y + 6, 2) for x in range(0, 4000, 200) for y in range(0, 1000, 200)]  # bed in 100 holes
    t0 = time.perf_counter()
    shape = ordered_bed_shape(beds + holes + again, ["bed"] * len(beds) + ["hole"] * len(holes) + ["bed"] * len(again))
    seconds = time.perf_counter() - t0
    assert seconds < 10, seconds  # old: about 40 s
    assert shape.area == pytest.approx(len(beds) * 400 - len(holes) * 25 + len(again) * 4)


def test_a_result_whose_mask_lost_its_resolution_is_refused_in_one_line(scored, tmp_path):
    """A result file whose tissue mask has no 'mpp' attribute (edited by hand, or by another tool) opened in napari
    with h5py's KeyError ("Unable to synchronously open attribute (can't locate attribute: 'mpp')") and its
    traceback; it is now refused in one line naming the file, the dataset and the fix."""
    import h5py

    from napari_weakstil.result_layers import read_result
    from weakstil.errors import WeakSTILError

    path = _result(scored, tmp_path)
    with h5py.File(path, "r+") as f:
        del f["tissue_mask"].attrs["mpp"]
    with pytest.raises(WeakSTILError) as caught:  # old: KeyError
        read_result(path)
    line = caught.value.one_line()
    assert str(path) in line and "'tissue_mask'" in line and "mpp" in line and "Fix:" in line and "\n" not in line
