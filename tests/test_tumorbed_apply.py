"""`weakstil tumorbed apply` (one checkable tumour bed per slide) and `--tumorbed-beds`, the way
train, evaluate and score reuse those beds.

Four small synthetic slides embedded with a seeded random small CNN (the napari plugin's shared cohort,
built once per run: see the ``cohort`` fixture); the generator's GeoJSON outlines
(cohort/truth/<slide_id>_tumorbed.geojson) are the pathologist's annotations.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import napari_plugin_fixtures
from conftest import run_cli
from weakstil.outputdir import MARKER

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below

SLIDES = 4
FAST_TRAIN = ("--folds", "2", "--epochs", "3", "--hidden", "16", "--group-column", "none")


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, scored):
    """The napari plugin's shared cohort (``scored``: seed 5, 1 mm, its first four slides embedded with the
    seeded random small CNN, built once per run), its four embedded slides copied with their truth and
    features: the slides this module made and embedded itself (the same bytes, about 9 s of CPU)."""
    root = tmp_path_factory.mktemp("beds")
    labels = pd.read_csv(scored["cohort"] / "labels.csv").iloc[:SLIDES]
    for sid, path in zip(labels["slide_id"], labels["path"]):
        for rel in (path, f"truth/{sid}_tumorbed.geojson", f"truth/{sid}_preview.png", f"truth/{sid}.h5"):
            (root / "cohort" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(scored["cohort"] / rel, root / "cohort" / rel)
    shutil.copytree(scored["root"] / "features", root / "features")
    assert sorted(p.stem for p in (root / "features").glob("*.h5")) == sorted(labels["slide_id"])
    table = labels.assign(path=[str((root / "cohort" / p).resolve()) for p in labels["path"]])
    table[["slide_id", "path", "stil"]].to_csv(root / "train.csv", index=False)
    beds = root / "beds"
    proc = run_cli("tumorbed", "apply", str(root / "features" / "*.h5"), "--out", beds,
                   "--annotations", root / "cohort" / "truth")
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "ids": list(labels["slide_id"]), "features": root / "features",
            "truth": root / "cohort" / "truth", "beds": beds, "apply_stdout": proc.stdout}


def _features(cohort, sid: str) -> dict:
    from weakstil.files import FeaturesFile

    return FeaturesFile.read(cohort["features"] / f"{sid}.h5")


def test_apply_from_annotations_writes_one_checkable_bed_per_slide(cohort):
    from weakstil.tumorbed import BedSources

    lines = cohort["apply_stdout"].splitlines()
    assert len(lines) == SLIDES
    for sid, line in zip(cohort["ids"], lines):
        data = _features(cohort, sid)
        expected = BedSources(annotations=cohort["truth"]).resolve(sid, data)
        n, k = len(data.coords), int(expected.tile_flags.sum())
        assert line.startswith(f"{sid}: tumour bed from annotation") and f"{k} / {n} tiles" in line
        with h5py.File(cohort["beds"] / f"{sid}.h5") as f:
            assert f.attrs["complete"] == 1 and f.attrs["slide_id"] == sid and f.attrs["source"] == "annotation"
            assert f.attrs["annotation_path"].endswith(f"{sid}_tumorbed.geojson")
            assert f.attrs["cache_key"] == data.attrs["cache_key"] and len(data.attrs["cache_key"]) == 64
            assert f.attrs["tile_size_level0"] == data.attrs["tile_size_level0"]
            assert f.attrs["slide_mpp"] == data.attrs["slide_mpp"] and f.attrs["slide_path"] == data.attrs["slide_path"]
            assert f.attrs["weakstil_version"] and f.attrs["created"] and f.attrs["kind"] == "tumorbed"
            assert np.array_equal(f["coords"][:], data.coords)
            assert np.array_equal(f["tumorbed"][:].astype(bool), expected.tile_flags)
            assert np.allclose(f["tumorbed_fraction"][:], expected.tile_fraction)
            assert np.array_equal(f["tumorbed_mask"][:].astype(bool), expected.mask)
            assert f["tumorbed_mask"].attrs["mpp"] == expected.mask_mpp
    assert not [p for p in cohort["beds"].iterdir() if p.name.startswith(".") and p.name != MARKER]  # no temporaries


def test_an_outline_named_otherwise_is_said_or_found(cohort, tmp_path, caplog):
    """An annotation folder with no outline for the slide says so (the bed is then the whole tissue; it
    was silent); QuPath's '<slide file name>.geojson' is found as the slide's own."""
    import shutil

    from weakstil.tumorbed import BedSources

    sid = cohort["ids"][0]
    folder = tmp_path / "ann"
    folder.mkdir()
    shutil.copy(cohort["truth"] / f"{sid}_tumorbed.geojson", folder / f"{sid} annotations.geojson")
    with caplog.at_level("WARNING"):
        bed = BedSources(annotations=folder).resolve(sid, _features(cohort, sid))
    assert bed.source.value == "tissue"
    assert f"{sid}: no annotation in {folder}" in caplog.text and "the whole tissue" in caplog.text
    shutil.copy(cohort["truth"] / f"{sid}_tumorbed.geojson", folder / f"{sid}.tiff.geojson")
    assert BedSources(annotations=folder).resolve(sid, _features(cohort, sid)).source.value == "annotation"


def test_geojson_outline_opens_as_an_annotation_again(cohort):
    """What a pathologist checks (and may correct) in QuPath reads back as the same bed."""
    from weakstil.annotations import find_annotation
    from weakstil.tissue import dice
    from weakstil.tumorbed import SlideGeometry, from_annotation

    for sid in cohort["ids"]:
        doc = json.loads((cohort["beds"] / f"{sid}.geojson").read_text())
        assert doc["type"] == "FeatureCollection" and doc["features"]
        for feature in doc["features"]:
            assert feature["geometry"]["type"] == "Polygon"
            props = feature["properties"]
            assert props["objectType"] == "annotation" and props["classification"]["name"] == "Tumor bed"
        with h5py.File(cohort["beds"] / f"{sid}.h5") as f:
            mask = f["tumorbed_mask"][:].astype(bool)
        # the beds folder is itself an --annotations folder (<slide_id>.geojson)
        annotation = find_annotation(cohort["beds"], sid)
        assert annotation == cohort["beds"] / f"{sid}.geojson"
        again = from_annotation(annotation, SlideGeometry.from_file(_features(cohort, sid)))
        assert dice(again.mask, mask) >= 0.95


@pytest.fixture(scope="module")
def detector(cohort):
    """A detector trained through the CLI on the four annotated slides."""
    out = cohort["root"] / "detector"
    proc = run_cli("tumorbed", "train", "--features", cohort["features"], "--annotations", cohort["truth"],
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "leave-one-slide-out Dice mean" in " ".join(proc.stderr.split())
    return out


def test_trained_detector_records_its_settings_and_cross_validated_dice(cohort, detector):
    from weakstil.tumorbed import FORMAT_VERSION, TumorBedDetector

    meta = json.loads((detector / "model.json").read_text())
    assert meta["kind"] == "weakstil-tumorbed" and meta["format_version"] == FORMAT_VERSION
    assert set(meta["shape"]) == {"seed_threshold", "smooth_um", "bridge_um", "margin_um", "min_seed_mm2", "min_seed_share",
                                  "infiltrate_um", "infiltrate_dark_area"}
    assert meta["cv"] == "leave-one-slide-out" and meta["slide_ids"] == cohort["ids"]
    per_slide = meta["cv_dice_per_slide"]
    assert sorted(per_slide) == sorted(cohort["ids"])
    assert meta["cv_dice"] == pytest.approx(np.mean(list(per_slide.values())), abs=1e-3)
    assert meta["cv_dice_min"] == pytest.approx(min(per_slide.values()), abs=1e-3)
    assert meta["cv_dice"] > 0.5  # four tiny slides and a random encoder: far from perfect, far from empty
    # the geometry search's best, then the reach of contiguous infiltrate tried on it: never worse
    assert meta["cv_dice"] >= meta["search"]["top"][0]["dice_mean"] - 1e-6
    reach = {r["infiltrate_um"]: r["dice_mean"] for r in meta["infiltrate_search"]}
    assert set(reach) == {0.0, 150.0, 300.0} and reach[0.0] == pytest.approx(meta["search"]["top"][0]["dice_mean"],
                                                                             abs=1e-4)
    assert reach[meta["shape"]["infiltrate_um"]] == pytest.approx(meta["cv_dice"], abs=1e-4)
    assert meta["plausibility"]["min_evidence_ratio"] > 0
    assert TumorBedDetector.load(detector).shape.to_dict() == meta["shape"]
    # the numerics it was trained with and when, as a MIL model records them (hunt 27b: weakstil's only)
    assert meta["versions"]["numpy"] == np.__version__ and meta["versions"]["python"] == platform.python_version()
    assert {"weakstil", "scipy"} <= set(meta["versions"]) and meta["created"][:2] == "20"


def test_a_detector_from_before_format_2_is_refused_with_a_fix(detector, tmp_path, cohort):
    old = tmp_path / "old_detector"
    shutil.copytree(detector, old)
    meta = json.loads((old / "model.json").read_text())
    for key in ("format_version", "shape", "plausibility"):
        meta.pop(key)
    meta["post_process"] = {"smooth_um": 150.0, "threshold": 0.5, "closing_um": 150.0}
    (old / "model.json").write_text(json.dumps(meta))
    good = cohort["features"] / f"{cohort['ids'][0]}.h5"
    proc = run_cli("tumorbed", "apply", good, "--out", tmp_path / "beds", "--tumorbed", old)
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert str(old) in error and "format 1" in error and "Fix: retrain it" in error and "weakstil tumorbed train" in error
    assert not (tmp_path / "beds").exists()


def test_a_damaged_detector_is_refused_not_used(detector, tmp_path, cohort):
    """Bytes flipped in the weights still load and draw another bed (the sTIL% changed silently):
    model.json records the weights' SHA-256, and a file that differs is refused."""
    from weakstil.tumorbed.detector import DETECTOR_SHA256

    assert len(json.loads((detector / "model.json").read_text())[DETECTOR_SHA256]) == 64
    damaged = tmp_path / "damaged"
    shutil.copytree(detector, damaged)
    raw = bytearray((damaged / "model.safetensors").read_bytes())
    raw[-8:] = bytes(b ^ 0x5A for b in raw[-8:])  # the last weight values: the file still loads
    (damaged / "model.safetensors").write_bytes(bytes(raw))
    good = cohort["features"] / f"{cohort['ids'][0]}.h5"
    proc = run_cli("tumorbed", "apply", good, "--out", tmp_path / "beds", "--tumorbed", damaged)
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert "model.safetensors" in error and "SHA-256 differs" in error and "Fix: copy the detector folder" in error
    assert not (tmp_path / "beds").exists()


def test_apply_with_a_detector_and_an_annotation_that_overrides_it(cohort, detector, tmp_path):
    from weakstil.tumorbed import TumorBedDetector

    annotated = cohort["ids"][0]
    ann = tmp_path / "ann"
    ann.mkdir()
    shutil.copy(cohort["truth"] / f"{annotated}_tumorbed.geojson", ann)
    out = tmp_path / "beds"
    proc = run_cli("tumorbed", "apply", *(cohort["features"] / f"{sid}.h5" for sid in cohort["ids"]), "--out", out,
                   "--annotations", ann, "--tumorbed", detector)
    assert proc.returncode == 0, proc.stderr
    model = TumorBedDetector.load(detector)
    for sid in cohort["ids"]:
        with h5py.File(out / f"{sid}.h5") as f:
            if sid == annotated:
                assert f.attrs["source"] == "annotation" and "detector_id" not in f.attrs
                continue
            assert f.attrs["source"] in ("model", "tissue-fallback")
            assert f.attrs["detector_id"] == "tumorbed-4slides"
            assert len(f.attrs["detector_sha256"]) == 64 and f.attrs["detector_path"] == str(detector.resolve())
            data = _features(cohort, sid)
            expected = model.detect_file(data)
            assert f.attrs["source"] == expected.source.value
            assert np.array_equal(f["tumorbed"][:].astype(bool), expected.tile_flags)
            assert np.allclose(f["tumour_evidence"][:], expected.evidence)
            # the vetoes ran and say so: the features have tile statistics and the slide is there
            assert f.attrs["seed_vetoes"] == expected.seed_vetoes
            assert "lymphoid: " in expected.seed_vetoes and "tiles" in expected.seed_vetoes
            assert "ink: " in expected.seed_vetoes and "slide not read" not in expected.seed_vetoes
            # which ink test the slide had, and under which rule (helper h45d: recorded nowhere before)
            from weakstil.ink_plane import INK_PLANE_RULE

            assert f.attrs["ink_test"] == expected.ink_test in ("stain plane", "own plane", "not checked")
            assert f.attrs["ink_plane_rule"] == INK_PLANE_RULE
    assert "tumour bed from model (tumorbed-4slides)" in proc.stdout


def test_bad_inputs_are_one_error_line_each_and_the_others_go_on(cohort, detector, tmp_path):
    not_h5 = tmp_path / "notes.h5"
    not_h5.write_text("not HDF5")
    good = cohort["features"] / f"{cohort['ids'][1]}.h5"
    out = tmp_path / "beds"
    proc = run_cli("tumorbed", "apply", not_h5, good, tmp_path / "missing.h5", "--out", out)
    assert proc.returncode == 1
    errors = _errors(proc)
    assert len(errors) == 2 and "notes.h5" in errors[0] and "missing.h5" in errors[1]
    assert (out / good.name).is_file() and "tumour bed from tissue" in proc.stdout

    # a detector trained on another encoder's embeddings is refused for every slide
    other = tmp_path / "other_detector"
    shutil.copytree(detector, other)
    meta = json.loads((other / "model.json").read_text())
    (other / "model.json").write_text(json.dumps({**meta, "encoder": "another-encoder"}))
    proc = run_cli("tumorbed", "apply", good, "--out", tmp_path / "beds2", "--tumorbed", other)
    assert proc.returncode == 1 and len(_errors(proc)) == 1 and "another-encoder" in _errors(proc)[0]


@pytest.fixture(scope="module")
def trained(cohort):
    """The same training twice: tumour beds from the annotations, and from the precomputed beds."""
    root = cohort["root"]
    runs = {}
    for name, source in (("annotations", ("--annotations", cohort["truth"])),
                         ("beds", ("--tumorbed-beds", cohort["beds"]))):
        proc = run_cli("train", root / "train.csv", "--features", cohort["features"], "--out", root / f"model_{name}",
                       *FAST_TRAIN, *source)
        assert proc.returncode == 0, proc.stderr
        runs[name] = (root / f"model_{name}", proc)
    return runs


def test_train_with_precomputed_beds_uses_the_same_tiles_as_with_annotations(cohort, trained):
    assert f"{SLIDES} from annotation ({SLIDES} precomputed" in " ".join(trained["beds"][1].stderr.split())
    for sid in cohort["ids"]:
        with h5py.File(trained["annotations"][0] / "cv" / "tiles" / f"{sid}.h5") as a, \
                h5py.File(trained["beds"][0] / "cv" / "tiles" / f"{sid}.h5") as b:
            assert np.array_equal(a["tile_mask"][:], b["tile_mask"][:])
            assert 0 < a["tile_mask"][:].sum() < len(a["tile_mask"])  # a real bed, not every tile


def test_stale_bed_is_refused_by_train_and_score(cohort, trained, tmp_path):
    stale = tmp_path / "beds"
    shutil.copytree(cohort["beds"], stale)
    victim = cohort["ids"][2]
    with h5py.File(stale / f"{victim}.h5", "a") as f:  # as if the slide had been embedded again since
        f.attrs["cache_key"] = "0" * 64
    root = cohort["root"]
    proc = run_cli("train", root / "train.csv", "--features", cohort["features"], "--out", tmp_path / "model",
                   *FAST_TRAIN, "--tumorbed-beds", stale)
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert f"{stale / victim}.h5: tumour bed was computed from other features" in error
    assert "Fix: rerun 'weakstil tumorbed apply'" in error
    assert not (tmp_path / "model").exists()

    slides = pd.read_csv(root / "train.csv")["path"].tolist()
    out = tmp_path / "scores"
    proc = run_cli("score", *slides, "--model", trained["beds"][0], "--out", out, "--features", cohort["features"],
                   "--weights", "random", "--device", "cpu", "--tumorbed-beds", stale)
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert f"{stale / victim}.h5: tumour bed was computed from other features" in error
    table = pd.read_csv(out / "results.csv").set_index("slide_id")
    assert table.loc[victim, "status"] == "error"
    others = table.drop(victim)
    assert set(others["status"]) <= {"ok", "no tumour bed"} and set(others["tumorbed_source"]) == {"annotation"}
    with h5py.File(out / f"{cohort['ids'][0]}.h5") as f:  # the recorded source and where the bed came from
        assert f.attrs["tumorbed_source"] == "annotation" and str(stale) in f.attrs["tumorbed_detail"]


def test_an_empty_detection_falls_back_to_the_whole_tissue_with_a_status(cohort, detector, trained, tmp_path):
    """A detector that finds no tumour (here: no evidence can reach its seed threshold) never
    drops a slide silently: whole tissue, source tissue-fallback, status 'bed fallback: tissue'."""
    from weakstil.tumorbed import BedSources

    never = tmp_path / "never"
    shutil.copytree(detector, never)
    meta = json.loads((never / "model.json").read_text())
    meta["shape"]["seed_threshold"] = 2.0
    (never / "model.json").write_text(json.dumps(meta))
    sid = cohort["ids"][1]
    proc = run_cli("tumorbed", "apply", cohort["features"] / f"{sid}.h5", "--out", tmp_path / "beds",
                   "--tumorbed", never)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{sid}: bed fallback: tissue (detected tumour bed is empty")
    assert f"{sid}: bed fallback: tissue" in " ".join(proc.stderr.split())  # the warning line
    tissue = BedSources().resolve(sid, _features(cohort, sid))
    with h5py.File(tmp_path / "beds" / f"{sid}.h5") as f:
        assert f.attrs["source"] == "tissue-fallback" and "whole tissue used" in f.attrs["detail"]
        assert np.array_equal(f["tumorbed"][:].astype(bool), tissue.tile_flags)
        assert f["tumour_evidence"][:].max() < 2.0

    slides = pd.read_csv(cohort["root"] / "train.csv")["path"].tolist()[:2]
    out = tmp_path / "scores"
    proc = run_cli("score", *slides, "--model", trained["beds"][0], "--out", out, "--features", cohort["features"],
                   "--weights", "random", "--device", "cpu", "--tumorbed", never)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "results.csv")
    assert set(table["status"]) == {"bed fallback: tissue"} and set(table["tumorbed_source"]) == {"tissue-fallback"}
    assert table["stil"].notna().all() and (table["n_tumorbed_tiles"] == table["n_tiles"]).all()
    # a model trained on beds, scoring the whole tissue: its interval is not the bed's (hunt 40c: no flag before)
    assert all("bed_unlike_training" in str(q).split(";") for q in table["qc"]), table["qc"].tolist()
    assert all("its detected bed fell back to it" in str(r) for r in table["qc_reasons"])
    with h5py.File(out / f"{table['slide_id'][0]}.h5") as f:
        assert f.attrs["status"] == "bed fallback: tissue" and f.attrs["tumorbed_source"] == "tissue-fallback"
        assert "detected tumour bed is empty" in f.attrs["tumorbed_detail"]



def test_detector_with_tumour_nuclei_statistics_records_them_and_needs_them(cohort, detector, tmp_path):
    """Tumour evidence from the embedding plus the tile statistics of tumour-sized pale nuclei
    (``tumorbed.training`` with ``tile_stats=True``): the columns are saved with the detector and
    read from each feature file when applied; a file without tile statistics is refused with a fix.
    (Built from the trained detector with weights added for the statistics: no second training.)"""
    from dataclasses import replace

    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed import TumorBedDetector
    from weakstil.tumorbed.bed import SlideGeometry
    from weakstil.tumorbed.evidence import TUMOUR_NUCLEI_COLUMNS, LogisticEvidence, stats_column_names

    assert all("_pale_" in c and not c.startswith("small") for c in TUMOUR_NUCLEI_COLUMNS)
    plain = TumorBedDetector.load(detector)
    k = len(TUMOUR_NUCLEI_COLUMNS)
    ev = plain.evidence
    with_stats = replace(plain, stats_columns=TUMOUR_NUCLEI_COLUMNS, evidence=LogisticEvidence(
        np.concatenate([ev.weight, np.full(k, 0.5, np.float32)]), ev.bias,
        np.concatenate([ev.mean, np.zeros(k, np.float32)]), np.concatenate([ev.std, np.ones(k, np.float32)])))
    loaded = TumorBedDetector.load(with_stats.save(tmp_path / "det"))
    assert loaded.stats_columns == TUMOUR_NUCLEI_COLUMNS
    assert json.loads((tmp_path / "det" / "model.json").read_text())["tile_stats_columns"] == list(TUMOUR_NUCLEI_COLUMNS)
    features = _features(cohort, cohort["ids"][0])
    geom = SlideGeometry.from_file(features)
    x = np.asarray(features.features)
    columns = stats_column_names(features.attr("tile_stats_columns"))
    base = plain.tumour_evidence(x, geom)
    got = loaded.tumour_evidence(x, geom, features.tile_stats, columns)
    # the statistics move the evidence, up where the tile has more tumour-sized pale nuclei than its slide
    idx = [columns.index(c) for c in TUMOUR_NUCLEI_COLUMNS]
    z = features.tile_stats[:, idx]
    z = ((z - z.mean(0)) / (z.std(0) + 1e-6)).sum(1)
    def logit(p):
        p = np.clip(p.astype(np.float64), 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    # away from float32 saturation: near 1 a float32 step (6e-8) moves the logit by 6e-8 / (1 - p),
    # so only p in [1e-4, 1 - 1e-4] gives logits good to 1e-3
    ok = (base > 1e-4) & (base < 1 - 1e-4) & (got > 1e-4) & (got < 1 - 1e-4)
    assert ok.sum() > 10 and np.ptp(z[ok]) > 1
    assert np.allclose(logit(got[ok]) - logit(base[ok]), 0.5 * z[ok], atol=1e-2)
    with pytest.raises(WeakSTILError, match="tile statistics"):
        loaded.detect(x, geom)


def test_a_bed_whose_annotation_was_corrected_since_is_refused(cohort, tmp_path, caplog):
    """A pathologist corrects an outline after 'tumorbed apply': the old bed must not shadow it."""
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed import BedSources
    from weakstil.tumorbed.apply import apply_tumorbed

    sid = cohort["ids"][1]
    annotations = tmp_path / "annotations"
    shutil.copytree(cohort["truth"], annotations)
    apply_tumorbed(cohort["features"] / f"{sid}.h5", tmp_path / "beds", BedSources.open(annotations=annotations))
    beds = BedSources.open(beds=tmp_path / "beds")
    assert beds.resolve(sid, _features(cohort, sid)).source.value == "annotation"  # unchanged: used
    before = beds.request(sid)
    assert beds.request(sid) == before  # a slide scored with it is skipped on a rerun
    outline = next(annotations.glob(f"{sid}*.geojson"))
    data = json.loads(outline.read_text())
    ring = data["features"][0]["geometry"]["coordinates"][0]
    data["features"][0]["geometry"]["coordinates"][0] = [[x * 0.8 + 100, y * 0.8 + 100] for x, y in ring]
    outline.write_text(json.dumps(data))
    with pytest.raises(WeakSTILError, match="annotation that has changed since") as err:
        beds.resolve(sid, _features(cohort, sid))
    assert "--annotations" in err.value.fix
    # score's rerun into the same --out must not skip the slide as already scored with this bed
    corrected = beds.request(sid)
    assert corrected != before
    outline.unlink()  # the annotation withdrawn: the bed is still used, and said to be drawn from a missing file
    assert beds.request(sid) not in (before, corrected)
    with caplog.at_level("WARNING"):
        assert beds.resolve(sid, _features(cohort, sid)).source.value == "annotation"
    assert f"which no longer exists: if the annotation was withdrawn, rerun 'weakstil tumorbed apply' for {sid}" \
        in caplog.text


def test_a_bed_whose_own_outline_was_edited_since_is_refused(cohort, detector, tmp_path, caplog):
    """The outline 'tumorbed apply' writes beside its bed, corrected in QuPath and saved over itself:
    --tumorbed-beds must not score the old bed as if nothing had changed (the call could flip)."""
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed import BedSources
    from weakstil.tumorbed.apply import apply_tumorbed

    sid = cohort["ids"][2]
    apply_tumorbed(cohort["features"] / f"{sid}.h5", tmp_path / "beds", BedSources.open(detector=detector))
    beds = BedSources.open(beds=tmp_path / "beds")
    assert beds.resolve(sid, _features(cohort, sid)).source.value in ("model", "tissue-fallback")  # unchanged: used
    with caplog.at_level("WARNING"):  # the same outline unedited, as an annotation: said to be the detector's
        BedSources.open(annotations=tmp_path / "beds").resolve(sid, _features(cohort, sid))
    assert "a bed 'weakstil tumorbed apply' wrote (source " in caplog.text
    outline = tmp_path / "beds" / f"{sid}.geojson"
    data = json.loads(outline.read_text())
    data["features"] = data["features"][:1]  # the pathologist deleted part of it
    data["features"][0]["properties"]["classification"] = {"name": "Tumor bed"}
    before = beds.request(sid)
    outline.write_text(json.dumps(data))
    with pytest.raises(WeakSTILError, match="was edited after 'tumorbed apply' wrote it") as err:
        beds.resolve(sid, _features(cohort, sid))
    assert "--annotations" in err.value.fix
    assert beds.request(sid) != before  # score reruns the slide (and meets this error), not 'already scored'
    # a rerun of apply does not overwrite the correction
    edited = outline.read_bytes()
    with pytest.raises(WeakSTILError, match="was edited after 'tumorbed apply' wrote it .*not overwriting it") as err:
        apply_tumorbed(cohort["features"] / f"{sid}.h5", tmp_path / "beds", BedSources.open(detector=detector))
    assert "--annotations" in err.value.fix and "delete" in err.value.fix
    assert outline.read_bytes() == edited


def test_an_annotation_given_beside_precomputed_beds_beats_a_detector_bed(cohort, detector, tmp_path):
    """annotation > detector also when the detector ran earlier, in 'tumorbed apply': a slide annotated
    since gets its annotation, and the request (what score compares on a rerun) changes with it."""
    from weakstil.tumorbed import BedSources
    from weakstil.tumorbed.apply import apply_tumorbed

    sid = cohort["ids"][3]
    apply_tumorbed(cohort["features"] / f"{sid}.h5", tmp_path / "beds", BedSources.open(detector=detector))
    beds_only = BedSources.open(beds=tmp_path / "beds")
    assert beds_only.resolve(sid, _features(cohort, sid)).source.value in ("model", "tissue-fallback")
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    shutil.copy(next(cohort["truth"].glob(f"{sid}*.geojson")), annotations / f"{sid}.geojson")
    both = BedSources.open(beds=tmp_path / "beds", annotations=annotations)
    bed = both.resolve(sid, _features(cohort, sid))
    exact = BedSources.open(annotations=annotations).resolve(sid, _features(cohort, sid))
    assert bed.source.value == "annotation" and np.array_equal(bed.tile_flags, exact.tile_flags)
    assert both.request(sid) != beds_only.request(sid)


def test_a_detector_refuses_features_of_other_tiles(cohort, detector, tmp_path):
    """Like another encoder's, features at another µm/px or tile size are not what the detector learned."""
    meta = json.loads((detector / "model.json").read_text())
    assert meta["tiling"] == {"mpp": 0.5, "tile_px": 224}
    other = tmp_path / "features"
    other.mkdir()
    sid = cohort["ids"][0]
    shutil.copy(cohort["features"] / f"{sid}.h5", other / f"{sid}.h5")
    with h5py.File(other / f"{sid}.h5", "a") as f:  # as if embedded with --mpp 1.0
        f.attrs["mpp"] = 1.0
    proc = run_cli("tumorbed", "apply", other / f"{sid}.h5", "--out", tmp_path / "beds", "--tumorbed", detector)
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert "trained on tiles of 224 px at 0.5 µm/px, but the features are tiles of 224 px at 1 µm/px" in error


def test_a_detector_refuses_features_of_another_stain_estimate(cohort, detector, tmp_path):
    """Its lymphoid veto and infiltrate read the tile statistics, which follow how the slide's stain
    was estimated: a detector trained before that estimate changed (no record: method 3 or older)
    is refused on today's features, and one with today's record is not."""
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    meta = json.loads((detector / "model.json").read_text())
    assert meta["features"]["stain_estimate_version"] == STAIN_ESTIMATE_VERSION
    old = tmp_path / "old_detector"
    shutil.copytree(detector, old)
    meta.pop("features")
    (old / "model.json").write_text(json.dumps(meta))
    feature = cohort["features"] / f"{cohort['ids'][0]}.h5"
    proc = run_cli("tumorbed", "apply", feature, "--out", tmp_path / "beds", "--tumorbed", old)
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert (f"estimated by method 3 or older, but these features' by method {STAIN_ESTIMATE_VERSION}" in error
            and "weakstil tumorbed train" in error and "(all 1 feature files)" in error)
    assert not (tmp_path / "beds").exists()
    proc = run_cli("tumorbed", "apply", feature, "--out", tmp_path / "beds", "--tumorbed", detector)
    assert proc.returncode == 0, proc.stderr


def test_a_detector_retrained_in_the_same_folder_is_a_new_request(detector, tmp_path):
    """score skips a slide whose bed request is unchanged: a detector trained again into the same
    folder keeps its id and path, so its content is part of the request (and its path is not: a
    copied or moved detector is the same one)."""
    from weakstil.tumorbed import BedSources

    folder = tmp_path / "det"
    shutil.copytree(detector, folder)
    before = BedSources.open(detector=folder).request("any")
    assert BedSources.open(detector=folder).request("any") == before  # deterministic
    meta = json.loads((folder / "model.json").read_text())
    meta["shape"]["margin_um"] = meta["shape"]["margin_um"] + 25.0  # as another training would choose
    (folder / "model.json").write_text(json.dumps(meta))
    after = BedSources.open(detector=folder).request("any")
    assert after != before and after.startswith(f"detector {meta['model_id']} model.safetensors:")
    # by id and content, not path: the same detector copied elsewhere is the same request
    shutil.copytree(folder, tmp_path / "moved" / "det")
    assert BedSources.open(detector=tmp_path / "moved" / "det").request("any") == after


def test_beds_are_never_written_into_a_model_or_detector_folder_nor_deleted_with_one(cohort, detector, trained,
                                                                                      tmp_path):
    """'train --overwrite' and 'tumorbed train --overwrite' replace their folders whole: beds
    written into one would be lost, and a model trained on beds inside its own --out would delete
    its own inputs."""
    model = tmp_path / "model"
    shutil.copytree(trained["beds"][0], model)
    feature = cohort["features"] / f"{cohort['ids'][0]}.h5"
    for out in (model, detector / "beds"):
        proc = run_cli("tumorbed", "apply", feature, "--out", out, "--tumorbed", detector)
        assert proc.returncode == 2 and "is inside the model or detector folder" in proc.stderr
        assert not list(Path(out).glob("*.geojson"))
    shutil.copytree(cohort["beds"], model / "beds")  # beds copied by hand into the model folder
    proc = run_cli("train", cohort["root"] / "train.csv", "--features", cohort["features"], "--out", model,
                   *FAST_TRAIN, "--tumorbed-beds", model / "beds", "--overwrite")
    assert proc.returncode == 2 and "holds the --tumorbed-beds input" in proc.stderr
    assert len(list((model / "beds").glob("*.h5"))) == SLIDES


def test_a_detector_given_as_the_model_and_a_model_given_as_the_detector_are_named(detector, trained):
    from weakstil.errors import WeakSTILError
    from weakstil.modeldir import ModelDir
    from weakstil.tumorbed import TumorBedDetector

    with pytest.raises(WeakSTILError, match="is a tumour-bed detector") as err:
        ModelDir(detector).read_meta()
    assert "--tumorbed" in err.value.fix
    with pytest.raises(WeakSTILError, match="is an sTIL model") as err:
        TumorBedDetector.load(trained["beds"][0])
    assert "tumorbed train" in err.value.fix


def test_a_detector_of_another_encoder_is_one_error_line_for_the_whole_batch(cohort, detector, tmp_path):
    other = tmp_path / "features"
    other.mkdir()
    for sid in cohort["ids"][:3]:  # as if embedded with other encoder weights
        shutil.copy(cohort["features"] / f"{sid}.h5", other / f"{sid}.h5")
        with h5py.File(other / f"{sid}.h5", "a") as f:
            f.attrs["weights_sha256"] = "f" * 64
    proc = run_cli("tumorbed", "apply", str(other / "*.h5"), "--out", tmp_path / "beds", "--tumorbed", detector)
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert "tumour-bed detector was trained on encoder" in error and "(all 3 feature files)" in error
    assert not (tmp_path / "beds").exists()


def test_training_on_a_bed_of_a_few_tiles_is_warned_about(cohort, tmp_path, caplog):
    """A bed of a few tiles (here an outline over 2 x 2 tiles) gives a slide label learned from
    little tissue, most often a detection gone wrong: training says which slides, once."""
    from weakstil.tumorbed import BedSources

    sid = cohort["ids"][0]
    data = _features(cohort, sid)
    x, y = (float(v) for v in data.coords[len(data.coords) // 2])
    size = 2 * float(data.attrs["tile_size_level0"])
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    annotations = tmp_path / "ann"
    annotations.mkdir()
    (annotations / f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    other = cohort["ids"][1]
    shutil.copy(cohort["truth"] / f"{other}_tumorbed.geojson", annotations / f"{other}.geojson")
    paths = {s: cohort["features"] / f"{s}.h5" for s in (sid, other)}
    with caplog.at_level("WARNING"):
        flags = BedSources(annotations=annotations).cohort(paths)
    assert 0 < flags[sid].sum() <= 4 and flags[other].sum() >= 16
    text = " ".join(caplog.text.split())
    assert f"1 slide with a tumour bed of fewer than 16 tiles ({sid}: {int(flags[sid].sum())})" in text


def test_a_detected_bed_of_a_few_tiles_is_warned_about_at_apply(cohort, detector, tmp_path):
    """A detector whose seeds are only the tiles of near-certain tumour evidence (no growth, no
    plausibility floor) draws a bed of a few tiles on this small slide: apply keeps it (it is
    plausible by the rule) but says so, with the fix."""
    sid = cohort["ids"][0]
    small = tmp_path / "small"
    shutil.copytree(detector, small)
    meta = json.loads((small / "model.json").read_text())
    meta["shape"].update(seed_threshold=0.999, smooth_um=0.0, bridge_um=0.0, margin_um=0.0,
                         min_seed_mm2=0.0, min_seed_share=0.0, infiltrate_um=0.0)
    meta["plausibility"].update(min_evidence_ratio=0.0)
    (small / "model.json").write_text(json.dumps(meta))
    proc = run_cli("tumorbed", "apply", cohort["features"] / f"{sid}.h5", "--out", tmp_path / "beds",
                   "--tumorbed", small)
    assert proc.returncode == 0, proc.stderr
    n = int(proc.stdout.split(" / ")[0].rsplit(" ", 1)[-1])
    assert 2 <= n < 16 and "tumour bed from model" in proc.stdout
    assert f"{sid}: the detected tumour bed has {n} tiles" in " ".join(proc.stderr.split())
    proc = run_cli("tumorbed", "apply", cohort["features"] / f"{sid}.h5", "--out", tmp_path / "beds2",
                   "--tumorbed", detector)
    assert proc.returncode == 0 and "the detected tumour bed has" not in proc.stderr


def test_the_max_slides_warning_names_the_slides_left_out(cohort, tmp_path, caplog):
    """An annotation that covers no tile is skipped, so the detector trains on the next annotated
    slide: the warning names the slides it really left out (outside hunt 8a #12)."""
    from weakstil.tumorbed import train_tumorbed_from_cache

    annotations = tmp_path / "annotations"
    shutil.copytree(cohort["truth"], annotations)
    first = next(annotations.glob(f"{cohort['ids'][0]}*.geojson"))
    glass = {"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}},
             "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]]]}}
    first.write_text(json.dumps({"type": "FeatureCollection", "features": [glass]}))
    with caplog.at_level("WARNING"):
        detector = train_tumorbed_from_cache(cohort["features"], annotations, max_slides=2, augment=False)
    assert detector.meta["slide_ids"] == cohort["ids"][1:3]
    [said] = [r.getMessage() for r in caplog.records if "--max-slides" in r.getMessage()]
    assert said.endswith(f"not on {cohort['ids'][3]}")


def test_tumorbed_train_finds_a_cohort_slide_by_its_csv_id_or_file_name(cohort, tmp_path, monkeypatch):
    """--cohort with its own ids ('patientA' for synth_0000.tiff): the features are named after the
    slide file and the annotation after either, as train --annotations finds them (hunt 8a #7).
    model.json records the annotation folder given relative as an absolute path, and no seed of its own:
    the training has no random step (hunt 10 #7) but the draws of its jittered copies (hunt 39i)."""
    from weakstil.tumorbed import train_tumorbed_from_cache

    ids = cohort["ids"]
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    shutil.copy(next(cohort["truth"].glob(f"{ids[0]}*.geojson")), annotations / "patientA.geojson")
    shutil.copy(next(cohort["truth"].glob(f"{ids[1]}*.geojson")), annotations / f"{ids[1]}.geojson")
    slide_paths = {"patientA": f"slides/{ids[0]}.tiff", "patientB": f"slides/{ids[1]}.tiff"}
    monkeypatch.chdir(tmp_path)
    detector = train_tumorbed_from_cache(cohort["features"], Path("annotations"), slide_ids=list(slide_paths),
                                         slide_paths=slide_paths)
    assert detector.meta["slide_ids"] == ["patientA", "patientB"]
    assert detector.meta["annotations"] == str(annotations.resolve())
    # the fit has no random step; the seed draws only the jittered copies of the final fit (hunt 39i)
    assert "seed" not in detector.meta and detector.meta["augmentation"]["seed"] == 0
    assert "same slides, annotations and seed give the same detector" in detector.meta["deterministic"]


@pytest.mark.parametrize("attr, value, said", [("mpp", 1.0, "mpp 1.0 (majority: 0.5)"),
                                               ("stain_norm", "none", "stain_norm none (majority: macenko)")])
def test_tumorbed_train_refuses_features_of_two_tile_grids_or_stain_norms(cohort, tmp_path, attr, value, said):
    """As 'weakstil train' does: a detector records one tiling and stain normalisation, and refused
    its own training slides of the other (hunt 10 #1, #2). Refused before any training."""
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed import train_tumorbed_from_cache

    mixed = tmp_path / "mixed"
    shutil.copytree(cohort["features"], mixed)
    with h5py.File(mixed / f"{cohort['ids'][0]}.h5", "a") as f:  # as if embedded with --mpp 1.0 / --stain-norm
        f.attrs[attr] = value
        key = json.loads(f.attrs["tiling_key"])
        f.attrs["tiling_key"] = json.dumps({**key, **({attr: value} if attr in key else {})})
    with pytest.raises(WeakSTILError, match="different encoders, stain normalisations or tile settings") as err:
        train_tumorbed_from_cache(mixed, cohort["truth"])
    assert said in err.value.message and f"{cohort['ids'][0]}.h5" in err.value.message
    assert err.value.path == str(mixed)


def test_a_detector_refuses_features_of_another_stain_norm(cohort, detector, tmp_path):
    """A detector trained on raw features is refused on macenko-normalised ones (the card's), at once
    for the batch (hunt 10 #2); one from before model.json recorded stain_norm is still used."""
    meta = json.loads((detector / "model.json").read_text())
    assert meta["features"]["stain_norm"] == "macenko"
    feature = cohort["features"] / f"{cohort['ids'][0]}.h5"
    for name, stain_norm, rc in (("raw", "none", 1), ("older", None, 0)):
        edited = tmp_path / name
        shutil.copytree(detector, edited)
        meta["features"]["stain_norm"] = stain_norm
        if stain_norm is None:
            meta["features"].pop("stain_norm")
        (edited / "model.json").write_text(json.dumps(meta))
        proc = run_cli("tumorbed", "apply", feature, "--out", tmp_path / f"beds_{name}", "--tumorbed", edited)
        assert proc.returncode == rc, proc.stderr
    [error] = _errors(proc := run_cli("tumorbed", "apply", feature, "--out", tmp_path / "beds_m", "--tumorbed",
                                       tmp_path / "raw"))
    assert "trained on features embedded with --stain-norm none, but these features with --stain-norm macenko" \
        in error and "(all 1 feature files)" in error
    assert not (tmp_path / "beds_m").exists()


def test_a_detector_of_another_encoder_and_stain_norm_names_both_at_once(cohort, detector, tmp_path):
    """Features of another encoder AND another stain normalisation than the detector's: only the first
    mismatch was named ("... --stain-norm none, but these features with --stain-norm macenko. Fix: embed
    with --stain-norm none"), so the user re-embedded, reran, and only then learnt of the encoder (outside
    fault hunt 34f); one line now names both and the fix for both."""
    meta = json.loads((detector / "model.json").read_text())
    meta["features"]["stain_norm"] = "none"
    meta.update(encoder="other-cnn", weights_sha256="ab" * 32)
    for key in ("weights_file_sha256", "weights_tensors_sha256"):
        meta.pop(key, None)
    edited = shutil.copytree(detector, tmp_path / "other")
    (edited / "model.json").write_text(json.dumps(meta))
    feature = cohort["features"] / f"{cohort['ids'][0]}.h5"
    [error] = _errors(proc := run_cli("tumorbed", "apply", feature, "--out", tmp_path / "beds", "--tumorbed", edited))
    assert proc.returncode == 1
    assert "--stain-norm none, but these features with --stain-norm macenko" in error, error
    assert "encoder 'other-cnn' (weights abababababab), but the features come from 'small-cnn'" in error, error
    assert "Fix: embed the slides again with the detector's encoder 'other-cnn' and --stain-norm none" in error
    assert not (tmp_path / "beds").exists()


def test_apply_finds_annotations_by_a_cohort_slide_id(cohort, detector, tmp_path):
    """Annotations named by a cohort CSV's slide_id (P0 for synth_0000.tiff): 'tumorbed apply --cohort'
    finds them as 'tumorbed train --cohort' does; without it a warning names the unused files, not
    a silent detector bed (hunt 10 #3)."""
    ids = cohort["ids"][:2]
    annotations = tmp_path / "annotations"
    annotations.mkdir()
    for i, sid in enumerate(ids):
        shutil.copy(next(cohort["truth"].glob(f"{sid}*.geojson")), annotations / f"P{i}.geojson")
    other = cohort["ids"][3]  # another slide's outline, its features beside the given ones: not named
    shutil.copy(next(cohort["truth"].glob(f"{other}*.geojson")), annotations / f"{other}.geojson")
    csv = tmp_path / "cohort.csv"
    csv.write_text("slide_id,path,stil\n" + "".join(f"P{i},slides/{sid}.tiff,10\n" for i, sid in enumerate(ids)))
    features = [cohort["features"] / f"{sid}.h5" for sid in cohort["ids"][:3]]
    common = ("--annotations", annotations, "--tumorbed", detector)
    proc = run_cli("tumorbed", "apply", *features, "--out", tmp_path / "plain", *common)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "2 annotation file(s) match no slide" in said and "P0.geojson, P1.geojson)" in said
    assert "--cohort" in said and all("from model" in line for line in proc.stdout.splitlines())
    proc = run_cli("tumorbed", "apply", *features, "--out", tmp_path / "beds", *common, "--cohort", csv)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"{ids[0]} (P0)", f"{ids[1]} (P1)"]
    assert all("from annotation" in line for line in lines)
    assert "match no slide" not in proc.stderr and f"left out: {cohort['ids'][2]}" in " ".join(proc.stderr.split())
    with h5py.File(tmp_path / "beds" / f"{ids[0]}.h5") as f:
        assert f.attrs["slide_id"] == "P0" and f.attrs["annotation_path"].endswith("P0.geojson")
    assert not (tmp_path / "beds" / f"{cohort['ids'][2]}.h5").exists()


def test_evaluate_says_which_slides_were_scored_after_a_bed_fallback(cohort, detector, trained, tmp_path):
    """predictions.csv carries each slide's bed source, and a slide scored over the whole tissue
    after a bed fallback has score's status, not 'ok'; metrics.json names no detector when every bed
    was precomputed (hunt 10 #4)."""
    never = tmp_path / "never"
    shutil.copytree(detector, never)
    meta = json.loads((never / "model.json").read_text())
    meta["shape"]["seed_threshold"] = 2.0  # no evidence reaches it: every bed falls back to the tissue
    (never / "model.json").write_text(json.dumps(meta))
    fallback = cohort["ids"][:2]
    beds = tmp_path / "beds"
    shutil.copytree(cohort["beds"], beds)  # annotation beds; the first two slides' replaced by fallbacks
    proc = run_cli("tumorbed", "apply", *(cohort["features"] / f"{sid}.h5" for sid in fallback), "--out", beds,
                   "--tumorbed", never)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "ev"
    proc = run_cli("evaluate", cohort["root"] / "train.csv", "--model", trained["beds"][0], "--features",
                   cohort["features"], "--tumorbed-beds", beds, "--tumorbed", detector, "--out", out)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out / "predictions.csv").set_index("slide_id")
    assert list(table.columns[-3:]) == ["tumorbed_source", "status", "training_slide"]
    assert (table.loc[fallback, "tumorbed_source"] == "tissue-fallback").all()
    assert (table.loc[fallback, "status"] == "bed fallback: tissue").all() and table["stil_pred"].notna().all()
    rest = table.drop(index=fallback)
    assert (rest["tumorbed_source"] == "annotation").all() and (rest["status"] == "ok").all()
    from weakstil.tumorbed import TumorBedDetector

    record = json.loads((out / "metrics.json").read_text())["tumorbeds"]
    assert record["detector"] is None and record["detector_path"] is None, record  # given, never run ...
    assert record["detector_not_used"] == TumorBedDetector.load(detector).model_id  # ... and named as such
    assert record["slides"] == {"annotation": SLIDES - 2, "tissue-fallback": 2, "precomputed": SLIDES}


def test_train_on_a_detectors_beds_bundles_that_detector_for_new_slides(cohort, detector, trained, tmp_path):
    """`train --tumorbed-beds` alone bundled no detector: `score` then scored new slides over the
    whole tissue (flagged bed_unlike_training). The detector that drew the beds is bundled now; beds
    drawn by two detectors, or by one no longer there, bundle none and say so."""
    from weakstil.modeldir import WEIGHTS_FILE

    root = cohort["root"]
    feats = [str(cohort["features"] / f"{sid}.h5") for sid in cohort["ids"]]
    beds = tmp_path / "beds"
    assert run_cli("tumorbed", "apply", *feats, "--out", beds, "--tumorbed", detector).returncode == 0
    proc = run_cli("train", root / "train.csv", "--features", cohort["features"], "--out", tmp_path / "model",
                   *FAST_TRAIN, "--tumorbed-beds", beds)
    assert proc.returncode == 0, proc.stderr
    bundled = tmp_path / "model" / "tumorbed" / WEIGHTS_FILE
    assert bundled.read_bytes() == (detector / WEIGHTS_FILE).read_bytes()
    assert "bundled with the model for 'weakstil score': tumorbed" in " ".join(proc.stderr.split())
    slide = pd.read_csv(root / "train.csv")["path"].tolist()[0]
    out = tmp_path / "scores"
    proc = run_cli("score", slide, "--model", tmp_path / "model", "--out", out, "--features", cohort["features"],
                   "--weights", "random", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(out / "results.csv", keep_default_na=False).iloc[0]
    assert row["tumorbed_source"] == "model" and "bed_unlike_training" not in row["qc"]
    assert 0 < row["n_tumorbed_tiles"] < row["n_tiles"]

    other = tmp_path / "other_detector"  # the same weights in another folder: another detector for the record
    shutil.copytree(detector, other)
    assert run_cli("tumorbed", "apply", feats[0], "--out", beds, "--tumorbed", other, "--overwrite").returncode == 0
    proc = run_cli("train", root / "train.csv", "--features", cohort["features"], "--out", tmp_path / "model2",
                   *FAST_TRAIN, "--tumorbed-beds", beds)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "model2" / "tumorbed").exists()
    said = " ".join(proc.stderr.split())
    assert "drawn by 2 tumour-bed detectors" in said and "--tumorbed DIR" in said
    # beds drawn from annotations: no detector behind them, nothing bundled, nothing said about it
    assert not (trained["beds"][0] / "tumorbed").exists()
    assert "tumour-bed detector" not in " ".join(trained["beds"][1].stderr.split())


def test_an_outline_named_after_a_file_name_two_slides_share_is_neither_slides(cohort, trained, tmp_path):
    """Hunt 37c: a cohort CSV listing two patients' ``a/S1.tiff`` and ``b/S1.tiff`` as two slide ids, and QuPath's
    ``S1.tiff.geojson`` (drawn over a/S1) in --annotations: train and score drew that outline over both slides
    (exit 0; b/S1 scored inside another slide's bed). It cannot say which it outlines: refused for both, naming it
    and the fix (outlines by slide id); an outline by slide id is still used, and the other slides go on."""
    first, second, third = cohort["ids"][:3]
    slides = tmp_path / "slides"
    for sub, sid in (("a", first), ("b", second)):
        (slides / sub).mkdir(parents=True)
        shutil.copyfile(cohort["root"] / "cohort" / "slides" / f"{sid}.tiff", slides / sub / "S1.tiff")
    ann = tmp_path / "ann"
    ann.mkdir()
    shutil.copyfile(cohort["truth"] / f"{first}_tumorbed.geojson", ann / "S1.tiff.geojson")
    shutil.copyfile(cohort["truth"] / f"{third}_tumorbed.geojson", ann / f"{third}.geojson")
    table = pd.read_csv(cohort["root"] / "train.csv").iloc[:3]
    table["path"] = [str(slides / "a" / "S1.tiff"), str(slides / "b" / "S1.tiff"), table["path"][2]]
    table.to_csv(tmp_path / "two.csv", index=False)
    fix = f"Fix: name each slide's outline by its slide id ({second}.geojson, {first}.geojson)"

    proc = run_cli("train", tmp_path / "two.csv", "--features", cohort["features"], "--out", tmp_path / "model",
                   *FAST_TRAIN, "--annotations", ann)
    assert proc.returncode == 1, proc.stderr
    [error] = _errors(proc)
    assert f"{ann / 'S1.tiff.geojson'}: is named after the slide file name 'S1', which slide" in error
    assert not (tmp_path / "model").exists()

    out = tmp_path / "scores"
    proc = run_cli("score", "--slides", tmp_path / "two.csv", "--model", trained["annotations"][0], "--out", out,
                   "--features", cohort["features"], "--weights", "random", "--device", "cpu", "--annotations", ann)
    assert proc.returncode == 1
    assert _errors(proc)[1] == (f"error: {ann / 'S1.tiff.geojson'}: is named after the slide file name 'S1', which "
                                f"slide {first} of this run has too: it cannot say whether it outlines {second} or "
                                f"{first}. {fix}.")
    rows = pd.read_csv(out / "results.csv").set_index("slide_id")
    assert list(rows["status"]) == ["error", "error", "ok"] and rows.loc[third, "tumorbed_source"] == "annotation"


#: tumorbed train without its vetoes, gate and infiltrate search (each a search again) and without the jittered copies
#: of its final fit (the slides read and embedded again: test_tumorbed_augment_h39i): the checks of the annotations
#: do not depend on them, and the training takes half the time
BARE = dict(lymphoid_veto=False, ink_veto=False, infiltrate=False, tumour_cell_gate=False, augment=False)


def _outline_file(folder: Path, sid: str, geometry, name: str = "Tumor") -> None:
    """``geometry`` (shapely, level-0 px) as QuPath's GeoJSON annotation of class ``name`` for slide ``sid``."""
    from shapely.geometry import mapping

    folder.mkdir(exist_ok=True)
    feature = {"type": "Feature", "geometry": mapping(geometry),
               "properties": {"objectType": "annotation", "classification": {"name": name}}}
    (folder / f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))


def _truth_outline(cohort, sid: str):
    from shapely.geometry import shape
    from shapely.ops import unary_union

    found = json.loads((cohort["truth"] / f"{sid}_tumorbed.geojson").read_text())
    return unary_union([shape(f["geometry"]) for f in found["features"]])


def _nests_outline(cohort, sid: str):
    """The slide's tumour nests alone (the truth's 'tumor' mask, 4 µm/px) as polygons, in level-0 px."""
    from shapely.geometry import box
    from shapely.ops import unary_union

    with h5py.File(cohort["truth"] / f"{sid}.h5") as f:
        nests, f_px = f["tumor"][:] > 0, float(f.attrs["mask_factor"])
    runs = []
    for y, row in enumerate(nests):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
        runs += [box(a * f_px, y * f_px, b * f_px, (y + 1) * f_px) for a, b in zip(edges[::2], edges[1::2])]
    return unary_union(runs)


def test_tumorbed_train_says_when_annotations_are_a_copy_or_only_the_nests(cohort, tmp_path, caplog):
    """Hunt 38l: one slide's outline copied to another slide's file, and a bed drawn as the tumour nests
    alone (a QuPath 'Tumor' class around the nests, the stroma between them left out), trained a
    detector without a word (1.5 mm slides, 6 annotated: held-out Dice against the exact beds 0.74
    after copy-paste, 0.53 from nests, 0.94 from exact beds). Now both are named, with the fix."""
    from weakstil.tumorbed import train_tumorbed_from_cache

    a, b, c, d = cohort["ids"]
    ann = tmp_path / "ann"
    _outline_file(ann, a, _truth_outline(cohort, a))
    _outline_file(ann, b, _truth_outline(cohort, a))  # a's outline pasted into b's file
    _outline_file(ann, c, _truth_outline(cohort, c))
    _outline_file(ann, d, _nests_outline(cohort, d))
    with caplog.at_level("WARNING"):
        train_tumorbed_from_cache(cohort["features"], ann, **BARE)
    text = " ".join(caplog.text.split())
    assert f"2 slides have the same annotation outline, to the pixel: {a}, {b} (one file copied" in text
    assert f"1 of 4 annotations leave out much tissue between their parts ({d}:" in text
    assert "outlines of the tumour nests, not the bed?" in text


def test_tumorbed_train_names_a_slide_with_a_focus_left_unannotated(cohort, tmp_path, caplog):
    """Hunt 38l: on one slide only half the bed outlined (one focus annotated, the other left out): the
    unannotated tumour trained as 'outside' without a word (held-out Dice here 0.38, the others' 0.68-0.96;
    on 1.5 mm slides 0.62 against 0.86-0.96).
    Now the slide is named: the detector trained on the others finds tumour outside its annotation.
    The slides drawn exactly are not named."""
    from shapely.geometry import box

    from weakstil.tumorbed import train_tumorbed_from_cache

    ann = tmp_path / "ann"
    for sid in cohort["ids"]:
        _outline_file(ann, sid, _truth_outline(cohort, sid))
    half = cohort["ids"][1]
    bed = _truth_outline(cohort, half)
    x0, y0, x1, y1 = bed.bounds
    _outline_file(ann, half, bed.intersection(box(x0, y0, (x0 + x1) / 2, y1)))
    with caplog.at_level("WARNING"):
        detector = train_tumorbed_from_cache(cohort["features"], ann, **BARE)
    text = " ".join(caplog.text.split())
    assert f"{half}: the detector trained on the other slides finds tumour in" in text
    assert "a tumour focus left unannotated (it is learnt as 'outside')" in text
    assert list(detector.meta["cv_disagreeing_slides"]) == [half]


def test_tumorbed_train_refuses_beds_of_all_tissue_saying_so(cohort, tmp_path):
    """Hunt 38l: every annotation the whole tissue was refused with 'the annotated slides have no tile
    well inside (or none well outside) a tumour bed', which did not say that the annotations were the
    tissue. Now: the share covered, and that a detector would learn 'all tissue'."""
    from shapely.geometry import box

    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed import train_tumorbed_from_cache

    ann = tmp_path / "ann"
    for sid in cohort["ids"]:
        attrs = _features(cohort, sid).attrs
        _outline_file(ann, sid, box(0, 0, int(attrs["slide_width"]), int(attrs["slide_height"])))
    with pytest.raises(WeakSTILError) as err:
        train_tumorbed_from_cache(cohort["features"], ann)
    assert "the annotations cover 100% of the tissue on every one of the 4 slides: a detector trained on them " \
           "would learn 'all tissue'" in err.value.message


def test_an_outline_drawn_on_a_40x_scan_of_a_20x_slide_is_refused_with_the_factor(cohort, tmp_path):
    """Hunt 38l: outlines drawn on level 0 of a 40x scan (0.25 µm/px) given for our 20x one (0.5 µm/px) lie
    mostly off the slide: refused with 'export the annotation in level-0 pixel coordinates', which a
    user who did export level 0 (of the other scan) could not act on. Now the fix names the factor."""
    from shapely.affinity import scale

    from weakstil.annotations import AnnotationError
    from weakstil.tumorbed import train_tumorbed_from_cache

    ann = tmp_path / "ann"
    for sid in cohort["ids"]:
        _outline_file(ann, sid, scale(_truth_outline(cohort, sid), 2, 2, origin=(0, 0)))
    with pytest.raises(AnnotationError) as err:
        train_tumorbed_from_cache(cohort["features"], ann)
    assert "its coordinates / 2 lie on the slide: drawn on a scan at 2x this slide's resolution" in str(err.value)


def test_a_new_commit_keeps_the_beds_made_earlier(cohort, tmp_path, monkeypatch):
    """Outputs record the checkout's commit (hunt 38j), but a bed's request names the release: with the
    commit in it, every commit (or an edited tracked file, '.dirty') made every bed again, and
    'score --tumorbed-beds' then scored every slide again (review, session 64)."""
    from weakstil.tumorbed import BedSources
    from weakstil.tumorbed import apply as bed_apply

    sid = cohort["ids"][0]
    sources = BedSources.open(annotations=cohort["truth"])
    assert not bed_apply.apply_tumorbed(cohort["features"] / f"{sid}.h5", tmp_path / "beds", sources).kept
    monkeypatch.setattr(bed_apply, "code_version", lambda: "0.1.0+g0123456789ab.dirty")  # another commit
    again = bed_apply.apply_tumorbed(cohort["features"] / f"{sid}.h5", tmp_path / "beds", sources)
    assert again.kept, "a new commit made the bed again"


def test_an_outline_moved_off_the_slide_is_not_offered_a_scan_factor(cohort, tmp_path):
    """Hunt 41d: an outline only moved off a small slide (another slide's, or offset) also fits within it
    scaled by 1/4, on glass: the fix said "its coordinates / 4 lie on the slide: drawn on a scan at 4x this
    slide's resolution ... scale its coordinates by 1/4", which puts a wrong outline on glass. The factor is
    now offered only when the scaled copy lies on tissue (the 40x outline above still gets it)."""
    from shapely.geometry import box

    from weakstil.annotations import AnnotationError
    from weakstil.tumorbed import train_tumorbed_from_cache

    ann = tmp_path / "ann"
    for sid in cohort["ids"]:
        attrs = _features(cohort, sid).attrs
        w, h = int(attrs["slide_width"]), int(attrs["slide_height"])
        _outline_file(ann, sid, box(3.9 * w, 3.9 * h, 3.9 * w + 120, 3.9 * h + 120))  # / 4: the far corner's glass
    with pytest.raises(AnnotationError) as err:
        train_tumorbed_from_cache(cohort["features"], ann)
    assert "polygons lie outside the slide" in str(err.value)
    assert "/ 4" not in str(err.value) and "scan at" not in str(err.value)
