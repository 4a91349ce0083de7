"""Hunt 37a (an outside tester retraining on a new cohort): three findings.

1. ``evaluate COHORT --oof results.csv`` judged a score run of the model's own training slides as if
   they were new (below).
2. A model folder copied without ``encoder/`` was refused blaming its training (``test_a_model_folder_...``).
3. sTIL-high calls written as 0 % / 100 % were trained on as sTIL% (``test_yes_no_calls_...``).
4. A cohort CSV whose ``group`` column is empty on every row (a template's, not filled in) was refused
   with "Fix: correct or remove these rows" (``test_a_group_column_left_empty_...``).

``evaluate --model`` says when evaluated slides are training slides of the model (a warning, the plots'
titles ``in-sample: N of M training slides``, ``training_slide`` in predictions.csv, ``n_training_slides``
in metrics.json/.csv), but the same slides scored by ``weakstil score`` and judged with ``--oof
results.csv`` got none of it: 6 training slides of a freshly trained model, scored and judged, gave
R² 0.32 / Pearson 0.99 with ``n_training_slides`` absent and not a word. Each score file records the
model folder and the slide's scan fingerprint, so the run's training slides are found as ``--model``
finds them (by scan, in the model's ``qc/training_slides.csv``), when that folder still holds the
model that scored them.
"""

from __future__ import annotations

import json

import pandas as pd

from conftest import run_cli


def _cohort(demo, ids, path):
    labels = pd.read_csv(demo / "cohort" / "labels.csv", dtype={"slide_id": str})
    rows = labels[labels["slide_id"].isin(ids)].copy()
    rows["path"] = [str((demo / "cohort" / p).resolve()) for p in rows["path"]]
    rows[["slide_id", "path", "stil"]].to_csv(path, index=False)
    return path


def test_a_score_run_of_training_slides_is_judged_in_sample(tmp_path, small_demo, one_torch_thread):
    demo = small_demo[0]
    trained = pd.read_csv(demo / "model" / "qc" / "training_slides.csv", dtype={"slide_id": str})["slide_id"]
    held = pd.read_csv(demo / "scores" / "results.csv", dtype={"slide_id": str})["slide_id"]
    assert not set(held) & set(trained)

    # the demo's own held-out run: judged as new slides, and now says so (0, not absent)
    r = run_cli("evaluate", _cohort(demo, list(held), tmp_path / "held.csv"), "--oof", demo / "scores" / "results.csv",
                "--out", tmp_path / "ev_held")
    assert r.returncode == 0, r.stderr
    assert "in-sample" not in r.stderr
    assert json.loads((tmp_path / "ev_held" / "metrics.json").read_text(encoding="utf-8"))["n_training_slides"] == 0

    # one training slide scored by that model, judged against its label
    cohort = _cohort(demo, [trained.iloc[0]], tmp_path / "train1.csv")
    r = run_cli("score", "--slides", cohort, "--model", demo / "model", "--out", tmp_path / "sc", "--threads", "1")
    assert r.returncode == 0, r.stderr
    r = run_cli("evaluate", cohort, "--oof", tmp_path / "sc" / "results.csv", "--out", tmp_path / "ev")
    assert r.returncode == 0, r.stderr
    assert "1 of the 1 judged slides are training slides of the model that scored them" in " ".join(r.stderr.split())
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n_training_slides"] == 1
    pred = pd.read_csv(tmp_path / "ev" / "predictions.csv")
    assert pred["training_slide"].tolist() == [True]


def test_a_model_folder_copied_without_its_encoder_says_so(tmp_path, small_demo, one_torch_thread):
    """A model folder copied without ``encoder/`` (its pretrained encoder) was refused as "does not
    bundle it (trained from features whose encoder folder was not found)": its training blamed, with
    only ``--encoder DIR`` as the fix. Now the missing folder is named, and copying it is the first fix."""
    import shutil

    demo = small_demo[0]
    model = tmp_path / "model"
    shutil.copytree(demo / "model", model, ignore=lambda folder, names: ["encoder"] if folder == str(demo / "model")
                    else [])
    assert (model / "model.json").is_file() and not (model / "encoder").exists()
    held = pd.read_csv(demo / "scores" / "results.csv", dtype={"slide_id": str})["slide_id"].iloc[0]
    r = run_cli("score", "--slides", _cohort(demo, [held], tmp_path / "one.csv"), "--model", model,
                "--out", tmp_path / "sc", "--threads", "1")
    said = " ".join(r.stderr.split())
    assert r.returncode != 0
    assert "has no encoder/ folder (copied without it" in said, said
    assert "copy the whole model folder again, with its encoder/" in said


def test_yes_no_calls_written_as_0_and_100_percent_are_refused(tmp_path, small_demo):
    """sTIL-high calls exported from 0/1 cells formatted as percentages ('0%', '100%') or typed as 0 and
    100 were trained on as sTIL% without a word, where the same calls as 0 and 1 are refused as classes
    (8 demo slides, 1 epoch: out-of-fold R² -0.89, MAE 68.6, exit 0). Refused alike now, before anything
    is written; 0 and 100 beside other labels are percentages and train."""
    demo = small_demo[0]
    labels = pd.read_csv(demo / "cohort" / "labels.csv", dtype={"slide_id": str})
    labels = labels[[(demo / "features" / f"{s}.h5").is_file() for s in labels["slide_id"]]].copy()
    labels["path"] = [str((demo / "cohort" / p).resolve()) for p in labels["path"]]
    calls = ["100%" if v >= 30 else "0%" for v in labels["stil"]]
    assert 0 < calls.count("100%") < len(calls) >= 4
    labels.assign(stil=calls)[["slide_id", "path", "stil"]].to_csv(tmp_path / "calls.csv", index=False)
    for command in (("train", "-f", demo / "features", "-o", tmp_path / "m", "--folds", "1", "--epochs", "1"),
                    ("evaluate", "--oof", demo / "model" / "cv" / "oof_predictions.csv", "-o", tmp_path / "e")):
        r = run_cli(command[0], tmp_path / "calls.csv", *command[1:])
        said = " ".join(r.stderr.split())
        assert r.returncode == 1 and not (tmp_path / "m").exists() and not (tmp_path / "e").exists(), said
        assert f"every sTIL label is 0 or 100 ({calls.count('100%')} slides 100, {calls.count('0%')} slides 0): they " \
               "look like classes" in said, said
    from weakstil.cohort_labels import refuse_class_labels

    refuse_class_labels(tmp_path / "some.csv", pd.DataFrame({"stil": [0.0, 100.0, 0.0, 100.0, 35.0]}))  # percentages


def test_a_group_column_left_empty_is_refused_with_its_fix(tmp_path, small_demo):
    """A ``group`` column left empty (or ``NA``) on every row was refused row by row with "Fix: correct
    or remove these rows": removing them would remove the cohort. The fix says to fill the column in or
    to split by slide; one empty group among filled ones keeps the row fix."""
    demo = small_demo[0]
    labels = pd.read_csv(demo / "cohort" / "labels.csv", dtype={"slide_id": str})
    labels = labels[[(demo / "features" / f"{s}.h5").is_file() for s in labels["slide_id"]]].copy()
    labels["path"] = [str((demo / "cohort" / p).resolve()) for p in labels["path"]]
    for name, groups in (("empty", [""] * len(labels)), ("na", ["NA"] * len(labels)),
                         ("one", [""] + [f"c{i % 3}" for i in range(1, len(labels))])):
        labels.assign(group=groups)[["slide_id", "path", "stil", "group"]].to_csv(tmp_path / f"{name}.csv", index=False)
        r = run_cli("train", tmp_path / f"{name}.csv", "-f", demo / "features", "-o", tmp_path / "m", "--folds", "1")
        said = " ".join(r.stderr.split())
        assert r.returncode == 1 and not (tmp_path / "m").exists(), said
        fixed = "Fix: fill in group (patient or centre), or pass --group-column none." in said
        assert fixed == (name != "one"), said
        assert ("remove these rows" in said) == (name == "one"), said
