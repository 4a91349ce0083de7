"""HistomicsTK / Digital Slide Archive (DSA, HistomicsUI) annotation JSON read as tumour-bed polygons
(used by :mod:`weakstil.annotation_geojson`, which reads ``.json`` files).

A DSA annotation document is ``{"annotation": {"name": ..., "elements": [...]}}`` (the Girder API's
download, or a list of such documents for every annotation of the slide; HistomicsTK's scripts
write the bare ``{"name": ..., "elements": [...]}``). Its elements are in level-0 pixels: closed
``polyline`` (with optional ``holes``), ``rectangle`` and ``ellipse`` (``center``, ``width``,
``height``, ``rotation`` in radians), ``circle`` (``center``, ``radius``); points, arrows and open
polylines are no area. An element's class is its ``group`` (HistomicsUI's style group), else its
``label.value``, else the document's ``name``. Until hunt 37b such a file was refused as a GeoJSON
"holding no features", with the fix "export a FeatureCollection of polygons from QuPath".
"""

from __future__ import annotations

import logging
from pathlib import Path

from weakstil.annotation_classes import (choose_bed, class_name, is_exclusion, not_bed_areas, says_what_it_is,
                                         warn_tumour_named_cut)
from weakstil.annotation_errors import AnnotationError, all_finite, not_bed, not_finite
from weakstil.annotation_geometry import valid_parts

log = logging.getLogger("weakstil.annotations")


def dsa_documents(data) -> list[dict] | None:
    """The annotation documents (each ``{"name", "elements"}``) of parsed JSON in DSA's format, or ``None``
    when it is not that format."""
    items = data if isinstance(data, list) else [data]
    docs = [d.get("annotation", d) if isinstance(d, dict) else None for d in items]
    if docs and all(isinstance(d, dict) and isinstance(d.get("elements"), list) for d in docs):
        return docs
    return None


def _shape(element: dict, path: Path):
    """An element's polygon (level-0 px), or ``None`` for one that is no area."""
    from shapely import affinity
    from shapely.geometry import Point, Polygon, box

    kind = str(element.get("type", "")).lower()
    numbers = [element.get(k) for k in ("points", "holes", "center", "width", "height", "radius", "rotation")]
    if not all_finite([v for v in numbers if v is not None]):
        raise not_finite(path)
    try:
        if kind == "polyline":
            points = [(float(p[0]), float(p[1])) for p in element.get("points") or []]
            if not element.get("closed", False) or len(points) < 3:
                return None  # an open polyline is a line drawn, not an area
            holes = [[(float(p[0]), float(p[1])) for p in h] for h in element.get("holes") or []]
            return Polygon(points, [h for h in holes if len(h) >= 3])
        if kind in ("rectangle", "ellipse", "circle"):
            cx, cy = (float(v) for v in element["center"][:2])
            if kind == "circle":
                w = h = 2 * float(element["radius"])
            else:
                w, h = float(element["width"]), float(element["height"])
            shape = box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2) if kind == "rectangle" else \
                affinity.scale(Point(cx, cy).buffer(1.0, quad_segs=16), w / 2, h / 2)
            angle = float(element.get("rotation") or 0)
            return affinity.rotate(shape, angle, origin=(cx, cy), use_radians=True) if angle else shape
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise AnnotationError(f"a {kind} element has no usable coordinates ({exc})", path=path,
                              fix="download the annotation again from the Digital Slide Archive") from None
    return None  # point, arrow, heatmaps, image overlays: no drawn area


def _element_class(element: dict, doc_name: str) -> str:
    """An element's class: its style group, else a label that says what the area is ('Tumor'), else its
    document's name (HistomicsUI's default label is empty; a document is often named for its class)."""
    group, label = element.get("group"), element.get("label")
    label = label.get("value") if isinstance(label, dict) else label
    if isinstance(group, str) and class_name(group):
        return group
    return label if isinstance(label, str) and says_what_it_is(label) else doc_name


def dsa_polygons(docs: list[dict], path: Path) -> tuple[list, list]:
    """(bed polygons, excluded polygons) of DSA annotation documents: classes choose the bed as in GeoJSON
    (:func:`weakstil.annotation_classes.choose_bed`), exclusions are cut out."""
    named, excluded, cut_names, skipped = [], [], [], 0
    for doc in docs:
        doc_name = str(doc.get("name") or "")
        for i, element in enumerate(doc["elements"]):
            polygon = _shape(element, path) if isinstance(element, dict) else None
            if polygon is None:
                skipped += 1
                continue
            name = _element_class(element, doc_name)
            parts = valid_parts(polygon, path, f"element {i} of '{doc_name}'")
            if is_exclusion(name):
                excluded += parts
                cut_names.append(name)
            else:
                named += [(name, p) for p in parts]
    if skipped:
        log.info("%s: %d element(s) that are no area (points, arrows, open polylines) passed over", path, skipped)
    warn_tumour_named_cut(cut_names, path)
    chosen = choose_bed(named, path)
    if not chosen and named:
        raise not_bed(named, path, "group", "DSA annotation JSON")
    if not chosen:
        raise AnnotationError("DSA annotation JSON holds no closed polyline, rectangle, ellipse or circle elements",
                              path=path, fix="draw the tumour bed as a closed polygon in HistomicsUI")
    return chosen, [*excluded, *not_bed_areas(named, path, chosen)]
