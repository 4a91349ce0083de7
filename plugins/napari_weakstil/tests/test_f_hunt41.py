"""Hunt 41f: a pathologist's session on results the bed editor had not met (napari under Xvfb)."""

from __future__ import annotations

import numpy as np
import pytest


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    return widget


def test_edit_bed_of_a_slide_scored_with_no_tumour_bed_lets_the_pathologist_draw_one(make_napari_viewer, scored,
                                                                                     scored_copy, tmp_path):
    """A slide whose bed holds no tile and no mask pixel (``score --annotations`` with a stray 5×5 px outline
    writes it so: "no tumour bed") is the one whose bed must be drawn; Edit bed failed on it with "could not
    convert string to float: 'bed'" (napari typed the empty layer's part column as numbers)."""
    import h5py

    from weakstil.bed_edit import rescore_with_bed

    path = scored_copy(status="no tumour bed", stil=float("nan"), n_tumorbed_tiles=0)
    with h5py.File(path, "r+") as f:
        f["tumorbed"][...] = 0
        f["tumorbed_mask"][...] = 0
        width, height = int(f.attrs["slide_width"]), int(f.attrs["slide_height"])
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    assert "no tumour bed" in widget.stil_label.text()
    editor = widget.bed_editor
    editor.folder_edit.value = tmp_path / "beds"
    editor.edit_button.click()  # in a worker thread, as pressed
    editor.tasks.wait()
    layer = editor.layer()
    assert layer is not None, widget.status_label.text()
    assert len(layer.data) == 0
    bed = np.array([[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]) * [width, height]  # level-0 [x, y]
    hole = np.array([[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]]) * [width, height]
    layer.add_polygons([bed[:, ::-1]])
    editor.holes_box.setChecked(True)
    layer.add_polygons([hole[:, ::-1]])
    assert list(layer.features["part"]) == ["bed", "hole"]
    new = editor.rescore()
    want = rescore_with_bed(path, [bed], [hole])
    assert new.n_bed_tiles == want.n_bed_tiles > 0
    assert new.stil == pytest.approx(want.stil, abs=1e-6)
    assert f"sTIL {new.stil:.1f} %" in widget.stil_label.text()
    saved = editor.save_bed()
    assert saved is not None and saved.name == f"{path.stem}.geojson", widget.status_label.text()


def test_a_bed_file_off_the_slide_in_the_bed_folder_is_refused_as_score_refuses_it(make_napari_viewer, scored_copy,
                                                                                  tmp_path):
    """An outline of the slide's name lying off it (another slide's, or in µm) is refused by ``weakstil score
    --annotations`` ("polygons lie outside the slide"); the widget said it gave "no score (no tumour bed)", as
    the CLI gives it, and Edit bed continued it cut to the slide (an empty bed)."""
    import json

    import h5py

    path = scored_copy()
    with h5py.File(path, "r+") as f:
        width, height, slide_id = int(f.attrs["slide_width"]), int(f.attrs["slide_height"]), str(f.attrs["slide_id"])
    beds = tmp_path / "beds"
    beds.mkdir()
    x0, y0, x1, y1 = 2 * width, 2 * height, 40 * width, 40 * height
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    (beds / f"{slide_id}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"classification": {"name": "Tumor bed"}},
         "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    widget.bed_editor.folder_edit.value = beds
    viewer.open(path, plugin="napari-weakstil")
    detail = widget.detail_label.text()
    assert "cannot be read" in detail and "outside the slide" in detail and "no tumour bed" not in detail, detail
    assert widget.bed_editor.edit_bed() is None
    assert "outside the slide" in widget.status_label.text() and widget.bed_editor.layer() is None


def test_a_qupath_export_in_the_bed_folder_of_a_mirax_slide_is_read_in_openslide_frame(make_napari_viewer, scored_copy,
                                                                                      tmp_path):
    """On a slide with a scanned area's corner (MIRAX: ``slide_bounds_x/-y``) a QuPath export is in QuPath's frame;
    ``score --annotations`` moves it by the corner. The widget's line beneath the number and Edit bed read it
    unmoved: another bed than the CLI's."""
    import json

    import h5py

    from weakstil.bed_edit import ScoredTiles
    from weakstil.tumorbed.bed import from_annotation

    corner = (300.0, 200.0)
    path = scored_copy(slide_bounds_x=corner[0], slide_bounds_y=corner[1])
    with h5py.File(path, "r+") as f:
        width, height, slide_id = int(f.attrs["slide_width"]), int(f.attrs["slide_height"]), str(f.attrs["slide_id"])
    x0, y0, x1, y1 = 0.35 * width - corner[0], 0.3 * height - corner[1], 0.7 * width - corner[0], 0.65 * height - corner[1]
    beds = tmp_path / "beds"
    beds.mkdir()
    bed = beds / f"{slide_id}.geojson"  # as QuPath exports it: its object type, in its frame
    bed.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}},
         "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}]}))
    tiles = ScoredTiles.read(path)
    assert tiles.geometry.origin == corner
    cli = tiles.score_flags(from_annotation(bed, tiles.geometry).tile_flags)  # the bed 'score --annotations' reads
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    widget.bed_editor.folder_edit.value = beds
    viewer.open(path, plugin="napari-weakstil")
    assert f"over {cli.n_bed_tiles:,} tiles" in widget.detail_label.text(), widget.detail_label.text()
    assert widget.bed_editor.edit_bed() is not None
    new = widget.bed_editor.rescore()
    np.testing.assert_array_equal(new.tile_flags, cli.tile_flags)
    assert new.stil == pytest.approx(cli.stil, abs=1e-6)
