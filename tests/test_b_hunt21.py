"""Fault hunt 21b: what a first-time user meets in evaluate, train and report inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from weakstil.cohort import CohortError, read_cohort


def _refused(csv: Path) -> str:
    with pytest.raises(CohortError) as info:
        read_cohort(csv)
    return " ".join(str(info.value).split())


def test_windows_1252_csv_is_refused_by_line_with_the_fix(tmp_path) -> None:
    """A cohort CSV saved as Excel's 'CSV (Comma delimited)' on Windows is Windows-1252: 'café'
    was refused as "cannot parse the cohort CSV ('utf-8' codec can't decode byte 0xe9 in position
    95 ...)", an offset nobody can find. Now the line is named and the fix is saving it as UTF-8;
    the file is not read in a guessed encoding (the accented path would silently name another file)."""
    (tmp_path / "slides").mkdir()
    for sid in ("s0", "s1"):
        (tmp_path / "slides" / f"{sid}.tiff").write_bytes(b"x")
    (tmp_path / "slides" / "caf\u00e9.tiff").write_bytes(b"x")
    csv = tmp_path / "labels.csv"
    csv.write_bytes("slide_id,path,stil,group\r\ns0,slides/s0.tiff,5,a\r\ns1,slides/s1.tiff,15,b\r\n"
                    "s2,slides/caf\u00e9.tiff,30,c\r\n".encode("cp1252"))
    said = _refused(csv)
    assert "line 4 is not UTF-8" in said and "caf\u00e9.tiff" in said and "codec" not in said
    assert "position" not in said and "'CSV UTF-8 (Comma delimited)'" in said and str(csv) in said
    csv.write_bytes("slide_id,path,stil,group\ns0,slides/s0.tiff,5,a\ns1,slides/s1.tiff,15,b\n"
                    "s2,slides/caf\u00e9.tiff,30,c\n".encode("utf-8"))
    assert list(read_cohort(csv).slide_ids) == ["s0", "s1", "s2"]  # the same file in UTF-8 is read


def test_a_model_folder_given_without_model_is_named_as_one(tmp_path) -> None:
    """'weakstil report MODEL' said "missing option '--out'" (click checks required options before
    extra arguments), and with --out "got unexpected extra argument(s)" with no word of --model.
    Now the extra argument comes first, and a model folder names the option that takes it."""
    from conftest import run_cli

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    for args in (["report", model], ["report", model, "--out", tmp_path / "rep"],
                 ["evaluate", tmp_path / "c.csv", model, "--out", tmp_path / "ev"]):
        r = run_cli(*args)
        said = " ".join(r.stderr.split())
        assert r.returncode == 2 and said.count("error:") == 1 and "missing option" not in said, said
        assert f"{model} is a model folder" in said and f"--model {model}" in said, said
    assert not (tmp_path / "rep").exists() and not (tmp_path / "ev").exists()
    r = run_cli("report", tmp_path / "nothing_here", "--out", tmp_path / "rep")  # not a folder it knows
    assert r.returncode == 2 and "unexpected extra argument" in r.stderr and "--help" in r.stderr
    r = run_cli("report", "--help")
    assert r.returncode == 0 and "--model" in r.stdout


@pytest.fixture(scope="module")
def nan_features(tmp_path_factory):
    """A one-epoch model, a tumour-bed detector and a copy of the cohort's features in which two
    slides' files hold a NaN (what a damaged or foreign file may hold; 'embed' never writes one)."""
    import shutil

    import h5py
    import numpy as np

    from conftest import run_cli, write_training_csv
    from shared_cohorts import one_epoch_model_copy

    root = tmp_path_factory.mktemp("h21b_nan")
    model, cohort, labels, features = one_epoch_model_copy(tmp_path_factory, root)
    detector = root / "detector"
    trained = run_cli("tumorbed", "train", "--features", features, "--annotations", cohort / "truth",
                      "--out", detector, "--max-slides", "2", "--no-augment")
    assert trained.returncode == 0, trained.stderr
    broken = root / "broken"
    shutil.copytree(features, broken)
    bad = [broken / f"{sid}.h5" for sid in labels["slide_id"][1:3]]
    for path in bad:
        with h5py.File(path, "r+") as f:
            x = f["features"][...]
            x[0, 0] = np.nan
            f["features"][...] = x
    return {"model": model, "detector": detector, "features": broken, "bad": bad,
            "csv": write_training_csv(root / "labels.csv", labels, cohort)}


@pytest.mark.parametrize("command", ["evaluate", "train"])
def test_nan_features_are_refused_before_a_detector_takes_their_bed_as_empty(nan_features, tmp_path, command) -> None:
    """A feature file holding NaN: the tumour-bed detector ran on it first and warned 'bed fallback:
    tissue: detected tumour bed is empty (tumour evidence of nan tiles)', a false lead, before the
    error, and the detector ran on every slide for nothing. Now every such file is named in the one
    error line before any bed is detected, with the fix; nothing is written (evaluate and train refuse
    damaged feature files as they refuse unreadable ones: the cohort's metrics are not those of its
    other slides)."""
    from conftest import run_cli

    d = nan_features
    out = tmp_path / "out"
    args = (["evaluate", d["csv"], "--model", d["model"]] if command == "evaluate" else ["train", d["csv"], "--folds", "1"])
    r = run_cli(*args, "--features", d["features"], "--tumorbed", d["detector"], "--out", out)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and said.count("error:") == 1, said
    assert "features contain NaN or infinite values in 2 feature files" in said, said
    assert all(str(p) in said for p in d["bad"]) and "embed --overwrite" in said, said
    assert "bed fallback" not in said and "nan tiles" not in said, said
    assert not out.exists()


def test_tumorbed_apply_refuses_a_nan_feature_file_and_goes_on(nan_features, tmp_path) -> None:
    """'tumorbed apply' on a feature file holding NaN wrote a bed for it: the whole tissue, as a
    'bed fallback: tissue ... (tumour evidence of nan tiles)' that train, evaluate and score would then
    take. Now that slide is one error line naming the file and the fix, with no bed file, and the
    other slides get their beds (exit 1: one input failed). 'score' goes through the same detector
    and so no longer warns of the fallback before its error (hunt 21, lead)."""
    from conftest import run_cli

    d = nan_features
    files = sorted(d["features"].glob("*.h5"))
    out = tmp_path / "beds"
    r = run_cli("tumorbed", "apply", *files, "--tumorbed", d["detector"], "--out", out)
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and said.count("error:") == len(d["bad"]), said
    assert all(str(p) in said for p in d["bad"]) and "embed --overwrite" in said, said
    assert "nan tiles" not in said and "bed fallback" not in said, said
    made = sorted(p.stem for p in out.glob("*.h5"))
    assert made == sorted(p.stem for p in files if p not in d["bad"]) and made
