"""A result opened over a slide already open in the viewer: placed by the shown layer's scale, and
refused over another scan (outside tester's findings, hunt 9)."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest

from napari_weakstil.result_layers import HEATMAP, TISSUE, TUMORBED


def _rescored_at(result, mpp: float) -> None:
    """Make ``result`` look scored with ``--slide-mpp mpp`` and give it tissue and bed masks to place."""
    with h5py.File(result, "r+") as f:
        f.attrs["slide_mpp"] = mpp
        mask = np.zeros((8, 8), np.uint8)
        mask[2:6, 3:7] = 1
        f["tissue_mask"][...] = mask
        f["tumorbed_mask"][...] = mask


def _level0_extents(viewer) -> dict[str, np.ndarray]:
    """Every result layer's extent in level-0 pixels of the slide layer under it."""
    slide = next(ly for ly in viewer.layers if ly.metadata.get("weakstil_kind") == "slide")
    return {ly.metadata["role"]: np.asarray(ly.extent.world) / slide.scale[-1] for ly in viewer.layers
            if ly.metadata.get("weakstil_kind") == "result"}


def test_a_result_over_its_open_slide_is_placed_at_the_slides_shown_scale(make_napari_viewer, marked_slide, caplog):
    """Scored at --slide-mpp 0.4 on a slide whose file says 0.2495: opened over the open slide (at
    0.2495) the heatmap, masks and bed outline must cover the same level-0 pixels as when the result is
    opened alone (its slide then at 0.4); they were shrunk by 0.4/0.2495 onto other tissue."""
    _rescored_at(marked_slide["result"], 0.4)
    alone = make_napari_viewer()
    alone.open(marked_slide["result"], plugin="napari-weakstil")
    assert alone.layers[0].scale[-1] == pytest.approx(0.4)
    want = _level0_extents(alone)
    assert {HEATMAP, TISSUE, TUMORBED} <= set(want)
    alone.close()

    viewer = make_napari_viewer()
    viewer.open(marked_slide["slide"], plugin="napari-weakstil")
    with caplog.at_level(logging.WARNING, logger="napari_weakstil"):
        viewer.open(marked_slide["result"], plugin="napari-weakstil")
    slide = viewer.layers[0]
    assert slide.scale[-1] == pytest.approx(marked_slide["mpp"])  # the open slide keeps its scale
    got = _level0_extents(viewer)
    for role in want:
        np.testing.assert_allclose(got[role], want[role], atol=1.0, err_msg=role)
    # a marked tile's heatmap pixel is centred on the tile as the slide layer shows it
    heat = next(ly for ly in viewer.layers if ly.metadata.get("role") == HEATMAP)
    x, y = marked_slide["coords"][marked_slide["marked"][0]]
    centre = ((y + marked_slide["tile"] / 2 - 0.5) * slide.scale[-1], (x + marked_slide["tile"] / 2 - 0.5) * slide.scale[-1])
    r, c = np.rint((np.asarray(centre) - heat.translate[-2:]) / heat.scale[-2:]).astype(int)
    # up to the corners' rounding to whole level-0 pixels
    np.testing.assert_allclose(heat.translate[-2:] + (r, c) * heat.scale[-2:], centre, atol=0.5 * slide.scale[-1])
    assert heat.data[r, c] == 100.0
    assert "scored at 0.4 µm/px" in caplog.text and "shown at 0.2495 µm/px" in caplog.text


def test_a_result_is_refused_over_an_open_slide_that_is_another_scan(make_napari_viewer, marked_slide):
    """The file at the result's slide path now holds another scan (same name) and is open: the result
    must not be drawn over it (opened alone the reader already passed that file over)."""
    import tifffile

    from weakstil.fingerprint import slide_fingerprint

    with h5py.File(marked_slide["result"], "r+") as f:
        f.attrs["slide_fingerprint"] = slide_fingerprint(marked_slide["slide"])
    mpp = marked_slide["mpp"]
    other = np.full((2600, 3200, 3), 200, np.uint8)
    other[500:900, 700:1500] = (120, 40, 160)
    tifffile.imwrite(marked_slide["slide"], other, tile=(256, 256), photometric="rgb", resolutionunit="CENTIMETER",
                     resolution=(1e4 / mpp, 1e4 / mpp))
    viewer = make_napari_viewer()
    viewer.open(marked_slide["slide"], plugin="napari-weakstil")
    with pytest.raises(Exception, match="is not the scan this result was made from.*Fix: remove the layer"):
        viewer.open(marked_slide["result"], plugin="napari-weakstil")
    assert [ly.metadata.get("weakstil_kind") for ly in viewer.layers] == ["slide"]
