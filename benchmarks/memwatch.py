"""Peak memory of a command together with the worker processes it starts (Linux ``/proc``).

``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the peak of the single largest process that has been
waited for, not of a process and its workers together: ``weakstil score`` decodes in spawned worker
processes (and measures tiles in others), whose memory it left out. :func:`run_watched` runs a
command, samples the resident memory (RSS) of the command and all its descendants, and reports the
peak of their sum beside the largest single process's own peak (each process's ``VmHWM``, its
resident high-water mark since its ``exec``). Not ``wait4``'s ``ru_maxrss``: a child forked from a
large process starts with the parent's resident pages counted, so a command started from a pytest
worker that had grown to 2.5 GB read 2.5 GB for a 150 MB worker.

The sum counts the pages the processes share (the Python and numpy libraries every worker loads) in
each of them: an upper bound, by about 10-20 MB a worker. The proportional set size (PSS) would not,
but it also splits the pages shared with unrelated processes: on a machine where other runs load torch
from the same venv, ``weakstil score``'s PSS read 0.73 GB while its own RSS was 0.85 GB, lower the
busier the machine.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Watched:
    returncode: int
    seconds: float
    tree_peak_bytes: int  #: the peak of the summed RSS of the command and its descendants (sampled)
    largest_bytes: int  #: the peak RSS of the command's largest single process (its VmHWM, sampled)
    max_processes: int  #: the most processes seen at once in the tree


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:  # gone meanwhile
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and ')'
            kids.setdefault(ppid, []).append(int(d))
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _status_bytes(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def rss_bytes(pid: int) -> int:
    """A process's resident set size now (0 if it is gone)."""
    return _status_bytes(pid, "VmRSS:")


def peak_rss_bytes(pid: int) -> int:
    """A process's resident high-water mark since its program started (0 if it is gone)."""
    return _status_bytes(pid, "VmHWM:")


def run_watched(cmd: list[str], interval: float = 0.1, **popen_kw) -> Watched:
    """Run ``cmd`` to its end, sampling its process tree's memory every ``interval`` seconds."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, **popen_kw)
    peak, largest, most = 0, 0, 0
    while True:
        pids = tree(proc.pid)
        peak = max(peak, sum(rss_bytes(p) for p in pids))
        largest = max([largest, *(peak_rss_bytes(p) for p in pids)])  # growth after the last sample is missed
        most = max(most, len(pids))
        done, status = os.waitpid(proc.pid, os.WNOHANG)
        if done:
            break
        time.sleep(interval)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Watched(proc.returncode, time.perf_counter() - t0, max(peak, largest), largest, most)
