"""The cohort workflow and the napari plugin from outside (hunt 27e).

* Snakemake redoes a job whose settings changed by its records in ``.snakemake/``: with them deleted (or the
  project moved), a rerun with a new ``mpp`` said "Nothing to be done" and kept the tiles, features, beds and
  model of the old tiling (0 of 24 jobs redone). It is now refused with the folders to delete.
* ``weakstil preflight`` said nothing of cohort slides that ``annotations`` does not outline, while the run
  warned of them (their tumour bed is the whole tissue in training).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import snakemake_fork
from conftest import ROOT, WORKFLOW_SLIDE_MM, no_slurm_controller_env

SNAKEFILE = ROOT / "pipelines" / "Snakefile"
LOCAL = ROOT / "pipelines" / "profiles" / "local"


def snakemake(workdir: Path, *args: str, config: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--directory",
           str(workdir), "--cores", "1", *args, "--config", "cohort=cohort/labels.csv", "folds=2", "threads=1", *config]
    return snakemake_fork.run(cmd, env=no_slurm_controller_env(workdir.parent))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, synth_cohort) -> Path:
    root = tmp_path_factory.mktemp("hunt27e")
    synth_cohort(root / "cohort", 4, seed=0, size_mm=WORKFLOW_SLIDE_MM, groups=2)
    return root


def test_changes_after_snakemakes_records_were_deleted_are_refused_not_kept(lab: Path, tmp_path: Path,
                                                                          monkeypatch) -> None:
    """Without Snakemake's records a changed setting (mpp), another scan under a slide's name (the tile job takes
    its fingerprint as a param) and a cohort with a slide taken off (the train job takes its content as a param)
    each said "Nothing to be done": the old tiles, features, beds and model were kept."""
    pytest.importorskip("snakemake")
    shutil.copytree(lab / "cohort", tmp_path / "cohort")  # (a slide is replaced below)
    first = snakemake(tmp_path, "results/settings.json", "results/tiles/synth_0000.h5")  # a real run: one tiling
    assert first.returncode == 0, first.stderr[-3000:]
    shutil.rmtree(tmp_path / ".snakemake")  # the records gone: a fresh clone, a cleaned folder, the project moved
    target = ("--dry-run", "results/tiles/synth_0000.h5")

    same = snakemake(tmp_path, *target)  # the same settings: nothing to refuse
    assert same.returncode == 0 and "Nothing to be done" in same.stdout + same.stderr, same.stderr[-2000:]
    changed = snakemake(tmp_path, *target, config=("mpp=0.6",))
    # old: "Nothing to be done", exit 0 (the 0.5 µm/px tiles kept, and the features, beds and model made from them)
    assert changed.returncode != 0, changed.stdout[-2000:] + changed.stderr[-2000:]
    line = next(x for x in changed.stderr.splitlines() if x.startswith("error:"))
    assert "mpp 0.5 -> 0.6" in line and "results/tiles" in line and "results/settings.json" in line, line
    assert "results/features" not in line  # only the folders that exist are named
    from weakstil.pipeline_preflight import default_config_file, load_workflow_config, run_preflight

    monkeypatch.chdir(tmp_path)  # `weakstil preflight` there says the same, as a warning
    config = load_workflow_config([default_config_file()], ["cohort=cohort/labels.csv", "folds=2", "mpp=0.6"])
    assert "warning: results was made with other settings or slides (mpp 0.5 -> 0.6" in run_preflight(config, slurm=False)

    slides = tmp_path / "cohort" / "slides"
    shutil.copyfile(slides / "synth_0001.tiff", slides / "synth_0000.tiff")  # another scan under the name
    rescanned = snakemake(tmp_path, *target)
    assert rescanned.returncode != 0, rescanned.stdout[-2000:]  # old: "Nothing to be done"
    line = next(x for x in rescanned.stderr.splitlines() if x.startswith("error:"))
    assert "another scan" in line and "results/tiles/synth_0000.h5" in line, line

    labels = pd.read_csv(tmp_path / "cohort" / "labels.csv")
    oof = tmp_path / "results" / "model" / "cv" / "oof_predictions.csv"  # as `weakstil train` writes it
    oof.parent.mkdir(parents=True)
    labels.rename(columns={"stil": "stil_true"}).assign(stil_pred=20.0)[["slide_id", "stil_true", "stil_pred"]] \
        .to_csv(oof, index=False)
    labels.iloc[:3].to_csv(tmp_path / "cohort" / "three.csv", index=False)  # a slide taken off
    fewer = snakemake(tmp_path, *target, config=("cohort=cohort/three.csv",))
    assert fewer.returncode != 0, fewer.stdout[-2000:]  # old: "Nothing to be done"
    line = next(x for x in fewer.stderr.splitlines() if x.startswith("error:"))
    assert "other slides, labels or groups than the model was trained on" in line and "results/model" in line, line

    for done in ("tiles", "model"):  # the fix as the lines give it
        shutil.rmtree(tmp_path / "results" / done)
    (tmp_path / "results" / "settings.json").unlink()
    fixed = snakemake(tmp_path, *target, config=("mpp=0.6", "cohort=cohort/three.csv"))
    assert fixed.returncode == 0 and "rule tile:" in fixed.stdout, fixed.stderr[-2000:]


def test_preflight_warns_of_cohort_slides_without_an_outline_as_the_run_does(lab: Path, tmp_path: Path) -> None:
    from weakstil.pipeline_preflight import default_config_file, load_workflow_config, run_preflight

    outlines = tmp_path / "outlines"
    outlines.mkdir()
    truth = lab / "cohort" / "truth"
    for sid in ("synth_0000", "synth_0001"):  # 2 of the 4 slides outlined
        shutil.copy(truth / f"{sid}_tumorbed.geojson", outlines / f"{sid}.geojson")
    cohort = lab / "cohort" / "labels.csv"
    assert len(pd.read_csv(cohort)) == 4
    config = load_workflow_config([default_config_file()], [f"cohort={cohort}", "folds=2", f"annotations={outlines}"])
    text = run_preflight(config, slurm=False)
    warning = next((x for x in text.splitlines() if "no outline" in x), None)  # old: none
    assert warning is not None and warning.startswith("warning: 2 of 4 cohort slide(s)"), text
    assert "synth_0002, synth_0003" in warning and "match no slide" not in warning
    # hunt 34c: an outline misnamed (a typo in its slide id) went unnamed, while `weakstil train` names it
    shutil.copy(truth / "synth_0002_tumorbed.geojson", outlines / "synth_002.geojson")
    warning = next(x for x in run_preflight(config, slurm=False).splitlines() if "no outline" in x)
    assert "1 outline(s) there match no slide (synth_002.geojson): misnamed?" in warning, warning  # old: not named

    config = load_workflow_config([default_config_file()], [f"cohort={cohort}", "folds=2", f"annotations={truth}"])
    assert "no outline" not in run_preflight(config, slurm=False)  # every slide outlined: no warning


def test_beds_dropped_without_records_name_the_model_too(tmp_path: Path, monkeypatch) -> None:
    """annotations set to null: the train job reads no beds any more (its input set shrinks), which file times
    alone never redo, so deleting the beds is not enough: the model is named as well."""
    import json

    import yaml

    from weakstil.pipeline_reruns import stale_without_records

    monkeypatch.chdir(tmp_path)  # no .snakemake/ here: Snakemake has no records of results/
    config = yaml.safe_load((ROOT / "pipelines" / "config.yaml").read_text(encoding="utf-8"))
    out = tmp_path / "results"
    for folder in ("tiles", "features", "tumorbed", "model"):
        (out / folder).mkdir(parents=True)
    (out / "settings.json").write_text(json.dumps({**config, "annotations": "outlines"}, default=str))
    assert stale_without_records("results", {**config, "annotations": "outlines", "device": "cpu"}) is None
    line = stale_without_records("results", {**config, "annotations": None})
    assert line is not None and 'annotations "outlines" -> null' in line, line
    assert "results/tumorbed results/model results/settings.json" in line and "results/tiles" not in line
    (tmp_path / ".snakemake" / "metadata").mkdir(parents=True)  # Snakemake's record of the settings job: its business
    from weakstil.pipeline_reruns import snakemake_record
    snakemake_record("results/settings.json").write_text("{}")
    assert stale_without_records("results", {**config, "annotations": None}) is None


def test_the_widget_names_qc_flags_in_words():
    """Hunt 27e: the widget's qc line read "few tumorbed tiles" (the flag's internal spelling); it now
    reads "few tumour-bed tiles", and the tooltip still gives each flag's name with its reason."""
    import json

    from napari_weakstil.summary import qc_view

    text, raised, tip = qc_view({"qc": "few_tumorbed_tiles;near_threshold",
                                 "qc_reasons": json.dumps({"few_tumorbed_tiles": "3 tumour-bed tiles (< 10)"})})
    assert raised and text == "qc: few tumour-bed tiles, high/low call uncertain"  # qc.flags.LABEL's words (38j)
    assert tip.splitlines()[0] == "few tumour-bed tiles (few_tumorbed_tiles): 3 tumour-bed tiles (< 10)"
    assert qc_view({"qc": ""}) == ("qc: no flags", False, "")


def test_a_cohorts_groups_and_zero_padded_ids_without_records(tmp_path: Path, monkeypatch) -> None:
    """Hunt 34c, .snakemake/ gone: the check of the cohort against the model's out-of-fold predictions read their
    slide ids as numbers (0001 -> 1), so an unchanged cohort of ids 0001-0004 was refused as "other slides or
    labels" at every such run (its fix, retraining, did not stop it); and it compared slides and labels only, so
    a slide moved to another patient (group: another fold split, the patient's slides on both sides of it) kept
    the model (Snakemake's records retrain it). Now the ids are read as text and the groups compared too."""
    import json

    import yaml

    from weakstil.cohort import read_cohort
    from weakstil.evaluation import write_predictions
    from weakstil.pipeline_reruns import stale_without_records

    monkeypatch.chdir(tmp_path)  # no .snakemake/ here: Snakemake has no records of results/
    rows = "".join(f"000{i},s{i}.tiff,{10 * i + 1},{g}\n" for i, g in zip(range(1, 5), ("p1", "p1", "p2", "p3")))
    Path("labels.csv").write_text("slide_id,path,stil,group\n" + rows)
    cohort = read_cohort("labels.csv", check_files=False)  # what the train job was given, as it writes it
    Path("results/model/cv").mkdir(parents=True)
    write_predictions(pd.DataFrame({"slide_id": cohort.slide_ids, "stil_true": cohort.labels.astype(float),
                                    "stil_pred": 20.0, "fold": [1, 1, 2, 2], "group": cohort.groups}),
                      "results/model/cv/oof_predictions.csv")
    config = yaml.safe_load((ROOT / "pipelines" / "config.yaml").read_text(encoding="utf-8")) | {"cohort": "labels.csv"}
    Path("results/settings.json").write_text(json.dumps(config))
    assert stale_without_records("results", config) is None  # old code: "cohort labels.csv: other slides or labels"
    Path("labels.csv").write_text("slide_id,path,stil,group\n" + rows.replace("0002,s2.tiff,21,p1", "0002,s2.tiff,21,p2"))
    line = stale_without_records("results", config)  # old code: None (the model of the old split kept)
    assert line is not None and "other slides, labels or groups" in line and "delete results/model " in line, line
