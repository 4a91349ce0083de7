"""Helper h39d: an empty annotation file among the annotated slides of ``weakstil tumorbed train``.

A 0-byte ``.geojson`` (a slide exported before its outline was drawn) or QuPath's export of no objects
(``{"type": "FeatureCollection", "features": []}``) among 4 good annotations refused the whole detector
training: "malformed GeoJSON (Expecting value: line 1 column 1 (char 0))" / "GeoJSON holds no polygons",
rc 1, no detector. An annotation that covers no tissue tile was already left out with a warning. Now an
empty file is a typed :class:`~weakstil.annotation_errors.EmptyAnnotationError`: its slide is left out with
a warning naming the file and the detector trains on the 3 others; a malformed file still refuses.

The mask-to-GeoJSON script of docs/scoring.md ('A mask as an outline') read a TIFF with PIL, which applies its
photometric: a bool mask written by ``tifffile.imwrite`` (1 bit, min-is-white) was traced inverted, a 64 x 64
mask of 1,200 bed pixels as its 2,896 background pixels. It now reads a TIFF's stored bits (tifffile), so
both photometrics trace the bed; the script is run here as the docs print it.
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
                                             ink_veto=False, infiltrate=False, tumour_cell_gate=False,
                                             augment=False)
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
    # every file empty: drawing is the fix, not naming or embedding (hunt 39k: "name annotation files
    # <slide_id>.geojson / .xml and embed those slides first", which each of them was)
    assert info.value.fix == "draw the tumour beds and export them again"


def _docs_script(tmp_path):
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "scoring.md").read_text(encoding="utf-8")
    script = text.split("**A mask as an outline.**", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    (path := tmp_path / "mask2geojson.py").write_text(script)
    return path


def test_the_docs_mask_script_traces_a_1_bit_tiff_of_either_photometric(tmp_path):
    import subprocess
    import sys

    import numpy as np
    import tifffile
    from PIL import Image

    script = _docs_script(tmp_path)
    mask = np.zeros((64, 64), bool)
    mask[10:40, 10:50] = True  # 1,200 px at 4 µm/px: 8 x 8 level-0 px each at 0.5 µm/px
    tifffile.imwrite(tmp_path / "tifffile.tif", mask)  # 1 bit, photometric min-is-white
    Image.fromarray(mask).save(tmp_path / "pil.tif")  # 1 bit, min-is-black
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "png.png")
    assert tifffile.TiffFile(tmp_path / "tifffile.tif").pages.first.photometric == 0  # what made the script err
    for name in ("tifffile.tif", "pil.tif", "png.png"):
        out = tmp_path / f"{name}.geojson"
        subprocess.run([sys.executable, str(script), str(tmp_path / name), "4", "0.5", str(out)], check=True,
                       capture_output=True)
        bed = load_polygons(out)
        # old, tifffile.tif: the background traced, 179,040 level-0 px² with the bed a hole in it
        assert bed.area == pytest.approx(1200 * 64, rel=0.05), (name, bed.area)
        assert bed.bounds == pytest.approx((80, 80, 400, 320), abs=8), (name, bed.bounds)
