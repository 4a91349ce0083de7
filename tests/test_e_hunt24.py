"""Hunt 24, helper e: what a pathologist sees in the pictures WeakSTIL writes (heatmaps, report)."""

from __future__ import annotations

import numpy as np
import pytest

from weakstil.outputs import _outline, counted_tiles_mask, tile_score_image
from weakstil.tiling import TileGrid


@pytest.mark.parametrize("slide_mpp, thumb_scale", [(2.004, 0.6506710044733631),  # the 2 µm/px DICOM's heatmap
                                                     (0.499, 0.1351)])  # CMU-1-Small-Region's (0.499 µm/px)
def test_heatmap_tiles_meet_without_seams(slide_mpp, thumb_scale):
    """A tile grid whose level-0 tile size is not a whole number (55.89 px on a 2 µm/px scan read at
    0.5 µm/px) has whole-pixel corners a pixel apart now and then: the heatmap showed one-pixel
    white seams through the tiles every few columns and rows, and the outline of the tiles that made
    the sTIL% was traced along them, through the middle of the bed (seen on slidetool_test_dicom)."""
    grid = TileGrid(slide_width=int(14 * 224 * 0.5 / slide_mpp), slide_height=int(14 * 224 * 0.5 / slide_mpp),
                    slide_mpp=slide_mpp)
    coords = grid.coords()
    assert len(coords) >= 13 * 13
    tsl0 = grid.tile_size_level0
    assert tsl0 != round(tsl0)
    x1 = int(round((coords[:, 0].max() + tsl0) * thumb_scale))
    shape = (x1 + 5, x1 + 5)
    heat = tile_score_image(shape, coords, tsl0, thumb_scale, np.full(len(coords), 50.0))
    block = heat[:x1 - 1, :x1 - 1]
    assert np.isfinite(block).all(), f"{(~np.isfinite(block)).sum()} seam pixels inside the tiled block"
    mask = counted_tiles_mask(shape, coords, tsl0, thumb_scale, np.ones(len(coords), bool))
    edge = _outline(mask)
    # the outline of one solid block: nothing drawn inside it
    assert not edge[3:x1 - 3, 3:x1 - 3].any(), "outline traced through the inside of the counted tiles"
    # and the squares stay where the tiles are: no more than a pixel past the last tile's end
    assert mask.any(axis=0).sum() <= x1 + 1
