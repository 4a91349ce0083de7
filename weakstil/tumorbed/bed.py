"""A slide's tumour bed: its mask at low resolution and each tile's share in it.

The tumour bed is the invasive tumour plus the stroma between its nests (TILs Working Group).
Masks are stored at low resolution with their µm/px, and each tile gets the fraction of its
area inside the bed and a flag (fraction >= ``settings.TILE_IN_BED``). Its sources
(annotation, detector, a feature file's own flags, whole tissue, a precomputed bed) are resolved in
:mod:`weakstil.tumorbed.resolver`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from weakstil.settings import TILE_IN_BED
from weakstil.tiling import mask_fractions

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.files import FeaturesFile, TilesFile


class TumorBedSource(str, Enum):
    ANNOTATION = "annotation"
    MODEL = "model"
    TISSUE = "tissue"
    #: the detector's bed was empty or implausibly small: the whole tissue, with the reason in ``detail``
    TISSUE_FALLBACK = "tissue-fallback"
    #: no bed source given: the ``tumorbed`` flags the feature file itself holds (:func:`from_feature_flags`)
    FEATURE_FILE = "feature-file"


@dataclass
class TumorBed:
    """A slide's tumour bed: low-resolution mask plus per-tile fraction and flag."""

    mask: np.ndarray
    mask_mpp: float
    tile_fraction: np.ndarray
    source: TumorBedSource
    detail: str = ""  #: annotation path or model id (for a fallback: why)
    evidence: np.ndarray | None = None  #: the detector's tumour evidence per tile (after its seed vetoes), when a detector ran
    seed_vetoes: str = ""  #: what the detector's seed vetoes did, e.g. "lymphoid: 12 tiles; ink: slide not read"
    misplaced: str = ""  #: why an annotation looks misplaced (micrometres, a lower level's coordinates): a qc flag
    incomplete: str = ""  #: why a detected bed may miss part of its tumour (tumour cells joined to it outside it): a qc flag
    #: why the detector is unchecked on this slide (stained unlike its training slides, weakstil.tumorbed.look): a qc reason
    unlike_detector: str = ""
    #: (N,) bool: tiles left out of the scored area whatever the outline (crush artefact,
    #: :mod:`weakstil.crush`); None: none
    excluded: np.ndarray | None = None
    excluded_at: float | None = None  #: the crush share from which a tile is ``excluded`` (recorded with the count)
    #: the ink veto's test on this slide (weakstil.ink_plane: "stain plane", "own plane", "not checked", "colour
    #: rules"; "": no ink veto ran) and the ink-plane rule that chose it, recorded so a run can be reproduced
    ink_test: str = ""
    ink_plane_rule: int | None = None
    #: the detector's front refinement (weakstil.tumorbed.front) on this slide: "refined", "not refined: <why>"
    #: (slide not read, encoder not rebuilt, lost beyond front, implausible); "": not tried (no such detector)
    front: str = ""

    @property
    def tile_flags(self) -> np.ndarray:
        flags = self.tile_fraction >= TILE_IN_BED
        return flags if self.excluded is None else flags & ~self.excluded

    @property
    def n_excluded(self) -> int:
        """Tiles of the outline left out of the scored area (crush)."""
        return 0 if self.excluded is None else int(((self.tile_fraction >= TILE_IN_BED) & self.excluded).sum())

    @property
    def found(self) -> bool:
        return bool(self.tile_flags.any())

    def attrs(self) -> dict[str, object]:
        out = {"tumorbed_source": self.source.value, "tumorbed_detail": self.detail,
               "tumorbed_mask_mpp": float(self.mask_mpp), "tumorbed_tile_threshold": TILE_IN_BED}
        if self.seed_vetoes:
            out["tumorbed_seed_vetoes"] = self.seed_vetoes
        if self.front:
            out["tumorbed_front"] = self.front
        if self.ink_test:
            out["tumorbed_ink_test"] = self.ink_test
            out["tumorbed_ink_plane_rule"] = int(self.ink_plane_rule or 0)  # 0: not recorded (1 or 2)
        if self.excluded is not None:  # measured (tile statistics version 5 on): how many bed tiles were crush, and the rule
            out["tumorbed_crush_tiles"] = self.n_excluded
            if self.excluded_at is not None:
                out["tumorbed_crush_tile_max"] = self.excluded_at
        return out


@dataclass
class SlideGeometry:
    """What tumour-bed code needs to know about a slide and its tiles."""

    width: int
    height: int
    slide_mpp: float
    coords: np.ndarray
    tile_size_level0: float
    tissue_mask: np.ndarray
    mask_mpp: float
    #: the scanned area's corner (OpenSlide's bounds-x/-y: MIRAX), where QuPath's coordinates start
    origin: tuple[float, float] = (0.0, 0.0)
    fingerprint: str = ""  #: the scan's identity (weakstil.fingerprint), "" when not recorded
    #: the slide's path, vendor and NDPI offsets as its file records them (an NDP.view .ndpa is placed by them)
    slide: dict = field(default_factory=dict)
    #: mask-grid pixels that seed the bed whatever the tile evidence (mucin pools with clusters: hunt 47f)
    seed_pixels: np.ndarray | None = None

    @classmethod
    def from_file(cls, tiles: FeaturesFile | TilesFile) -> SlideGeometry:
        """From a feature cache or tiles file (its tissue mask must have been read)."""
        from weakstil.annotation_frame import origin_of

        return cls(int(tiles.attrs["slide_width"]), int(tiles.attrs["slide_height"]), float(tiles.attrs["slide_mpp"]),
                   np.asarray(tiles.coords), float(tiles.attrs["tile_size_level0"]),
                   np.asarray(tiles.tissue_mask).astype(bool),
                   float(tiles.attrs.get("mask_mpp", tiles.tissue_mask_mpp)), origin_of(tiles.attrs),
                   str(tiles.attrs.get("slide_fingerprint") or ""), slide_record(tiles.attrs))

    def tile_fractions(self, mask: np.ndarray, mask_mpp: float) -> np.ndarray:
        return mask_fractions(self.coords, self.tile_size_level0, mask, mask_mpp, self.slide_mpp)

    def outline_mask(self, polygons) -> np.ndarray:
        """An outline (shapely, level-0 px) rasterised on the tissue mask's grid."""
        from weakstil.annotations import rasterize

        return self.fit_mask(rasterize(polygons, self.width, self.height, self.slide_mpp, self.mask_mpp))

    def tissue_share(self, mask: np.ndarray) -> float:
        """The share of ``mask`` (on the tissue mask's grid) that lies on tissue (0 for an empty mask)."""
        return _tissue_share(mask, self.tissue_mask.astype(bool))

    def fit_mask(self, mask: np.ndarray) -> np.ndarray:
        """Resize a mask to the tissue-mask grid (nearest)."""
        if mask.shape == self.tissue_mask.shape:
            return mask.astype(bool)
        from skimage.transform import resize

        return resize(mask.astype(np.float32), self.tissue_mask.shape, order=0, anti_aliasing=False) > 0.5


def slide_record(attrs) -> dict:
    """What a tiles or feature file's ``attrs`` say of where its slide is and what it is (for an NDP.view .ndpa)."""
    from weakstil.annotation_ndpa import OFFSET_ATTRS

    return {k: attrs[k] for k in ("slide_path", "slide_vendor", *OFFSET_ATTRS) if k in attrs}


def from_annotation(path: str | Path, geom: SlideGeometry,
                    reference: Callable[[], TumorBed | None] | None = None) -> TumorBed:
    """Tumour bed from a pathologist's annotation file (clipped to tissue and slide).

    ``reference``: the detector's bed of the slide (computed only when the tissue alone does not
    show the outline misplaced), against which a lower level's coordinates are recognised."""
    from weakstil.annotation_frame import for_another_scan, to_openslide_frame, warn_if_y_up
    from weakstil.annotations import check_inside, load_polygons

    raw = to_openslide_frame(load_polygons(path, geom), path, geom)[0]  # QuPath's frame on an MRXS
    _warn_if_written_by_weakstil(path)
    polygons = check_inside(raw, geom.width, geom.height, path,
                            on_tissue=lambda copy: geom.tissue_share(geom.outline_mask(copy)))
    mask = geom.outline_mask(polygons)
    misplaced = for_another_scan(path, geom) or _warn_if_in_micrometres(raw, mask, geom, path) \
        or warn_if_y_up(raw, path, geom, given=geom.tissue_share(mask)) \
        or _warn_if_at_a_lower_level(raw, mask, geom, path) or _warn_if_a_copy_meets_the_tissue_edge(raw, mask, geom, path) \
        or _off_the_slide(raw, polygons) \
        or _warn_if_mostly_glass(mask, geom, path)
    if not misplaced and reference is not None:
        import functools

        reference = functools.cache(reference)  # the detector runs once for both checks
        misplaced = _warn_if_a_copy_fits_the_detector(raw, mask, geom, path, reference) \
            or _warn_if_the_detector_finds_it_elsewhere(mask, geom, path, reference)
    return TumorBed(mask, geom.mask_mpp, geom.tile_fractions(mask, geom.mask_mpp), TumorBedSource.ANNOTATION,
                    str(path), misplaced=misplaced)


#: An outline whose area lies this much or more off the slide is flagged ``annotation_misplaced``: no one
#: draws a tenth of a tumour bed beyond the image's edge, so its coordinates are most likely another
#: slide's, another scan's or offset (a bed 24 % or 42 % off the slide was scored without a flag, only
#: a log line said the part was ignored). Under half off: scored as clipped; half or more: refused.
OFF_SLIDE_SHARE = 0.10


def _off_the_slide(raw, clipped) -> str:
    """Why the outline looks misplaced when a tenth or more of its area lies off the slide ("" if not;
    the share was warned of by :func:`weakstil.annotations.check_inside`)."""
    share = 1.0 - clipped.area / raw.area if raw.area > 0 else 0.0
    if share < OFF_SLIDE_SHARE:
        return ""
    return (f"{100 * share:.0f}% of the annotation lies outside the slide (an outline of another slide or scan, or "
            "offset?): the bed is its part on the slide")


def _warn_if_written_by_weakstil(path: str | Path) -> None:
    """A bed outline 'tumorbed apply' wrote, passed unedited as an annotation, is scored as a
    pathologist's outline: say so when it was the detector's or a whole-tissue fallback (its own
    source, status and qc flag are those of --tumorbed-beds). QuPath's re-export drops our mark."""
    import re

    from weakstil.annotations import geojson_written_by

    if Path(path).suffix.lower() not in (".geojson", ".json") or not geojson_written_by(path):
        return
    with open(path, encoding="utf-8", errors="replace") as fh:  # the name follows the outline's vertices:
        found = re.search(r"Tumor bed \((model|tissue-fallback|tissue)\)", fh.read())  # read it all (7B #2)
    if found:
        log.warning("%s: a bed 'weakstil tumorbed apply' wrote (source %s), not an outline drawn since: read as "
                    "an annotation (score, train, evaluate: pass its folder with --tumorbed-beds to keep its source; "
                    "tumorbed train: a detector trained on it learns a detector's output, not a pathologist's)",
                    path, found.group(1))


def _tissue_share(mask: np.ndarray, tissue: np.ndarray) -> float:
    return float((mask & tissue).sum() / max(int(mask.sum()), 1))


def _warn_if_in_micrometres(raw, mask: np.ndarray, geom: SlideGeometry, path: str | Path) -> str:
    """Warn when the polygons read as micrometres fit the tissue far better than as pixels.

    QuPath and ImageScope export level-0 pixels, but scripts often write micrometres: such a bed
    is shrunk by the slide's µm/px towards the top-left corner and lands mostly on background or
    on the wrong tissue, with no error. A bed mostly off the tissue whose ×(1/mpp) copy lies on it
    is almost surely that mistake. Returns what it warned of ("" when it did not).
    """
    from shapely.affinity import scale

    tissue = geom.tissue_mask.astype(bool)
    if not mask.any() or not tissue.any() or _tissue_share(mask, tissue) >= 0.5 or geom.slide_mpp >= 1.0:
        return ""
    f = 1.0 / geom.slide_mpp
    scaled = scale(raw, xfact=f, yfact=f, origin=(0, 0))
    as_um = geom.outline_mask(scaled)
    if as_um.any() and _tissue_share(as_um, tissue) >= 0.8:
        why = (f"{100 * _tissue_share(mask, tissue):.0f}% of the annotation on tissue, {100 * _tissue_share(as_um, tissue):.0f}% "
               "if its coordinates were micrometres")
        log.warning("%s: %s; export it in level-0 pixel coordinates (× %.4g px per µm)", path, why, f)
        return why
    return ""


#: Pyramid downsamples whose export (coordinates of a lower level, not level 0) is recognised.
LEVEL_FACTORS = (2.0, 4.0)


def _warn_if_at_a_lower_level(raw, mask: np.ndarray, geom: SlideGeometry, path: str | Path) -> str:
    """Warn when the polygons look exported at a lower pyramid level (coordinates ×1/2 or ×1/4):
    part of the outline is off the tissue, while the copy scaled back by that factor fits inside the
    slide and lies on tissue almost whole. Such a bed is shrunk towards the top-left corner and can
    still land mostly on tissue, so the micrometre check above does not see it."""
    from shapely.affinity import scale

    tissue = geom.tissue_mask.astype(bool)
    given = _tissue_share(mask, tissue)
    if not mask.any() or not tissue.any() or given >= 0.9:
        return ""
    x0, y0, x1, y1 = raw.bounds
    fits = {}
    for f in LEVEL_FACTORS:
        if x1 * f > geom.width or y1 * f > geom.height:
            continue  # the copy would leave the slide: not this factor
        copy = geom.outline_mask(scale(raw, xfact=f, yfact=f, origin=(0, 0)))
        if copy.any() and _tissue_share(copy, tissue) >= max(0.97, given + 0.1):
            fits[f] = _tissue_share(copy, tissue)
    if not fits:
        return ""
    # the tissue alone cannot tell two fitting factors apart: both are named
    why = (f"{100 * given:.0f}% of the annotation on tissue, {100 * max(fits.values()):.0f}% with its coordinates "
           f"{' or '.join(f'× {f:g}' for f in fits)} (an export at a lower pyramid level?)")
    log.warning("%s: %s; export it in level-0 pixel coordinates", path, why)
    return why


#: A copy (× 2, × 4, × 1/mpp) is taken for the meant outline when this share of its border or more runs along the
#: tissue's edge (within :data:`EDGE_BAND` mask pixels of glass) while lying on tissue, and this much more than the
#: outline as given (:func:`_warn_if_a_copy_meets_the_tissue_edge`).
EDGE_HUG = 0.25
EDGE_HUG_MARGIN = 0.15
EDGE_BAND = 2


def _edge_hug(mask: np.ndarray, near_glass: np.ndarray) -> float:
    """The share of ``mask``'s border pixels that lie within :data:`EDGE_BAND` pixels of glass."""
    from scipy.ndimage import binary_erosion

    border = mask & ~binary_erosion(mask)
    return float((border & near_glass).sum() / max(int(border.sum()), 1))


def _warn_if_a_copy_meets_the_tissue_edge(raw, mask: np.ndarray, geom: SlideGeometry, path: str | Path) -> str:
    """Warn when the outline lies on tissue, but a copy scaled × 2, × 4 or × 1/mpp (a lower level's pixels,
    micrometres) lies on it as well and follows the tissue's edge along its border where the outline does
    not: a bed shrunk towards the top-left corner that still lands on tissue, which the checks above cannot
    see without a detector (synth_0000 in µm: 3 bed tiles of 13 scored, no flag; hunt 44c). The tissue's
    extent alone cannot tell it from a small bed drawn in one corner of the tissue (whose copy lies on tissue
    as often): only an outline meets the edge where the tissue ends, its shrunk copy lies inside it.
    Exact outlines of 96 synthetic slides (synth's looks, outside generators 42a, 44b; docs/scoring.md): 0
    flagged, nor 187 small beds drawn in the tissue's top-left corner, nor 932 placed on tissue at random; of
    their copies × 0.5 the checks here flag 73 of 96 (66 without this one), × 0.25 95 of 96 (93)."""
    from scipy.ndimage import binary_dilation
    from shapely.affinity import scale

    tissue = geom.tissue_mask.astype(bool)
    if not mask.any() or not tissue.any() or tissue.all():
        return ""
    near_glass = binary_dilation(~tissue, iterations=EDGE_BAND)
    hug = _edge_hug(mask, near_glass)
    x0, y0, x1, y1 = raw.bounds
    factors = {*LEVEL_FACTORS, *([round(1 / geom.slide_mpp, 4)] if geom.slide_mpp < 1 else [])}
    fits = {}
    for f in sorted(factors):
        if x1 * f > geom.width or y1 * f > geom.height:
            continue
        copy = geom.outline_mask(scale(raw, xfact=f, yfact=f, origin=(0, 0)))
        if not copy.any() or _tissue_share(copy, tissue) < 0.97:
            continue
        if (h := _edge_hug(copy, near_glass)) >= max(EDGE_HUG, hug + EDGE_HUG_MARGIN):
            fits[f] = h
    if not fits:
        return ""
    best = max(fits, key=fits.get)
    um = abs(best * geom.slide_mpp - 1) < 0.02
    why = (f"the annotation lies inside the tissue, its copy × {best:g} along the tissue's edge ({100 * fits[best]:.0f}% of "
           f"its border, {100 * hug:.0f}% as given): coordinates of "
           f"{'micrometres' if um else 'a lower pyramid level'}{' or of a level downsampled × %g' % best if um and best in LEVEL_FACTORS else ''}?")
    log.warning("%s: %s; export it in level-0 pixel coordinates (× %g), or ignore this if the bed is drawn as meant",
                path, why, best)
    return why


#: A copy of the outline (× 2 or × 4) is taken for the meant one when the detector's bed overlaps it
#: by at least this Dice, and by this much more than the outline as given.
DETECTOR_COPY_DICE = 0.5
DETECTOR_COPY_MARGIN = 0.3


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(int(a.sum()) + int(b.sum()), 1))


def _warn_if_a_copy_fits_the_detector(raw, mask: np.ndarray, geom: SlideGeometry, path: str | Path,
                                      reference: Callable[[], TumorBed | None]) -> str:
    """Warn when the outline lies on tissue but a × 2 or × 4 copy is the detector's bed, not the
    outline itself: coordinates of a lower pyramid level, or an outline drawn on the 20x scan of a
    slide now scanned at 40x, whose bed is a shrunken copy in the top-left part of the tissue. The
    tissue check above cannot see it when the shrunken copy still lies on tissue (17 of 40 × 0.5
    copies of the quick demo's exact outlines: 0-7 bed tiles scored instead of 11-33); the detector's
    bed overlaps their × 2 copy by Dice 0.75-0.96, the outline as given by 0-0.38, and no exact
    outline's copy fits the slide."""
    from shapely.affinity import scale

    x0, y0, x1, y1 = raw.bounds
    factors = [f for f in LEVEL_FACTORS if x1 * f <= geom.width and y1 * f <= geom.height]
    if not factors or not mask.any():
        return ""
    bed = reference()
    if bed is None or bed.source is not TumorBedSource.MODEL:
        return ""
    detected = geom.fit_mask(bed.mask)
    given = _dice(mask, detected)
    fits = {}
    for f in factors:
        copy = geom.outline_mask(scale(raw, xfact=f, yfact=f, origin=(0, 0)))
        d = _dice(copy, detected)
        if d >= max(DETECTOR_COPY_DICE, given + DETECTOR_COPY_MARGIN):
            fits[f] = d
    if not fits:
        return ""
    best = max(fits, key=fits.get)
    why = (f"the tumour-bed detector's bed overlaps the annotation by Dice {given:.2f}, its copy × {best:g} by "
           f"{fits[best]:.2f} (coordinates of a lower pyramid level, or drawn on a scan at {best:g}x lower "
           "magnification?)")
    log.warning("%s: %s; export it in level-0 pixel coordinates of this slide", path, why)
    return why


#: An outline of which less than this share lies on the slide's tissue is flagged ``annotation_misplaced``
#: (hunt 30c): a tumour bed is drawn around tissue. On the demo cohort each slide's own outline lies
#: 96-100 % on tissue; another slide's outline of the same size, given as its annotation, 46-100 %
#: (synthetic slides share one layout: on real ones it lies on glass more often).
MIN_TISSUE_SHARE = 0.6
#: ... and one the tumour-bed detector's bed overlaps by a Dice under this: its own outline 0.77-0.97
#: on the demo cohort (0.66 the lowest across looks, tumorbed-quality.md), another slide's 0.03-0.79.
MIN_DETECTOR_DICE = 0.2


def _warn_if_mostly_glass(mask: np.ndarray, geom: SlideGeometry, path: str | Path) -> str:
    """Why the outline looks misplaced when under :data:`MIN_TISSUE_SHARE` of it lies on tissue ("" if
    not): an outline of another slide (a scan of the same size, a file picked or renamed wrongly) lies
    wholly on this slide, so :func:`_off_the_slide` does not see it, and it was scored without a flag."""
    tissue = geom.tissue_mask.astype(bool)
    if not mask.any() or not tissue.any() or (share := _tissue_share(mask, tissue)) >= MIN_TISSUE_SHARE:
        return ""
    why = (f"only {100 * share:.0f}% of the annotation lies on tissue (an outline of another slide, or drawn on "
           "glass?): the bed is its part on tissue")
    log.warning("%s: %s; check it is this slide's outline", path, why)
    return why


def _warn_if_the_detector_finds_it_elsewhere(mask: np.ndarray, geom: SlideGeometry, path: str | Path,
                                             reference: Callable[[], TumorBed | None]) -> str:
    """Why the outline looks misplaced when the tumour-bed detector's bed barely overlaps it (Dice under
    :data:`MIN_DETECTOR_DICE`): another slide's outline lying on this slide's tissue. A flag to look at,
    not a refusal: the detector can be wrong, the outline is scored as drawn."""
    if not mask.any():
        return ""
    bed = reference()
    if bed is None or bed.source is not TumorBedSource.MODEL:
        return ""
    d = _dice(mask, geom.fit_mask(bed.mask))
    if d >= MIN_DETECTOR_DICE:
        return ""
    why = (f"the tumour-bed detector finds this slide's tumour elsewhere: its bed overlaps the annotation by Dice "
           f"{d:.2f} (an outline of another slide?)")
    log.warning("%s: %s; check it is this slide's outline (napari shows both)", path, why)
    return why


def whole_tissue(geom: SlideGeometry) -> TumorBed:
    mask = geom.tissue_mask.astype(bool)
    return TumorBed(mask, geom.mask_mpp, geom.tile_fractions(mask, geom.mask_mpp), TumorBedSource.TISSUE,
                    "whole tissue")


def from_feature_flags(features: FeaturesFile, geom: SlideGeometry) -> TumorBed | None:
    """The bed of the ``tumorbed`` flags the feature file holds (one per tile; ``None`` when it has none): with no
    bed source given, ``train`` and ``evaluate`` have always scored these tiles, so ``score`` scores them too (it
    scored the whole tissue: a model trained on 16 bed tiles of a 64-tile slide was scored over all 64). Each
    flagged tile is wholly in the bed, the others not; its mask is the flagged tiles' squares on tissue."""
    flags = getattr(features, "tumorbed", None)
    if flags is None or len(flags) != len(geom.coords):
        return None
    flags = np.asarray(flags, bool)
    mask, scale = np.zeros(geom.tissue_mask.shape, bool), geom.slide_mpp / geom.mask_mpp  # mask px per level-0 px
    for x, y in np.asarray(geom.coords, np.float64)[flags]:
        mask[int(round(y * scale)):int(round((y + geom.tile_size_level0) * scale)),
             int(round(x * scale)):int(round((x + geom.tile_size_level0) * scale))] = True
    mask &= geom.tissue_mask.astype(bool)
    return TumorBed(mask, geom.mask_mpp, flags.astype(np.float32), TumorBedSource.FEATURE_FILE,
                    f"the feature file's own tumorbed flags ({int(flags.sum())} of {len(flags)} tiles)")


def bed_without_geometry(features: FeaturesFile) -> TumorBed:
    """No bed source, and a feature file that does not record its slide's size (``slide_width``: written by
    another tool, or a test's): its own ``tumorbed`` flags, else all its tiles, as ``train`` took them; no mask."""
    n = len(features.coords)
    flags = getattr(features, "tumorbed", None)
    own = flags is not None and len(flags) == n
    fraction = (np.asarray(flags, bool) if own else np.ones(n, bool)).astype(np.float32)
    return TumorBed(np.zeros((1, 1), bool), 1.0, fraction, TumorBedSource.FEATURE_FILE if own else TumorBedSource.TISSUE,
                    "the feature file's own tumorbed flags" if own else "all tiles (the file does not place them)")


def feature_flags_request(features: str | Path | None) -> str:
    """What a bed with no source is made of, for a score's request (:meth:`~weakstil.tumorbed.resolver.BedSources.request`):
    ``tissue`` (as before helper h44d, so a slide without flags of its own keeps its score), or the feature file's own
    ``tumorbed`` flags (:func:`from_feature_flags`) by their hash. Until helper h44e a slide scored over the whole tissue
    before h44d, or whose flags were written again since, was skipped as already scored."""
    import hashlib

    from weakstil.errors import WeakSTILError
    from weakstil.files import FeaturesFile

    if features is None or not Path(features).is_file():
        return "tissue"
    try:
        cache = FeaturesFile.read(features, skip=("features", "tissue_mask", "tissue_fraction", "tile_stats",
                                                  "stroma_estimate"))
    except (WeakSTILError, OSError):
        return "tissue unreadable features"  # scored again: scoring says why
    flags = cache.tumorbed
    if flags is None or len(flags) != len(cache.coords):
        return "tissue"
    return f"feature-file flags:{hashlib.sha256(np.packbits(np.asarray(flags, bool)).tobytes()).hexdigest()[:16]}"
