"""Hunt 11c: annotation formats. QuPath object types in every spelling, tumour class names that say
what they leave out, ImageScope negative regions, self-crossing outlines, `_tumorbed.json`, UTF-16."""

from __future__ import annotations

import json

import pytest

from weakstil.annotations import AnnotationError, find_annotation, load_polygons, unmatched_annotations


def _ring(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _feature(rings, cls=None, **props):
    if cls:
        props["classification"] = {"name": cls}
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings}, "properties": props}


def _write(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.mark.parametrize("spelling", ["id=PathCellObject", "id=PathDetectionObject", "id=PathTileObject",
                                      "object_type=cell", "object_type=tma_core", "type=detection",
                                      "objectType=tmaCore", "objectType=tile"])
def test_qupath_non_annotations_in_every_spelling_are_passed_over(tmp_path, spelling):
    """Finding 1: a QuPath 0.2 export ("id": "PathCellObject", no objectType) of a 'Region*' outline
    and cells classed 'Tumor': the cells outranked the region and became a bed of a few µm²."""
    key, value = spelling.split("=")
    region = {**_feature([_ring(0, 0, 1000, 1000)], "Region*"), "id": "PathAnnotationObject"}
    cells = []
    for i in range(5):
        cell = _feature([_ring(100 + 20 * i, 100, 110 + 20 * i, 110)], "Tumor", **({} if key == "id" else {key: value}))
        cells.append({**cell, "id": value} if key == "id" else cell)
    bed = load_polygons(_write(tmp_path / "S.geojson", [region, *cells]))
    assert bed.area == pytest.approx(1e6) and bed.bounds == (0, 0, 1000, 1000)
    with pytest.raises(AnnotationError, match="only detection/cell objects"):
        load_polygons(_write(tmp_path / "S.geojson", cells))


TUMOUR_NAMES = ["Tumour bed (excluding DCIS)", "Tumor bed excluding DCIS", "Invasive carcinoma, not otherwise specified",
                "Invasive carcinoma of non-special type", "Invasive tumour (non-necrotic)",
                "Invasive carcinoma, non-lobular", "Invasive lobular carcinoma (not ductal)",
                "Viable tumour, necrosis excluded"]


@pytest.mark.parametrize("name", TUMOUR_NAMES)
def test_tumour_classes_that_say_what_they_leave_out_are_the_bed(tmp_path, name, caplog):
    """Finding 2: such a name was an exclusion or 'not the bed': alone refused, beside an ROI the bed
    became the ROI minus the tumour, silently. The same for an ImageScope layer and an ASAP group."""
    tumour = _ring(1000, 1000, 2000, 2000)
    path = _write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 3000, 3000)], "Region*"), _feature([tumour], name)])
    assert load_polygons(path).bounds == (1000, 1000, 2000, 2000)
    assert load_polygons(_write(tmp_path / "S.geojson", [_feature([tumour], name)])).area == pytest.approx(1e6)
    vertices = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in tumour[:-1])
    scope = tmp_path / "S.xml"
    scope.write_text(f'<Annotations><Annotation Name="{name}"><Regions><Region><Vertices>{vertices}</Vertices>'
                     '</Region></Regions></Annotation><Annotation Name="ROI"><Regions><Region><Vertices>'
                     + "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in _ring(0, 0, 3000, 3000)[:-1])
                     + "</Vertices></Region></Regions></Annotation></Annotations>")
    assert load_polygons(scope).bounds == (1000, 1000, 2000, 2000)
    asap = tmp_path / "A.xml"
    coords = "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>' for i, (x, y) in enumerate(tumour[:-1]))
    asap.write_text(f'<ASAP_Annotations><Annotations><Annotation Name="a" Type="Polygon" PartOfGroup="{name}">'
                    f"<Coordinates>{coords}</Coordinates></Annotation></Annotations></ASAP_Annotations>")
    assert load_polygons(asap).area == pytest.approx(1e6)


@pytest.mark.parametrize("name", ["Non-tumour", "Not tumor", "No tumour", "Tumor-free", "Non-invasive carcinoma",
                                  "Carcinoma in situ", "Peritumoral stroma"])
def test_names_that_negate_the_tumour_itself_are_still_not_the_bed(tmp_path, name):
    path = _write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 100, 100)], "Tumor"),
                                           _feature([_ring(200, 0, 300, 100)], name)])
    assert load_polygons(path).bounds == (0, 0, 100, 100)


def test_a_tumour_named_class_cut_out_of_the_bed_is_warned_about(tmp_path, caplog):
    """Finding 2, also: a class named like a tumour is never cut out of the bed without a word."""
    path = _write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], "Tumor"),
                                           _feature([_ring(200, 200, 600, 600)], "Carcinoma in situ"),
                                           _feature([_ring(700, 700, 800, 800)], "Exclude tumour")])
    with caplog.at_level("WARNING"):
        assert load_polygons(path).area == pytest.approx(1e6 - 400 * 400 - 100 * 100)
    assert "'Carcinoma in situ'" in caplog.text and "'Exclude tumour'" in caplog.text and "S.geojson" in caplog.text
    caplog.clear()
    path = _write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], "Tumor"),
                                           _feature([_ring(200, 200, 600, 600)], "Non-tumour")])
    with caplog.at_level("WARNING"):
        load_polygons(path)
    assert "named like a tumour" not in caplog.text  # it says it is no tumour


def _region(ring, negative=0, rid=1):
    verts = "".join(f'<Vertex X="{x}" Y="{y}"/>' for x, y in ring[:-1])
    return f'<Region Id="{rid}" NegativeROA="{negative}"><Vertices>{verts}</Vertices></Region>'


def _layer(name, regions):
    return f'<Annotation Name="{name}"><Regions>{"".join(regions)}</Regions></Annotation>'


def test_an_imagescope_negative_region_cuts_only_its_own_layer_and_not_an_island_in_it(tmp_path):
    """Finding 3: the ROI layer's hole was cut out of the Tumor layer's bed; an island drawn inside a
    hole was lost, where the same drawing in GeoJSON keeps it."""
    path = tmp_path / "S.xml"
    path.write_text("<Annotations>" + _layer("Tumor", [_region(_ring(0, 0, 1000, 1000))])
                    + _layer("ROI", [_region(_ring(-10, -10, 3000, 3000)), _region(_ring(0, 0, 500, 500), 1, 2)])
                    + "</Annotations>")
    assert load_polygons(path).area == pytest.approx(1e6)
    path.write_text("<Annotations>" + _layer("Tumor", [_region(_ring(0, 0, 1000, 1000)),
                                                       _region(_ring(200, 200, 800, 800), 1, 2),
                                                       _region(_ring(400, 400, 600, 600), 0, 3)]) + "</Annotations>")
    assert load_polygons(path).area == pytest.approx(1e6 - 600 * 600 + 200 * 200)
    geojson = _write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000), _ring(200, 200, 800, 800)]),
                                              _feature([_ring(400, 400, 600, 600)])])
    assert load_polygons(geojson).area == load_polygons(path).area
    # a layer of negative regions only has nothing of its own to cut: it is an exclusion layer
    path.write_text("<Annotations>" + _layer("Tumor", [_region(_ring(0, 0, 1000, 1000))])
                    + _layer("Layer 2", [_region(_ring(0, 0, 500, 500), 1)]) + "</Annotations>")
    assert load_polygons(path).area == pytest.approx(1e6 - 500 * 500)
    path.write_text("<Annotations>" + _layer("Tumor", [_region(_ring(0, 0, 100, 100)), _region(_ring(-5, -5, 105, 105), 1, 2)])
                    + _layer("ROI", [_region(_ring(0, 0, 3000, 3000))]) + "</Annotations>")
    with pytest.raises(AnnotationError, match="nothing is left of the bed"):
        load_polygons(path)  # not the ROI instead


def test_a_self_crossing_outline_is_read_as_the_area_it_encloses_and_warned_about(tmp_path, caplog):
    """Finding 4: GEOS' even-odd repair dropped the area a freehand outline went round twice (762,202
    px² of 1,000,000) and added a hole drawn outside its shell to the bed, without a word."""
    spiral = [[0, 0], [1000, 0], [1000, 1000], [0, 1000], [0, 10], [990, 10], [990, 500], [0, 0]]
    path = _write(tmp_path / "S.geojson", [_feature([spiral], "Tumor")])
    with caplog.at_level("WARNING"):
        bed = load_polygons(path)
    assert bed.area == pytest.approx(1e6, rel=1e-3)
    assert "S.geojson" in caplog.text and "feature 0 ('Tumor')" in caplog.text and "762202" in caplog.text
    there_and_back = _ring(0, 0, 1000, 1000) + _ring(0, 0, 1000, 1000)[::-1][1:]  # gone round, then back
    assert load_polygons(_write(path, [_feature([there_and_back])])).area == pytest.approx(1e6)
    caplog.clear()
    with caplog.at_level("WARNING"):
        bed = load_polygons(_write(path, [_feature([_ring(0, 0, 1000, 1000), _ring(2000, 0, 2500, 500)])]))
    assert bed.area == pytest.approx(1e6) and "Hole lies outside shell" in caplog.text
    bed = load_polygons(_write(path, [_feature([_ring(0, 0, 1000, 1000), _ring(900, 900, 1100, 1100)])]))
    assert bed.area == pytest.approx(1e6 - 100 * 100)  # the part of a hole inside its shell is cut
    bed = load_polygons(_write(path, [_feature([_ring(250, 250, 750, 750), _ring(0, 0, 1000, 1000)])]))
    assert bed.area == pytest.approx(750000)  # rings listed hole first
    scope = tmp_path / "S.xml"
    scope.write_text("<Annotations>" + _layer("Tumor", [_region(spiral)]) + "</Annotations>")
    assert load_polygons(scope).area == pytest.approx(1e6, rel=1e-3)


def test_a_tumorbed_json_is_found_and_not_called_unmatched(tmp_path):
    """Finding 5: `<slide_id>_tumorbed.json` was never found, though the README and warning name it."""
    _write(tmp_path / "S1_tumorbed.json", [_feature([_ring(0, 0, 10, 10)])])
    assert find_annotation(tmp_path, "S1").name == "S1_tumorbed.json"
    assert unmatched_annotations(tmp_path, ["S1"]) == []


def test_a_utf16_geojson_is_read_and_other_bytes_are_said_to_be_no_utf8(tmp_path):
    """Finding 6a: a UTF-16 GeoJSON with a BOM (Windows PowerShell 5) was refused as malformed."""
    feature = _feature([_ring(0, 0, 1000, 1000)], "Tumor")
    path = tmp_path / "S.geojson"
    for encoding in ("utf-16", "utf-16-le", "utf-8-sig", "utf-32"):
        path.write_bytes(json.dumps(feature).encode(encoding))
        assert load_polygons(path).area == pytest.approx(1e6), encoding
    path.write_bytes(json.dumps(feature).replace("Tumor", "Tum\u00f6r").encode("latin-1"))
    with pytest.raises(AnnotationError, match="not UTF-8") as info:
        load_polygons(path)
    assert "UTF-8" in info.value.fix
