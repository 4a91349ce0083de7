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


def failed_jobs(snakemake_logs) -> list[tuple[str, list[str]]]:
    """(rule, its log files) of each failed job in Snakemake's run logs (the ``log`` of ``onerror``: a list
    of paths in Snakemake 9, one path in 8), once each, in order."""
    jobs: dict[tuple[str, tuple[str, ...]], None] = {}
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
            jobs[(rule, tuple(logs.group(1).split(", ")) if logs else ())] = None
    return [(rule, list(logs)) for rule, logs in jobs]


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


def failure_lines(snakemake_logs, cohort_keys, cohort_csv: str) -> list[str]:
    """One line per failed job (the slide, the step, the reason, its log) and one saying what it
    stopped and what to do; empty when no failed job is found in the logs."""
    failed = failed_jobs(snakemake_logs)
    if not failed:
        return []
    cohort_keys = set(cohort_keys)
    lines, slides = [], []
    for rule, logs in failed:
        where = f" (log: {', '.join(logs)})" if logs else ""
        slide = Path(logs[0]).stem if rule in PER_SLIDE and logs else None
        if slide is None:
            lines.append(f"error: the {rule} job failed: {job_reason(logs)}{where}")
            continue
        kind = "cohort slide" if slide in cohort_keys else "score slide"
        lines.append(f"error: {kind} {slide}: its {rule} job failed: {job_reason(logs)}{where}")
        if slide in cohort_keys and slide not in slides:
            slides.append(slide)
    if slides:
        lines.append(f"error: {len(slides)} of {len(cohort_keys)} cohort slides failed ({', '.join(slides)}); the "
                     "other slides' jobs ran, but training (and a `tumorbed: train` detector), evaluation, the report "
                     "and scoring wait for every cohort "
                     f"slide. Fix: mend what the slide's error names (its scan, its outline), or take its row out of "
                     f"{cohort_csv}; then run the same command again (what is done is not redone)")
    return lines
