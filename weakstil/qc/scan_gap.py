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
* **a cut**: such a region with tissue within :data:`NEAR_UM` of its edge along :data:`CUT_UM` or more, judged
  beyond the JPEG block grid (:func:`scan_cut`, hunt 41h): on flat glass JPEG keeps exact flatness only in blocks clear
  of tissue, a staircase along the section's outline, and the padded last block rings along the right and bottom
  edges; so straight means runs of :data:`STAIR_BLOCKS` blocks, the fill is opened and closed by a block first,
  the border band is a block wide, and only tissue along runs of :data:`LINE_UM` counts;
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
#: band across 9 of them 2496 µm or more (hunt 38d). Hunt 41h's rule, that set rebuilt: normal 0-416 µm (and 54 copies
#: of the outside generator's flat-glass slides, 0-4136 before, 0 now); cut thirds 1024-1892 but CMU-1 black 148.
CUT_UM = 500.0
#: A straight-edged region of fill away from the image's border with each side at least this long (µm; a 256 px
#: tile at 0.25 µm/px is 64 µm) ...
MIN_TILE_UM = 40.0
#: ... and tissue along this share of its edge or more: inside the tissue, not at a scan area's corner.
TILE_ENCLOSED = 0.5
#: The image's own border (px): a thumbnail's last rows are not an edge of a fill region.
_BORDER = 3
#: JPEG codes a tile in blocks of up to 16 x 16 px (8 x 8, its colour at half resolution with 4:2:0 subsampling), and
#: flat glass stays exactly flat only in blocks clear of tissue: a flat region's outline is a staircase on that grid
#: (4-8 px on a 4 µm/px thumbnail read from a 2 µm/px level), and a level's last block, padded past the image's right
#: and bottom edges, rings, so flat glass stops up to a block short of them (hunt 41h).
JPEG_BLOCK_PX = 16
#: A run of an edge counts towards a region's straightness only when it is at least this many blocks long (and
#: :data:`MIN_RUN_UM`): a block staircase along a tissue outline that nears a row or column has runs of 2-3 blocks.
STAIR_BLOCKS = 3
#: Tissue counts towards a cut only along a straight run of the fill's edge this long (µm): a scanner's gap is one
#: straight line the width of the tissue it cuts; a staircase, or glass along a short straight stretch of the
#: tissue's own outline, is not.
LINE_UM = 200.0
#: Two regions of fill that meet are two where their colours differ by more than this (grey levels, a channel):
#: a white or black gap beside glass of one exact grey; JPEG leaves flat glass a level or two apart block by block.
COLOUR_STEP = 8


def constant_fill(rgb: np.ndarray, mpp: float, closed: bool = True) -> np.ndarray:
    """Pixels in regions of one exact colour (every 3 x 3 neighbourhood flat) of at least :data:`MIN_FILL_UM`
    squared, their edge's JPEG ringing closed (``closed``)."""
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
    return closed_ringing(fill) if closed else fill


def closed_ringing(flat: np.ndarray) -> np.ndarray:
    """The fill with its edge's JPEG ringing closed (:func:`constant_fill`'s ``closed``)."""
    from scipy import ndimage as ndi

    return flat | ndi.binary_closing(flat, np.ones((5, 5)))


def _run_length(edge: np.ndarray, mpp: float) -> np.ndarray:
    """The length (µm) of the longest run along a row or a column of the image (a pixel of tolerance either way)
    that each edge pixel lies on (0 off the edge)."""
    from scipy import ndimage as ndi

    out = np.zeros(edge.shape, np.float32)
    for axis in (0, 1):  # runs along a row, then along a column
        band = edge | np.roll(edge, 1, axis=axis) | np.roll(edge, -1, axis=axis)
        struct = np.zeros((3, 3), int)
        struct[:, 1] = 1
        runs, n = ndi.label(band, structure=struct.T if axis == 0 else struct)
        if n:
            length = (np.bincount(runs.ravel(), minlength=n + 1) * mpp).astype(np.float32)
            length[0] = 0.0
            np.maximum(out, np.where(edge, length[runs], 0.0), out=out)
    return out


def _near_tissue(tissue: np.ndarray, fill: np.ndarray, mpp: float) -> np.ndarray:
    """Pixels within :data:`NEAR_UM` of the tissue outside the fill."""
    from scipy import ndimage as ndi

    return ndi.binary_dilation(tissue & ~fill, iterations=max(2, int(round(NEAR_UM / mpp))))


def _rim(fill: np.ndarray, border: int) -> np.ndarray:
    from scipy import ndimage as ndi

    edge = fill & ~ndi.binary_erosion(fill, border_value=1)
    edge[:border], edge[-border:], edge[:, :border], edge[:, -border:] = False, False, False, False
    return edge


def scan_cut(rgb: np.ndarray, fill: np.ndarray, mpp: float, tissue: np.ndarray, read_mpp: float | None = None,
             flat: np.ndarray | None = None, near: np.ndarray | None = None) -> float:
    """The most tissue (µm, within :data:`NEAR_UM`) along straight runs of :data:`LINE_UM` or more of the edge of
    one region of constant ``fill`` whose edge is straight beyond the JPEG block grid (:data:`STRAIGHT_SHARE` of it
    on runs of :data:`STAIR_BLOCKS` blocks). The fill is first opened and closed by a block's square (the
    block-sized notches of its edge where it meets glass of nearly its colour taken out) and split where two fills
    of other colours meet (:data:`COLOUR_STEP`); a band a block wide along the image's border, where the padded
    last block rings, is left out. ``read_mpp`` sizes the block (:func:`scan_gap`); ``flat``: the fill before its
    closing (:func:`constant_fill` with ``closed=False``), and ``near`` the pixels within :data:`NEAR_UM` of tissue
    outside the fill, computed when None."""
    from scipy import ndimage as ndi

    # a JPEG block's side in thumbnail px: no level is coarser than the thumbnail read from it (a NaN, infinite or
    # too coarse ``read_mpp`` read as the thumbnail's own: it raised, or a block wider than the image hid every cut)
    read = float(read_mpp) if read_mpp is not None and np.isfinite(read_mpp) and read_mpp > 0 else mpp
    block = JPEG_BLOCK_PX * min(read, mpp) / mpp
    side = int(np.ceil(block)) + 1
    # opened then closed by the square (as separable min / max filters: a fifth of binary_opening's time)
    smooth = ndi.minimum_filter(ndi.maximum_filter(ndi.maximum_filter(ndi.minimum_filter(
        fill.view(np.uint8), side), side), side), side).astype(bool)
    # a fill pixel's colour: that of the nearest exactly flat one (the closings took in pixels of JPEG ringing);
    # where two fills of other colours meet (a white gap beside flat grey glass) the line between them is an edge
    if flat is None:
        flat = constant_fill(rgb, mpp, closed=False)
    step = np.zeros(fill.shape, bool)
    seen = rgb[flat]
    if seen.size and int((seen.max(axis=0).astype(np.int16) - seen.min(axis=0)).max()) > COLOUR_STEP:
        iy, ix = ndi.distance_transform_edt(~flat, return_distances=False, return_indices=True)
        colour = rgb[iy, ix].astype(np.int16)
        # every pair of neighbours (8-connected, as the regions are labelled) of other colours loses one pixel to
        # the line, in the fill the regions are labelled on: with rows and columns alone, and the smoothed fill
        # alone, a diagonal step of the line (where JPEG rings at the section's tip) joined a white third to the
        # glass and its curved outline hid the cut (a 45° section, right third white: 864 µm before hunt 41h, 0; helper h41s)
        joined = smooth | fill
        h, w = fill.shape
        for dy, dx in ((1, 0), (0, 1), (1, 1), (1, -1)):
            a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
            b = (slice(dy, h), slice(max(0, dx), w + min(0, dx)))
            d = np.abs(colour[a] - colour[b]).max(axis=2) > COLOUR_STEP
            step[b] |= d & joined[a] & joined[b]
        smooth &= ~step
    edge = _rim(smooth, max(_BORDER, side))
    if not edge.any():
        return 0.0
    if near is None:
        near = _near_tissue(tissue, fill, mpp)
    length = _run_length(edge, mpp)
    stair_free = length >= max(MIN_RUN_UM, STAIR_BLOCKS * block * mpp)
    line = length >= LINE_UM
    # regions as the fill joins them: the opening cuts a thin strip of glass along the image's border from the rest
    labels, n = ndi.label(smooth | (fill & ~step), structure=np.ones((3, 3)))
    rim, rim_stair_free, rim_cut = (np.bincount(labels[m], minlength=n + 1)[1:]
                                    for m in (edge, stair_free, edge & near & line))
    straight = (rim > 0) & (rim_stair_free >= STRAIGHT_SHARE * rim)
    boxes, best = ndi.find_objects(labels), 0
    for i in sorted(np.flatnonzero(straight & (rim_cut > 0)), key=lambda i: -rim_cut[i]):
        if rim_cut[i] <= best:
            break
        best = max(best, _cut_not_enclosed(labels, i + 1, boxes[i], tissue, fill, edge & line, mpp))
    return float(best) * mpp


def _cut_not_enclosed(labels: np.ndarray, k: int, box: tuple, tissue: np.ndarray, fill: np.ndarray,
                      edge: np.ndarray, mpp: float) -> int:
    """The pixels of region ``k``'s ``edge`` within :data:`NEAR_UM` of tissue that the region does not enclose.
    Tissue in a hole of the fill that it lines all round lies on it, as a section lies on its glass; a scanner's gap
    cuts tissue that goes on beyond it, outside the region, or inside a scan area the fill frames (glass along the
    rest of the hole's rim): a square section at 0° on flat glass, its outline straight along rows and columns, was
    all "cut" (4044 µm; helper h43d)."""
    from scipy import ndimage as ndi

    r = max(2, int(round(NEAR_UM / mpp)))
    h, w = labels.shape
    crop = (slice(max(0, box[0].start - r - 1), min(h, box[0].stop + r + 1)),
            slice(max(0, box[1].start - r - 1), min(w, box[1].stop + r + 1)))
    region = labels[crop] == k
    lying = tissue[crop] & ~fill[crop]
    holes, n = ndi.label(ndi.binary_fill_holes(region) & ~region)
    if n:
        # a hole is a section on its glass only where tissue lies along its whole rim (the hole is the section's
        # outline); a scan area framed by fill on every side has glass along its rim, and the tissue that runs to
        # its straight edge is cut (a framed scan area cut on one side: 904 µm before h43d, 0 after; helper h43f)
        rim = np.bincount(holes[ndi.binary_dilation(region) & (holes > 0)], minlength=n + 1)
        along = np.bincount(holes[ndi.binary_dilation(region) & (holes > 0)
                                  & ndi.binary_dilation(lying, iterations=r)], minlength=n + 1)
        on_glass = along >= STRAIGHT_SHARE * np.maximum(rim, 1)
        on_glass[0] = False
        lying &= ~on_glass[holes]
    near = ndi.binary_dilation(lying, iterations=r)
    return int((edge[crop] & region & near).sum())


def scan_gap(thumb: np.ndarray, mpp: float, tissue: np.ndarray, read_mpp: float | None = None) -> tuple[float, int]:
    """``(cut, tiles)`` of an RGB thumbnail at ``mpp`` µm/px with its ``tissue`` mask: the most tissue (µm) along
    the long straight runs of the edge of one straight-edged region of constant fill (:func:`scan_cut`), and how
    many such regions lie inside the tissue (lost tiles; a region of the colour of flat glass at the image's border
    is a hole showing that glass, not counted). ``read_mpp``: µm/px of the pyramid level the thumbnail was read
    from, whose JPEG blocks flat glass follows (None: the thumbnail's own, the coarsest it can be)."""
    from scipy import ndimage as ndi

    rgb = np.asarray(thumb)[..., :3]
    flat = constant_fill(rgb, mpp, closed=False)
    if not flat.any():
        return 0.0, 0
    fill = closed_ringing(flat)
    tissue = np.asarray(tissue, bool)
    near = _near_tissue(tissue, fill, mpp)
    cut = scan_cut(rgb, fill, mpp, tissue, read_mpp, flat, near)
    edge = _rim(fill, _BORDER)
    straight = _run_length(edge, mpp) >= MIN_RUN_UM
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
    tiles = 0
    for k, box in enumerate(boxes, start=1):
        i = k - 1
        if rim[i] == 0 or rim_straight[i] < STRAIGHT_SHARE * rim[i]:
            continue  # a curved edge: glass or a hole the tissue's own outline bounds
        sides = min(box[0].stop - box[0].start, box[1].stop - box[1].start) * mpp
        if not at_border[k] and sides >= MIN_TILE_UM and rim_tissue[i] >= TILE_ENCLOSED * rim[i] \
                and colour(k) not in glass:
            tiles += 1
    return cut, tiles
