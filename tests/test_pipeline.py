"""The Snakemake cohort workflow (pipelines/): end to end with the local profile on a tiny
synthetic cohort, what a rerun redoes after one slide's features are deleted or after files are
copied over with older times, and failing slides. The dry runs that need no finished run (bad
settings, the SLURM profile) are in test_pipeline_plans.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest

import snakemake_fork
from conftest import ROOT, WORKFLOW_SLIDE_MM, importorskip_slurm_plugin, no_slurm_controller_env

pytest.importorskip("snakemake")
importorskip_slurm_plugin()  # (its import asks scontrol: see conftest)

SNAKEFILE = ROOT / "pipelines" / "Snakefile"
LOCAL = ROOT / "pipelines" / "profiles" / "local"
SLURM = ROOT / "pipelines" / "profiles" / "slurm"
#: 2 labelled slides over 2 centres (2 folds, one slide each), where 3 ran a tile, embed and bed job more (a fresh
#: weakstil process each) and trained on more: this module took 87 s of CPU with 3, 81 s with 2. Each check holds
#: for any 2 slides or more.
COHORT_SLIDES = 2
#: Small and quick: 0.7 x 0.7 mm slides (about 25 tiles), 2 folds over 2 centres, few epochs; the encoder's
#: weights in a file, as a lab's own (random ones, made by :func:`small_cnn_weights`).
FAST = ["folds=2", "epochs=8", "threads=1", "score_slides=[new/*.tiff]", "annotations=cohort/truth",
        "weights=encoder.safetensors"]


def small_cnn_weights(path: Path, seed: int) -> None:
    """A small-cnn weights file (seeded random init) at ``path``."""
    import torch

    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import build_model, save_state_dict

    torch.manual_seed(seed)
    save_state_dict(build_model(load_card("small-cnn")).state_dict(), path)


def snakemake(workdir: Path, *args: str, profile: Path = LOCAL, config: list[str] = FAST) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(profile),
           "--directory", str(workdir), *args, "--config", *config]
    return snakemake_fork.run(cmd, env=no_slurm_controller_env(workdir.parent))


def jobs_run(log: str) -> dict[str, list[str]]:
    """Rule -> the wildcards of each job that Snakemake started, read from its output."""
    jobs: dict[str, list[str]] = {}
    for block in re.split(r"\n(?=\[[^\n]*\]\n(?:local)?rule )", log):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if m:
            w = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            jobs.setdefault(m.group(1), []).append(w.group(1) if w else "")
    return jobs


def job_stats(log: str) -> dict[str, int]:
    """The 'Job stats' table Snakemake prints: rule -> number of jobs."""
    table = log.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def make_workdir(root: Path, synth_cohort) -> Path:
    """A synthetic cohort of :data:`COHORT_SLIDES` labelled slides (2 centres) and one new slide to score."""
    synth_cohort(root / "cohort", COHORT_SLIDES + 1, seed=0, size_mm=WORKFLOW_SLIDE_MM, groups=2)
    labels = pd.read_csv(root / "cohort" / "labels.csv")
    labels.iloc[:COHORT_SLIDES].to_csv(root / "cohort" / "labels.csv", index=False)
    new = labels.iloc[COHORT_SLIDES]
    (root / "new").mkdir()
    shutil.move(root / "cohort" / new["path"], root / "new" / "new_slide.tiff")
    small_cnn_weights(root / "encoder.safetensors", seed=0)
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synth_cohort) -> Path:
    return make_workdir(tmp_path_factory.mktemp("pipeline"), synth_cohort)


@pytest.fixture(scope="module")
def first_run(workdir: Path) -> subprocess.CompletedProcess:
    proc = snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_workflow_end_to_end(workdir: Path, first_run) -> None:
    out = workdir / "results"
    ids = pd.read_csv(workdir / "cohort" / "labels.csv")["slide_id"].tolist()
    jobs = jobs_run(first_run.stdout + first_run.stderr)
    # the score slide's per-slide steps run in jobs that record a failure of the slide instead of failing
    assert {r: len(j) for r, j in jobs.items()} == {"settings": 1, "tile": COHORT_SLIDES, "embed": COHORT_SLIDES,
                                                     "tumorbed": COHORT_SLIDES,
                                                     "score_slide_tiles": 1, "score_slide": 1, "train": 1,
                                                     "evaluate": 1, "report": 1, "score": 1, "all": 1}
    assert json.loads((out / "score_slides" / "new_slide.json").read_text())["status"] == "ok"
    for sid in [*ids, "new_slide"]:
        assert (out / "tiles" / f"{sid}_tiles.png").is_file() and (out / "features" / f"{sid}.h5").is_file()
        assert (out / "logs" / "embed" / f"{sid}.log").read_text().strip()
        assert (out / "tumorbed" / f"{sid}.geojson").is_file()
        with h5py.File(out / "tumorbed" / f"{sid}.h5") as f:  # the new slide has no outline: whole tissue
            assert f.attrs["source"] == ("tissue" if sid == "new_slide" else "annotation")
    for rule in ("train", "evaluate", "report", "score"):
        assert (out / "logs" / f"{rule}.log").read_text().strip(), rule
    train_log = " ".join((out / "logs" / "train.log").read_text().split())
    assert f"{COHORT_SLIDES} from annotation ({COHORT_SLIDES} precomputed in results/tumorbed)" in train_log

    metrics = json.loads((out / "evaluation" / "metrics.json").read_text())
    assert metrics["n"] == COHORT_SLIDES
    oof = pd.read_csv(out / "model" / "cv" / "oof_predictions.csv")
    assert sorted(oof["fold"].unique()) == [1, 2]  # as the fold model files are numbered

    page = (out / "report" / "report.html").read_text()
    for sid in ids:
        assert f"slides/{sid}_heatmap.png" in page and (out / "report" / "slides" / f"{sid}_heatmap.png").is_file()
        assert (out / "report" / "slides" / f"{sid}_thumb.png").is_file()
    assert f"<td class='num'>{metrics['mae']:.3f}</td>" in page  # the headline MAE, from the evaluation
    assert "small-cnn" in page and "snakemake" in page  # settings and versions
    assert "cohort/truth" in (out / "report" / "report.md").read_text()  # the workflow config is listed

    scores = pd.read_csv(out / "scores" / "results.csv")
    assert scores["slide_id"].tolist() == ["new_slide"] and scores["status"].tolist() == ["ok"]
    assert scores["tumorbed_source"].tolist() == ["tissue"]  # from its per-slide bed
    assert 0 <= scores["stil"].iloc[0] <= 100
    assert (out / "scores" / "new_slide_heatmap.png").is_file()


def test_a_cohort_csv_copied_over_with_an_older_time_retrains(workdir: Path, first_run) -> None:
    """`cp -p` / `rsync -a` of a cohort CSV with other labels keeps its older time: Snakemake's file
    times saw nothing to do and the model kept the old labels (the slides had a content fingerprint,
    the CSV none). The CSV's content digest is a param of the train and tumorbed_detector jobs."""
    import os

    csv = workdir / "cohort" / "labels.csv"
    original, stat = csv.read_bytes(), csv.stat()
    try:
        table = pd.read_csv(csv)
        table.loc[0, "stil"] = 99.0 if table.loc[0, "stil"] < 50 else 1.0
        table.to_csv(csv, index=False)
        os.utime(csv, (stat.st_atime - 86400, stat.st_mtime - 86400))
        proc = snakemake(workdir, "--dry-run")
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert "Job stats:" in log, "nothing redone: the model keeps the old labels\n" + log[-2000:]
        stats = job_stats(log)
        assert stats.get("train") == 1 and "tile" not in stats and "embed" not in stats, log[-3000:]
    finally:
        csv.write_bytes(original)
        os.utime(csv, (stat.st_atime, stat.st_mtime))
    proc = snakemake(workdir, "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_an_annotation_or_weights_file_copied_over_with_an_older_time_is_redone(workdir: Path, first_run) -> None:
    """Another outline copied over a slide's annotation, or other encoder weights over the `weights` file,
    with their older times (`cp -p`, `rsync -a`): Snakemake's file times saw nothing to do, the bed kept
    the old outline and every slide the features of the old weights (the weights file was no input at
    all: even a newer one re-embedded nothing). Their content digests are params of the jobs reading them."""
    import os

    ids = pd.read_csv(workdir / "cohort" / "labels.csv")["slide_id"].tolist()
    outline, weights = workdir / "cohort" / "truth" / f"{ids[1]}_tumorbed.geojson", workdir / "encoder.safetensors"
    saved = {p: (p.read_bytes(), p.stat()) for p in (outline, weights)}
    try:
        outline.write_bytes((workdir / "cohort" / "truth" / f"{ids[0]}_tumorbed.geojson").read_bytes())
        os.utime(outline, (saved[outline][1].st_atime - 86400, saved[outline][1].st_mtime - 86400))
        proc = snakemake(workdir, "--dry-run")
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert "Job stats:" in log, "nothing redone: the bed keeps the old outline\n" + log[-2000:]
        assert jobs_run(log).get("tumorbed") == [f"slide={ids[1]}"] and job_stats(log)["train"] == 1, log[-3000:]
        assert "tile" not in job_stats(log) and "embed" not in job_stats(log)
        outline.write_bytes(saved[outline][0])
        os.utime(outline, ns=(saved[outline][1].st_atime_ns, saved[outline][1].st_mtime_ns))
        small_cnn_weights(weights, seed=1)
        os.utime(weights, (saved[weights][1].st_atime - 86400, saved[weights][1].st_mtime - 86400))
        proc = snakemake(workdir, "--dry-run")
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "Job stats:" in log, "nothing re-embedded\n" + log[-2000:]
        stats = job_stats(log)  # every slide re-embedded (the score slide in its score_slide job), none retiled
        assert stats["embed"] == COHORT_SLIDES and stats["score_slide"] == 1 and "tile" not in stats, log[-3000:]
    finally:
        for path, (data, stat) in saved.items():
            path.write_bytes(data)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_paths_spelt_absolute_name_the_same_files(workdir: Path, first_run) -> None:
    """Snakemake keys its records by the paths as written: an absolute `cohort` or `annotations` folder
    redid every bed and the training for the same files (one spelling now), and `out` given as the
    absolute path of the same folder found no record at all, so a changed setting (epochs) redid
    nothing: refused, with the spelling of the last run (targets must match `out` as written)."""
    absolute = [c for c in FAST if not c.startswith("annotations=")] + [
        f"cohort={workdir / 'cohort' / 'labels.csv'}", f"annotations={workdir / 'cohort' / 'truth'}/", "epochs=9"]
    proc = snakemake(workdir, "--dry-run", config=absolute)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    # the new epochs retrain; the settings (as written) go into the report; no slide is redone
    assert job_stats(log) == {"settings": 1, "train": 1, "evaluate": 1, "score": 1, "report": 1, "all": 1}, log[-3000:]
    proc = snakemake(workdir, "--dry-run", config=[*absolute, f"out={workdir / 'results'}"])
    assert proc.returncode != 0 and "Nothing to be done" not in proc.stdout + proc.stderr
    assert f"error: out is {workdir / 'results'}, the folder the last run here wrote as results: " in proc.stderr
    assert "Fix: set out to results, as before" in proc.stderr


def test_an_annotations_folder_moved_redoes_no_bed(workdir: Path, first_run) -> None:
    """The outlines were inputs of the bed jobs, so the same files in another folder (moved to a shared drive,
    `annotations` pointed there) redid every bed and the training, evaluation and scores (hunt 41d); slides
    moved to another folder redo nothing. Now an outline's content is the jobs' param, as a slide's fingerprint."""
    moved = workdir / "cohort" / "outlines_moved_h41d"
    shutil.copytree(workdir / "cohort" / "truth", moved)  # (copy2: the same times)
    try:
        config = [c for c in FAST if not c.startswith("annotations=")] + ["annotations=cohort/outlines_moved_h41d"]
        proc = snakemake(workdir, "--dry-run", config=config)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert job_stats(log) == {"settings": 1, "report": 1, "all": 1}, log[-3000:]  # the report lists the settings
    finally:
        shutil.rmtree(moved)


def test_rerun_after_deleting_one_slides_features(workdir: Path, first_run) -> None:
    out = workdir / "results"
    victim = pd.read_csv(workdir / "cohort" / "labels.csv")["slide_id"].iloc[-1]
    nothing = snakemake(workdir, "--dry-run")
    assert nothing.returncode == 0 and "Nothing to be done" in nothing.stdout + nothing.stderr

    others = {p: p.stat().st_mtime_ns for d in ("tiles", "features", "tumorbed") for p in (out / d).iterdir()
              if p.stem != victim}
    (out / "features" / f"{victim}.h5").unlink()
    proc = snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    jobs = jobs_run(proc.stdout + proc.stderr)
    # that slide's embedding and tumour bed, and the cohort rules that read them; no other slide, no tiling
    assert jobs == {"embed": [f"slide={victim}"], "tumorbed": [f"slide={victim}"], "train": [""],
                    "evaluate": [""], "report": [""], "score": [""], "all": [""]}
    assert (out / "features" / f"{victim}.h5").is_file()
    with h5py.File(out / "features" / f"{victim}.h5") as f, h5py.File(out / "tumorbed" / f"{victim}.h5") as g:
        assert g.attrs["cache_key"] == f.attrs["cache_key"]
    assert {p: p.stat().st_mtime_ns for p in others} == others


def test_a_relabel_keeps_the_detector_and_a_new_detector_keeps_the_score_slides_embeddings(workdir: Path,
                                                                                           first_run) -> None:
    """`tumorbed: train` (hunt 38k). A corrected label or another training `seed` retrained the detector
    (its job took the whole cohort CSV's content and `--seed`, which `tumorbed train` ignores), so every bed
    was redone and every score slide re-embedded for the same detector. And a detector retrained for a reason
    (slides added, an outline edited) re-embedded every score slide, whose `score_slide` job redoes its
    embedding with its bed: hours of GPU on a real list, for the same features. Here the detector is
    recorded as made (Snakemake's --touch: the same record as a run), then a label and the seed change."""
    import os

    csv, detector = workdir / "cohort" / "labels.csv", workdir / "results" / "detector"
    config = [*FAST, "tumorbed=train"]
    saved = csv.read_bytes(), csv.stat()
    detector.mkdir()
    try:
        # (forced: an existing output without a record is no job to touch, and leaves no record to compare)
        proc = snakemake(workdir, "results/detector", "--touch", "--forcerun", "tumorbed_detector", config=config)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        table = pd.read_csv(csv)
        table.loc[0, "stil"] = 99.0 if table.loc[0, "stil"] < 50 else 1.0
        table.to_csv(csv, index=False)
        proc = snakemake(workdir, "--dry-run", config=[*config, "seed=1"])
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        stats = job_stats(log)  # the touched detector is newer: the beds and the score slide's job follow it
        assert "tumorbed_detector" not in stats, "the detector retrained for a label and the seed\n" + log[-3000:]
        assert stats["train"] == 1 and stats["score_slide"] == 1 and "embed" not in stats, log[-3000:]
        command = log.split("rule score_slide:", 1)[1].split("\n\n", 1)[0]
        assert "--step 'embed=" not in command and "--keep results/features/new_slide.h5" in command, \
            "the score slide is embedded again for its bed\n" + command
    finally:
        csv.write_bytes(saved[0])
        os.utime(csv, ns=(saved[1].st_atime_ns, saved[1].st_mtime_ns))
        shutil.rmtree(detector)


def test_a_bed_job_takes_over_a_folder_of_another_detectors_beds(workdir: Path, first_run, tmp_path: Path) -> None:
    """The config's detector changed (or was removed): Snakemake reruns the bed jobs, and `tumorbed apply`
    refuses a folder holding another detector's beds (hunt 30c), so every bed job failed, exit 2, until
    the folder was cleared by hand. The job's own command (as the dry run prints it) now takes it over."""
    import shlex

    proc = snakemake(workdir, "--dry-run", "--printshellcmds", "--forcerun", "score_slide")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    step = next(a for line in log.splitlines() if "--step" in line and "tumorbed apply" in line
                for a in shlex.split(line) if a.startswith("tumorbed="))
    command = shlex.split(step.split("=", 1)[1])
    assert "--tumorbed" not in command  # this config has no detector; the folder holds another one's beds
    (tmp_path / "results" / "features").mkdir(parents=True)
    shutil.copy(workdir / "results" / "features" / "new_slide.h5", tmp_path / "results" / "features")
    (tmp_path / "cohort").mkdir()
    (tmp_path / "cohort" / "truth").symlink_to(workdir / "cohort" / "truth")
    (tmp_path / "results" / "tumorbed").mkdir()
    record = tmp_path / "results" / "tumorbed" / ".weakstil-detector.json"
    record.write_text(json.dumps({"detector_sha256": "0" * 64, "detector_path": "old/detector"}))
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    with h5py.File(tmp_path / "results" / "tumorbed" / "new_slide.h5") as f:
        assert f.attrs["source"] == "tissue"
    assert json.loads(record.read_text())["detector_sha256"] == "none"


def test_score_slides_and_slide_mpp_follow_the_config(workdir: Path, first_run, tmp_path: Path) -> None:
    """A cohort slide added to `score_slides` is scored though it is embedded already; the score job
    starts from an empty folder (no row of a slide taken off the list); `slide_mpp` goes only to
    slides whose files state no µm/px; `--config KEY=null` is null."""
    import numpy as np
    import tifffile

    first = pd.read_csv(workdir / "cohort" / "labels.csv")["path"].iloc[0]
    added = [c if not c.startswith("score_slides=") else f"score_slides=[new/*.tiff, cohort/{first}]" for c in FAST]
    proc = snakemake(workdir, "--dry-run", config=added)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert job_stats(log) == {"score": 1, "settings": 1, "report": 1, "all": 1}  # nothing tiled or embedded again
    assert "rm -rf results/scores &&" in log

    no_mpp = workdir / "new" / "no_mpp.tiff"  # a scan whose file states no resolution
    tifffile.imwrite(no_mpp, np.full((512, 512, 3), 200, np.uint8), tile=(256, 256), photometric="rgb")
    try:
        proc = snakemake(workdir, "--dry-run", config=[*FAST, "out=results_mpp", "slide_mpp=0.25"])
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        tiles = [b for b in re.split(r"rule (?:score_slide_)?tiles?:", log)[1:]]
        assert len(tiles) == COHORT_SLIDES + 2
        assert [("--slide-mpp 0.25" in b.split("\n\n")[0]) for b in tiles].count(True) == 1
        assert all("no_mpp" in b.split("\n\n")[0] for b in tiles if "--slide-mpp" in b.split("\n\n")[0])
        score = log.split("rule score:", 1)[1].split("\n\n")[0]  # two calls: slide_mpp for the no-µm/px one alone
        assert score.count(" score ") == 2 and score.count("--slide-mpp 0.25") == 1
    finally:
        no_mpp.unlink()
    proc = snakemake(workdir, "--dry-run", config=[*FAST, "weights=null"])
    assert proc.returncode != 0 and "null: encoder weights file not found" not in proc.stderr
    assert "has no published weights and `weights` is null" in proc.stderr


def test_another_scan_copied_over_a_slide_with_an_older_time_is_redone(workdir: Path, first_run) -> None:
    """`cp -p` or `rsync -a` of another scan over a slide file keeps that scan's older time: Snakemake's
    file times saw nothing to do and results.csv kept the other scan's number (outside fault hunt 7C #2).
    The slide's content fingerprint is a param of the jobs that read it."""
    import os

    slide = workdir / "new" / "new_slide.tiff"
    original = slide.read_bytes()
    stat = slide.stat()
    other = workdir / "cohort" / pd.read_csv(workdir / "cohort" / "labels.csv")["path"].iloc[0]
    try:
        shutil.copy(other, slide)
        os.utime(slide, (stat.st_atime - 86400, stat.st_mtime - 86400))
        proc = snakemake(workdir, "--dry-run")
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert job_stats(log) == {"score_slide_tiles": 1, "score_slide": 1, "score": 1, "all": 1}
        cohort = workdir / "cohort" / pd.read_csv(workdir / "cohort" / "labels.csv")["path"].iloc[1]
        cohort_stat = cohort.stat()
        cohort_bytes = cohort.read_bytes()
        shutil.copy(other, cohort)  # a cohort slide: retiled, re-embedded, retrained
        os.utime(cohort, (cohort_stat.st_atime, cohort_stat.st_mtime))
        proc = snakemake(workdir, "--dry-run")
        log = proc.stdout + proc.stderr
        assert job_stats(log)["tile"] == 1 and job_stats(log)["train"] == 1, log[-3000:]
    finally:
        slide.write_bytes(original)
        os.utime(slide, (stat.st_atime, stat.st_mtime))
        if "cohort_bytes" in locals():
            cohort.write_bytes(cohort_bytes)
            os.utime(cohort, (cohort_stat.st_atime, cohort_stat.st_mtime))
    proc = snakemake(workdir, "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-3000:]


def test_a_score_slide_added_to_the_cohort_gets_the_bed_of_its_outline(workdir: Path, first_run) -> None:
    """A slide scored first (score_slides), then labelled and added to the cohort CSV under another slide
    id, which names its (older) outline: its bed had been made by its score_slide job, by file name (no
    outline: the whole tissue), and Snakemake had no record of it, so training kept that bed."""
    import os

    csv = workdir / "cohort" / "labels.csv"
    table, saved = pd.read_csv(csv), (csv.read_bytes(), csv.stat())
    outline = workdir / "cohort" / "truth" / "patient_7_tumorbed.geojson"
    shutil.copy(workdir / "cohort" / "truth" / f"{table['slide_id'].iloc[0]}_tumorbed.geojson", outline)
    os.utime(outline, (saved[1].st_atime - 86400, saved[1].st_mtime - 86400))  # drawn long before
    try:
        row = {**table.iloc[0].to_dict(), "slide_id": "patient_7", "path": "../new/new_slide.tiff", "stil": 20.0}
        pd.concat([table, pd.DataFrame([row])]).to_csv(csv, index=False)
        proc = snakemake(workdir, "--dry-run")
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert "slide=new_slide" in jobs_run(log).get("tumorbed", []), "its whole-tissue bed kept\n" + log[-3000:]
        assert "tile" not in job_stats(log) and "embed" not in job_stats(log)  # its tiles and features are the same
    finally:
        csv.write_bytes(saved[0])
        os.utime(csv, ns=(saved[1].st_atime_ns, saved[1].st_mtime_ns))
        outline.unlink()


def damaged_copy(slide: Path, copy: Path) -> None:
    """``slide`` with one level-0 JPEG tile in the middle garbled: it opens, and fails when read."""
    import tifffile

    shutil.copy(slide, copy)
    with tifffile.TiffFile(copy) as tif:
        page = tif.pages[0]
        i = len(page.dataoffsets) // 2
        offset, size = page.dataoffsets[i], page.databytecounts[i]
    with open(copy, "r+b") as f:
        f.seek(offset + 2)
        f.write(bytes(20))
        f.seek(offset + size // 3)
        f.write(b"\xff\xd9" + bytes(size // 3))


def test_a_score_slide_that_cannot_be_read_gets_an_error_row_and_the_others_are_scored(workdir: Path,
                                                                                       first_run) -> None:
    """As `weakstil score` does in a batch: one unreadable score slide no longer stops the scoring of
    the others (its tile job failed, and the score job needed every score slide's features). A slide
    that opens but whose pixels are damaged fails in its per-slide job, after the preflight: that
    job records it, and it gets an error row too (its failed job kept the score job from running,
    and results.csv stayed the previous run's)."""
    broken = workdir / "new" / "broken.svs"
    broken.write_bytes(b"not a slide")
    damaged = workdir / "new" / "damaged.tiff"
    damaged_copy(workdir / "new" / "new_slide.tiff", damaged)
    config = [c if not c.startswith("score_slides=") else "score_slides=[new/*.tiff, new/broken.svs]" for c in FAST]
    try:
        proc = snakemake(workdir, "--cores", "2", config=config)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert "warning: " in log and "broken.svs (score_slides)" in log and "gets an error row" in log
        assert "damaged.tiff (score_slides): its tile step failed (" in log
        jobs = jobs_run(log)
        assert "tile" not in jobs and jobs["score_slide_tiles"] == ["slide=damaged"]  # none for the broken one
        rows = pd.read_csv(workdir / "results" / "scores" / "results.csv").set_index("slide_id")
        assert rows.loc["new_slide", "status"] == "ok" and rows.loc["broken", "status"] == "error"
        assert "broken.svs" in str(rows.loc["broken", "error"])
        # named damaged by the tissue overview (it reads level 0 of a slide this small) or by the tile decoder
        error = str(rows.loc["damaged", "error"])
        assert rows.loc["damaged", "status"] == "error" and "damaged" in error and "copy or export it again" in error
        status = json.loads((workdir / "results" / "score_slides" / "damaged.json").read_text())
        assert status["status"] == "error" and status["step"] == "tile" and "damaged.tiff" in status["error"]
    finally:
        broken.unlink()
        damaged.unlink()


def test_a_failing_cohort_slide_lets_the_others_go_on_and_is_named_at_the_end(workdir: Path, first_run) -> None:
    """One damaged cohort scan (it opens, so the preflight passes it): the other slides' jobs still run
    (keep-going), and the run ends with that slide, its step and reason, and what to do (training waits
    for every cohort slide), where Snakemake's last words were "At least one job did not complete
    successfully", its error line hundreds of lines above on a real cohort."""
    import os

    out, csv = workdir / "results", workdir / "cohort" / "labels.csv"
    table, saved = pd.read_csv(csv), (csv.read_bytes(), csv.stat())
    damaged = workdir / "cohort" / "slides" / "damaged_scan.tiff"
    damaged_copy(workdir / "cohort" / table["path"].iloc[0], damaged)
    victim = table["slide_id"].iloc[-1]
    (out / "tumorbed" / f"{victim}.h5").unlink()
    try:
        row = {**table.iloc[0].to_dict(), "slide_id": "damaged_scan", "path": "slides/damaged_scan.tiff"}
        pd.concat([table, pd.DataFrame([row])]).to_csv(csv, index=False)
        proc = snakemake(workdir, "--cores", "2")
        assert proc.returncode != 0
        assert (out / "tumorbed" / f"{victim}.h5").is_file()  # the other slides went on
        end = proc.stderr[proc.stderr.rindex("Error in rule tile"):]  # after Snakemake's own error block
        assert ("error: cohort slide damaged_scan: its tile job failed: " in end and "cannot read pixels" in end
                and "(log: results/logs/tile/damaged_scan.log)" in end), end[-3000:]
        assert (f"error: 1 of {COHORT_SLIDES + 1} cohort slides failed (damaged_scan); the other slides' jobs ran, "
                "but training" in end
                and "take its row out of cohort/labels.csv" in end), end[-3000:]
    finally:
        csv.write_bytes(saved[0])
        os.utime(csv, ns=(saved[1].st_atime_ns, saved[1].st_mtime_ns))
        damaged.unlink()
