"""Stain of a slide: Macenko stain vectors (torchstain), stain concentrations, optional normalisation.

Each slide's haematoxylin and eosin optical-density vectors (torchstain's Macenko method) and its stain
strengths (the 0.70 quantile over tiles of each tile's 99.5th percentile, :mod:`weakstil.stain_strength`)
are estimated once, from tissue tiles read like the encoder's and averaged to 4 µm/px (:class:`SlideStain`).
With them every tile can be

* unmixed into haematoxylin and eosin concentrations relative to *its slide's* own strongest
  staining (:func:`concentrations`): a dark nucleus is dark for its slide, whatever the
  centre's stain strength or hue (used by :mod:`weakstil.tilestats`);
* re-rendered with reference stain vectors and strengths (:func:`normalise`; ``weakstil embed
  --stain-norm macenko``), so the encoder sees one stain look across centres.

Estimating per slide (not per tile) keeps a tile that is all stroma or all lymphocytes from
being "normalised" as if it held both stains. Marker ink and pixels off the plane of the two
stains are left out of the estimate (:func:`stain_pixels`, :func:`in_stain_plane`): Macenko's
vectors are the extreme angles of the pixels, which a pen stroke decides otherwise.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from enum import Enum

import numpy as np

from weakstil.stain_strength import block_mean, with_tile_strengths

log = logging.getLogger(__name__)

#: Transmitted light intensity assumed by the optical-density conversion (torchstain's default).
IO = 240.0
#: Reference stain matrix (columns H, E) and 99th-percentile concentrations: torchstain's
#: Macenko defaults, from Macenko et al.'s reference slide.
REFERENCE_HE = np.array([[0.5626, 0.2159], [0.7201, 0.8012], [0.4062, 0.5581]])
REFERENCE_MAX_C = np.array([1.9705, 1.0308])
#: Fewer tissue pixels than this: the estimate is not trusted and the reference is used.
MIN_PIXELS = 2000
#: Pixels with an optical density below this in any channel are background (Macenko's beta).
BETA = 0.15
#: Resolution the estimate is made at (µm/px): tiles are averaged to it (:func:`estimate_slide_stain`).
ESTIMATE_MPP = 4.0
#: Marker ink is left out of the estimate with this margin around it (µm): a stroke's blurred,
#: thinned edge over tissue mixes ink into pixels the ink rule does not catch ...
INK_MARGIN_UM = 24.0
#: ... around ink patches: an ink hit and its margin count as a stroke when ink pixels make up at
#: least this share of it and cover at least INK_STROKE_UM2. A stroke over tissue is detected in
#: fragments close together; the rule's scattered false hits (a navy nucleus on another lab's
#: look) are lone pixels, which a margin would grow into 15-40 % of the tissue.
INK_STROKE_SHARE = 0.1
INK_STROKE_UM2 = 320.0
#: ... and when it holds ink at least this wide (µm; :func:`broad_ink`): a marker stroke is 60 µm
#: and more across, while the rule's scattered false hits group into "strokes" of thin pieces: the
#: pale lilac rim of a real DICOM section's tissue (8 µm wide lines, 213 of its 371 tiles left out of
#: the estimate), the grey-blue fibres of the alt look's stroma (65 of 129 tiles of a slide without ink).
INK_STROKE_MIN_WIDTH_UM = 40.0
#: The slide's stain estimate also leaves out tiles within this distance (µm) of a stroke's margin
#: (:func:`estimate_tiles`): a stroke's faint edge reaches further than the colour rule sees, and
#: the tiles it grazes carry the slide's darkest "haematoxylin", so whether such a tile was in
#: moved the strengths when the overview changed a little (version 4). Clear of the stroke, the
#: tiles that come and go with a few ink pixels are ordinary tissue. A speck leaves no tile out
#: (:func:`inked_tiles`): on the real CMU-1-Small-Region slide 137 pale lilac or dark pixels, none in a
#: stroke, left out 19 of its 49 tiles and moved the haematoxylin strength by +10.6 % (version 5).
INK_TILE_GUARD_UM = 32.0
#: Pixels whose optical density lies further from the plane of the stains than this (sine of the
#: angle) are no H&E mixture (ink the colour rule misses, grey ink over tissue, glare) and are
#: left out; the plane (through the origin: Beer-Lambert mixtures are linear) is refitted on the
#: rest, PLANE_ITERATIONS times. 0.08 (4.6°): on 40 hard synthetic slides, ink already left out,
#: the eosin error fell from 8.3° to 6.3° on average (worst 30° -> 16°), on 40 default-look ones
#: from 8.5° to 8.2° (0.10: 6.9° / 8.5°; angles to the generator's own vectors).
PLANE_MAX_SINE = 0.08
PLANE_ITERATIONS = 3
#: The plane fitted on the pixels' directions replaces the one fitted on their densities when it holds
#: more of them by this share of all (:func:`stain_plane_normal`) and lies more than PLANE_SWITCH_DEG
#: (degrees) from it: on a clean slide both find about the same plane and the estimate stays as it
#: was; nearer planes share most pixels, and which holds a few more is decided by ink near the plane.
PLANE_CONSENSUS = 0.05
PLANE_SWITCH_DEG = 10.0
#: How a slide's stain is estimated, in the feature cache key: 1 all tissue pixels; 3 without
#: marker ink and its strokes' margin, and only pixels near the plane of the stains (a green pen
#: stroke over 6 % of the tissue turned the eosin vector by 30-36° on hard synthetic slides,
#: against their generator's vectors). 2 (ink with a margin around every hit) was never released.
#: 4: from the slide's own tissue tiles read at the tiles' µm/px and averaged to 4 µm/px
#: (:func:`estimate_slide_stain`), not a 4 µm/px thumbnail read from a stored reduced level:
#: identical full-resolution pixels in files whose reduced levels were written differently (another
#: JPEG quality) gave an eosin strength of 0.73-0.79 against 1.34-1.53 and scored 29.1-35.4 %,
#: flipping the call at 30 %.
#: 5: from up to 192 tiles, not 48 (:data:`ESTIMATE_TILES`), none within :data:`INK_TILE_GUARD_UM`
#: of a marker stroke: the strengths are 99th percentiles, which a few tiles of dense nuclei or of a
#: stroke's edge decide, so they followed which tiles were drawn. On 9 inked slides of another look
#: (``benchmarks/stain_stability.py``) an overview JPEG'd, 2 % brighter or darker, blurred, or its ink
#: mask a pixel off moved the haematoxylin strength by 3.4 % on average, 12.1 % at worst (now 1.0 /
#: 2.8 %), dropping 8 % of the tiles by 2.5 / 12.4 % (now 0.5 / 1.8 %).
#: 6: a tile is left out near a marker stroke, which holds ink at least :data:`INK_STROKE_MIN_WIDTH_UM`
#: across, or holding a stroke's fragments (:data:`INK_STROKE_UM2` of coloured hits), not for a speck
#: (dust, pigment, a dense nucleus, a pale tissue edge): :func:`inked_tiles`.
#: 7: the plane of the stains is also fitted on the pixels' directions, not only their densities, and
#: the plane holding clearly more pixels wins (:func:`stain_plane_normal`): a black ring over tissue, which
#: no colour rule sees, turned a hard synthetic slide's eosin vector 31° to the ink's grey (eosin
#: strength 1.715, now 0.832; 6.8° off); 15 other synthetic slides and 3 real ones are unchanged.
#: 8: densities against the slide's own glass per channel where darker than :data:`IO` (:attr:`SlideStain.white`):
#: against 240 a scan at 0.88 x exposure (glass 217) read glass and pale stroma as stain; demo model MAE
#: 1.96 -> 3.55, low-sTIL slides up to 10 points high (``benchmarks/appearance_sweep.py``).
#: 9, 10: never reuse: 9 was hunt 45f's rule (dark tiles left out; reverted, 18c25ba), 10 the rule of 11, reverted
#: (d4b8ce1): two 8-slide QC tests' held slide lay inside only by 8's H errors (x0.84; r with truth 0.73, 11: 0.98).
#: 11: the strengths are the 0.70 quantile over tiles of each tile's own 99.5th percentile, x 8's scale (hunts 46a, 47a,
#: :mod:`weakstil.stain_strength`), not the pooled 99th: a fold over 4-9 % of the tissue held that darkest 1 %, strengths
#: up to x2.00, score -37 points (hunt 45c); now x1.01-1.12 H, x0.85-1.10 E, 45c R2 0.439 -> 0.863.
STAIN_ESTIMATE_VERSION = 11
#: Tissue tiles the estimate reads, picked by a hash of their position (spread over the tissue, and
#: mostly the same tiles when a few candidates come or go): 192 tiles of 224 px averaged to 28 x 28
#: are about 150,000 pixels, read in 0.3-1 s on JPEG slides (1.4-5 ms a tile; 32 ms on a JPEG 2000
#: one). 48 before (version 4).
ESTIMATE_TILES = 192


class StainNorm(str, Enum):
    """Tile appearance before the encoder."""

    NONE = "none"
    MACENKO = "macenko"


@dataclass(frozen=True)
class SlideStain:
    """A slide's stain: optical-density vectors ``he`` (3, 2; columns H, E) and ``max_c`` (2,)."""

    he: np.ndarray
    max_c: np.ndarray
    source: str = "macenko"  #: "macenko" or "reference" (estimate failed or too little tissue)
    #: The light through the glass per channel (RGB) where darker than IO, densities taken against it (None: IO).
    white: tuple[float, float, float] | None = None

    def to_dict(self) -> dict[str, object]:
        return {"he": np.round(self.he, 6).tolist(), "max_c": np.round(self.max_c, 6).tolist(),
                "source": self.source, "method": "torchstain NumpyMacenkoNormalizer.fit", "io": IO,
                **({"white": [round(float(w), 3) for w in self.white]} if self.white is not None else {})}

    @classmethod
    def reference(cls, white: tuple[float, float, float] | None = None) -> SlideStain:
        return cls(REFERENCE_HE.copy(), REFERENCE_MAX_C.copy(), "reference", white)

    def od_offset(self) -> np.ndarray:
        """(3,) added to optical densities against :data:`IO` to make them against :attr:`white` (<= 0)."""
        return np.zeros(3) if self.white is None else np.log(np.minimum(np.asarray(self.white, np.float64), IO) / IO)

    def bias(self) -> np.ndarray:  #: (2,) added to ``optical density @ unmixing()``: concentrations against white
        return self.od_offset() @ self.unmixing()

    @classmethod
    def from_attr(cls, value: object) -> SlideStain | None:
        """The stain a feature cache records (its ``stain`` attribute, JSON of :meth:`to_dict`);
        None when it has none or it cannot be read."""
        import json

        try:
            d = json.loads(value) if isinstance(value, (str, bytes)) else value
            he, max_c = np.asarray(d["he"], np.float64), np.asarray(d["max_c"], np.float64)
        except (TypeError, ValueError, KeyError):
            return None
        if he.shape != (3, 2) or max_c.shape != (2,) or not (np.isfinite(he).all() and np.isfinite(max_c).all()):
            return None
        white = d.get("white")
        white = tuple(float(w) for w in white) if isinstance(white, list) and len(white) == 3 else None
        return cls(he, max_c, str(d.get("source", "macenko")), white)

    def unmixing(self) -> np.ndarray:
        """(3, 2) matrix taking optical densities (…, 3) to concentrations (…, 2) scaled by ``max_c``."""
        return np.linalg.pinv(self.he).T / self.max_c[None, :]


def in_stain_plane(od: np.ndarray, max_sine: float | None = None) -> np.ndarray:
    """Which optical densities (n, 3) lie within ``max_sine`` (default :data:`PLANE_MAX_SINE`) of
    the plane of the two stains (:func:`stain_plane_normal`)."""
    max_sine = PLANE_MAX_SINE if max_sine is None else max_sine
    od = np.asarray(od, np.float64)
    norm = np.linalg.norm(od, axis=1)
    if len(od) < 3:
        return norm > 0
    return np.abs(od @ stain_plane_normal(od, max_sine)) < max_sine * norm


def stain_plane_normal(od: np.ndarray, max_sine: float | None = None, start: np.ndarray | None = None) -> np.ndarray:
    """Unit normal of the plane of the two stains through the origin, for optical densities (n, 3):
    the plane is fitted (the top two eigenvectors of the uncentred second moments) on the pixels
    within ``max_sine`` of it, :data:`PLANE_ITERATIONS` times, from ``start`` (a normal the caller
    trusts) or, without one, from two fits on all the pixels: one weighting each pixel by its density
    squared (as Macenko's), one by its direction only. The second wins when its plane holds more of
    the pixels by :data:`PLANE_CONSENSUS` of them all and lies more than :data:`PLANE_SWITCH_DEG` from
    the first: stain mixtures are most of any tissue, and marker ink over it adds a density no stain
    has, so the stains' plane is the one most pixels lie near, while a dark ink ring weighs in by its
    density squared. Weighted so, a black ring over 15 % of a hard synthetic slide's tissue (25 % of
    the pixels read) pulled the plane 50° off the generator's (holding 52 % of the pixels, the
    generator's 75 %) and the eosin vector became the ink's grey (31° off)."""
    max_sine = PLANE_MAX_SINE if max_sine is None else max_sine
    od = np.asarray(od, np.float64)
    norm = np.linalg.norm(od, axis=1)
    unit = od / np.maximum(norm, 1e-12)[:, None]
    best, best_n = None, -1
    for weights in (od, unit) if start is None else (od,):
        keep = norm > 0
        normal = None if start is None else np.asarray(start, np.float64) / np.linalg.norm(start)
        for _ in range(PLANE_ITERATIONS):
            if normal is not None:
                keep = np.abs(od @ normal) < max_sine * norm
            kept = weights[keep]
            if len(kept) < 3:
                break
            _, vectors = np.linalg.eigh(kept.T @ kept / len(kept))
            normal = vectors[:, 0]
        if normal is None:
            continue
        n_in = int((np.abs(od @ normal) < max_sine * norm).sum())
        tilt = 90.0 if best is None else np.degrees(np.arccos(min(1.0, abs(float(normal @ best)))))
        if best is None or (n_in > best_n + PLANE_CONSENSUS * len(od) and tilt > PLANE_SWITCH_DEG):
            best, best_n = normal, n_in
    return best if best is not None else _reference_normal()


def _reference_normal() -> np.ndarray:
    normal = np.cross(REFERENCE_HE[:, 0], REFERENCE_HE[:, 1])
    return normal / np.linalg.norm(normal)


def estimate_stain(rgb: np.ndarray, tissue: np.ndarray | None = None,
                   white: tuple[float, float, float] | None = None) -> SlideStain:
    """Macenko stain vectors of the ``tissue`` pixels of an RGB uint8 image (a slide thumbnail),
    from the pixels in the plane of the stains (:func:`in_stain_plane`), optical densities against
    ``white`` (:attr:`SlideStain.white`)."""
    from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

    pix = rgb.reshape(-1, 3) if tissue is None else rgb[np.asarray(tissue, bool)]
    offset = SlideStain.reference(white).od_offset()
    od = -np.log((pix.astype(np.float64) + 1.0) / IO) + offset
    stained = ~np.any(od < BETA, axis=1)
    pix, od = pix[stained], od[stained]
    if white is not None:  # torchstain takes densities against IO: the pixels as they would be under it
        pix = (pix + 1.0) * np.exp(-offset) - 1.0
    if len(pix) < MIN_PIXELS:
        log.debug("stain: %d stained pixels, using the reference stain", len(pix))
        return SlideStain.reference(white)
    if len(pix) > 400_000:  # plenty for a 3x3 covariance and two percentiles; keeps it fast
        pick = np.random.default_rng(0).choice(len(pix), 400_000, replace=False)
        pix, od = pix[pick], od[pick]
    in_plane = in_stain_plane(od)
    if in_plane.sum() >= MIN_PIXELS:
        pix = pix[in_plane]
    norm = NumpyMacenkoNormalizer()
    try:
        norm.fit(pix.reshape(-1, 1, 3), Io=IO, alpha=1, beta=BETA)
    except (np.linalg.LinAlgError, ValueError) as exc:
        log.debug("stain: Macenko failed (%s), using the reference stain", exc)
        return SlideStain.reference(white)
    he = np.asarray(norm.HERef, np.float64)
    max_c = np.asarray(norm.maxCRef, np.float64)
    he = he * np.sign(he.sum(axis=0, keepdims=True))  # eigenvector signs are arbitrary
    if not (np.isfinite(he).all() and np.isfinite(max_c).all() and (max_c > 1e-3).all() and (he > -0.05).all()):
        log.debug("stain: degenerate Macenko estimate, using the reference stain")
        return SlideStain.reference(white)
    return SlideStain(he, max_c, white=white)


def stain_pixels(thumb: np.ndarray, mpp: float, tissue: np.ndarray, ink: np.ndarray | None = None) -> np.ndarray:
    """The ``tissue`` pixels of a thumbnail (``mpp`` µm/px) the stain is estimated on: without
    marker ink (:func:`weakstil.tissue.ink_pixels`), nor :data:`INK_MARGIN_UM` around its strokes.
    Macenko's vectors come from the extreme angles (1st and 99th percentiles) of the pixels in
    the stain plane, so a few per cent of pixels that are no H&E decide them. Fold-like tissue
    stays in: leaving it out also drops dense lymphocyte aggregates, the haematoxylin extreme
    (the H vector's error on clean synthetic slides grew from 6.6° to 7.4°). All of ``tissue``
    when too little would be left. ``ink``: the thumbnail's ``ink_pixels``, when the caller has them."""
    tissue = np.asarray(tissue, bool)
    clean = tissue & ~ink_strokes(thumb, mpp, ink)
    return clean if clean.sum() >= MIN_PIXELS else tissue


def ink_strokes(thumb: np.ndarray, mpp: float, ink: np.ndarray | None = None, guard_um: float = 0.0,
                lone: bool = True, min_width_um: float = INK_STROKE_MIN_WIDTH_UM) -> np.ndarray:
    """Marker ink of a thumbnail (``mpp`` µm/px) and :data:`INK_MARGIN_UM` around its strokes, and
    ``guard_um`` more around the strokes (not around lone ink hits, mostly dark nuclei). A stroke is
    a group of ink hits (:data:`INK_STROKE_SHARE`, :data:`INK_STROKE_UM2`) that holds ink at least
    ``min_width_um`` (:data:`INK_STROKE_MIN_WIDTH_UM`) across. ``lone``: the ink hits outside strokes too (pixels);
    without them only the strokes and their margins."""
    from scipy import ndimage as ndi

    from weakstil.tissue import ink_pixels

    ink = ink_pixels(thumb) if ink is None else np.asarray(ink, bool)
    margin = int(round(INK_MARGIN_UM / mpp))
    strokes = np.zeros(ink.shape, bool)
    if margin > 0 and ink.any():
        grown, n = ndi.label(ndi.binary_dilation(ink, iterations=margin))
        hits = np.bincount(grown[ink], minlength=n + 1)
        area = np.bincount(grown.ravel(), minlength=n + 1)
        stroke = (hits >= INK_STROKE_SHARE * area) & (hits >= INK_STROKE_UM2 / mpp ** 2)
        stroke[0] = False
        if stroke.any():
            broad = np.zeros(n + 1, bool)
            broad[np.unique(grown[broad_ink(ink, mpp, min_width_um)])] = True
            stroke &= broad
        strokes = stroke[grown]
        guard = int(round(guard_um / mpp))
        if guard > 0 and strokes.any():
            strokes = ndi.binary_dilation(strokes, iterations=guard)
    return ink | strokes if lone else strokes


def broad_ink(ink: np.ndarray, mpp: float, min_width_um: float = INK_STROKE_MIN_WIDTH_UM) -> np.ndarray:
    """The ``ink`` pixels (``mpp`` µm/px) in patches at least ``min_width_um`` across
    (a morphological opening with a disc of that diameter)."""
    from scipy import ndimage as ndi

    radius = max(1, int(min_width_um / (2 * mpp)))
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return ndi.binary_opening(ink, yy * yy + xx * xx <= radius * radius)


def estimate_tiles(slide, tiles) -> np.ndarray:
    """Indices of the tiles (``tiles``: a :class:`~weakstil.tiles.SlideTiles` of the open ``slide``)
    that :func:`estimate_slide_stain` reads, in order: up to :data:`ESTIMATE_TILES` of those clear of
    marker strokes by their margin and :data:`INK_TILE_GUARD_UM` on the tissue thumbnail, and holding
    less than :data:`INK_STROKE_UM2` of coloured ink hits outside strokes (:func:`inked_tiles`; all
    tiles when fewer than a quarter are clear), the ones whose position hashes lowest: spread over the
    tissue at random, and mostly the same tiles when a few candidates come or go (an evenly spaced or
    a seeded random pick would reshuffle them all)."""
    coords = np.asarray(tiles.coords)
    pick = np.arange(len(coords))
    thumb = tiles.thumbnail
    if thumb is not None and len(coords):
        inked = inked_tiles(thumb, tiles.mask_mpp, coords, tiles.tile_size_level0, float(slide.mpp))
        clean = np.flatnonzero(~inked)
        if inked.any() and len(clean) >= max(1, len(coords) // 4):
            pick = clean
    x, y = (coords[pick, i].astype(np.uint64) for i in (0, 1))
    rank = ((x * np.uint64(73856093)) ^ (y * np.uint64(19349663))) * np.uint64(0x9E3779B97F4A7C15)
    return np.sort(pick[np.argsort(rank, kind="stable")[:ESTIMATE_TILES]])


def inked_tiles(thumb: np.ndarray, mpp: float, coords: np.ndarray, tile_size_level0: float, slide_mpp: float) -> np.ndarray:
    """Which tiles (``coords``, level 0) :func:`estimate_tiles` leaves out, from the thumbnail (``mpp``
    µm/px): those within :data:`INK_TILE_GUARD_UM` of a stroke's margin (:func:`ink_strokes`), and
    those holding :data:`INK_STROKE_UM2` or more of coloured ink hits (green, blue or near-black:
    :func:`weakstil.pen.pen_ink`) outside strokes: a stroke over tissue is seen in fragments, tens of
    hits a tile, while a lone speck (dust, pigment, a dense nucleus) is a pixel or two, and the pale
    grey hits of the dark-grey rule are pale tissue edges (no marker over tissue is that pale)."""
    from weakstil.pen import pen_ink
    from weakstil.tiling import mask_fractions

    strokes = ink_strokes(thumb, mpp, guard_um=INK_TILE_GUARD_UM, lone=False)
    out = np.zeros(len(coords), bool)
    if strokes.any():
        out |= mask_fractions(coords, tile_size_level0, strokes, mpp, slide_mpp) > 0
    hits = pen_ink(*(np.ascontiguousarray(thumb[..., c]) for c in range(3))) & ~strokes
    if hits.any():
        side = max(1, int(round(tile_size_level0 * slide_mpp / mpp)))  # the tile's box in thumbnail pixels
        count = np.rint(mask_fractions(coords, tile_size_level0, hits, mpp, slide_mpp) * side * side)
        out |= count * mpp ** 2 >= INK_STROKE_UM2
    return out


def estimate_slide_stain(slide, tiles=None) -> SlideStain:
    """:func:`estimate_stain` on the tiles :func:`estimate_tiles` picks of an open
    :class:`~weakstil.slide.Slide`'s tissue tiles (``tiles``: its
    :class:`~weakstil.tiles.SlideTiles`; the default tiling's when None), read at the tiles' µm/px
    through the reader that feeds the encoder, so the estimate sees the pixels the features are
    made of, whatever the file's reduced levels hold.

    Tiles near marker ink on the tissue thumbnail are left out (:func:`estimate_tiles`). Pixels are
    not screened for ink one by one at full resolution: the ink colour rules were made for
    thumbnails and take dark, dense nuclei (the haematoxylin extreme) for ink there.

    The tiles are averaged over :data:`ESTIMATE_MPP` blocks (8 x 8 pixels at 0.5 µm/px) before the
    fit, as a clean pyramid's 4 µm/px level would be: at full resolution the 99th-percentile
    strengths follow each scan's sharpness, and an unseen look scored worse (hard -> alt-hard
    look, 3 seeds: slide R² 0.845 final / 0.814 fold ensemble, against 0.898 / 0.879 averaged and
    0.898 / 0.888 for the stored level), though its vectors were closer to the generator's."""
    from weakstil.decode.readers import plan_reader
    from weakstil.decode.workers import iter_batches_inline
    from weakstil.glass import glass_white
    from weakstil.tiles import find_tiles

    if tiles is None:
        tiles = find_tiles(slide)
    white = None if tiles.thumbnail is None else glass_white(tiles.thumbnail, tiles.tissue_mask, IO)
    if not len(tiles.coords):
        return SlideStain.reference(white)
    pick = estimate_tiles(slide, tiles)
    spec = plan_reader(slide, tiles.params.mpp, tiles.params.tile_px)
    k = max(1, int(round(ESTIMATE_MPP / tiles.params.mpp)))
    coords = np.asarray(tiles.coords)[pick]
    blocks = np.concatenate([block_mean(batch, k) for _, batch in iter_batches_inline(spec, coords, 16)])
    return with_tile_strengths(estimate_stain(blocks, white=white), blocks, io=IO, beta=BETA, min_pixels=MIN_PIXELS,
                               in_plane=in_stain_plane)


def optical_density(tiles: np.ndarray) -> np.ndarray:
    """uint8 RGB (…, 3) -> optical density (…, 3) float32, relative to :data:`IO`."""
    return -np.log((tiles.astype(np.float32) + 1.0) / np.float32(IO))


def concentrations(tiles: np.ndarray, stain: SlideStain) -> np.ndarray:
    """(…, 3) uint8 -> (…, 2) float32 H and E concentrations, 1.0 = the slide's 99th percentile."""
    return optical_density(tiles) @ stain.unmixing().astype(np.float32) + stain.bias().astype(np.float32)


@functools.lru_cache(maxsize=1)
def od_table() -> np.ndarray:
    """:func:`optical_density` of every uint8 value (float32, elementwise: looking a pixel up gives
    the same numbers bit for bit, without a logarithm per pixel)."""
    return optical_density(np.arange(256, dtype=np.uint8))


def _render_matrices(stain: SlideStain) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float32 (3, 2) optical density -> concentrations scaled to the reference strengths, (2, 3)
    concentrations -> minus the reference optical density: :func:`normalise`'s two products; and the
    (2,) concentration bias of the slide's white point (:meth:`SlideStain.bias`)."""
    unmix = (stain.unmixing() * REFERENCE_MAX_C[None, :]).astype(np.float32)
    return unmix, (-REFERENCE_HE.T).astype(np.float32), (stain.bias() * REFERENCE_MAX_C).astype(np.float32)


def normalise(tiles: np.ndarray, stain: SlideStain) -> np.ndarray:
    """Re-render uint8 RGB tiles (…, 3) with the reference stain vectors and strengths: the
    slide's concentrations (:func:`concentrations`, negatives clipped), scaled to the reference
    strengths, through the reference vectors. Optical densities by table lookup and the exponent
    in place, float32 (about 1.5x the plain expression's speed; a pixel may differ by one level)."""
    tiles = np.asarray(tiles, np.uint8)
    unmix, render, bias = _render_matrices(stain)
    c = od_table()[tiles].reshape(-1, 3) @ unmix
    if bias.any():
        c += bias
    np.maximum(c, 0.0, out=c)
    out = c @ render
    np.exp(out, out=out)
    out *= np.float32(IO)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8).reshape(tiles.shape)


#: Pixels :class:`Normaliser` renders one by one before it builds its colour table: building the
#: table costs about as much as rendering this many pixels directly (2^24 colours at a time, but in
#: large vectorised chunks), so a small slide never pays for it and a large one pays at most twice.
TABLE_AFTER_PIXELS = 12_000_000
#: Colours of the table built per step (bounds the float32 temporaries at about 50 MB).
_TABLE_CHUNK = 1 << 20


def colour_table(stain: SlideStain) -> np.ndarray:
    """:func:`normalise` of every 24-bit colour, (2^24, 3) uint8 indexed by ``r << 16 | g << 8 | b``
    (48 MiB): rendering is per pixel, so looking a pixel up gives :func:`normalise`'s value exactly."""
    table = np.empty((1 << 24, 3), np.uint8)
    low = np.arange(_TABLE_CHUNK, dtype=np.uint32)
    rgb = np.empty((_TABLE_CHUNK, 3), np.uint8)
    for first in range(0, 1 << 24, _TABLE_CHUNK):
        colours = low + np.uint32(first)
        rgb[:, 0] = colours >> 16
        rgb[:, 1] = (colours >> 8) & 255
        rgb[:, 2] = colours & 255
        table[first:first + _TABLE_CHUNK] = normalise(rgb, stain)
    return table


class Normaliser:
    """:func:`normalise` for one slide's stain, switching to a lookup in :func:`colour_table` once
    :data:`TABLE_AFTER_PIXELS` pixels have been rendered (about 5x faster per tile; the same
    pixels bit for bit, so which way a tile went never shows in its features)."""

    def __init__(self, stain: SlideStain, table_after_pixels: int | None = None):
        self.stain = stain
        self.table_after_pixels = TABLE_AFTER_PIXELS if table_after_pixels is None else int(table_after_pixels)
        self.pixels = 0  #: rendered so far, either way
        self.table: np.ndarray | None = None

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        tiles = np.asarray(tiles, np.uint8)
        n = tiles.size // 3
        if self.table is None and self.pixels + n > self.table_after_pixels:
            self.table = colour_table(self.stain)
        self.pixels += n
        if self.table is None:
            return normalise(tiles, self.stain)
        flat = tiles.reshape(-1, 3)
        index = np.left_shift(flat[:, 0], 16, dtype=np.uint32)
        index |= np.left_shift(flat[:, 1], 8, dtype=np.uint32)
        index |= flat[:, 2]
        return np.take(self.table, index, axis=0).reshape(tiles.shape)


def normalise_tensor(tiles, stain: SlideStain):
    """:func:`normalise` of a uint8 torch tensor (…, 3) on its own device (a GPU-decoded batch
    stays on the GPU); the same arithmetic in float32, so a pixel may differ by one level."""
    import torch

    dev = tiles.device
    lut = torch.from_numpy(od_table()).to(dev)
    unmix, render, bias = (torch.from_numpy(m).to(dev) for m in _render_matrices(stain))
    c = lut[tiles.reshape(-1, 3).long()] @ unmix + bias
    out = c.clamp_(min=0.0) @ render
    out.exp_().mul_(IO).clamp_(0, 255)
    return out.to(torch.uint8).reshape(tiles.shape)
