"""Whether a slide's thumbnail is brightfield H&E worth scoring: mostly dark (fluorescence), under-exposed,
greyscale, or with tissue that is not pink/purple. Each check says why, in one phrase for its error line."""

from __future__ import annotations

import numpy as np


#: The reason a mostly dark image is not brightfield; ``weakstil score`` refuses such a slide (no number).
DARK_IMAGE = "mostly dark image (fluorescence or darkfield?); WeakSTIL expects brightfield H&E"


def brightfield_warning(thumbnail: np.ndarray, tissue_mask: np.ndarray | None = None) -> str | None:
    """A reason the image does not look like brightfield H&E, or ``None`` if it does.

    Brightfield slides have a bright background (transmitted light); fluorescence scans
    are mostly dark. H&E tissue is pink to purple: green is the weakest channel. ``tissue_mask``:
    the detector's tissue (:func:`weakstil.tissue.detect_tissue`) whose colours are judged.
    """
    rgb, brightness, tissue = _sampled_pixels(thumbnail, tissue_mask)
    if rgb.size == 0:
        return None
    if np.percentile(brightness, 90) < 120:
        return DARK_IMAGE
    if len(tissue) > 100:
        r, g, b = tissue.mean(axis=0)
        if not (g < r and g < b):
            return "tissue colours are not pink/purple; WeakSTIL expects H&E staining"
    return None


#: An under-exposed brightfield scan: its glass (the bright end, the 99th percentile, with at least
#: 5 % of the pixels within 6 grey levels of it) lies under 160, where the detector's "dense" (optical
#: density over 0.24 against white: under 147) takes it in; over 60 (fluorescence's bright end is signal).
UNDEREXPOSED_GLASS = (60.0, 160.0)


def underexposed_reason(thumbnail: np.ndarray) -> str | None:
    """Why the scan is too dark to tell tissue from glass (its glass far from white), or ``None``: the
    detector's densities are measured against white light, so all of such a slide was tissue."""
    from weakstil.glass import LAMP_CAST_MAX_CHROMA

    rgb, brightness, _ = _sampled_pixels(thumbnail)
    if brightness.size == 0:
        return None
    near = np.abs(brightness - np.percentile(brightness, 99)) <= 6.0
    level = float(np.median(brightness[near]))
    colour = np.median(rgb[near], axis=0)  # glass is grey, or a lamp's cast: a solid red image is no glass
    grey = colour.max() - colour.min() <= LAMP_CAST_MAX_CHROMA * max(float(colour.max()), 1.0)
    if grey and near.sum() >= 0.05 * brightness.size and UNDEREXPOSED_GLASS[0] <= level < UNDEREXPOSED_GLASS[1]:
        return f"is under-exposed (its glass is at {level:.0f} of 255 grey levels; brightfield glass is near white)"
    return None


#: Tissue whose colour (max - min channel) stays below this on 95 % of its pixels has none: a greyscale
#: image. H&E tissue measures tens of levels, faded or pale stains above 10; JPEG adds 1-2 to grey.
GREYSCALE_CHROMA = 6.0


def greyscale_reason(thumbnail: np.ndarray, tissue_mask: np.ndarray | None = None) -> str | None:
    """Why the image is greyscale (no colour in its tissue), or ``None`` when it has colour: the
    stains (H&E) cannot be told apart, so an sTIL score of it would mean nothing. ``tissue_mask``:
    as :func:`brightfield_warning`'s."""
    _, _, tissue = _sampled_pixels(thumbnail, tissue_mask)
    if len(tissue) <= 100:
        return None  # too little tissue to say; no tissue is its own error
    chroma = float(np.percentile(tissue.max(axis=1) - tissue.min(axis=1), 95))
    if chroma < GREYSCALE_CHROMA:
        return (f"is a greyscale image (its tissue has no colour: 95th percentile {chroma:.1f} grey levels "
                "between channels)")
    return None


#: Tissue is darker than the slide's own glass by this many grey levels (or four times the glass's
#: noise), and never paler than ``TISSUE_MAX_BRIGHTNESS``: a dim or tinted scan's glass (205, or a
#: yellow glass of 215) is glass, not grey or yellow "tissue", so a blank slide of it is "no tissue".
TISSUE_BELOW_GLASS = 10.0
TISSUE_MAX_BRIGHTNESS = 220.0
#: ... and tissue has texture: pale pixels (over 150) in a block of this many sampled pixels a side
#: whose brightness spreads (5th to 95th percentile) no more than the glass's noise allows are glass
#: under uneven light (a lamp's fall-off takes the dim side of a blank slide below any one level).
FLAT_BLOCK_PX = 8
FLAT_BLOCK_SPREAD = 6.0


def _sampled_pixels(thumbnail: np.ndarray, tissue_mask: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """About 250,000 of a thumbnail's RGB pixels (float32, N x 3), their brightness, and those of
    them that may be tissue: in ``tissue_mask`` when it is given (the detector leaves out marker
    ink, dust, a bubble's rim and a black border, none of which is tissue to judge colours by),
    else darker than the slide's glass, textured, not black."""
    from weakstil.glass import glass_level

    step = max(1, int(np.sqrt(thumbnail.shape[0] * thumbnail.shape[1] / 250_000)))  # ~250k pixels suffice
    image = thumbnail[::step, ::step, :3].astype(np.float32)
    rgb = image.reshape(-1, 3)
    brightness = rgb.mean(axis=1)
    if tissue_mask is not None:
        return rgb, brightness, rgb[np.asarray(tissue_mask, bool)[::step, ::step].ravel() & (brightness > 30)]
    glass, noise = glass_level(brightness)
    cut = min(TISSUE_MAX_BRIGHTNESS, glass - max(TISSUE_BELOW_GLASS, 4.0 * noise))
    tissue = (brightness < cut) & (brightness > 30)
    if tissue.any():
        tissue &= ~_flat_pale(image.mean(axis=-1), max(FLAT_BLOCK_SPREAD, 6.0 * noise)).ravel()
    return rgb, brightness, rgb[tissue]


def _flat_pale(grey: np.ndarray, spread: float) -> np.ndarray:
    """Pixels of ``grey`` in pale blocks (median over 150) of :data:`FLAT_BLOCK_PX` whose brightness
    spreads no more than ``spread`` from the 5th to the 95th percentile (untextured: glass)."""
    h, w = grey.shape
    b = FLAT_BLOCK_PX
    hb, wb = -(-h // b), -(-w // b)
    padded = np.pad(grey, ((0, hb * b - h), (0, wb * b - w)), mode="edge")
    blocks = padded.reshape(hb, b, wb, b).transpose(0, 2, 1, 3).reshape(hb, wb, b * b)
    lo, mid, hi = np.percentile(blocks, (5, 50, 95), axis=-1)
    flat = (hi - lo <= spread) & (mid > 150)
    return np.repeat(np.repeat(flat, b, axis=0), b, axis=1)[:h, :w]
