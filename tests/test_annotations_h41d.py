"""Helper h41d: annotation files of other tools than QuPath's own export.

A GeoJSON whose positions carry a third value (``[x, y, z]``, valid GeoJSON: GeoPandas, shapely's
``mapping`` of a 3-D shape) or a WKT ``POLYGON Z`` was read, and then the bed's rasterisation failed:
"unexpected ValueError: operands could not be broadcast together ... this is a bug in weakstil", exit 1, for
``tumorbed apply``, ``score``, ``train`` and ``evaluate`` alike. The z is now dropped as the file is read.

A GeoJSON that is a bare list of geometries (``[{"type": "Polygon", ...}]``: a script's
``json.dump([mapping(p) for p in polygons])``) was refused as "feature 0 has no geometry. Fix: export
polygons from QuPath", while one bare geometry and a list of Features were read, and a FeatureCollection
written without its ``"type"`` (``{"features": [...]}``) as "GeoJSON holds no features". Both are now read.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from weakstil.annotations import load_polygons, rasterize

SQUARE = [[400.0, 400.0], [1600.0, 400.0], [1600.0, 1600.0], [400.0, 1600.0], [400.0, 400.0]]
HOLE = [[800.0, 800.0], [800.0, 1200.0], [1200.0, 1200.0], [1200.0, 800.0], [800.0, 800.0]]
AREA = 1200.0 ** 2 - 400.0 ** 2


def _mask_pixels(mp) -> int:
    return int(rasterize(mp, 2000, 2000, slide_mpp=0.5, mask_mpp=8.0).sum())


def _with_z(ring):
    return [[x, y, 12.5] for x, y in ring]


@pytest.mark.parametrize("suffix", [".geojson", ".wkt"])
def test_positions_with_a_z_value_are_read_on_the_image_plane(tmp_path, suffix):
    path = tmp_path / f"S1{suffix}"
    if suffix == ".wkt":
        rings = ", ".join("(" + ", ".join(f"{x} {y} 0" for x, y in r) + ")" for r in (SQUARE, HOLE))
        path.write_text(f"POLYGON Z ({rings})")
    else:
        geometry = {"type": "Polygon", "coordinates": [_with_z(SQUARE), _with_z(HOLE)]}
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": geometry,
             "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}}]}))
    mp = load_polygons(path)
    assert not mp.has_z
    assert mp.area == pytest.approx(AREA)
    flat = tmp_path / "flat.geojson"
    flat.write_text(json.dumps({"type": "Polygon", "coordinates": [SQUARE, HOLE]}))
    assert _mask_pixels(mp) == _mask_pixels(load_polygons(flat)) > 0  # the old code: ValueError here


def test_a_bare_list_of_geometries_is_read_as_its_areas(tmp_path):
    path = tmp_path / "S1.geojson"
    far = [[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0], [0.0, 0.0]]
    path.write_text(json.dumps([{"type": "Polygon", "coordinates": [SQUARE, HOLE]},
                                {"type": "MultiPolygon", "coordinates": [[far]]}]))
    mp = load_polygons(path)
    assert mp.area == pytest.approx(AREA + 100.0 ** 2)
    assert len(mp.geoms) == 2
    assert np.isclose(mp.bounds, (0.0, 0.0, 1600.0, 1600.0)).all()


def test_a_feature_collection_without_its_type_is_read(tmp_path):
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps({"features": [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [SQUARE, HOLE]},
                                              "properties": {"classification": {"name": "Tumor"}}}]}))
    assert load_polygons(path).area == pytest.approx(AREA)  # the old code: 'GeoJSON holds no features'


def test_a_bare_geometry_list_with_a_line_reads_its_polygons(tmp_path):
    """A line or point among bare geometries (a script's dump of a ruler or a marker) is passed over, as in
    a list of Features; it refused the whole file as "feature 1 has no geometry" (review h41r)."""
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps([{"type": "Polygon", "coordinates": [SQUARE]},
                                {"type": "LineString", "coordinates": [[0.0, 0.0], [10.0, 10.0]]},
                                {"type": "Point", "coordinates": [5.0, 5.0]}]))
    assert load_polygons(path).area == pytest.approx(1200.0 ** 2)
