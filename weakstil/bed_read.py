"""A saved tumour bed read back for editing: the bed file as ``--annotations`` reads it, as rings.

The napari bed editor continues a bed saved in an earlier session (``<slide_id>.geojson`` in the bed
folder, or any annotation of the slide that ``--annotations FOLDER`` reads there) from the very shape
that ``weakstil score --annotations`` scores, so that its Rescore gives the CLI's number.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from weakstil.bed_edit import BED_PART, HOLE_PART, Ring


def read_bed_parts(path: str | Path, geom=None) -> tuple[list[Ring], list[str]]:
    """The bed in ``path`` (GeoJSON, ImageScope or ASAP XML, NDP.view .ndpa placed on the slide of ``geom``;
    read by :func:`weakstil.annotations.load_polygons`,
    exclusions cut out) as level-0 ``[x, y]`` rings in drawing order and each one's part, for
    :func:`weakstil.bed_edit.ordered_bed_shape`. Raises :class:`weakstil.errors.AnnotationError` naming the file."""
    from weakstil.annotations import load_polygons

    return shape_parts(load_polygons(path, geom))


def shape_parts(shape) -> tuple[list[Ring], list[str]]:
    """A (multi)polygon as rings in drawing order: each polygon's outline (bed), then its holes, the
    polygons by their outline's area, largest first. A polygon lying in another's hole has the smaller
    outline, so it is drawn after that hole and stays bed."""
    from shapely.geometry import Polygon

    polygons = [g for g in getattr(shape, "geoms", [shape]) if g.geom_type == "Polygon" and not g.is_empty]
    polygons.sort(key=lambda p: -Polygon(p.exterior).area)
    rings: list[Ring] = []
    parts: list[str] = []
    for polygon in polygons:
        for ring, part in [(polygon.exterior, BED_PART), *[(hole, HOLE_PART) for hole in polygon.interiors]]:
            xy = np.asarray(ring.coords, float)[:-1, :2]  # the closing vertex repeats the first
            if len(xy) >= 3:
                rings.append(xy)
                parts.append(part)
    return rings, parts
