"""The shared-memory ring decode workers write batches into (``/dev/shm/weakstil-<pid>-...``),
created and unlinked by the main process only, optionally page-locked for asynchronous copies to
the GPU."""

from __future__ import annotations

import logging
import os
import sys
import uuid

import numpy as np

log = logging.getLogger(__name__)

#: Name prefix of our shared-memory segments (``/dev/shm/weakstil-...``).
SHM_PREFIX = "weakstil-"
#: Bounds on the ring's size (bytes); within them 1/16 of the RAM and half of /dev/shm's free space.
RING_MIN_BYTES = 256 << 20
RING_MAX_BYTES = 2 << 30


def attach_shm(name: str):
    """Attach to an existing segment without registering it with the resource tracker (the
    creator owns it: a worker's tracker entry would unlink it under the owner, or warn)."""
    from multiprocessing import resource_tracker, shared_memory

    try:
        return shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
    except TypeError:
        register = resource_tracker.register
        resource_tracker.register = lambda *a, **k: None  # this process only (a worker)
        try:
            return shared_memory.SharedMemory(name=name)
        finally:
            resource_tracker.register = register


def leaked_segments(pid: int | None = None) -> list[str]:
    """Our segments in ``/dev/shm`` (tests: must be empty after every run); ``pid``: only those
    that process created (other runs on the machine have their own)."""
    prefix = SHM_PREFIX if pid is None else f"{SHM_PREFIX}{pid}-"
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(prefix))
    except FileNotFoundError:  # not Linux
        return []


def remove_orphaned_segments() -> list[str]:
    """Unlink our segments whose creating process is gone (killed with SIGKILL, or by the
    out-of-memory killer, it could not unlink them); returns their names. A live process's
    segments, and names that do not parse, are left alone."""
    removed = []
    for name in leaked_segments():
        pid_text = name[len(SHM_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        try:
            os.unlink(os.path.join("/dev/shm", name))
            removed.append(name)
        except OSError:  # another run removed it first, or not ours to remove
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class Ring:
    """``n`` batch slots of ``(batch, px, px, 3)`` uint8 in one shared-memory segment."""

    def __init__(self, n: int, batch: int, px: int, pin_memory: bool = False):
        from multiprocessing import shared_memory

        orphans = remove_orphaned_segments()
        if orphans:
            log.info("removed %d shared-memory segments of killed runs (%s)", len(orphans), ", ".join(orphans))
        self.shape = (n, batch, px, px, 3)
        size = int(np.prod(self.shape))
        from weakstil.errors import OutputError, file_size_limit

        limit = file_size_limit()  # a segment is a file in /dev/shm: past the limit its ftruncate fails, and
        if limit is not None and size > limit:  # Python's cleanup of it printed a resource-tracker traceback
            raise OutputError(f"the decode workers' shared memory ({size / 2**20:.0f} MB in /dev/shm) is larger than "
                              f"this shell's file size limit (ulimit -f: {limit // 1024} KB)", path="/dev/shm",
                              fix="raise the limit ('ulimit -f unlimited') and run again", stops_batch=True)
        self.shm = shared_memory.SharedMemory(name=f"{SHM_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}",
                                              create=True, size=size)
        self.array = np.ndarray(self.shape, np.uint8, buffer=self.shm.buf)
        self._pinned = False
        self.pin_requested = bool(pin_memory)  # tried once: a refusal is not retried slide after slide
        if pin_memory:
            self._pinned = _cuda_host_register(self.array)

    @property
    def name(self) -> str:
        return self.shm.name

    @property
    def pinned(self) -> bool:
        return self._pinned

    def fits(self, n: int, batch: int, px: int, pin_memory: bool) -> bool:
        """Can this ring serve a slide needing ``n`` slots of ``batch`` tiles of ``px``?"""
        return self.array is not None and self.shape[0] >= n and self.shape[1:3] == (batch, px) \
            and (self.pin_requested or not pin_memory)

    def close(self) -> None:
        if self._pinned:
            _cuda_host_unregister(self.array)
            self._pinned = False
        self.array = None  # type: ignore[assignment]
        try:
            self.shm.close()
        except BufferError:  # a consumer still holds a view: the mapping goes with it
            pass
        try:
            self.shm.unlink()
        except FileNotFoundError:
            pass


def ring_max_bytes() -> int:
    """How big the ring may be here: 1/16 of the RAM and half of /dev/shm's free space, within
    [RING_MIN_BYTES, RING_MAX_BYTES] (a small /dev/shm, e.g. a container's, wins over the minimum)."""
    cap = RING_MAX_BYTES
    try:
        cap = min(cap, max(RING_MIN_BYTES, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 16))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        st = os.statvfs("/dev/shm")
        cap = min(cap, st.f_bavail * st.f_frsize // 2)
    except (OSError, AttributeError):
        pass
    return max(cap, 1)


#: Where POSIX shared memory lives on Linux (``shm_open``); a container's is often 64 MB, or mounted read-only.
SHM_DIR = "/dev/shm"


def shm_problem(slot_bytes: int, folder: str | None = None) -> str | None:
    """Why worker processes cannot share batches of ``slot_bytes`` through ``folder`` here, else None.

    Two rings may live there at once (decoding's and the tile measurements', each taking at most half
    of the free space, at least one slot), so two slots must fit. A segment larger than the free space
    is created all the same (a sparse file) and the worker writing into it dies of SIGBUS: with a 1 MB
    /dev/shm, 'weakstil score' failed every slide with "1 decode worker(s) died (exit code -7). Fix:
    check memory"; a read-only /dev/shm failed them as "OUT: Read-only file system" (hunt 36f)."""
    if not sys.platform.startswith("linux"):  # shm_open has no folder to check elsewhere
        return None
    folder = folder or SHM_DIR
    if not os.path.isdir(folder):
        return f"there is no {folder}"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{folder} is not writable"
    try:
        st = os.statvfs(folder)
    except OSError as exc:
        return f"{folder} cannot be read ({exc.strerror})"
    free = st.f_bavail * st.f_frsize
    if free < 2 * slot_bytes:
        return (f"{folder} has {free / 2**20:.1f} MB free, less than two batches of tiles "
                f"({2 * slot_bytes / 2**20:.1f} MB)")
    return None


def workers_for_shm(workers: int, slot_bytes: int) -> int:
    """``workers``, or 0 (work in this process, slower but the same result) with one warning when
    :func:`shm_problem` says the workers could not share their batches."""
    if workers <= 0:
        return workers
    problem = shm_problem(slot_bytes)
    if problem is None:
        return workers
    from weakstil.runtime import warn_once

    warn_once(log, ("shm", problem), "%s: the decode and measurement worker processes share tiles through it, so "
              "tiles are decoded and measured in this process instead (slower, same result). Fix: a writable "
              "/dev/shm with room for them (docker run --shm-size=1g), or a smaller --batch-size", problem)
    return 0


def _cuda_host_register(arr: np.ndarray) -> bool:
    """Page-lock a buffer for asynchronous host->GPU copies (best effort)."""
    try:
        import torch

        rc = torch.cuda.cudart().cudaHostRegister(arr.ctypes.data, arr.nbytes, 0)
        return int(rc) == 0 if not hasattr(rc, "value") else rc.value == 0
    except Exception:  # no CUDA, or registration refused: plain (pageable) copies
        return False


def _cuda_host_unregister(arr: np.ndarray) -> None:
    try:
        import torch

        torch.cuda.cudart().cudaHostUnregister(arr.ctypes.data)
    except Exception:
        pass
