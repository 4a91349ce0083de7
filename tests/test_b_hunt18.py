"""Fault hunt 18 (b): ``score`` / ``evaluate`` / ``report`` as an outside checker runs them, CLI only.

1. A rerun of ``score`` that fails on a slide scored before (its file now damaged, moved or
   unreadable) keeps the finished row and lists the failed attempt after it, as documented; then
   ``evaluate --oof results.csv`` refused that one run's file: "a slide is on two or more rows that
   differ ... keep the results.csv of one 'weakstil score' run". The failed attempt is passed over.
2. ``evaluate --oof results.csv`` took the run's threshold from every row of the file, the error
   rows of other files with a scored slide's id and unlabelled slides included: one such row of an
   earlier run (threshold 30) made it warn of "several thresholds" and judge at 30 slides all
   called at 40. Only the judged rows decide it now.
3. ``evaluate --oof results.csv --threshold T`` (T not the run's threshold) judged the calls at T
   but reported the run's ``near_threshold`` flags (made at the run's threshold) as the flag rate:
   a slide whose interval holds T counted as not near it, one whose interval holds only the run's
   threshold as near. The flag is judged again at T from the slide's interval.
4. A model.json whose ``threshold`` was edited to ``null`` ended ``score`` in "unexpected
   TypeError ... this is a bug" instead of the one line that names the file and the value.
5. ``score --mpp 1`` (or ``--tile-size``, ``--tissue-threshold``) was told "Possible options:
   --slide-mpp" (``--threshold``): options of another meaning (the scan's own resolution, the
   sTIL-high call), which change the number if taken. Now: score reads at the model's tiling.
6. ``score --features SHARE`` with SHARE read-only (a lab's embedded features on a read-only
   share) failed on every slide, though each cache was valid: the per-slide lock file could not be
   made. A folder the run may only read is now read without a lock. A cache that must be made
   there still fails, and the error named the temporary file (``.S.h5.HOST.PID.HEX.tmp``) and the
   stop line said "Fix: free space", which a read-only file system is not mended by.
7. A folder named like a slide's output in ``--out`` (``S_heatmap.png/``): ``score`` moved it aside,
   wrote the slide's new files, then failed to delete the moved folder: an ``error`` row beside a
   complete set of outputs, a leftover ``..previous-S_heatmap.png....tmp`` folder, and an error naming
   that internal name with the fix "pass a file, not a directory". Now refused before anything is
   moved or written, naming the folder (``tile`` the same for ``S_tiles.png/``).
8. ``OUT/results.csv`` a folder: every slide was scored and its files written, then the row could
   not be: "Is a directory. Fix: pass a file, not a directory" and exit 0 with no results table.
   Now refused before any slide (one line, exit 1). And a run whose slides all succeeded but whose
   results.csv could not take a row (an I/O error there) exited 0 after its error line: now 1.
9. A file named ``features`` in ``--out`` (where score keeps its caches without ``--features``):
   "OUT/features: File exists. Fix: check the file system and run again" as each slide's error row.
   Now one usage line before any work (exit 2), naming the file and ``--features`` as the way out.
10. ``score --threshold 7.4642`` on a slide whose interval is written 0.3973-7.4642 (upper end
    7.46416): the table's interval holds the threshold, yet no ``near_threshold`` (judged on the
    unrounded ends). The flag is now judged on the interval as written, as the call is on the sTIL%.
11. A slide's heatmap cut short or its GeoJSON emptied (a broken copy, a full disk outside weakstil):
    every rerun said "already scored (ok), skipped" and kept them (only their existence was checked);
    QuPath could not open the GeoJSON until ``--overwrite`` redid every slide. Now redone, said why.
"""

from __future__ import annotations

import errno
import json
import logging
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from shared_cohorts import one_epoch_model_copy


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A model trained for one epoch on four small synthetic slides, their feature caches and slides."""
    model, cohort, labels, features = one_epoch_model_copy(tmp_path_factory, tmp_path_factory.mktemp("h18b"))
    slides = [cohort / p for p in labels["path"]]
    return {"model": model, "features": features, "slides": slides, "labels": labels}


def _results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)


def test_evaluate_takes_a_score_folder_whose_rerun_failed_on_a_scored_slide(tiny, tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    for src in tiny["slides"][:2]:
        shutil.copy(src, slides / src.name)
    out = tmp_path / "sc"
    args = ("score", *sorted(slides.glob("*.tiff")), "-m", tiny["model"], "-o", out, "-f", tiny["features"])
    run_cli(*args, check=True)
    first = sorted(slides.glob("*.tiff"))[0]
    first.write_bytes(first.read_bytes()[:200_000])  # the file damaged since (a broken copy)
    again = run_cli(*args)
    assert again.returncode == 1 and "cannot read it" in again.stderr
    rows = _results(out)
    assert rows["status"].tolist() == ["ok", "ok", "error"] and rows["path"].iloc[2] == rows["path"].iloc[0]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"slide_id": [p.stem for p in sorted(slides.glob("*.tiff"))], "path": sorted(slides.glob("*.tiff")),
                  "stil": [10.0, 40.0]}).to_csv(labels, index=False)
    judged = run_cli("evaluate", labels, "--oof", out / "results.csv", "-o", tmp_path / "ev")
    assert judged.returncode == 0, judged.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["excluded"] == []
    said = " ".join(judged.stderr.split())
    assert f"{first.stem}: row 4 passed over in" in said and "a later attempt at the same file failed" in said


def test_evaluate_takes_the_threshold_of_the_rows_it_judges(tiny, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    slide = shutil.copy(tiny["slides"][0], a / tiny["slides"][0].name)
    other = shutil.copy(tiny["slides"][1], b / tiny["slides"][0].name)  # another file with the same slide id
    out = tmp_path / "sc"
    common = ("-m", tiny["model"], "-o", out, "-f", tiny["features"])
    assert run_cli("score", slide, other, *common).returncode == 1  # the second file refused: its own error row
    run_cli("score", slide, *common, "--threshold", "40", check=True)  # scored again, called at 40
    rows = _results(out)
    assert rows["threshold"].tolist() == ["40", "30"] and rows["status"].tolist() == ["ok", "error"]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"slide_id": [Path(slide).stem], "path": [slide], "stil": [20.0]}).to_csv(labels, index=False)
    judged = run_cli("evaluate", labels, "--oof", out / "results.csv", "-o", tmp_path / "ev", check=True)
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["threshold"] == 40.0
    assert "not one sTIL% threshold" not in " ".join(judged.stderr.split())


def test_evaluate_at_another_threshold_judges_near_threshold_at_it(tmp_path, caplog):
    from weakstil.evaluation import evaluate_oof

    cols = ["slide_id", "path", "stil", "stil_lower_90", "stil_upper_90", "stil_high", "threshold", "status", "qc",
            "model_id"]
    rows = [  # as score wrote them at its threshold 30: s1's interval holds 30, s2's holds 20
        ["s0", "/x/s0.tiff", "5.0000", "2.0000", "9.0000", "False", "30", "ok", "", "model@abc"],
        ["s1", "/x/s1.tiff", "33.0000", "25.0000", "41.0000", "True", "30", "ok", "near_threshold", "model@abc"],
        ["s2", "/x/s2.tiff", "15.0000", "10.0000", "24.0000", "False", "30", "ok", "stain_outside_training_range",
         "model@abc"],
        ["s3", "/x/s3.tiff", "70.0000", "60.0000", "80.0000", "True", "30", "ok", "", "model@abc"]]
    results = tmp_path / "results.csv"
    pd.DataFrame(rows, columns=cols).to_csv(results, index=False)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"slide_id": ["s0", "s1", "s2", "s3"], "path": ["s0.tiff", "s1.tiff", "s2.tiff", "s3.tiff"],
                  "stil": [4.0, 31.0, 18.0, 65.0]}).to_csv(labels, index=False)
    with caplog.at_level(logging.INFO):
        metrics = evaluate_oof(labels, results, tmp_path / "ev", threshold=20.0)
    assert metrics["qc"]["rate"] == {"near_threshold": 0.25, "stain_outside_training_range": 0.25}
    pred = pd.read_csv(tmp_path / "ev" / "predictions.csv", keep_default_na=False)
    assert pred["qc"].tolist() == ["", "", "near_threshold;stain_outside_training_range", ""]
    assert "near_threshold judged again at the threshold 20" in " ".join(caplog.text.split())
    # at the run's own threshold nothing is judged again
    same = evaluate_oof(labels, results, tmp_path / "ev30")
    assert same["qc"]["rate"]["near_threshold"] == 0.25 and same["threshold"] == 30.0
    assert pd.read_csv(tmp_path / "ev30" / "predictions.csv", keep_default_na=False)["qc"].tolist()[1] == "near_threshold"


def test_a_model_threshold_edited_to_null_is_one_line(tiny, tmp_path):
    model = shutil.copytree(tiny["model"], tmp_path / "model")
    meta = json.loads((model / "model.json").read_text())
    meta["threshold"] = None
    (model / "model.json").write_text(json.dumps(meta))
    result = run_cli("score", tiny["slides"][0], "-m", model, "-o", tmp_path / "out", "-f", tiny["features"])
    assert result.returncode == 1
    line = result.stderr.strip()
    assert "model.json threshold null is not an sTIL% from 0 to 100" in line and "unexpected" not in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option, value", [("--mpp", "1"), ("--tile-size", "256"), ("--tissue-threshold", "0.3")])
def test_score_given_a_tiling_option_says_it_reads_at_the_models(tiny, tmp_path, option, value):
    result = run_cli("score", tiny["slides"][0], "-m", tiny["model"], "-o", tmp_path / "out", option, value)
    assert result.returncode == 2
    line = result.stderr.strip()
    assert f"no such option: {option}" in line and "Possible options" not in line, line
    assert "reads slides at its model's tiling" in line and "--slide-mpp only states a scan's own" in line
    assert "\n" not in line and not (tmp_path / "out").exists()


@pytest.fixture
def read_only_share(tmp_path):
    """A tmpfs the test fills, then remounts read-only (needs root): ``(folder, make_read_only)``."""
    mount = tmp_path / "share"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs (not root)")
    yield mount, lambda: subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_score_reads_feature_caches_on_a_read_only_share(tiny, tmp_path, read_only_share):
    share, make_read_only = read_only_share
    features = shutil.copytree(tiny["features"], share / "features")
    (features / f"{tiny['slides'][0].stem}.h5").unlink()  # one slide not embedded there
    make_read_only()
    missing, *cached = tiny["slides"][:3]
    result = run_cli("score", *cached, "-m", tiny["model"], "-o", tmp_path / "sc", "-f", features)
    assert result.returncode == 0, result.stderr
    assert _results(tmp_path / "sc")["status"].tolist() == ["ok", "ok"]
    result = run_cli("score", missing, *cached, "-m", tiny["model"], "-o", tmp_path / "sc2", "-f", features)
    assert result.returncode == 1
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    first, stop = errors[0], [x for x in errors if "stopped after" in x]
    # (hunt 36b named the folder; a read-only mount is said so, its fix no chmod)
    assert first.startswith(f"error: {features / missing.stem}.h5: the feature cache folder {features} is on a "
                            "read-only file system") and ".tmp" not in first and "chmod" not in first
    assert "another --features folder" in first, first
    assert not stop, result.stderr  # a slide's own error: the cached slides are scored after it
    assert _results(tmp_path / "sc2")["status"].tolist() == ["error", "ok", "ok"]


def test_a_folder_in_the_place_of_an_output_leaves_no_outputs_and_no_leftovers(tiny, tmp_path):
    out = tmp_path / "sc"
    blocked, free = tiny["slides"][:2]
    (out / f"{blocked.stem}_heatmap.png").mkdir(parents=True)
    result = run_cli("score", blocked, free, "-m", tiny["model"], "-o", out, "-f", tiny["features"])
    assert result.returncode == 1
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert errors == [f"error: {out / blocked.stem}_heatmap.png: is a directory; the output file cannot be written "
                      "(nothing was written for this slide). Fix: move the directory away or choose another --out."]
    left = sorted(p.name for p in out.iterdir())
    assert left == sorted([".weakstil-output.json", "results.csv", f"{blocked.stem}_heatmap.png",
                           *(free.stem + s for s in (".h5", ".geojson", "_heatmap.png"))]), left
    assert (out / f"{blocked.stem}_heatmap.png").is_dir()
    assert _results(out)["status"].tolist() == ["error", "ok"]


def test_a_folder_named_results_csv_is_refused_before_any_slide(tiny, tmp_path):
    out = tmp_path / "sc"
    (out / "results.csv").mkdir(parents=True)
    result = run_cli("score", tiny["slides"][0], "-m", tiny["model"], "-o", out, "-f", tiny["features"])
    assert result.returncode == 1
    errors = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert errors == [f"error: {out}/results.csv: is a directory, not the results table 'weakstil score' writes "
                      "there; it is left as it is. Fix: move it away, or give 'weakstil score' another --out."]
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"]


def test_a_results_csv_that_could_not_take_the_row_is_exit_1(tiny, tmp_path, monkeypatch):
    import weakstil.score

    def broken(path, *args, **kwargs):
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(weakstil.score, "write_results", broken)
    result = run_cli("score", tiny["slides"][0], "-m", tiny["model"], "-o", tmp_path / "sc", "-f", tiny["features"])
    assert "results.csv: Input/output error" in result.stderr and result.returncode == 1, result.stderr


def test_a_file_where_score_keeps_its_caches_is_one_usage_line(tiny, tmp_path):
    out = tmp_path / "sc"
    out.mkdir()
    (out / "features").write_text("notes\n")
    result = run_cli("score", tiny["slides"][0], "-m", tiny["model"], "-o", out)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {out}/features: is a file, where 'weakstil score' keeps the feature "
                                     "caches it makes (OUT/features). Fix: move it away, or pass --features DIR for "
                                     "the caches.")
    assert sorted(p.name for p in out.iterdir()) == ["features"]


def test_near_threshold_is_judged_on_the_interval_as_written():
    from weakstil.qc.flags import slide_flags

    def flags(low, high, threshold):
        return slide_flags(ood_score=None, ood_threshold=None, n_bed_tiles=40, low=low, high=high,
                           threshold=threshold, image=None, image_ref=None)[0]

    assert "near_threshold" in flags(0.3973, 7.464160119969108, 7.4642)  # written 0.3973-7.4642
    assert "near_threshold" not in flags(7.46416, 9.0, 7.4642)  # written 7.4642-9.0000: lower end not below it
    assert "near_threshold" in flags(25.0, 35.0, 30.0) and "near_threshold" not in flags(31.0, 35.0, 30.0)


def test_a_damaged_heatmap_or_geojson_is_scored_again(tiny, tmp_path):
    out = tmp_path / "sc"
    slide = tiny["slides"][0]
    args = ("score", slide, "-m", tiny["model"], "-o", out, "-f", tiny["features"])
    run_cli(*args, check=True)
    heatmap, geojson = out / f"{slide.stem}_heatmap.png", out / f"{slide.stem}.geojson"
    whole = heatmap.read_bytes()
    for damage in (lambda: heatmap.write_bytes(whole[: len(whole) // 2]), lambda: geojson.write_text("")):
        damage()
        again = run_cli(*args, check=True)
        assert "already scored" not in again.stderr and "is damaged" in " ".join(again.stderr.split())
        assert heatmap.read_bytes()[-12:] == whole[-12:] and json.loads(geojson.read_text())["features"]
    assert "already scored" in run_cli(*args, check=True).stderr
