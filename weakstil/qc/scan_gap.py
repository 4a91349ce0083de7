"""An incomplete scan: a blank or constant-fill region that cuts through the tissue.

A scanner that stopped part-way, skipped a stripe or lost tiles leaves a region of one exact colour (white,
black or a background grey it fills with) whose edge is a straight line along the image's axes, and the tissue
ends on that line. Scored as it stands, such a slide's sTIL% rests on the part that was scanned and nothing said
so: a synthetic slide whose right third was blanked scored with status ok and no qc flag (hunt 38d).

Measured on the same 4 µm/px thumbnail as the stain, pen and fold statistics (:mod:`weakstil.qc.image`):

* **constant fill**: pixels whose 3 x 3 neighbourhood holds one exact colour, in regions of at least
  :data:`MIN_FILL_UM` squared (glass is never that flat: sensor noise; a 5 x 5 closing takes back the
  JPEG ringing along a filled region's edge);
* **a straight-edged region**: one whose edge runs along rows or columns of the image for :data:`MIN_RUN_UM` or
  more (one pixel of tolerance) on :data:`STRAIGHT_SHARE` of its length: a scanner's stripe, band or tile, or a
  staircase of them; glass around the tissue and holes in it follow the tissue's outline;
* **a cut**: such a region with tissue within :data:`NEAR_UM` of its edge along :data:`CUT_UM` or more;
* **a lost tile**: such a region away from the image's border, each side at least :data:`MIN_TILE_UM`, with tissue
  along :data:`TILE_ENCLOSED` of its edge, in a colour other than that of flat glass at the image's border (a hole
  showing the slide's own flat glass is a hole).
"""

from __future__ import annotations

import numpy as np

#: A constant-fill region smaller than this side (µm, as an area of its square) is a chance flat patch.
MIN_FILL_UM = 40.0
#: Tissue this close (µm) to a fill edge lies along it: the tissue mask's edge moves by a few pixels, and JPEG
#: ringing leaves a band of near-white (253-254) 20-30 µm wide between the tissue and the exact fill (CMU-1's right third
#: set to white and saved as a JPEG TIFF: its edge lay 28 µm from the tissue, and 24 µm saw 104 µm of the cut).
NEAR_UM = 40.0
#: An edge is straight where it runs along a row or column of the image for this long (µm) or more ...
MIN_RUN_UM = 40.0
#: ... and a region of fill is straight-edged when this share of its edge is (a scanner's stripe, band or tile is a
#: rectangle, or a staircase of them; glass around the tissue and holes in it are bounded by the tissue's outline).
STRAIGHT_SHARE = 0.8
#: A straight-edged region of fill with tissue along this much of its edge (µm) cuts the tissue. 36 normal slides
#: measure 0-324 µm (32 synthetic 2 mm slides of the default, alt and hard looks, whose hard look has glass of one
#: exact grey, and the four real slides OpenSlide opens: 0 but 204 µm, the TCGA SVS's unscanned corner touching its
#: tissue); 10 slides (9 of those, CMU-1) with their right third white, black or grey: 936-1916 µm, a 300 µm white
#: band across 9 of them 2496 µm or more (hunt 38d).
CUT_UM = 500.0
#: A straight-edged region of fill away from the image's border with each side at least this long (µm; a 256 px
#: tile at 0.25 µm/px is 64 µm) ...
MIN_TILE_UM = 40.0
#: ... and tissue along this share of its edge or more: inside the tissue, not at a scan area's corner.
TILE_ENCLOSED = 0.5
#: The image's own border (px): a thumbnail's last rows are not an edge of a fill region.
_BORDER = 3


def constant_fill(rgb: np.ndarray, mpp: float) -> np.ndarray:
    """Pixels in regions of one exact colour (every 3 x 3 neighbourhood flat) of at least :data:`MIN_FILL_UM`
    squared, their edge's JPEG ringing closed."""
    from scipy import ndimage as ndi

    # each pixel against its 8 neighbours (the edge repeated, as the 3 x 3 max/min filters' 'reflect' did):
    # the same pixels as max == min per channel, in a third of the time (3.1 of a 30 Mpx thumbnail's 11 s)
    h, w = rgb.shape[:2]
    flat = np.ones((h, w), bool)
    for c in range(3):
        padded = np.pad(rgb[..., c], 1, mode="edge")
        for dy, dx in ((dy, dx) for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)):
            flat &= padded[dy:dy + h, dx:dx + w] == padded[1:-1, 1:-1]
    labels, n = ndi.label(flat, structure=np.ones((3, 3)))
    if n == 0:
        return flat
    big = np.bincount(labels.ravel()) * mpp * mpp >= MIN_FILL_UM ** 2
    big[0] = False
    fill = big[labels]
    return fill | ndi.binary_closing(fill, np.ones((5, 5)))


def scan_gap(thumb: np.ndarray, mpp: float, tissue: np.ndarray) -> tuple[float, int]:
    """``(cut, tiles)`` of an RGB thumbnail at ``mpp`` µm/px with its ``tissue`` mask: the most tissue (µm) along
    the edge of one straight-edged region of constant fill, and how many such regions lie inside the tissue (lost
    tiles; a region of the colour of flat glass at the image's border is a hole showing that glass, not counted)."""
    from scipy import ndimage as ndi

    rgb = np.asarray(thumb)[..., :3]
    fill = constant_fill(rgb, mpp)
    if not fill.any():
        return 0.0, 0
    near = ndi.binary_dilation(np.asarray(tissue, bool) & ~fill, iterations=max(2, int(round(NEAR_UM / mpp))))
    edge = fill & ~ndi.binary_erosion(fill, border_value=1)
    edge[:_BORDER], edge[-_BORDER:], edge[:, :_BORDER], edge[:, -_BORDER:] = False, False, False, False
    straight = np.zeros(edge.shape, bool)
    for axis in (0, 1):  # runs along a row (a row of tolerance either way), then along a column
        line = edge | np.roll(edge, 1, axis=axis) | np.roll(edge, -1, axis=axis)
        struct = np.zeros((3, 3), int)
        struct[:, 1] = 1
        runs, n = ndi.label(line, structure=struct.T if axis == 0 else struct)
        if n:
            long_enough = np.bincount(runs.ravel(), minlength=n + 1) * mpp >= MIN_RUN_UM
            long_enough[0] = False
            straight |= long_enough[runs] & edge
    labels, n = ndi.label(fill, structure=np.ones((3, 3)))
    # edge pixels counted by region from the (few) edge pixels alone, not a pass over the image per sum
    rim, rim_straight, rim_tissue = (np.bincount(labels[m], minlength=n + 1)[1:] for m in (edge, straight, edge & near))
    at_border = np.zeros(n + 1, bool)
    at_border[np.unique(np.concatenate([labels[:_BORDER].ravel(), labels[-_BORDER:].ravel(),
                                        labels[:, :_BORDER].ravel(), labels[:, -_BORDER:].ravel()]))] = True
    boxes = ndi.find_objects(labels)

    def colour(k: int) -> tuple:  # the fill's own colour: the median, not a pixel the closing took in
        box = boxes[k - 1]  # within its box: a whole-image mask per region took 19 s for 660 regions at 3000 px
        return tuple(int(v) for v in np.median(rgb[box][labels[box] == k], axis=0))

    glass = {colour(k) for k in np.flatnonzero(at_border[1:]) + 1}
    cut, tiles = 0.0, 0
    for k, box in enumerate(boxes, start=1):
        i = k - 1
        if rim[i] == 0 or rim_straight[i] < STRAIGHT_SHARE * rim[i]:
            continue  # a curved edge: glass or a hole the tissue's own outline bounds
        cut = max(cut, float(rim_tissue[i]) * mpp)
        sides = min(box[0].stop - box[0].start, box[1].stop - box[1].start) * mpp
        if not at_border[k] and sides >= MIN_TILE_UM and rim_tissue[i] >= TILE_ENCLOSED * rim[i] \
                and colour(k) not in glass:
            tiles += 1
    return cut, tiles
