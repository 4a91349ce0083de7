"""Helper h39d: an empty annotation file among the annotated slides of ``weakstil tumorbed train``.

A 0-byte ``.geojson`` (a slide exported before its outline was drawn) or QuPath's export of no objects
(``{"type": "FeatureCollection", "features": []}``) among 4 good annotations refused the whole detector
training: "malformed GeoJSON (Expecting value: line 1 column 1 (char 0))" / "GeoJSON holds no polygons",
rc 1, no detector. An annotation that covers no tissue tile was already left out with a warning. Now an
empty file is a typed :class:`~weakstil.annotation_errors.EmptyAnnotationError`: its slide is left out with
a warning naming the file and the detector trains on the 3 others; a malformed file still refuses.
"""

from __future__ import annotations

import json
import shutil

import pytest

from weakstil.annotation_errors import AnnotationError
from weakstil.annotations import load_polygons
from weakstil.errors import WeakSTILError


@pytest.mark.parametrize("text", ["", " \n", '{"type": "FeatureCollection", "features": []}',
                                  '{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": null}]}'])
def test_an_empty_annotation_is_its_own_error(tmp_path, text):
    from weakstil.annotation_errors import EmptyAnnotationError  # (old: no such class)

    path = tmp_path / "S1.geojson"
    path.write_text(text)
    with pytest.raises(EmptyAnnotationError, match="S1.geojson"):  # (old: AnnotationError 'malformed GeoJSON')
        load_polygons(path)
    for bad in ("{not json", '{"type": "FeatureCollection"}'):  # malformed, not empty: the plain error
        path.write_text(bad)
        with pytest.raises(AnnotationError) as info:
            load_polygons(path)
        assert not isinstance(info.value, EmptyAnnotationError)


def test_tumorbed_train_leaves_an_empty_annotation_out(tmp_path, small_demo, caplog):
    from weakstil.tumorbed.training_cache import train_tumorbed_from_cache

    demo = small_demo[0]
    ids = sorted(p.stem for p in (demo / "features").glob("*.h5"))[:4]
    beds = tmp_path / "beds"
    beds.mkdir()
    for sid in ids:
        shutil.copy(demo / "cohort" / "truth" / f"{sid}_tumorbed.geojson", beds)
    (beds / f"{ids[1]}_tumorbed.geojson").write_text("")
    (beds / f"{ids[2]}_tumorbed.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    with caplog.at_level("WARNING", logger="weakstil"):
        detector = train_tumorbed_from_cache(demo / "features", beds, slide_ids=ids, lymphoid_veto=False,
                                             ink_veto=False, infiltrate=False, tumour_cell_gate=False)
    # (old: AnnotationError '... malformed GeoJSON (Expecting value ...); 1 more annotation file(s) cannot be used')
    assert detector.meta["model_id"] == "tumorbed-2slides"
    said = " ".join(caplog.text.split())
    assert "2 annotation file(s) are empty" in said and f"{ids[1]}_tumorbed.geojson" in said \
        and f"{ids[2]}_tumorbed.geojson" in said and "left out" in said
    for sid in ids[::3]:  # none left that is not empty: one line naming them
        (beds / f"{sid}_tumorbed.geojson").write_text("\n")
    with pytest.raises(WeakSTILError, match="4 annotation file\\(s\\) are empty") as info:
        train_tumorbed_from_cache(demo / "features", beds, slide_ids=ids)
    assert "no slide has both cached features and an annotation" in info.value.message
