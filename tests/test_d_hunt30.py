"""Hunt 30d: files from and for other tools, written by hand from their published formats.

- QuPath writes an object's children inside it (``properties.childObjects``) when it serialises the
  hierarchy: a 'Tumor' drawn inside an unclassified parent region was lost and the bed was the whole
  parent (2.1 times the tumour's area, Dice 0.64 with what was drawn).
- Indica Labs HALO saves its XML as ``<slide>.annotations``, ``<V X= Y=/>`` vertices, region types by
  name, rectangles and ellipses as two corners: such a file was not found (the slide had no outline)
  or, renamed ``.xml``, refused as holding no regions.
- A tile GeoJSON's measurement that is not a number was written ``null``, which stops QuPath's
  File > Import objects (its MeasurementList.putAll unboxes every value): it is now left out.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from shapely import affinity
from shapely.geometry import Point, Polygon, box, mapping

from weakstil.annotations import find_annotation, load_polygons, unmatched_annotations, write_geojson
from weakstil.outputs import write_tiles_geojson

BED = Polygon([(1000, 1000), (5000, 1200), (5200, 4800), (1200, 5000)],
              [[(2000, 2000), (3000, 2000), (3000, 3000), (2000, 3000)]])


def _dice(a, b) -> float:
    return 2 * a.intersection(b).area / (a.area + b.area)


def _feature(geom, cls=None, **props):
    props = {"objectType": "annotation", **props}
    if cls:
        props["classification"] = {"name": cls, "color": [200, 0, 0]}
    return {"type": "Feature", "id": "9b3f0c1e-5a4e-4a57-9a55-7a3b7c2d1e00", "geometry": mapping(geom),
            "properties": props}


def _halo(regions, layer="Layer 1") -> str:
    """A HALO .annotations file (pyhaloxml's example files, Indica Labs' annotation format)."""
    out = [f'<Annotations>\n  <Annotation LineColor="65280" Name="{layer}" Visible="True">\n    <Regions>']
    for kind, points, negative in regions:
        out.append(f'      <Region Type="{kind}" HasEndcaps="0" NegativeROA="{int(negative)}">\n        <Vertices>')
        out += [f'          <V X="{x:g}" Y="{y:g}" />' for x, y in points]
        out.append("        </Vertices>\n        <Comments />\n      </Region>")
    out.append("    </Regions>\n  </Annotation>\n</Annotations>\n")
    return "\n".join(out)


def test_qupath_child_objects_are_read(tmp_path):
    """A hierarchy export: the 'Tumor' child nested in its unclassified parent region is the bed."""
    parent = _feature(box(500, 500, 6000, 6000))
    child = _feature(BED, "Tumor", isLocked=True, measurements={"Area µm^2": 1.0})
    parent["properties"]["childObjects"] = [child, _feature(Point(10, 10), "Tumor")]
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [parent]}))
    got = load_polygons(path)
    assert got.area == pytest.approx(BED.area) and _dice(got, BED) > 0.999
    # the children's children too, and a child that is a detection stays passed over
    grand = _feature(box(1500, 1500, 1800, 1800), "Necrosis")
    child["properties"]["childObjects"] = [grand, _feature(box(4000, 3000, 4500, 3500), objectType="cell")]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [parent]}))
    assert load_polygons(path).area == pytest.approx(BED.area - 300 * 300)
    # the whole hierarchy as QuPath's GsonTools writes it: {"root": <root object with its children>}
    root = {"type": "Feature", "geometry": None, "properties": {"objectType": "root", "childObjects": [parent]}}
    path.write_text(json.dumps({"root": root}))
    assert load_polygons(path).area == pytest.approx(BED.area - 300 * 300)


def test_halo_annotations_file_is_found_and_read_with_its_negative_region(tmp_path, caplog):
    hole = [(2000, 2000), (3000, 2000), (3000, 3000), (2000, 3000)]
    (tmp_path / "S1.annotations").write_text(_halo([
        ("Polygon", list(BED.exterior.coords)[:-1], False), ("Polygon", hole, True),
        ("Ruler", [(0, 0), (900, 900)], False), ("Pin", [(50, 50)], False)]))
    found = find_annotation(tmp_path, "S1")
    assert found is not None and found.name == "S1.annotations"
    got = load_polygons(found)
    assert got.area == pytest.approx(BED.area) and _dice(got, BED) > 0.999
    (tmp_path / "S9.annotations").write_text(_halo([("Polygon", hole, False)]))  # a typo'd name is named
    assert [p.name for p in unmatched_annotations(tmp_path, ["S1"])] == ["S9.annotations"]


def test_halo_rectangle_and_ellipse_are_two_corners(tmp_path):
    path = tmp_path / "S1.xml"  # HALO's XML saved with an .xml name reads the same
    path.write_text(_halo([("Rectangle", [(4000, 3000), (1000, 1000)], False)], layer="Tumor"))
    assert _dice(load_polygons(path), box(1000, 1000, 4000, 3000)) > 0.999
    path.write_text(_halo([("Ellipse", [(1500, 2000), (4500, 4000)], False)], layer="Tumor"))
    ellipse = affinity.scale(Point(3000, 3000).buffer(1, quad_segs=64), 1500, 1000)
    assert _dice(load_polygons(path), ellipse) > 0.995
    # a tumour layer and an exclusion layer (HALO's layer names are its classes)
    text = _halo([("Rectangle", [(1000, 1000), (4000, 3000)], False)], layer="Tumor").replace(
        "</Annotations>", "") + _halo([("Rectangle", [(1000, 1000), (2000, 3000)], False)],
                                      layer="Exclusion").replace("<Annotations>", "")
    path.write_text(text)
    assert load_polygons(path).area == pytest.approx(2000 * 2000)


def test_halo_file_of_rulers_only_is_refused_naming_halo(tmp_path):
    path = tmp_path / "S1.annotations"
    path.write_text(_halo([("Ruler", [(0, 0), (900, 900)], False)]))
    from weakstil.annotation_errors import AnnotationError

    with pytest.raises(AnnotationError, match="HALO XML holds no"):
        load_polygons(path)


def test_tile_geojson_leaves_out_a_measurement_that_is_not_a_number(tmp_path):
    path = tmp_path / "S1.geojson"
    coords = np.array([[0, 0], [224, 0]])
    write_tiles_geojson(path, coords, 224.0, {"sTIL score": np.array([12.5, np.nan]),
                                               "stroma weight": np.array([np.inf, 0.5])})

    def no_constants(name):  # strict JSON (QuPath's reader): no NaN or Infinity
        raise ValueError(name)

    data = json.loads(path.read_text(), parse_constant=no_constants)
    measured = [f["properties"]["measurements"] for f in data["features"]]
    assert measured == [{"sTIL score": 12.5}, {"stroma weight": 0.5}]
    assert all(v is not None for m in measured for v in m.values())
    assert all(f["properties"]["objectType"] == "tile" for f in data["features"])


def test_bed_geojson_reads_back_as_written(tmp_path, caplog):
    """Our bed file is a QuPath FeatureCollection of valid annotations, read back to the same area."""
    caplog.set_level(logging.WARNING)
    shape = BED.union(box(6000, 6000, 7000, 6500))
    path = tmp_path / "S1.geojson"
    write_geojson(shape, path, label="S1")
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    from shapely.geometry import shape as to_shape

    for f in data["features"]:
        assert f["properties"]["objectType"] == "annotation" and to_shape(f["geometry"]).is_valid
    assert load_polygons(path).symmetric_difference(shape).area < 1e-6
    assert not caplog.records


# --- QuPath's frame on a slide with a scanned area (MIRAX .mrxs: openslide.bounds-x/-y) -------------------
BOUNDS = {"openslide.bounds-x": "6000", "openslide.bounds-y": "4000", "openslide.bounds-width": "12000",
          "openslide.bounds-height": "10000"}
TRUTH = box(9000, 7000, 13000, 10000)  # the tumour as drawn, in OpenSlide's level-0 frame


def _mrxs_geometry(origin=(6000.0, 4000.0)):
    """A 20000 x 16000 px slide at 0.5 µm/px whose tissue lies in its scanned area (8000-14000, 6000-11000)."""
    from weakstil.tumorbed.bed import SlideGeometry

    mask_mpp = 16.0
    f = 0.5 / mask_mpp
    tissue = np.zeros((round(16000 * f), round(20000 * f)), bool)
    tissue[round(6000 * f):round(11000 * f), round(8000 * f):round(14000 * f)] = True
    xs, ys = np.meshgrid(np.arange(0, 20000, 448), np.arange(0, 16000, 448))
    coords = np.stack([xs.ravel(), ys.ravel()], 1)
    return SlideGeometry(20000, 16000, 0.5, coords, 448.0, tissue, mask_mpp, origin)


def _bed_dice(bed, geom) -> float:
    from weakstil.annotations import rasterize

    truth = geom.fit_mask(rasterize(TRUTH, geom.width, geom.height, geom.slide_mpp, geom.mask_mpp))
    return 2 * (bed.mask & truth).sum() / (bed.mask.sum() + truth.sum())


def test_bounds_origin_is_recorded_only_for_a_slide_with_a_scanned_area_corner():
    from weakstil.annotation_frame import bounds_origin, origin_of

    assert bounds_origin(BOUNDS) == {"slide_bounds_x": 6000, "slide_bounds_y": 4000}
    assert bounds_origin({}) == {} and bounds_origin({**BOUNDS, "openslide.bounds-x": "0", "openslide.bounds-y": "0"}) == {}
    assert origin_of(bounds_origin(BOUNDS)) == (6000.0, 4000.0) and origin_of({}) == (0.0, 0.0)


def test_qupath_export_of_an_mrxs_is_read_in_qupaths_frame(tmp_path, caplog):
    """QuPath crops an MRXS to its bounds: its export lay 6000, 4000 px off, on glass (Dice 0 with the
    drawn tumour, scored over nothing or the wrong tissue); now it is moved back."""
    from shapely.affinity import translate

    from weakstil.tumorbed.bed import from_annotation

    geom = _mrxs_geometry()
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(translate(TRUTH, -6000, -4000), "Tumor")]}))
    caplog.set_level(logging.INFO)
    bed = from_annotation(path, geom)
    assert _bed_dice(bed, geom) > 0.98 and bed.found
    assert "QuPath's frame" in caplog.text
    # the same outline in OpenSlide's frame (QuPath opened with --no-crop): used as it stands, with a warning
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [_feature(TRUTH, "Tumor")]}))
    caplog.clear()
    assert _bed_dice(from_annotation(path, geom), geom) > 0.98
    assert "used as it stands" in caplog.text
    # a slide without a scanned-area corner: nothing moves
    assert _bed_dice(from_annotation(path, _mrxs_geometry((0.0, 0.0))), _mrxs_geometry((0.0, 0.0))) > 0.98


def test_asap_outline_in_openslide_frame_is_not_moved_and_one_in_qupaths_is(tmp_path, caplog):
    from weakstil.tumorbed.bed import from_annotation

    def asap(poly):
        pts = "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>' for i, (x, y) in enumerate(poly.exterior.coords[:-1]))
        return (f'<ASAP_Annotations><Annotations><Annotation Name="A" Type="Polygon" PartOfGroup="Tumor">'
                f'<Coordinates>{pts}</Coordinates></Annotation></Annotations></ASAP_Annotations>')

    geom = _mrxs_geometry()
    path = tmp_path / "S1.xml"
    path.write_text(asap(TRUTH))  # ASAP: OpenSlide's frame
    caplog.set_level(logging.INFO)
    assert _bed_dice(from_annotation(path, geom), geom) > 0.98 and "moved" not in caplog.text
    from shapely.affinity import translate

    path.write_text(asap(translate(TRUTH, -6000, -4000)))  # drawn in a cropped viewer: off the tissue as it stands
    assert _bed_dice(from_annotation(path, geom), geom) > 0.98 and "moved" in caplog.text


def test_our_geojson_of_an_mrxs_is_in_qupaths_frame_and_reads_back(tmp_path):
    """Our bed and tile GeoJSON of a MIRAX slide open in QuPath where they lie (its frame starts at the
    scanned area's corner), read back by us to level 0, and a QuPath re-export of the bed too."""
    from weakstil.tumorbed.bed import from_annotation

    geom = _mrxs_geometry()
    path = tmp_path / "S1.geojson"
    write_geojson(TRUTH, path, label="S1", written_by="weakstil tumorbed apply", origin=geom.origin)
    data = json.loads(path.read_text())
    assert data["weakstil_origin"] == [6000.0, 4000.0]
    from shapely.geometry import shape

    assert shape(data["features"][0]["geometry"]).bounds == (3000, 3000, 7000, 6000)  # QuPath's frame
    assert load_polygons(path).symmetric_difference(TRUTH).area < 1e-6  # ours: back to level 0
    assert _bed_dice(from_annotation(path, geom), geom) > 0.98
    # QuPath's own export of it (its foreign members dropped) is in QuPath's frame, and read so
    path.write_text(json.dumps({"type": "FeatureCollection", "features": data["features"]}))
    assert _bed_dice(from_annotation(path, geom), geom) > 0.98
    # tiles: the square of a tile at level-0 (6448, 4448) starts at QuPath's (448, 448)
    tiles = tmp_path / "tiles.geojson"
    write_tiles_geojson(tiles, np.array([[6448, 4448]]), 448.0, {"sTIL score": np.array([3.0])}, origin=geom.origin)
    ring = json.loads(tiles.read_text())["features"][0]["geometry"]["coordinates"][0]
    assert ring[0] == [448.0, 448.0] and ring[2] == [896.0, 896.0]


def test_an_outline_with_its_y_axis_up_is_flagged(tmp_path, caplog):
    """Cytomine's frame (origin bottom-left): mirrored top to bottom the outline lay on glass, and was
    scored so without a word; now it is warned of and flagged annotation_misplaced."""
    from shapely.affinity import scale

    from weakstil.tumorbed.bed import from_annotation

    geom = _mrxs_geometry((0.0, 0.0))
    drawn = box(9000, 9500, 13000, 11000)  # the lower part of the tissue (6000-11000)
    path = tmp_path / "S1.geojson"
    path.write_text(json.dumps(mapping(scale(drawn, 1.0, -1.0, origin=(0, 8000)))))  # y -> 16000 - y: 5000-6500
    bed = from_annotation(path, geom)
    assert "y axis pointed up" in bed.misplaced and "Cytomine" in caplog.text
    path.write_text(json.dumps(mapping(drawn)))  # the right way up: no flag
    assert from_annotation(path, geom).misplaced == ""


def test_a_bed_we_wrote_for_another_scan_is_flagged(tmp_path, caplog):
    """A beds folder of another scan (an earlier cohort, the slides scanned again) passed as
    --annotations was read as this scan's outline without a word; its recorded fingerprint says so."""
    from dataclasses import replace

    from weakstil.tumorbed.bed import from_annotation

    geom = replace(_mrxs_geometry((0.0, 0.0)), fingerprint="wsfp1:" + "a" * 64)
    path = tmp_path / "S1.geojson"
    record = {"slide_id": "S1", "slide_fingerprint": "wsfp1:" + "b" * 64, "slide_width": 20000, "slide_height": 16000,
              "slide_mpp": 0.25}
    write_geojson(TRUTH, path, written_by="weakstil tumorbed apply", slide=record)
    bed = from_annotation(path, geom)
    assert "for another scan" in bed.misplaced and "0.25 µm/px" in caplog.text
    write_geojson(TRUTH, path, written_by="weakstil tumorbed apply", slide={**record, "slide_fingerprint": geom.fingerprint})
    assert from_annotation(path, geom).misplaced == ""


def test_tumorbed_apply_bed_geojson_records_the_slide(tmp_path, one_torch_thread):
    """End to end on a synthetic slide: the bed GeoJSON names its scan (id, fingerprint, size, µm/px),
    is a FeatureCollection of valid QuPath annotations, and, passed back as an annotation, gives the
    same bed tiles without a flag."""
    import h5py

    from conftest import embedded_cohort, run_cli

    cohort, labels, features = embedded_cohort(tmp_path, 1, seed=3, size_mm=(0.6, 0.6))
    sid = labels["slide_id"][0]
    r = run_cli("tumorbed", "apply", features / f"{sid}.h5", "--out", tmp_path / "beds", "--annotations",
                cohort / "truth")
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "beds" / f"{sid}.geojson").read_text())
    slide = data["weakstil_slide"]
    assert slide["slide_id"] == sid and slide["slide_fingerprint"].startswith("wsfp1:")
    assert slide["slide_width"] > 0 and slide["slide_mpp"] > 0
    from shapely.geometry import shape

    assert all(f["properties"]["objectType"] == "annotation" and shape(f["geometry"]).is_valid for f in data["features"])
    r2 = run_cli("tumorbed", "apply", features / f"{sid}.h5", "--out", tmp_path / "again", "--annotations",
                 tmp_path / "beds")
    assert r2.returncode == 0 and "another scan" not in r2.stderr, r2.stderr
    with h5py.File(tmp_path / "beds" / f"{sid}.h5") as a, h5py.File(tmp_path / "again" / f"{sid}.h5") as b:
        assert (a["tumorbed"][:] == b["tumorbed"][:]).all() and a["tumorbed"][:].any()


def test_napari_saved_bed_of_an_mrxs_is_in_qupaths_frame(tmp_path):
    """The bed editor's Save bed (weakstil.bed_edit.write_bed_geojson) on a MIRAX slide: QuPath's frame
    in the file, level 0 again when WeakSTIL reads it."""
    from weakstil.bed_edit import write_bed_geojson

    ring = [tuple(map(float, xy)) for xy in list(TRUTH.exterior.coords)[:-1]]
    path = write_bed_geojson(tmp_path, [ring], "S1", slide_size=(20000, 16000), origin=(6000.0, 4000.0))
    data = json.loads(path.read_text())
    from shapely.geometry import shape

    assert shape(data["features"][0]["geometry"]).bounds == (3000, 3000, 7000, 6000)
    assert load_polygons(path).symmetric_difference(TRUTH).area < 1e-6


def test_origin_of_a_file_made_before_reads_the_slide_or_gives_none(tmp_path):
    """A features file made before the corner was recorded: the slide is asked (a real SVS has none),
    and a slide moved away or not a slide gives none, without an error."""
    from conftest import CMU
    from weakstil.annotation_frame import origin_of

    assert origin_of({"slide_vendor": "mirax", "slide_path": str(CMU)}) == (0.0, 0.0)
    assert origin_of({"slide_vendor": "mirax", "slide_path": str(tmp_path / "gone.mrxs")}) == (0.0, 0.0)
    (tmp_path / "junk.mrxs").write_text("not a slide")
    assert origin_of({"slide_vendor": "mirax", "slide_path": str(tmp_path / "junk.mrxs")}) == (0.0, 0.0)
    assert origin_of({"slide_bounds_x": 12, "slide_bounds_y": 0}) == (12.0, 0.0)
