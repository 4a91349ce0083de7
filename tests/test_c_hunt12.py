"""Fault hunt 12, tumour-bed area: where the training beds came from is counted once per slide,
and the beds `tumorbed apply` writes are reused as they are (the slides without one said, a done
slide skipped, an annotation's misplacement kept).

Three small synthetic slides, embedded once with a seeded random small CNN; the generator's
outlines (cohort/truth/<slide_id>_tumorbed.geojson) are the pathologist's annotations.
"""

from __future__ import annotations


import json
import logging
import shutil

import h5py
import pytest

from conftest import run_cli

SLIDES = 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.synth import generate_cohort

    root = tmp_path_factory.mktemp("h12c")
    labels = generate_cohort(root / "cohort", SLIDES, seed=12, size_mm=(1.0, 1.0), progress=False)
    encoder = create_encoder("small-cnn", weights="random")
    for path in labels["path"]:
        embed_slide(root / "cohort" / path, encoder, out_dir=root / "features")
    return {"root": root, "ids": list(labels["slide_id"]), "features": root / "features",
            "slides": [root / "cohort" / p for p in labels["path"]], "truth": root / "cohort" / "truth"}


# -- #1: the "precomputed" tally of a tumorbeds record is not a bed source --------------------
def test_precomputed_beds_are_not_counted_twice_when_weighing_the_training_beds():
    from weakstil.qc.flags import bed_unlike_training, training_bed_kinds

    # 3 of 8 training slides had a bed (from --tumorbed-beds): not "mostly", whatever the tally says
    minority = {"slides": {"annotation": 3, "tissue": 5, "precomputed": 3}}
    assert bed_unlike_training("tissue", minority) is None
    # precomputed whole-tissue beds are no beds either
    assert bed_unlike_training("tissue", {"slides": {"model": 3, "tissue": 5, "precomputed": 5}}) is None
    majority = {"slides": {"annotation": 5, "tissue": 3, "precomputed": 5}}
    why = bed_unlike_training("tissue", majority)
    assert why is not None and "(5 annotation, 3 tissue (5 precomputed))" in why
    assert training_bed_kinds(minority) == "3 annotation, 5 tissue (3 precomputed)"
    assert training_bed_kinds({"slides": {"annotation": 2}}) == "2 annotation"


@pytest.fixture(scope="module")
def beds(cohort):
    """The annotation beds of every slide, from 'tumorbed apply'."""
    out = cohort["root"] / "beds"
    proc = run_cli("tumorbed", "apply", cohort["features"] / "*.h5", "--out", out, "--annotations", cohort["truth"])
    assert proc.returncode == 0, proc.stderr
    return out


# -- #4: a slide missing from --tumorbed-beds is said, as one missing from --annotations is -----
def test_a_slide_without_a_precomputed_bed_is_named_when_its_bed_is_the_whole_tissue(cohort, beds, tmp_path, caplog):
    from weakstil.tumorbed import BedSources

    some = tmp_path / "beds"
    some.mkdir()
    first, *rest = cohort["ids"]
    for suffix in (".h5", ".geojson"):
        shutil.copy(beds / f"{first}{suffix}", some / f"{first}{suffix}")
    shutil.copy(beds / f"{rest[0]}.h5", some / "misnamed.h5")  # not found by the slide's name
    sources = BedSources.open(beds=some)
    with caplog.at_level(logging.INFO, logger="weakstil"):
        flags = sources.cohort({sid: cohort["features"] / f"{sid}.h5" for sid in cohort["ids"]})
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for sid in rest:
        said = [m for m in warned if m.startswith(f"{sid}: no bed in {some}")]
        assert len(said) == 1 and said[0].endswith("its bed is the whole tissue"), warned
        assert flags[sid].all()  # the whole tissue, as said
    assert not any(m.startswith(f"{first}:") for m in warned)
    assert sources.source_of == {first: "annotation", **{sid: "tissue" for sid in rest}}


# -- #5: a rerun of tumorbed apply keeps a bed made from the same inputs -----------------------
def test_apply_keeps_a_bed_made_from_the_same_inputs_and_makes_a_changed_one_again(cohort, tmp_path):
    from weakstil.tumorbed import BedSources

    sid = cohort["ids"][0]
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    outline = annotations / f"{sid}.geojson"
    shutil.copy(next(cohort["truth"].glob(f"{sid}_tumorbed.geojson")), outline)
    out, features = tmp_path / "beds", cohort["features"] / f"{sid}.h5"

    def apply(*extra):
        proc = run_cli("tumorbed", "apply", features, "--out", out, "--annotations", annotations, *extra)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    first = apply()
    assert "kept" not in first
    written = (out / f"{sid}.h5").read_bytes()
    request = BedSources.open(beds=out).request(sid)  # what 'score --tumorbed-beds' compares on a rerun
    again = apply()
    assert "made earlier from the same inputs: kept" in again and f"{sid}: tumour bed from annotation" in again
    assert (out / f"{sid}.h5").read_bytes() == written
    assert BedSources.open(beds=out).request(sid) == request  # so score skips the slide
    assert "kept" not in apply("--overwrite")  # made again on request
    data = outline.read_text()
    outline.write_text(data.replace("Tumor bed", "Tumour"))  # the annotation changed: made again
    assert "kept" not in apply()
    assert "kept" in apply()
    # in Python the kept bed is the bed as made (benchmarks/tumorbed_quality.py reads it)
    from weakstil.tumorbed.apply import apply_tumorbed

    made = BedSources.open(annotations=annotations).resolve(sid, _features(features))
    applied = apply_tumorbed(features, out, BedSources.open(annotations=annotations))
    assert applied.kept and applied.bed.source.value == "annotation"
    assert (applied.bed.tile_flags == made.tile_flags).all() and (applied.bed.mask == made.mask).all()


def _features(path):
    from weakstil.files import FeaturesFile

    return FeaturesFile.read(path)


# -- #2: why an annotation looks misplaced travels with its precomputed bed ---------------------
def test_an_annotation_that_looks_misplaced_keeps_its_flag_through_a_precomputed_bed(cohort, tmp_path, caplog):
    """An outline exported at a lower pyramid level (coordinates × 0.5): 'score --annotations' flags
    the slide annotation_misplaced; through 'tumorbed apply' and '--tumorbed-beds' the flag was lost."""
    from weakstil.tumorbed import BedSources

    sid = cohort["ids"][1]
    data = json.loads(next(cohort["truth"].glob(f"{sid}_tumorbed.geojson")).read_text())
    for feature in data["features"]:
        feature["geometry"]["coordinates"] = [[[x * 0.5, y * 0.5] for x, y in ring]
                                              for ring in feature["geometry"]["coordinates"]]
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    (annotations / f"{sid}.geojson").write_text(json.dumps(data))
    features = cohort["features"] / f"{sid}.h5"
    direct = BedSources.open(annotations=annotations).resolve(sid, _features(features))
    assert "lower pyramid level" in direct.misplaced  # what 'score --annotations' flags
    out = tmp_path / "beds"
    proc = run_cli("tumorbed", "apply", features, "--out", out, "--annotations", annotations)
    assert proc.returncode == 0, proc.stderr
    assert f"(annotation misplaced? {direct.misplaced})" in proc.stdout  # said beside the bed too
    with h5py.File(out / f"{sid}.h5", "r") as f:
        assert f.attrs["annotation_misplaced"] == direct.misplaced
    precomputed = BedSources.open(beds=out).resolve(sid, _features(features))
    assert precomputed.misplaced == direct.misplaced  # so score --tumorbed-beds flags it as well
    assert (precomputed.tile_flags == direct.tile_flags).all()


# -- #3: score refuses a detector of other tiles than the model's once, before any slide --------
def test_score_refuses_a_detector_of_other_tiles_once_before_any_slide(cohort, tmp_path):
    import pandas as pd

    detector = tmp_path / "detector"
    proc = run_cli("tumorbed", "train", "--features", cohort["features"], "--annotations", cohort["truth"],
                   "--out", detector, "--max-slides", "2", "--no-augment")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((detector / "model.json").read_text())
    assert meta["tiling"] == {"mpp": 0.5, "tile_px": 224}
    (detector / "model.json").write_text(json.dumps({**meta, "tiling": {"mpp": 0.5, "tile_px": 256}}))
    table = pd.DataFrame({"slide_id": cohort["ids"], "path": [str(p.resolve()) for p in cohort["slides"]],
                          "stil": [5.0, 20.0, 40.0]})
    table.to_csv(tmp_path / "train.csv", index=False)
    model = tmp_path / "model"
    proc = run_cli("train", tmp_path / "train.csv", "--features", cohort["features"], "--out", model, "--folds", "2",
                   "--epochs", "2", "--hidden", "8", "--group-column", "none", "--annotations", cohort["truth"])
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "scores"
    proc = run_cli("score", *cohort["slides"], "--model", model, "--features", cohort["features"], "--tumorbed",
                   detector, "--out", out)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr  # one line, not one per slide
    assert errors[0].startswith(f"error: {detector}: ") and "tiles of 256 px at 0.5 µm/px" in errors[0]
    assert not (out / "results.csv").exists()


# -- #6: an annotation that covers no tile is said at apply, as train and tumorbed train say it --
def test_apply_warns_about_an_annotation_that_covers_no_tile(cohort, tmp_path):
    sid = cohort["ids"][0]
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    corner = [[[1, 1], [60, 1], [60, 60], [1, 60], [1, 1]]]  # smaller than a tile, on the glass corner
    (annotations / f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": corner}, "properties": {}}]}))
    proc = run_cli("tumorbed", "apply", cohort["features"] / f"{sid}.h5", "--out", tmp_path / "beds",
                   "--annotations", annotations)
    assert proc.returncode == 0, proc.stderr
    assert f"{sid}: tumour bed from annotation" in proc.stdout and " 0 / " in proc.stdout
    said = " ".join(proc.stderr.split())
    assert f"WARNING {sid}: its annotation " in said and "covers no tissue tile" in said, proc.stderr
    assert "'train' and 'tumorbed train' leave it out" in said


# -- #7: a corrected outline given with --annotations is not shadowed by an older annotation bed --
def test_a_corrected_outline_beside_an_annotation_bed_of_the_old_one_is_used(cohort, beds, tmp_path, caplog):
    from weakstil.tumorbed import BedSources

    sid = cohort["ids"][2]
    truth = next(cohort["truth"].glob(f"{sid}_tumorbed.geojson"))
    data = json.loads(truth.read_text())
    ring = data["features"][0]["geometry"]["coordinates"][0]
    cx, cy = sum(x for x, _ in ring) / len(ring), sum(y for _, y in ring) / len(ring)
    data["features"][0]["geometry"]["coordinates"][0] = [[cx + (x - cx) * 0.6, cy + (y - cy) * 0.6] for x, y in ring]
    corrected = tmp_path / "corrected"
    corrected.mkdir()
    (corrected / f"{sid}.geojson").write_text(json.dumps(data))
    features = _features(cohort["features"] / f"{sid}.h5")
    old = BedSources.open(beds=beds).resolve(sid, features)
    new = BedSources.open(annotations=corrected).resolve(sid, features)
    assert new.tile_flags.sum() < old.tile_flags.sum()
    with caplog.at_level(logging.WARNING, logger="weakstil"):
        used = BedSources.open(beds=beds, annotations=corrected).resolve(sid, features)
    assert (used.tile_flags == new.tile_flags).all() and used.source.value == "annotation"
    assert f"is not the outline its bed in {beds / sid}.h5 was drawn from: the annotation is used" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="weakstil"):  # the outline the bed was drawn from, or its own
        for same in (cohort["truth"], beds):
            kept = BedSources.open(beds=beds, annotations=same).resolve(sid, features)
            assert (kept.tile_flags == old.tile_flags).all() and "(precomputed: " in kept.detail
    assert "is not the outline" not in caplog.text
