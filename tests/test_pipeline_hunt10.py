"""The cohort workflow names, finds and checks slides as the commands do (hunt 10): symbolic links,
CSV slide ids that differ from the file names, score slides named like cohort ids, train_extra,
an emptied score_slides, the detector's annotations, embed threads, group_column None, cohort slides
that cannot be tiled, and where a bad setting was set. Fast checks: the preflight, pure functions and
Snakemake dry runs (tests/test_pipeline.py runs the workflow end to end)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import snakemake_fork
from conftest import ROOT, WORKFLOW_SLIDE_MM, no_slurm_controller_env

pytest.importorskip("snakemake")

from weakstil.errors import WeakSTILError  # noqa: E402
from weakstil.pipeline_preflight import PreflightError, check_workflow, load_workflow_config  # noqa: E402
from weakstil.pipeline_settings_check import embed_threads, score_slide_files, settings_problems  # noqa: E402

SNAKEFILE = ROOT / "pipelines" / "Snakefile"
LOCAL = ROOT / "pipelines" / "profiles" / "local"
DEFAULTS = ROOT / "pipelines" / "config.yaml"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, synth_cohort) -> Path:
    """4 cohort slides (2 centres) under cohort/, one more slide in new/; ids.csv names them A-D;
    links.csv reaches them through symbolic links named patient_0-3."""
    root = tmp_path_factory.mktemp("hunt10")
    synth_cohort(root / "cohort", 5, seed=0, size_mm=WORKFLOW_SLIDE_MM, groups=2)
    labels = pd.read_csv(root / "cohort" / "labels.csv")
    labels.iloc[:4].to_csv(root / "cohort" / "labels.csv", index=False)
    (root / "new").mkdir()
    shutil.move(root / "cohort" / labels["path"].iloc[4], root / "new" / "new_slide.tiff")
    ids = labels.iloc[:4].assign(slide_id=list("ABCD"))
    ids.to_csv(root / "cohort" / "ids.csv", index=False)
    (root / "links").mkdir()
    for i, path in enumerate(labels["path"].iloc[:4]):
        (root / "links" / f"patient_{i}.tiff").symlink_to(root / "cohort" / path)
    links = labels.iloc[:4].assign(slide_id=[f"patient_{i}" for i in range(4)],
                                   path=[f"../links/patient_{i}.tiff" for i in range(4)])
    links.to_csv(root / "cohort" / "links.csv", index=False)
    return root


def dry_run(root: Path, *config: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--directory",
           str(root), "--dry-run", "--printshellcmds", *args, "--config", "folds=2", "threads=1", *config]
    return snakemake_fork.run(cmd, env=no_slurm_controller_env(root.parent))


def config(root: Path, *overrides: str) -> dict:
    return load_workflow_config([DEFAULTS], ["folds=2", *overrides])


def test_symlinked_slides_are_named_after_the_link(cohort: Path, monkeypatch) -> None:
    """weakstil tile/embed name outputs after the link, weakstil train looks for the link's name: the
    workflow used the link's target (features/synth_0000.h5) and training found no features."""
    monkeypatch.chdir(cohort)
    files, _, keys = score_slide_files({}, [str(cohort / "cohort" / "../links" / f"patient_{i}.tiff")
                                            for i in range(4)])
    assert keys == [f"patient_{i}" for i in range(4)]
    assert Path(files["patient_0"]).is_symlink()
    proc = dry_run(cohort, "cohort=cohort/links.csv")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "features/patient_0.h5" in proc.stdout and "synth_0000" not in proc.stdout


def test_annotations_are_found_by_the_cohort_slide_id_as_train_finds_them(cohort: Path, monkeypatch) -> None:
    """Outlines named <slide_id>.geojson: the beds used them (the job's input, `--cohort`); outlines
    named after the files: the preflight accepts them (the jobs use them too)."""
    monkeypatch.chdir(cohort)
    by_id, by_file = cohort / "ann_ids", cohort / "ann_files"
    for folder, names in ((by_id, "ABCD"), (by_file, [f"synth_000{i}" for i in range(4)])):
        folder.mkdir(exist_ok=True)
        for i, name in enumerate(names):
            shutil.copy(cohort / "cohort" / "truth" / f"synth_000{i}_tumorbed.geojson", folder / f"{name}.geojson")
    check_workflow(config(cohort, "cohort=cohort/ids.csv", "annotations=ann_files"))  # refused before
    proc = dry_run(cohort, "cohort=cohort/ids.csv", "annotations=ann_ids", "tumorbed=train")
    assert proc.returncode == 0, proc.stderr[-2000:]
    bed = proc.stdout.split("rule tumorbed:", 1)[1].split("\n\n", 1)[0]
    # the slide's outline is found by its CSV slide id (since hunt 41d no input: its content is a param, so the same
    # outlines in another folder redo no bed, tests/test_pipeline.py)
    assert "--annotations ann_ids" in bed and "--cohort cohort/ids.csv" in bed
    detector = proc.stdout.split("rule tumorbed_detector:", 1)[1].split("\n\n", 1)[0]
    assert "--annotations ann_ids" in detector and "--cohort cohort/ids.csv" in detector


def test_a_score_slide_named_like_a_cohort_slide_id_is_refused(cohort: Path, monkeypatch) -> None:
    monkeypatch.chdir(cohort)
    shutil.copy(cohort / "new" / "new_slide.tiff", cohort / "new" / "A.tiff")
    try:
        with pytest.raises(PreflightError, match=r"A\.tiff .*slide id of cohort slide .*synth_0000"):
            check_workflow(config(cohort, "cohort=cohort/ids.csv", "score_slides=[new/A.tiff]"))
    finally:
        (cohort / "new" / "A.tiff").unlink()
    check_workflow(config(cohort, "cohort=cohort/ids.csv", "score_slides=[new/new_slide.tiff]"))


def test_train_extra_may_not_repeat_device_or_group_column() -> None:
    base = {"cohort": "c.csv", "out": "o", "encoder": "small-cnn", "device": "auto", "group_column": "group"}
    problems = settings_problems({**base, "train_extra": "--group-column none --device cpu"})
    assert "--device, --group-column" in problems["train_extra"].message
    assert "train_extra" not in settings_problems({**base, "group_column": None, "train_extra": "--group-column g"})


def test_an_emptied_score_slides_list_empties_results_csv(cohort: Path) -> None:
    """results.csv is always a target: with no score slides it is rewritten with no rows (it kept the
    last list's rows, scored by an older model). That job needs no model, so it runs here alone."""
    proc = dry_run(cohort, "cohort=cohort/labels.csv", "score_slides=[]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rule score:" in proc.stdout
    out = cohort / "r_empty"
    (out / "scores").mkdir(parents=True, exist_ok=True)
    (out / "scores" / "old_heatmap.png").write_bytes(b"stale")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--directory",
           str(cohort), "--cores", "1", str(out / "scores" / "results.csv"), "--config", "folds=2",
           "cohort=cohort/labels.csv", f"out={out}", "score_slides=[]"]
    proc = snakemake_fork.run(cmd, env=no_slurm_controller_env(cohort.parent))
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(out / "scores" / "results.csv")
    assert len(table) == 0 and "slide_id" in table.columns
    assert not (out / "scores" / "old_heatmap.png").exists()


def test_embed_jobs_get_the_threads_setting(cohort: Path) -> None:
    assert embed_threads(6, "cpu", gpu=False) == (2, 4)
    assert sum(embed_threads(1, "auto", gpu=False)) <= 2
    proc = dry_run(cohort, "cohort=cohort/labels.csv")
    embed = [line for line in proc.stdout.splitlines() if " embed " in line and "--out" in line]
    assert embed and all("--workers 1 --threads 1" in line for line in embed)


def test_group_column_none_means_no_groups_to_preflight_and_run_alike(cohort: Path, monkeypatch) -> None:
    """4 slides in 2 centres, folds 4: fine when split by slide (group_column None, as train reads it)."""
    monkeypatch.chdir(cohort)
    (cohort / "gc.yaml").write_text("group_column: None\n")
    check_workflow(load_workflow_config([DEFAULTS, cohort / "gc.yaml"], ["cohort=cohort/labels.csv", "folds=4"]))
    proc = dry_run(cohort, "cohort=cohort/labels.csv", "folds=4", args=("--configfile", str(cohort / "gc.yaml")))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--group-column None" in proc.stdout


def test_a_cohort_slide_that_cannot_be_tiled_is_refused_before_the_run(cohort: Path, monkeypatch) -> None:
    monkeypatch.chdir(cohort)
    (cohort / "cohort" / "slides" / "broken.svs").write_text("not a slide")
    bad = pd.read_csv(cohort / "cohort" / "labels.csv")
    bad.loc[len(bad)] = ["broken", "slides/broken.svs", 10.0, bad["group"].iloc[0]]
    bad.to_csv(cohort / "cohort" / "bad.csv", index=False)
    with pytest.raises(WeakSTILError, match=r"1 cohort slide cannot be tiled: .*broken\.svs"):
        check_workflow(config(cohort, "cohort=cohort/bad.csv"))


def test_the_runs_error_line_names_the_file_that_set_the_key(cohort: Path) -> None:
    (cohort / "my.yaml").write_text("epochs: abc\n")
    proc = dry_run(cohort, "cohort=cohort/labels.csv", args=("--configfile", str(cohort / "my.yaml")))
    assert proc.returncode != 0
    error = next(line for line in proc.stderr.splitlines() if line.startswith("error:"))
    assert "epochs is 'abc' (in " in error and "my.yaml" in error
