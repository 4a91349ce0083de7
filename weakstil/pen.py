"""Marker (pen) ink on a slide thumbnail: the colour rules shared by the tissue detector, the slide
QC, the tumour-bed ink veto and the stain estimate, and the tissue detector's own rules for strokes
on the glass (grey strokes, whole pieces whose absorbance is not H&E's).

Pen ink is told from haematoxylin by its absorbance spectrum, not by its hue alone: blue markers pass
blue light almost fully, while haematoxylin of every lab absorbs a good part of it. A dark navy
marker lies too close to a navy haematoxylin for a pixel rule, so a piece of the tissue mask is
judged as a whole: tissue, even a dense lymphocyte aggregate, has eosin between its nuclei.
"""

from __future__ import annotations

import logging

import numpy as np

from weakstil.glass import glass_level

log = logging.getLogger(__name__)

#: Blue marker ink: its blue absorbance is below this share of its red one. Haematoxylin stays
#: above it (about 0.33 and up even for a red-absorbing lab stain, 0.45 for the Ruifrok vector;
#: eosin only adds blue absorbance); blue markers pass blue light almost fully (0.1-0.2 measured on
#: thumbnails, where blur and JPEG mix in a little of the neighbours).
BLUE_INK_OD_RATIO = 0.28
#: ... where the red absorbance is clear of glass noise (OD 0.05): faint strokes are ink too.
BLUE_INK_MIN_OD = 0.05


def pen_ink(r: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels of marker ink: green (H&E never passes green best), blue (passes blue almost fully
    where haematoxylin absorbs part of it; see :data:`BLUE_INK_OD_RATIO`), or near-black.

    ``r, g, b`` are uint8 planes on white (or white-balanced) glass.
    """
    r16, g16, b16 = (c.astype(np.int16) for c in (r, g, b))
    mx = np.maximum(np.maximum(r16, g16), b16)
    green = (g16 > r16 + 10) & (g16 > b16 - 5)
    # OD_b < k * OD_r  <=>  b / 255 > (r / 255) ** k: a table over the 256 red levels, no float image
    levels = np.arange(256, dtype=np.float64) / 255.0
    b_min = np.ceil(255.0 * np.maximum(levels, 1.0 / 255.0) ** BLUE_INK_OD_RATIO).astype(np.int16)
    blue = (g16 > r16) & (b16 > b_min[np.clip(r16, 0, 255)]) & (r16 < 255.0 * 10.0 ** -BLUE_INK_MIN_OD)
    return green | blue | (mx < 45)


#: A piece of the mask is a marker stroke on glass, not tissue, when its summed absorbance is not
#: that of any H&E mix: blue absorbance under this share of the red one (a blue or navy marker;
#: haematoxylin alone is 0.33 and up, eosin only adds blue absorbance), ...
INK_PIECE_BLUE_RATIO = 0.31
#: ... or neutral: its weakest channel's absorbance above this share of its strongest (grey and
#: black markers; haematoxylin alone is under 0.45, eosin's red absorbance is a tenth of its green).
INK_PIECE_NEUTRAL = 0.75


#: The tissue detector's grey ink is this much optical density darker than the glass: the pale grey
#: rim of the alt look's tissue (grey levels 190-209 where its navy haematoxylin and orange eosin mix,
#: glass 240) is not ink.
GREY_INK_MIN_OD = 0.1
#: ... and as unsaturated as this many per cent (the QC's 7 % takes pale lilac tissue edges for ink:
#: CMU-1-Small-Region's and a DICOM's at 5-7 %, 1 % of their mask; grey markers are under 3 %).
GREY_INK_DETECTOR_SATURATION = 4
#: ... in strokes at least this wide (a marker's is 60 µm and more; its rims are
#: :data:`weakstil.tissue.PEN_EDGE_UM`'s): single grey pixels in tissue (fat's membranes under a
#: cool lamp: 0.7 mm² of a hard alt slide's fat lost) are stain.
GREY_INK_MIN_WIDTH_UM = 24.0


#: Grey ink by its absorbance: optical density above the glass between these two (H&E of that
#: density is never neutral; darker tissue can be: a fold's blurred edge in a real DICOM, OD ~0.7) ...
GREY_INK_OD_RANGE = (0.2, 0.6)
#: ... whose weakest channel absorbs at least this share of the strongest (haematoxylin alone 0.33-0.45,
#: with eosin at most ~0.66; a slightly warm black marker 0.89).
GREY_INK_NEUTRAL = 0.8


def od_table(glass: float) -> np.ndarray:
    """Optical density above ``glass`` of each of the 256 grey levels (0 at or above the glass)."""
    return np.maximum(np.log10(glass / np.maximum(np.arange(256), 1)), 0.0)


def grey_ink(r: np.ndarray, g: np.ndarray, b: np.ndarray, mx: np.ndarray, total: np.ndarray) -> np.ndarray:
    """Dark grey marker on the detector's white-balanced planes: unsaturated
    (:data:`GREY_INK_DETECTOR_SATURATION`) and :data:`GREY_INK_MIN_OD` darker than the glass (a dim
    or faded scan's grey glass is not ink), or neutral in absorbance (:data:`GREY_INK_OD_RANGE`,
    :data:`GREY_INK_NEUTRAL`: a grey or black marker's faint, slightly tinted strokes)."""
    spread = mx.astype(np.int16) - np.minimum(np.minimum(r, g), b)
    grey = (mx < GREY_INK_MAX) & (spread * 100 < GREY_INK_DETECTOR_SATURATION * np.maximum(mx, 1).astype(np.int16))
    glass, _ = glass_level(total[::2, ::2].astype(np.float32) / 3.0)
    glass = max(float(glass), 1.0)
    grey &= total < 3.0 * min(glass * 10.0 ** -GREY_INK_MIN_OD, 235.0 - INK_BELOW_GLASS)
    lo, hi = GREY_INK_OD_RANGE
    # absorbance only where the mean's is in range (a table over the 256 levels, no float image)
    cand = np.nonzero((total < 3.0 * glass * 10.0 ** -lo) & (total > 3.0 * glass * 10.0 ** -hi))
    if cand[0].size:
        lut = od_table(glass).astype(np.float32)
        od = [lut[c[cand]] for c in (r, g, b)]
        od_max = np.maximum(np.maximum(od[0], od[1]), od[2])
        od_min = np.minimum(np.minimum(od[0], od[1]), od[2])
        keep = (od_min > GREY_INK_NEUTRAL * od_max) & (od_max > lo) & (od_max < hi)
        grey[cand[0][keep], cand[1][keep]] = True
    return grey


def drop_ink_pieces(mask: np.ndarray, rgb: np.ndarray, min_density: float) -> np.ndarray:
    """``mask`` without its pieces whose summed optical density is that of marker ink, not H&E
    (:data:`INK_PIECE_BLUE_RATIO`, :data:`INK_PIECE_NEUTRAL`; pieces whose mean optical density
    above the glass is ``min_density`` or more): a stroke on glass whose pixels the
    pixel rules miss (a navy marker near haematoxylin's colour, blurred or JPEG edges) is one piece
    of ink, while tissue, even a dense lymphocyte aggregate, has eosin between its nuclei."""
    from scipy import ndimage as ndi

    pieces, n = ndi.label(mask)
    if n == 0:
        return mask
    # absorbance against the slide's own glass (each channel's median off the mask), not white
    idx = pieces.ravel()
    bare = ~mask[::2, ::2]
    od, luts = [], []
    for c in range(3):
        plane = np.ascontiguousarray(rgb[..., c])
        glass = max(float(np.median(plane[::2, ::2][bare])) if bare.sum() > 100 else 255.0, 1.0)
        luts.append(od_table(glass))
        od.append(np.bincount(idx, weights=luts[-1][plane.ravel()], minlength=n + 1)[1:])
    od_max = np.maximum(np.maximum(od[0], od[1]), od[2])
    od_min = np.minimum(np.minimum(od[0], od[1]), od[2])
    # ... among the pieces that absorb like a stroke: fat (bright cells, faint membranes) on a dimmer
    # part of the glass is neutral too
    area = np.bincount(idx, minlength=n + 1)[1:]
    neutral = (od_min > INK_PIECE_NEUTRAL * od_max) & (od_max > min_density * area)
    if neutral.any():
        # a grey or black marker is neutral pixel by pixel; tissue whose blue haematoxylin (absorbing red
        # most) and orange eosin (absorbing blue most) sum to a neutral absorbance is not: its nuclei and
        # its stroma each have a colour. Without this a TIL-rich slide of such a stain, its whole tissue
        # one piece, was dropped as grey ink and refused as "no tissue" (hunt 40i: 3 of 34 slides, 55-78 %)
        neutral &= _neutral_pixel_share(pieces, rgb, luts, min_density, neutral) >= INK_NEUTRAL_PIXEL_SHARE
    ink = ((od[2] < INK_PIECE_BLUE_RATIO * od[0]) & (od_max > min_density * area)) | neutral
    if not ink.any():
        return mask
    log.debug("tissue: %d of %d pieces are marker ink on glass", int(ink.sum()), n)
    return mask & ~np.concatenate([[False], ink])[pieces]


#: A piece whose summed absorbance is neutral is grey or black ink only when at least this share of its
#: dense pixels is neutral too (a grey stroke's pixels, JPEG rims included, nearly all are).
INK_NEUTRAL_PIXEL_SHARE = 0.5


def _neutral_pixel_share(pieces: np.ndarray, rgb: np.ndarray, luts: list[np.ndarray], min_density: float,
                         candidates: np.ndarray) -> np.ndarray:
    """Per piece (index 0 = piece 1), the share of its pixels of optical density ``min_density`` or more
    whose weakest channel absorbs more than :data:`INK_PIECE_NEUTRAL` of the strongest; measured on the
    ``candidates`` pieces only (others 0)."""
    n = len(candidates)
    sel = np.concatenate([[False], candidates])[pieces]
    od = [luts[c][np.ascontiguousarray(rgb[..., c])[sel]] for c in range(3)]
    hi, lo = np.maximum(np.maximum(od[0], od[1]), od[2]), np.minimum(np.minimum(od[0], od[1]), od[2])
    dense = hi >= min_density
    idx = pieces[sel]
    total = np.bincount(idx, weights=dense, minlength=n + 1)[1:]
    grey = np.bincount(idx, weights=dense & (lo > INK_PIECE_NEUTRAL * hi), minlength=n + 1)[1:]
    return np.where(total > 0, grey / np.maximum(total, 1), 1.0)


#: Dark grey ink: brightest channel below this and saturation below this many percent (no H&E
#: stain is that unsaturated).
GREY_INK_MAX = 215
GREY_INK_SATURATION = 7


def ink_pixels(rgb: np.ndarray) -> np.ndarray:
    """Marker ink of an RGB uint8 image on white glass: :func:`pen_ink` (green, blue, near-black)
    or dark grey (the rule of the slide QC, the tumour-bed ink veto and the stain estimate)."""
    r, g, b = (np.ascontiguousarray(rgb[..., c]) for c in range(3))
    hi = np.maximum(np.maximum(r, g), b).astype(np.int16)
    spread = hi - np.minimum(np.minimum(r, g), b)
    grey = (hi < GREY_INK_MAX) & (spread * 100 < GREY_INK_SATURATION * np.maximum(hi, 1))
    return pen_ink(r, g, b) | grey


#: Ink is darker than the glass: pixels within this many grey levels of the slide's glass (or
#: paler than 235) are glass, not ink. A faded or dim scan has grey glass (208 on a contrast-0.7
#: copy; 199 on an outside tester's dim scanner) that the dark-grey ink rule would otherwise read
#: as ink around, and in the holes of, all the tissue.
INK_BELOW_GLASS = 15.0
