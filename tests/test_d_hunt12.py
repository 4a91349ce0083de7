"""The cohort workflow (hunt 12, area d): paths Snakemake would read as wildcards, the short spelling
of an option the train rule sets, the `weakstil` command setting, and the bed of a score slide whose
per-slide steps failed. Fast checks: the preflight's functions and Snakemake dry runs
(tests/test_pipeline.py runs the workflow)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import snakemake_fork
from conftest import ROOT, WORKFLOW_SLIDE_MM, no_slurm_controller_env

pytest.importorskip("snakemake")

from weakstil.pipeline_preflight import PreflightError, check_workflow, load_workflow_config  # noqa: E402
from weakstil.pipeline_settings_check import settings_problems  # noqa: E402

SNAKEFILE = ROOT / "pipelines" / "Snakefile"
LOCAL = ROOT / "pipelines" / "profiles" / "local"
DEFAULTS = ROOT / "pipelines" / "config.yaml"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, synth_cohort) -> Path:
    """3 synthetic slides (2 centres) in cohort/; braces.csv lists them from a folder named `b{x}`;
    new/extra.tiff, a score slide outlined in ann/ (with the cohort's outlines)."""
    root = tmp_path_factory.mktemp("hunt12d")
    synth_cohort(root / "cohort", 3, seed=0, size_mm=WORKFLOW_SLIDE_MM, groups=2)
    shutil.copytree(root / "cohort" / "slides", root / "cohort" / "b{x}")
    labels = pd.read_csv(root / "cohort" / "labels.csv")
    labels.assign(path=[p.replace("slides/", "b{x}/") for p in labels["path"]]).to_csv(
        root / "cohort" / "braces.csv", index=False)
    (root / "new").mkdir()
    shutil.copy(root / "cohort" / labels["path"].iloc[0], root / "new" / "extra.tiff")
    shutil.copytree(root / "cohort" / "truth", root / "ann")
    shutil.copy(root / "ann" / "synth_0000_tumorbed.geojson", root / "ann" / "extra.geojson")
    return root


def dry_run(root: Path, *config: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--directory",
           str(root), "--dry-run", "--config", "folds=2", "threads=1", *config]
    return snakemake_fork.run(cmd, env=no_slurm_controller_env(root.parent))


def settings(*overrides: str) -> dict:
    return settings_problems(load_workflow_config([DEFAULTS], ["folds=2", *overrides]))


def test_a_slide_path_with_braces_is_one_error_line_before_the_run(cohort: Path, monkeypatch) -> None:
    """Snakemake reads {x} in a rule's input as a wildcard: a slide in folder `b{x}` passed the
    preflight and then stopped the run with a WildcardError (a score slide and `out` alike)."""
    proc = dry_run(cohort, "cohort=cohort/braces.csv")
    assert proc.returncode == 1
    assert "WildcardError" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "b{x}" in errors[0] and "wildcards" in errors[0] and "Fix: rename" in errors[0]

    monkeypatch.chdir(cohort)  # `weakstil preflight` says the same
    with pytest.raises(PreflightError, match=r"b\{x\}.*wildcards"):
        check_workflow(load_workflow_config([DEFAULTS], ["folds=2", "cohort=cohort/braces.csv"]))
    with pytest.raises(PreflightError, match=r"score_slides.*wildcards"):
        check_workflow(load_workflow_config([DEFAULTS], ["folds=2", "cohort=cohort/labels.csv",
                                                         "score_slides=['cohort/b{x}/synth_0000.tiff']"]))
    assert "out" in settings("out=res{run}") and "wildcards" in settings("out=res{run}")["out"].message
    ids = pd.read_csv(cohort / "cohort" / "labels.csv")  # an outline found by a slide id P{0}: a rule's input too
    ids.assign(slide_id=["P{0}", "P1", "P2"]).to_csv(cohort / "cohort" / "ids.csv", index=False)
    (cohort / "ann_ids").mkdir(exist_ok=True)
    shutil.copy(cohort / "ann" / "synth_0000_tumorbed.geojson", cohort / "ann_ids" / "P{0}.geojson")
    with pytest.raises(PreflightError, match=r"P\{0\}\.geojson.*wildcards"):
        check_workflow(load_workflow_config([DEFAULTS], ["folds=2", "cohort=cohort/ids.csv", "annotations=ann_ids"]))
    assert dry_run(cohort, "cohort=cohort/labels.csv").returncode == 0  # the same slides, no braces


@pytest.mark.parametrize("extra", ["-f other", "-fother --hidden 32", "-o elsewhere"])
def test_train_extra_may_not_set_a_workflow_option_by_its_short_name(extra: str) -> None:
    """`--features other` was refused but `-f other` passed, and the train job trained on other
    features (the last one given wins) while settings.json and the report showed the workflow's."""
    problems = settings(f"train_extra={extra}")
    assert "train_extra" in problems, problems
    assert ("--features" if "-f" in extra else "--out") in problems["train_extra"].message
    assert settings("train_extra=--hidden 32 --lr 0.01") == {}


def test_the_weakstil_command_must_exist() -> None:
    """A misspelt `weakstil` command passed the preflight; every job then failed with exit 127."""
    problems = settings("weakstil=wekstil-not-installed --verbose")
    assert "weakstil" in problems and "command not found" in problems["weakstil"].message
    assert settings(f"weakstil={sys.executable} -m weakstil") == {}
    assert settings("weakstil=null") == {}


def test_a_score_slide_whose_steps_failed_is_scored_again_with_its_annotation(cohort: Path) -> None:
    """A score slide whose embed step failed for a passing reason (a full disk) was embedded again by
    the score job, which had only --tumorbed-beds (no bed file for it): an `ok` row scored on the
    whole tissue, its annotation unused (another sTIL% than the run that did not fail: 10.66 vs
    12.12, `tumorbed_source` tissue). That call gets the tumorbed step's sources now."""
    status = cohort / "results" / "score_slides"
    status.mkdir(parents=True, exist_ok=True)
    failed = {"slide": str(cohort / "new" / "extra.tiff"), "status": "error", "step": "embed",
              "error": "cannot write features: no space left on device"}
    (status / "tiles").mkdir(exist_ok=True)
    for name in ("tiles/extra.json", "extra.json"):
        (status / name).write_text(json.dumps({**failed, "status": "ok", "step": None, "error": None}
                                              if name == "tiles/extra.json" else failed))
    try:
        proc = dry_run(cohort, "cohort=cohort/labels.csv", "annotations=ann", "score_slides=[new/extra.tiff]")
        assert proc.returncode == 0, proc.stderr[-2000:]
        calls = [line for line in proc.stdout.splitlines() if " -m weakstil score " in line]
        assert calls, proc.stdout[-2000:]
        score = calls[-1]
        assert "extra.tiff --model" in score and "--annotations ann" in score
        assert score.count(" -m weakstil score ") == 1  # one call: no other score slide
    finally:
        shutil.rmtree(cohort / "results")


def test_score_slides_y_and_y_tiles_have_their_own_status_files(cohort: Path) -> None:
    """Hunt 37c: score slides `Y.tiff` and `Y.tiles.tiff` (a name with dots) stopped the workflow before any job:
    "AmbiguousRuleException: Rules score_slide and score_slide_tiles are ambiguous for the file
    results/score_slides/Y.tiles.json" (Y's tile status and Y.tiles's status were one file). The tile status
    is score_slides/tiles/<slide>.json now."""
    for name in ("Y.tiff", "Y.tiles.tiff"):
        shutil.copy(cohort / "new" / "extra.tiff", cohort / "new" / name)
    try:
        proc = dry_run(cohort, "cohort=cohort/labels.csv", "score_slides=[new/Y.tiff, new/Y.tiles.tiff]")
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
        for status in ("tiles/Y.json", "tiles/Y.tiles.json", "Y.json", "Y.tiles.json"):
            assert f"results/score_slides/{status}" in proc.stdout
    finally:
        for name in ("Y.tiff", "Y.tiles.tiff"):
            (cohort / "new" / name).unlink()


def test_embed_jobs_split_the_threads_snakemake_gives_them(cohort: Path, tmp_path: Path) -> None:
    """`--cores 1` with threads 4: Snakemake gives each job 1 thread (train got --threads 1), but every
    embed job planned for 4 CPUs (--workers 1 --threads 3): `--cores N` did not keep it to N cores."""
    wrapper = tmp_path / "weakstil-recorded"  # the real CLI, its arguments written down
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "args.txt"}\nexec {sys.executable} -m weakstil "$@"\n')
    wrapper.chmod(0o755)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--directory",
           str(cohort), "--cores", "1", "thr/features/synth_0000.h5", "--config", "folds=2", "threads=4",
           "cohort=cohort/labels.csv", "out=thr", f"weakstil={wrapper}"]
    try:
        proc = snakemake_fork.run(cmd, env=no_slurm_controller_env(cohort.parent))
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        embed = [line for line in (tmp_path / "args.txt").read_text().splitlines() if line.startswith("embed ")]
        assert len(embed) == 1 and embed[0].endswith("--workers 1 --threads 1"), embed
        # another `threads` (or --cores) embeds nothing again: the same features
        again = snakemake_fork.run([*cmd[:-4], "threads=2", *cmd[-3:], "--dry-run"],
                                   env=no_slurm_controller_env(cohort.parent))
        assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
    finally:
        shutil.rmtree(cohort / "thr", ignore_errors=True)
