"""Save bed as an outside tester found it (round 13, area c): the napari bed editor's file never
replaces an outline it did not write, and is the file ``--annotations`` reads for its slide."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weakstil.annotations import find_annotation, load_polygons
from weakstil.bed_edit import SAVED_BY, write_bed_geojson
from weakstil.errors import WeakSTILError

SQUARE = np.array([[100.0, 100.0], [900.0, 100.0], [900.0, 900.0], [100.0, 900.0]])
DRAWN = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {
    "objectType": "annotation", "classification": {"name": "Tumor bed"}, "name": "drawn by Dr X"},
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [500, 0], [500, 500], [0, 0]]]}}]}


def test_save_bed_never_replaces_an_outline_it_did_not_write(tmp_path):
    """A pathologist's QuPath export at <id>.geojson was replaced without a word."""
    drawn = tmp_path / "S1.geojson"
    drawn.write_text(json.dumps(DRAWN))
    before = drawn.read_bytes()
    with pytest.raises(WeakSTILError, match="Save bed did not write") as err:
        write_bed_geojson(tmp_path, [SQUARE], "S1", slide_size=(2000, 2000), clip=True)
    assert "S1.geojson" in err.value.one_line() and "Fix:" in err.value.one_line()
    assert drawn.read_bytes() == before


def test_save_bed_replaces_its_own_earlier_save(tmp_path):
    first = write_bed_geojson(tmp_path, [SQUARE], "S1", slide_size=(2000, 2000), clip=True)
    assert json.loads(first.read_text())["weakstil_written_by"] == SAVED_BY
    again = write_bed_geojson(tmp_path, [SQUARE * 0.5], "S1", slide_size=(2000, 2000), clip=True)
    assert again == first and find_annotation(tmp_path, "S1") == first
    assert load_polygons(again).area == pytest.approx(400.0**2)  # read as an annotation, the mark passed over


def test_save_bed_refuses_a_name_that_another_annotation_shadows(tmp_path):
    """S1.GeoJSON beside the saved S1.geojson is what --annotations read: the saved bed went unused."""
    (tmp_path / "S1.GeoJSON").write_text(json.dumps(DRAWN))
    with pytest.raises(WeakSTILError, match="reads S1.GeoJSON"):
        write_bed_geojson(tmp_path, [SQUARE], "S1", slide_size=(2000, 2000), clip=True)
    assert not (tmp_path / "S1.geojson").exists()


def test_save_bed_beside_an_annotation_it_comes_before(tmp_path):
    """An <id>_tumorbed.geojson comes after <id>.geojson: the saved bed is the one read."""
    (tmp_path / "S1_tumorbed.geojson").write_text(json.dumps(DRAWN))
    saved = write_bed_geojson(tmp_path, [SQUARE], "S1", slide_size=(2000, 2000), clip=True)
    assert find_annotation(tmp_path, "S1") == saved


def test_a_score_just_under_the_threshold_is_not_shown_as_the_threshold():
    """29.96 at 30 is low (results.csv: 29.9600, False) but was shown "sTIL 30.0 % ... low at 30 %"."""
    from weakstil.bed_edit import BedScore
    from weakstil.metrics import stil_text
    from weakstil.outputs import heatmap_title

    assert stil_text(29.96, 30) == "29.96" and stil_text(29.9996, 30.0) == "29.9996"
    assert stil_text(29.99996, 30) == "30.0"  # written 30.0000: high, as results.csv calls it
    assert stil_text(23.456, 30) == "23.5" and stil_text(float("nan"), 30) == "nan" and stil_text(7.25, None) == "7.2"
    title = heatmap_title("S1", 29.96, False, 30.0, {})
    assert "sTIL 29.96 %" in title and "low at 30 %" in title
    label = BedScore(29.96, False, 30.0, "stroma", 3, 9, np.ones(9, bool)).label()
    assert label.startswith("sTIL 29.96 % · low")


def test_save_bed_refuses_a_folder_inside_a_model(tmp_path):
    """A bed saved into MODEL/cv/tiles (picked by hand) went with the model on 'train --overwrite'."""
    model = tmp_path / "model"
    (model / "cv" / "tiles").mkdir(parents=True)
    (model / "model.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    with pytest.raises(WeakSTILError, match="replaces whole") as err:
        write_bed_geojson(model / "cv" / "tiles", [SQUARE], "S1", slide_size=(2000, 2000), clip=True)
    assert "model_beds" in err.value.one_line()
    assert not list(model.rglob("*.geojson"))
