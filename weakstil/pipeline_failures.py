"""What failed in a workflow run, in a few lines at its end.

With ``keep-going`` (both profiles) one failing cohort slide (a damaged scan, a slide without tissue)
lets every other slide's jobs finish, and the run then ends with Snakemake's ``At least one job did not
complete successfully``: the slide's own ``error:`` line was somewhere above, between hundreds of job
lines, and nothing said that training waits for every cohort slide, nor what to do (mend the file or
take the slide out of the cohort CSV). :func:`failure_lines` reads the failed jobs from Snakemake's log
and each job's own log, for the workflow's ``onerror`` handler.
"""

from __future__ import annotations

import re
from pathlib import Path

from weakstil.pipeline_slide_steps import last_error_line

#: The per-slide rules: their log file is named after the slide (logs/<rule>/<slide>.log).
PER_SLIDE = ("tile", "embed", "tumorbed", "score_slide_tiles", "score_slide")


#: The ``slurm:`` keys of each rule's wall time and memory (pipelines/Snakefile's resources).
_RUNTIME_KEY = {"embed": "embed_runtime", "score_slide": "embed_runtime", "train": "train_runtime"}
_MEM_KEY = {"embed": "embed_mem_mb", "score_slide": "embed_mem_mb", "train": "train_mem_mb",
            "tumorbed_detector": "train_mem_mb"}
#: A SLURM job's own log (the slurm executor adds it to the job's logs in its ``Error in rule`` block).
_SLURM_LOG = "/.snakemake/slurm_logs/"


def _failed(snakemake_logs) -> dict[tuple[str, tuple[str, ...]], dict]:
    """(rule, the job's own logs) -> its SLURM logs and last SLURM state, from the ``Error in rule`` blocks of
    Snakemake's run logs. A SLURM job's attempts (``retries``) and the failure lines of its job script that
    ``show-failed-logs`` echoes are one job (they were 3 closing lines for one train job)."""
    jobs: dict[tuple[str, tuple[str, ...]], dict] = {}
    if isinstance(snakemake_logs, (str, Path)):
        snakemake_logs = [snakemake_logs]
    for path in snakemake_logs or []:
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for block in re.split(r"^(?=Error in rule )", text, flags=re.M)[1:]:
            rule = re.match(r"Error in rule (\w+)", block).group(1)
            logs = re.search(r"^\s+log: (.*?)(?: \(check log file\(s\) for error details\))?$", block, re.M)
            logs = logs.group(1).split(", ") if logs else []
            job = jobs.setdefault((rule, tuple(lg for lg in logs if _SLURM_LOG not in lg)),
                                  {"slurm_logs": [], "state": None})
            job["slurm_logs"] += [lg for lg in logs if _SLURM_LOG in lg and lg not in job["slurm_logs"]]
            state = re.search(r"^\s+message: SLURM-job '[^']*' failed, SLURM status is: '([^']+)'", block, re.M)
            if state:
                job["state"] = state.group(1)
            # never submitted: sbatch missing or refusing (an account not yours), or the plugin refusing before it
            refused = re.search(r"^\s+message: (SLURM sbatch failed\. The error message was|Job submission failed "
                                r"with exception:)(.*?)(?:For further error details|^\s+(?:jobid|sbatch call):)",
                                block, re.M | re.S)
            if refused:
                job["state"] = "SUBMIT " + " ".join(refused.group(2).split()).strip(" '.")
    return jobs


def failed_jobs(snakemake_logs) -> list[tuple[str, list[str]]]:
    """(rule, its log files: its own, then its last SLURM job's) of each failed job in Snakemake's run logs
    (the ``log`` of ``onerror``: a list of paths in Snakemake 9, one path in 8), once each, in order."""
    return [(rule, [*logs, *job["slurm_logs"][-1:]]) for (rule, logs), job in _failed(snakemake_logs).items()]


def slurm_reason(rule: str, state: str | None) -> str | None:
    """What SLURM's final state of a job (``sacct``) says happened and what to do; None for a job that
    failed by itself (``FAILED``: its own log says why) or ran without SLURM."""
    state = state or ""
    kind = state.upper()
    if kind.startswith("TIMEOUT"):
        key = _RUNTIME_KEY.get(rule, "runtime")
        return (f"SLURM stopped it at its wall-time limit (TIMEOUT). Fix: raise slurm.{key} (minutes) in the "
                "`slurm:` section of the workflow config, then run the same command again")
    if kind.startswith("OUT_OF_ME"):
        key = _MEM_KEY.get(rule, "mem_mb")
        return (f"SLURM stopped it over its memory request (OUT_OF_MEMORY). Fix: raise slurm.{key} (MB) in the "
                "`slurm:` section of the workflow config, then run the same command again")
    if kind.startswith("CANCELLED"):
        return f"it was cancelled in SLURM ({state}: scancel, or an administrator). Fix: run the same command again"
    if kind.startswith("SUBMIT "):
        why = state[len("SUBMIT "):]
        fix = ("run Snakemake where `sbatch` is on PATH (a login node of the cluster)" if "not found" in why
               else "set slurm.account to an account of yours (`sacctmgr show assoc user=$USER`), or null for your "
               "default" if "account" in why.lower()
               else "check the `slurm:` section (partition, account) against `sinfo` and `sacctmgr show assoc`")
        return (f"it was never submitted to SLURM (its log is not this run's): {why}. Fix: {fix}, then run the same "
                "command again")
    if kind.startswith(("NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE")):
        return f"SLURM ended it ({state}: its node failed or it was preempted). Fix: run the same command again"
    return None


def job_reason(logs: list[str]) -> str:
    """The failed job's own reason: the last ``error:`` line of its log; a log without one is of a job
    stopped from outside (killed, out of memory or of wall time), whose last line is no reason."""
    for log in logs:
        try:
            text = Path(log).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(line.startswith("error:") for line in text.splitlines()):
            return last_error_line(text).rstrip(".")
        if text.strip():
            return f"stopped without an error line (killed, out of memory or out of time?); last line: {last_error_line(text)}"
    return "stopped without an error line (killed, out of memory or out of time?)"


def unstarted_reason(job: dict) -> str | None:
    """A SLURM job that FAILED without writing its SLURM log never started its command (slurmstepd could not
    open the log: exit code 0:53), so its job log is an older run's; None otherwise."""
    if not job["slurm_logs"] or (job["state"] or "").upper() != "FAILED" or Path(job["slurm_logs"][-1]).exists():
        return None
    folder = Path(job["slurm_logs"][-1]).parent
    return (f"SLURM could not start it: it wrote no SLURM log into {folder} (not writable, or not on the compute "
            f"nodes' shared file system), so its job log is not this run's. Fix: make {folder} writable from the "
            "compute nodes, then run the same command again")


def failure_lines(snakemake_logs, cohort_keys, cohort_csv: str) -> list[str]:
    """One line per failed job (the slide, the step, the reason, its log) and one saying what it
    stopped and what to do; empty when no failed job is found in the logs."""
    failed = [(rule, [*logs, *job["slurm_logs"][-1:]], unstarted_reason(job) or slurm_reason(rule, job["state"])
               or job_reason(list(logs)))
              for (rule, logs), job in _failed(snakemake_logs).items()]
    if not failed:
        return []
    cohort_keys = set(cohort_keys)
    lines, slides = [], []
    for rule, logs, reason in failed:
        where = f" (log: {', '.join(logs)})" if logs else ""
        slide = Path(logs[0]).stem if rule in PER_SLIDE and logs else None
        if slide is None:
            lines.append(f"error: the {rule} job failed: {reason}{where}")
            continue
        kind = "cohort slide" if slide in cohort_keys else "score slide"
        lines.append(f"error: {kind} {slide}: its {rule} job failed: {reason}{where}")
        if slide in cohort_keys and slide not in slides:
            slides.append(slide)
    if slides:
        lines.append(f"error: {len(slides)} of {len(cohort_keys)} cohort slides failed ({', '.join(slides)}); the "
                     "other slides' jobs ran, but training (and a `tumorbed: train` detector), evaluation, the report "
                     "and scoring wait for every cohort "
                     f"slide. Fix: mend what the slide's error names (its scan, its outline), or take its row out of "
                     f"{cohort_csv}; then run the same command again (what is done is not redone)")
    return lines
