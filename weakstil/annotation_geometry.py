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
    parts = []
    for part in getattr(geometry, "geoms", [geometry]):
        if part.is_empty or part.geom_type != "Polygon":
            continue
        parts.extend([part] if part.is_valid else _repaired(part, path, what))
    return parts


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
