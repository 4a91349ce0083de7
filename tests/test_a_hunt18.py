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


@pytest.fixture(scope="module")
def one_slide(tmp_path_factory):
    """One synthetic 1 x 1.5 mm slide embedded with a seeded random small CNN, and its exact outline."""
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.synth import generate_cohort

    root = tmp_path_factory.mktemp("h18a")
    labels = generate_cohort(root / "cohort", 1, seed=7, size_mm=(1.0, 1.5), progress=False)
    embed_slide(root / "cohort" / labels["path"][0], create_encoder("small-cnn", weights="random"),
                out_dir=root / "features")
    return {"root": root, "sid": labels["slide_id"][0], "features": root / "features", "truth": root / "cohort" / "truth"}


def test_a_bed_file_of_another_embedding_copied_into_the_beds_is_said_to_be_one(one_slide, tmp_path):
    """A bed .h5 made from other features (another encoder's run) copied over a slide's bed, its
    outline left beside it: --tumorbed-beds said the outline 'was edited after tumorbed apply wrote
    it' (no one had edited it) and sent the user to --annotations; the features' check came after
    the outline's. The features are now checked first."""
    import h5py

    from weakstil.errors import WeakSTILError
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed import BedSources
    from weakstil.tumorbed.apply import apply_tumorbed

    sid = one_slide["sid"]
    ours = one_slide["features"] / f"{sid}.h5"
    other = tmp_path / "other" / f"{sid}.h5"  # the same slide embedded by another encoder
    other.parent.mkdir()
    other.write_bytes(ours.read_bytes())
    with h5py.File(other, "r+") as f:
        f.attrs["cache_key"] = "0" * 64
    apply_tumorbed(ours, tmp_path / "beds", BedSources.open(annotations=one_slide["truth"]))
    apply_tumorbed(other, tmp_path / "beds_other", BedSources.open())  # the whole tissue: another outline
    (tmp_path / "beds" / f"{sid}.h5").write_bytes((tmp_path / "beds_other" / f"{sid}.h5").read_bytes())
    with pytest.raises(WeakSTILError) as err:
        BedSources.open(beds=tmp_path / "beds").resolve(sid, FeaturesFile.read(ours))
    assert "was computed from other features (cache_key 000000000000" in err.value.message, err.value.message
    assert "edited" not in err.value.message and "tumorbed apply" in err.value.fix


def test_saving_an_emptied_bed_says_the_bed_saved_before_still_stands(tmp_path):
    """Every shape deleted, then Save bed: refused (an annotation of no polygon is an error), but
    the line said only 'draw at least one polygon', while the bed saved earlier in that folder
    stayed and --annotations went on scoring the slide with it."""
    from weakstil.bed_edit import write_bed_geojson
    from weakstil.errors import WeakSTILError

    square = [np.array([[100, 100], [900, 100], [900, 900], [100, 900]], float)]
    with pytest.raises(WeakSTILError) as err:
        write_bed_geojson(tmp_path / "beds", [], "S1", slide_size=(2000, 3000), clip=True)
    assert "saved there before" not in err.value.fix  # nothing was saved before
    saved = write_bed_geojson(tmp_path / "beds", square, "S1", slide_size=(2000, 3000), clip=True)
    before = saved.read_bytes()
    for rings in ([], [square[0] + 5000]):  # every shape deleted; the one left dragged off the slide
        with pytest.raises(WeakSTILError, match="nothing to save") as err:
            write_bed_geojson(tmp_path / "beds", rings, "S1", slide_size=(2000, 3000), clip=True)
        assert "the bed saved there before is kept and --annotations still reads it" in err.value.fix
        assert "delete S1.geojson" in err.value.fix and saved.read_bytes() == before


def _feature(ring, name=None):
    props = {"objectType": "annotation"} | ({"classification": {"name": name, "colorRGB": -65536}} if name else {})
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]}, "properties": props}


def _square(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_an_unclassified_full_image_annotation_around_the_outline_is_warned_about(tmp_path, caplog):
    """QuPath's 'Create full image annotation' exported with the tumour outline drawn inside it, both
    unclassified: the bed is their union, the whole slide (6,000,000 px² instead of the outline's
    250,000), and nothing said so; the tumour-bed detector then learns the whole tissue as
    bed. Now one warning names the file and the fix (the bed itself is unchanged: documented rule)."""
    from weakstil.annotations import load_polygons

    path = tmp_path / "S1.geojson"
    outline = _feature(_square(500, 500, 1000, 1000))
    cases = {  # features -> (area, warned)
        "full image": ([_feature(_square(0, 0, 2000, 3000)), outline], 6e6, True),
        "region around it": ([_feature(_square(0, 0, 2000, 3000), "Region*"), outline], 6e6, True),
        "tumour classes nested": ([_feature(_square(0, 0, 2000, 3000), "Tumor"),
                                   _feature(_square(500, 500, 1000, 1000), "Tumor")], 6e6, False),
        "necrosis inside": ([_feature(_square(0, 0, 2000, 3000)), _feature(_square(500, 500, 1000, 1000), "Necrosis")],
                            6e6 - 250000, False),
        "two apart": ([_feature(_square(0, 0, 200, 300)), outline], 60000 + 250000, False),
        "outline alone": ([outline], 250000, False),
    }
    for case, (features, area, warned) in cases.items():
        path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert load_polygons(path).area == pytest.approx(area), case
        said = [r.getMessage() for r in caplog.records if "encloses" in r.getMessage()]
        assert bool(said) == warned, (case, said)
        if warned:
            assert "S1.geojson" in said[0] and "full-image" in said[0] and "'Tumor'" in said[0]


def test_train_evaluate_and_score_name_an_annotation_file_that_matches_no_slide(tmp_path, caplog):
    """An outline misnamed (synth_O003.geojson for synth_0003) went unused by train, evaluate and score
    with only 'synth_0003: no annotation' among one such line per unannotated slide (7 of 12 on a
    cohort with 6 outlines): tumorbed train and apply named the file, these did not. Annotations of
    slides the run does not take (a training CSV of a split, a few slides of a folder scored) are not
    named: those slides are in the slide folder or the feature folder."""
    from weakstil.cli.tumorbed import known_slides, warn_unmatched_annotations, warn_unmatched_in_cohort

    slides, features, ann = tmp_path / "slides", tmp_path / "features", tmp_path / "ann"
    for folder in (slides, features, ann):
        folder.mkdir()
    for i in range(6):
        (slides / f"s{i}.tiff").write_bytes(b"")
        (features / f"s{i}.h5").write_bytes(b"")
    for name in ("s0.geojson", "s1_tumorbed.geojson", "s5.geojson", "sO2.geojson"):  # sO2: s2 misnamed
        _geojson(ann / name, _square(0, 0, 10, 10))
    csv = tmp_path / "train.csv"
    csv.write_text("slide_id,path,stil\n" + "".join(f"s{i},slides/s{i}.tiff,{10 * i}\n" for i in range(4)))

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "match no slide" in r.getMessage()]

    with caplog.at_level("WARNING"):
        warn_unmatched_in_cohort(ann, csv, features)  # train, evaluate
    assert len(said()) == 1 and "sO2.geojson" in said()[0] and "s5.geojson" not in said()[0]
    assert "s2, s3" in said()[0] and "--cohort" not in said()[0]
    caplog.clear()
    with caplog.at_level("WARNING"):  # score s0 and s2 of the folder: s5's outline is another slide's
        paths = [slides / "s0.tiff", slides / "s2.tiff"]
        warn_unmatched_annotations(ann, {"s0": "s0", "s2": "s2"}, [], cohort_hint=False,
                                   others=known_slides(paths, None))
    assert len(said()) == 1 and "(sO2.geojson)" in said()[0]
    caplog.clear()
    (ann / "sO2.geojson").rename(ann / "s2.geojson")
    with caplog.at_level("WARNING"):
        warn_unmatched_in_cohort(ann, csv, features)  # s3 has none, but no file is misnamed
    assert said() == []
