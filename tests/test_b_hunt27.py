"""Hunt 27b: a researcher retraining on a new cohort, from outside (cohort CSVs, the interval's
calibration, what train says about the slides it was given)."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest

from conftest import run_cli
from planted import TRAIN_BRIEF as BRIEF
from planted import make_planted_cohort
from planted import said as _said


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 12-slide planted cohort (features only; 4 groups)."""
    root = tmp_path_factory.mktemp("hunt27b")
    table, _ = make_planted_cohort(root / "cohort", 12, dim=8, tiles=(12, 20), n_groups=4, seed=27)
    return root, table


def test_coverage_spread_is_what_a_calibration_set_of_that_size_gives():
    """The 5th-95th percentile of the coverage of a split-conformal interval calibrated on n
    exchangeable slides, checked by simulation: a 12-slide calibration covers new slides anywhere
    from about 78 to 100 % (one set in 20 below 78 %), 100 slides 85-95 %."""
    from weakstil.confidence import conformal_quantile, coverage_spread

    rng = np.random.default_rng(0)
    for n in (12, 30):
        low, high = coverage_spread(n, 0.9)
        # coverage of each calibration set: the share of new |errors| below its conformal quantile
        covered = [float(np.mean(np.abs(rng.normal(size=4000)) <= conformal_quantile(np.abs(rng.normal(size=n)), 0.9)))
                   for _ in range(600)]
        assert abs(np.quantile(covered, 0.05) - low) < 0.03 and abs(np.quantile(covered, 0.95) - high) < 0.03
        assert np.mean(covered) >= 0.9 - 0.01  # on average the nominal level, as split conformal promises
    assert coverage_spread(12, 0.9) == pytest.approx((0.779, 0.996), abs=0.001)
    assert coverage_spread(100, 0.9) == pytest.approx((0.848, 0.945), abs=0.001)
    assert all(math.isnan(v) for v in coverage_spread(8, 0.9))  # no interval at all on 8 slides


def test_an_interval_calibrated_on_few_slides_is_warned_about_and_recorded(planted, tmp_path):
    """Finding 1: 'weakstil train' on 12 (or 16) slides calibrated the 90 % interval on them and said
    only, at info level, 'out-of-fold coverage 100% (leave-one-out 92%) ... (12 slides)': nothing said
    that a 12-slide calibration covers new slides like them anywhere from 78 to 100 % (one model in
    20 below 78 %), with its offset and shift weight fitted on the same slides, and 'score' said
    nothing. Now train and score warn, and calibration.json records the range; with fewer than 9
    slides there is no interval, as before."""
    root, _ = planted
    proc = run_cli("train", root / "cohort" / "labels.csv", "-f", root / "cohort" / "features", "-o", tmp_path / "m",
                   "--folds", "4", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    said = _said(proc)
    assert "the 90% interval is calibrated on 12 out-of-fold slides, too few to pin it down" in said
    assert "may cover anywhere from 78 to 100%" in said and "30 or more out-of-fold slides" in said
    cal = json.loads((tmp_path / "m" / "qc" / "calibration.json").read_text(encoding="utf-8"))
    assert cal["n"] == 12 and math.isfinite(cal["q"])
    spread = cal["extra"]["coverage_spread"]
    assert spread["low"] == pytest.approx(0.779, abs=0.001) and spread["high"] == pytest.approx(0.996, abs=0.001)
    # the model still loads and scores as it did (the range is advice in 'extra', not a new field), and
    # 'weakstil score' says it once per run (the train log that said it may be long gone)
    from weakstil.confidence import Calibration
    from weakstil.mil.ensemble import load_scoring_models
    from weakstil.qc.scoring import SlideAssessor

    assert Calibration.from_dict(cal).usable
    models, meta = load_scoring_models(tmp_path / "m")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # (the CLI run above replaced the root logger's handlers, caplog's too)
    logging.getLogger("weakstil").addHandler(handler)
    try:
        assessor = SlideAssessor.load(tmp_path / "m", meta, models[0].arch, fold_models=models)
    finally:
        logging.getLogger("weakstil").removeHandler(handler)
    assert assessor.no_interval is None and assessor.calibration.q == pytest.approx(cal["q"])
    assert "the 90 % interval was calibrated on 12 out-of-fold slides: on slides like the training slides it may " \
           "cover anywhere from 78 to 100 % (5th-95th percentile)" in " ".join(r.getMessage() for r in records)


def test_features_copied_from_another_slide_are_not_called_a_copy_of_that_slide(tmp_path):
    """Finding 2: a feature file copied under another slide's name (features/B.h5 a copy of A.h5, a
    slip while gathering a cohort's features) was refused as 'B: a copy of the slide file of row 2
    (A): one slide in two rows would be counted twice', which sends the researcher to check slide
    files that differ. The features' fingerprint is A's scan, not B's; now the row says only that
    its features were made from another slide file, with the fix to embed it again."""
    from conftest import write_tiff_slide
    from planted import write_feature_file
    from weakstil.fingerprint import ATTR, slide_fingerprint

    import h5py

    rng = np.random.default_rng(27)
    (tmp_path / "slides").mkdir()
    slides = {sid: write_tiff_slide(tmp_path / "slides" / f"{sid}.tiff",
                                    rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), levels=1) for sid in "AB"}
    feats, coords = rng.normal(size=(4, 8)), np.array([[0, 0], [448, 0], [0, 448], [448, 448]])
    for sid in "AB":
        path = write_feature_file(tmp_path / "features" / f"{sid}.h5", sid, feats, coords)
        with h5py.File(path, "r+") as f:
            f.attrs[ATTR] = slide_fingerprint(slides["A"])  # B.h5: a copy of A's features
    (tmp_path / "c.csv").write_text("slide_id,path,stil\nA,slides/A.tiff,10\nB,slides/B.tiff,40\n", encoding="utf-8")
    proc = run_cli("train", tmp_path / "c.csv", "-f", tmp_path / "features", "-o", tmp_path / "m", "--folds", "1",
                   *BRIEF)
    said = _said(proc)
    assert proc.returncode == 1 and not (tmp_path / "m").exists()
    assert "row 3 (B): features" in said and "were made from another slide file than" in said, said
    assert "a copy of the slide file" not in said and "counted twice" not in said
    assert "Fix: embed these slides again" in said


def test_yes_no_class_labels_are_refused_not_trained_on_as_percent(planted, tmp_path):
    """Finding 3: a cohort CSV whose stil column holds sTIL-high calls (1 = high, 0 = low: a TCGA-style
    'TIL high' column) was trained on as 0 % and 1 % labels, with the warning 'they look like
    fractions ... multiply them by 100' (which would make them 0 and 100 %): on 12 demo slides the
    model's out-of-fold scores were all under 1 % (MAE 0.43, R² -0.22, exit 0). Now it is refused
    before anything is written, naming the counts and the fix; real percentages, fractions (warned
    about, as before) and labels of 0 and 1 beside others train as they did."""
    root, table = planted
    features = root / "cohort" / "features"
    labels = table[["slide_id", "path", "stil"]].copy()
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels.assign(stil=(labels["stil"] >= 30).astype(int)).to_csv(tmp_path / "binary.csv", index=False)
    for command in (("train", tmp_path / "binary.csv", "-f", features, "-o", tmp_path / "m", "--folds", "1", *BRIEF),
                    ("evaluate", tmp_path / "binary.csv", "--oof", tmp_path / "oof.csv", "-o", tmp_path / "e")):
        proc = run_cli(*command)
        said = _said(proc)
        assert proc.returncode == 1 and not (tmp_path / "m").exists() and not (tmp_path / "e").exists()
        high = int((labels["stil"] >= 30).sum())
        assert f"every sTIL label is 0 or 1 ({high} slides 1, {len(labels) - high} slides 0): they look like classes " \
               "(sTIL-high yes/no), not percentages" in said, said
        assert "Fix: give each slide's stromal TIL percentage, 0-100" in said
    # 0 and 1 % beside other labels are percentages (a TIL-poor cohort), and train
    low = labels.assign(stil=[0, 1, 0, 1, 2.5, 0, 1, 4, 0, 1, 7, 0][: len(labels)])
    low.to_csv(tmp_path / "low.csv", index=False)
    assert run_cli("train", tmp_path / "low.csv", "-f", features, "-o", tmp_path / "m", "--folds", "1",
                   *BRIEF).returncode == 0


def test_paths_written_from_the_current_folder_are_one_cause_not_a_wall_of_rows(planted, tmp_path, monkeypatch):
    """Finding 4: a cohort CSV kept in a subfolder whose paths were written from where the researcher
    runs (cwd-relative, a common slip) was refused with every row's own copy of the same hint: 12 rows
    made a 4,000-character error line, the demo's 40 rows 12,000 characters, a 1,000-slide cohort a
    third of a megabyte, the fix buried. Now the cause is said once, with one row's path rewritten
    both ways; a CSV with other bad rows too still lists every row."""
    root, table = planted
    monkeypatch.chdir(root)
    (root / "lists").mkdir(exist_ok=True)
    rows = table.assign(path=["cohort/" + p for p in table["path"]])  # from root, not from lists/
    rows.to_csv(root / "lists" / "cwd.csv", index=False)
    proc = run_cli("train", root / "lists" / "cwd.csv", "-f", root / "cohort" / "features", "-o", tmp_path / "m",
                   "--folds", "1", *BRIEF)
    said = _said(proc)
    assert proc.returncode == 1 and not (tmp_path / "m").exists()
    assert f"12 rows' slide paths are written from the current folder, {root}, where the files are, but paths are " \
           f"relative to the CSV's folder, {root / 'lists'} (row 2: cohort/slides/S000.tiff)" in said, said
    assert "Fix: write them relative to the CSV's folder (row 2: ../cohort/slides/S000.tiff), or as absolute " \
           f"paths (row 2: {root / 'cohort' / 'slides' / 'S000.tiff'})" in said
    assert len(said) < 700
    # one row with another problem as well: every bad row is listed, as before
    rows.assign(stil=["x"] + list(rows["stil"][1:])).to_csv(root / "lists" / "mixed.csv", index=False)
    said = _said(run_cli("train", root / "lists" / "mixed.csv", "-f", root / "cohort" / "features", "-o",
                         tmp_path / "m", "--folds", "1", *BRIEF))
    assert "12 bad rows: row 2 (S000): file not found cohort/slides/S000.tiff (there is cohort/slides/S000.tiff from " \
           "the current folder" in said and "stil 'x' is not a number" in said



def test_a_slide_scored_below_every_training_label_is_flagged():
    """Finding 5: a model trained on a cohort of high labels (the demo's 12 most TIL-rich slides,
    29-85 %) scored 15 slides of 0.5-5.7 % at 20-29 % with intervals such as 17.2-22.6, none holding
    the truth, and 9 of the 15 had no flag: 'above_training_labels' guards extrapolation upwards only.
    Now 'below_training_labels' is raised on a score under the lowest training label (14 of those
    15), as score and the training slides' own flags pass the lowest label of reference.json."""
    import inspect

    from weakstil.qc import scoring, training
    from weakstil.qc.flags import FLAGS, label_reference, slide_flags

    ref = label_reference(np.array([29.0, 33.3, 85.1]))
    common = dict(ood_score=None, ood_threshold=None, n_bed_tiles=100, low=17.2, high=22.6, threshold=30.0,
                  image=None, image_ref=None, label_max=ref["max"], label_min=ref["min"])
    flags, why = slide_flags(stil=19.7, **common)
    assert flags == ["below_training_labels"] and "below_training_labels" in FLAGS
    assert why["below_training_labels"] == ("sTIL 19.7% below the lowest training label 29.0%: extrapolated, "
                                            "likely over-scored")
    assert slide_flags(stil=29.0, **common)[0] == []  # at the lowest label: inside the range
    assert slide_flags(stil=27.0, **common)[0] == []  # within half a 5-point scoring step of it
    low_end = {**common, "label_min": 1.0, "low": 0.0, "high": 3.0}
    assert slide_flags(stil=0.2, **low_end)[0] == []  # a model that saw 1 % slides is not extrapolating at 0.2 %
    assert slide_flags(stil=90.0, **common)[0] == ["above_training_labels"]
    # both callers hand the lowest label over (as they do the highest)
    assert 'label_min=(self.reference.get("labels") or {}).get("min")' in inspect.getsource(scoring.SlideAssessor.assess)
    assert "label_min=label_min" in inspect.getsource(training)


def test_features_of_two_encoders_half_and_half_name_no_majority(tmp_path):
    """Finding 6: a cohort embedded half with one encoder's weights and half with another's was refused
    as '2 slides differ from the majority, e.g. A, B (weights_sha256 ... (majority: ...))' when the two
    kinds were as many: the slides named as odd were as right as the others, and which half is
    called 'the majority' was an accident of sorting. Now a tie says so."""
    from planted import write_feature_file

    rng = np.random.default_rng(6)
    (tmp_path / "slides").mkdir()
    rows = []
    for i, sid in enumerate("ABCD"):
        (tmp_path / "slides" / f"{sid}.tiff").write_bytes(b"placeholder")
        write_feature_file(tmp_path / "features" / f"{sid}.h5", sid, rng.normal(size=(4, 8)),
                           np.array([[0, 0], [448, 0], [0, 448], [448, 448]]),
                           weights_sha256=("ab" if i < 2 else "cd") * 32)
        rows.append(f"{sid},slides/{sid}.tiff,{10 + 20 * i}")
    (tmp_path / "c.csv").write_text("slide_id,path,stil\n" + "\n".join(rows) + "\n", encoding="utf-8")
    said = _said(run_cli("train", tmp_path / "c.csv", "-f", tmp_path / "features", "-o", tmp_path / "m",
                         "--folds", "1", *BRIEF))
    assert "2 slides differ from the other 2 (no kind is the most common)" in said, said
    assert "majority" not in said and "(the others: " in said
    # a real majority is still named so
    write_feature_file(tmp_path / "features" / "D.h5", "D", rng.normal(size=(4, 8)),
                       np.array([[0, 0], [448, 0], [0, 448], [448, 448]]), weights_sha256="ab" * 32)
    said = _said(run_cli("train", tmp_path / "c.csv", "-f", tmp_path / "features", "-o", tmp_path / "m",
                         "--folds", "1", *BRIEF))
    assert "1 slide differs from the majority, e.g. C (weights_sha256 " + "cd" * 32 + " (majority: " + "ab" * 32 in said
