"""The slide's glass: its brightness and noise (:func:`glass_level`) and its colour, balanced to grey
(:func:`white_balance`), for the tissue detector and the checks that judge pixels against the glass."""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger("weakstil.tissue")

#: The glass colour is trusted for white balance only when it is this pale and this close to grey
#: (a thumbnail full of pale pink tissue must not be balanced to grey; a dim scanner's glass, 185-200,
#: must be: its tint otherwise reads as faint stain; 160 is where an under-exposed scan is refused,
#: slide.UNDEREXPOSED_GLASS: an alt-look slide at 70 % exposure, glass 163, had 63 tiles for 47) ...
GLASS_MIN_LEVEL = 160.0
GLASS_MAX_CHROMA = 0.12
#: ... or, for a glass whose green lies between its red and blue (a warm or cool lamp, a yellowed
#: mounting medium: not a stain's colour), this close: a yellow glass of (241, 234, 212) kept its tint
#: and up to 1 mm² of glass per 1.5 mm slide was called tissue (tissue Dice 0.964 -> 0.909).
LAMP_CAST_MAX_CHROMA = 0.25
#: ... and covers at least this share of the thumbnail.
GLASS_MIN_SHARE = 0.03


def white_balance(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (uint8) with its glass made neutral grey at the glass's own brightness.

    The glass colour is the median colour of the pixels at the mode of pale brightness (the
    largest flat bright area). Gains keep the mean brightness of the glass, so an untinted slide is
    returned unchanged (the same array), and only the tint goes.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.size == 0:
        return rgb
    sub = rgb[::2, ::2]
    grey = sub.astype(np.uint16).sum(axis=-1)
    level, _ = glass_level(grey.ravel().astype(np.float32) / 3.0)
    near = np.abs(grey.astype(np.float32) / 3.0 - level) < 3.0
    if level < GLASS_MIN_LEVEL or near.mean() < GLASS_MIN_SHARE:
        return rgb
    glass = np.median(sub[near], axis=0).astype(np.float64)
    chroma = (glass.max() - glass.min()) / glass.max()
    # a lamp's (or an aged mounting medium's) cast runs from warm to cool: green lies between red and
    # blue. Stain never looks so: eosin and haematoxylin both absorb green most, so pale tissue has
    # green as its darkest channel. Such a cast is balanced up to LAMP_CAST_MAX_CHROMA.
    lamp_cast = min(glass[0], glass[2]) - 1.0 <= glass[1] <= max(glass[0], glass[2]) + 1.0
    if chroma > (LAMP_CAST_MAX_CHROMA if lamp_cast else GLASS_MAX_CHROMA):
        return rgb
    gains = glass.mean() / np.maximum(glass, 1.0)
    if np.abs(gains - 1.0).max() < 0.01:
        return rgb
    log.debug("tissue: white balance on glass %s (gains %s)", glass.round(1), gains.round(3))
    # one table per channel: no float image
    luts = [np.clip(np.round(np.arange(256) * gain), 0, 255).astype(np.uint8) for gain in gains]
    out = np.empty_like(rgb)
    for c in range(3):
        out[..., c] = luts[c][rgb[..., c]]
    return out


#: Glass is cut off by white when this share of it (pixels within 8 levels of its mode) is at 255.
GLASS_CLIPPED_SHARE = 0.1
#: The glass level is the mean of the pale pixels within this many levels of its histogram mode.
GLASS_MEAN_HALF_WIDTH = 2.0
#: ... recentred on that mean until it moves less than 0.01 levels, at most this many times.
GLASS_MEAN_MAX_STEPS = 20


def glass_level(grey: np.ndarray) -> tuple[float, float]:
    """Brightness of empty glass (the histogram mode of pale pixels) and its noise (robust std)."""
    pale = grey[grey > 150]
    if pale.size < 100:
        return 255.0, 0.0
    hist, edges = np.histogram(pale, bins=np.arange(150, 257))
    glass = float(edges[np.argmax(hist)]) + 0.5
    # sub-bin: the mean of the pale pixels about the mode, twice (the mode bin alone moved a whole
    # level with a third of a level's change in the overview, and the fat step's faint cut with it)
    # (iterated until it settles: stopped after two steps, glass lit unevenly by a few levels, a broad
    # plateau, was 232.0 or 233.0 after which of two bins its mode fell in, a 0.2-level change of the
    # overview: a scan at 0.25 instead of 0.5 µm/px, and the fat step's faint pixels with it)
    for _ in range(GLASS_MEAN_MAX_STEPS):
        about = pale[np.abs(pale - glass) <= GLASS_MEAN_HALF_WIDTH]
        if not about.size:
            break
        moved, glass = abs(float(about.mean()) - glass), float(about.mean())
        if moved < 0.01:
            break
    near = pale[np.abs(pale - glass) < 8] - glass
    # the upper half is free of faint stain: its spread is the noise ...
    upper = near[near >= 0]
    noise = float(np.sqrt(np.mean(upper**2))) if upper.size else 0.0
    # ... unless white cuts it off (a tenth of the glass at 255, its lower half spread twice as
    # wide and over a level): noisy glass near white
    # (a pyramid level subsampled without averaging keeps the scan's pixel noise) had a noise of 0.4
    # for a spread of 4, and the fat step took 78 % of the glass, darker than it by 2 levels, for fat
    at_white = float(np.mean(pale >= 254.5)) / max(float(np.mean(np.abs(pale - glass) < 8)), 1e-9)
    lower = near[near <= 0]
    lower_noise = float(np.sqrt(np.mean(lower**2))) if lower.size else 0.0
    if at_white > GLASS_CLIPPED_SHARE and lower_noise > max(1.0, 2.0 * noise):
        noise = lower_noise
        # and the mode is the white the noise piles up at, not the glass: its median is
        glass = float(np.median(pale[np.abs(pale - glass) < 3.0 * noise]))
    return glass, noise


#: A glass this tinted by a lamp's or an aged mount's cast still sets the stain's white point
#: (:func:`glass_white`): a yellowed mount of (255, 237, 178) is 0.30.
GLASS_WHITE_MAX_CHROMA = 0.4
#: ... and only a glass darker than the assumed light by more than this share in some channel (an
#: optical density of 0.02, under a tenth of Macenko's background cut): 3 of 60 hard synthetic slides'
#: glass is 239 of 240, which is the glass's noise, not another white point.
GLASS_WHITE_TOLERANCE = 0.02


def glass_white(thumb: np.ndarray, tissue: np.ndarray, io: float) -> tuple[float, float, float] | None:
    """The light through a slide's glass per channel, where a channel is darker than ``io`` by more than
    :data:`GLASS_WHITE_TOLERANCE` (each channel at most ``io``), from a thumbnail and its tissue mask: the median colour of the bare pixels
    at the glass's brightness (:func:`glass_level`). None when the glass is at ``io`` or brighter, or
    too little of it shows (a crop within tissue), or it is too dark or tinted to trust: under
    :data:`GLASS_MIN_LEVEL`, or more tinted than :data:`GLASS_MAX_CHROMA` unless a lamp's or an aged mount's
    cast (green between red and blue), up to :data:`GLASS_WHITE_MAX_CHROMA` (the tissue mask leaves pale
    tissue out here, which :func:`white_balance`, before any mask, must guard against)."""
    bare = np.asarray(thumb, np.uint8)[~np.asarray(tissue, bool)]
    if len(bare) < 100:
        return None
    grey = bare.astype(np.float32).mean(axis=-1)
    level, _ = glass_level(grey)
    near = np.abs(grey - level) < 3.0
    if level < GLASS_MIN_LEVEL or near.sum() < max(100, GLASS_MIN_SHARE * thumb.shape[0] * thumb.shape[1]):
        return None
    glass = np.median(bare[near], axis=0).astype(np.float64)
    lamp_cast = min(glass[0], glass[2]) - 1.0 <= glass[1] <= max(glass[0], glass[2]) + 1.0
    if (glass.max() - glass.min()) / glass.max() > (GLASS_WHITE_MAX_CHROMA if lamp_cast else GLASS_MAX_CHROMA) \
            or (glass >= (1.0 - GLASS_WHITE_TOLERANCE) * io).all():
        return None
    white = np.minimum(glass, io)
    return (float(white[0]), float(white[1]), float(white[2]))
