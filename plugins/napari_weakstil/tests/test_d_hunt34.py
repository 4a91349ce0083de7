"""An outside tester's session in napari (hunt 34): what still misbehaved.

- A slide whose file records no µm/px, scored with Scan µm/px left at "from the file": the status line gave the
  command line's fix, "pass the scan resolution with --slide-mpp ...; in a batch, in an mpp column of a --slides
  CSV" (the widget has neither); now it names the widget's field, "set Scan µm/px (--slide-mpp) to the scan
  resolution", with no --slides CSV.
- Rescore pressed for a result that was no longer shown when it ended (another result opened meanwhile, or its
  layers closed): nothing said its end, so the status line kept "Rescoring S's edited bed (N tiles)… 1 s" (its
  running seconds) for good, read as a step hung; now it says the bed was rescored and how to see its number.
- A result that records no threshold (older files): Rescore's number read "sTIL 46.5 % · high (the default
  threshold, the file records none 30 %)"; now "(threshold 30 %: the default threshold, the file records none)".
- A bed saved by Save bed, or the tile GeoJSON of 'weakstil score', dropped on the viewer: napari's "No compatible
  readers are available"; now one line naming the file and what to open instead (another program's GeoJSON is
  still left to other plugins).
- A result whose slide was moved or renamed: the warning said "not found (at the path the result records, nor
  beside it)", naming neither that path nor a fix; now it names the path and says to open the slide first, then the
  result (which then goes over that scan, found by its content).
"""

from __future__ import annotations

import shutil

import h5py

from napari_weakstil.result_layers import HEATMAP

WAIT_MS = 120_000


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    return widget


def test_a_slide_without_mpp_is_told_to_set_scan_mpp_not_the_cli_options(make_napari_viewer, qtbot, scored,
                                                                          tmp_path):
    import tifffile

    with tifffile.TiffFile(scored["held"]) as tif:
        rgb = tif.pages[0].asarray()
    no_mpp = tmp_path / "no_mpp.tiff"
    tifffile.imwrite(no_mpp, rgb, tile=(256, 256), photometric="rgb", compression="zlib")
    viewer = make_napari_viewer()
    viewer.open(no_mpp, plugin="napari-weakstil")
    widget = _dock(viewer)
    widget.model_edit.value = scored["model"]
    widget.out_edit.value = tmp_path / "scores"
    widget.weights_edit.setText("random")
    widget.score_button.click()
    qtbot.waitUntil(widget.score_button.isEnabled, timeout=WAIT_MS)
    status = widget.status_label.text()
    assert "no_mpp.tiff" in status and "microns-per-pixel" in status and "\n" not in status
    # old: "Fix: pass the scan resolution with --slide-mpp (...); in a batch, in an mpp column of a --slides CSV"
    assert "set Scan µm/px (--slide-mpp) to the scan resolution" in status, status
    assert "--slides" not in status and "pass the scan" not in status


def test_a_rescore_that_ends_on_a_result_not_shown_does_not_leave_its_line_running(make_napari_viewer, scored_copy,
                                                                                    tmp_path, monkeypatch):
    import threading

    from napari_weakstil import bed_editor

    # a big slide's Rescore (seconds): the step is held until the other result is shown and a second has gone by
    release, rescore_work = threading.Event(), bed_editor._rescore_work

    def held(*args):
        assert release.wait(30)
        return rescore_work(*args)

    monkeypatch.setattr(bed_editor, "_rescore_work", held)
    a = scored_copy()
    b = tmp_path / "other" / a.name
    b.parent.mkdir()
    shutil.copy(a, b)
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(a, plugin="napari-weakstil")
    editor = widget.bed_editor
    assert editor.edit_bed() is not None
    editor.rescore_button.click()  # in a worker thread; its end is heard once the GUI thread runs events
    viewer.open(b, plugin="napari-weakstil")  # another result opened meanwhile: it is shown
    assert widget.result_path == str(b)
    editor.tasks._tick()  # a second went by: the running line, with its seconds, over the other result's
    assert widget.status_label.text().startswith("Rescoring")
    release.set()
    editor.tasks.wait()
    status = widget.status_label.text()
    # old: "Rescoring <slide>'s edited bed (N tiles)… 0 s", for good
    assert not status.startswith("Rescoring"), status
    assert status.startswith("Rescored") and f"{a.name} is not shown" in status, status
    assert widget.result_path == str(b)  # the other result stays shown, with its own number
    # the edited result's layers closed while it is rescored: said too, with the fix
    viewer.layers.selection.active = editor.layer() if editor.layer() is not None else \
        [ly for ly in viewer.layers if ly.metadata.get("result_path") == str(a) and "edit" in ly.name][0]
    assert widget.result_path == str(a)
    editor.rescore_button.click()
    viewer.layers.selection = {ly for ly in viewer.layers if ly.metadata.get("weakstil_kind") == "result"
                               and ly.metadata.get("result_path") == str(a)}
    viewer.layers.remove_selected()
    editor.tasks.wait()
    status = widget.status_label.text()
    assert not status.startswith("Rescoring") and f"open {a.name} again" in status, status


def test_the_default_threshold_reads_as_a_threshold_beside_its_number(make_napari_viewer, scored_copy):
    path = scored_copy()
    with h5py.File(path, "r+") as f:  # an older file: no threshold recorded, nor its request
        for key in ("threshold", "score_request"):
            f.attrs.pop(key, None)
        f.attrs["model_path"] = str(path.parent / "gone_model")  # nor a model folder to take it from
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    editor = widget.bed_editor
    assert editor.edit_bed() is not None
    new = editor.rescore()
    assert new is not None and new.threshold_default
    text = widget.stil_label.text()
    # old: "(the default threshold, the file records none 30 %)"
    assert "(threshold 30 %: the default threshold, the file records none)" in text, text
    assert widget.result_layer(HEATMAP, str(path)) is not None


def test_a_geojson_weakstil_wrote_is_refused_with_what_to_open(make_napari_viewer, scored, tmp_path):
    """A saved bed or a tile GeoJSON dropped on the viewer: one line naming the file and what to open (old: napari's
    "Given reader 'napari-weakstil' is not a compatible reader", or "No compatible readers are available")."""
    import numpy as np
    import pytest
    from weakstil.bed_edit import write_bed_geojson
    from weakstil.errors import WeakSTILError

    slide_id = scored["score_h5"].stem
    bed = write_bed_geojson(tmp_path / "beds", [np.array([[10, 10], [400, 10], [400, 400], [10, 400]], float)],
                            slide_id)
    viewer = make_napari_viewer()
    with pytest.raises(WeakSTILError) as said:
        viewer.open(bed, plugin="napari-weakstil")
    text = said.value.one_line()
    assert str(bed) in text and "Edit bed" in text and f"--annotations {bed.parent}" in text and "\n" not in text
    tiles = scored["scores"] / f"{slide_id}.geojson"  # the tile GeoJSON 'weakstil score' wrote beside its .h5
    with pytest.raises(WeakSTILError, match=f"open {slide_id}.h5 with the WeakSTIL reader"):
        viewer.open(tiles, plugin="napari-weakstil")
    other = tmp_path / "qupath.geojson"  # another program's GeoJSON: left to other plugins, as before
    other.write_text('{"type": "FeatureCollection", "features": []}')
    with pytest.raises(ValueError, match="refused the file"):
        viewer.open(other, plugin="napari-weakstil")
    assert not viewer.layers


def test_a_result_whose_slide_moved_says_where_it_looked_and_the_fix(make_napari_viewer, scored, tmp_path, caplog):
    """The slide moved and renamed since scoring: the warning named neither where the slide was looked for nor what
    to do ("slide 'S' not found (at the path the result records, nor beside it); showing the result alone"); now it
    names the recorded path and the fix (which works: test_c_hunt13's result over its scan opened from another file)."""
    import logging

    path = tmp_path / "results" / scored["score_h5"].name
    path.parent.mkdir()
    shutil.copy(scored["score_h5"], path)
    gone = tmp_path / "gone" / scored["held"].name
    with h5py.File(path, "r+") as f:
        f.attrs["slide_path"] = str(gone)
        f.attrs.pop("slide_relpath", None)
    viewer = make_napari_viewer()
    with caplog.at_level(logging.WARNING, logger="napari_weakstil"):
        viewer.open(path, plugin="napari-weakstil")
    said = [r.getMessage() for r in caplog.records if "not found" in r.getMessage()]
    assert len(said) == 1 and str(gone) in said[0] and "\n" not in said[0], said
    assert "Fix: open the slide first" in said[0] and said[0].endswith("known by its content."), said[0]
