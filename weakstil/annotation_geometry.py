"""A drawn polygon read as the area its outline encloses (used by :mod:`weakstil.annotations`).

A freehand outline that runs on past its start, or crosses itself, is not a valid polygon. GEOS'
``make_valid`` repairs it by the even-odd rule, which drops every area the pen went round twice (an
outline traced 1.25 times lost a quarter of the bed) and adds a hole ring drawn outside its shell to
the bed. Here each ring is filled by the area it encloses (every area it goes round, in either
direction), its holes are cut out of it, and a hole lying outside its shell is left out.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger("weakstil.annotations")


def valid_parts(geometry, path: Path, what: str) -> list:
    """The valid polygons of a drawn Polygon or MultiPolygon (each part on its own: parts that
    overlap are joined later by their union). An invalid part whose repair changes its area is
    named in one warning with the file, ``what`` (the object) and both areas."""
    parts, members = [], list(getattr(geometry, "geoms", [geometry]))
    for k, part in enumerate(members):
        if part.is_empty or part.geom_type != "Polygon":
            continue
        mended = [part] if part.is_valid else _repaired(part, path, what)
        if not mended:  # one slip of the pen (a polygon of collinear points) must not cost the file's other shapes
            skipped_degenerate(path, what + (f", part {k + 1}" if len(members) > 1 else ""),
                               "its vertices enclose no area")
        parts.extend(mended)
    return parts


def skipped_degenerate(path: Path, what: str, why: str) -> None:
    log.warning("%s: %s is a degenerate shape (%s): skipped, the other shapes are read", path, what, why)


def _distinct(ring) -> int | None:
    """How many distinct (x, y) points a GeoJSON ring lists (``None``: not a list of numeric points)."""
    try:
        xy = np.asarray(ring, np.float64)
    except (TypeError, ValueError):
        return None
    return len(np.unique(xy[:, :2], axis=0)) if xy.ndim == 2 and xy.shape[1] >= 2 else None


def polygons_without_short_rings(geometry: dict, path: Path, what: str):
    """(the polygons, how many were skipped) of a GeoJSON Polygon or MultiPolygon that shapely refuses whole
    because a ring lists fewer than 3 distinct points (a 2-point ring): such a shell's polygon is skipped
    with a warning, such a hole (it cuts nothing) left out; ``None`` when the geometry is wrong otherwise."""
    from shapely.geometry import MultiPolygon, Polygon

    coords = geometry.get("coordinates")
    polys = [coords] if geometry.get("type") == "Polygon" else coords
    if not isinstance(polys, list) or not all(isinstance(p, list) and p for p in polys):
        return None
    out, skipped = [], 0
    for k, rings in enumerate(polys):
        counts = [_distinct(r) for r in rings]
        if None in counts:
            return None
        if counts[0] < 3:
            skipped_degenerate(path, what + (f", part {k + 1}" if len(polys) > 1 else ""),
                               f"a ring of {counts[0]} distinct point(s)")
            skipped += 1
            continue
        holes = [np.asarray(r, np.float64)[:, :2] for r, n in zip(rings[1:], counts[1:]) if n >= 3]
        try:
            out.append(Polygon(np.asarray(rings[0], np.float64)[:, :2], holes))
        except Exception:
            return None
    return MultiPolygon(out), skipped


def closed_lines(geometry: dict, path: Path, what: str):
    """(the polygons a GeoJSON LineString or MultiLineString encloses where it is closed, whether a line
    is open). A pathologist's outline drawn with QuPath's polyline tool and ended on its first point is a
    LineString whose first and last points are the same: the polygon it encloses (with 3 distinct points
    or more). An open line encloses nothing: it is no bed."""
    from shapely.geometry import MultiPolygon, Polygon

    coords = geometry.get("coordinates")
    lines = [coords] if geometry.get("type") == "LineString" else coords
    out, is_open = [], False
    for line in lines if isinstance(lines, list) else []:
        n = _distinct(line)
        xy = np.asarray(line, np.float64)[:, :2] if n else None
        if n is None or n < 3 or (xy[0] != xy[-1]).any():
            is_open = True
            continue
        out.append(Polygon(xy))
    if out:
        log.info("%s: %s is a closed polyline (its last point is its first): read as the polygon it encloses",
                 path, what)
    return (MultiPolygon(out) if out else None), is_open


def _repaired(polygon, path: Path, what: str) -> list:
    from shapely.ops import unary_union
    from shapely.validation import explain_validity, make_valid

    areas = [enclosed(ring) for ring in (polygon.exterior, *polygon.interiors)]
    # the shell is the first ring, unless another ring encloses it (rings listed hole first)
    shell = max((i for i, a in enumerate(areas) if i == 0 or (a.area > areas[0].area and
                 a.intersection(areas[0]).area >= 0.999 * areas[0].area)), key=lambda i: areas[i].area)
    holes = [a for i, a in enumerate(areas) if i != shell]
    filled = areas[shell].difference(unary_union(holes)) if holes else areas[shell]
    out = [g for g in getattr(filled, "geoms", [filled]) if g.geom_type == "Polygon" and g.area > 0]
    even_odd = sum(g.area for g in _polygons(make_valid(polygon)))
    new = sum(g.area for g in out)
    if abs(new - even_odd) > 1e-3 * max(new, even_odd, 1.0):
        log.warning("%s: %s is not a valid polygon (%s); read as the area its outline encloses, less the holes "
                    "inside it: %.0f px², not the %.0f px² of the even-odd rule", path, what, explain_validity(polygon),
                    new, even_odd)
    else:
        log.debug("%s: %s repaired (%s)", path, what, explain_validity(polygon))
    return out


def _polygons(geometry) -> list:
    if geometry.geom_type == "Polygon":
        return [geometry]
    return [p for g in getattr(geometry, "geoms", []) for p in _polygons(g)]


def enclosed(ring):
    """The area a ring (a shapely ring or line, or its vertices) encloses: the union of the faces of the noded ring. Every face is counted,
    whichever way the pen went round it: a freehand outline that runs on past its start, or back over
    part of itself the other way, still means the area inside its stroke (the nonzero winding rule
    would leave out a part gone round once each way)."""
    import shapely
    from shapely.geometry import LineString, Polygon
    from shapely.ops import unary_union

    xy = np.asarray(getattr(ring, "coords", ring), np.float64)[:, :2]
    if len(xy) and (xy[0] != xy[-1]).any():
        xy = np.vstack([xy, xy[:1]])  # the vertices of an open ring: closed as a polygon closes it
    if len(xy) < 4:
        return Polygon()
    faces = [f for f in shapely.get_parts(shapely.polygonize(shapely.get_parts(shapely.node(LineString(xy)))))
             if f.area > 0]
    return unary_union(faces) if faces else Polygon()
