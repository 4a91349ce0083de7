"""Tumour-bed outlines as WKT text (``<slide_id>.wkt``), and outlines named for a slide in a format
WeakSTIL does not read.

WKT (well-known text: ``POLYGON ((x y, ...))``, ``MULTIPOLYGON``, a ``GEOMETRYCOLLECTION``) is what
shapely, PostGIS, QGIS and many scripts write; here its coordinates are level-0 pixels, as a
GeoJSON's. A file may hold one geometry or one per line; an EWKT ``SRID=...;`` prefix is allowed.
Until hunt 31 a ``.wkt`` outline was not looked for: the slide's bed was the detector's (or the
whole tissue), ``tumorbed_source`` said so, and the lab's outline went unused with an info line."""

from __future__ import annotations

import re
from pathlib import Path

from weakstil.annotation_errors import AnnotationError, EmptyAnnotationError
from weakstil.annotation_foreign import MASK_SUFFIXES, first_line, foreign_outline
from weakstil.annotation_geometry import valid_parts

#: Formats of outlines other tools write that WeakSTIL does not read: a file of the slide's name in
#: one of them is an error for that slide (its outline would go unused without a word).
UNREAD_SUFFIXES = {".qpdata": "a QuPath project data file", ".svg": "an SVG drawing", ".roi": "an ImageJ ROI",
                   ".shp": "an ESRI shapefile", ".gpkg": "a GeoPackage", ".kml": "a KML file",
                   ".wkb": "well-known binary (WKB)", ".dxf": "a DXF drawing"}
#: Sedeen Viewer's session file (``S1.session.xml`` beside ``S1.svs``): XML, but neither ImageScope's nor ASAP's.
SEDEEN = "a Sedeen Viewer session"
# (not .zip: an annotation folder may be the slides' own, where S1.zip can be a zipped MIRAX slide)
#: Text files that may hold WKT under another extension (read only when renamed .wkt).
_TEXT_SUFFIXES = (".txt", ".csv", ".tsv")
_WKT_START = re.compile(r"^\s*(SRID=\d+;\s*)?(MULTI)?POLYGON\b|^\s*(SRID=\d+;\s*)?GEOMETRYCOLLECTION\b", re.I)
_FORMATS = ("QuPath GeoJSON (.geojson), ImageScope or ASAP XML (.xml), HALO (.annotations), NDP.view (.ndpa), WKT (.wkt) "
            "or HistomicsTK/DSA JSON (.json)")


def wkt_polygons(path: Path) -> tuple[list, list]:
    """(bed polygons, no exclusions) of a WKT file: one geometry, or one per line."""
    import shapely.wkt
    from shapely.errors import ShapelyError

    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise AnnotationError("is not WKT text (not UTF-8 text)", path=path,
                              fix=f"export the outline as {_FORMATS}") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise EmptyAnnotationError("WKT file is empty", path=path, fix="export the tumour-bed outline again")
    chunks = [" ".join(lines)] + (lines if len(lines) > 1 else [])
    geometries = None
    for attempt in ([chunks[0]], chunks[1:]):  # the whole text as one geometry, else one geometry a line
        try:
            geometries = [shapely.wkt.loads(re.sub(r"^\s*SRID=\d+;", "", c)) for c in attempt if c]
            break
        except (ShapelyError, ValueError, TypeError):
            continue
    if not geometries:
        raise AnnotationError(f"is not WKT text (it begins {lines[0].strip()[:40]!r})", path=path,
                              fix="write POLYGON ((x y, ...)) in level-0 pixels, or export the outline as QuPath "
                                  "GeoJSON (.geojson)")
    polygons, kinds, n = [], set(), 0
    for geometry in geometries:
        for part in getattr(geometry, "geoms", [geometry]):
            kinds.add(part.geom_type)
            if part.geom_type in ("Polygon", "MultiPolygon"):
                n += 1  # numbered, so a warning about one names which
                polygons.extend(valid_parts(part, path, f"WKT polygon {n}"))
    if not polygons and n:
        raise AnnotationError(f"WKT holds no polygon with an area: its {n} polygon(s) are degenerate (fewer than 3 "
                              "distinct points, or all on one line)", path=path, fix="draw the tumour bed as a closed polygon")
    if not polygons:
        raise AnnotationError(f"WKT holds no polygon (only {', '.join(sorted(kinds)) or 'empty geometries'})",
                              path=path, fix="draw the tumour bed as a closed polygon")
    return polygons, []


def unread_outline(directory: Path, slide_id: str, slide_suffixes: tuple[str, ...]) -> AnnotationError | None:
    """Why a file in ``directory`` named for ``slide_id`` (``S1.qpdata``, ``S1_tumorbed.svg``, QuPath's
    ``S1.svs.roi``; ``S1.txt`` holding WKT) is not read as its outline, or ``None`` when there is none."""
    import unicodedata

    def key(name: str) -> str:
        return unicodedata.normalize("NFC", name).lower()

    stems = {key(slide_id), key(f"{slide_id}_tumorbed")} | {key(slide_id + s) for s in slide_suffixes}
    try:
        files = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    except OSError:
        return None
    for path in files:
        if key(path.name) in {f"{s}.session.xml" for s in stems} and path.is_file():  # Sedeen names it so
            return unread_format(path, SEDEEN, slide_id)
        suffix = path.suffix.lower()
        if key(path.name[: -len(suffix)] if suffix else path.name) not in stems or not path.is_file():
            continue
        if suffix in UNREAD_SUFFIXES:
            return unread_format(path, UNREAD_SUFFIXES[suffix], slide_id)
        if suffix in (*MASK_SUFFIXES, ".tif", ".tiff", ".csv"):  # a mask (a TIFF: not the slide), napari's Shapes CSV
            if (foreign := foreign_outline(path, slide_id)) is not None:
                return foreign
        if suffix in _TEXT_SUFFIXES and _holds_wkt(path):
            return AnnotationError(f"is named for slide {slide_id} and holds WKT text, read only from a .wkt file: "
                                   "the slide's outline would go unused", path=path,
                                   fix=f"rename it to {path.name[: -len(suffix)]}.wkt")
    return None


def unread_format(path: Path, what: str, slide_id: str = "") -> AnnotationError:
    """The error of an outline in a format WeakSTIL does not read (``what``: :data:`UNREAD_SUFFIXES`'s words)."""
    named = f"is named for slide {slide_id} but " if slide_id else ""
    return AnnotationError(f"{named}is {what}, a format WeakSTIL does not read: the slide's outline would go unused",
                           path=path, fix=f"export the outline as {_FORMATS}")


def _holds_wkt(path: Path) -> bool:
    return bool(_WKT_START.match(first_line(path)))
