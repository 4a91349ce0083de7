"""The frame of an annotation's coordinates on a slide whose scanned area is a rectangle inside its
level-0 image (OpenSlide's ``openslide.bounds-x/-y/-width/-height``: 3DHISTECH MIRAX ``.mrxs``, some
Leica ``.scn``...), used by :func:`weakstil.tumorbed.bed.from_annotation`.

OpenSlide's level-0 coordinates, which WeakSTIL's tiles, beds and outputs use, start at the corner of
the whole image. QuPath (0.2 on) opens such a slide through OpenSlide cropped to the bounds (its
``OpenslideImageServer`` adds ``bounds-x``/``bounds-y`` to every request), so the coordinates it
exports start at the bounds' corner: read as they stand, its outline of an MRXS lay ``bounds-x`` px
left and ``bounds-y`` px above what was drawn, on other tissue or on glass. ASAP and ImageScope use
OpenSlide's or the scanner's full frame.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("weakstil.annotations")

#: The OpenSlide properties of the scanned area, in QuPath's order of reading them.
BOUNDS_KEYS = ("openslide.bounds-x", "openslide.bounds-y", "openslide.bounds-width", "openslide.bounds-height")
#: The attributes (tiles and feature files) recording the scanned area's corner, for a slide that has one.
ORIGIN_ATTRS = ("slide_bounds_x", "slide_bounds_y")


def bounds_origin(properties) -> dict[str, int]:
    """``{"slide_bounds_x": x, "slide_bounds_y": y}`` of a slide's OpenSlide properties when they give
    a scanned area whose corner is not the image's (QuPath's crop), else ``{}``."""
    try:
        x, y, w, h = (int(properties[k]) for k in BOUNDS_KEYS)
    except (KeyError, TypeError, ValueError):
        return {}
    return dict(zip(ORIGIN_ATTRS, (x, y))) if (x, y) != (0, 0) and w > 0 and h > 0 else {}


#: OpenSlide vendors whose slides never give a scanned area (no need to open a slide a file of
#: before hunt 30 was made from, which does not record it).
_NO_BOUNDS_VENDORS = ("aperio", "generic-tiff", "hamamatsu", "dicom", "unknown")


def origin_of(attrs) -> tuple[float, float]:
    """The scanned area's corner recorded in a tiles or features file's ``attrs`` ((0, 0): none). A
    file made before it was recorded, of a slide of another vendor, has the slide's own properties
    read, where the slide is still at its recorded path."""
    if ORIGIN_ATTRS[0] in attrs or ORIGIN_ATTRS[1] in attrs:
        return float(attrs.get(ORIGIN_ATTRS[0], 0) or 0), float(attrs.get(ORIGIN_ATTRS[1], 0) or 0)
    vendor, slide = str(attrs.get("slide_vendor", "unknown")), str(attrs.get("slide_path", ""))
    if vendor in _NO_BOUNDS_VENDORS:
        return 0.0, 0.0
    from weakstil.slide_backend import slide_properties

    found = bounds_origin(slide_properties(slide))
    return float(found.get(ORIGIN_ATTRS[0], 0)), float(found.get(ORIGIN_ATTRS[1], 0))


def is_qupath_export(path: str | Path) -> bool:
    """Whether a GeoJSON was written by QuPath: its objects say their QuPath object type
    (``objectType``, ``object_type``, 0.2's Feature ``id``), and it is not one of our own files."""
    from weakstil.annotation_geojson import object_type, read_json
    from weakstil.annotations import geojson_written_by

    if Path(path).suffix.lower() not in (".geojson", ".json") or geojson_written_by(path):
        return False
    data = read_json(Path(path))
    if isinstance(data, dict) and isinstance(data.get("root"), dict):  # QuPath's hierarchy (GsonTools)
        return True
    features = data.get("features") if isinstance(data, dict) and data.get("type") == "FeatureCollection" else \
        [data] if isinstance(data, dict) else data if isinstance(data, list) else []
    for feat in features if isinstance(features, list) else []:
        props = feat.get("properties") if isinstance(feat, dict) else None
        if isinstance(props, dict) and any(k in props for k in ("objectType", "object_type")):
            return True
        if isinstance(feat, dict) and object_type(feat, {}):
            return True
    return False


def _on_tissue(polygons, geom) -> float:
    return geom.tissue_share(geom.outline_mask(polygons))


def to_openslide_frame(raw, path: str | Path, geom):
    """The outline ``raw`` in OpenSlide's level-0 frame, and why it was moved ("" when not).

    On a slide with a scanned area's corner (``geom.origin``), a QuPath GeoJSON is in QuPath's frame
    and is moved by the corner, unless it lies on tissue as it stands and not so moved (a QuPath
    project opened with ``--no-crop``, or Bio-Formats); any other file is moved only when it lies
    mostly off the tissue as it stands and on it so moved. Either way a line says what was done."""
    from shapely.affinity import translate

    dx, dy = getattr(geom, "origin", (0.0, 0.0))
    if (dx, dy) == (0.0, 0.0) or raw.is_empty:
        return raw, ""
    moved = translate(raw, dx, dy)
    given, shifted = _on_tissue(raw, geom), _on_tissue(moved, geom)
    where = (f"{100 * given:.0f}% of it on tissue as it stands, {100 * shifted:.0f}% moved by the scanned area's corner "
             f"(openslide.bounds-x/-y {dx:g}, {dy:g} px)")
    if is_qupath_export(path):
        if given >= 0.5 and given >= shifted + 0.3:
            log.warning("%s: a QuPath export on a slide with a scanned-area offset, but it lies on tissue in "
                        "OpenSlide's frame, not QuPath's (%s): used as it stands (QuPath opened without its crop?)",
                        path, where)
            return raw, ""
        log.info("%s: read in QuPath's frame, which starts at the scanned area's corner: moved by %g, %g px (%s)",
                 path, dx, dy, where)
        return moved, f"moved by the scanned area's corner ({dx:g}, {dy:g} px): QuPath's frame"
    if given < 0.5 and shifted >= 0.8:
        log.warning("%s: %s: read as drawn in QuPath's frame (cropped to the scanned area) and moved; export it in "
                    "OpenSlide's level-0 frame to silence this", path, where)
        return moved, f"moved by the scanned area's corner ({dx:g}, {dy:g} px)"
    return raw, ""


def warn_if_y_up(raw, path: str | Path, geom, given: float | None = None) -> str:
    """Why the outline looks drawn with its y axis pointing up ("" if not): Cytomine stores
    annotations in such a frame (WKT, origin at the image's bottom-left corner), so a script's export
    of it is the outline mirrored top to bottom; it is mostly off the tissue as it stands and on it
    mirrored (y -> slide height - y). Warned of, and flagged ``annotation_misplaced``, as micrometres are.
    ``given``: the outline's share on tissue where the caller has it (its rasterised mask)."""
    from shapely.affinity import scale

    if raw.is_empty:
        return ""
    given = _on_tissue(raw, geom) if given is None else given
    if given >= 0.5:
        return ""
    mirrored = scale(raw, xfact=1.0, yfact=-1.0, origin=(0, geom.height / 2))
    flipped = _on_tissue(mirrored, geom)
    if flipped < 0.8:
        return ""
    why = (f"{100 * given:.0f}% of the annotation on tissue, {100 * flipped:.0f}% if its y axis pointed up (an export "
           "with the origin at the bottom-left corner, as Cytomine stores annotations?)")
    log.warning("%s: %s; export it in level-0 pixels with y down (y = slide height - y)", path, why)
    return why


def for_another_scan(path: str | Path, geom) -> str:
    """Why a bed GeoJSON WeakSTIL wrote (``tumorbed apply``: its ``weakstil_slide`` member) is of
    another scan than the slide read ("" if not, or not known): a beds folder of an earlier cohort,
    or of the same slides scanned again, passed as ``--annotations`` was read as this scan's outline."""
    import json

    from weakstil.annotations import geojson_written_by
    from weakstil.fingerprint import recorded  # of this fingerprint version only

    mine = recorded({"slide_fingerprint": getattr(geom, "fingerprint", "")})
    if not mine or Path(path).suffix.lower() not in (".geojson", ".json") or not geojson_written_by(path):
        return ""
    try:
        slide = json.loads(Path(path).read_text(encoding="utf-8")).get("weakstil_slide") or {}
    except (OSError, ValueError, AttributeError, RecursionError):
        return ""
    theirs = recorded(slide) if isinstance(slide, dict) else None
    if not theirs or theirs == mine:
        return ""
    why = (f"a bed WeakSTIL wrote for another scan (slide {slide.get('slide_id', '?')}, fingerprint {theirs[:12]}, "
           f"{slide.get('slide_width', '?')}x{slide.get('slide_height', '?')} px at {slide.get('slide_mpp', '?')} µm/px) "
           f"than this slide ({mine[:12]}, {geom.width}x{geom.height} px at {geom.slide_mpp:g} µm/px)")
    log.warning("%s: %s; its outline is used as given: make the bed again for this scan (tumorbed apply)", path, why)
    return why
