"""Per-slide image statistics behind the stain, focus and pen/fold flags.

Measured once per slide from its pixels, the same way at training (every training slide) and
at scoring:

* **stain**: the Macenko haematoxylin and eosin optical-density vectors and 99th-percentile
  concentrations the slide's features were made with (their ``stain`` attribute: estimated on the
  slide's own tissue tiles at the model's µm/px, :func:`weakstil.stain.estimate_slide_stain`; on
  the thumbnail below when the features have none), and the mean optical density per RGB channel
  of a 4 µm/px thumbnail's tissue pixels (coarser for slides over 6 megapixels at 4 µm/px);
* **pen and folds**, on the same thumbnail: marker ink (green/blue hues or near-black, the rule
  tissue detection uses to leave ink out, :func:`weakstil.tissue.pen_ink`, and dark grey)
  within 200 µm of the tissue, over tissue only where its optical density lies out of the plane of
  the slide's stains (:mod:`weakstil.ink_plane`), and fold-like tissue (a tissue fold doubles the section: pixels
  whose optical density is over :data:`FOLD_OD_RATIO` times the 75th percentile of the slide's
  stained tissue, not its fat, and that hold eosin as tissue does, :data:`FOLD_EOSIN_RATIO`:
  not a sheet of lymphocytes), each
  as a share of the tissue area. Thin folds are rarely caught at this resolution: the flag is
  mostly driven by ink;
* **focus**, on up to :data:`FOCUS_TILES` tissue tiles read at the model's resolution: the
  no-reference blur metric of Crête-Roffet et al. (2007: 0 sharp, 1 blurry; it compares the
  image with a re-blurred copy, so it does not depend on stain strength) of each tile's grey
  image, summed over the tile's strongest edges only (:func:`edge_blur`), and the share of tiles
  above :data:`BLURRY_TILE`;
* **sharpening**, on the same tiles: the halo a scanner's sharpening (an unsharp mask) leaves beside
  every strong edge (:func:`edge_halo`), the median over the tiles;
* **an incomplete scan**, on the thumbnail: constant fill cutting the tissue along a straight line, or lost
  tiles inside it (:mod:`weakstil.qc.scan_gap`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Resolution of the thumbnail the stain, pen and folds are measured on (µm/px).
THUMB_MPP = 4.0
#: Largest thumbnail (pixels) measured; larger slides are measured at a coarser resolution.
THUMB_MAX_PIXELS = 6_000_000
#: Tissue tiles read for the focus measure (every full tissue tile of a slide with up to this many). 48 until
#: hunt 31c: the share of blurry tiles in a sample of 48 moved with which tiles the grid cut, so the same
#: tissue rotated or mirrored read 0.21-0.40 (a 1.6 mm hard-look slide with out-of-focus patches, 112 full
#: tiles, all of them: 0.32-0.36), lost its ``blurry`` flag on one copy and moved its interval's shift.
FOCUS_TILES = 256
#: A slide with fewer full tissue tiles (>= 90 % tissue) than this has its fullest tiles measured, up to this many.
FOCUS_MIN_TILES = 48
#: A tile whose blur effect exceeds this is out of focus.
BLURRY_TILE = 0.45
#: The blur effect is summed over this top share of a tile's neighbour differences (its strongest
#: edges: nuclei, membranes). Over the whole tile (``skimage.measure.blur_effect``) smooth content
#: reads as blur: sharp wavy stroma measured 0.45-0.49 and flagged a slide ``blurry``, while a
#: Gaussian blur of sigma 3 px gave 0.54 on some tiles. On its strongest edges, in-focus tiles of
#: every Kather class, CMU-1 and our synthetic slides measure 0.05-0.35, the same tiles blurred
#: with sigma 3 px 0.53-0.82 (sigma 2: 0.32-0.72).
FOCUS_EDGE_SHARE = 0.1
#: A tile whose largest neighbour difference (grey levels, 0-255) is below this has no edge left:
#: it reads as blurred as can be (1). Without it a slide blurred far past the limit read *sharp*:
#: its strongest "edges" were the 1-level steps of 8-bit rounding, which the box blur removes (a
#: Gaussian of 25 px: blur median 0.26, in focus 0.23; fault hunt 13). In-focus tissue tiles
#: measure a largest difference of 33-150 (our looks, Kather, CMU-1, a TCGA SVS), blurred ones 2-6.
FOCUS_MIN_EDGE = 10.0
#: A slide whose edges overshoot by more than this share of their contrast (:func:`edge_halo`, median
#: over its focus tiles) is sharpened past what the model was checked on. An optical system's blur
#: (a non-negative point-spread function) cannot brighten the light side of an edge above the light
#: tissue further out; an unsharp mask does. Unsharpened synthetic scans (three looks, with noise of
#: sd 14, JPEG quality 12, a 2x coarser scan) measure -0.10 to 0.02, real scans with their scanner's
#: own mild sharpening 0.03 (a TCGA SVS), 0.08 (median of 32 Kather tiles) and 0.08-0.11 (CMU-1); an unsharp
#: mask of amount 1 at sigma 0.75 µm 0.05-0.24 (5 of 16 slides above the limit), of amount 2.5 0.19-0.74
#: (16 of 16; hunt 31a, docs/accuracy.md). A slide above it has its sharpening undone before the encoder
#: (:mod:`weakstil.unsharp`, hunt 32a).
SHARPENED_HALO = 0.15
#: Where the halo is read beside an edge (µm from it, along its gradient): the near side, the far side.
HALO_NEAR_UM, HALO_FAR_UM = 0.75, 2.0
#: Tissue pixels denser (optical density, 3 x 3 mean) than this multiple of the slide's 75th
#: percentile are fold-like: a fold doubles the section; dense nests and lymphocyte aggregates
#: stay below it.
FOLD_OD_RATIO = 2.0
#: ... the percentile of the tissue pixels that hold stain: denser than this (optical density summed
#: over RGB, 3 x 3 mean); below it a pixel of the tissue mask is fat lumen or glass. A fatty slide's
#: percentile was the fat's, and its stroma and tumour read as folds (fat over 3/4 of the tissue
#: mask: "folds 20.8 %", flagged pen_or_folds; fault hunt 13).
FOLD_STAINED_MIN = 0.15
#: ... and whose eosin (3 x 3 mean concentration) is at least this multiple of the median eosin of the
#: slide's stained tissue: a fold doubles both stains, so it holds eosin like the tissue under it
#: (doubled stroma or tumour), while a sheet of densely packed lymphocytes is dark with haematoxylin
#: alone (nuclei with little cytoplasm or stroma between). Without it an outside tester's TIL-rich slide
#: with no fold read "folds 10.8 %" and was flagged pen_or_folds (og40_013, true sTIL 77.9 %, hunt 40c):
#: its dense pixels hold a median 0.33 of the median eosin (95th percentile 0.59), the true fold pixels
#: of 8 folded hard-look slides (default and alt) a median 1.0-2.5 (5th percentile 0.43-1.65).
FOLD_EOSIN_RATIO = 0.5
#: Pixels darker than this in every channel, reaching the image's edge, are an unscanned black border.
EDGE_BLACK_LEVEL = 40
#: Ink counts when it lies within this distance of tissue (µm).
PEN_NEAR_UM = 200.0
#: ... in strokes holding ink at least this wide (µm; the tissue detector's narrowest grey stroke,
#: :data:`weakstil.pen.GREY_INK_MIN_WIDTH_UM`), narrower than the stain estimate's 40 µm
#: (:data:`weakstil.stain.INK_STROKE_MIN_WIDTH_UM`): thin lines of green ink (30 µm) across a
#: default-look slide read "ink 0.0 %" and moved its sTIL% 8.4 -> 33.1 (truth 6.9) with no flag but
#: near_threshold (hunt 37e); at 24 µm they read 10.7 %, while 63 inkless or inked synthetic slides of
#: three looks, CMU-1 and the real DICOM move by at most 1.4 points and none crosses the limit.
PEN_STROKE_MIN_WIDTH_UM = 24.0
#: Version of these measurements (stored with the training statistics; a mismatch disables the flags).
IMAGE_STATS_VERSION = 5  # 4: the stain estimated without marker ink, in the stains' plane (weakstil.stain);
# 5: the stain of the features (tissue tiles at the model's µm/px), not of the stored 4 µm/px level
# (the focus measure changed on 2026-12-02 and 2026-12-04 without a new version: the blurry flag's thresholds are
# fixed, not taken from the training slides, so a model's reference does not depend on it; so for
# the black edge left out of pen and folds on 2026-12-02: the pen_or_folds limit is fixed too)


@dataclass
class ImageStats:
    """What :func:`slide_image_stats` measures on one slide."""

    stain_h: list[float]  #: Macenko haematoxylin OD vector (unit, RGB)
    stain_e: list[float]  #: Macenko eosin OD vector
    stain_max_c: list[float]  #: 99th-percentile H and E concentrations
    stain_source: str  #: macenko, or reference when the estimate failed (too little tissue)
    od_mean: list[float]  #: mean optical density of the tissue per RGB channel
    tissue_fraction: float  #: share of the thumbnail that is tissue
    pen_share: float  #: ink pixels near tissue / tissue pixels
    fold_share: float  #: fold-like tissue pixels / tissue pixels
    blur_median: float  #: median blur effect of the sampled tissue tiles
    blurry_share: float  #: share of sampled tissue tiles above BLURRY_TILE
    focus_tiles: int  #: tiles the focus was measured on
    warnings: list[str] = field(default_factory=list)  #: e.g. "mostly dark image (fluorescence...)"
    #: median edge halo of the focus tiles (:func:`edge_halo`; NaN: not measured, a record from before hunt 31)
    halo: float = math.nan
    #: an incomplete scan (:func:`weakstil.qc.scan_gap.scan_gap`): tissue along a straight edge of constant fill
    #: (µm) and lost tiles inside the tissue (NaN, 0: not measured, a record from before hunt 38d)
    scan_cut_um: float = math.nan
    scan_lost_tiles: int = 0
    version: int = IMAGE_STATS_VERSION

    def to_dict(self) -> dict[str, Any]:
        """As JSON-safe values: an unmeasured number (NaN) is ``None`` (NaN is not JSON)."""
        def safe(v):
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return [safe(x) for x in v] if isinstance(v, list) else v

        return {k: safe(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageStats:
        def number(v):
            return math.nan if v is None else [number(x) for x in v] if isinstance(v, list) else v

        return cls(**{k: (number(d[k]) if k not in ("stain_source", "warnings") else d[k])
                      for k in cls.__dataclass_fields__ if k in d})

    def flat(self) -> dict[str, float]:
        """The numbers as one flat row (a training-statistics table)."""
        row: dict[str, float] = {}
        for name in ("stain_h", "stain_e", "od_mean"):
            for c, v in zip("rgb", getattr(self, name)):
                row[f"{name}_{c}"] = float(v)
        row["stain_max_c_h"], row["stain_max_c_e"] = (float(v) for v in self.stain_max_c)
        for name in ("tissue_fraction", "pen_share", "fold_share", "blur_median", "blurry_share"):
            row[name] = float(getattr(self, name))
        return row


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (…, 3) -> optical density (…, 3) float32 (light of 240, as weakstil.stain)."""
    from weakstil.stain import optical_density as od

    return od(rgb)


def thumbnail_stats(thumb: np.ndarray, mpp: float, tiles: np.ndarray | None = None, stain=None,
                    name: object = None, read_mpp: float | None = None, ink_mpp: float | None = None) -> dict[str, Any]:
    """Stain, pen and fold statistics of an RGB thumbnail at ``mpp`` µm/px. ``tiles``: where the
    slide's tissue tiles lie on the thumbnail (bool), the tissue when the thumbnail shows none (a
    fragment smaller than the debris size at this resolution). ``stain``: the slide's
    :class:`~weakstil.stain.SlideStain` as its features were made (estimated on the thumbnail when None).
    ``read_mpp``: µm/px of the pyramid level the thumbnail was read from (its JPEG block grid, for the scan-gap rule).
    ``ink_mpp``: the thumbnail's pixel size as the bed's ink veto reads it (the slide's width over the thumbnail's), for
    the ink test, which ``score`` then makes once for both (:func:`weakstil.ink_plane.ink_tests_kept`); default ``mpp``."""
    from scipy import ndimage as ndi

    from weakstil.ink_plane import ink_and_stain
    from weakstil.qc.scan_gap import scan_gap
    from weakstil.slide import brightfield_warning
    from weakstil.stain import estimate_stain, ink_strokes, stain_pixels
    from weakstil.tissue import TissueParams, darker_than_glass, detect_tissue, glass_level, ink_pixels

    warnings = [w for w in [brightfield_warning(thumb)] if w]
    try:
        tissue = detect_tissue(thumb, mpp, TissueParams())
    except Exception as exc:  # a blank or odd thumbnail: no tissue, reference stain
        log.debug("qc: tissue detection failed on the thumbnail (%s)", exc)
        tissue = np.zeros(thumb.shape[:2], bool)
    if not tissue.any() and tiles is not None:
        tissue = np.asarray(tiles, bool)
    ink_all = ink_pixels(thumb)
    if stain is None:
        stain = estimate_stain(thumb, stain_pixels(thumb, mpp, tissue, ink_all) if tissue.any() else None)
    n_tissue = int(tissue.sum())
    out: dict[str, Any] = {
        "stain_h": [float(v) for v in stain.he[:, 0]], "stain_e": [float(v) for v in stain.he[:, 1]],
        "stain_max_c": [float(v) for v in stain.max_c], "stain_source": stain.source,
        "tissue_fraction": float(tissue.mean()) if tissue.size else 0.0, "warnings": warnings,
    }
    if n_tissue == 0:
        out.update(od_mean=[math.nan] * 3, pen_share=0.0, fold_share=0.0, scan_cut_um=0.0, scan_lost_tiles=0)
        return out
    out["scan_cut_um"], out["scan_lost_tiles"] = scan_gap(thumb, mpp, tissue, read_mpp)
    od = optical_density(thumb[tissue])
    out["od_mean"] = [float(v) for v in od.mean(axis=0)]
    # ink: on the raw pixels near tissue (detect_tissue leaves coloured ink out of the tissue
    # mask); besides green/blue/near-black, dark grey: H&E tissue is never that unsaturated
    near = ndi.binary_dilation(tissue, iterations=max(1, int(round(PEN_NEAR_UM / mpp))))
    grey = thumb[..., :3].astype(np.int16).sum(axis=-1)
    glass, _ = glass_level(grey[::2, ::2][~tissue[::2, ::2]].astype(np.float32) / 3.0)
    edge = black_at_edge(thumb)  # a scanner's unscanned border or black padding: neither ink nor a fold
    ink = ink_all & near & darker_than_glass(thumb, glass, mpp) & ~edge
    colour_ink = ink  # what the fold measure leaves out, as before (its share moved by -3.9 to +2.3 points otherwise)
    # ... but over tissue not where the optical density lies in the plane of the slide's stains
    # (weakstil.ink_plane: markers lie 0.2-0.4 of their density out of it): there the grey is the stains'
    # mix. Blue nuclei over orange stroma average to grey at 4 µm/px and read "ink 8.7-14.3 %" on 4 slides of
    # an outside tester's blue-orange look with no ink (hunt 40i). Ink on the glass is ink whatever its colour.
    ink = ink & ~(tissue & ink_and_stain(thumb, stain.he, mpp if ink_mpp is None else ink_mpp, name)[1])
    # ... in marker strokes (weakstil.stain.ink_strokes): lone hits are specks or pale tissue edges, no
    # ink (CMU-1-Small-Region: "ink 1.0 %", all lone hits; hard alt-look slides without ink up to 2.3 %)
    out["pen_share"] = float((ink & ink_strokes(thumb, mpp, ink, lone=False, min_width_um=PEN_STROKE_MIN_WIDTH_UM)).sum()
                             / n_tissue)
    fold = fold_pixels(thumb, tissue & ~edge, colour_ink, stain)
    out["fold_share"] = float(fold.sum() / n_tissue)
    return out


def black_at_edge(rgb: np.ndarray) -> np.ndarray:
    """Near-black pixels (every channel below :data:`EDGE_BLACK_LEVEL`) connected to the image's
    edge: an unscanned border or black padding, which read as black marker ink (fault hunt 3)."""
    from scipy import ndimage as ndi

    dark = rgb[..., :3].max(axis=-1) < EDGE_BLACK_LEVEL
    if not dark.any():
        return dark
    labels, _ = ndi.label(dark)
    at_edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return np.isin(labels, at_edge[at_edge > 0])


def fold_pixels(rgb: np.ndarray, tissue: np.ndarray, ink: np.ndarray, stain=None) -> np.ndarray:
    """Fold-like ``tissue`` pixels (not ``ink``) of a thumbnail: denser than :data:`FOLD_OD_RATIO`
    times the 75th percentile of the rest's optical density, over those that hold stain
    (:data:`FOLD_STAINED_MIN`: not fat lumen or glass; all of them when none does), and holding
    eosin like the tissue (:data:`FOLD_EOSIN_RATIO`; H and E unmixed with ``stain``, the slide's
    :class:`~weakstil.stain.SlideStain`, the reference stain when None)."""
    from scipy import ndimage as ndi

    from weakstil.stain import SlideStain, concentrations

    rgb = rgb[..., :3]
    density = ndi.uniform_filter(optical_density(rgb).sum(axis=-1), size=3)
    clean = tissue & ~ink
    stained = clean & (density >= FOLD_STAINED_MIN)
    ref = stained if stained.any() else clean
    p75 = float(np.percentile(density[ref], 75)) if ref.any() else 0.0
    dense = clean & (density > FOLD_OD_RATIO * max(p75, 1e-3))
    if not dense.any():
        return dense
    eosin = ndi.uniform_filter(concentrations(rgb, stain if stain is not None else SlideStain.reference())[..., 1],
                               size=3)
    return dense & (eosin >= FOLD_EOSIN_RATIO * float(np.median(eosin[ref])))


def edge_blur(grey: np.ndarray, h_size: int = 11, edge_share: float = FOCUS_EDGE_SHARE) -> float:
    """Blur effect (0 sharp .. 1 blurry) of a grey image on its strongest edges.

    Crête-Roffet et al.'s measure: along each axis, how much of the neighbour differences a
    ``h_size`` box blur takes away (sharp edges lose much, blurred ones little), here summed only
    over the ``edge_share`` largest differences, so that smooth content does not read as blur; the
    blurrier axis counts. A tile without any difference of :data:`FOCUS_MIN_EDGE` grey levels has
    no edge to measure and reads 1 (``grey`` in grey levels 0-255)."""
    from scipy import ndimage as ndi

    img = np.asarray(grey, np.float64)
    if min(img.shape) < 3:
        return math.nan
    diffs = [np.abs(np.diff(img, axis=axis)) for axis in range(2)]
    if max(float(d.max()) for d in diffs) < FOCUS_MIN_EDGE:  # no edge at all: as blurred as can be
        return 1.0
    out = []
    for axis, diff in enumerate(diffs):
        diff_blurred = np.abs(np.diff(ndi.uniform_filter1d(img, h_size, axis=axis), axis=axis))
        edges = diff >= np.quantile(diff, 1.0 - edge_share)
        total = float(diff[edges].sum())
        if total <= 0:
            return math.nan
        out.append(1.0 - float(np.maximum(diff - diff_blurred, 0.0)[edges].sum()) / total)
    return max(out)


def tile_blur(tiles: list[np.ndarray]) -> np.ndarray:
    """Blur effect (0 sharp .. 1 blurry, :func:`edge_blur`) of each RGB tile's grey image."""
    return np.array([edge_blur(t.astype(np.float32).mean(axis=-1)) for t in tiles], np.float64)


def edge_halo(grey: np.ndarray, mpp: float, edge_share: float = 0.05) -> float:
    """How far a grey tile's strongest edges overshoot on their light side, as a share of their contrast
    (0 or below: no halo; :data:`SHARPENED_HALO`).

    At each of the ``edge_share`` strongest gradient pixels (gradient of the image smoothed by one
    pixel, at least 8 grey levels per pixel), along the gradient: (the light side :data:`HALO_NEAR_UM`
    from the edge - the light side :data:`HALO_FAR_UM` from it) / (light - dark side at
    :data:`HALO_FAR_UM`); the median over the edges. Texture on either side averages out in the median;
    an unsharp mask's halo does not. NaN when a tile has fewer than 20 such edges."""
    import cv2
    from scipy.ndimage import map_coordinates

    g = np.asarray(grey, np.float32)
    far, near = HALO_FAR_UM / mpp, HALO_NEAR_UM / mpp
    m = int(np.ceil(far)) + 1
    if min(g.shape) <= 2 * m + 2:
        return math.nan
    s = cv2.GaussianBlur(g, (0, 0), 1.0)
    gx, gy = cv2.Sobel(s, cv2.CV_32F, 1, 0, ksize=3), cv2.Sobel(s, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.hypot(gx, gy)
    inner = np.zeros(mag.shape, bool)
    inner[m:-m, m:-m] = True
    ys, xs = np.nonzero(inner & (mag >= max(float(np.quantile(mag[inner], 1 - edge_share)), 8.0)))
    if len(ys) < 20:
        return math.nan
    ny, nx = gy[ys, xs] / mag[ys, xs], gx[ys, xs] / mag[ys, xs]

    def at(d: float) -> np.ndarray:
        return map_coordinates(g, [ys + d * ny, xs + d * nx], order=1, mode="nearest")

    light_far = at(far)
    return float(np.median((at(near) - light_far) / np.maximum(light_far - at(-far), 1.0)))


def tile_halo(tiles: list[np.ndarray], mpp: float) -> np.ndarray:
    """:func:`edge_halo` of each RGB tile's grey image (ITU-R 601 luma) at ``mpp`` µm/px."""
    luma = np.array([0.299, 0.587, 0.114], np.float32)
    return np.array([edge_halo(t.astype(np.float32) @ luma, mpp) for t in tiles], np.float64)


def focus_tiles(coords: np.ndarray, tissue_fraction: np.ndarray | None, n: int = FOCUS_TILES,
                seed: int = 0, least: int = FOCUS_MIN_TILES) -> np.ndarray:
    """Indices of up to ``n`` tiles to measure focus on, drawn at random from the full tissue tiles (all
    of them when they are ``n`` or fewer); with fewer than ``least`` full tiles, the ``least`` fullest."""
    coords = np.asarray(coords)
    if len(coords) == 0:
        return np.zeros(0, np.int64)
    frac = np.ones(len(coords)) if tissue_fraction is None else np.asarray(tissue_fraction, np.float64)
    full = np.flatnonzero(frac >= 0.9)
    want = min(least, n, len(coords))
    pool = full if len(full) >= want else np.argsort(-frac, kind="stable")[:want]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(pool, size=min(n, len(pool)), replace=False))


def slide_image_stats(slide, coords: np.ndarray, tissue_fraction: np.ndarray | None, tile_px: int,
                      mpp: float, seed: int = 0, stain=None, name: object = None) -> ImageStats:
    """:class:`ImageStats` of an open :class:`~weakstil.slide.Slide` whose tiles are ``coords``
    (level-0 top-left) of ``tile_px`` pixels at ``mpp`` µm/px; ``stain``: the slide's
    :class:`~weakstil.stain.SlideStain` its features were made with (their ``stain`` attribute).
    ``name``: the slide's id in this run, named in its warnings (default: its file's name). Two files of one
    name (p1/HE.svs, p2/HE.svs, ids from a cohort CSV) were one "HE" there, and the second one's lost ink
    check, said once per slide in a run, was said at debug level only (helper h44l)."""
    w, h = slide.dimensions
    # 4 µm/px, coarser for a large slide so the thumbnail stays at about THUMB_MAX_PIXELS
    thumb_mpp = max(THUMB_MPP, float(slide.mpp), float(slide.mpp) * math.sqrt(w * h / THUMB_MAX_PIXELS))
    image = slide.read_thumbnail(thumb_mpp)
    on_thumb = np.zeros(image.shape[:2], bool)
    side = tile_px * mpp / thumb_mpp  # a tile's side in thumbnail pixels
    for x, y in np.asarray(coords, np.float64).reshape(-1, 2) * float(slide.mpp) / thumb_mpp:
        on_thumb[int(y):int(np.ceil(y + side)), int(x):int(np.ceil(x + side))] = True
    thumb = thumbnail_stats(image, thumb_mpp, tiles=on_thumb, stain=stain, name=getattr(slide, "slide_id", None) if name is None else name,
                            read_mpp=slide.level_mpp(slide.best_level_for_mpp(thumb_mpp)),
                            ink_mpp=w * float(slide.mpp) / image.shape[1])  # as weakstil.tumorbed.ink.tile_ink_share
    idx = focus_tiles(coords, tissue_fraction, seed=seed)
    tiles = [slide.read_region(int(coords[i][0]), int(coords[i][1]), int(tile_px), float(mpp)) for i in idx]
    blur = tile_blur(tiles) if tiles else np.zeros(0)
    halo = tile_halo(tiles, float(mpp)) if tiles else np.zeros(0)
    return ImageStats(
        stain_h=thumb["stain_h"], stain_e=thumb["stain_e"], stain_max_c=thumb["stain_max_c"],
        stain_source=thumb["stain_source"], od_mean=thumb["od_mean"], tissue_fraction=thumb["tissue_fraction"],
        pen_share=thumb["pen_share"], fold_share=thumb["fold_share"],
        blur_median=float(np.nanmedian(blur)) if np.isfinite(blur).any() else math.nan,
        blurry_share=float((blur > BLURRY_TILE).mean()) if len(blur) else 0.0, focus_tiles=int(len(blur)),
        warnings=thumb["warnings"], halo=float(np.nanmedian(halo)) if np.isfinite(halo).any() else math.nan,
        scan_cut_um=thumb["scan_cut_um"], scan_lost_tiles=thumb["scan_lost_tiles"])
