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
    """A (multi)polygon as rings in drawing order, level by level: the outlines no other polygon encloses (bed),
    then their holes, then the polygons lying in those holes (bed again), then their holes, and so on. A polygon
    lying in another's hole is drawn after that hole and stays bed. Level by level, a big slide's lace of 1,565
    islands with their holes is a handful of runs for :func:`weakstil.bed_edit.ordered_bed_shape` to unite and cut;
    polygon by polygon (largest first, until hunt 32) it was 78, each a union or difference of the whole bed: 115 s
    to rescore or save the saved bed continued in napari."""
    import shapely
    from shapely.geometry import Polygon

    polygons = [g for g in getattr(shape, "geoms", [shape]) if g.geom_type == "Polygon" and not g.is_empty]
    polygons.sort(key=lambda p: -Polygon(p.exterior).area)  # (an enclosing outline is larger: the order within)
    outlines = [Polygon(p.exterior) for p in polygons]
    inside = [p.representative_point() for p in polygons]
    # each polygon's level: how many other polygons' outlines enclose it (polygons do not overlap: its point says)
    tree = shapely.STRtree(outlines)
    pairs = tree.query(inside, predicate="within")  # (point i, outline j): point i within outline j
    level = np.bincount(pairs[0][pairs[0] != pairs[1]], minlength=len(polygons))
    rings: list[Ring] = []
    parts: list[str] = []
    for depth in np.unique(level):
        chosen = [p for p, d in zip(polygons, level) if d == depth]
        for part, picked in ((BED_PART, [p.exterior for p in chosen]),
                             (HOLE_PART, [h for p in chosen for h in p.interiors])):
            for ring in picked:
                xy = np.asarray(ring.coords, float)[:-1, :2]  # the closing vertex repeats the first
                if len(xy) >= 3:
                    rings.append(xy)
                    parts.append(part)
    return rings, parts
