"""Hunt 37l: the workflow's closing lines after SLURM itself ended a job (a real single-node cluster).

A train job past its wall time (``slurm: {train_runtime: 1}``; SLURM state TIMEOUT) ended the run with
three closing lines for one job (its two attempts, ``retries: 1``, and the job script's own failure that
``show-failed-logs`` echoes), each "stopped without an error line (killed, out of memory or out of
time?)": a guess, with no setting to change, while Snakemake's log had SLURM's state. Now one line per
job, naming SLURM's state and the ``slurm:`` key to raise (TIMEOUT: ``train_runtime``; OUT_OF_MEMORY:
``embed_mem_mb`` of an embed job), or that a CANCELLED job only needs the same command again, with the
job's log and its last SLURM log. The log text below is Snakemake 9.27's, from that run, cut to the blocks
read.

A job SLURM never took (``slurm: {account: nosuchacct}``, or ``sbatch`` not on PATH) was said to be
"stopped without an error line (killed, out of memory or out of time?)", its "last line" the previous run's
train log ("final model: all 4 slides for 43 epochs"): now the plugin's reason and the fix.

So was a job whose SLURM log folder was not writable (``chattr +i .snakemake/slurm_logs/rule_train``:
sacct FAILED, exit code 0:53, no SLURM log written): now that SLURM could not start it, and the folder.

And a train job cancelled with ``scancel`` (sacct: ``CANCELLED by 0``) was waited for without end:
snakemake-executor-plugin-slurm 2.8.0 compares the state whole against ``CANCELLED`` and took it for a
running job (10 minutes, no line; SIGTERM waited too; only kill -9 and --unlock ended the run). The
workflow now makes the plugin read the state's first word (weakstil/slurm_status.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from weakstil.pipeline_failures import failed_jobs, failure_lines

SLURM_LOGS = "/work/run/.snakemake/slurm_logs"


def block(rule: str, logs: str, message: str = "None", jobid: int = 12) -> str:
    return (f"[Sun Dec  6 14:14:01 2026]\nError in rule {rule}:\n    message: {message}\n    jobid: {jobid}\n"
            f"    output: results/x\n    log: {logs} (check log file(s) for error details)\n    shell:\n"
            "        weakstil ... > log 2>&1\n        (command exited with non-zero exit code)\n")


def slurm_failed(job: int, state: str) -> str:
    return (f"SLURM-job '{job}' failed, SLURM status is: '{state}'. Reason: Unknown.For further error details see "
            "the cluster/cloud log and the log files of the involved rule(s).")


def test_slurm_timeout_oom_and_cancel_name_the_state_and_the_key_once_per_job(tmp_path: Path) -> None:
    (tmp_path / "results/logs/embed").mkdir(parents=True)
    (tmp_path / "results/logs/train.log").write_text("slowstil: sleeping before train\n")
    (tmp_path / "results/logs/embed/S1.log").write_text("INFO embedding 10 tiles\n")
    (tmp_path / "results/logs/tile/").mkdir()
    (tmp_path / "results/logs/tile/S2.log").write_text("INFO tiling\n")
    train = "results/logs/train.log"
    log = tmp_path / "run.snakemake.log"
    log.write_text(
        block("train", f"{train}, {SLURM_LOGS}/rule_train/155.log", slurm_failed(155, "TIMEOUT"))
        + "Logfile results/logs/train.log:\n=====\nslowstil: sleeping before train\n=====\n"
        + block("train", train, jobid=0)  # the job script's own failure, echoed by show-failed-logs
        + "Trying to restart job 12.\n"
        + block("train", f"{train}, {SLURM_LOGS}/rule_train/156.log", slurm_failed(156, "TIMEOUT"))
        + block("embed", f"results/logs/embed/S1.log, {SLURM_LOGS}/rule_embed/S1/160.log",
                slurm_failed(160, "OUT_OF_MEMORY"), jobid=3)
        + block("tile", f"results/logs/tile/S2.log, {SLURM_LOGS}/rule_tile/S2/161.log",
                slurm_failed(161, "CANCELLED by 0"), jobid=4))
    here = os.getcwd()
    os.chdir(tmp_path)  # the job logs are relative to the run's folder, as in the workflow's onerror
    try:
        jobs = failed_jobs([log])
        lines = failure_lines([log], ["S1", "S2"], "cohort.csv")
    finally:
        os.chdir(here)
    assert jobs[0] == ("train", [train, f"{SLURM_LOGS}/rule_train/156.log"]), jobs  # one job, its last attempt
    assert len(lines) == 4, lines  # train, S1, S2, and what the failed cohort slides stop
    assert lines[0] == ("error: the train job failed: SLURM stopped it at its wall-time limit (TIMEOUT). Fix: raise "
                        "slurm.train_runtime (minutes) in the `slurm:` section of the workflow config, then run the "
                        f"same command again (log: {train}, {SLURM_LOGS}/rule_train/156.log)")
    assert "cohort slide S1: its embed job failed: SLURM stopped it over its memory request (OUT_OF_MEMORY). " \
           "Fix: raise slurm.embed_mem_mb (MB)" in lines[1]
    assert "cohort slide S2: its tile job failed: it was cancelled in SLURM (CANCELLED by 0: scancel, or an " \
           "administrator). Fix: run the same command again" in lines[2]
    assert not any("out of time?" in line for line in lines)


def test_a_scancelled_job_is_read_as_cancelled_by_the_slurm_plugin() -> None:
    """The plugin's own status query, on the line sacct wrote for the scancelled train job."""
    import pytest

    plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
    from weakstil import slurm_status

    sacct = "printf '157|CANCELLED by 0\\n158|COMPLETED\\n159|RUNNING\\n'"  # sacct -X --parsable2 -o JobIdRaw,State
    command = f"sh -c {sacct!r}"
    original = plugin.query_job_status
    raw, _ = asyncio.run(original(command, logging.getLogger("test")))
    assert raw["157"] == "CANCELLED by 0"  # what the plugin compared with "CANCELLED", and waited on
    try:
        assert slurm_status.install() and slurm_status.install()  # twice: wrapped once
        states, seconds = asyncio.run(plugin.query_job_status(command, logging.getLogger("test")))
        assert plugin.query_job_status.__wrapped__ is original
    finally:
        plugin.query_job_status = original
    assert states == {"157": "CANCELLED", "158": "COMPLETED", "159": "RUNNING"} and seconds >= 0


def lines_in(folder: Path, snakemake_log: str) -> list[str]:
    """The closing lines of a run in ``folder`` whose Snakemake log is ``snakemake_log`` (paths relative to it)."""
    log = folder / "run.snakemake.log"
    log.write_text(snakemake_log)
    here = os.getcwd()
    os.chdir(folder)
    try:
        return failure_lines([log], ["S1"], "cohort.csv")
    finally:
        os.chdir(here)


def test_a_job_never_submitted_says_so_with_the_plugins_reason_not_an_older_runs_log(tmp_path: Path) -> None:
    (tmp_path / "results/logs").mkdir(parents=True)
    (tmp_path / "results/logs/train.log").write_text("INFO final model: all 4 slides for 43 epochs\n")  # the last run's
    account = ("Job submission failed with exception: The given account nosuchacct appears to be invalid. Available "
               "accounts:\nrootFor further error details see the cluster/cloud log and the log files of the involved "
               "rule(s).")
    no_sbatch = "SLURM sbatch failed. The error message was '/bin/sh: 1: sbatch: not found'.\n    sbatch call:\n  sbatch"
    for message, expected in [
            (account, "The given account nosuchacct appears to be invalid. Available accounts: root. Fix: set "
                      "slurm.account to an account of yours"),
            (no_sbatch, "/bin/sh: 1: sbatch: not found. Fix: run Snakemake where `sbatch` is on PATH")]:
        lines = lines_in(tmp_path, block("train", "results/logs/train.log", message) * 2)  # two attempts
        assert len(lines) == 1, lines
        assert lines[0].startswith("error: the train job failed: it was never submitted to SLURM"), lines
        assert expected in lines[0] and "43 epochs" not in lines[0], lines


def test_a_slurm_job_that_wrote_no_slurm_log_names_its_folder(tmp_path: Path) -> None:
    (tmp_path / "results/logs").mkdir(parents=True)
    (tmp_path / "results/logs/train.log").write_text("INFO final model: all 4 slides for 43 epochs\n")  # the last run's
    slurm_log = f"{tmp_path}/.snakemake/slurm_logs/rule_train/170.log"  # never written
    lines = lines_in(tmp_path, block("train", f"results/logs/train.log, {slurm_log}", slurm_failed(170, "FAILED")))
    assert lines == [f"error: the train job failed: SLURM could not start it: it wrote no SLURM log into "
                     f"{tmp_path}/.snakemake/slurm_logs/rule_train (not writable, or not on the compute nodes' shared "
                     "file system), so its job log is not this run's. Fix: make "
                     f"{tmp_path}/.snakemake/slurm_logs/rule_train writable from the compute nodes, then run the same "
                     f"command again (log: results/logs/train.log, {slurm_log})"], lines
