"""Correct a scored slide's tumour bed and rescore it from its cached tile scores.

A pathologist redraws the bed (polygons in level-0 pixels ``[x, y]``, as in annotation files);
the slide's sTIL% is then recomputed without the encoder or the MIL model, from the tile scores
(and attention logits) a ``weakstil score`` or ``weakstil evaluate`` file holds:

* the polygons become tile flags by the very rule ``score --annotations`` applies to an
  annotation file (:func:`weakstil.tumorbed.bed.from_annotation`): rasterised on the slide's
  tissue-mask grid, a tile is in the bed when at least ``settings.TILE_IN_BED`` of it is covered;
* the flagged tiles are aggregated by the model's own aggregator, recorded in the file
  (:func:`weakstil.mil.aggregate.aggregate`: the stroma-weighted mean with the tiles' stored
  stroma weights, the mean, or the softmax of the attention logits);
* the call is ``high`` when sTIL% >= the file's ``threshold`` (older cv and evaluate tile files, which
  do not record it: their folder's, :func:`recorded_threshold`);
* each tissue piece's own sTIL% for the bed (:attr:`BedScore.tissue_pieces`), by the rule ``score``
  writes its ``tissue_pieces`` with (:func:`weakstil.qc.pieces.of_bed`); the file's own are the scored bed's.

The corrected bed is saved as ``<slide_id>.geojson`` (QuPath GeoJSON, class ``Tumor bed``), the
format ``train``/``score``/``tumorbed train --annotations`` read, so corrected beds train the next
detector. Pure geometry and arithmetic apart from reading the score file and writing the GeoJSON.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from weakstil import settings
from weakstil.bed_file import SAVED_BY, bed_file, check_bed_file  # noqa: F401 (SAVED_BY, bed_file: re-exported)
from weakstil.errors import WeakSTILError
from weakstil.tumorbed.bed import SlideGeometry, slide_record

log = logging.getLogger(__name__)

#: The QuPath class the saved bed gets (matched by :data:`weakstil.annotations.TUMOR_BED_NAMES`).
BED_CLASS = "Tumor bed"
#: Outline simplification when a bed mask becomes editable polygons, in mask pixels: under half a
#: pixel, so Rescore of an unedited bed gives the scored number (0.5 moved ~20 pixels per bed).
OUTLINE_TOLERANCE_PX = 0.25

Ring = np.ndarray  #: (n, 2) float level-0 ``[x, y]`` vertices of a polygon
#: What a ring of an edited bed is: a part of the bed, or a hole cut out of what is drawn before it.
BED_PART, HOLE_PART = "bed", "hole"


@dataclass(frozen=True)
class BedScore:
    """A slide rescored with an edited tumour bed."""

    stil: float  #: NaN when no tile lies in the bed
    stil_high: bool | None  #: None when there is no score
    threshold: float
    aggregator: str
    n_bed_tiles: int
    n_tiles: int
    tile_flags: np.ndarray  #: (N,) bool, in the file's tile order
    threshold_default: bool = False  #: the file and its folder record no threshold: the default is used
    #: each tissue piece's own sTIL% with this bed, as a score file's ``tissue_pieces`` (empty: one piece, or no bed)
    tissue_pieces: list = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.n_bed_tiles > 0

    def label(self) -> str:
        if not self.found:
            return "no tumour bed"
        # the number goes with "threshold": "(the default threshold, the file records none 30 %)" read as garble
        which = ": the default threshold, the file records none" if self.threshold_default else ""
        from weakstil.metrics import stil_text

        return (f"sTIL {stil_text(self.stil, self.threshold)} % · {'high' if self.stil_high else 'low'} "
                f"(threshold {self.threshold:g} %{which})")


@dataclass
class ScoredTiles:
    """What rescoring needs from a score file, read once (an editor keeps it between rescores)."""

    path: Path | None
    slide_id: str
    tile_scores: np.ndarray  #: (N,) float32 0-100, the tiles' own scores (what the model aggregates)
    logits: np.ndarray | None  #: (N,) attention logits (attention aggregator), -inf where unknown
    stroma: np.ndarray | None  #: (N,) stroma weights 0-1 (stroma aggregator)
    known: np.ndarray | None  #: (N,) bool: tiles whose logit is known (None: all)
    aggregator: str
    threshold: float
    geometry: SlideGeometry
    original_stil: float | None
    original_flags: np.ndarray | None
    original_mask: np.ndarray | None = None  #: the file's bed on a low-resolution grid
    original_mask_mpp: float | None = None
    threshold_default: bool = False  #: no threshold recorded (nor beside the file): settings.STIL_THRESHOLD
    prior_stroma: float = 0.0  #: the blend of the published tile scores (:meth:`tile_estimates`)
    #: the slide's tissue pieces and each tile's (:func:`weakstil.qc.pieces.slide_pieces`), found at the first rescore
    piece_layout: tuple | None = None
    #: (N,) bool: tiles ``score`` left out of any bed (crush artefact, :mod:`weakstil.crush`); None: none recorded
    excluded: np.ndarray | None = None

    @classmethod
    def read(cls, path: str | Path) -> ScoredTiles:
        """From a ``weakstil score`` slide-score file or a ``train``/``evaluate`` tile-score file."""
        from weakstil.files import read_any

        path = Path(path)
        f = read_any(path, skip=("features",))
        if f.KIND not in ("slide_scores", "tile_scores"):
            raise WeakSTILError(f"is a {f.WHAT}, which holds no tile scores", path=path,
                                fix="open the <slide_id>.h5 that 'weakstil score' wrote")
        return cls.from_file(f, path)

    @classmethod
    def from_file(cls, f, path: Path | None = None) -> ScoredTiles:
        from weakstil.crush import PACKED_ATTR, unpacked

        attrs = dict(f.attrs)
        where = path or f.path or attrs.get("slide_id", "score file")
        for key in ("slide_width", "slide_height", "slide_mpp"):
            if attrs.get(key) is None:
                raise WeakSTILError(f"does not record '{key}', so a bed cannot be placed on its tiles", path=where,
                                    fix="score the slide again with this version of 'weakstil score'")
        aggregator = str(attrs.get("aggregator") or settings.AGGREGATOR)
        flags = None if f.tumorbed is None else np.asarray(f.tumorbed, bool)
        logits, known = None, None
        if aggregator == "attention":
            logits, known = _attention_logits(f, flags, where)
        stroma = None
        if aggregator == "stroma":
            stroma = getattr(f, "stroma_weight", None)
            if stroma is None:
                raise WeakSTILError("was scored by a stroma-weighted model but holds no stroma weights", path=where,
                                    fix="score the slide again with this version of 'weakstil score'")
            stroma = np.asarray(stroma, np.float32)
        scores = np.asarray(_model_scores(f), np.float32)
        for what, values in (("tile scores", scores), ("stroma weights", stroma)):
            bad = 0 if values is None else int((~np.isfinite(values)).sum())
            if bad:  # a damaged file: a rescore over them read "sTIL nan %" without a word
                raise WeakSTILError(f"holds {bad} non-finite {what} (of {len(values)}): the file is damaged",
                                    path=where, fix="score the slide again ('weakstil score')")
        stil = attrs.get("stil", attrs.get("stil_pred"))
        geom = _geometry(f)
        mask, mask_mpp = getattr(f, "tumorbed_mask", None), getattr(f, "tumorbed_mask_mpp", None)
        if (mask is None or not mask_mpp or not np.any(mask)) and flags is not None:
            mask, mask_mpp = _tile_mask(geom, flags)  # no pixel mask: the bed tiles themselves
        threshold = recorded_threshold(attrs, path or f.path)
        # files holding only the published scores were written before the blend: those are the tiles' own
        blended = stroma is not None and getattr(f, "tile_scores_model", None) is not None
        return cls(path=path or f.path, slide_id=str(attrs.get("slide_id", Path(str(where)).stem)),
                   tile_scores=scores, logits=logits, stroma=stroma, known=known,
                   aggregator=aggregator, threshold=settings.STIL_THRESHOLD if threshold is None else threshold,
                   geometry=geom, original_stil=None if stil is None or stil != stil else float(stil),
                   original_flags=flags, original_mask=None if mask is None else np.asarray(mask, bool),
                   original_mask_mpp=None if mask_mpp is None else float(mask_mpp), threshold_default=threshold is None,
                   prior_stroma=float(attrs.get("tile_prior_stroma", settings.TILE_PRIOR_STROMA)) if blended else 0.0,
                   excluded=unpacked(attrs.get(PACKED_ATTR), len(scores)))

    def rescore(self, polygons: Sequence[Ring], holes: Sequence[Ring] = (), clip: bool = False) -> BedScore:
        """The slide's sTIL% with the bed ``polygons`` minus ``holes`` (level-0 ``[x, y]`` rings).
        ``clip``: shapes drawn over the slide (napari) are cut to it, however far they overshoot; else
        a bed mostly off the slide is refused as an annotation in the wrong units would be."""
        return self.rescore_shape(bed_shape(polygons, holes), clip)

    def rescore_parts(self, rings: Sequence[Ring], parts: Sequence[str], clip: bool = False) -> BedScore:
        """:meth:`rescore` with the bed drawn in order (:func:`ordered_bed_shape`): a bed ring drawn
        inside an earlier hole is bed again."""
        return self.rescore_shape(ordered_bed_shape(rings, parts), clip)

    def rescore_shape(self, shape, clip: bool = False) -> BedScore:
        """:meth:`rescore` with the bed as a shapely geometry (level-0 px)."""
        if clip:
            shape = clip_to_slide(shape, self.geometry.width, self.geometry.height)
        flags = bed_tile_flags(shape, self.geometry, where=self.path or self.slide_id)
        return self.score_flags(flags)

    def score_flags(self, flags: np.ndarray) -> BedScore:
        """The slide's sTIL% with the tiles ``flags`` as its bed."""
        flags = np.asarray(flags, bool)
        if self.excluded is not None:  # as 'score' scored it: crush tiles are never scored
            flags = flags & ~self.excluded
        if self.known is not None and (flags & ~self.known).any():
            raise WeakSTILError(
                f"the edited bed takes in {int((flags & ~self.known).sum())} tiles outside the original bed, whose "
                "attention this file does not record", path=self.path or self.slide_id,
                fix="score the slide again with this version of 'weakstil score' (it records every tile's attention)")
        from weakstil.metrics import called_high  # scipy.stats: not at import

        n = int(flags.sum())
        stil = aggregate_bed(self.tile_scores, flags, self.logits, self.stroma, self.aggregator) if n else math.nan
        from weakstil.qc.pieces import of_bed

        return BedScore(stil=stil, stil_high=bool(called_high(stil, self.threshold)) if n else None, threshold=self.threshold,
                        aggregator=self.aggregator, n_bed_tiles=n, n_tiles=len(flags), tile_flags=flags,
                        threshold_default=self.threshold_default, tissue_pieces=of_bed(self, flags))

    def tile_estimates(self, flags: np.ndarray) -> np.ndarray:
        """Each tile's published sTIL% with the tiles ``flags`` as the bed: a stroma model's tile
        scores are blended towards the bed's sTIL% (:func:`weakstil.mil.aggregate.tile_estimates`,
        as ``weakstil score`` publishes them), so they change with the bed; other models' do not."""
        from weakstil.mil.aggregate import tile_estimates

        return tile_estimates(self.tile_scores, self.stroma, np.asarray(flags, bool), prior_stroma=self.prior_stroma)

    def bed_rings(self, tolerance_px: float = OUTLINE_TOLERANCE_PX) -> tuple[list[Ring], list[Ring]]:
        """The file's own bed as editable polygons and holes (level-0 ``[x, y]``; an island inside a
        hole is among the polygons, so :meth:`bed_parts` keeps it, ``bed_shape`` does not)."""
        rings, parts = self.bed_parts(tolerance_px)
        return ([r for r, k in zip(rings, parts) if k == BED_PART], [r for r, k in zip(rings, parts) if k == HOLE_PART])

    def bed_parts(self, tolerance_px: float = OUTLINE_TOLERANCE_PX) -> tuple[list[Ring], list[str]]:
        """The file's own bed as rings in drawing order (outlines, their holes, islands in those
        holes, ...) and each ring's part, for :func:`ordered_bed_shape`."""
        if self.original_mask is None or not self.original_mask_mpp or not self.original_mask.any():
            return [], []
        return _mask_rings(self.original_mask, self.original_mask_mpp, self.geometry.slide_mpp, tolerance_px)


def recorded_threshold(attrs: dict, path: str | Path | None) -> float | None:
    """The sTIL-high threshold a score file was called at: its ``threshold`` attribute, else (a
    ``train`` cv/tiles or ``evaluate`` tiles file written before the files recorded it) the one its
    folder's ``metrics.json`` was called at, else the model.json beside ``cv/``; None when none says."""
    import json

    if attrs.get("threshold") is not None:
        return float(attrs["threshold"])
    if path is None or Path(path).parent.name != "tiles":
        return None
    folder = Path(path).parent.parent  # MODEL/cv or the evaluation's folder
    for meta in (folder / "metrics.json", *([folder.parent / "model.json"] if folder.name == "cv" else [])):
        try:
            value = json.loads(meta.read_text(encoding="utf-8-sig")).get("threshold")
            if value is not None:
                return float(value)
        except (OSError, ValueError, TypeError, AttributeError):  # absent or unreadable: the next, else unknown
            continue
    return None


def rescore_with_bed(tile_scores_file: str | Path, polygons: Sequence[Ring], holes: Sequence[Ring] = ()) -> BedScore:
    """Recompute a scored slide's sTIL%, high/low call and bed tile count with an edited tumour bed.

    ``polygons`` and ``holes``: level-0 ``[x, y]`` rings; the bed is their union minus the holes.
    Uses the file's own aggregator and threshold (its attributes)."""
    tiles = read_scored_tiles(tile_scores_file)
    return tiles.rescore(polygons, holes)


def read_scored_tiles(path: str | Path) -> ScoredTiles:
    """A score file's tiles, ready for rescoring (:meth:`ScoredTiles.read`)."""
    return ScoredTiles.read(path)


# -- geometry -------------------------------------------------------------------------------
def bed_shape(polygons: Sequence[Ring], holes: Sequence[Ring] = ()):
    """The bed as one valid shapely geometry: union of ``polygons`` minus union of ``holes``
    (rings of fewer than 3 vertices are ignored; self-intersections repaired)."""
    import shapely
    from shapely.geometry import Polygon

    def union(rings: Sequence[Ring]):
        parts = [_ring_polygon(r) for r in rings if len(r) >= 3]
        return shapely.union_all(parts) if parts else Polygon()

    shape = union(polygons)
    if holes:
        shape = shape.difference(union(holes))
    return _polygonal(shape)


def ordered_bed_shape(rings: Sequence[Ring], parts: Sequence[str]):
    """The bed drawn ring by ring, in order: a ``bed`` ring adds its area, a ``hole`` ring cuts its
    area out of what is drawn before it. So a bed drawn inside an earlier hole is bed (napari's
    shapes, in the order they were drawn); ``bed_shape(polygons, holes)`` is all beds, then all holes."""
    from itertools import groupby

    import shapely
    from shapely.geometry import Polygon

    if len(parts) != len(rings) or set(parts) - {BED_PART, HOLE_PART}:
        raise ValueError(f"parts must be one of {BED_PART!r}, {HOLE_PART!r} per ring")
    shape = Polygon()
    # a run of beds (or of holes) one after another is one union: the same area, where ring by ring was quadratic
    # (over a minute for a big slide's bed of thousands of islands; hunt 30e)
    for part, run in groupby([(r, p) for r, p in zip(rings, parts) if len(r) >= 3], key=lambda rp: rp[1]):
        area = shapely.union_all([_ring_polygon(r) for r, _ in run])
        shape = shape.union(area) if part == BED_PART else shape.difference(area)
    return _polygonal(shape)


def _ring_polygon(ring: Ring):
    """A drawn ring as the area it encloses, as ``--annotations`` reads the same outline in a file
    (:func:`weakstil.annotation_geometry.enclosed`): a freehand (lasso) ring that runs on past its
    start or crosses itself keeps the area the pen went round twice (GEOS' even-odd repair dropped
    it, so Rescore and the saved bed lost what the same outline drawn in QuPath keeps)."""
    from shapely.geometry import Polygon

    from weakstil.annotation_geometry import enclosed

    polygon = Polygon(np.asarray(ring, float)[:, :2])
    return polygon if polygon.is_valid else enclosed(polygon.exterior)


def clip_to_slide(shape, width: float, height: float):
    """``shape`` cut to the slide ``[0, width] x [0, height]`` (level-0 px), as polygons only."""
    from shapely.geometry import box

    return _polygonal(shape.intersection(box(0, 0, width, height)))


def _polygonal(shape):
    from shapely.geometry import MultiPolygon

    parts = [g for g in getattr(shape, "geoms", [shape]) if g.geom_type in ("Polygon", "MultiPolygon") and g.area > 0]
    polys = [p for g in parts for p in getattr(g, "geoms", [g])]
    return MultiPolygon(polys)


def bed_tile_flags(shape, geom: SlideGeometry, where: str | Path = "bed") -> np.ndarray:
    """Tiles in the bed ``shape`` (level-0 px), by the rule of ``score --annotations``: the shape
    clipped to the slide, rasterised on the tissue-mask grid, tile share >= TILE_IN_BED."""
    from weakstil.annotations import check_inside

    if shape.is_empty:
        return np.zeros(len(geom.coords), bool)
    shape = check_inside(shape, geom.width, geom.height, where)
    mask = geom.outline_mask(shape)
    return geom.tile_fractions(mask, geom.mask_mpp) >= settings.TILE_IN_BED


def _model_scores(f) -> np.ndarray:
    """The tiles' own scores, which ``score --annotations`` aggregates over a bed; the published
    ``tile_scores`` blend each with the scored bed's sTIL%, so files that hold both are rescored
    from the former (files written before the blend hold only the latter, which were the same)."""
    own = getattr(f, "tile_scores_model", None)
    return f.tile_scores if own is None else own


def aggregate_bed(tile_scores: np.ndarray, flags: np.ndarray, logits: np.ndarray | None = None,
                  stroma: np.ndarray | None = None, aggregator: str | None = None) -> float:
    """Slide sTIL% of the flagged tiles with the MIL model's aggregator (by default: attention
    with logits, else stroma-weighted with stroma weights, else the mean)."""
    from weakstil.mil.aggregate import slide_score

    if aggregator is None:
        aggregator = "attention" if logits is not None else "stroma" if stroma is not None else "mean"
    return slide_score(tile_scores, stroma, flags, aggregator, attention=logits)[0]


def _geometry(f) -> SlideGeometry:
    """The slide and its tile grid; files without a tissue mask get an empty one at the
    default tissue-mask resolution (only its grid matters here)."""
    attrs = f.attrs
    mask = getattr(f, "tissue_mask", None)
    if mask is not None and getattr(f, "tissue_mask_mpp", None):
        return SlideGeometry.from_file(f)
    from weakstil.annotation_frame import origin_of
    from weakstil.tiles import TilingParams

    mpp = float(attrs["slide_mpp"])
    mask_mpp = max(float(TilingParams().mask_mpp), mpp)
    fr = mpp / mask_mpp
    w, h = int(attrs["slide_width"]), int(attrs["slide_height"])
    grid = np.zeros((max(1, round(h * fr)), max(1, round(w * fr))), bool)
    return SlideGeometry(w, h, mpp, np.asarray(f.coords), float(f.tile_size_level0), grid, mask_mpp, origin_of(attrs),
                         slide=slide_record(attrs))


def _attention_logits(f, flags: np.ndarray | None, where) -> tuple[np.ndarray, np.ndarray | None]:
    """Every tile's attention logit; older score files only hold the softmax weights over their
    bed, which give the logits (up to a constant) of those tiles alone."""
    if f.KIND == "tile_scores" and f.attention is not None:
        return np.asarray(f.attention, np.float32), None
    if getattr(f, "attention_logits", None) is not None:
        return np.asarray(f.attention_logits, np.float32), None
    weights = getattr(f, "attention", None) if f.KIND == "slide_scores" else getattr(f, "weights", None)
    if weights is None:
        raise WeakSTILError("was scored by an attention model but holds no attention", path=where,
                            fix="score the slide again with 'weakstil score'")
    weights = np.asarray(weights, np.float64)
    known = flags.copy() if flags is not None and flags.any() else np.ones(len(weights), bool)
    with np.errstate(divide="ignore"):
        logits = np.where(known, np.log(weights), -np.inf).astype(np.float32)
    return logits, known


def _tile_mask(geom: SlideGeometry, flags: np.ndarray) -> tuple[np.ndarray, float]:
    """The flagged tiles painted on the tissue-mask grid."""
    mask = np.zeros(geom.tissue_mask.shape, bool)
    f = geom.slide_mpp / geom.mask_mpp
    side = max(1, int(round(geom.tile_size_level0 * f)))
    for x, y in np.round(np.asarray(geom.coords)[flags] * f).astype(np.int64):
        mask[max(0, y):y + side, max(0, x):x + side] = True
    return mask, geom.mask_mpp


def _mask_rings(mask: np.ndarray, mask_mpp: float, slide_mpp: float,
                tolerance_px: float) -> tuple[list[Ring], list[str]]:
    """A binary mask's contours as level-0 ``[x, y]`` rings, outermost first, and each one's part: a
    contour inside an odd number of others is a hole (even-odd rule), drawn after what holds it."""
    import shapely
    from shapely.geometry import Point, Polygon
    from skimage.measure import find_contours

    padded = np.pad(np.asarray(mask, bool), 1).astype(np.float32)
    rings = []
    for c in find_contours(padded, 0.5):
        if len(c) < 4:
            continue
        # contour (row, col) in padded index space -> mask pixel k covers [k, k+1) -> level-0 px
        xy = (c[:, ::-1] - 1.0 + 0.5) * (mask_mpp / slide_mpp)
        poly = shapely.simplify(Polygon(xy), tolerance_px * mask_mpp / slide_mpp)
        if not poly.is_empty and poly.area > 0:
            rings.append(poly)
    tree = shapely.STRtree(rings)
    nested = []
    for i, ring in enumerate(rings):
        # a point on the contour itself: inside exactly the contours around it (an inner point of a
        # hole's outline may fall on an island drawn inside that hole)
        point = Point(ring.exterior.coords[0])
        depth = sum(1 for j in tree.query(point, predicate="within") if j != i)
        nested.append((depth, i, np.asarray(ring.exterior.coords)[:-1]))
    nested.sort(key=lambda t: (t[0], t[1]))
    return [c for _, _, c in nested], [HOLE_PART if d % 2 else BED_PART for d, _, _ in nested]


# -- saving ---------------------------------------------------------------------------------
def write_bed_geojson(path: str | Path, polygons: Sequence[Ring], slide_id: str, holes: Sequence[Ring] = (),
                      slide_size: tuple[int, int] | None = None, clip: bool = False,
                      parts: Sequence[str] | None = None, origin: tuple[float, float] = (0.0, 0.0)) -> Path:
    """Save a bed as QuPath GeoJSON (level-0 px, class ``Tumor bed``, named ``slide_id``; ``origin``:
    a MIRAX slide's scanned-area corner, where QuPath's frame starts, see weakstil.annotation_frame).

    ``parts``: ``polygons`` are then all the rings in drawing order, each a bed or a hole
    (:func:`ordered_bed_shape`), and ``holes`` must be empty.

    ``path``: a folder (the file is ``<folder>/<slide_id>.geojson``, what ``--annotations`` finds)
    or a file. Written atomically. Refuses to replace the tile GeoJSON ``weakstil score`` wrote
    beside its score files, or any file it did not write itself (a pathologist's outline: only an
    earlier saved bed is replaced), to save a bed that ``--annotations`` would not read (another
    annotation of the slide there comes first), and a bed lying outside ``slide_size`` (width,
    height); with ``clip`` (shapes drawn over the slide) the bed is cut to the slide instead, so the
    CLI reads it back."""
    from weakstil.annotations import check_inside, write_geojson

    path = bed_file(path, slide_id)
    if parts is not None and len(holes):
        raise ValueError("holes are among the parts when parts are given")
    shape = ordered_bed_shape(polygons, parts) if parts is not None else bed_shape(polygons, holes)
    # an empty bed is not saved (an annotation file of no polygon is refused); a bed saved there before stays
    kept = (f"; the bed saved there before is kept and --annotations still reads it (delete {path.name} for the "
            "slide to have no outline)") if path.is_file() else ""
    if shape.is_empty:
        raise WeakSTILError("the tumour bed is empty: nothing to save", path=path,
                            fix="draw at least one polygon of 3 or more vertices" + kept)
    if slide_size is not None and clip:
        shape = clip_to_slide(shape, slide_size[0], slide_size[1])
        if shape.is_empty:
            raise WeakSTILError("the tumour bed lies entirely off the slide: nothing to save", path=path,
                                fix="draw the bed over the slide" + kept)
    elif slide_size is not None:
        shape = _polygonal(check_inside(shape, slide_size[0], slide_size[1], path))
    check_bed_file(path, slide_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_geojson(shape, path, name=BED_CLASS, label=slide_id, written_by=SAVED_BY, origin=origin)
    log.info("%s: tumour bed saved (%d polygons)", path, len(shape.geoms))
    return path
