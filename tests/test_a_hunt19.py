"""Fault hunt 19 (a): model folders copied, edited and mixed by a lab, as ``weakstil score``,
``evaluate`` and ``report`` read them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import run_cli, write_training_csv
from shared_cohorts import one_epoch_model_copy


@pytest.fixture(scope="module")
def cv_model(tmp_path_factory):
    """A model trained for one epoch with 2-fold cross-validation (so it has qc/calibration.json) on
    four small synthetic slides, their feature caches and slides."""
    root = tmp_path_factory.mktemp("h19a")
    # the four slides and their features of the run's shared one-epoch model (a copy: not embedded again)
    _, cohort, labels, features = one_epoch_model_copy(tmp_path_factory, root)
    csv = write_training_csv(root / "train.csv", labels, cohort)  # this copy's slides
    run_cli("train", csv, "-f", features, "-o", root / "model_cv", "--folds", "2", "--epochs", "1", check=True)
    return {"model": root / "model_cv", "features": features, "slides": [cohort / p for p in labels["path"]],
            "csv": csv, "labels": labels, "truth": cohort / "truth"}


@pytest.fixture(scope="module")
def detector(cv_model, tmp_path_factory):
    """A tumour-bed detector trained on two of the model's slides (their feature caches and truth)."""
    out = tmp_path_factory.mktemp("h19a_detector") / "detector"
    trained = run_cli("tumorbed", "train", "--features", cv_model["features"], "--annotations", cv_model["truth"],
                      "--out", out, "--max-slides", "2", "--no-augment")
    assert trained.returncode == 0, trained.stderr
    return out


@pytest.fixture(scope="module")
def features256(cv_model, tmp_path_factory):
    """Two of the model's slides embedded with 256 px tiles (the model's are 224 px)."""
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.tiles import TilingParams

    out = tmp_path_factory.mktemp("h19a_f256") / "features256"
    encoder = create_encoder("small-cnn", weights="random")
    for slide in cv_model["slides"][:2]:
        embed_slide(slide, encoder, out_dir=out, params=TilingParams(tile_px=256))
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_meta(model: Path, edit) -> None:
    meta = json.loads((model / "model.json").read_text())
    edit(meta)
    (model / "model.json").write_text(json.dumps(meta, indent=2))


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, stderr
    return " ".join(stderr.split())


@pytest.mark.parametrize("section", ["tiling", "encoder"])
def test_model_json_without_its_tiling_or_encoder_is_refused_naming_model_json(cv_model, tmp_path, section):
    """A model.json whose ``tiling`` was deleted scored silently with the default tiles (a model of
    256 px tiles would have scored 224 px ones); one without ``encoder`` blamed every slide's
    features ("features do not fit the model: ... trained on None"), an error row per slide."""
    model = _copy(cv_model["model"], tmp_path / "model")
    _edit_meta(model, lambda m: m.pop(section))
    feats = _copy(cv_model["features"], tmp_path / "features")
    out = tmp_path / "scores"
    result = run_cli("score", cv_model["slides"][0], "--model", model, "--features", feats, "--out", out)
    said = _one_line(result.stderr)
    assert result.returncode == 1 and f"model.json has no '{section}' section" in said, said
    assert "copy model.json again" in said and "features do not fit" not in said
    assert not out.exists()  # nothing written
    evaluated = run_cli("evaluate", cv_model["csv"], "--model", model, "--features", feats, "--out", tmp_path / "ev")
    assert evaluated.returncode == 1 and f"model.json has no '{section}' section" in _one_line(evaluated.stderr)


def test_model_json_tiling_without_tile_size_or_with_a_broken_key_is_refused(cv_model, tmp_path):
    model = _copy(cv_model["model"], tmp_path / "model")
    _edit_meta(model, lambda m: m["tiling"].pop("tile_px"))
    result = run_cli("score", cv_model["slides"][0], "--model", model, "--out", tmp_path / "s1")
    assert result.returncode == 1 and "model.json 'tiling' has no tile_px" in _one_line(result.stderr)
    model2 = _copy(cv_model["model"], tmp_path / "model2")
    _edit_meta(model2, lambda m: m["tiling"]["key"].pop("overlap_px"))  # a KeyError traceback before
    result = run_cli("score", cv_model["slides"][0], "--model", model2, "--out", tmp_path / "s2")
    said = _one_line(result.stderr)
    assert result.returncode == 1 and "model.json 'tiling' key is not a tiling" in said and "overlap_px" in said


def test_report_of_a_model_missing_its_calibration_says_so_once(cv_model, tmp_path, monkeypatch):
    """``weakstil report`` on a model folder copied without qc/calibration.json wrote a report that
    looked whole, while ``weakstil score`` refuses that model (and without it no slide gets an interval)."""
    monkeypatch.setenv("COLUMNS", "400")  # unwrapped log: at 80 columns the temp path decided where a phrase broke
    model = _copy(cv_model["model"], tmp_path / "model")
    (model / "qc" / "calibration.json").unlink()
    result = run_cli("report", "--model", model, "--out", tmp_path / "report")
    assert result.returncode == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert said.count("calibration.json is missing: 'weakstil score' refuses this model") == 1, said
    assert "WARNING" in said and "has no interval" in said
    # a lost fold model likewise (score refuses the model), without the word on intervals
    folded = _copy(cv_model["model"], tmp_path / "folded")
    fold = folded / json.loads((folded / "model.json").read_text())["folds"][0]["file"]
    fold.unlink()
    result = run_cli("report", "--model", folded, "--out", tmp_path / "report2")
    said = " ".join(result.stderr.split())
    assert result.returncode == 0 and said.count(f"{fold.name} is missing: 'weakstil score' refuses") == 1, said
    assert "no interval" not in said
    # the whole model folder: nothing said
    whole = run_cli("report", "--model", cv_model["model"], "--out", tmp_path / "whole")
    assert whole.returncode == 0 and "calibration.json" not in whole.stderr


def test_score_features_folder_of_another_tiling_is_one_refusal(cv_model, features256, tmp_path):
    """``score --features DIR`` where DIR was embedded with 256 px tiles (the model's are 224) gave an
    ``error`` row per slide ("holds features of another tiling"), exit 1, after writing OUT; a
    folder whose every cache is of another tiling is now one usage line (exit 2), nothing written."""
    other = _copy(features256, tmp_path / "features256")
    out = tmp_path / "scores"
    result = run_cli("score", *cv_model["slides"][:2], "--model", cv_model["model"], "--features", other, "--out", out)
    said = _one_line(result.stderr)
    assert result.returncode == 2 and "another tiling than the model's in all 2 of its" in said, said
    assert "tile size (px) 256 not 224" in said and "--tile-size 224" in said
    assert not out.exists()
    # one cache that fits: the folder is the slides' business again (the fitting slide scores)
    fits = cv_model["slides"][2]
    shutil.copy2(cv_model["features"] / f"{fits.stem}.h5", other / f"{fits.stem}.h5")
    mixed = run_cli("score", cv_model["slides"][0], fits, "--model", cv_model["model"], "--features", other,
                    "--out", out)
    assert mixed.returncode == 1 and "holds features of another tiling" in mixed.stderr
    rows = (out / "results.csv").read_text()
    assert f"{fits.stem}," in rows and rows.count(",ok,") == 1


def test_a_file_of_a_model_folder_given_as_the_folder_names_the_folder(cv_model, tmp_path):
    """``--model MODEL/model.json`` (a file dragged in) said "pass the directory written by 'weakstil
    train'" and ``report`` looked for ``MODEL/model.json/model.json``; ``--tumorbed MODEL/model.json``
    said "model.json and model.safetensors missing". Each now names the folder to pass (exit 2)."""
    model = cv_model["model"]
    slide = cv_model["slides"][0]
    for args, fix in ((("score", slide, "--model", model / "model.json", "--out", tmp_path / "s"), f"pass --model {model},"),
                      (("report", "--model", model / "model.safetensors", "--out", tmp_path / "r"),
                       f"pass --model {model},"),
                      (("score", slide, "--model", model, "--tumorbed", model / "model.json", "--out", tmp_path / "t"),
                       "pass the --out folder of 'weakstil tumorbed train'")):
        result = run_cli(*args)
        said = _one_line(result.stderr)
        assert result.returncode == 2 and "is a file, not" in said and fix in said, said
    assert not any((tmp_path / d).exists() for d in "srt")
    # a bundled detector's file given as --model: the sTIL model it is bundled in
    bundled = _copy(model, tmp_path / "with_bed")
    (bundled / "tumorbed").mkdir()
    (bundled / "tumorbed" / "model.json").write_text(json.dumps({"kind": "weakstil-tumorbed"}))
    result = run_cli("score", slide, "--model", bundled / "tumorbed" / "model.json", "--out", tmp_path / "b")
    assert result.returncode == 2 and f"pass --model {bundled}, the sTIL model this detector is bundled in" in \
        _one_line(result.stderr)
    result = run_cli("score", slide, "--model", bundled, "--tumorbed", bundled / "model.json", "--out", tmp_path / "b")
    assert result.returncode == 2 and f"pass --tumorbed {bundled / 'tumorbed'}, the detector bundled" in \
        _one_line(result.stderr)


def test_a_model_json_from_before_the_stain_estimate_record_is_refused_once(cv_model, tmp_path):
    """An older model.json (no ``features`` record: stain estimate 3 or older) fits no slide that
    score embeds now: it was an ``error`` row per slide, each after embedding it; now one line
    naming model.json before any slide, nothing written."""
    model = _copy(cv_model["model"], tmp_path / "model")
    _edit_meta(model, lambda m: m.pop("features"))
    out = tmp_path / "scores"
    result = run_cli("score", *cv_model["slides"][:2], "--model", model, "--out", out)
    said = _one_line(result.stderr)
    assert result.returncode == 1 and f"{model / 'model.json'}: the model fits no slide" in said, said
    assert "method 3 or older" in said and not out.exists()


def test_a_bundled_encoder_copied_without_its_card_says_copy_the_model_folder(tmp_path):
    """MODEL/encoder without card.yaml (a partial copy) said "directory has no card.yaml. Fix: pass a
    'weakstil pretrain' output directory or a built-in encoder name", though no option was given."""
    from types import SimpleNamespace

    from weakstil.errors import WeakSTILError
    from weakstil.scoring_encoder import check_encoder_files

    model = tmp_path / "model"
    (model / "encoder").mkdir(parents=True)
    (model / "model.json").write_text("{}")
    (model / "encoder" / "model.safetensors").write_bytes(b"x")
    opts = SimpleNamespace(model=model, encoder=None, weights=None)
    with pytest.raises(WeakSTILError) as exc:
        check_encoder_files(opts, {"encoder": {"name": "encoder", "weights_sha256": "ab" * 32}})
    assert str(exc.value.path) == str(model / "encoder" / "card.yaml") and "copy the whole model folder" in exc.value.fix


def _lfs_pointer(path: Path) -> None:
    """Replace ``path`` with the Git LFS pointer a clone without git-lfs holds in its place."""
    import hashlib

    data = path.read_bytes()
    path.write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{hashlib.sha256(data).hexdigest()}\n"
                    f"size {len(data)}\n")


def test_model_files_that_are_git_lfs_pointers_are_named_as_such(cv_model, tmp_path):
    """A model folder kept in Git and cloned without git-lfs holds 130-byte pointers: score said "the
    weights were changed or mixed up with another model; train again" (the fold models, qc files and
    a bundled encoder likewise: "train again", "run 'weakstil pretrain' again"); the fix is 'git lfs pull'."""
    import yaml

    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import check_encoder_folder
    from weakstil.errors import WeakSTILError

    model = _copy(cv_model["model"], tmp_path / "model")
    meta = json.loads((model / "model.json").read_text())
    for rel in ("model.safetensors", meta["folds"][0]["file"], "qc/embeddings.safetensors"):
        _lfs_pointer(model / rel)
        result = run_cli("score", cv_model["slides"][0], "--model", model, "--out", tmp_path / "s")
        said = _one_line(result.stderr)
        assert result.returncode == 1 and f"{model / rel}: is a Git LFS pointer" in said and "git lfs pull" in said, \
            said
        shutil.copy2(cv_model["model"] / rel, model / rel)
    # a bundled encoder's weights
    enc = tmp_path / "encoder"
    enc.mkdir()
    (enc / "model.safetensors").write_bytes(b"weights")
    card = {**load_card("small-cnn").to_dict(), "weights_sha256": "ab" * 32}
    (enc / "card.yaml").write_text(yaml.safe_dump(card))
    _lfs_pointer(enc / "model.safetensors")
    with pytest.raises(WeakSTILError, match="is a Git LFS pointer") as exc:
        check_encoder_folder(enc)
    assert "git lfs pull" in exc.value.fix


def test_report_of_a_demo_folder_names_the_model_inside_it(cv_model, tmp_path):
    """``weakstil demo --out D`` puts its model in D/model: score and evaluate said "pass D/model",
    report said "model.json not found. Fix: pass a directory written by 'weakstil train'"."""
    demo = tmp_path / "demo"
    _copy(cv_model["model"], demo / "model")
    result = run_cli("report", "--model", demo, "--out", tmp_path / "r")
    assert result.returncode == 1 and f"pass {demo / 'model'}, the model folder inside it" in _one_line(result.stderr)


def test_a_bundled_encoder_or_detector_of_another_model_says_copy_the_model_folder(cv_model, detector, tmp_path):
    """MODEL/encoder or MODEL/tumorbed replaced by another model's (a lab mixing model folders) said
    "pass the encoder the model was trained with (--encoder DIR / --weights FILE)" and "train the
    detector on features of the same encoder, or re-embed" (re-embedding cannot help: the features
    are the model's); both now name the bundled folder and say copy the whole model folder again."""
    from types import SimpleNamespace

    import yaml

    from weakstil.encoders.cards import load_card
    from weakstil.errors import WeakSTILError
    from weakstil.runtime import sha256_file
    from weakstil.scoring_encoder import check_encoder_files

    model = _copy(cv_model["model"], tmp_path / "model")
    (model / "encoder").mkdir()
    (model / "encoder" / "model.safetensors").write_bytes(b"another model's encoder")
    card = {**load_card("small-cnn").to_dict(), "weights_sha256": sha256_file(model / "encoder" / "model.safetensors")}
    (model / "encoder" / "card.yaml").write_text(yaml.safe_dump(card))
    meta = json.loads((model / "model.json").read_text())
    with pytest.raises(WeakSTILError) as exc:
        check_encoder_files(SimpleNamespace(model=model, encoder=None, weights=None), meta)
    assert f"{model / 'encoder'} was replaced" in exc.value.fix and "copy the whole model folder" in exc.value.fix
    shutil.rmtree(model / "encoder")
    # a detector of other tiles in MODEL/tumorbed
    shutil.copytree(detector, model / "tumorbed")
    detector = model / "tumorbed"
    dmeta = json.loads((detector / "model.json").read_text())
    (detector / "model.json").write_text(json.dumps({**dmeta, "tiling": {"mpp": 0.5, "tile_px": 256}}))
    out = tmp_path / "scores"
    result = run_cli("score", cv_model["slides"][0], "--model", model, "--features", cv_model["features"], "--out", out)
    said = _one_line(result.stderr)
    assert result.returncode == 1 and f"{detector}: the model's bundled detector does not fit the model" in said, said
    assert f"{detector} was replaced" in said and "re-embed" not in said and not out.exists()
    # the same detector given with --tumorbed keeps its own fix
    given = run_cli("score", cv_model["slides"][0], "--model", cv_model["model"], "--features", cv_model["features"],
                    "--tumorbed", detector, "--out", out)
    assert given.returncode == 1 and "bundled detector does not fit" not in _one_line(given.stderr)


def test_score_with_a_detector_of_another_encoder_and_stain_norm_names_both(cv_model, detector, tmp_path):
    """``score --tumorbed`` with a detector of another encoder AND stain normalisation than the model
    named the stain normalisation only ("Fix: embed with --stain-norm none": the model needs its own
    encoder's features); one line now names both and that the detector must fit the model (hunt 34f)."""
    edited = _copy(detector, tmp_path / "other")
    _edit_meta(edited, lambda m: (m["features"].update(stain_norm="none"), m.pop("weights_tensors_sha256", None),
                                  m.pop("weights_file_sha256", None), m.update(encoder="other-cnn", weights_sha256="ab" * 32)))
    out = tmp_path / "scores"
    result = run_cli("score", cv_model["slides"][0], "--model", cv_model["model"], "--features", cv_model["features"],
                     "--tumorbed", edited, "--out", out)
    said = _one_line(result.stderr)
    assert result.returncode == 1 and "encoder 'other-cnn' (weights abababababab), but the features come from " \
        "'small-cnn'" in said and "--stain-norm none, but these features with --stain-norm macenko" in said, said
    assert "pass --tumorbed a detector trained on features of this model's encoder 'small-cnn'" in said, said
    assert not out.exists()


def test_report_of_a_model_json_without_the_fold_count_names_the_folds_of_its_predictions(cv_model, tmp_path):
    """A model.json from before the number of folds was recorded (or without its ``training``
    section) was reported as "None-fold cross-validation", and its warning said "model.json: the
    cohort CSV the model records is not found" of a CSV it never recorded."""
    model = _copy(cv_model["model"], tmp_path / "model")
    _edit_meta(model, lambda m: m.pop("training"))
    result = run_cli("report", "--model", model, "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert "2-fold cross-validation" in text and "None-fold" not in text
    said = " ".join(result.stderr.split())
    assert "no cohort CSV is recorded" in said and "records is not found" not in said


def test_a_model_json_saved_with_a_byte_order_mark_is_read(cv_model, tmp_path):
    """model.json opened and saved again by Windows Notepad starts with a UTF-8 BOM: score, evaluate
    and report said "model.json is not valid JSON (Unexpected UTF-8 BOM). Fix: train the model
    again"; the file is read as UTF-8 with or without one, and the scores are the model's own."""
    model = _copy(cv_model["model"], tmp_path / "model")
    (model / "model.json").write_bytes(b"\xef\xbb\xbf" + (cv_model["model"] / "model.json").read_bytes())
    feats = _copy(cv_model["features"], tmp_path / "features")
    slide = cv_model["slides"][0]
    for name, folder in (("bom", model), ("plain", cv_model["model"])):
        result = run_cli("score", slide, "--model", folder, "--features", feats, "--out", tmp_path / name)
        assert result.returncode == 0, result.stderr
    import pandas as pd

    bom, plain = (pd.read_csv(tmp_path / n / "results.csv") for n in ("bom", "plain"))
    assert bom["stil"].tolist() == plain["stil"].tolist() and bom["status"].tolist() == ["ok"]
    assert run_cli("report", "--model", model, "--out", tmp_path / "r").returncode == 0


def test_evaluate_features_of_another_tiling_blame_the_features_not_the_detector(cv_model, detector, features256,
                                                                                 tmp_path):
    """``evaluate --features`` of 256 px tiles for a 224 px model with a detector: the detector's
    check ran first and said "the features are tiles of 256 px ... Fix: embed at the detector's --mpp
    and --tile-size, or train a detector on these features"; the features do not fit the model."""
    labels = cv_model["labels"].iloc[:2].copy()
    labels["path"] = [str(p.resolve()) for p in cv_model["slides"][:2]]
    labels[["slide_id", "path", "stil"]].to_csv(tmp_path / "two.csv", index=False)
    result = run_cli("evaluate", tmp_path / "two.csv", "--model", cv_model["model"], "--features", features256,
                     "--tumorbed", detector, "--out", tmp_path / "ev")
    said = _one_line(result.stderr)
    assert result.returncode == 1 and "features do not fit the model: tile_px 256" in said, said
    assert "train a detector" not in said and not (tmp_path / "ev").exists()


def test_a_subfolder_of_a_model_given_as_the_model_names_the_model(cv_model, tmp_path):
    """``--model MODEL/cv`` (or ``folds``, ``qc``) said "model.json is missing. Fix: pass the directory
    written by 'weakstil train'"; it names the model folder it is inside."""
    model = cv_model["model"]
    for args in (("score", cv_model["slides"][0], "--model", model / "cv", "--out", tmp_path / "s"),
                 ("report", "--model", model / "folds", "--out", tmp_path / "r")):
        result = run_cli(*args)
        assert result.returncode == 1 and f"pass --model {model}, the model folder it is inside" in \
            _one_line(result.stderr)
