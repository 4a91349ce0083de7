"""Tumour-bed annotations drawn by pathologists: QuPath GeoJSON, Aperio ImageScope XML, Indica Labs HALO
XML (``.annotations``), ASAP XML, Hamamatsu NDP.view (``.ndpa``) and WKT text (``.wkt``).

Polygons are in level-0 pixels. An annotation file for a slide is found by slide id in an
annotation directory (``<slide_id>.geojson``, ``<slide_id>_tumorbed.geojson``, ``<slide_id>.xml``...)
and, where present, overrides automatic tumour-bed detection.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from weakstil.annotation_classes import (EXCLUDED_NAMES, NOT_BED_NAMES, ROI_NAMES, TUMOR_BED_NAMES,  # noqa: F401
                                         choose_bed, class_name, is_exclusion, not_bed_areas, says_what_it_is,
                                         warn_tumour_named_cut)
from weakstil.annotation_errors import (EMPTY_FIX, AnnotationError, EmptyAnnotationError, all_finite, not_bed,
                                        not_finite)
from weakstil.annotation_geometry import valid_parts
from weakstil.settings import SLIDE_FILE_SUFFIXES  # an annotation's name may keep one (QuPath)

log = logging.getLogger(__name__)

#: File name patterns tried for a slide id, in order.
ANNOTATION_PATTERNS = ("{id}.geojson", "{id}_tumorbed.geojson", "{id}.json", "{id}_tumorbed.json", "{id}.xml",
                       "{id}_tumorbed.xml", "{id}.annotations", "{id}_tumorbed.annotations", "{id}.ndpa",
                       "{id}_tumorbed.ndpa", "{id}.wkt", "{id}_tumorbed.wkt")
#: The extensions of annotation files: HALO saves its XML as ``.annotations``, NDP.view as ``.ndpa``.
ANNOTATION_SUFFIXES = (".geojson", ".json", ".xml", ".annotations", ".ndpa", ".wkt")
#: Exports named after the slide file, extension included: QuPath's ``S1.svs.geojson``, NDP.view's ``S1.ndpi.ndpa``.
_NAMED_AFTER_SLIDE = (".geojson", ".ndpa")


def raise_all(errors: list[AnnotationError]) -> None:
    """Raise the annotation errors of a cohort as one: the user mends every file in one go
    instead of meeting them one rerun at a time."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        first, rest = errors[0], errors[1:]
        others = "; ".join(f"{Path(e.path or '?').name}: {e.message}" for e in rest[:5])
        raise AnnotationError(f"{first.message}; {len(rest)} more annotation file(s) cannot be used either "
                              f"({others}{'; ...' if len(rest) > 5 else ''})", path=first.path, fix=first.fix)


def annotation_candidates(directory: str | Path, slide_id: str, also: tuple[Path, ...] = ()) -> list[Path]:
    """The files in ``directory`` (and ``also``, files about to be written there) named like an
    annotation of ``slide_id``, in the order :func:`find_annotation` prefers them."""
    directory = Path(directory)
    # in any case of the extension (synth_0001.GeoJSON, .XML: a file system may be case-sensitive), in the
    # order of ANNOTATION_PATTERNS, so a .GeoJSON beside an .xml wins as a .geojson does
    wanted = {_key(pattern.format(id=slide_id)): i for i, pattern in enumerate(ANNOTATION_PATTERNS)}
    # QuPath names an export after the image, extension included: synth_0001.tiff.geojson; NDP.view S1.ndpi.ndpa
    wanted.update({_key(f"{slide_id}{suffix}{kind}"): len(ANNOTATION_PATTERNS) + i
                   for i, kind in enumerate(_NAMED_AFTER_SLIDE) for suffix in SLIDE_FILE_SUFFIXES})
    try:
        files = list(directory.iterdir())
    except OSError:
        files = []
    names = sorted((wanted[_key(p.name)], not p.name.startswith(slide_id), p)  # the id's own case first
                   for p in dict.fromkeys([*files, *also]) if _key(p.name) in wanted)
    return [p for *_, p in names]


def find_annotation(directory: str | Path | None, slide_id: str) -> Path | None:
    """The annotation file for ``slide_id`` in ``directory``, or ``None``."""
    if directory is None:
        return None
    directory = Path(directory)
    found = annotation_candidates(directory, slide_id)
    for p in found:  # a broken link or a folder of the name is a mistake to mend, not "no annotation"
        if not p.is_file():
            raise not_a_file(p)
    if len(found) > 1:
        from weakstil.runtime import warn_once

        warn_once(log, ("annotations", str(directory), slide_id), "%s: %d annotation files for slide %s (%s); using "
                  "%s", directory, len(found), slide_id, ", ".join(p.name for p in found), found[0].name)
    return found[0] if found else None


def not_a_file(path: Path) -> AnnotationError:
    """Why ``path`` (named like an annotation) cannot be read as one: missing, a broken link, a folder."""
    import os

    if path.is_symlink() and not path.exists():
        return AnnotationError(f"is a broken link (to {os.readlink(path)}, which does not exist)", path=path,
                               fix="point the link at the annotation file, or remove it")
    if path.is_dir():
        return AnnotationError("is a folder, not an annotation file", path=path,
                               fix=f"put the exported file itself there as {path.name}, or rename the folder")
    if path.exists() or path.is_symlink():
        return AnnotationError("is not a regular file", path=path, fix="save the annotation as a regular file")
    return AnnotationError("annotation file not found", path=path, fix="check the path")


def _key(name: str) -> str:
    """A file name compared without case, and with accents in one Unicode form: macOS writes "é" as
    e + combining accent (NFD), most other systems as one character (NFC); the names look the same."""
    import unicodedata

    return unicodedata.normalize("NFC", name).lower()


def unmatched_annotations(directory: str | Path, slide_ids: list[str]) -> list[Path]:
    """Annotation files in ``directory`` that belong to none of ``slide_ids`` (likely typos)."""
    ids = {_key(i) for i in slide_ids}
    out = []
    for path in sorted(Path(directory).iterdir()):
        if path.suffix.lower() not in ANNOTATION_SUFFIXES or path.name.startswith("."):
            continue  # hidden: our folder markers (.weakstil-output.json), editors' lock files
        stem = path.stem
        for suffix in (".session", "_tumorbed", *SLIDE_FILE_SUFFIXES):  # Sedeen's S1.session.xml: its slide fails
            stem = stem[: -len(suffix)] if stem.lower().endswith(suffix) else stem
        if _key(stem) not in ids:
            out.append(path)
    return out


def load_polygons(path: str | Path, geom=None):
    """Tumour-bed polygons (a shapely MultiPolygon, level-0 px) from GeoJSON, ImageScope, HALO or ASAP XML,
    or NDP.view's ``.ndpa``, whose nanometres are placed on the slide of ``geom`` (a
    :class:`weakstil.tumorbed.bed.SlideGeometry`; without it an ``.ndpa`` is refused)."""
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    suffix = path.suffix.lower()
    if path.stat().st_size < 4096 and not path.read_bytes().strip(b" \t\r\n\x00\xef\xbb\xbf"):  # BOM, blanks
        raise EmptyAnnotationError(f"is empty ({path.stat().st_size} bytes): no outline is drawn in it", path=path,
                                   fix=EMPTY_FIX)
    excluded: list = []
    if suffix in (".geojson", ".json"):
        from weakstil.annotation_geojson import geojson_polygons

        polygons, excluded = geojson_polygons(path)
    elif suffix in (".xml", ".annotations"):
        polygons, excluded = _imagescope_polygons(path)
    elif suffix == ".ndpa":
        from weakstil.annotation_ndpa import ndpa_frame, ndpa_polygons

        if geom is None:
            raise AnnotationError("is an NDP.view annotation in nanometres from the glass slide's centre: it is read "
                                  "only with its NDPI slide (score, evaluate, train, tumorbed apply)", path=path,
                                  fix="export the outline from QuPath as GeoJSON to use it here")
        polygons, excluded = ndpa_polygons(path, ndpa_frame(geom, path))
    elif suffix == ".wkt":
        from weakstil.annotation_wkt import wkt_polygons

        polygons, excluded = wkt_polygons(path)
    else:
        from weakstil.annotation_foreign import foreign_outline

        if (foreign := foreign_outline(path)) is not None:  # a mask (PNG, .npy, TIFF), napari's Shapes CSV
            raise foreign
        raise AnnotationError(f"unknown annotation format '{suffix}'", path=path,
                              fix="use QuPath GeoJSON (.geojson), Aperio ImageScope or ASAP XML (.xml), HALO XML "
                                  "(.annotations), NDP.view (.ndpa) or WKT text (.wkt)")
    from shapely import force_2d  # [x, y, z] positions (valid GeoJSON, WKT 'POLYGON Z'): the z dropped, as the
    # bed is drawn on the image plane (until hunt 41d a ValueError 'this is a bug in weakstil' when rasterised)
    polygons, excluded = [force_2d(g) for g in polygons], [force_2d(g) for g in excluded]
    merged = _union(polygons, path)
    if excluded:  # ImageScope's negative regions (NegativeROA="1"), ASAP's and GeoJSON's exclusions: cut out
        from shapely.geometry import MultiPolygon
        from shapely.ops import unary_union

        rest = merged.difference(unary_union(excluded))
        polys = [g for g in getattr(rest, "geoms", [rest]) if g.geom_type == "Polygon" and g.area > 0]
        if not polys:
            raise AnnotationError("nothing is left of the bed once its negative regions are cut out", path=path,
                                  fix="draw the tumour bed as a positive region")
        merged = MultiPolygon(polys)
    return merged


def check_inside(multipolygon, width: int, height: int, path: str | Path, on_tissue=None):
    """Clip to the slide; refuse annotations that lie (almost) entirely outside it. ``on_tissue``: the share
    of an outline on the slide's tissue (a callable), when known: a scaled copy is offered as the fix only
    when it lies on tissue."""
    from shapely.geometry import box

    slide_box = box(0, 0, width, height)
    inside = multipolygon.intersection(slide_box)
    if multipolygon.area == 0 or inside.area < 0.5 * multipolygon.area:
        minx, miny, maxx, maxy = multipolygon.bounds
        # a part on the slide is said as a share: an outline half off the slide is not 'outside' it
        what = "polygons lie" if multipolygon.area == 0 or inside.area == 0 else \
            f"{100 * (1 - inside.area / multipolygon.area):.1f}% of the polygons' area lies"
        raise AnnotationError(
            f"{what} outside the slide (bounds {minx:.7g},{miny:.7g}-{maxx:.7g},{maxy:.7g} px; "
            f"slide is {width}x{height} px; at least half of the area must lie on the slide)",
            path=path,
            fix="export the annotation in level-0 pixel coordinates of this slide" + _finer_scan_hint(
                multipolygon, slide_box, on_tissue),
        )
    if inside.area < multipolygon.area * 0.999:
        log.warning("%s: %.1f%% of the annotation lies outside the slide and is ignored", path,
                    100 * (1 - inside.area / multipolygon.area))
    return _areas(inside)


def _finer_scan_hint(multipolygon, slide_box, on_tissue=None) -> str:
    """What to say when the outline scaled down × 1/2 or × 1/4 lies on the slide whole (and, where the tissue
    is known, mostly on it): drawn on level 0 of a scan of this slide at twice or four times its resolution
    (a 40x scan at 0.25 µm/px for a 20x one at 0.5). An outline only moved off the slide (another slide's, or
    offset) also fits within it so scaled on a small slide, but on glass: it was offered the factor as the
    fix until hunt 41d."""
    from shapely.affinity import scale

    for f in (2, 4):
        copy = scale(multipolygon, xfact=1 / f, yfact=1 / f, origin=(0, 0))
        if slide_box.contains(copy) and (on_tissue is None or on_tissue(copy) >= 0.5):
            return (f" (its coordinates / {f} lie on the slide: drawn on a scan at {f}x this slide's resolution, "
                    f"e.g. 40x vs 20x? Export it from this scan, or scale its coordinates by 1/{f})")
    return ""


def _areas(geometry):
    """The polygons of a geometry: a clip can leave lines and points where a shape touches the edge."""
    from shapely.geometry import MultiPolygon

    parts = [g for g in getattr(geometry, "geoms", [geometry]) if g.geom_type in ("Polygon", "MultiPolygon")]
    return MultiPolygon([p for g in parts for p in getattr(g, "geoms", [g]) if p.area > 0])


def rasterize(multipolygon, width: int, height: int, slide_mpp: float, mask_mpp: float) -> np.ndarray:
    """Boolean mask of the polygons at ``mask_mpp`` for a slide of ``width × height`` level-0 px:
    a mask pixel is set when its centre lies inside (mask pixel ``k`` covers level-0
    ``[k, k + 1) / f``, as :func:`weakstil.tiling.mask_fractions` reads it). PIL's polygon fill,
    used before, also set every pixel its outline touched: one pixel more along the right and
    bottom edges, so an outline drawn from a mask came back one pixel larger."""
    f = slide_mpp / mask_mpp
    w, h = max(1, round(width * f)), max(1, round(height * f))
    mask = np.zeros((h, w), bool)
    for poly in getattr(multipolygon, "geoms", [multipolygon]):
        if poly.is_empty:
            continue
        # each ring filled within its box: over the whole mask, a bed of thousands of islands took minutes (hunt 30e)
        rows, cols = _ring_box(outline := np.asarray(poly.exterior.coords, np.float64) * f, h, w)
        area = _fill_ring(outline, h, w, rows, cols)
        for ring in poly.interiors:  # a polygon's holes cut only it: another polygon (an island) may lie in one
            hole_rows, hole_cols = _ring_box(xy := np.asarray(ring.coords, np.float64) * f, h, w)
            within = (slice(hole_rows.start - rows.start, hole_rows.stop - rows.start),
                      slice(hole_cols.start - cols.start, hole_cols.stop - cols.start))
            area[within] &= ~_fill_ring(xy, h, w, hole_rows, hole_cols)
        mask[rows, cols] |= area
    return mask


def _ring_box(xy: np.ndarray, h: int, w: int) -> tuple[slice, slice]:
    """The rows and columns of an ``h × w`` mask whose pixel centres a ring may hold (its box, a pixel wider)."""
    left, top, right, bottom = (int(v) for v in np.clip(np.ceil([*xy.min(0), *xy.max(0)] - np.float64(0.5)),
                                                        0, [w, h, w, h]))
    return slice(top, min(bottom + 1, h)), slice(left, min(right + 1, w))


def _fill_ring(xy: np.ndarray, h: int, w: int, rows_in: slice | None = None,
               cols_in: slice | None = None) -> np.ndarray:
    """Pixels of an ``h × w`` mask whose centres ``(c + 0.5, r + 0.5)`` lie inside the ring ``xy``
    (mask-pixel units, even-odd rule), or of its window ``rows_in × cols_in``. A scanline fill: every edge is
    cut with the row centres it spans (half-open in y, so a vertex counts once), the cuts of each row pair up
    into spans, and the spans are summed along the row: time in the cuts, not in pixels × vertices."""
    r0, r1, _ = (rows_in or slice(0, h)).indices(h)
    c0, c1, _ = (cols_in or slice(0, w)).indices(w)
    h, w = max(r1 - r0, 0), max(c1 - c0, 0)
    out = np.zeros((h, w), bool)
    if len(xy) < 3:
        return out
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    first = np.ceil(np.minimum(y0, y1) - 0.5).astype(np.int64)  # first row centre >= the edge's top
    stop = np.ceil(np.maximum(y0, y1) - 0.5).astype(np.int64)  # row centres below the edge's bottom
    first, stop = np.clip(first, r0, r0 + h) - r0, np.clip(stop, r0, r0 + h) - r0
    n = np.maximum(stop - first, 0)
    if not n.any():
        return out
    edge = np.repeat(np.arange(len(x0)), n)
    rows = np.repeat(first, n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    t = (rows + r0 + 0.5 - y0[edge]) / (y1[edge] - y0[edge])
    cuts = x0[edge] + t * (x1[edge] - x0[edge])
    order = np.lexsort((cuts, rows))
    rows, cuts = rows[order], cuts[order]
    start = np.clip(np.ceil(cuts[0::2] - 0.5), c0, c0 + w).astype(np.int64) - c0  # first column centre >= the cut
    end = np.clip(np.ceil(cuts[1::2] - 0.5), c0, c0 + w).astype(np.int64) - c0
    steps = np.zeros((h, w + 1), np.int8)
    np.add.at(steps, (rows[0::2], start), 1)
    np.add.at(steps, (rows[0::2], end), -1)
    return np.cumsum(steps, axis=1, dtype=np.int8)[:, :w] > 0


#: The foreign member (RFC 7946 section 6.1; QuPath ignores it) naming the command that wrote a GeoJSON.
WRITTEN_BY_KEY = "weakstil_written_by"
#: The foreign member giving the corner (OpenSlide level-0 px) our GeoJSON's coordinates start at: a
#: slide's scanned area (MIRAX), where QuPath's frame starts (:mod:`weakstil.annotation_frame`).
ORIGIN_KEY = "weakstil_origin"


def written_by_member(command: str | None) -> str:
    """``"weakstil_written_by":"<command>",`` (compact JSON, to open a FeatureCollection's members
    ahead of its features), or ``""``."""
    return "" if not command else f'"{WRITTEN_BY_KEY}":{json.dumps(command)},'


def geojson_written_by(path: str | Path) -> str | None:
    """The command a GeoJSON of ours says wrote it (read from the file's first bytes: the member
    comes before the features, so a 100,000-tile file is not parsed); ``None`` for any other file."""
    import re

    try:
        with open(path, "rb") as fh:
            head = fh.read(512).decode("utf-8", "replace")
    except OSError:
        return None
    found = re.match(r'\{"type":\s*"FeatureCollection",\s*"' + WRITTEN_BY_KEY + r'":\s*("(?:[^"\\]|\\.)*")', head)
    return json.loads(found.group(1)) if found else None


def write_geojson(multipolygon, path: str | Path, name: str = "Tumor bed", color=(255, 0, 0),
                  label: str | None = None, written_by: str | None = None,
                  origin: tuple[float, float] = (0.0, 0.0), slide: dict | None = None,
                  provenance: dict | None = None) -> None:
    """QuPath-style GeoJSON FeatureCollection of the polygons (level-0 px): annotations of class
    ``name``, each named ``label`` (what QuPath shows beside it) when given. ``written_by``: the
    command that writes it as an output (:func:`geojson_written_by`), or the napari bed editor's
    mark on the beds it saves (it replaces only those). ``origin``: the slide's scanned-area corner
    (MIRAX), subtracted so that QuPath, which crops the slide there, shows the bed where it lies; it
    is recorded (:data:`ORIGIN_KEY`) and added back when we read the file. ``slide``: the scan's id,
    fingerprint, size and µm/px, recorded as ``weakstil_slide`` (a bed read for another scan is flagged).
    ``provenance``: what made the outline (WeakSTIL version, bed source, detector), as ``weakstil_provenance``."""
    from shapely.affinity import translate
    from shapely.geometry import mapping

    from weakstil.atomic import atomic_path

    features = []
    moved = (float(origin[0]), float(origin[1])) != (0.0, 0.0)
    for poly in getattr(multipolygon, "geoms", [multipolygon]):
        if poly.is_empty:
            continue
        poly = translate(poly, -origin[0], -origin[1]) if moved else poly
        properties: dict[str, object] = {"objectType": "annotation",
                                         "classification": {"name": name, "color": list(color)}}
        if label:
            properties["name"] = label
        features.append({"type": "Feature", "geometry": mapping(poly), "properties": properties})
    with atomic_path(path) as tmp:
        head = {"type": "FeatureCollection", **({WRITTEN_BY_KEY: written_by} if written_by else {}),
                **({ORIGIN_KEY: [float(origin[0]), float(origin[1])]} if moved else {}),
                **({"weakstil_slide": slide} if slide else {}), **({"weakstil_provenance": provenance} if provenance else {})}
        tmp.write_text(json.dumps({**head, "features": features}, separators=(",", ":")), encoding="utf-8")


# --- parsers ------------------------------------------------------------------------------
def _imagescope_polygons(path: Path) -> tuple[list, list]:
    """(bed regions, excluded regions): a Region with ``NegativeROA="1"`` is cut out of its own
    layer's positive regions, as a GeoJSON hole out of its polygon (not out of a region drawn inside
    it, nor out of another layer: an ROI layer's hole is not the tumour's); a layer named like an
    exclusion, or holding negative regions only, is cut out of the bed; layer names choose the bed
    as classes do (:func:`choose_bed`)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise AnnotationError(f"malformed ImageScope XML ({exc})", path=path,
                              fix="save the annotation again from ImageScope or ASAP") from None
    if root.tag == "session" and root.find("image/overlays") is not None:  # not ImageScope's "no regions"
        from weakstil.annotation_wkt import SEDEEN, unread_format

        raise unread_format(path, SEDEEN)
    if root.tag == "Annotations" and root.find(".//Region") is None:  # '<Annotations/>': saved before drawing
        raise EmptyAnnotationError(f"{'HALO' if root.find('.//V') is not None else 'ImageScope'} XML holds no "
                                   "regions: no outline is drawn in it", path=path, fix=EMPTY_FIX)
    if root.tag == "ASAP_Annotations":
        from weakstil.annotation_asap import asap_polygons

        return asap_polygons(root, path)
    fmt = "HALO XML" if root.find(".//V") is not None else "ImageScope XML"
    named, excluded, cut_names, dropped = [], [], [], 0
    for layer in root.iter("Annotation"):  # a layer's Name is its class, as an ASAP group's
        layer_name = str(layer.attrib.get("Name", "")).strip()
        positive, negative = [], []
        for k, region in enumerate(layer.iter("Region")):
            polygon, is_negative = _imagescope_region(region, path)
            if polygon is None:
                dropped += 1
                continue
            what = f"region {region.attrib.get('Id', k + 1)} of layer '{layer_name}'"
            parts = valid_parts(polygon, path, what)
            text = str(region.attrib.get("Text", "")).strip()  # a region's own label, as a GeoJSON object's name
            name = text if not class_name(layer_name) and says_what_it_is(text) else layer_name
            if is_negative:
                negative.extend(parts)
            else:
                positive.extend((name, p) for p in parts)
        if is_exclusion(layer_name) or (negative and not positive):
            excluded += [p for _, p in positive] + negative
            cut_names.append(layer_name)
        else:  # a layer its negative regions leave empty stays, so the bed is not another layer's
            for name in dict.fromkeys(n for n, _ in positive):
                named += [(name, p) for p in _cut_holes([p for n, p in positive if n == name], negative)]
    if dropped:
        log.info("%s: %d region(s) that are no area (a line, an arrow, a ruler) passed over", path, dropped)
    warn_tumour_named_cut(cut_names, path)
    polygons = choose_bed(named, path)
    if not polygons and named:
        raise not_bed(named, path, "layer", fmt)
    if not polygons:
        raise AnnotationError(f"{fmt} holds no (positive) regions with an area (a polygon of 3 or more vertices, a "
                              "rectangle or an ellipse)", path=path, fix="draw the tumour bed as a polygon region")
    return polygons, [*excluded, *not_bed_areas(named, path, polygons)]


def _cut_holes(positive: list, negative: list) -> list:
    """A layer's positive regions less its negative regions. A negative region inside another
    positive region is that region's hole: it does not cut a region drawn inside it (an island stays,
    as in GeoJSON). A region cut away whole is kept as an empty polygon, so the layer is still the bed
    and is said to be empty."""
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    def inside(a, b) -> bool:
        return a.intersection(b).area >= 0.999 * a.area

    out = []
    for p in positive:
        holes = [n for n in negative if not (inside(p, n) and any(q is not p and inside(n, q) for q in positive))]
        rest = p.difference(unary_union(holes)) if holes else p
        parts = [g for g in getattr(rest, "geoms", [rest]) if g.geom_type == "Polygon" and g.area > 0]
        out += parts or [Polygon()]
    return out


#: HALO's region types that are no area (ImageScope's arrows and rulers, numbered, have 2 vertices).
_NOT_AREA_TYPES = ("ruler", "pin", "arrow", "line")


def _imagescope_region(region, path: Path):
    """(the region's polygon, whether it is a negative region); ``(None, False)`` for one that is no
    area. An ellipse (ImageScope ``Type="2"``, HALO ``Type="Ellipse"``) is stored as the two corners
    of its bounding box, and so is a HALO rectangle (``Type="Rectangle"``; ImageScope's ``Type="1"``
    lists its four corners). HALO writes a vertex as ``<V X= Y=/>``, ImageScope as ``<Vertex .../>``."""
    from shapely import affinity
    from shapely.geometry import Point, Polygon, box

    kind = str(region.attrib.get("Type", "0")).strip().lower()
    if kind in _NOT_AREA_TYPES:
        return None, False
    vertices = []
    for v in (e for e in region.iter() if e.tag in ("Vertex", "V")):
        try:
            vertices.append((float(v.attrib["X"]), float(v.attrib["Y"])))
        except (KeyError, ValueError):
            raise AnnotationError("a Vertex lacks numeric X/Y", path=path,
                                  fix="save the annotation again from ImageScope") from None
        if not all_finite(list(vertices[-1])):
            raise not_finite(path)
    negative = str(region.attrib.get("NegativeROA", "0")).strip() == "1"
    if kind in ("2", "ellipse") and len(vertices) == 2:
        (x0, y0), (x1, y1) = vertices
        circle = Point((x0 + x1) / 2, (y0 + y1) / 2).buffer(1.0, quad_segs=16)
        return affinity.scale(circle, abs(x1 - x0) / 2, abs(y1 - y0) / 2), negative
    if kind in ("1", "rectangle") and len(vertices) == 2:
        (x0, y0), (x1, y1) = vertices
        return box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)), negative
    return (Polygon(vertices), negative) if len(vertices) >= 3 else (None, False)


def _union(polygons: list, path: Path):
    from shapely.geometry import MultiPolygon
    from shapely.ops import unary_union

    parts = [q for g in polygons for q in getattr(g, "geoms", [g]) if not q.is_empty]
    disjoint = MultiPolygon(parts) if parts and all(q.geom_type == "Polygon" for q in parts) else None
    # polygons that do not overlap (a bed saved by napari or written by 'score': one valid MultiPolygon) are their
    # union already: checked in 2 s where the union took 26 s for a big slide's 1,565 islands (hunt 32e)
    merged = disjoint if disjoint is not None and disjoint.is_valid else unary_union(polygons)  # each made valid as read
    polys = [g for g in getattr(merged, "geoms", [merged]) if g.geom_type == "Polygon" and g.area > 0]
    if not polys and any(not p.is_empty for p in polygons):
        raise AnnotationError("annotation polygons have no area", path=path, fix="draw closed polygons")
    if not polys:  # an ImageScope layer its own negative regions cut away whole
        raise AnnotationError("nothing is left of the bed once its negative regions are cut out", path=path,
                              fix="draw the tumour bed as a positive region")
    return MultiPolygon(polys)
