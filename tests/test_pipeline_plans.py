"""The Snakemake cohort workflow's plans, checked by dry runs that need no finished run: bad settings, the
SLURM profile, a detector trained in the workflow, no per-slide beds without annotations.

These were in test_pipeline.py, whose module runs on one pytest-xdist worker (``--dist loadscope``) behind its
real runs (its first run alone took 45 s of the suite's 528 s); here they run beside it on the other worker,
from the same cohort (conftest's shared synthetic slides)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import importorskip_slurm_plugin
from test_pipeline import COHORT_SLIDES, FAST, SLURM, job_stats, make_workdir, snakemake

pytest.importorskip("snakemake")
importorskip_slurm_plugin()  # (its import asks scontrol: see conftest)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synth_cohort) -> Path:
    return make_workdir(tmp_path_factory.mktemp("pipeline_plans"), synth_cohort)


def test_bad_settings_fail_before_any_job(workdir: Path) -> None:
    proc = snakemake(workdir, "--dry-run", config=["folds=1"])
    assert proc.returncode != 0
    assert "error: folds is 1" in proc.stderr and "Fix: set folds to 2 or more" in proc.stderr
    # (a missing cohort CSV fails in the same preflight: tests/test_pipeline_preflight.py, test_faults.py)
    proc = snakemake(workdir, "--dry-run", config=["folds=2", "score_slides=[nowhere/*.svs]"])
    assert proc.returncode != 0 and "error: nowhere/*.svs (score_slides in --config score_slides=[nowhere/*.svs]): " \
        "no slide file matches" in proc.stderr
    # the late failure: more folds than centres used to stop training after every embedding
    proc = snakemake(workdir, "--dry-run", config=["folds=5"])
    assert proc.returncode != 0
    assert ("error: cohort/labels.csv: the cohort has 2 groups in column 'group' but folds is 5" in proc.stderr
            and "Fix: set folds to 2 or fewer" in proc.stderr)
    # an empty output folder: one line, not a TypeError from pathlib (outside fault hunt)
    proc = snakemake(workdir, "--dry-run", config=["folds=2", "out="])
    assert proc.returncode != 0 and "TypeError" not in proc.stdout + proc.stderr
    assert "error: out is empty (or not a path). Fix: set out to the output folder" in proc.stderr
    # the one line alone: no Snakemake file, line and traceback lines after it (outside fault hunt 7C #5)
    assert [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("Using profile")] == [
        "error: out is empty (or not a path). Fix: set out to the output folder (--config out=PATH or --configfile)"]


def test_slurm_profile_dry_run(workdir: Path) -> None:
    """The SLURM profile plans every job with its partition and GPUs from the workflow config,
    without a cluster (a dry run never calls sbatch)."""
    proc = snakemake(workdir, "--dry-run", profile=SLURM,
                     config=[*FAST, "out=results_slurm", "slurm={partition: short, gpu_partition: a100q, "
                             "gpus_per_embed: 2, gpu_model: a100}"])
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Using profile" in log and str(SLURM) in log
    assert job_stats(log) == {"settings": 1, "tile": COHORT_SLIDES, "embed": COHORT_SLIDES,
                              "tumorbed": COHORT_SLIDES, "score_slide_tiles": 1,
                              "score_slide": 1, "train": 1, "evaluate": 1, "report": 1, "score": 1, "all": 1}
    embed = log.split("rule score_slide:", 1)[1].split("Shell command", 1)[0]  # embeds the score slide on the GPUs
    assert "slurm_partition=a100q" in embed and "gpu=2" in embed
    embed = log.split("rule embed:", 1)[1].split("Shell command", 1)[0]
    resources = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", embed).group(1).split(", "))
    assert resources["slurm_partition"] == "a100q" and resources["gpu"] == "2" and resources["gpu_model"] == "a100"
    train = log.split("rule train:", 1)[1].split("Shell command", 1)[0]
    assert "slurm_partition=short" in train and "gpu=" not in train

    # the plugin turns those resources into these sbatch options
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    class Resources(dict):
        __getattr__ = dict.get

    job = type("Job", (), {"resources": Resources(gpu=2, gpu_model="a100")})()
    assert set_gres_string(job).strip() == "--gpus=a100:2"


def test_tumour_bed_detector_trained_in_the_workflow_feeds_training(workdir: Path) -> None:
    proc = snakemake(workdir, "--dry-run", config=[*FAST, "out=results_bed", "tumorbed=train"])
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert job_stats(log)["tumorbed_detector"] == 1 and job_stats(log)["tumorbed"] == COHORT_SLIDES
    assert job_stats(log)["score_slide"] == 1
    assert "tumorbed train --features results_bed/features --annotations cohort/truth --cohort" in log
    assert "--out results_bed/detector" in log
    bed = log.split("rule tumorbed:", 1)[1].split("\n\n", 1)[0]
    assert "--out results_bed/tumorbed --annotations cohort/truth --tumorbed results_bed/detector" in bed
    bed = log.split("rule score_slide:", 1)[1].split("\n\n", 1)[0]  # the score slide's bed, from the detector too
    assert "results_bed/detector" in bed.split("input:", 1)[1].split("\n", 1)[0]
    # its old features and bed are removed first (a rerun with another tile size refused them: outside fault hunt 7C)
    assert all(f"--replaces results_bed/{f}" in bed for f in ("features/new_slide.h5", "tumorbed/new_slide.h5"))
    assert "--out results_bed/tumorbed --annotations cohort/truth --tumorbed results_bed/detector" in bed
    train = log.split("rule train:", 1)[1].split("\n\n", 1)[0]
    assert "--tumorbed-beds results_bed/tumorbed --tumorbed results_bed/detector" in train


def test_without_annotations_or_detector_there_are_no_per_slide_beds(workdir: Path) -> None:
    """The tumour bed is then the whole tissue and training uses every tile, as before."""
    no_annotations = [c for c in FAST if not c.startswith("annotations=")]
    proc = snakemake(workdir, "--dry-run", config=[*no_annotations, "out=results_nobed"])
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "tumorbed" not in job_stats(log) and "--tumorbed" not in log


def test_a_second_cohort_into_the_first_cohorts_out_is_refused(workdir: Path) -> None:
    """A second cohort's config file that kept the default `out` (hunt 38k): its run replaced the first
    cohort's model, report and scores without a word (and slides of one file name in both were tiled and
    embedded again at each switch, as other scans). `out` here holds another cohort CSV's trained results."""
    import json

    out = workdir / "results_cohorts"
    (out / "model").mkdir(parents=True)
    from test_pipeline import ROOT
    from weakstil.pipeline_preflight import load_workflow_config

    settings = dict(load_workflow_config([ROOT / "pipelines" / "config.yaml"], [*FAST, "out=results_cohorts"]))
    (out / "settings.json").write_text(json.dumps({**settings, "cohort": "first_cohort/labels.csv"}))
    proc = snakemake(workdir, "--dry-run", config=[*FAST, "out=results_cohorts"])
    assert proc.returncode != 0, "the second cohort's run would replace the first's results\n" + proc.stdout[-2000:]
    assert ("error: results_cohorts holds the results of another cohort (first_cohort/labels.csv, as its "
            "settings.json says), which shares no slide with cohort/labels.csv" in proc.stderr), proc.stderr[-2000:]
    assert "Fix: give this cohort its own out" in proc.stderr
