"""Fault hunt 18 (a): the tumour-bed workflow as an outside checker runs it (QuPath outlines ->
``tumorbed train/apply`` -> ``--tumorbed-beds``/``--annotations``; the napari bed editor's saved beds
read back by the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def _geometry():
    """A 20x slide of 1 x 1.5 mm (2000 x 3000 px) whose tissue covers it all, tiles of 224 px."""
    from weakstil.tumorbed.bed import SlideGeometry

    coords = np.array([(x, y) for y in range(0, 3000 - 223, 224) for x in range(0, 2000 - 223, 224)], np.int64)
    return SlideGeometry(2000, 3000, 0.5, coords, 224.0, np.ones((188, 125), bool), 8.0)


def _geojson(path: Path, ring) -> Path:
    ring = [list(map(float, p)) for p in ring]
    path.write_text(json.dumps({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]},
                                "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}}))
    return path


#: A freehand (lasso) outline that runs on past its start: round the square, then back along its
#: top edge and down to the middle of its right side (the test of the CLI's reading, hunt 11).
SPIRAL = [[200, 300], [1200, 300], [1200, 1300], [200, 1300], [200, 310], [1190, 310], [1190, 800]]


def test_a_self_crossing_ring_drawn_in_the_bed_editor_is_the_bed_the_cli_reads(tmp_path):
    """The bed editor read a self-crossing ring by GEOS' even-odd repair, which drops the area the
    pen went round twice, while ``--annotations`` reads the same outline in a file as the area it
    encloses: the spiral's Rescore took 14 bed tiles where ``score --annotations`` of the same
    outline drawn in QuPath takes 20, and Save bed wrote the smaller bed."""
    from weakstil.annotations import load_polygons
    from weakstil.bed_edit import bed_shape, bed_tile_flags, ordered_bed_shape, write_bed_geojson
    from weakstil.tumorbed.bed import from_annotation

    geom = _geometry()
    drawn = np.array(SPIRAL, float)
    cli = load_polygons(_geojson(tmp_path / "qupath.geojson", SPIRAL))
    assert cli.area == pytest.approx(1e6, rel=2e-4)
    for shape in (bed_shape([drawn]), ordered_bed_shape([drawn], ["bed"])):
        assert shape.symmetric_difference(cli).area < 1.0
    want = from_annotation(tmp_path / "qupath.geojson", geom).tile_flags
    assert want.sum() == 20
    np.testing.assert_array_equal(bed_tile_flags(bed_shape([drawn]), geom), want)
    # a hole drawn so cuts the same area out of the bed
    outer = np.array([[0, 0], [2000, 0], [2000, 3000], [0, 3000]], float)
    assert ordered_bed_shape([outer, drawn], ["bed", "hole"]).area == pytest.approx(6e6 - cli.area, rel=1e-6)
    # Save bed writes that bed, and the CLI reads back the tiles Rescore counted
    saved = write_bed_geojson(tmp_path / "beds", [drawn], "S1", slide_size=(2000, 3000), clip=True)
    np.testing.assert_array_equal(from_annotation(saved, geom).tile_flags, want)
    # a bow tie is both its triangles, as before
    bow = np.array([[0, 0], [1000, 1000], [1000, 0], [0, 1000]], float)
    assert bed_shape([bow]).area == pytest.approx(5e5)
