"""Tissue detection on a low-resolution thumbnail (about 8 µm/px).

Brightfield tissue absorbs light and is coloured; glass is bright and grey. We combine
saturation (Otsu, clamped to sane bounds) with optical density, drop pen ink by colour
(:mod:`weakstil.pen`), then clean up with morphology whose sizes are given in micrometres, so the result
does not depend on the thumbnail's resolution.

"Grey" and "coloured" are judged against the slide's own glass: scanners and labs differ in the
colour of their light (a bluish or yellowish background), so the thumbnail is first white-balanced
on the glass colour (the usual flat-field step of colour deconvolution, I0 per channel). Without it
a tinted glass reads as faintly stained tissue. Pen ink is told from haematoxylin by its absorbance
spectrum, not by its hue alone: blue markers pass blue light almost fully, while haematoxylin of
every lab absorbs a good part of it (its blue absorbance is ~0.3-0.45 of its red one), so dense
lymphocytes stay tissue however blue a lab's haematoxylin looks.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from weakstil import morphology as morph
from weakstil.glass import (  # noqa: F401 (the glass's level and colour, long imported from here)
    GLASS_CLIPPED_SHARE,
    GLASS_MAX_CHROMA,
    GLASS_MEAN_HALF_WIDTH,
    GLASS_MIN_LEVEL,
    GLASS_MIN_SHARE,
    LAMP_CAST_MAX_CHROMA,
    glass_level,
    white_balance,
)

from weakstil.pen import (  # noqa: F401 (the ink rules, long imported from here)
    BLUE_INK_MIN_OD,
    BLUE_INK_OD_RATIO,
    GREY_INK_MAX,
    GREY_INK_MIN_WIDTH_UM,
    GREY_INK_SATURATION,
    INK_BELOW_GLASS,
    drop_ink_pieces,
    grey_ink,
    ink_pixels,
    pen_ink,
)

log = logging.getLogger(__name__)

#: Bumped when the detector's result changes for the same settings (part of the embedding cache key).
#: 2: white balance on the glass, blue ink by absorbance, glass-noise cap on the saturation threshold.
#: 3: tissue running out of the image keeps its edge band; debris size capped for images smaller than debris;
#:    pen ink takes no part in the saturation threshold.
#: 4: the fat step follows gently uneven lighting (a few grey levels across the slide) and measures the
#:    glass noise about the lighting surface; a lamp's warm or cool cast is balanced up to 25 % chroma;
#:    noisy glass cut off by white has its noise and level from the lower half; the fat step's faint
#:    stain is more saturated than 95 % of the glass's own pixels.
#: 5: the glass level is sub-bin (the mean about the histogram mode, not the mode bin); the fat step
#:    needs stained tissue, and its Otsu cut glass below it; the overview is read from a level at least
#:    2x finer than the mask where that costs little (``weakstil.tiles.mask_overview_reduction``).
#: 6: marker strokes on the glass are not tissue: dark grey strokes are ink, and a piece whose summed
#:    absorbance is not H&E's (navy, grey, black; blurred or JPEG rims) is dropped.
#: 7: the same mask whatever the scan's µm/px: the overview is the finest affordable level averaged (not a
#:    stored level whose resolution and JPEG follow the scan's), and the glass level's mean settles.
#: 8: a white area outside the scanned glass (unscanned, transparent in OpenSlide; an export's white canvas) is
#:    not the glass level: it is read as the scanned glass (``weakstil.unscanned.white_as_glass``).
TISSUE_VERSION = 8
#: Saturation above the glass's own (99.5th percentile) that is stain, not scanner noise.
GLASS_SATURATION_MARGIN = 0.03
#: Blurred edges of marker strokes taken as ink beyond the strokes' own pixels (one pixel of the
#: 8 µm/px tissue mask; it was two, a 16 µm band that cut closely spaced strokes' tissue to strips).
PEN_EDGE_UM = 8.0
#: The lowest share of faint pixels in the fat window that makes fat (the Otsu cut's lower bound).
FAT_MIN_SHARE = 0.12
#: Default resolution of the tissue mask.
TISSUE_MASK_MPP = 8.0


@dataclass(frozen=True)
class TissueParams:
    """Settings of :func:`detect_tissue`; sizes in µm so they hold at any resolution."""

    min_saturation: float = 0.05  #: lower clamp for the Otsu saturation threshold
    max_saturation: float = 0.20  #: upper clamp for the Otsu saturation threshold
    min_density: float = 0.08  #: mean optical density that counts as tissue even when grey
    closing_um: float = 24.0  #: radius of the closing that joins fragments
    min_object_um2: float = 20_000.0  #: debris smaller than this is dropped (0.02 mm²)
    max_hole_um2: float = 40_000.0  #: holes smaller than this are filled (fat cells, lumina)
    remove_pen: bool = True
    fat_window_um: float = 96.0  #: window in which faint membranes make fat count as tissue
    fat_membrane_share: float = 0.22  #: share of faint pixels in that window (fallback; Otsu decides)

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def detect_tissue(rgb: np.ndarray, mpp: float, params: TissueParams | None = None) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail at ``mpp`` µm/px.

    Works on uint8/uint16 planes and compares ratios by cross-multiplying, so memory stays
    at a few bytes per pixel even for the thumbnail of a very large slide.
    """
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    from weakstil.unscanned import white_as_glass

    p = params or TissueParams()
    rgb = white_balance(white_as_glass(rgb))  # white outside the scanned area: the scanned glass
    # channels as separate planes: reductions over a trailing axis of 3 are slow in numpy.
    # A light blur removes scanner noise and JPEG speckle before thresholding.
    r, g, b = (ndi.uniform_filter(np.ascontiguousarray(rgb[..., c]), size=3) for c in range(3))
    mx = np.maximum(np.maximum(r, g), b)
    spread = mx - np.minimum(np.minimum(r, g), b)  # saturation = spread / mx
    # Optical-density thresholds on the mean intensity, as intensity sums (no per-pixel log):
    # OD > d  <=>  mean intensity < 256 * 10**-d - 1.
    total = r.astype(np.uint16) + g + b

    def od_sum(d: float) -> float:
        return 3.0 * (256.0 * 10.0 ** (-d) - 1.0)

    # Pen ink is coloured but not H&E: green/blue hues, or near-black (found here so that it takes
    # no part in the threshold: heavy marker strokes are the most saturated mode and would put the
    # split between ink and tissue, dropping pale stroma)
    ink = pen_ink(r, g, b) if p.remove_pen else np.zeros(mx.shape, bool)
    if p.remove_pen:
        # grey ink as strokes only: single grey pixels in tissue (fat's membranes under a cool lamp,
        # lilac edges) are stain
        half = max(1, int(round(GREY_INK_MIN_WIDTH_UM / (2.0 * mpp))))
        ink |= _dilate(_erode(grey_ink(r, g, b, mx, total), half), half)
    # a subsample is plenty for a histogram threshold
    sub_mx = mx[::2, ::2].astype(np.float32)
    sub_use = (sub_mx > 30) & ~ink[::2, ::2]
    candidates = (spread[::2, ::2] / np.maximum(sub_mx, 1.0))[sub_use]
    thr = p.min_saturation
    if candidates.size > 100 and np.ptp(candidates) > 1e-3:
        thr = threshold_otsu(candidates)
        # Otsu splits the two largest modes; where pink stroma and blue-purple dense nuclei are
        # both large it splits those and drops the paler stroma. Glass is the one thing below the
        # threshold that must be: its saturation is scanner noise, so a threshold clear of the
        # glass's own spread is enough.
        sub_total = total[::2, ::2][sub_use]
        glass_grey, _ = glass_level(sub_total.astype(np.float32) / 3.0)
        on_glass = np.abs(sub_total.astype(np.float32) / 3.0 - glass_grey) < 3.0
        if on_glass.sum() > 100:
            thr = min(thr, float(np.percentile(candidates[on_glass], 99.5)) + GLASS_SATURATION_MARGIN)
        thr = float(np.clip(thr, p.min_saturation, p.max_saturation))
        del sub_total, on_glass
    del sub_mx, sub_use, candidates
    mask = _ratio_above(spread, mx, thr) | (total < od_sum(p.min_density * 3))
    mask &= total < od_sum(p.min_density)
    del spread, total

    # Blurred stroke edges are caught by widening the ink mask a little.
    pen = np.zeros(mask.shape, bool)
    if p.remove_pen:
        pen = _dilate(ink, max(1, int(round(PEN_EDGE_UM / mpp))))
        mask &= ~pen
    del ink
    del r, g, b, mx

    # Fat: big empty adipocytes whose thin membranes are only faintly stained at this
    # resolution. A window dense in faint stain is tissue even where each pixel is pale. Fat lies
    # in stained tissue (its septa, the stroma around it): a slide without a debris-sized piece of
    # stained tissue is blank, and its glass's noise alone would give the faint share two "modes"
    px_area = mpp * mpp
    min_object = min(p.min_object_um2, 0.25 * mask.size * px_area)
    # (the stained pieces that are marker ink, a stroke's blurred or JPEG-speckled rim, are not tissue)
    stained = drop_ink_pieces(mask, rgb, p.min_density) if p.remove_pen and pen.any() else mask
    if p.fat_window_um > 0 and stained.sum() * px_area >= min_object:
        raw = [np.ascontiguousarray(rgb[..., c]) for c in range(3)]  # unblurred: membranes are a pixel wide
        grey_sum = raw[0].astype(np.uint16) + raw[1] + raw[2]
        glass, noise = glass_level(grey_sum[::2, ::2][~mask[::2, ::2]].astype(np.float32) / 3.0)
        # darker than the glass nearby: an unevenly lit scan's dim glass (185 at one edge, 224 at the
        # other, or 241 to 234) is not faint stain; its noise is measured about that surface (the
        # slide's one histogram also holds the lighting's spread)
        field, noise = _glass_field(grey_sum, ~mask, glass, noise)
        raw_mx = np.maximum(np.maximum(raw[0], raw[1]), raw[2])
        raw_spread = raw_mx - np.minimum(np.minimum(raw[0], raw[1]), raw[2])
        del raw
        faint = _ratio_above(raw_spread, raw_mx, max(0.03, 3.0 * noise / glass,
                                                     _glass_saturation(raw_spread, raw_mx, grey_sum, field, ~mask, noise)))
        faint |= grey_sum < 3.0 * (field - max(2.0, 2.0 * noise))
        del field
        del raw_mx, raw_spread, grey_sum
        faint &= ~mask & ~pen
        size = max(3, int(round(p.fat_window_um / mpp)) | 1)
        share = ndi.uniform_filter(faint.view(np.uint8) * np.uint8(250), size=size)  # share x 250
        del faint
        if pen.any():  # the share among the pixels the ink leaves visible: fat crossed by strokes is fat
            visible = ndi.uniform_filter((~pen).view(np.uint8) * np.uint8(250), size=size)
            share = np.minimum(share.astype(np.uint16) * 250 // np.maximum(visible, 1), 250).astype(np.uint8)
            del visible
        # glass and fat form two modes of the share; Otsu splits them, within sane bounds
        pale_share = share[::2, ::2][~mask[::2, ::2]].astype(np.float32) / 250.0
        cut = p.fat_membrane_share
        if pale_share.size > 100 and np.ptp(pale_share) > 1e-3:
            cut = float(np.clip(threshold_otsu(pale_share), FAT_MIN_SHARE, 0.5))
            # ... where there is glass: the class below the cut must be as bare as glass. A crop within
            # the tissue (no glass) has fat alone, and Otsu split the fat (lower class 0.18-0.2)
            if pale_share[pale_share <= cut].mean() >= FAT_MIN_SHARE:
                cut = FAT_MIN_SHARE
        log.debug("tissue: fat step: faint share cut %.3f", cut)
        fat = (share > cut * 250.0) & ~mask
        del share, pale_share
        # an opening drops the thin band of faint pixels that lines every tissue edge
        fat = _dilate(_erode(fat, size // 2), size // 2)
        mask |= fat
        del fat

    radius = max(1, int(round(p.closing_um / mpp)))
    # closed on a copy padded with its own edge: with the outside taken as glass, the erosion would
    # cut a band of the closing radius off tissue that runs out of the image (a cropped region)
    mask = morph.close_disk_edge(mask, radius)
    mask = morph.remove_small_holes(mask, max(1, int(p.max_hole_um2 / px_area)))
    # debris is small next to the slide: an image that is itself smaller than a debris piece (a
    # crop of a few tiles) keeps tissue that fills a good part of it (min_object, above)
    if pen.any():
        # a piece of tissue that marker strokes cut into strips is measured whole: its strips are joined
        # under the ink, and the piece is kept when its tissue (not its ink) is larger than debris
        pieces, _ = ndi.label(mask | pen)
        tissue_area = np.bincount(pieces.ravel(), weights=mask.ravel())
        mask &= tissue_area[pieces] > min_object / px_area
        mask &= ~pen
    else:
        mask = morph.remove_small_objects(mask, max(1, int(min_object / px_area)))
    if p.remove_pen:
        mask = drop_ink_pieces(mask, rgb, p.min_density)
    log.debug("tissue: saturation threshold %.3f, %.1f%% of thumbnail", thr, 100 * mask.mean())
    return mask




#: The glass brightness is taken locally, over blocks of this many thumbnail pixels, and each
#: pixel's glass is the brightest block within ``GLASS_REACH_UM`` of it: a scan lit unevenly
#: (glass 220 at one edge, 195 at the other) otherwise has its dim glass read as grey ink. The
#: reach (about a marker stroke's width) keeps a stroke's middle counted where the stroke is narrower
#: than twice it; the gradient of an uneven lamp is gentler than that.
GLASS_BLOCK_PX = 16
GLASS_REACH_UM = 400.0
#: The fat step's glass surface (:func:`_glass_field`) reaches at most this many grey levels below
#: the slide's glass, and a block this far below the surface is not glass. (Lighting that falls off
#: by only a few levels is followed too: a 7-level drift across a slide, once taken as even, made
#: the dim half of the glass "darker than the glass", hence fat.)
GLASS_FIELD_RANGE = 40.0
GLASS_FIELD_BELOW = 3.0
#: ... and the surface is taken for lighting only where it leaves the glass blocks' brightness this
#: share of the scatter that one level for the whole slide leaves (median absolute deviations).
GLASS_FIELD_EXPLAINED = 0.5


def _blocks(image: np.ndarray, fill: float, dtype: type) -> np.ndarray:
    """``image`` cut into blocks of :data:`GLASS_BLOCK_PX` (the ragged edge padded with ``fill``):
    an array of shape (block rows, block columns, pixels per block)."""
    h, w = image.shape
    b = GLASS_BLOCK_PX
    hb, wb = -(-h // b), -(-w // b)
    padded = np.full((hb * b, wb * b), fill, dtype)
    padded[:h, :w] = image
    return padded.reshape(hb, b, wb, b).transpose(0, 2, 1, 3).reshape(hb, wb, b * b)


def _row_percentiles(rows: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """``np.nanpercentile(rows, qs, axis=-1)`` (its default linear method, bit for bit) of a 2-D
    array, vectorised: numpy runs a Python loop over the rows when any holds a NaN (3,100 blocks
    of a large slide's thumbnail: 0.1 s against 0.006 s)."""
    s = np.sort(rows.astype(np.float64), axis=-1)  # NaN last
    n = np.isfinite(rows).sum(axis=-1)
    out = []
    for q in qs:
        pos = (n - 1) * (q / 100.0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        t = pos - lo
        a = np.take_along_axis(s, lo[:, None], -1)[:, 0]
        b = np.take_along_axis(s, hi[:, None], -1)[:, 0]
        d = b - a
        out.append(np.where(t >= 0.5, b - d * (1 - t), a + d * t))  # numpy's lerp, as it rounds
    return np.stack(out)


def _per_pixel(per_block: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A per-block array back at the pixels of an image of ``shape``."""
    b = GLASS_BLOCK_PX
    return np.repeat(np.repeat(per_block, b, axis=0), b, axis=1)[:shape[0], :shape[1]]


def _glass_field(grey_sum: np.ndarray, pale: np.ndarray, glass: float, noise: float) -> tuple[np.ndarray, float]:
    """Each pixel's glass brightness for the fat step, following uneven lighting.

    A smooth surface (quadratic in x and y: a lamp's fall-off) fitted to the median grey level of
    the ``pale`` pixels (not stained tissue) of each smooth block of :data:`GLASS_BLOCK_PX`; blocks well
    below the surface (fat, whose membranes darken a block's median, or faint tissue) are left out
    of the fit, again and again; then lifted onto the glass's own pixels. Where the surface does not
    explain the glass blocks' brightness (:data:`GLASS_FIELD_EXPLAINED`) the slide's ``glass``
    everywhere, as before. Never more than
    :data:`GLASS_FIELD_RANGE` below the slide's ``glass``. Returns the surface (float32, the image's
    shape) and the glass's noise about it (at most ``noise``, the slide histogram's)."""
    h, w = grey_sum.shape
    blocks = _blocks(np.where(pale, grey_sum / np.float32(3.0), np.nan), np.nan, np.float32)
    hb, wb = blocks.shape[:2]
    enough = np.isfinite(blocks).sum(axis=-1) >= blocks.shape[-1] // 2
    if enough.sum() < 6:
        return np.full((h, w), float(glass), np.float32), noise
    # glass is flat: a block of it spreads only by the scanner's noise (and a lamp's gentle slope),
    # while fat's membranes, blurred or not, and faint tissue spread it more. Blocks much rougher
    # than the smoothest fifth are left out of the fit: they bend the surface down under fat
    low, values, high = _row_percentiles(blocks[enough], (25.0, 50.0, 75.0))
    spread = high - low
    smooth = spread <= 2.0 * float(np.percentile(spread, 20)) + 0.5
    yb, xb = np.nonzero(enough)
    yb, xb, values = yb[smooth], xb[smooth], values[smooth]

    def design(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        y, x = 2.0 * y / max(hb - 1, 1) - 1.0, 2.0 * x / max(wb - 1, 1) - 1.0
        return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)

    a = design(yb.astype(np.float64), xb.astype(np.float64))
    keep = values > float(glass) - GLASS_FIELD_RANGE  # the glass, not fat or faint tissue
    coef = None
    for _ in range(4):
        # a lamp's curvature needs a dozen glass blocks; a small image (a 1 mm crop) with fewer
        # still has its slope fitted (a plane), and below 6 blocks the glass is taken as even
        terms = 6 if keep.sum() >= 12 else 3
        if keep.sum() < 6:
            break
        coef = np.zeros(6)
        coef[:terms] = np.linalg.lstsq(a[keep][:, :terms], values[keep], rcond=None)[0]
        keep = values > a @ coef - GLASS_FIELD_BELOW
    if coef is None:
        return np.full((h, w), float(glass), np.float32), noise
    # lighting is what a smooth surface explains: where it fits the glass blocks no better than one
    # level does (fat flattened by blur or JPEG bends it, evenly lit glass gives it only ripple), the
    # glass is even and keeps the slide's one glass level
    fit_scatter = float(np.median(np.abs(values[keep] - a[keep] @ coef))) if keep.any() else 0.0
    even_scatter = float(np.median(np.abs(values[keep] - np.median(values[keep])))) if keep.any() else 0.0
    log.debug("tissue: glass blocks scatter %.2f about one level, %.2f about the surface", even_scatter, fit_scatter)
    if fit_scatter > GLASS_FIELD_EXPLAINED * even_scatter:
        return np.full((h, w), float(glass), np.float32), noise
    # evaluated at every pixel (block coordinates of its centre), separably: no design matrix per pixel
    y = (2.0 * ((np.arange(h) + 0.5) / GLASS_BLOCK_PX - 0.5) / max(hb - 1, 1) - 1.0).astype(np.float32)
    x = (2.0 * ((np.arange(w) + 0.5) / GLASS_BLOCK_PX - 0.5) / max(wb - 1, 1) - 1.0).astype(np.float32)
    c = coef.astype(np.float32)
    field = (c[0] + c[1] * x + c[3] * x * x)[None, :] + (c[2] * y + c[5] * y * y)[:, None]
    field += c[4] * y[:, None] * x[None, :]
    # lifted onto the glass: by the median of the pale pixels' grey level about it, among those near
    # it (glass; faint stain and fat's membranes lie below)
    sub = (slice(None, None, 2), slice(None, None, 2))
    residual = (grey_sum[sub] / np.float32(3.0) - field[sub])[pale[sub]]
    if residual.size < 100:
        return np.full((h, w), float(glass), np.float32), noise
    _, flat_noise = glass_level(residual + np.float32(200.0))
    near = np.abs(residual) < 3.0 * max(noise, 0.5)
    field += float(np.median(residual[near])) if near.sum() >= 100 else 0.0
    log.debug("tissue: glass surface %.1f-%.1f grey levels, noise %.2f about it", field.min(), field.max(), flat_noise)
    return np.clip(field, float(glass) - GLASS_FIELD_RANGE, 255.0), min(noise, flat_noise)


#: The share of the glass's own pixels the fat step may take for faint stain by their saturation:
#: well below the smallest window share it reads as fat (0.12), the darker-than-glass test's share
#: (about 4 % at 2 noise) added.
GLASS_FAINT_SHARE = 0.05


def _glass_saturation(spread: np.ndarray, mx: np.ndarray, grey_sum: np.ndarray, field: np.ndarray,
                      pale: np.ndarray, noise: float) -> float:
    """The saturation (``spread / mx``) that only :data:`GLASS_FAINT_SHARE` of the glass's pixels
    (pale, at the glass surface's brightness) exceed: faint stain must be more saturated than
    the glass. The grey noise understates that: each channel is noisier than their mean, and a
    cast's balance stretches one channel and its noise; noisy glass under a yellow lamp had 7 % of
    its pixels over the 0.03 floor and, unevenly lit, was read as fat in windows of a blank slide."""
    sub = (slice(None, None, 2), slice(None, None, 2))
    on_glass = pale[sub] & (np.abs(grey_sum[sub] / np.float32(3.0) - field[sub]) < 2.0 * max(noise, 0.5))
    if on_glass.sum() < 100:
        return 0.0
    sat = spread[sub][on_glass].astype(np.float32) / np.maximum(mx[sub][on_glass], 1).astype(np.float32)
    return float(np.percentile(sat, 100.0 * (1.0 - GLASS_FAINT_SHARE)))


def darker_than_glass(rgb: np.ndarray, glass: float, mpp: float) -> np.ndarray:
    """Pixels (of an image at ``mpp`` µm/px) darker than the glass by ``INK_BELOW_GLASS`` grey
    levels: the glass's brightness is ``glass`` (:func:`glass_level`) or, where the slide's own
    glass is dimmer nearby (uneven lighting), that local level (:data:`GLASS_BLOCK_PX`)."""
    from scipy import ndimage as ndi

    grey = rgb[..., :3].astype(np.int16).sum(axis=-1)
    # each block's bright end (its 90th percentile), then the brightest within reach: glass
    blocks = np.percentile(_blocks(grey, 0, np.int16), 90, axis=-1)
    reach = max(1, int(round(GLASS_REACH_UM / (mpp * GLASS_BLOCK_PX))))
    local = ndi.maximum_filter(blocks, size=2 * reach + 1, mode="nearest") / 3.0
    level = np.minimum(float(glass), local)  # only ever lower (dimmer glass nearby), never above the slide's
    limit = 3 * np.minimum(235.0, level - INK_BELOW_GLASS)
    return grey < _per_pixel(limit, grey.shape)


def _ratio_above(numerator: np.ndarray, denominator: np.ndarray, ratio: float) -> np.ndarray:
    """``numerator / max(denominator, 1) > ratio`` without a float image (scaled integers)."""
    scale = 1024
    return numerator.astype(np.int32) * scale > np.maximum(denominator, 1).astype(np.int32) * int(round(ratio * scale))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by a square of side 2r+1."""
    return morph.dilate_square(mask, radius)


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    return morph.erode_square(mask, radius)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks of equal shape."""
    a = a.astype(bool)
    b = b.astype(bool)
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2.0 * (a & b).sum() / denom)
