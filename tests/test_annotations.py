"""Tumour-bed annotation import (QuPath GeoJSON, ImageScope XML) and mask post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weakstil.annotations import (AnnotationError, check_inside, find_annotation, load_polygons, rasterize,
                                  unmatched_annotations, write_geojson)
from weakstil.tiling import TileGrid
from weakstil.tumorbed import SlideGeometry, from_annotation


def square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def geojson(features):
    return {"type": "FeatureCollection", "features": features}


def feature(ring, name=None):
    props = {"objectType": "annotation"}
    if name:
        props["classification"] = {"name": name, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props}


def test_geojson_takes_tumour_classes_only(tmp_path):
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps(geojson([
        feature(square(0, 0, 1000, 1000), "Tumor bed"),
        feature(square(3000, 3000, 4000, 4000), "Necrosis"),
    ])))
    mp = load_polygons(path)
    assert mp.area == pytest.approx(1e6)


@pytest.mark.parametrize("excluded", ["Exclusion", "Ignore*", "Negative"])
def test_geojson_exclusion_classes_are_cut_out_of_the_bed(tmp_path, excluded):
    """A nested 'Exclusion' (or QuPath's 'Ignore*') polygon was dropped as another class, so the
    area it marks stayed in the bed; the same shapes in ASAP XML were cut out."""
    from shapely.geometry import Point

    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps(geojson([feature(square(0, 0, 1000, 1000), "Tumor bed"),
                                        feature(square(200, 200, 600, 600), excluded)])))
    mp = load_polygons(path)
    assert mp.area == pytest.approx(1000 * 1000 - 400 * 400) and not mp.contains(Point(400, 400))
    path.write_text(json.dumps(geojson([feature(square(200, 200, 600, 600), excluded)])))
    with pytest.raises(AnnotationError, match="no polygons other than excluded areas"):
        load_polygons(path)


def test_geojson_geometry_collections_and_unlocated_features(tmp_path):
    """A GeometryCollection's polygon was 'no polygons'; a feature with a null geometry (valid
    GeoJSON: no location) refused the whole file."""
    path = tmp_path / "S1.geojson"
    collection = {"type": "GeometryCollection", "geometries": [
        {"type": "Point", "coordinates": [5, 5]}, {"type": "Polygon", "coordinates": [square(0, 0, 100, 100)]}]}
    path.write_text(json.dumps(geojson([{"type": "Feature", "geometry": collection, "properties": {}},
                                        {"type": "Feature", "geometry": None, "properties": {"name": "note"}}])))
    assert load_polygons(path).area == pytest.approx(100 * 100)


def test_imagescope_xml(tmp_path):
    path = tmp_path / "S1.xml"
    verts = "".join(f'<Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in square(100, 200, 600, 700)[:-1])
    path.write_text(f'<Annotations MicronsPerPixel="0.5"><Annotation Id="1"><Regions><Region Id="1">'
                    f"<Vertices>{verts}</Vertices></Region></Regions></Annotation></Annotations>")
    mp = load_polygons(path)
    assert mp.area == pytest.approx(500 * 500)
    assert mp.bounds == (100, 200, 600, 700)


def _region(ring, negative=False):
    verts = "".join(f'<Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in ring[:-1])
    return f'<Region Id="1" NegativeROA="{int(negative)}"><Vertices>{verts}</Vertices></Region>'


def test_imagescope_negative_regions_are_cut_out(tmp_path):
    path = tmp_path / "S1.xml"
    path.write_text('<Annotations><Annotation Id="1"><Regions>' + _region(square(0, 0, 1000, 1000))
                    + _region(square(200, 200, 600, 600), negative=True) + "</Regions></Annotation></Annotations>")
    mp = load_polygons(path)
    assert mp.area == pytest.approx(1000 * 1000 - 400 * 400)
    from shapely.geometry import Point

    assert not mp.contains(Point(400, 400))
    path.write_text('<Annotations><Annotation Id="1"><Regions>' + _region(square(0, 0, 100, 100), negative=True)
                    + "</Regions></Annotation></Annotations>")
    with pytest.raises(AnnotationError, match="positive"):
        load_polygons(path)


def test_annotation_found_whatever_the_extensions_case_and_a_second_file_is_named(tmp_path, caplog):
    (tmp_path / "S1.GeoJSON").write_text(json.dumps(geojson([feature(square(0, 0, 10, 10))])))
    assert find_annotation(tmp_path, "S1").name == "S1.GeoJSON"
    (tmp_path / "S2.geojson").write_text("{}")
    (tmp_path / "S2.xml").write_text("<Annotations/>")
    with caplog.at_level("WARNING", logger="weakstil"):
        assert find_annotation(tmp_path, "S2").name == "S2.geojson"
    assert "2 annotation files for slide S2" in caplog.text and "using S2.geojson" in caplog.text
    # a .GeoJSON beside an .xml wins as a .geojson does, with the same warning
    (tmp_path / "S3.GeoJSON").write_text("{}")
    (tmp_path / "S3.xml").write_text("<Annotations/>")
    with caplog.at_level("WARNING", logger="weakstil"):
        assert find_annotation(tmp_path, "S3").name == "S3.GeoJSON"
    assert "2 annotation files for slide S3" in caplog.text


@pytest.mark.parametrize("text,match", [
    ("{not json", "malformed GeoJSON"),
    ('{"type": "FeatureCollection"}', "no features"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature"}]}', "no geometry"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": '
     '{"type": "Point", "coordinates": [1, 2]}}]}', "no polygons"),
])
def test_malformed_geojson_is_one_clear_error(tmp_path, text, match):
    path = tmp_path / "bad.geojson"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=match) as info:
        load_polygons(path)
    assert "bad.geojson" in info.value.one_line() and "\n" not in info.value.one_line()


def test_malformed_xml(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<Annotations><Region>")
    with pytest.raises(AnnotationError, match="malformed ImageScope XML"):
        load_polygons(path)


def test_polygons_outside_the_slide_are_refused(tmp_path):
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps(geojson([feature(square(50_000, 50_000, 60_000, 60_000))])))
    with pytest.raises(AnnotationError, match="outside the slide"):
        check_inside(load_polygons(path), 4000, 4000, path)
    # partly outside: clipped
    path.write_text(json.dumps(geojson([feature(square(2000, 2000, 4500, 4000))])))
    inside = check_inside(load_polygons(path), 4000, 4000, path)
    assert inside.area == pytest.approx(2000 * 2000)


def test_rasterize_area_and_roundtrip(tmp_path):
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps(geojson([feature(square(800, 800, 2400, 1600))])))
    mp = load_polygons(path)
    mask = rasterize(mp, 4000, 4000, slide_mpp=0.5, mask_mpp=8.0)
    assert mask.shape == (250, 250)
    # 1600 x 800 level-0 px = 100 x 50 mask px
    assert abs(int(mask.sum()) - 100 * 50) <= 160
    out = tmp_path / "again.geojson"
    write_geojson(mp, out)
    assert load_polygons(out).area == pytest.approx(mp.area)


def test_find_annotation_by_slide_id(tmp_path):
    (tmp_path / "A.geojson").write_text("{}")
    (tmp_path / "B_tumorbed.xml").write_text("<x/>")
    (tmp_path / "typo.geojson").write_text("{}")
    (tmp_path / ".weakstil-output.json").write_text("{}")  # a folder marker ('tumorbed apply' output): not an outline
    (tmp_path / "c.geojson").write_text("{}")  # the id's own case wins over another ('C.geojson' sorts first)
    (tmp_path / "C.geojson").write_text("{}")
    assert find_annotation(tmp_path, "A").name == "A.geojson"
    assert find_annotation(tmp_path, "B").name == "B_tumorbed.xml"
    assert find_annotation(tmp_path, "D") is None
    assert find_annotation(tmp_path, "c").name == "c.geojson" and find_annotation(tmp_path, "C").name == "C.geojson"
    assert [p.name for p in unmatched_annotations(tmp_path, ["A", "B", "c"])] == ["typo.geojson"]


def _geometry(size=4480):
    grid = TileGrid(size, size, slide_mpp=0.5)
    tissue = np.ones((size // 16, size // 16), bool)
    return SlideGeometry(size, size, 0.5, grid.coords(), grid.tile_size_level0, tissue, 8.0)


def test_annotation_sets_tile_flags(tmp_path):
    geom = _geometry()
    path = tmp_path / "S.geojson"
    path.write_text(json.dumps(geojson([feature(square(0, 0, 2240, 4480))])))  # left half
    bed = from_annotation(path, geom)
    assert bed.found and bed.source.value == "annotation"
    left = geom.coords[:, 0] + 112 < 2240
    assert (bed.tile_flags == left).all()




def test_a_geojson_saved_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps(geojson([feature(square(0, 0, 10, 10))])), encoding="utf-8-sig")
    assert path.read_bytes()[:3] == b"\xef\xbb\xbf"
    assert load_polygons(path).area == pytest.approx(100)


def test_an_annotation_written_in_micrometres_is_warned_about(tmp_path, caplog):
    geom = _geometry()
    tissue = np.zeros_like(geom.tissue_mask)
    tissue[112:, 112:] = True  # tissue only from 1,792 px (896 µm) on, both axes
    geom = SlideGeometry(geom.width, geom.height, geom.slide_mpp, geom.coords, geom.tile_size_level0, tissue, 8.0)
    in_px, in_um = tmp_path / "px.geojson", tmp_path / "um.geojson"
    in_px.write_text(json.dumps(geojson([feature(square(2000, 2000, 4000, 4000))])))
    in_um.write_text(json.dumps(geojson([feature(square(1000, 1000, 2000, 2000))])))  # the same bed × 0.5 µm/px
    with caplog.at_level("WARNING"):
        assert from_annotation(in_px, geom).misplaced == ""
    assert "micrometres" not in caplog.text
    with caplog.at_level("WARNING"):
        misplaced = from_annotation(in_um, geom).misplaced  # also a qc flag of the scored slide
    assert "um.geojson" in caplog.text and "were micrometres" in caplog.text and "level-0 pixel" in caplog.text
    assert "micrometres" in misplaced
    from weakstil.qc.flags import slide_flags

    flags, why = slide_flags(ood_score=None, ood_threshold=None, n_bed_tiles=100, low=None, high=None, threshold=30,
                             image=None, image_ref=None, annotation_misplaced=misplaced)
    assert flags == ["annotation_misplaced"] and why["annotation_misplaced"] == misplaced


def test_an_annotation_exported_at_a_lower_pyramid_level_is_warned_about(tmp_path, caplog):
    """Coordinates × 1/4 (a level-2 export) shrink the bed towards the corner, where two thirds of it
    still lie on tissue (too much for the micrometre check): warned, naming the factor; the level-0
    outline is not."""
    geom = _geometry()
    tissue = np.zeros_like(geom.tissue_mask)
    tissue[30:260, 30:260] = True  # a large piece of tissue, 240-2080 µm on both axes
    geom = SlideGeometry(geom.width, geom.height, geom.slide_mpp, geom.coords, geom.tile_size_level0, tissue, 8.0)
    outline = [(1500, 1500), (3900, 1600), (3800, 3900), (1600, 3800)]
    for name, k in (("level0", 1.0), ("level2", 0.25)):
        path = tmp_path / f"{name}.geojson"
        path.write_text(json.dumps(geojson([feature([[x * k, y * k] for x, y in outline + outline[:1]])])))
        caplog.clear()
        with caplog.at_level("WARNING"):
            bed = from_annotation(path, geom)
        assert ("lower pyramid level" in caplog.text) == (k < 1) == ("lower pyramid level" in bed.misplaced), name
        assert "micrometres" not in caplog.text
    assert "level2.geojson" in caplog.text and "× 4 " in caplog.text  # the factors that fit are named


def test_an_annotation_off_the_tissue_either_way_is_not_called_micrometres(tmp_path, caplog):
    geom = _geometry()
    tissue = np.zeros_like(geom.tissue_mask)
    tissue[:100, 180:] = True  # top-right corner only
    geom = SlideGeometry(geom.width, geom.height, geom.slide_mpp, geom.coords, geom.tile_size_level0, tissue, 8.0)
    path = tmp_path / "S.geojson"
    path.write_text(json.dumps(geojson([feature(square(200, 3000, 1000, 4000))])))  # bottom-left
    with caplog.at_level("WARNING"):
        from_annotation(path, geom)
    assert "micrometres" not in caplog.text


def _asap(annotations) -> str:
    """ASAP XML: (group, type, [(x, y), ...]) per annotation, coordinates written in reverse order
    with their Order attribute (ASAP sorts by it)."""
    body = []
    for i, (group, kind, points) in enumerate(annotations):
        coords = "".join(f'<Coordinate Order="{j}" X="{x}" Y="{y}"/>' for j, (x, y) in reversed(list(enumerate(points))))
        body.append(f'<Annotation Name="A{i}" Type="{kind}" PartOfGroup="{group}" Color="#F4FA58">'
                    f'<Coordinates>{coords}</Coordinates></Annotation>')
    return f'<?xml version="1.0"?><ASAP_Annotations><Annotations>{"".join(body)}</Annotations></ASAP_Annotations>'


def test_asap_xml_reads_the_bed_group_and_cuts_out_exclusions(tmp_path):
    path = tmp_path / "S.xml"
    path.write_text(_asap([("tumor bed", "Polygon", square(0, 0, 100, 100)[:-1]),
                           ("Exclusion", "Polygon", square(10, 10, 20, 20)[:-1]),
                           ("lymphocytes", "Dot", [(50, 50)]),
                           ("stroma", "Rectangle", square(500, 500, 600, 600)[:-1])]))
    bed = load_polygons(path)
    assert bed.area == pytest.approx(100 * 100 - 10 * 10)  # the stroma group is not the bed when a bed group exists
    path.write_text(_asap([("_0", "Polygon", square(0, 0, 100, 100)[:-1]), ("_2", "Polygon", square(0, 0, 50, 100)[:-1])]))
    assert load_polygons(path).area == pytest.approx(50 * 100)  # CAMELYON16's groups: _2 is an exclusion


def test_asap_xml_without_areas_says_asap(tmp_path):
    path = tmp_path / "S.xml"
    path.write_text(_asap([("lymphocytes", "Dot", [(50, 50)])]))
    with pytest.raises(AnnotationError, match="ASAP XML holds no polygon"):
        load_polygons(path)


def test_rasterize_sets_the_pixels_whose_centres_are_inside():
    """The scanline fill against shapely's point-in-polygon at every pixel centre, on random
    star-shaped polygons with and without a hole (vertices off the pixel grid: no ties)."""
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    from weakstil.annotations import rasterize

    rng = np.random.default_rng(1)
    f = 0.5 / 8.0
    yy, xx = np.mgrid[:50, :62]
    centres = shapely.points((xx.ravel() + 0.5) / f, (yy.ravel() + 0.5) / f)
    checked = 0
    for _ in range(60):
        n = int(rng.integers(3, 40))
        angle = np.sort(rng.uniform(0, 2 * np.pi, n))
        radius = rng.uniform(40, 400, n)
        cx, cy = rng.uniform(-100, 1000, 2)
        ring = np.stack([cx + radius * np.cos(angle), cy + radius * np.sin(angle)], 1)
        hole = np.stack([cx + 30 * np.cos(np.arange(5) * 1.25), cy + 30 * np.sin(np.arange(5) * 1.25)], 1)
        poly = Polygon(ring, [hole] if rng.random() < 0.5 else None)
        if not poly.is_valid:
            continue
        got = rasterize(MultiPolygon([poly]), 1000, 800, 0.5, 8.0)
        assert got.shape == (50, 62)
        np.testing.assert_array_equal(got, shapely.contains(poly, centres).reshape(got.shape))
        checked += 1
    assert checked >= 30


@pytest.mark.parametrize("where", ["first and closing vertex", "middle vertex", "imagescope", "asap"])
def test_a_nan_coordinate_is_one_clear_error_without_a_library_warning(tmp_path, where):
    """GEOS, handed a NaN, warns on stderr and then calls a ring with a NaN first vertex 'not
    closed'; the file is refused for the NaN before any geometry is built (outside fault hunt)."""
    import warnings

    ring = [[500, 500], [1500, 500], [1500, 1500], [500, 1500], [500, 500]]
    if where == "first and closing vertex":
        ring[0][0] = ring[-1][0] = float("nan")
    else:
        ring[1][0] = float("nan")
    if where in ("imagescope", "asap"):
        path = tmp_path / "s.xml"
        if where == "imagescope":
            vertices = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in ring[:-1])
            path.write_text(f"<Annotations><Annotation><Regions><Region><Vertices>{vertices}</Vertices></Region>"
                            "</Regions></Annotation></Annotations>")
        else:
            coords = "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>' for i, (x, y) in enumerate(ring[:-1]))
            path.write_text(f'<ASAP_Annotations><Annotations><Annotation Type="Polygon" PartOfGroup="tumor">'
                            f"<Coordinates>{coords}</Coordinates></Annotation></Annotations></ASAP_Annotations>")
    else:
        path = tmp_path / "s.geojson"
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": {}}]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a library warning would be printed before the error line
        with pytest.raises(AnnotationError, match="not finite numbers"):
            load_polygons(path)


def test_an_island_inside_another_polygons_hole_is_kept_whatever_the_order() -> None:
    """A polygon's hole cuts only that polygon: an island of bed drawn inside it stays, listed before
    or after the polygon (the island was erased when it came first: a QuPath export's order)."""
    from shapely.geometry import MultiPolygon, Polygon

    from weakstil.annotations import rasterize

    ring = Polygon([(0, 0), (80, 0), (80, 80), (0, 80)], [[(20, 20), (60, 20), (60, 60), (20, 60)]])
    island = Polygon([(30, 30), (50, 30), (50, 50), (30, 50)])
    for parts in ([ring, island], [island, ring]):
        mask = rasterize(MultiPolygon(parts), 100, 100, 1.0, 1.0)
        assert mask.sum() == 80 * 80 - 40 * 40 + 20 * 20 and mask[40, 40] and not mask[25, 25]


def _box(x0, y0, x1, y1):
    return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]


def _feature(ring, props):
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": ring}, "properties": props}


@pytest.mark.parametrize("other", ["Non-tumor", "Non-invasive", "Carcinoma in situ", "Peritumoral stroma", "Normal",
                                   "Region*", "Stroma"])
def test_only_the_class_naming_the_tumour_bed_is_the_bed(tmp_path, other, caplog):
    """A class is matched for what it says: "Non-tumor" or "Carcinoma in situ" holds the word tumour or
    carcinoma and is not the bed; a region of interest is the bed only when no class names the tumour."""
    path = tmp_path / "S.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(_box(0, 0, 100, 100), {"classification": {"name": "Tumor bed"}}),
        _feature(_box(200, 0, 300, 100), {"classification": {"name": other}})]}))
    with caplog.at_level("INFO"):
        bed = load_polygons(path)
    assert bed.bounds == (0, 0, 100, 100)
    assert f"not used: {other}" in caplog.text


def test_qupath_detections_are_passed_over_and_derived_classes_read(tmp_path):
    path = tmp_path / "S.geojson"
    cells = [_feature(_box(500 + 10 * i, 500, 505 + 10 * i, 505), {"objectType": "detection",
                                                                     "classification": {"name": "Tumor"}})
             for i in range(20)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(_box(0, 0, 100, 100), {"objectType": "annotation"}), *cells]}))
    assert load_polygons(path).bounds == (0, 0, 100, 100)  # the drawn bed, not the cells
    path.write_text(json.dumps({"type": "FeatureCollection", "features": cells}))
    with pytest.raises(AnnotationError, match="only detection/cell objects"):
        load_polygons(path)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(_box(0, 0, 100, 100), {"classification": {"names": ["Tumor", "Positive"]}}),
        _feature(_box(200, 0, 300, 100), {"classification": {"names": ["Stroma"]}}),
        _feature(_box(20, 20, 40, 40), {"name": "Ignore"})]}))  # a name like an exclusion: cut out
    bed = load_polygons(path)
    assert bed.bounds == (0, 0, 100, 100) and bed.area == 100 * 100 - 20 * 20


def test_imagescope_layers_are_classes_and_ellipses_are_areas(tmp_path):
    def region(verts, kind="0", negative="0"):
        vs = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in verts)
        return f'<Region Type="{kind}" NegativeROA="{negative}"><Vertices>{vs}</Vertices></Region>'

    path = tmp_path / "S.xml"
    path.write_text('<Annotations>'
                    f'<Annotation Name="Tumor bed"><Regions>{region([(0, 0), (100, 0), (100, 100), (0, 100)])}'
                    f'{region([(200, 0), (300, 100)], kind="2")}</Regions></Annotation>'
                    f'<Annotation Name="Stroma"><Regions>{region([(0, 0), (900, 0), (900, 900)])}</Regions></Annotation>'
                    f'<Annotation Name="Exclusion"><Regions>{region([(10, 10), (30, 10), (30, 30), (10, 30)])}'
                    '</Regions></Annotation></Annotations>')
    bed = load_polygons(path)
    ellipse = np.pi * 50 * 50
    assert bed.bounds == pytest.approx((0, 0, 300, 100), abs=0.5)
    assert bed.area == pytest.approx(100 * 100 - 20 * 20 + ellipse, rel=0.01)


@pytest.mark.parametrize("negated", ["Tumor-free", "Tumor free", "Tumour-negative", "Tumor-negative", "No tumor",
                                     "NoTumour", "tumour_free", "TUMOR FREE", "Free of tumour", "Without tumor",
                                     "No residual invasive carcinoma", "Tumor (-)"])
def test_a_class_that_negates_the_tumour_is_never_the_bed(tmp_path, negated):
    """"Tumor-free" or "No tumour" holds the word tumour and says there is none: like "Non-tumor" it
    is never the bed, neither beside a tumour class (the bed was both) nor beside another class."""
    path = tmp_path / "S.geojson"
    for bed_class in ("Tumor", "Stroma"):
        path.write_text(json.dumps({"type": "FeatureCollection", "features": [
            _feature(_box(0, 0, 100, 100), {"classification": {"name": bed_class}}),
            _feature(_box(200, 0, 300, 100), {"classification": {"name": negated}})]}))
        assert load_polygons(path).bounds == (0, 0, 100, 100), (bed_class, negated)


@pytest.mark.parametrize("tumour", ["Tumor", "Tumour", "Invasive tumor", "Tumor bed", "TumorBed", "IDC",
                                    "Invasive carcinoma of no special type", "Triple-negative carcinoma"])
def test_tumour_classes_stay_the_bed_beside_a_negated_one(tmp_path, tumour):
    path = tmp_path / "S.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(_box(0, 0, 100, 100), {"classification": {"name": tumour}}),
        _feature(_box(200, 0, 300, 100), {"classification": {"name": "Stroma"}}),
        _feature(_box(400, 0, 500, 100), {"classification": {"name": "Tumor-free"}})]}))
    assert load_polygons(path).bounds == (0, 0, 100, 100)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [  # QuPath's derived intensity class
        _feature(_box(0, 0, 100, 100), {"classification": {"names": ["Tumor", "Negative"]}}),
        _feature(_box(200, 0, 300, 100), {"classification": {"name": "Stroma"}})]}))
    assert load_polygons(path).bounds == (0, 0, 100, 100)


def test_a_broken_link_or_a_folder_of_the_annotations_name_is_one_clear_error(tmp_path):
    """Not "no annotation" (the slide was then scored over the whole tissue or the detector's bed)."""
    (tmp_path / "S1.geojson").symlink_to(tmp_path / "gone.geojson")
    with pytest.raises(AnnotationError, match="broken link") as info:
        find_annotation(tmp_path, "S1")
    assert "S1.geojson" in info.value.one_line() and "gone.geojson" in info.value.one_line() and info.value.fix
    with pytest.raises(AnnotationError, match="broken link"):
        load_polygons(tmp_path / "S1.geojson")
    (tmp_path / "S2.geojson").mkdir()
    with pytest.raises(AnnotationError, match="is a folder, not an annotation file") as info:
        find_annotation(tmp_path, "S2")
    assert "S2.geojson" in info.value.one_line() and info.value.fix
    with pytest.raises(AnnotationError, match="is a folder"):
        load_polygons(tmp_path / "S2.geojson")
    (tmp_path / "S3.geojson").write_text(json.dumps(geojson([feature(square(0, 0, 10, 10))])))
    assert find_annotation(tmp_path, "S3").name == "S3.geojson" and find_annotation(tmp_path, "S4") is None


def test_a_multipolygons_overlapping_parts_are_joined_by_their_union(tmp_path):
    """As the same parts drawn as two features; a part's own hole stays a hole, an island in it stays."""
    multi = tmp_path / "multi.geojson"
    multi.write_text(json.dumps(geojson([{"type": "Feature", "properties": {"classification": {"name": "Tumor"}},
                                          "geometry": {"type": "MultiPolygon",
                                                       "coordinates": [_box(0, 0, 100, 100), _box(50, 50, 150, 150)]}}])))
    feats = tmp_path / "feats.geojson"
    feats.write_text(json.dumps(geojson([feature(square(0, 0, 100, 100), "Tumor"),
                                         feature(square(50, 50, 150, 150), "Tumor")])))
    assert load_polygons(multi).area == pytest.approx(2 * 100 * 100 - 50 * 50) == load_polygons(feats).area
    holed = [square(0, 0, 80, 80), square(20, 20, 60, 60)]
    multi.write_text(json.dumps(geojson([{"type": "Feature", "properties": {}, "geometry": {
        "type": "MultiPolygon", "coordinates": [holed, _box(30, 30, 50, 50), _box(70, 0, 120, 40)]}}])))
    mask = rasterize(load_polygons(multi), 200, 200, 1.0, 1.0)
    assert mask.sum() == 80 * 80 - 40 * 40 + 20 * 20 + 40 * 40 and mask[40, 40] and not mask[25, 25]
    # an exclusion drawn as an overlapping MultiPolygon cuts out its union too
    multi.write_text(json.dumps(geojson([feature(square(0, 0, 200, 200), "Tumor"), {
        "type": "Feature", "properties": {"classification": {"name": "Exclusion"}},
        "geometry": {"type": "MultiPolygon", "coordinates": [_box(0, 0, 100, 100), _box(50, 50, 150, 150)]}}])))
    assert load_polygons(multi).area == pytest.approx(200 * 200 - (2 * 100 * 100 - 50 * 50))


def test_a_file_of_not_bed_classes_only_says_which_classes_are_the_bed(tmp_path):
    """The problem is the class, not detections: the fix names the classes read as the bed."""
    path = tmp_path / "S.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(_box(0, 0, 100, 100), {"objectType": "annotation", "classification": {"name": "Peritumoral stroma"}}),
        _feature(_box(200, 0, 300, 100), {"objectType": "annotation", "classification": {"name": "Non-tumour"}})]}))
    xml = tmp_path / "S.xml"
    xml.write_text(_asap([("Non-tumour", "Polygon", square(0, 0, 100, 100)[:-1])]))
    scope = tmp_path / "T.xml"
    scope.write_text('<Annotations><Annotation Name="Normal"><Regions><Region><Vertices><Vertex X="0" Y="0"/>'
                     '<Vertex X="9" Y="0"/><Vertex X="9" Y="9"/></Vertices></Region></Regions></Annotation></Annotations>')
    for file, kind, names in ((path, "classes", "'Non-tumour', 'Peritumoral stroma'"), (xml, "group", "'Non-tumour'"),
                              (scope, "layer", "'Normal'")):
        with pytest.raises(AnnotationError, match="say") as info:
            load_polygons(file)
        line = info.value.one_line()
        assert f"{kind} ({names})" in line and "not the tumour bed" in line, line
        assert "detections" not in line and "'Tumor bed'" in info.value.fix and "never is" in info.value.fix


def test_a_not_bed_class_drawn_inside_the_tumour_is_cut_out_of_it(tmp_path):
    """Necrosis, DCIS or normal tissue drawn inside a tumour outline is not the invasive tumour's
    stroma: cut out like an exclusion; a 'Stroma' area inside it stays bed (hunt 8a #8)."""
    def feature(name, ring):
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"objectType": "annotation", "classification": {"name": name}}}

    for name in ("Necrosis", "Non-tumor", "DCIS"):
        path = tmp_path / f"{name}.geojson"
        path.write_text(json.dumps(geojson([feature("Tumor", square(0, 0, 1000, 1000)),
                                            feature(name, square(200, 200, 600, 600))])))
        assert load_polygons(path).area == pytest.approx(1000 * 1000 - 400 * 400), name
    path = tmp_path / "stroma.geojson"
    path.write_text(json.dumps(geojson([feature("Tumor", square(0, 0, 1000, 1000)),
                                        feature("Stroma", square(200, 200, 600, 600))])))
    assert load_polygons(path).area == pytest.approx(1000 * 1000)
    # a 'Normal' parent drawn around its 'Tumor' child (QuPath's hierarchy, exported flat) is not cut out
    path = tmp_path / "parent.geojson"
    path.write_text(json.dumps(geojson([feature("Normal", square(0, 0, 3000, 3000)),
                                        feature("Tumor", square(1000, 1000, 2000, 2000))])))
    assert load_polygons(path).area == pytest.approx(1000 * 1000)


def test_asap_ungrouped_areas_are_unclassified_and_lymphocyte_classes_are_the_beds_own(tmp_path):
    """Hunt 10c #1: ASAP writes PartOfGroup="None" for an annotation in no group (its default); the
    name read as a negation ("non...") refused the file, or made a small 'Stroma' area the bed.
    #2: a 'Lymphocytes' area drawn inside the tumour was cut out of the bed (it is the bed's
    infiltrate); a lymph node still is not the bed."""
    path = tmp_path / "S.xml"
    path.write_text(_asap([("None", "Polygon", square(0, 0, 100, 100)[:-1])]))
    assert load_polygons(path).area == pytest.approx(100 * 100)
    path.write_text(_asap([("None", "Polygon", square(0, 0, 100, 100)[:-1]),
                           ("Stroma", "Polygon", square(500, 500, 520, 520)[:-1])]))
    assert load_polygons(path).area == pytest.approx(100 * 100)  # the unclassified area, as in GeoJSON
    path.write_text(_asap([("Tumor", "Polygon", square(0, 0, 100, 100)[:-1]),
                           ("Lymphocytes", "Polygon", square(0, 0, 50, 100)[:-1]),
                           ("Lymphocytic infiltrate", "Polygon", square(50, 0, 60, 10)[:-1])]))
    assert load_polygons(path).area == pytest.approx(100 * 100)
    path.write_text(_asap([("Tumor", "Polygon", square(0, 0, 100, 100)[:-1]),
                           ("Lymph node", "Polygon", square(0, 0, 50, 100)[:-1])]))
    assert load_polygons(path).area == pytest.approx(50 * 100)
