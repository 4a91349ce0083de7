"""A pathologist's session on real tissue in napari (hunt 35k: Kather CRC mosaics and CMU-1 scored by a model).

- Hovering a tile of a result just opened (File > Open of its .h5, as the widget's Score slide also shows it) gave no
  score: napari's status bar reports the *active* layer's value, and napari made the result's last layer, its
  ``tumour bed`` outline, active, so a tile of CMU-1 scored 56.4 read "[391.58, 503.35]: [, ]" until the heatmap was
  found and selected in the layer list. Now the result's heatmap is made active once its layers are in, and the
  status bar reads the tile's score ("[392, 503]: 56.4").
- A result whose slide was open already, under another slide opened since (mosaic_000.tiff, then CMU-1, then
  mosaic_000.h5 again): the result's layers went on top, over CMU-1's tissue, its own scan hidden beneath, and nothing
  said so: mosaic_000's heatmap and bed outline lay on CMU-1's skin. Now its slide layer is moved up over the other
  slide first, so the result is drawn over its own tissue.
"""

from __future__ import annotations

import h5py

from napari_weakstil.result_layers import HEATMAP


def _dock(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    return widget


def test_hovering_a_tile_of_a_result_just_opened_reads_its_score(make_napari_viewer, qtbot, scored):
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    heat = widget.result_layer(HEATMAP)
    qtbot.wait(20)  # napari activates the last layer added after inserting it; the widget then moves it on
    active = viewer.layers.selection.active
    # old: the result's "<slide> tumour bed" outline stayed active, and the status bar read "[y, x]: [, ]"
    assert active is heat, f"active layer after opening: {active.name!r}, not the heatmap {heat.name!r}"
    with h5py.File(scored["score_h5"]) as f:
        i = len(f["coords"]) // 2
        (x, y), score = f["coords"][i], float(f["tile_scores"][i])
        size, mpp = float(f.attrs["tile_size_level0"]), float(f.attrs["slide_mpp"])
    viewer.mouse_over_canvas = True
    viewer.cursor.position = ((y + size / 2) * mpp, (x + size / 2) * mpp)  # the tile's centre, in µm
    viewer.update_status_from_cursor()
    assert abs(float(viewer.status["value"]) - score) < 0.06, (viewer.status, score)
    # a layer the pathologist selects is left selected (no insert: nothing moves it)
    bed = widget.result_layer("tumour bed")
    viewer.layers.selection.active = bed
    qtbot.wait(20)
    assert viewer.layers.selection.active is bed


def test_a_result_goes_over_its_own_slide_not_over_another_slide_opened_since(make_napari_viewer, scored,
                                                                             marked_slide):
    viewer = make_napari_viewer()
    own = viewer.open(scored["held"], plugin="napari-weakstil")[0]
    other = viewer.open(marked_slide["slide"], plugin="napari-weakstil")[0]  # another slide, opened since
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    names = [ly.name for ly in viewer.layers]
    heat = next(ly for ly in viewer.layers if ly.metadata.get("role") == HEATMAP)
    assert names.count(own.name) == 1  # the open slide layer is reused, not opened again
    # old: [own slide, other slide, result layers...]: the heatmap lay over the other slide's tissue
    assert names.index(other.name) < names.index(own.name) < names.index(heat.name), names
