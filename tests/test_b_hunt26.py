"""The cohort workflow off its home ground (hunt 26b): a lab that runs it from another directory into the
same (absolute) output folder. Snakemake keeps its records of every job in the directory it runs in
(``.snakemake/``): from another one it found none, said "Nothing to be done" for a changed ``mpp`` (the
features of the old tiling kept) and took no lock that a run in the first directory would see."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import snakemake_fork
from conftest import ROOT, WORKFLOW_SLIDE_MM, no_slurm_controller_env

pytest.importorskip("snakemake")

SNAKEFILE = ROOT / "pipelines" / "Snakefile"
LOCAL = ROOT / "pipelines" / "profiles" / "local"


def snakemake(workdir: Path, out: Path, cohort: Path, *args: str, config: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--directory",
           str(workdir), "--cores", "1", *args, "--config", f"cohort={cohort}", f"out={out}", "folds=2",
           "threads=1", *config]
    return snakemake_fork.run(cmd, env=no_slurm_controller_env(workdir.parent))


@pytest.fixture(scope="module")
def lab(tmp_path_factory, synth_cohort) -> Path:
    """4 cohort slides (2 centres) in a folder whose name has a space and a non-ASCII letter."""
    root = tmp_path_factory.mktemp("hunt26b") / "lab é"
    synth_cohort(root / "cohort", 4, seed=0, size_mm=WORKFLOW_SLIDE_MM, groups=2)
    assert len(pd.read_csv(root / "cohort" / "labels.csv")) == 4
    return root


def test_a_run_from_another_directory_into_the_same_out_is_refused(lab: Path, tmp_path: Path) -> None:
    out, cohort = lab / "rés ults", lab / "cohort" / "labels.csv"
    first = snakemake(lab, out, cohort, str(out / "settings.json"))  # a real run (one quick job) in lab/
    assert first.returncode == 0, first.stderr[-3000:]
    # hunt 36b: the settings record had no versions and no time (every other output records them) ...
    record = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    assert record["weakstil_version"] and record["library_versions"]["numpy"] and record["written"], record
    # ... and they are not a rerun trigger: an unchanged run plans nothing
    unchanged = snakemake(lab, out, cohort, "--dry-run", str(out / "settings.json"))
    assert unchanged.returncode == 0 and "Nothing to be done" in unchanged.stdout + unchanged.stderr, unchanged.stdout

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    other = snakemake(elsewhere, out, cohort, "--dry-run", config=("mpp=0.6",))  # old: "Nothing to be done", exit 0
    assert other.returncode != 0
    line = next(x for x in other.stderr.splitlines() if x.startswith("error:"))
    assert str(out) in line and f"run Snakemake in {lab}" in line, line
    assert "Nothing to be done" not in other.stdout + other.stderr

    # where its records are, the new tiling redoes every slide's tiles
    again = snakemake(lab, out, cohort, "--dry-run", config=("mpp=0.6",))
    assert again.returncode == 0, again.stdout[-3000:]
    assert "rule tile:" in again.stdout + again.stderr
    assert json.loads((out / ".snakemake-workdir.json").read_text(encoding="utf-8"))["workdir"] == str(lab)


def test_a_folder_moved_with_its_run_directory_is_not_refused(lab: Path, tmp_path: Path) -> None:
    """The record names a directory that no longer holds Snakemake's records (moved, or .snakemake/ deleted):
    nothing to miss there, so the run goes on (and records its own directory when it runs)."""
    out = tmp_path / "results"
    out.mkdir()
    (out / ".snakemake-workdir.json").write_text(json.dumps({"workdir": str(tmp_path / "gone")}), encoding="utf-8")
    proc = snakemake(tmp_path, out, lab / "cohort" / "labels.csv", "--dry-run")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_cohort_slides_without_an_outline_are_named_when_the_run_starts(lab: Path, tmp_path: Path) -> None:
    """An outline missing (or misnamed) for one cohort slide left its bed the whole tissue in training, said
    only in that slide's logs/tumorbed/ log; now the run names it at the start (dry runs too)."""
    import shutil

    outlines = tmp_path / "outlines"
    shutil.copytree(lab / "cohort" / "truth", outlines)
    for f in outlines.glob("synth_0002*"):
        f.unlink()
    cohort, out = lab / "cohort" / "labels.csv", tmp_path / "results"
    proc = snakemake(tmp_path, out, cohort, "--dry-run", config=(f"annotations={outlines}",))
    assert proc.returncode == 0, proc.stdout[-3000:]
    warnings = [x for x in proc.stderr.splitlines() if x.startswith("warning:") and "outline" in x]
    assert len(warnings) == 1 and "1 of 4 cohort slide(s)" in warnings[0] and "(synth_0002)" in warnings[0], warnings
    full = snakemake(tmp_path, out, cohort, "--dry-run", config=(f"annotations={lab / 'cohort' / 'truth'}",))
    assert full.returncode == 0 and "no outline" not in full.stderr
