"""The wall time a workflow job asks of SLURM on each attempt.

The SLURM profile resubmits a failed job (``retries: 1``), and Snakemake asked the same ``runtime`` again: a
job SLURM stopped at its wall-time limit (TIMEOUT) ran out of time once more, and the run ended after two
full limits (hunt 38c: a 240-minute train job cost 480 minutes and then failed). The Snakefile's ``runtime``
resources are now :func:`runtime_resource`, which Snakemake calls with the job's ``attempt`` (1, then 2 on
the retry): the limit times the attempt (240, 480), at most what the partition allows (``MaxTime`` as
``scontrol`` tells it, asked once, at the first retry; with no ``scontrol`` the doubled limit is asked).
A node failure or an out-of-memory job gets the longer limit too: it only waits longer in the queue.
"""

from __future__ import annotations

import functools
import logging
from typing import Callable

log = logging.getLogger(__name__)


@functools.cache
def partition_max_minutes(partition: str) -> float | None:
    """``partition``'s wall-time limit in minutes (``scontrol``), or ``None``: unlimited, or no SLURM here."""
    from weakstil.slurm_cluster import query_cluster

    try:
        part = query_cluster().partitions.get(partition)
    except Exception:  # noqa: BLE001 - no scontrol, or it failed: ask the scaled limit (sbatch says if it is too much)
        return None
    return None if part is None else part.max_time_min


def scaled_runtime(minutes: int, attempt: int, partition: str,
                   max_minutes: Callable[[str], float | None] | None = None) -> int:
    """The wall time in minutes of ``attempt`` (1, 2, ...) of a job whose first attempt asks ``minutes``
    (``max_minutes``: a partition's limit; default :func:`partition_max_minutes`)."""
    minutes, attempt = int(minutes), max(1, int(attempt))
    if attempt == 1:  # the first attempt asks the setting, as the preflight checked it against the partition
        return minutes
    most = (max_minutes or partition_max_minutes)(partition)
    wanted = minutes * attempt
    if most is not None and wanted > most:
        log.warning("attempt %d of a job in partition %s would ask %d min; asking the %d min the partition allows",
                    attempt, partition, wanted, int(most))
        return max(minutes, int(most))
    return wanted


def runtime_resource(minutes: int, partition: str) -> Callable:
    """The ``runtime`` resource of a Snakefile rule: a function of the job's ``attempt`` (Snakemake passes it
    by name), ``minutes`` on the first attempt and ``minutes x attempt`` on each retry."""
    minutes = int(minutes)

    def runtime(wildcards, attempt: int = 1) -> int:
        return scaled_runtime(minutes, attempt, partition)

    return runtime
