"""Job states of snakemake-executor-plugin-slurm as ``sacct`` writes them for a cancelled job.

``sacct`` gives a job cancelled with ``scancel`` (by its user or an administrator) the state
``CANCELLED by <uid>``; the plugin (2.8.0, the newest) compares states whole against ``CANCELLED``, so it
took that job for one still running: on the single-node cluster of pipelines/slurm/setup_localhost.sh, a
scancelled train job was waited for without end (10 minutes, no line), and SIGTERM ("Will exit after
finishing currently running jobs") waited for it too; only ``kill -9`` and ``--unlock`` ended the run
(hunt 37l). :func:`install` makes the plugin read the state's first word, so the run reports the job as
failed (``retries`` resubmits it once) and ends with its closing lines.
"""

from __future__ import annotations

import functools


def first_word_states(status_of_jobs: dict[str, str] | None) -> dict[str, str] | None:
    """``{"157": "CANCELLED by 0"}`` -> ``{"157": "CANCELLED"}``; other states as they are."""
    if status_of_jobs is None:
        return None
    return {job: (state.split()[0] if state.startswith("CANCELLED") else state)
            for job, state in status_of_jobs.items()}


def install() -> bool:
    """Wrap the plugin's status query (in the Snakemake process that submits the jobs); False when the
    plugin is not installed or has no such query (another version: left as it is)."""
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ImportError:
        return False
    query = getattr(plugin, "query_job_status", None)
    if query is None or getattr(query, "_weakstil_first_word", False):
        return query is not None

    @functools.wraps(query)
    async def first_word(*args, **kwargs):
        status_of_jobs, seconds = await query(*args, **kwargs)
        return first_word_states(status_of_jobs), seconds

    first_word._weakstil_first_word = True
    plugin.query_job_status = first_word
    return True
