"""Hunt 27a: scoring tried from outside, as a lab technician runs it (a fault matrix on
``weakstil score`` / ``embed``).

1. An annotation a quarter or more off the slide (another slide's outline, another scan's
   coordinates, an offset) was scored over its part on the slide with no qc flag: one log line
   said the part off the slide was ignored, and results.csv showed a clean ``ok`` row.
2. A batch listing two files of one slide id, the one already scored in ``--out`` listed second
   (``new/S1.svs old/S1.svs``), refused the new one as the old one's namesake and the old one as
   the scored file's: neither was scored and the finished slide's ``ok`` row got an ``error`` row
   under it. ``embed`` replaced the existing cache by the file listed first.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from shapely.affinity import translate
from shapely.geometry import box, mapping, shape

from conftest import run_cli
from shared_cohorts import one_epoch_model_copy


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("h27a")
    model, cohort, labels, features = one_epoch_model_copy(tmp_path_factory, root)
    return model, cohort, labels, features


def _shifted_outline(cohort, sid: str, off_share: float, out_dir):
    """The slide's true bed outline moved right until ``off_share`` of its area lies off the slide."""
    import openslide

    truth = json.loads((cohort / "truth" / f"{sid}_tumorbed.geojson").read_text())
    bed = shape(truth["features"][0]["geometry"])
    with openslide.OpenSlide(str(cohort / "slides" / f"{sid}.tiff")) as s:
        width, height = s.dimensions
    slide = box(0, 0, width, height)
    lo, hi = 0.0, float(width)
    for _ in range(40):  # bisect the shift
        dx = (lo + hi) / 2
        share = 1 - translate(bed, dx).intersection(slide).area / bed.area
        lo, hi = (dx, hi) if share < off_share else (lo, dx)
    moved = translate(bed, (lo + hi) / 2)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"classification": {"name": "Tumor"}}, "geometry": mapping(moved)}]}))
    return out_dir


def test_an_outline_partly_off_the_slide_is_flagged_misplaced(small_model, tmp_path):
    model, cohort, labels, features = small_model
    sid = labels["slide_id"].iloc[0]
    slide = cohort / "slides" / f"{sid}.tiff"
    flags = {}
    for share in (0.0, 0.05, 0.3):
        ann = _shifted_outline(cohort, sid, share, tmp_path / f"ann{share}") if share else None
        if ann is None:
            ann = tmp_path / "ann0"
            ann.mkdir()
            shutil.copyfile(cohort / "truth" / f"{sid}_tumorbed.geojson", ann / f"{sid}.geojson")
        out = tmp_path / f"scored{share}"
        run_cli("score", slide, "-m", model, "-o", out, "-f", features, "--annotations", ann, check=True)
        row = pd.read_csv(out / "results.csv", keep_default_na=False).iloc[0]
        assert row["status"] == "ok" and row["tumorbed_source"] == "annotation"
        flags[share] = (row["qc"], row["qc_reasons"])
    assert "annotation_misplaced" not in flags[0.0][0]
    assert "annotation_misplaced" not in flags[0.05][0]  # an outline run a little past the image's edge
    assert "annotation_misplaced" in flags[0.3][0].split(";"), flags[0.3]
    assert "30% of the annotation lies outside the slide" in flags[0.3][1]


def test_the_scored_file_keeps_its_id_when_a_namesake_is_listed_first(small_model, tmp_path):
    model, cohort, labels, features = small_model
    a, b = labels["slide_id"].iloc[0], labels["slide_id"].iloc[1]
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = shutil.copyfile(cohort / "slides" / f"{a}.tiff", tmp_path / "old" / "S1.tiff")
    new = shutil.copyfile(cohort / "slides" / f"{b}.tiff", tmp_path / "new" / "S1.tiff")
    out = tmp_path / "scored"
    run_cli("score", old, "-m", model, "-o", out, check=True)
    first = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    result = run_cli("score", new, old, "-m", model, "-o", out)
    assert result.returncode == 1
    rows = pd.read_csv(out / "results.csv", keep_default_na=False, dtype=str)
    mine = rows[rows["path"] == str(old)]
    assert mine["status"].tolist() == ["ok"], rows[["path", "status", "error"]].to_string()  # no error row beside it
    assert mine["stil"].tolist() == first["stil"].tolist()
    theirs = rows[rows["path"] == str(new)]
    assert theirs["status"].tolist() == ["error"] and f"as {old}" in theirs["error"].iloc[0]
    assert f"error: {new}: has the same slide id 'S1'" in result.stderr

    # embed the same way: the existing cache's slide keeps the id, its cache is not replaced
    from weakstil.files import FeaturesFile

    feats = tmp_path / "feats"
    run_cli("embed", old, "-o", feats, "--encoder", "small-cnn", "--weights", "random", check=True)
    result = run_cli("embed", new, old, "-o", feats, "--encoder", "small-cnn", "--weights", "random")
    assert result.returncode == 1 and f"{new}: has the same slide id 'S1'" in result.stderr
    assert FeaturesFile.read_header(feats / "S1.h5")[0]["slide_path"] == str(old)


def test_a_damaged_bundled_encoder_or_detector_says_copy_the_model_again(small_model, tmp_path):
    """A model folder whose encoder/ or tumorbed/ weights were cut short in a copy said "run 'weakstil
    pretrain' again" / "train the detector again": a new encoder is not the one the model was trained
    on (the model then refuses it), and a lab has no annotations to train a detector with."""
    from weakstil.encoders.factory import EncoderError, check_encoder_folder
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed.detector import TumorBedDetector

    model, cohort, labels, features = small_model
    copy = shutil.copytree(model, tmp_path / "model")
    run_cli("tumorbed", "train", "--features", features, "--annotations", cohort / "truth", "--out",
            tmp_path / "bed", "--no-augment", check=True)
    shutil.copytree(tmp_path / "bed", copy / "tumorbed")
    run_cli("pretrain", cohort / "slides" / f"{labels['slide_id'].iloc[0]}.tiff", "--out", copy / "encoder",
            "--steps", "1", "--batch-size", "2", "--tiles-per-slide", "4", "--crop-px", "32", check=True)
    for folder in ("encoder", "tumorbed"):
        weights = copy / folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:3000])
    with pytest.raises(EncoderError) as enc:
        check_encoder_folder(copy / "encoder")
    assert f"copy the whole model folder {copy} again" in enc.value.one_line() and "pretrain" not in enc.value.fix
    with pytest.raises(WeakSTILError) as bed:
        TumorBedDetector.load(copy / "tumorbed")
    assert f"copy the whole model folder {copy} again" in bed.value.one_line() and "train" not in bed.value.fix


def test_an_empty_path_is_a_usage_error_not_the_current_folder(small_model, tmp_path, monkeypatch):
    """``--out "$OUT"`` with OUT unset: the empty path was read as '.', and score wrote results.csv,
    the heatmap and the feature cache into the current folder (exit 0); an empty --annotations took
    the current folder as the outlines' (none there: the detector's bed, at INFO)."""
    model, cohort, labels, features = small_model
    slide = cohort / "slides" / f"{labels['slide_id'].iloc[0]}.tiff"
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    for args, name in ([slide, "-m", model, "-o", ""], "--out"), ([slide, "-m", model, "-o", tmp_path / "o",
                                                                    "--annotations", ""], "--annotations"), \
            ([slide, "-m", model, "-o", tmp_path / "o", "-f", " "], "--features"), (["", "-m", model, "-o", tmp_path / "o"],
                                                                                  "SLIDES"):
        result = run_cli("score", *args)
        assert result.returncode == 2, (name, result.stderr)
        assert result.stderr.strip() == (f"error: {name} is empty (an unset shell variable?), which would be read as "
                                         "the current folder. Fix: give the path."), result.stderr
    assert list(here.iterdir()) == [] and not (tmp_path / "o").exists()
    result = run_cli("report", "--scores", "", "--out", tmp_path / "r")
    assert result.returncode == 2 and "--scores is empty" in result.stderr


def test_a_folder_of_slides_with_a_dicom_file_among_them_is_not_a_dicom_series(cmu, tmp_path):
    """A lab's slide folder ('slides/' given for 'slides/*') holding an SVS and a DICOM slide was
    "a DICOM series folder" with the fix "pass one .dcm file of the series, e.g. slides/x.dcm"."""
    mixed = tmp_path / "slides"
    mixed.mkdir()
    shutil.copyfile(cmu, mixed / "a.svs")
    (mixed / "b.dcm").write_bytes(b"\0" * 200)
    series = tmp_path / "series"
    series.mkdir()
    for name in ("1.dcm", "2.dcm", "DICOMDIR"):
        (series / name).write_bytes(b"\0" * 200)
    result = run_cli("info", mixed)
    assert result.returncode == 1 and "DICOM" not in result.stderr, result.stderr
    assert f"a glob of the folder's (quoted): '{mixed / '*'}'" in result.stderr
    result = run_cli("info", series)
    assert result.returncode == 1 and "is a DICOM series folder" in result.stderr and str(series / "1.dcm") in result.stderr


def test_a_results_csv_without_its_id_columns_is_still_this_models(small_model, tmp_path):
    """A lab that deleted results.csv's model_id and encoder_id columns in a spreadsheet: the rerun
    scored every slide again, each with "scored earlier by another model (None, not model@...)"."""
    model, cohort, labels, features = small_model
    slide = cohort / "slides" / f"{labels['slide_id'].iloc[0]}.tiff"
    out = tmp_path / "scored"
    run_cli("score", slide, "-m", model, "-o", out, "-f", features, check=True)
    table = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)
    ids = table[["model_id", "encoder_id"]].iloc[0].tolist()
    table.drop(columns=["model_id", "encoder_id"]).assign(comment="seen").to_csv(out / "results.csv", index=False)
    before = (out / f"{labels['slide_id'].iloc[0]}.h5").stat().st_mtime_ns
    result = run_cli("score", slide, "-m", model, "-o", out, "-f", features, check=True)
    assert "another model" not in result.stderr and "already scored" in result.stderr, result.stderr
    assert (out / f"{labels['slide_id'].iloc[0]}.h5").stat().st_mtime_ns == before  # not scored again
    row = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False).iloc[0]
    assert [row["model_id"], row["encoder_id"]] == ids and row["comment"] == "seen"


def test_an_out_folder_that_is_a_dangling_link_says_so(small_model, cmu, tmp_path):
    """``--out results`` where ``results`` links to a purged scratch folder said "results: File exists.
    Fix: check the file system and run again" (exit 1)."""
    link, loop = tmp_path / "results", tmp_path / "loop"
    link.symlink_to(tmp_path / "scratch" / "results")
    loop.symlink_to(loop)
    for command in (["tile", cmu], ["score", cmu, "-m", tmp_path], ["embed", cmu, "--encoder", "small-cnn"]):
        result = run_cli(*command, "--out", link)
        assert result.returncode == 2, result.stderr
        assert (f"{link} is a symbolic link to {tmp_path / 'scratch' / 'results'}, which does not exist. Fix: create "
                f"that folder (mkdir -p {tmp_path / 'scratch' / 'results'})") in result.stderr, result.stderr
    result = run_cli("tile", cmu, "--out", loop)
    assert result.returncode == 2 and "leads back to itself (a loop)" in result.stderr, result.stderr
    # the feature caches' folder likewise (score makes a --features folder that is missing)
    model, cohort, labels, features = small_model
    slide = cohort / "slides" / f"{labels['slide_id'].iloc[0]}.tiff"
    result = run_cli("score", slide, "-m", model, "--out", tmp_path / "o", "--features", link)
    assert result.returncode == 1 and "File exists" not in result.stderr, result.stderr
    assert f"{link}: is a symbolic link to {tmp_path / 'scratch' / 'results'}, which does not exist" in result.stderr
    assert not (tmp_path / "scratch").exists()


def test_a_core_biopsy_heatmap_stacks_its_panels(small_model, tmp_path):
    """A core needle biopsy (a strip 16 times longer than wide, the usual pre-treatment specimen) got a
    3389 x 201 px heatmap: the score and stroma-weight panels side by side, each 100 px high, the colour
    bars' captions cut off."""
    from PIL import Image

    model, cohort, labels, features = small_model
    run_cli("synth", tmp_path / "core", "--slides", "1", "--seed", "5", "--size-mm", "4", "0.25", check=True)
    out = tmp_path / "scored"
    run_cli("score", tmp_path / "core" / "slides" / "synth_0000.tiff", "-m", model, "-o", out, check=True)
    width, height = Image.open(out / "synth_0000_heatmap.png").size
    assert width < 4 * height, (width, height)  # was 3389 x 201
    # each panel (slide and colour bar) at least 180 px high: two stacked, with the title and the key
    assert height >= 2 * 180 + 60, (width, height)
    # a square slide keeps its panels side by side
    square = tmp_path / "square" / f"{labels['slide_id'].iloc[0]}_heatmap.png"
    run_cli("score", cohort / "slides" / f"{labels['slide_id'].iloc[0]}.tiff", "-m", model, "-o", square.parent,
            "-f", features, check=True)
    width, height = Image.open(square).size
    assert width > 1.6 * height, (width, height)
