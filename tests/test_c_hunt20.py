"""Hunt 20c: faulty inputs a real lab produces. QuPath classes named in other languages than
English, and cohort CSVs whose sTIL% column mixes '35%' cells with bare fractions."""

from __future__ import annotations

import json

import pytest

from weakstil.annotations import load_polygons


def _ring(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _feature(rings, cls):
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {"objectType": "annotation", "classification": {"name": cls}}}


def _write(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.mark.parametrize("other", ["Kein Tumor", "Nicht-Tumor", "Tumorfrei", "Geen tumor", "Tumorvrij", "Sin tumor",
                                   "Sans tumeur", "Non tumoral", "Senza tumore", "Ingen tumör", "Kein Karzinom"])
def test_a_class_negating_the_tumour_in_another_language_is_not_the_bed(tmp_path, other):
    """Finding 1: a German QuPath export with 'Tumor' and 'Kein Tumor' (no tumour) areas: 'Kein Tumor'
    names the tumour and its negation was only read in English, so both became the bed (a slide
    scored 26.4 % over all its tissue instead of 48.2 % over its tumour, without a word)."""
    bed = load_polygons(_write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], "Tumor"),
                                                        _feature([_ring(2000, 0, 3000, 1000)], other)]))
    assert bed.area == pytest.approx(1000 * 1000)


@pytest.mark.parametrize("tumour", ["Tumeur", "Karzinom", "Tumör", "Carcinome infiltrant", "Tumorbett"])
def test_a_tumour_class_in_another_language_outranks_the_other_classes(tmp_path, tumour):
    """A French 'Tumeur' beside 'Stroma' was not read as naming the tumour: every class became the bed."""
    bed = load_polygons(_write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], tumour),
                                                        _feature([_ring(2000, 0, 3000, 1000)], "Stroma")]))
    assert bed.area == pytest.approx(1000 * 1000)


@pytest.mark.parametrize("cut", ["Nekrose", "Nécrose", "Normalgewebe", "Tessuto normale", "Lymphknoten"])
def test_a_not_bed_area_named_in_another_language_is_cut_out_of_the_bed(tmp_path, cut):
    """Necrosis drawn inside the tumour is cut out of the bed in English ('Necrosis'); 'Nekrose' stayed in it."""
    bed = load_polygons(_write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], "Tumor"),
                                                        _feature([_ring(0, 0, 500, 1000)], cut)]))
    assert bed.area == pytest.approx(500 * 1000)


@pytest.mark.parametrize("name", ["Tumor (ohne DCIS)", "Tumor ohne Nekrose", "Tumeur (sauf CIS)", "Tumor: Negative"])
def test_a_tumour_class_saying_what_it_leaves_out_in_another_language_is_the_bed(tmp_path, name):
    bed = load_polygons(_write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], name),
                                                        _feature([_ring(2000, 0, 3000, 1000)], "Stroma")]))
    assert bed.area == pytest.approx(1000 * 1000)
