"""Hamamatsu NDP.view 2 annotations (``.ndpa``, saved beside the slide as ``<slide>.ndpi.ndpa``) read
as tumour-bed polygons in level-0 pixels (used by :mod:`weakstil.annotations`).

An ``.ndpa`` is XML: ``<annotations>`` holds one ``<ndpviewstate>`` per annotation, with its
``<title>``, ``<details>``, ``<coordformat>`` (``nanometers``) and one ``<annotation type=...>``:
``freehand`` (``AnnotateFreehand``, ``AnnotateRectangle``: a ``<pointlist>`` of ``<point><x/><y/>``,
``<closed>1</closed>``; ``AnnotateFreehandLine`` is the same left open), ``circle`` (``<x>``, ``<y>``,
``<radius>``), ``pin`` and ``linearmeasure`` (a ruler). Its coordinates are physical: nanometres
from the centre of the glass slide, not pixels. The NDPI records where its image's centre lies from
the slide's centre (``hamamatsu.XOffsetFromSlideCentre``/``YOffsetFromSlideCentre``, nm) and its
µm/px, so a point is at level-0 pixel ``(x - XOffset) / (1000 · mpp-x) + width / 2`` (and so for y),
as NDP.view itself and the open readers (OpenSlide's properties; QuPath and tiatoolbox scripts) place it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("weakstil.annotations")

#: The NDPI's offset of its image's centre from the glass slide's centre (nm), as OpenSlide names it.
OFFSET_KEYS = ("hamamatsu.XOffsetFromSlideCentre", "hamamatsu.YOffsetFromSlideCentre")
#: The attributes (tiles and feature files) recording them, for a slide that has them.
OFFSET_ATTRS = ("ndpi_offset_x_nm", "ndpi_offset_y_nm")
#: ``<coordformat>`` units, in nm.
_UNITS_NM = {"nanometers": 1.0, "nanometres": 1.0, "micrometers": 1e3, "micrometres": 1e3, "millimeters": 1e6,
             "millimetres": 1e6}


def ndpi_offsets(properties) -> dict[str, int]:
    """``{"ndpi_offset_x_nm": x, "ndpi_offset_y_nm": y}`` of a slide's OpenSlide properties when it
    records them (a Hamamatsu NDPI), else ``{}``."""
    try:
        return {a: int(float(properties[k])) for a, k in zip(OFFSET_ATTRS, OFFSET_KEYS)}
    except (KeyError, TypeError, ValueError):
        return {}


@dataclass(frozen=True)
class NdpaFrame:
    """What places NDP.view's nanometres on a slide's level-0 pixels."""

    offset_x_nm: float
    offset_y_nm: float
    mpp: float  #: µm per level-0 pixel
    width: int
    height: int

    def to_pixels(self, x_nm: float, y_nm: float) -> tuple[float, float]:
        nm = 1000.0 * self.mpp
        return (x_nm - self.offset_x_nm) / nm + self.width / 2, (y_nm - self.offset_y_nm) / nm + self.height / 2


def ndpa_frame(geom, path: str | Path) -> NdpaFrame:
    """The frame of an ``.ndpa`` on the slide of ``geom`` (a :class:`weakstil.tumorbed.bed.SlideGeometry`):
    the offsets its tiles recorded, else those of the slide at its recorded path. One
    :class:`weakstil.annotation_errors.AnnotationError` when the slide gives none (not an NDPI)."""
    from weakstil.annotation_errors import AnnotationError

    slide = dict(getattr(geom, "slide", None) or {})
    found = {a: slide[a] for a in OFFSET_ATTRS if a in slide}
    vendor, where = str(slide.get("slide_vendor") or "unknown"), str(slide.get("slide_path") or "")
    if len(found) < 2 and vendor in ("hamamatsu", "unknown"):
        from weakstil.slide_backend import slide_properties

        found = ndpi_offsets(slide_properties(where))  # a file made before the offsets were recorded
    if len(found) < 2:
        what = (f"this {vendor} slide does not record" if vendor not in ("hamamatsu", "unknown") else
                f"its NDPI ({where or 'path not recorded'}) is not at hand to read" if vendor == "hamamatsu" else
                "the slide does not record")
        raise AnnotationError(
            f"is an NDP.view annotation (nanometres from the glass slide's centre), and {what} where its image lies "
            "from that centre (hamamatsu.XOffsetFromSlideCentre/YOffsetFromSlideCentre of an NDPI)", path=path,
            fix="use it with the NDPI it was drawn on (tile that slide), or export the outline from QuPath as GeoJSON")
    if not geom.slide_mpp or geom.slide_mpp <= 0:
        raise AnnotationError("is an NDP.view annotation in nanometres, and the slide has no µm/px to convert it",
                              path=path, fix="give the slide's resolution (--slide-mpp)")
    return NdpaFrame(float(found[OFFSET_ATTRS[0]]), float(found[OFFSET_ATTRS[1]]), float(geom.slide_mpp),
                     int(geom.width), int(geom.height))


def _number(element, tag: str, path: Path) -> float:
    import math

    from weakstil.annotation_errors import AnnotationError, not_finite

    node = element.find(tag)
    try:
        value = float((node.text or "").strip())
    except (AttributeError, ValueError):
        raise AnnotationError(f"an annotation lacks a numeric <{tag}>", path=path,
                              fix="save the annotation again from NDP.view") from None
    if not math.isfinite(value):
        raise not_finite(path)
    return value


def _class_text(state) -> str:
    """An annotation's class: its ``details`` when that says what the area is (scripts that write
    NDP.view files put the class there, NDP.view shows it under the title), else its ``title``."""
    from weakstil.annotation_classes import class_name, is_exclusion, says_what_it_is

    title = str(state.findtext("title") or "").strip()
    details = str(state.findtext("details") or "").strip()
    for text in (details, title):
        if class_name(text) and (says_what_it_is(text) or is_exclusion(text)):
            return text
    return title or details


def _is_hole(state) -> bool:
    """Whether an annotation is a hole: NDP.view has none, and the scripts that write a QuPath polygon
    with holes as an ``.ndpa`` write each hole as an outline whose details (or title) is ``Clear``."""
    return any(str(state.findtext(tag) or "").strip().lower() == "clear" for tag in ("details", "title"))


def ndpa_polygons(path: Path, frame: NdpaFrame) -> tuple[list, list]:
    """(bed polygons, excluded polygons), level-0 px, of an NDP.view ``.ndpa``: closed freehand
    outlines and rectangles, and circles; open lines, pins and rulers passed over. Classes as the
    other formats' (:func:`weakstil.annotation_classes.choose_bed`), from each annotation's details or title."""
    import xml.etree.ElementTree as ET

    from shapely.geometry import Point, Polygon

    from weakstil.annotation_classes import (choose_bed, is_exclusion, not_bed_areas, warn_tumour_named_cut)
    from weakstil.annotation_errors import AnnotationError, not_bed
    from weakstil.annotation_geometry import valid_parts

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise AnnotationError(f"malformed NDP.view annotation XML ({exc})", path=path,
                              fix="save the annotation again from NDP.view") from None
    states = list(root.iter("ndpviewstate"))
    if root.tag != "annotations" and not states:
        raise AnnotationError(f"is not an NDP.view annotation (its root is <{root.tag}>, not <annotations> of "
                              "<ndpviewstate>s)", path=path, fix="save the annotation again from NDP.view")
    named, excluded, cut_names, passed, holes = [], [], [], 0, 0
    for k, state in enumerate(states):
        ann = state.find("annotation")
        if ann is None:
            passed += 1
            continue
        unit = str(state.findtext("coordformat") or "nanometers").strip().lower()
        if unit not in _UNITS_NM:
            raise AnnotationError(f"annotation {state.get('id', k + 1)} has coordinates in '{unit}', not nanometres",
                                  path=path, fix="save the annotation again from NDP.view")
        scale = _UNITS_NM[unit]
        kind = str(ann.get("type", "")).strip().lower()
        shown = str(ann.get("displayname", "")).strip().lower()
        if kind == "circle":
            cx, cy = frame.to_pixels(_number(ann, "x", path) * scale, _number(ann, "y", path) * scale)
            radius = _number(ann, "radius", path) * scale / (1000.0 * frame.mpp)
            polygon = Point(cx, cy).buffer(radius, quad_segs=32) if radius > 0 else None
        elif kind == "freehand":
            closed = str(ann.findtext("closed") or ("0" if shown == "annotatefreehandline" else "1")).strip()
            points = [frame.to_pixels(_number(p, "x", path) * scale, _number(p, "y", path) * scale)
                      for p in ann.iter("point")]
            polygon = Polygon(points) if closed == "1" and len(points) >= 3 else None
        else:  # pin, linearmeasure (a ruler), text: no area
            polygon = None
        if polygon is None:
            passed += 1
            continue
        name = _class_text(state)
        parts = valid_parts(polygon, path, f"annotation {state.get('id', k + 1)} '{name}'")
        if _is_hole(state):
            excluded += parts
            holes += 1
        elif is_exclusion(name):
            excluded += parts
            cut_names.append(name)
        else:
            named += [(name, p) for p in parts]
    if passed:
        log.info("%s: %d NDP.view annotation(s) that are no area (an open line, a pin, a ruler) passed over", path,
                 passed)
    if holes:
        log.info("%s: %d outline(s) named 'Clear' cut out as holes (how QuPath's NDPA scripts write a polygon's holes)",
                 path, holes)
    warn_tumour_named_cut(cut_names, path)
    chosen = choose_bed(named, path)
    if not chosen and named:
        raise not_bed(named, path, "title", "NDP.view annotation")
    if not chosen:
        left = f" ({passed} open line(s), pin(s) or ruler(s) passed over)" if passed else ""
        raise AnnotationError(f"NDP.view annotation holds no closed outline (a freehand region, a rectangle or a "
                              f"circle){left}", path=path,
                              fix="draw the tumour bed with NDP.view's freehand region tool, not its freehand line")
    return chosen, [*excluded, *not_bed_areas(named, path, chosen)]
