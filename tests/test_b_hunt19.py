"""Hunt 19b: the Snakemake cohort workflow as a lab reruns it. The cases that need the workflow's
results (an outline or weights file copied over with an older time, paths spelt absolute, a failing
cohort slide) are in tests/test_pipeline.py, on its module's workflow run; here, what needs none."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import snakemake_fork
from conftest import no_slurm_controller_env

pytest.importorskip("snakemake")


def test_a_job_killed_from_outside_is_named_with_no_made_up_reason(tmp_path: Path) -> None:
    """A job killed (out of memory, SIGKILL, wall time) leaves a log without an `error:` line: the run's
    closing lines say it was stopped from outside instead of giving its last INFO line as the reason;
    the failed jobs are read from a real Snakemake log (its `Error in rule` blocks), once each."""
    from weakstil.pipeline_failures import failed_jobs, failure_lines

    (tmp_path / "Snakefile").write_text(
        "rule all:\n    input: 'out/embed/S1.done', 'out/tile/S2.done'\n"
        "rule embed:\n    output: 'out/embed/{s}.done'\n    log: 'logs/embed/{s}.log'\n"
        "    shell: 'echo \"INFO embedding 10 tiles\" > {log}; kill -9 $$'\n"
        "rule tile:\n    output: 'out/tile/{s}.done'\n    log: 'logs/tile/{s}.log'\n"
        "    shell: 'echo \"error: {wildcards.s}.svs: no tissue found. Fix: check the scan\" > {log}; exit 1'\n")
    proc = snakemake_fork.run([sys.executable, "-m", "snakemake", "--cores", "1", "--keep-going"], cwd=tmp_path,
                              env=no_slurm_controller_env(tmp_path))
    assert proc.returncode != 0
    logs = sorted((tmp_path / ".snakemake" / "log").glob("*.snakemake.log"))
    here = os.getcwd()
    os.chdir(tmp_path)  # the job logs are relative to the run's folder, as in the workflow's onerror
    try:
        assert sorted(failed_jobs(logs)) == [("embed", ["logs/embed/S1.log"]), ("tile", ["logs/tile/S2.log"])]
        assert failed_jobs(str(logs[0])) == failed_jobs(logs)  # Snakemake 8 passes one path
        lines = failure_lines(logs + logs, ["S1", "S2"], "cohort.csv")  # a log read twice: each job once
    finally:
        os.chdir(here)
    assert len(lines) == 3, lines
    embed = next(ln for ln in lines if "S1" in ln and "embed job" in ln)
    assert "stopped without an error line (killed, out of memory or out of time?)" in embed
    assert "last line: INFO embedding 10 tiles" in embed
    assert "error: cohort slide S2: its tile job failed: S2.svs: no tissue found. Fix: check the scan (log: " \
        "logs/tile/S2.log)" in lines
    assert lines[-1].startswith("error: 2 of 2 cohort slides failed (") and "take its row out of cohort.csv" in lines[-1]
