"""Hunt 37b: tumour-bed outlines from the tools a lab draws in, read as they are saved.

Finding 1: a HistomicsTK / Digital Slide Archive annotation (``{"annotation": {"elements": [...]}}``,
the Girder download; a list of them; HistomicsTK's bare ``{"name", "elements"}``) saved as
``S1.json`` was refused as "GeoJSON holds no features" (a list: "feature 0 has no geometry"), with
the fix "export a FeatureCollection of polygons from QuPath". Now its closed polylines (holes
included), rectangles, ellipses and circles are read in level-0 px, the element's ``group`` is its
class (a 'necrosis' group inside the 'tumor' one is cut out, as in GeoJSON).

Finding 2: a Sedeen Viewer session (``S1.session.xml``) renamed to ``S1.xml`` was refused as
"ImageScope XML holds no (positive) regions with an area", and as ``S1.session.xml`` it was not
looked at: the slide got the detector's bed, with only a warning that the file matched no slide.
Now both say it is a Sedeen session, a format not read, and that slide fails with that line.

Finding 3: an area classed 'Artifact' (or 'Artefact', 'Crush artifact', 'Tissue fold', 'Pen marking',
'Hyalinization', 'Biopsy site') drawn inside a 'Tumor' outline was kept in the bed: a 400 x 400 px
artefact in a 1000 x 1000 px tumour read 1,000,000 px² of bed, while 'Necrosis' there was cut out
(840,000). The TILs Working Group leaves crush artefacts, hyalinisation and biopsy sites out as it does
necrosis; now they are cut out of the bed where they overlap it, and are never the bed themselves.
"""

from __future__ import annotations

import json
import math

import pytest

from weakstil.annotation_wkt import unread_outline
from weakstil.annotations import AnnotationError, load_polygons, unmatched_annotations


def _polyline(x0, y0, x1, y1, group=None, holes=(), closed=True):
    element = {"type": "polyline", "closed": closed, "points": [[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]],
               "holes": [[[a, b, 0], [c, b, 0], [c, d, 0], [a, d, 0]] for a, b, c, d in holes]}
    return {**element, **({"group": group} if group else {})}


@pytest.mark.parametrize("wrap", ["girder", "list", "bare"])
def test_a_dsa_annotation_json_is_read_with_its_holes_and_classes(tmp_path, wrap):
    elements = [_polyline(0, 0, 1000, 1000, "tumor", holes=[(100, 100, 200, 200)]),
                _polyline(500, 500, 700, 700, "necrosis"),  # drawn in the tumour: cut out
                _polyline(2000, 0, 3000, 1000, "stroma outside"),  # another class: not the bed
                _polyline(0, 2000, 10, 2010, "tumor", closed=False),  # an open polyline: a line, no area
                {"type": "point", "center": [5, 5, 0], "group": "tumor"}]
    doc = {"name": "TILs", "elements": elements}
    data = {"girder": {"_id": "65a", "annotation": doc}, "list": [{"annotation": doc}], "bare": doc}[wrap]
    (path := tmp_path / "S1.json").write_text(json.dumps(data))
    bed = load_polygons(path)
    assert bed.bounds == (0, 0, 1000, 1000)
    assert bed.area == pytest.approx(1e6 - 100**2 - 200**2)  # (old: "GeoJSON holds no features")


def test_dsa_rectangles_ellipses_and_circles_are_areas_in_level0_px(tmp_path):
    shapes = {"rectangle": ({"width": 400, "height": 200, "rotation": math.pi / 2}, 400 * 200, (400, 300, 600, 700)),
              "ellipse": ({"width": 400, "height": 200, "rotation": 0}, math.pi * 200 * 100, (300, 400, 700, 600)),
              "circle": ({"radius": 100}, math.pi * 100**2, (400, 400, 600, 600))}
    for kind, (size, area, bounds) in shapes.items():
        doc = {"annotation": {"name": "Tumour bed", "elements": [{"type": kind, "center": [500, 500, 0], **size}]}}
        (path := tmp_path / f"{kind}.json").write_text(json.dumps(doc))
        bed = load_polygons(path)
        assert bed.area == pytest.approx(area, rel=0.01), kind
        assert bed.bounds == pytest.approx(bounds, abs=1), kind
    (path := tmp_path / "points.json").write_text(json.dumps({"annotation": {"name": "x", "elements": [
        {"type": "point", "center": [1, 1, 0]}]}}))
    with pytest.raises(AnnotationError, match="DSA annotation JSON holds no closed polyline"):
        load_polygons(path)


SEDEEN = ('<?xml version="1.0"?><session software="PathCore Session Printer" version="0.1.1"><image identifier="S1.svs">'
          '<overlays><graphic type="polygon" name="Tumor"><pen color="#ff0000" width="2" style="solid"/><point-list>'
          '<point>0,0</point><point>900,0</point><point>900,900</point></point-list></graphic></overlays></image></session>')


def test_a_sedeen_session_is_named_as_such_read_or_found(tmp_path):
    (path := tmp_path / "S1.xml").write_text(SEDEEN)
    with pytest.raises(AnnotationError, match="is a Sedeen Viewer session, a format WeakSTIL does not read"):
        load_polygons(path)  # (old: "ImageScope XML holds no (positive) regions with an area")
    path.rename(tmp_path / "S1.session.xml")
    error = unread_outline(tmp_path, "S1", (".svs",))
    assert error is not None and "is named for slide S1 but is a Sedeen Viewer session" in error.message  # (old: None)
    assert unread_outline(tmp_path, "S2", (".svs",)) is None
    assert unmatched_annotations(tmp_path, ["S1"]) == []  # not also "matches no slide" beside that error


@pytest.mark.parametrize("name", ["Artifact", "Artefact", "Crush artifact", "Tissue fold", "Pen marking",
                                  "Hyalinization", "Biopsy site", "Necrosis"])
def test_an_artefact_class_drawn_in_the_tumour_is_cut_out_as_necrosis_is(tmp_path, name):
    def feature(x0, x1, cls):
        ring = [[x0, x0], [x1, x0], [x1, x1], [x0, x1], [x0, x0]]
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"objectType": "annotation", "classification": {"name": cls}}}
    (path := tmp_path / "S1.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        feature(0, 1000, "Tumor"), feature(200, 600, name)]}))
    assert load_polygons(path).area == pytest.approx(1e6 - 400**2)  # (old: 1e6 for all but Necrosis)


@pytest.mark.parametrize("name", ["S1.png", "S1_tumorbed.npy", "S1.npz"])
def test_a_mask_image_named_for_the_slide_is_named_with_how_to_convert_it(tmp_path, name):
    """Helper h37j (the checker's walk, issue 14): another generator's exact beds come as mask images or
    arrays (``S1_tumorbed.png`` at 4 µm/px). Given as ``--annotations``, they were passed over without a word:
    ``score``/``tumorbed apply`` gave the slide the detector's bed (or the whole tissue), and ``tumorbed train``
    said "no slide has both cached features and an annotation. Fix: name annotation files <slide_id>.geojson".
    Now the file is named as a mask WeakSTIL does not read, with the conversion to GeoJSON as the fix."""
    from conftest import run_cli

    (tmp_path / "outlines").mkdir()
    (tmp_path / "outlines" / name).write_bytes(b"\x89PNG\r\n\x1a\n")
    error = unread_outline(tmp_path / "outlines", "S1", (".svs",))
    assert error is not None and "is a mask" in error.message and "<slide_id>.geojson" in error.fix  # (old: None)
    if name != "S1.png":
        return
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "S1.h5").write_bytes(b"")  # only its presence counts before the outlines are read
    proc = run_cli("tumorbed", "train", "--features", tmp_path / "features", "--annotations", tmp_path / "outlines",
                   "--out", tmp_path / "tb")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 1 and "S1.png: is named for slide S1 but is a mask image (PNG)" in said, said
    assert not (tmp_path / "tb").exists()
