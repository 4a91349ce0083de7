"""Memory available to a new allocation (RAM within a cgroup limit, or a GPU's free memory), with no import of
the rest of weakstil: :mod:`weakstil.slide` asks it (a single-level slide's image kept for a run's overviews) and
:mod:`weakstil.resources` checks a run's needs against it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def _cgroup_limit() -> int | None:
    """Memory left under this process's cgroup (v2) limit (a SLURM job, a container), if any."""
    try:
        text = Path("/proc/self/cgroup").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        rel = next(line.split("::", 1)[1] for line in text if line.startswith("0::"))
        base = Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (base / "memory.max").read_text(encoding="utf-8").strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text(encoding="utf-8").strip()))
    except (OSError, StopIteration, ValueError):
        return None


def available_memory(device: Any = "cpu") -> int:
    """Bytes a new allocation can use: free GPU memory on CUDA, else available RAM (MemAvailable,
    within a cgroup limit)."""
    if getattr(device, "type", str(device)).startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
            return 1 << 62
    limit = _cgroup_limit()
    return min(avail, limit) if limit is not None else avail
