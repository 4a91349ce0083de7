"""`weakstil score` on a batch as a lab runs it, and the tumour-bed detector trained from annotations.

A small pipeline is built once: synthetic slides, embeddings from a seeded random small CNN,
a MIL model trained on slide labels, and a tumour-bed detector trained on the generator's
GeoJSON outlines.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import CMU, ROOT, embedded_cohort, run_cli, shared_file, write_training_csv
from weakstil.outputdir import MARKER

sys.path.insert(0, str(ROOT / "benchmarks"))
from compare_outputs import compare_dirs  # noqa: E402

SLIDES = 9
TRAIN = 6
#: slide side in mm: 0.7 mm, about 25 tiles a slide (as conftest's WORKFLOW_SLIDE_MM), where 1 mm (about 50) took
#: twice the CPU in the fixture's synth, embed and detector training (21 s -> 11 s) and in every score run; the
#: detector still beats the whole tissue on the held-out slides by a clear margin (mean Dice gain 0.18, was 0.24)
SIZE_MM = 0.7


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    cohort, labels, features = embedded_cohort(root, SLIDES, seed=3, size_mm=(SIZE_MM, SIZE_MM))
    write_training_csv(root / "train.csv", labels.iloc[:TRAIN], cohort)
    model = root / "model"
    detector = root / "tumorbed"
    # (--no-augment: no jittered copies in the final fit, each a second read and embedding of the six slides;
    # test_tumorbed_augment_h39i and test_tumorbed_apply's detector train with them)
    proc = run_cli("tumorbed", "train", "--features", features, "--annotations", cohort / "truth", "--out",
                   detector, "--max-slides", str(TRAIN), "--no-augment")
    assert proc.returncode == 0, proc.stderr
    # MIL on slide labels, with the training slides' tumour beds from their annotations;
    # the detector is bundled into the model for scoring
    proc = run_cli("train", root / "train.csv", "--features", features, "--out", model, "--folds", "2",
                   "--epochs", "15", "--group-column", "none", "--annotations", cohort / "truth",
                   "--tumorbed", detector)
    assert proc.returncode == 0, proc.stderr
    assert "6 from annotation" in proc.stderr
    assert (model / "tumorbed" / "model.json").is_file()
    held = [cohort / p for p in labels["path"].iloc[TRAIN:]]
    return {"root": root, "cohort": cohort, "labels": labels, "features": features, "model": model, "held": held}


def score(pipeline, out, *slides, extra=()):
    return run_cli("score", *slides, "--model", pipeline["model"], "--out", out, "--features",
                   pipeline["features"], "--weights", "random", "--device", "cpu", *extra)


def test_tumorbed_detector_is_saved_with_its_quality(pipeline):
    meta = json.loads((pipeline["model"] / "tumorbed" / "model.json").read_text())
    assert meta["kind"] == "weakstil-tumorbed" and meta["n_slides"] == TRAIN
    assert 0.0 <= meta["cv_dice"] <= 1.0
    assert meta["encoder"] == "small-cnn"


def test_batch_with_bad_slides_goes_on(pipeline, tmp_path):
    truncated = tmp_path / "truncated.svs"
    data = CMU.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    no_mpp = shared_file("slides/tcga-cr-7395-01a-01-ts1_jp2k.svs")
    dicom = shared_file("slides/pathml_small_dicom_TCGA-XK-AAJU.dcm")
    out = tmp_path / "scores"
    proc = score(pipeline, out, *pipeline["held"], CMU, no_mpp, dicom, truncated)
    assert proc.returncode == 1, proc.stderr  # some slides failed
    table = pd.read_csv(out / "results.csv", dtype={"slide_id": str})
    assert list(table.columns)[:15] == ["slide_id", "path", "stil", "stil_lower_90", "stil_upper_90", "stil_high",
                                       "threshold", "n_tiles", "n_tumorbed_tiles", "tumorbed_crush_tiles",
                                       "tumorbed_source", "status", "qc", "qc_reasons", "error"]
    # each flag a reader sees has its reason beside it, in the row (CMU-1, skin: at least out_of_distribution)
    for qc, why in zip(table["qc"].fillna(""), table["qc_reasons"].fillna("")):
        assert [f"{flag}:" in why for flag in qc.split(";") if flag] == [True] * len([f for f in qc.split(";") if f])
    assert table.loc[table["slide_id"] == CMU.stem, "qc_reasons"].str.contains("out_of_distribution: ").all()
    status = dict(zip(table["slide_id"], table["status"]))
    assert len(status) == len(pipeline["held"]) + 4
    for name in (no_mpp.stem, dicom.stem, "truncated"):
        assert status[name] == "error"
    errors = dict(zip(table["slide_id"], table["error"].fillna("")))
    assert "--slide-mpp" in errors[no_mpp.stem]
    assert "truncated" in errors["truncated"]
    assert len([ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]) == 3
    for path in pipeline["held"] + [CMU]:
        sid = path.stem
        assert status[sid] in ("ok", "no tumour bed")
        assert (out / f"{sid}.h5").exists() and (out / f"{sid}_heatmap.png").exists()
        assert (out / f"{sid}.geojson").exists()
    # nothing half-written is left behind
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != MARKER]


def test_outputs_read_back(pipeline, tmp_path):
    out = tmp_path / "scores"
    proc = score(pipeline, out, *pipeline["held"])
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "results.csv")
    for row in table.itertuples():
        with h5py.File(out / f"{row.slide_id}.h5") as f:
            scores = f["tile_scores"][:]
            flags = f["tumorbed"][:].astype(bool)
            coords = f["coords"][:]
            assert f.attrs["complete"] == 1 and f.attrs["status"] == row.status
            model_json = json.loads((pipeline["model"] / "model.json").read_text())
            assert f.attrs["model_seed"] == model_json["seed"] and f.attrs["tile_prior_stroma"] == 0.2
            assert len(scores) == len(coords) == row.n_tiles and flags.sum() == row.n_tumorbed_tiles
            assert ((scores >= 0) & (scores <= 100)).all()
            assert f["tissue_mask"].attrs["mpp"] > 0 and f["tumorbed_mask"].attrs["mpp"] > 0
            tsl0 = f.attrs["tile_size_level0"]
            if row.status == "ok":
                # stroma aggregator (the default): the stroma-weighted mean over the tumour-bed tiles,
                # with every tile's weight in the file and the features' stroma estimate beside it
                stroma = f["stroma_weight"][:]
                assert len(f["stroma_estimate"][:]) == len(scores)
                assert row.stil == pytest.approx(float((stroma * scores)[flags].sum() / stroma[flags].sum()), abs=1e-3)
                assert row.stil_high == (row.stil >= row.threshold)
        gj = json.loads((out / f"{row.slide_id}.geojson").read_text())
        assert len(gj["features"]) == row.n_tiles
        first = gj["features"][0]
        ring = first["geometry"]["coordinates"][0]
        assert ring[0] == [float(coords[0][0]), float(coords[0][1])]
        assert ring[2][0] - ring[0][0] == pytest.approx(tsl0)
        assert first["properties"]["measurements"]["sTIL score"] == pytest.approx(float(scores[0]), abs=1e-3)


def test_rerun_is_quick_and_changes_nothing_and_overwrite_redoes(pipeline, tmp_path):
    def keep(folder, to):
        to.mkdir()
        for name in (f"{p.stem}{suffix}" for p in pipeline["held"] for suffix in (".h5", "_heatmap.png", ".geojson")):
            shutil.copy(folder / name, to / name)
        return to

    out = tmp_path / "scores"
    assert score(pipeline, out, *pipeline["held"]).returncode == 0
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file()}
    proc = score(pipeline, out, *pipeline["held"])
    assert proc.returncode == 0
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.iterdir() if p.is_file()}
    for name, (mtime, data) in before.items():
        if name == "results.csv":
            assert after[name][1] == data
        else:
            assert after[name] == (mtime, data), name
    assert "already scored" in proc.stderr
    # the same scan moved (here: copied) elsewhere: skipped, and results.csv says where it is now
    moved = tmp_path / "moved" / pipeline["held"][0].name
    moved.parent.mkdir()
    shutil.copy(pipeline["held"][0], moved)
    proc = score(pipeline, out, moved)
    assert proc.returncode == 0 and "already scored" in proc.stderr
    rows = pd.read_csv(out / "results.csv").set_index("slide_id")
    assert rows.loc[moved.stem, "path"] == str(moved.resolve())
    keep(out, tmp_path / "first")  # the first run's per-slide outputs, to compare with the redone ones
    proc = score(pipeline, out, *pipeline["held"], extra=("--overwrite",))
    assert proc.returncode == 0
    h5 = f"{pipeline['held'][0].stem}.h5"
    assert (out / h5).stat().st_mtime_ns > before[h5][0]
    # run to run: scoring again gives the same per-slide files (the model with its bundled detector)
    assert compare_dirs(tmp_path / "first", keep(out, tmp_path / "second")) == []


def test_killed_run_resumes_without_losing_work(pipeline, tmp_path):
    out = tmp_path / "scores"
    cmd = [sys.executable, "-m", "weakstil", "score", *map(str, pipeline["held"]), "--model", str(pipeline["model"]),
           "--out", str(out), "--features", str(pipeline["features"]), "--weights", "random", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "results.csv").exists():
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = pd.read_csv(out / "results.csv") if (out / "results.csv").exists() else pd.DataFrame()
    # every row written so far is complete, with its outputs
    for sid in done.get("slide_id", []):
        with h5py.File(out / f"{sid}.h5") as f:
            assert f.attrs["complete"] == 1
    rerun = run_cli(*cmd[3:])  # the same command in this process: resuming is not about the process
    assert rerun.returncode == 0, rerun.stderr
    table = pd.read_csv(out / "results.csv")
    assert sorted(table["slide_id"]) == sorted(p.stem for p in pipeline["held"])
    assert set(table["status"]) <= {"ok", "no tumour bed"}
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != MARKER]


def test_annotation_overrides_detection(pipeline, tmp_path):
    slide = pipeline["held"][0]
    ann = tmp_path / "ann"
    ann.mkdir()
    W = H = round(SIZE_MM * 2000)  # the slide's side at 0.5 µm/px
    ring = [[0, 0], [W // 2, 0], [W // 2, H], [0, H], [0, 0]]
    (ann / f"{slide.stem}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
         "properties": {"classification": {"name": "Tumor bed"}}}]}))
    out = tmp_path / "scores"
    proc = score(pipeline, out, slide, extra=("--annotations", ann))
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row.tumorbed_source == "annotation"
    with h5py.File(out / f"{slide.stem}.h5") as f:
        flags = f["tumorbed"][:].astype(bool)
        coords = f["coords"][:]
    assert flags.any()
    assert (coords[flags, 0] + 112 <= W // 2).all()  # only the annotated left half counts


def test_tumorbed_detector_on_held_out_slides(pipeline):
    """Detected beds overlap the generator's truth (the quality target is measured in benchmarks)."""
    from skimage.transform import resize

    from weakstil.files import FeaturesFile
    from weakstil.tissue import dice
    from weakstil.tumorbed import SlideGeometry, TumorBedDetector, whole_tissue

    detector = TumorBedDetector.load(pipeline["model"] / "tumorbed")
    gains = []
    for path in pipeline["held"]:
        data = FeaturesFile.read(pipeline["features"] / f"{path.stem}.h5")
        geom = SlideGeometry.from_file(data)
        bed = detector.detect_file(data)
        with h5py.File(pipeline["cohort"] / "truth" / f"{path.stem}.h5") as f:
            truth = resize(f["tumorbed"][:].astype(np.float32), bed.mask.shape, order=1) > 0.5
        gains.append(dice(bed.mask, truth) - dice(whole_tissue(geom).mask, truth))
    # better than taking the whole tissue, on average
    assert np.mean(gains) > 0


def test_results_rows_read_back_are_written_in_the_same_format_as_new_ones(tmp_path):
    from weakstil.results_table import read_previous, write_results

    cols = ["slide_id", "stil", "status"]
    path = tmp_path / "results.csv"
    write_results(path, {"a": {"slide_id": "a", "stil": float("nan"), "status": "error"}}, [], cols)
    # the earlier error row makes the stil column text when read back; a new float must still be %.4f
    write_results(path, {"b": {"slide_id": "b", "stil": 13.063, "status": "ok"}}, [], cols)
    assert path.read_text().splitlines() == ["slide_id,stil,status", "a,,error", "b,13.0630,ok"]
    assert float(read_previous(path)["b"]["stil"]) == 13.063


def test_rows_another_models_run_wrote_since_are_found(tmp_path):
    """Two score runs with different models into one --out each said 'all scored', and results.csv
    held a mix: a run now finds its slides whose row another model wrote since (and warns)."""
    from weakstil.results_table import replaced_by_others, write_results

    cols = ["slide_id", "stil", "status", "model_id"]
    path = tmp_path / "results.csv"
    mine = [{"slide_id": s, "stil": 10.0, "status": "ok", "model_id": "m1@aaa"} for s in ("a", "b")]
    write_results(path, {r["slide_id"]: r for r in mine}, [], cols)
    assert replaced_by_others(path, mine) == {}
    write_results(path, {"b": {"slide_id": "b", "stil": 20.0, "status": "ok", "model_id": "m2@bbb"}}, [], cols)
    assert replaced_by_others(path, mine) == {"b": "m2@bbb"}


def test_a_single_level_slides_image_is_let_go_when_it_is_scored(pipeline, tmp_path):
    """Helper h43f: a single-level slide's whole image, kept for its overviews (h43d), was held for the rest of the
    batch (the other slides' embedding, up to an eighth of the memory), and in the process after it (napari)."""
    from weakstil.score import ScoreOptions, score_batch
    from weakstil.whole_level import kept_levels

    held = []
    opts = ScoreOptions(model=pipeline["model"], out=tmp_path / "s", features=tmp_path / "f", weights="random",
                        device="cpu", workers=1)
    rows = score_batch([CMU], opts, progress=False, on_slide=lambda sid, row: held.append(kept_levels()))
    assert rows[0]["status"] == "ok", rows[0]
    assert held == [None] and kept_levels() is None  # (was the CMU-1 image, 2220 x 2967 RGBA)
