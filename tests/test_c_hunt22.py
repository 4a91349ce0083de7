"""Hunt 22c: a researcher retraining WeakSTIL on a new cohort (cohort CSVs, cross-validation folds,
the numbers train/evaluate/report print)."""

from __future__ import annotations

import shlex

import pandas as pd
import pytest

from conftest import run_cli, shared_file
from planted import TRAIN_BRIEF as BRIEF
from planted import make_planted_cohort
from planted import said as _said


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A 10-slide planted cohort (features only; 5 groups)."""
    root = tmp_path_factory.mktemp("hunt22c")
    table, _ = make_planted_cohort(root / "cohort", 10, dim=8, tiles=(12, 20), n_groups=5, seed=22)
    return root, table


@pytest.mark.parametrize("column", ["Medical center", "bcr_patient_barcode", "case_submitter_id",
                                    "tissue_source_site", "institution_name"])
def test_a_tcga_centre_or_patient_column_is_named_not_silently_ignored(planted, tmp_path, column):
    """Finding 1: a cohort CSV joined from the TCGA label files (their centre column is 'Medical center')
    or from GDC metadata ('bcr_patient_barcode', 'tissue_source_site') was split by slide without a
    word: only whole names ('patient_id', 'centre') were recognised, so slides of one centre or
    patient sat in two folds, trained on in one and tested in the other."""
    root, table = planted
    centres = pd.read_csv(shared_file("labels/tcga_bc_folds.csv"))["Medical center"]
    labels = table[["slide_id", "path", "stil"]].copy()
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels[column] = [centres.iloc[i // 2 * 40] for i in range(len(labels))]  # two slides per value
    labels.to_csv(tmp_path / "tcga.csv", index=False)
    proc = run_cli("train", tmp_path / "tcga.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m", "--folds", "2", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    assert f"column '{column}' is not used to keep groups apart" in _said(proc)
    assert f"--group-column {shlex.quote(column)}" in _said(proc)


def test_the_group_column_fix_is_quoted_for_the_shell(planted, tmp_path):
    """Finding 2: the warning's fix for a column named with a space read 'pass --group-column Medical center';
    typed as shown, that is two arguments and train refused 'center' as an extra argument."""
    root, table = planted
    labels = table[["slide_id", "path", "stil"]].copy()
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels["Medical center"] = [f"centre {i // 2}" for i in range(len(labels))]
    labels.to_csv(tmp_path / "c.csv", index=False)
    proc = run_cli("train", tmp_path / "c.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m", "--folds", "2", *BRIEF)
    fix = _said(proc).split("pass --group-column ", 1)[1].split(" (or", 1)[0]
    proc = run_cli("train", tmp_path / "c.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m2", "--folds", "2", "--group-column", *shlex.split(fix), *BRIEF)
    assert proc.returncode == 0, proc.stderr
    oof = pd.read_csv(tmp_path / "m2" / "cv" / "oof_predictions.csv")
    assert oof.groupby("group")["fold"].nunique().max() == 1  # each centre on one side


def test_columns_that_name_no_group_are_not_taken_for_one():
    """The word match stays on words: synth's own columns and names that only contain a group word
    ('showcase', 'parasite') are not grouping columns."""
    from weakstil.cohort import _group_like

    assert not any(_group_like(c) for c in ("slide_id", "path", "stil", "look", "hard", "showcase", "parasite",
                                             "T-number", "stil_pct"))
    assert all(_group_like(c) for c in ("patient_id", "Patient ID", "PatientID", "CaseID", "Centres", "Group"))


def test_three_slides_get_no_correlation_interval_outside_minus_one_to_one(tmp_path):
    """Finding 3: 'evaluate' of a 3-slide cohort (--folds 3 on 3 slides) wrote the Pearson r interval
    [-1.0000000000000002, 1.0000000000000002]: most bootstrap resamples of 3 slides hold 2 distinct
    slides, whose r is ±1 whatever the model, and rounding put it past 1."""
    import json

    pd.DataFrame({"slide_id": ["A", "B", "C"], "path": ["a.tiff", "b.tiff", "c.tiff"],
                  "stil": [6.334, 34.1269, 64.8511]}).to_csv(tmp_path / "c.csv", index=False)
    pd.DataFrame({"slide_id": ["A", "B", "C"], "stil_true": [6.334, 34.1269, 64.8511],
                  "stil_pred": [44.2327, 64.8261, 36.364], "fold": [1, 2, 3]}).to_csv(tmp_path / "oof.csv", index=False)
    proc = run_cli("evaluate", tmp_path / "c.csv", "--oof", tmp_path / "oof.csv", "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["pearson_r"] == pytest.approx(-0.2954, abs=1e-4)  # 3 distinct slides: r is defined
    assert all(v is None or -1.0 <= v <= 1.0 for v in m["ci95"]["pearson_r"])


def test_a_perfect_fit_has_r_one_not_more():
    from weakstil.metrics import pearson, spearman

    y = [0.7086, 1.1915, 3.1764, 5.0546, 6.334, 11.3421, 12.9567, 19.5574, 30.7445, 32.4576, 34.1269, 64.8511]
    assert pearson(y, [3 * v + 0.1 for v in y]) <= 1.0 and spearman(y, y) <= 1.0
    assert pearson([1.0, 2.0, 1.0, 2.0], [5.0, 7.0, 5.0, 7.0]) != pearson([1.0, 2.0, 1.0, 2.0], [5.0, 7.0, 5.0, 7.0])


def test_train_says_n_a_for_an_undefined_metric_as_evaluate_does(planted, tmp_path):
    """Finding 4: a cohort whose labels are all 0 % printed 'cross-validation: R² nan, Pearson nan,
    MAE 0.14, AUC@30 nan' and then 'CV (4 folds): ... AUC@30 n/a': two spellings of one number in one
    run, and 'evaluate --oof' of the same predictions printed 'n/a' (metrics.json holds null)."""
    root, table = planted
    labels = table[["slide_id", "path", "stil"]].copy()
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels["stil"] = 0.0
    labels.to_csv(tmp_path / "zeros.csv", index=False)
    proc = run_cli("train", tmp_path / "zeros.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m", "--folds", "2", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    said = _said(proc)
    assert "cross-validation: R² n/a, Pearson n/a," in said and "AUC@30 n/a" in said
    assert "CV (2 folds): R² n/a, Pearson n/a," in said and " nan" not in said


def test_a_timm_checkpoint_folder_is_refused_with_the_card_to_write(tmp_path):
    """Finding 5: '--encoder DIR' of a timm checkpoint folder (timm's save_for_hf: config.json +
    pytorch_model.bin) was told 'pass a weakstil pretrain output directory or a built-in encoder name',
    neither of which a researcher with their own checkpoint has. The fix now names the card to write
    into it, filled from config.json, and the weights to pass; following it builds the encoder."""
    import timm
    from timm.models import save_for_hf

    from weakstil.encoders.factory import create_encoder

    folder = tmp_path / "my_resnet"
    save_for_hf(timm.create_model("resnet18", num_classes=0), folder)
    proc = run_cli("embed", tmp_path / "none.tiff", "--encoder", folder, "--out", tmp_path / "f")
    err = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(err) == 1, proc.stderr
    assert ("Fix: write " + str(folder / "card.yaml") + " (name: my_resnet, source: timm, model: resnet18, "
            "input_px: 224, mpp, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], embed_dim: 512") in err[0]
    assert f"pass --weights {folder / 'pytorch_model.bin'}" in err[0]
    (folder / "card.yaml").write_text("name: my_resnet\nsource: timm\nmodel: resnet18\ninput_px: 224\nmpp: 0.5\n"
                                      "mean: [0.485, 0.456, 0.406]\nstd: [0.229, 0.224, 0.225]\nembed_dim: 512\n")
    enc = create_encoder(folder, weights=folder / "pytorch_model.bin")
    assert enc.card.embed_dim == 512 and enc.weights_source.endswith("pytorch_model.bin")


def test_a_hub_id_given_as_weights_is_named_as_one(tmp_path, monkeypatch):
    """Finding 5b: '--weights hf-hub:org/repo' (offline) said 'weights file not found. Fix: check the
    --weights path'; it is a hub id, which belongs in the card's hub_id. Nothing is downloaded."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = run_cli("embed", tmp_path / "none.tiff", "--encoder", "small-cnn", "--weights",
                   "hf-hub:timm/resnet18.a1_in1k", "--out", tmp_path / "f")
    said = _said(proc)
    assert proc.returncode != 0 and "is a hub id, not a weights file (nothing was downloaded)" in said, proc.stderr
    assert "hub_id: hf-hub:timm/resnet18.a1_in1k" in said and not (tmp_path / "f").exists()


def test_early_stopping_without_a_validation_slide_says_so(planted, tmp_path):
    """Finding 6: '--stopping early' on a 2-slide cohort (one training slide per fold) had no slide to
    validate on and trained the full --epochs as '--stopping fixed', without a word."""
    root, table = planted
    labels = table[["slide_id", "path", "stil"]].iloc[:2].copy()
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels.to_csv(tmp_path / "two.csv", index=False)
    proc = run_cli("train", tmp_path / "two.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m", "--folds", "2", "--stopping", "early", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    said = _said(proc)
    assert "fold 1/2: 1 training slide(s) leave none for the early-stopping validation split" in said
    assert "trained for all 2 epochs (as --stopping fixed)" in said


def test_too_few_slides_for_the_folds_says_slide_not_group(planted, tmp_path):
    """Finding 7: 3 slides, no group column, the default 5 folds: 'every fold needs at least one group of
    its own' for a cohort that has no groups (it is split by slide)."""
    root, table = planted
    labels = table[["slide_id", "path", "stil"]].iloc[:3].copy()
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels.to_csv(tmp_path / "three.csv", index=False)
    proc = run_cli("train", tmp_path / "three.csv", "--features", root / "cohort" / "features", "--out",
                   tmp_path / "m", *BRIEF)
    assert proc.returncode != 0 and not (tmp_path / "m").exists()
    assert "3 slides but 5 folds: every fold needs at least one slide of its own. Fix: pass --folds 3 or fewer" \
        in _said(proc)


def test_evaluate_model_refuses_labels_written_as_fractions(planted, tmp_path, monkeypatch):
    """Finding 8: 'evaluate --model' of the training cohort with its sTIL labels written as fractions
    (0.45 for 45 %) compared them with the model's percentages, wrote R² -17588 and exited 0 with only
    the CSV's 'look like fractions' warning, where 'evaluate --oof' refuses the same labels. Now it is
    refused before anything is written; the labels as percentages evaluate, and so does a model trained
    on fractions evaluated on fractions."""
    root, table = planted
    labels = table[["slide_id", "path", "stil"]].copy()
    labels["path"] = [str((root / "cohort" / p).resolve()) for p in labels["path"]]
    labels.to_csv(tmp_path / "pct.csv", index=False)
    labels.assign(stil=labels["stil"] / 100).to_csv(tmp_path / "frac.csv", index=False)
    features = root / "cohort" / "features"
    fit = ("--folds", "1", "--hidden", "16", "--epochs", "40", "--members", "1", "--threads", "1")
    assert run_cli("train", tmp_path / "pct.csv", "-f", features, "-o", tmp_path / "m", *fit).returncode == 0
    proc = run_cli("evaluate", tmp_path / "frac.csv", "--model", tmp_path / "m", "-f", features, "-o", tmp_path / "e")
    assert proc.returncode == 1 and not (tmp_path / "e").exists(), proc.stderr
    assert "fractions, where sTIL labels are percentages 0-100. Fix: write the cohort's sTIL labels as " \
           "percentages (x 100)" in _said(proc)
    proc = run_cli("evaluate", tmp_path / "pct.csv", "--model", tmp_path / "m", "-f", features, "-o", tmp_path / "e")
    assert proc.returncode == 0, proc.stderr
    # train refuses fractions since hunt 31f; a model an older weakstil trained on them still evaluates
    assert run_cli("train", tmp_path / "frac.csv", "-f", features, "-o", tmp_path / "mf", *fit).returncode == 1
    monkeypatch.setattr("weakstil.cohort_labels.refuse_fraction_labels", lambda *a, **k: None)
    assert run_cli("train", tmp_path / "frac.csv", "-f", features, "-o", tmp_path / "mf", *fit).returncode == 0
    proc = run_cli("evaluate", tmp_path / "frac.csv", "--model", tmp_path / "mf", "-f", features, "-o",
                   tmp_path / "ef")
    assert proc.returncode == 0, proc.stderr
