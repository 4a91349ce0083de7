"""Black outside the scanned area: read as the white glass it stands for.

OpenSlide returns the area a scanner did not scan as transparent, which every reader turns into
white glass. Many exports (a converter's TIFF of an MRXS or CZI scan, a cropped region) fill it with
black instead. The tissue detector leaves black out of the tissue, but the tiles at the tissue's
edge still held the black: the encoder, which has only ever seen tissue on glass, scored them as
something else (a 1 mm slide on black scored 11.3 % sTIL, flagged out of distribution, against
6.3 % on white, the same tissue and tiles).

:func:`black_background` says, once per slide, whether its overview has a black area that reaches
the slide's edge (the unscanned area; black pen strokes on the glass do not) while the rest of it is
brightfield (a fluorescence scan's dark background is no unscanned area). For such a slide the tissue
detector sees that area as white glass (:func:`as_glass`: where the scanned area held no glass, the
detector had taken the palest tissue for glass, and found a quarter less tissue), and the tile
readers :func:`whiten` every near-black pixel of its tiles (:class:`weakstil.decode.readers.ReadSpec`).
A brightfield H&E pixel is never this dark in all three channels: the darkest haematoxylin keeps
one channel well above it.
"""

from __future__ import annotations

import numpy as np

#: A pixel is black (the unscanned area) when none of its channels exceeds this (JPEG keeps flat
#: black within a few levels of 0).
BLACK_MAX = 24
#: The overview's µm/px for the check: the tissue overview's, whose read is reused (:func:`remember_overview`).
CHECK_MPP = 8.0
#: Share of the overview the black area reaching the edge must cover.
MIN_SHARE = 0.005
#: ... and the rest of the overview is brightfield: its 90th percentile of brightness at least this
#: (a fluorescence scan's dark background is no unscanned area; image_checks' DARK_IMAGE limit).
BRIGHTFIELD_P90 = 120
#: The coarser overview that tells whether a file made before this module is stale (read on every rerun).
STALE_CHECK_MPP = 32.0
#: What the features record (``decode`` provenance) when a slide's black was read as glass.
RECORD = "black outside the scan read as white glass"


def black_background(slide) -> bool:
    """Whether ``slide`` (an open :class:`weakstil.slide.Slide`) has a black unscanned area: near-black
    pixels connected to the overview's border over at least :data:`MIN_SHARE` of it. Computed once per
    open slide."""
    known = getattr(slide, "_black_background", None)
    if known is None:
        known = black_background_of(slide.read_thumbnail(max(CHECK_MPP, slide.mpp)))
        slide._black_background = known
    return known


def remember_overview(slide, rgb: np.ndarray) -> bool:
    """Take :func:`black_background` from an overview already read (the tissue detector's), so a
    slide without a pyramid is not read from full resolution a second time; returns it."""
    if getattr(slide, "_black_background", None) is None:
        slide._black_background = black_background_of(rgb)
    return bool(slide._black_background)


def as_glass(rgb: np.ndarray) -> np.ndarray:
    """A copy of the overview ``rgb`` with its near-black pixels and a one-pixel rim around them
    white: the tissue detector then sees the unscanned area as the transparent area it stands for
    (the rim: overview pixels that average black with the tissue's edge, darker than the tissue)."""
    from scipy import ndimage

    out = rgb.copy()
    out[ndimage.binary_dilation(rgb.max(axis=2) <= BLACK_MAX)] = 255
    return out


def black_background_of(rgb: np.ndarray) -> bool:
    """:func:`black_background` of an overview image (RGB uint8)."""
    from scipy import ndimage

    dark = rgb.max(axis=2) <= BLACK_MAX
    if dark.mean() < MIN_SHARE or dark.all():
        return False
    if np.percentile(rgb[~dark].mean(axis=1), 90) < BRIGHTFIELD_P90:  # the rest is dim: fluorescence, darkfield
        return False
    labels, _ = ndimage.label(dark)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge = edge[edge > 0]
    return bool(edge.size) and float(np.isin(labels, edge).mean()) >= MIN_SHARE


def whiten(tiles) -> None:
    """Set the near-black pixels of uint8 ``(..., 3)`` ``tiles`` (numpy, or a torch tensor) to white, in place."""
    if isinstance(tiles, np.ndarray):
        tiles[tiles.max(axis=-1) <= BLACK_MAX] = 255
        return
    tiles[tiles.amax(dim=-1) <= BLACK_MAX] = 255


def read_as_tissue_before(attrs: dict, slide) -> str | None:
    """Why a feature cache or tiles file (its ``attrs``) of ``slide`` is not reused: made by a
    WeakSTIL that read the slide's black unscanned area as pixels of the tissue overview and tiles;
    None when it is current or the slide has none. A slide without a level near :data:`CHECK_MPP`
    is not read whole for this (its file is kept)."""
    if "background" in attrs:  # made since: says how it read the slide
        return None
    black = getattr(slide, "_black_background", None)
    if black is None:  # a coarse overview (a file of a slide without black is kept on every rerun)
        level = slide.best_level_for_mpp(STALE_CHECK_MPP)
        w, h = slide.backend.level_dimensions[level]
        if w * h > 16e6:  # seconds to minutes to read: not for a file that is most likely current
            return None
        black = black_background_of(slide.read_thumbnail(max(STALE_CHECK_MPP, slide.mpp)))
    if not black:
        return None
    return ("was made by an earlier WeakSTIL, which read the slide's black unscanned area as pixels of the tissue "
            "overview and of the tiles at the tissue's edge")


# -- white outside the scanned area ------------------------------------------------------------------
#: A pixel is white (an area OpenSlide returns as transparent, which every reader composites onto white,
#: or an export's white fill) when every channel is at least this.
WHITE_MIN = 254
#: The glass beside such an area is the scanned glass when it is this far (in its own noise) below white ...
WHITE_GLASS_NOISE_GAP = 3.0
#: ... and lines at least this share of the area's rim (a crop of tissue padded with white has tissue
#: along its rim, and a scan's clipped glass at white has no separate level).
WHITE_RIM_GLASS_SHARE = 0.5


def white_outside_scan(rgb: np.ndarray) -> np.ndarray | None:
    """The white area of an overview ``rgb`` (uint8) that stands for no scan, or None.

    MRXS, Leica SCN, Philips, Ventana and sparse DICOM files hold only the scanned regions: OpenSlide
    returns the rest as transparent, read as white (255), around the scanned glass (220-250); an export
    padded onto a larger canvas or moved on it looks the same. Taken for the slide's glass, that white put
    the scanned glass 5-20 levels "darker than the glass": fat, hence tissue (the same tissue on a canvas
    2 mm larger: 111 tiles became 212, a third of them on glass), or, a thin strip of it at one edge, made
    the glass look noisy and dropped the fat instead (a white strip of 36 µm: 111 tiles became 100). It is
    such an area when pixels at :data:`WHITE_MIN` or more in every channel reach the overview's edge over
    :data:`MIN_SHARE` of it, and the rest has glass of its own, clearly darker than white, lining at least
    half the area's rim. A slide whose own glass is white (clipped) has none."""
    from scipy import ndimage

    from weakstil.glass import GLASS_MAX_CHROMA, GLASS_MIN_LEVEL, LAMP_CAST_MAX_CHROMA, glass_level

    # channels as planes (a reduction over a trailing axis of 3 is slow), statistics on every other pixel
    white = np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2]) >= WHITE_MIN
    share = float(white.mean())
    if share < MIN_SHARE or share == 1.0:
        return None
    labels, n = ndimage.label(white)
    edge = np.zeros(n + 1, bool)
    edge[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    edge[0] = False
    area = edge[labels]
    if area.mean() < MIN_SHARE:
        return None
    near = ndimage.binary_dilation(area, iterations=1)  # its rim averages white with what lies beside it
    sub = (slice(None, None, 2), slice(None, None, 2))
    rest = rgb[sub][~near[sub]]
    grey = rest.astype(np.float32).mean(axis=1)
    glass, noise = glass_level(grey)
    if glass < GLASS_MIN_LEVEL or glass + WHITE_GLASS_NOISE_GAP * max(noise, 0.5) >= WHITE_MIN - 0.5:
        return None
    # glass is grey (or a lamp's cast: green between red and blue), as white_balance trusts it; pale stain is not
    colour = np.median(rest[np.abs(grey - glass) < max(3.0, 3.0 * noise)], axis=0).astype(np.float64)
    lamp_cast = min(colour[0], colour[2]) - 1.0 <= colour[1] <= max(colour[0], colour[2]) + 1.0
    if (colour.max() - colour.min()) / max(colour.max(), 1.0) > (LAMP_CAST_MAX_CHROMA if lamp_cast else GLASS_MAX_CHROMA):
        return None
    rim = ndimage.binary_dilation(near, iterations=2) & ~near
    rim_grey = rgb[rim].astype(np.float32).mean(axis=1)
    if not rim_grey.size or np.mean(np.abs(rim_grey - glass) < max(3.0, 3.0 * noise)) < WHITE_RIM_GLASS_SHARE:
        return None
    return near


def white_as_glass(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` (an overview, uint8) with its white area outside the scan (:func:`white_outside_scan`)
    filled with pixels drawn from the scanned glass (its level's, seeded: the same fill every time), so
    that the tissue detector measures the glass's level and noise on glass; ``rgb`` itself when it has none."""
    from weakstil.glass import glass_level

    area = white_outside_scan(rgb)
    if area is None:
        return rgb
    rest = rgb[::2, ::2][~area[::2, ::2]]
    grey = rest.astype(np.float32).mean(axis=1)
    glass, noise = glass_level(grey)
    pool = rest[np.abs(grey - glass) < max(3.0, 3.0 * noise)]
    if not len(pool):
        return rgb
    out = rgb.copy()
    out[area] = pool[np.random.default_rng(0).integers(0, len(pool), int(area.sum()))]
    return out
