"""Tumour-bed annotations drawn by pathologists: QuPath GeoJSON, Aperio ImageScope XML and ASAP XML.

Polygons are in level-0 pixels. An annotation file for a slide is found by slide id in an
annotation directory (``<slide_id>.geojson``, ``<slide_id>_tumorbed.geojson``, ``<slide_id>.xml``...)
and, where present, overrides automatic tumour-bed detection.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from weakstil.annotation_classes import (EXCLUDED_NAMES, NOT_BED_NAMES, ROI_NAMES, TUMOR_BED_NAMES,  # noqa: F401
                                         choose_bed, not_bed_areas, only_not_bed_classes)
from weakstil.errors import WeakSTILError
from weakstil.settings import SLIDE_FILE_SUFFIXES  # an annotation's name may keep one (QuPath)

log = logging.getLogger(__name__)

#: QuPath object types that are not drawn areas: detections outline cells or tiles, not the bed.
NOT_ANNOTATIONS = ("detection", "cell", "tile")
#: File name patterns tried for a slide id, in order.
ANNOTATION_PATTERNS = ("{id}.geojson", "{id}_tumorbed.geojson", "{id}.json", "{id}.xml", "{id}_tumorbed.xml")


class AnnotationError(WeakSTILError):
    """A malformed or unusable annotation file."""


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


def find_annotation(directory: str | Path | None, slide_id: str) -> Path | None:
    """The annotation file for ``slide_id`` in ``directory``, or ``None``."""
    if directory is None:
        return None
    directory = Path(directory)
    # in any case of the extension (synth_0001.GeoJSON, .XML: a file system may be case-sensitive), in the
    # order of ANNOTATION_PATTERNS, so a .GeoJSON beside an .xml wins as a .geojson does
    wanted = {_key(pattern.format(id=slide_id)): i for i, pattern in enumerate(ANNOTATION_PATTERNS)}
    # QuPath names an export after the image, extension included: synth_0001.tiff.geojson
    wanted.update({_key(f"{slide_id}{suffix}.geojson"): len(ANNOTATION_PATTERNS) for suffix in SLIDE_FILE_SUFFIXES})
    try:
        names = sorted((wanted[_key(p.name)], not p.name.startswith(slide_id), p)  # the id's own case first
                       for p in directory.iterdir() if _key(p.name) in wanted)
    except OSError:
        names = []
    for *_, p in names:  # a broken link or a folder of the name is a mistake to mend, not "no annotation"
        if not p.is_file():
            raise not_a_file(p)
    found = [p for *_, p in names]
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
        if path.suffix.lower() not in (".geojson", ".json", ".xml") or path.name.startswith("."):
            continue  # hidden: our folder markers (.weakstil-output.json), editors' lock files
        stem = path.stem
        for suffix in ("_tumorbed", *SLIDE_FILE_SUFFIXES):
            stem = stem[: -len(suffix)] if stem.lower().endswith(suffix) else stem
        if _key(stem) not in ids:
            out.append(path)
    return out


def load_polygons(path: str | Path):
    """Tumour-bed polygons (a shapely MultiPolygon, level-0 px) from GeoJSON, ImageScope or ASAP XML."""
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    suffix = path.suffix.lower()
    excluded: list = []
    if suffix in (".geojson", ".json"):
        polygons, excluded = _geojson_polygons(path)
    elif suffix == ".xml":
        polygons, excluded = _imagescope_polygons(path)
    else:
        raise AnnotationError(f"unknown annotation format '{suffix}'", path=path,
                              fix="use QuPath GeoJSON (.geojson), Aperio ImageScope XML or ASAP XML (.xml)")
    merged = _union(polygons, path)
    if excluded:  # ImageScope's negative regions (NegativeROA="1"), ASAP's and GeoJSON's exclusions: cut out
        from shapely.geometry import MultiPolygon
        from shapely.ops import unary_union

        rest = merged.difference(unary_union(_valid(excluded, path)))
        polys = [g for g in getattr(rest, "geoms", [rest]) if g.geom_type == "Polygon" and g.area > 0]
        if not polys:
            raise AnnotationError("nothing is left of the bed once its negative regions are cut out", path=path,
                                  fix="draw the tumour bed as a positive region")
        merged = MultiPolygon(polys)
    return merged


def check_inside(multipolygon, width: int, height: int, path: str | Path):
    """Clip to the slide; refuse annotations that lie (almost) entirely outside it."""
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
            fix="export the annotation in level-0 pixel coordinates of this slide",
        )
    if inside.area < multipolygon.area * 0.999:
        log.warning("%s: %.1f%% of the annotation lies outside the slide and is ignored", path,
                    100 * (1 - inside.area / multipolygon.area))
    return _areas(inside)


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
        area = _fill_ring(np.asarray(poly.exterior.coords, np.float64) * f, h, w)
        for ring in poly.interiors:  # a polygon's holes cut only it: another polygon (an island) may lie in one
            area &= ~_fill_ring(np.asarray(ring.coords, np.float64) * f, h, w)
        mask |= area
    return mask


def _fill_ring(xy: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pixels of an ``h × w`` mask whose centres ``(c + 0.5, r + 0.5)`` lie inside the ring ``xy``
    (mask-pixel units, even-odd rule). A scanline fill: every edge is cut with the row centres
    it spans (half-open in y, so a vertex counts once), the cuts of each row pair up into spans,
    and the spans are summed along the row: time in the cuts, not in pixels × vertices."""
    out = np.zeros((h, w), bool)
    if len(xy) < 3:
        return out
    x0, y0 = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    first = np.ceil(np.minimum(y0, y1) - 0.5).astype(np.int64)  # first row centre >= the edge's top
    stop = np.ceil(np.maximum(y0, y1) - 0.5).astype(np.int64)  # row centres below the edge's bottom
    first, stop = np.clip(first, 0, h), np.clip(stop, 0, h)
    n = np.maximum(stop - first, 0)
    if not n.any():
        return out
    edge = np.repeat(np.arange(len(x0)), n)
    rows = np.repeat(first, n) + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
    t = (rows + 0.5 - y0[edge]) / (y1[edge] - y0[edge])
    cuts = x0[edge] + t * (x1[edge] - x0[edge])
    order = np.lexsort((cuts, rows))
    rows, cuts = rows[order], cuts[order]
    start = np.clip(np.ceil(cuts[0::2] - 0.5), 0, w).astype(np.int64)  # first column centre >= the cut
    end = np.clip(np.ceil(cuts[1::2] - 0.5), 0, w).astype(np.int64)
    steps = np.zeros((h, w + 1), np.int8)
    np.add.at(steps, (rows[0::2], start), 1)
    np.add.at(steps, (rows[0::2], end), -1)
    return np.cumsum(steps, axis=1, dtype=np.int8)[:, :w] > 0


#: The foreign member (RFC 7946 section 6.1; QuPath ignores it) naming the command that wrote a GeoJSON.
WRITTEN_BY_KEY = "weakstil_written_by"


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
                  label: str | None = None, written_by: str | None = None) -> None:
    """QuPath-style GeoJSON FeatureCollection of the polygons (level-0 px): annotations of class
    ``name``, each named ``label`` (what QuPath shows beside it) when given. ``written_by``: the
    command that writes it as an output (:func:`geojson_written_by`), never for an annotation."""
    from shapely.geometry import mapping

    from weakstil.atomic import atomic_path

    features = []
    for poly in getattr(multipolygon, "geoms", [multipolygon]):
        if poly.is_empty:
            continue
        properties: dict[str, object] = {"objectType": "annotation",
                                         "classification": {"name": name, "color": list(color)}}
        if label:
            properties["name"] = label
        features.append({"type": "Feature", "geometry": mapping(poly), "properties": properties})
    with atomic_path(path) as tmp:
        head = {"type": "FeatureCollection", **({WRITTEN_BY_KEY: written_by} if written_by else {})}
        tmp.write_text(json.dumps({**head, "features": features}, separators=(",", ":")))


# --- parsers ------------------------------------------------------------------------------
def _geojson_polygons(path: Path) -> tuple[list, list]:
    """(bed polygons, excluded polygons) of a GeoJSON: features classified like an exclusion
    (:data:`EXCLUDED_NAMES`, e.g. QuPath's ``Ignore*``) are cut out of the bed."""
    from shapely.geometry import shape

    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM (some Windows editors) is fine
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AnnotationError(f"malformed GeoJSON ({exc})", path=path,
                              fix="export the annotation again from QuPath (File > Export objects as GeoJSON)") from None
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, list):
        features = data
    elif isinstance(data, dict) and data.get("type") in ("Polygon", "MultiPolygon", "GeometryCollection"):
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        features = None
    if not isinstance(features, list):
        raise AnnotationError("GeoJSON holds no features", path=path,
                              fix="export a FeatureCollection of polygons from QuPath")
    named, excluded, detections = [], [], 0
    for i, feat in enumerate(features):
        if isinstance(feat, dict) and feat.get("geometry", 0) is None:
            continue  # GeoJSON's unlocated feature (a measurement without a shape): no area
        if not isinstance(feat, dict) or not isinstance(feat.get("geometry"), dict):
            raise AnnotationError(f"feature {i} has no geometry", path=path, fix="export polygons from QuPath")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            props = {}
        if str(props.get("objectType", "")).lower() in NOT_ANNOTATIONS:  # cells found by QuPath, not a drawn area
            detections += 1
            continue
        name = _class_name(props.get("classification"))
        own = str(props.get("name") or "")  # an object named "Ignore" or "Exclusion" is one, classified or not
        for geometry in _geojson_areas(feat["geometry"]):
            geom_type = geometry.get("type")
            if not _all_finite(geometry.get("coordinates")):  # before GEOS, which warns and then misreads them
                raise _not_finite(path)
            try:
                geom = shape(geometry)
            except Exception as exc:
                raise AnnotationError(f"feature {i} has an invalid {geom_type} ({exc})", path=path,
                                      fix="check the coordinates are [[x, y], ...] rings") from None
            if (name and EXCLUDED_NAMES.search(name)) or (own and EXCLUDED_NAMES.search(own)):
                excluded.append(geom)
            else:
                named.append((name, geom))
    if detections:
        log.info("%s: %d detection/cell object(s) passed over: only annotations outline the tumour bed", path,
                 detections)
    chosen = choose_bed(named, path)
    if not chosen and named:  # every class says it is not the bed ("Peritumoral stroma", "Non-tumour")
        raise _not_bed(named, path)
    if not chosen:
        what = ("only detection/cell objects" if detections and not excluded else
                "no polygons other than excluded areas" if excluded else "no polygons")
        raise AnnotationError(f"GeoJSON holds {what}", path=path, fix="draw the tumour bed as a polygon or area "
                              "annotation" + (" (QuPath: export the annotations, not the detections)" if detections
                                              else ""))
    return chosen, [*excluded, *not_bed_areas(named, path, chosen)]


def _class_name(cls: object) -> str:
    """A QuPath classification's name: ``{"name": "Tumor"}``, or 0.4's ``{"names": ["Tumor",
    "Positive"]}`` (a derived class, "Tumor: Positive"), or a plain string."""
    if isinstance(cls, dict):
        if cls.get("name"):
            return str(cls["name"])
        names = cls.get("names")
        return ": ".join(map(str, names)) if isinstance(names, list) else ""
    return str(cls) if cls else ""


def _geojson_areas(geometry: dict) -> list[dict]:
    """The Polygon and MultiPolygon members of a GeoJSON geometry, a GeometryCollection's included
    (points and lines are not areas)."""
    if geometry.get("type") in ("Polygon", "MultiPolygon"):
        return [geometry]
    if geometry.get("type") == "GeometryCollection":
        members = geometry.get("geometries")
        return [g for m in members if isinstance(m, dict) for g in _geojson_areas(m)] if isinstance(members, list) else []
    return []


def _imagescope_polygons(path: Path) -> tuple[list, list]:
    """(bed regions, excluded regions): a Region with ``NegativeROA="1"``, or in a layer named like
    an exclusion, marks an area to leave out; layer names choose the bed as classes do
    (:func:`choose_bed`)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise AnnotationError(f"malformed ImageScope XML ({exc})", path=path,
                              fix="save the annotation again from ImageScope or ASAP") from None
    if root.tag == "ASAP_Annotations":
        return _asap_polygons(root, path)
    named, excluded, dropped = [], [], 0
    for layer in root.iter("Annotation"):  # a layer's Name is its class, as an ASAP group's
        layer_name = str(layer.attrib.get("Name", "")).strip()
        for region in layer.iter("Region"):
            polygon, negative = _imagescope_region(region, path)
            if polygon is None:
                dropped += 1
            elif negative or (layer_name and EXCLUDED_NAMES.search(layer_name)):
                excluded.append(polygon)
            else:
                named.append((layer_name, polygon))
    if dropped:
        log.info("%s: %d region(s) that are no area (a line, an arrow, a ruler) passed over", path, dropped)
    polygons = choose_bed(named, path)
    if not polygons and named:
        raise _not_bed(named, path, "layer", "ImageScope XML")
    if not polygons:
        raise AnnotationError("ImageScope XML holds no (positive) regions with 3 or more vertices", path=path,
                              fix="draw the tumour bed as a polygon region")
    return polygons, [*excluded, *not_bed_areas(named, path, polygons)]


def _imagescope_region(region, path: Path):
    """(the region's polygon, whether it is a negative region); ``(None, False)`` for one that is no
    area. An ellipse (``Type="2"``) is stored as the two corners of its bounding box."""
    from shapely import affinity
    from shapely.geometry import Point, Polygon

    vertices = []
    for v in region.iter("Vertex"):
        try:
            vertices.append((float(v.attrib["X"]), float(v.attrib["Y"])))
        except (KeyError, ValueError):
            raise AnnotationError("a Vertex lacks numeric X/Y", path=path,
                                  fix="save the annotation again from ImageScope") from None
        if not _all_finite(list(vertices[-1])):
            raise _not_finite(path)
    negative = str(region.attrib.get("NegativeROA", "0")).strip() == "1"
    if str(region.attrib.get("Type", "0")).strip() == "2" and len(vertices) == 2:
        (x0, y0), (x1, y1) = vertices
        circle = Point((x0 + x1) / 2, (y0 + y1) / 2).buffer(1.0, quad_segs=16)
        return affinity.scale(circle, abs(x1 - x0) / 2, abs(y1 - y0) / 2), negative
    return (Polygon(vertices), negative) if len(vertices) >= 3 else (None, False)


def _asap_polygons(root, path: Path) -> tuple[list, list]:
    """(bed polygons, excluded polygons) of an ASAP XML (CAMELYON, TIGER; level-0 px). Groups named
    like a tumour bed are the bed when there are any (else every area annotation); groups named
    like an exclusion (``Exclusion``, CAMELYON's ``_2``) are cut out of it."""
    from shapely.geometry import Polygon

    named, excluded = [], []
    for ann in root.iter("Annotation"):
        if str(ann.attrib.get("Type", "Polygon")).lower() not in ("polygon", "spline", "rectangle"):
            continue  # dots and point sets mark cells, not areas
        try:
            points = sorted((float(c.attrib.get("Order", i)), float(c.attrib["X"]), float(c.attrib["Y"]))
                            for i, c in enumerate(ann.iter("Coordinate")))
        except (KeyError, ValueError):
            raise AnnotationError("a Coordinate lacks numeric X/Y", path=path,
                                  fix="save the annotation again from ASAP") from None
        if not _all_finite([v for point in points for v in point]):
            raise _not_finite(path)
        if len(points) < 3:
            continue
        polygon, group = Polygon([(x, y) for _, x, y in points]), str(ann.attrib.get("PartOfGroup", ""))
        if EXCLUDED_NAMES.search(group):
            excluded.append(polygon)
        else:
            named.append((group, polygon))
    chosen = choose_bed(named, path)
    if not chosen and named:
        raise _not_bed(named, path, "group", "ASAP XML")
    if not chosen:
        raise AnnotationError("ASAP XML holds no polygon annotations with 3 or more coordinates", path=path,
                              fix="draw the tumour bed as a polygon annotation")
    return chosen, [*excluded, *not_bed_areas(named, path, chosen)]


def _all_finite(coords) -> bool:
    """Whether every number in nested coordinate lists is finite (JSON's NaN and Infinity are not)."""
    if isinstance(coords, float):
        return math.isfinite(coords)
    if isinstance(coords, list):
        return all(_all_finite(c) for c in coords)
    return True  # ints, and anything else: shapely judges it


def _not_bed(named: list, path: Path, kind: str = "class", fmt: str = "GeoJSON") -> AnnotationError:
    message, fix = only_not_bed_classes(named, kind, fmt)
    return AnnotationError(message, path=path, fix=fix)


def _not_finite(path: Path) -> AnnotationError:
    return AnnotationError("a polygon has coordinates that are not finite numbers (NaN or infinity)", path=path,
                           fix="export the annotation again in level-0 pixel coordinates")


def _valid(polygons: list, path: Path) -> list:
    """The polygons made valid one by one; a MultiPolygon's parts each on its own, so parts that
    overlap are joined by their union (GEOS would make the whole valid by the even-odd rule, and
    drop the overlap), while a polygon's own holes stay holes."""
    import shapely
    from shapely.validation import make_valid

    valid = []
    for geom in polygons:
        if not np.isfinite(shapely.get_coordinates(geom)).all():  # GEOS cannot work with NaN or infinity
            raise _not_finite(path)
        for part in getattr(geom, "geoms", [geom]):
            valid.append(part if part.is_valid else make_valid(part))
    return valid


def _union(polygons: list, path: Path):
    from shapely.geometry import MultiPolygon
    from shapely.ops import unary_union

    merged = unary_union(_valid(polygons, path))
    polys = [g for g in getattr(merged, "geoms", [merged]) if g.geom_type == "Polygon" and g.area > 0]
    if not polys:
        raise AnnotationError("annotation polygons have no area", path=path, fix="draw closed polygons")
    return MultiPolygon(polys)
