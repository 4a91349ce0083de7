"""The README's SLURM example on a real single-node SLURM cluster, end to end through sbatch.

Needs the cluster of pipelines/slurm/setup_localhost.sh (root: the tests switch its node between
no GPU and one fake GPU with that script) and a few minutes: `make test-slurm` (CI: .ci/run).

1. With the default config on a node without GPUs, the run stops with one `error:` line before
   any job reaches SLURM (sacct shows none), and the README's CPU-only config passes the preflight.
2. With the README's GPU config on the node with a fake GPU, every job runs through sbatch and is
   COMPLETED in sacct; the embed jobs asked `--gpus=1` in partition `gpu` and ran on the CPU; the
   model and scores equal those of the local profile for the same seed, byte for byte.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_cli

pytestmark = pytest.mark.slurm

SETUP = ROOT / "pipelines" / "slurm" / "setup_localhost.sh"
SNAKEFILE = ROOT / "pipelines" / "Snakefile"
PROFILES = ROOT / "pipelines" / "profiles"
SLURM_CONFIGS = ROOT / "pipelines" / "slurm"
#: The README's example: 5 synthetic slides of 3 centres, 4 labelled, the last one scored.
SLIDES, LABELLED = 5, 4
README_CONFIG = ["cohort=cohort/train.csv", "folds=3", "threads=1", "score_slides=[cohort/slides/synth_0004.tiff]"]
#: Jobs submitted to SLURM per rule (settings and all run on the submitting machine); the slide to score
#: (not in the cohort) is tiled and embedded by the score_slide_* jobs, which record a failed slide.
EXPECTED_JOBS = {"tile": LABELLED, "embed": LABELLED, "score_slide_tiles": SLIDES - LABELLED,
                 "score_slide": SLIDES - LABELLED, "train": 1, "evaluate": 1, "report": 1, "score": 1}
#: The jobs that embed, on the GPU partition.
EMBED_RULES = ("embed", "score_slide")
TIMINGS: list[tuple[float, str]] = []


def setup_cluster(fake_gpus: int) -> None:
    start = time.monotonic()
    proc = subprocess.run(["bash", str(SETUP)], env={**os.environ, "FAKE_GPUS": str(fake_gpus)},
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"{SETUP} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    TIMINGS.append((time.monotonic() - start, f"setup_localhost.sh with FAKE_GPUS={fake_gpus}"))


def sacct(since: str, *, name: str | None = None) -> pd.DataFrame:
    """Jobs of every user since ``since`` (one row per job, not per step)."""
    fields = ["JobIDRaw", "JobName", "Partition", "State", "AllocTRES", "Comment", "Elapsed"]
    cmd = ["sacct", "-a", "-X", "-n", "-P", "-S", since, "-o", ",".join(fields)]
    if name:
        cmd += ["--name", name]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    return pd.DataFrame(rows, columns=fields)


class Snakemake:
    """A Snakemake run in ``workdir`` as the README writes it, started in the background."""

    def __init__(self, workdir: Path, profile: str, *args: str, config: list[str]):
        self.what = " ".join(["snakemake --profile", profile, *args, "--config", *config]).replace(str(ROOT) + "/", "")
        self.log = workdir / f"snakemake_{profile}_{len(TIMINGS)}.log"
        cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(PROFILES / profile), *args,
               "--config", *config]
        self.start = time.monotonic()
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)

    def wait(self) -> tuple[int, str]:
        rc = self.proc.wait()
        TIMINGS.append((time.monotonic() - self.start, self.what))
        return rc, self.log.read_text()


def snakemake(workdir: Path, profile: str, *args: str, config: list[str]) -> tuple[int, str]:
    return Snakemake(workdir, profile, *args, config=config).wait()


@pytest.fixture(scope="module")
def cluster():
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True) if _which("scontrol") else None
    if ping is None or ping.returncode != 0 or "UP" not in ping.stdout:
        pytest.fail(f"no SLURM controller answers: run {SETUP} (as root) first")
    yield
    setup_cluster(1)  # leave the cluster as the setup script makes it
    print("\nslurm test timings (s):\n" + "\n".join(f"  {t:6.1f}  {what}" for t, what in TIMINGS))


def _which(cmd: str) -> bool:
    import shutil

    return shutil.which(cmd) is not None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The README's synthetic cohort: the first 4 slides labelled (cohort/train.csv)."""
    root = tmp_path_factory.mktemp("slurm_workflow")
    run_cli("synth", root / "cohort", "--slides", SLIDES, "--seed", 0, "--size-mm", 1, 1, "--groups", 3, check=True)
    lines = (root / "cohort" / "labels.csv").read_text().splitlines()
    (root / "cohort" / "train.csv").write_text("\n".join(lines[:LABELLED + 1]) + "\n")
    return root


def test_default_config_without_gpus_stops_before_submitting(cluster, workdir: Path) -> None:
    setup_cluster(0)
    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    rc, log = snakemake(workdir, "slurm", config=[*README_CONFIG, "out=results_nogpu"])
    assert rc != 0, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, log[-3000:]
    assert ("the embed, score_slide jobs ask 1 GPU per job but partition 'gpu' (slurm.gpu_partition) has no GPUs"
            in errors[0])
    assert "Fix: set slurm.gpus_per_embed: 0" in errors[0]
    time.sleep(2)  # a refused sbatch would still show up in accounting, as FAILED
    assert sacct(since).empty, sacct(since)
    assert not (workdir / "results_nogpu").exists()

    # the README's CPU-only configuration fits this node
    ok = run_cli("preflight", "--slurm", SLURM_CONFIGS / "cpu_cluster.yaml",
                 *[a for c in README_CONFIG for a in ("--config", c.replace("cohort/", f"{workdir}/cohort/"))])
    assert ok.returncode == 0, ok.stderr
    assert "embed, score_slide: partition cpu, 1 CPU, 2000 MB (auto: at least), 120 min" in ok.stdout


def test_readme_example_on_slurm_equals_local(cluster, workdir: Path) -> None:
    setup_cluster(1)
    # The same example with the local profile runs beside it (its jobs fill the SLURM run's
    # waits for status checks); the machine has 2 cores either way.
    local = Snakemake(workdir, "local", "--cores", "1", config=[*README_CONFIG, "out=results_local"])
    rc, log = snakemake(workdir, "slurm", "--configfile", str(SLURM_CONFIGS / "gpu_cluster.yaml"),
                        config=README_CONFIG)
    assert rc == 0, log[-4000:]
    run_id = re.search(r"SLURM run ID: ([0-9a-f-]+)", log).group(1)
    time.sleep(2)
    jobs = sacct("2000-01-01", name=run_id)
    print(f"\nsacct --name {run_id}:\n{jobs.to_string(index=False)}")
    jobs["rule"] = jobs["Comment"].str.extract(r"^rule_([a-z_]+?)(?:_wildcards_.*)?$", expand=False)
    assert (jobs["State"] == "COMPLETED").all(), jobs
    assert jobs["rule"].value_counts().to_dict() == EXPECTED_JOBS
    embed = jobs[jobs["rule"].isin(EMBED_RULES)]
    assert (embed["Partition"] == "gpu").all() and embed["AllocTRES"].str.contains("gres/gpu=1").all(), embed
    others = jobs[~jobs["rule"].isin(EMBED_RULES)]
    assert (others["Partition"] == "cpu").all() and not others["AllocTRES"].str.contains("gpu").any(), others
    for sid in [f"synth_{i:04d}" for i in range(SLIDES)]:  # a fake GPU: torch finds no CUDA and uses the CPU
        assert re.search(r"\bon\s+cpu\b", (workdir / "results" / "logs" / "embed" / f"{sid}.log").read_text())
    TIMINGS.append((len(jobs), "jobs submitted through sbatch, all COMPLETED in sacct"))

    rc, local_log = local.wait()
    assert rc == 0, local_log[-4000:]
    slurm_out, local_out = workdir / "results", workdir / "results_local"
    assert (slurm_out / "model" / "model.safetensors").read_bytes() == \
        (local_out / "model" / "model.safetensors").read_bytes()
    assert (slurm_out / "model/cv/oof_predictions.csv").read_text() == \
        (local_out / "model/cv/oof_predictions.csv").read_text()
    metrics = [json.loads((out / "evaluation" / "metrics.json").read_text()) for out in (slurm_out, local_out)]
    numbers = [{k: v for k, v in m.items() if not isinstance(v, str)} for m in metrics]  # not the paths
    assert numbers[0] == numbers[1] and {"r2", "mae", "classification"} <= set(numbers[0])
    scores = [pd.read_csv(out / "scores" / "results.csv") for out in (slurm_out, local_out)]
    assert scores[0]["status"].tolist() == ["ok"]
    cols = ["slide_id", "stil", "stil_high", "n_tiles", "model_id", "encoder_id"]
    pd.testing.assert_frame_equal(scores[0][cols], scores[1][cols])
    for h5 in sorted((slurm_out / "features").glob("*.h5")):
        with h5py.File(h5) as a, h5py.File(local_out / "features" / h5.name) as b:
            np.testing.assert_array_equal(a["features"][:], b["features"][:])
    assert (slurm_out / "report" / "report.html").is_file()
    print("README example:", " ".join(shlex.quote(c) for c in README_CONFIG))
