"""Helper h38a: tumour-bed outlines drawn in other tools, as hunt 37b left them.

1. A QuPath outline drawn with the polyline tool and ended on its first point (a GeoJSON LineString
   whose last point is its first) classed 'Tumor' was refused: "GeoJSON holds no polygons". Now a
   closed polyline of 3 or more distinct points is the polygon it encloses (said at INFO); an open
   line is still refused, now saying it is an open line and how to close it.
2. One degenerate ring (a 2-point ring) among good polygons refused the whole file: "feature 1 has an
   invalid Polygon (A linearring requires at least 4 coordinates.)" (a zero-area ring was dropped
   without a word, in WKT too). Now such a shape is skipped with a warning naming the file and the shape; a file of
   degenerate shapes only is refused in one line.
3. napari's own Shapes layer CSV (``layer.save('S1.csv')``) in the annotation folder went unused with
   an info line "no annotation". It holds data coordinates without the layer's scale, and drops which
   shapes are holes, so it is not read: it is now the slide's error naming the file and the fix
   (the plugin's Save bed, or a GeoJSON export).
4. A mask TIFF (one channel, 0/255; 1 bit) named for the slide went unused without a word, where the
   same mask as PNG was named with its conversion (helper h37j). Now it gets that error; the RGB slide
   TIFF beside it in the same folder is told from it and left alone.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from weakstil.annotation_wkt import unread_outline
from weakstil.annotations import AnnotationError, load_polygons

SQUARE = [[100, 100], [900, 100], [900, 900], [100, 900], [100, 100]]


def _geojson(path, *geometries, cls="Tumor"):
    features = [{"type": "Feature", "geometry": g, "properties": {"objectType": "annotation",
                                                                   "classification": {"name": cls}}}
                for g in geometries]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_a_closed_polyline_is_the_polygon_it_encloses_an_open_one_is_refused(tmp_path, caplog):
    path = _geojson(tmp_path / "S1.geojson", {"type": "LineString", "coordinates": SQUARE})
    with caplog.at_level(logging.INFO, logger="weakstil.annotations"):
        bed = load_polygons(path)  # (old: "GeoJSON holds no polygons")
    assert bed.area == pytest.approx(800 * 800) and bed.bounds == (100, 100, 900, 900)
    assert "feature 0 ('Tumor') is a closed polyline" in caplog.text
    # a closed MultiLineString member is read too, its open member passed over
    path = _geojson(tmp_path / "S2.geojson", {"type": "MultiLineString", "coordinates": [
        SQUARE, [[2000, 2000], [2100, 2000], [2100, 2100]]]})
    assert load_polygons(path).area == pytest.approx(800 * 800)
    path = _geojson(tmp_path / "S3.geojson", {"type": "LineString", "coordinates": SQUARE[:-1]})
    with pytest.raises(AnnotationError, match=r"only open lines \(feature 0 \('Tumor'\): their ends do not meet\)"):
        load_polygons(path)


def test_one_degenerate_ring_is_skipped_with_a_warning_not_the_whole_file(tmp_path, caplog):
    island = [[2000, 2000], [2200, 2000], [2200, 2200], [2000, 2200], [2000, 2000]]
    path = _geojson(tmp_path / "S1.geojson", {"type": "Polygon", "coordinates": [SQUARE]},
                    {"type": "Polygon", "coordinates": [[[5, 5], [50, 50]]]},  # a 2-point ring
                    {"type": "MultiPolygon", "coordinates": [[island], [[[1, 1], [9, 9], [1, 1]]]]},
                    {"type": "Polygon", "coordinates": [[[1, 1], [5, 5], [9, 9], [1, 1]]]})  # collinear: no area
    with caplog.at_level(logging.WARNING, logger="weakstil.annotations"):
        bed = load_polygons(path)  # (old: "feature 1 has an invalid Polygon (A linearring requires at least 4 ...")
    assert bed.area == pytest.approx(800 * 800 + 200 * 200)
    said = caplog.text
    assert f"{path}: feature 1 ('Tumor') is a degenerate shape (a ring of 2 distinct point(s)): skipped" in said
    assert "feature 2 ('Tumor'), part 2 is a degenerate shape" in said and "feature 3 ('Tumor') is a degenerate" in said
    path = _geojson(tmp_path / "S2.geojson", {"type": "Polygon", "coordinates": [[[5, 5], [50, 50]]]},
                    {"type": "Polygon", "coordinates": [[[1, 1], [5, 5], [9, 9], [1, 1]]]})
    with pytest.raises(AnnotationError, match="holds no polygon with an area: its 2 shape") as info:
        load_polygons(path)
    assert "\n" not in info.value.one_line()
    (path := tmp_path / "S3.wkt").write_text("POLYGON ((100 100, 900 100, 900 900, 100 900, 100 100))\n"
                                             "POLYGON ((1 1, 5 5, 9 9, 1 1))\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="weakstil.annotations"):
        assert load_polygons(path).area == pytest.approx(800 * 800)
    assert f"{path}: WKT polygon 2 is a degenerate shape" in caplog.text  # (old: dropped without a word)


def test_a_napari_shapes_csv_is_named_with_the_fix_not_passed_over(tmp_path):
    from napari_builtins.io._write import napari_write_shapes

    (outlines := tmp_path / "outlines").mkdir()
    rings = [np.array([[100.0, 100], [100, 900], [900, 900], [900, 100]]), np.array([[300.0, 300], [300, 400], [400, 400]])]
    napari_write_shapes(str(outlines / "S1.csv"), rings, {"shape_type": ["polygon", "polygon"]})
    assert (outlines / "S1.csv").read_text().startswith("index,shape-type,vertex-index,axis-0,axis-1")
    error = unread_outline(outlines, "S1", (".svs",))  # (old: None: the slide took the detector's bed)
    assert error is not None and "is named for slide S1 but is a napari Shapes layer CSV" in error.message
    assert "Save bed" in error.fix
    with pytest.raises(AnnotationError, match="is a napari Shapes layer CSV"):  # (old: "unknown annotation format")
        load_polygons(outlines / "S1.csv")
    (outlines / "S1.csv").write_text("slide,note\nS1,re-cut\n")  # a note named for the slide is left alone
    assert unread_outline(outlines, "S1", (".svs",)) is None


def test_a_mask_tiff_is_named_as_a_mask_and_the_slide_tiff_beside_it_is_not(tmp_path):
    import tifffile
    from conftest import run_cli, write_tiff_slide
    from PIL import Image

    (folder := tmp_path / "slides").mkdir()  # the annotation folder is the slides' own
    write_tiff_slide(folder / "S1.tiff", np.full((512, 512, 3), 200, np.uint8), levels=2)
    write_tiff_slide(folder / "S2.tiff", np.full((512, 512, 3), 200, np.uint8), levels=2)
    assert unread_outline(folder, "S1", (".tiff",)) is None  # the slide is not a mask
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 10:50] = 255
    tifffile.imwrite(folder / "S1_tumorbed.tif", mask)
    error = unread_outline(folder, "S1", (".tiff",))  # (old: None: the mask went unused without a word)
    assert error is not None and "is named for slide S1 but is a mask image (TIFF, one channel, values 0 and 255)" \
        in error.message and "<slide_id>.geojson" in error.fix
    Image.fromarray(mask > 0).save(folder / "S2.tif")  # bilevel (PIL's mode "1"), beside the slide S2.tiff
    assert "a mask image (TIFF, 1 bit a pixel)" in unread_outline(folder, "S2", (".tiff",)).message
    picture = np.random.default_rng(0).integers(0, 256, (64, 64), np.uint8)  # a grayscale picture: no mask
    tifffile.imwrite(folder / "S2.tif", picture)
    assert unread_outline(folder, "S2", (".tiff",)) is None
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "S1.h5").write_bytes(b"")  # only its presence counts before the outlines are read
    proc = run_cli("tumorbed", "train", "--features", tmp_path / "features", "--annotations", folder,
                   "--out", tmp_path / "tb")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 1 and "S1_tumorbed.tif: is named for slide S1 but is a mask image (TIFF" in said, said
    assert not (tmp_path / "tb").exists()
