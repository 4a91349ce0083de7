"""Per-tile measurements (:mod:`weakstil.tilestats`) computed beside the encoder, in worker processes.

The measurements cost about as much CPU per tile as a light encoder (small-cnn) and far more than
the GPU path's decode + encoder: done in the embedding loop they set its pace. Here each batch's
uint8 tiles are copied into a slot of a shared-memory ring (:class:`weakstil.decode.shm.Ring`) and
measured by ``processes`` spawned workers while the encoder runs; rows come back through a queue
and are written into the slide's ``stats`` array by tile index, so the order in which workers finish
does not matter and the numbers are those of :func:`weakstil.tilestats.batch_stats` in this process
(same function, same tiles, same numpy; tested bit for bit).

Safety is the decode pool's (:mod:`weakstil.decode.workers`): ``spawn``, workers ignore Ctrl-C
and die with their parent, the segment is created and unlinked by the main process only, a dead or
failing worker stops the slide with one clear error, and an abandoned slide's queued batches are
skipped (job ids). Nothing is written by the workers: an interrupted slide leaves no output.

Workers run numpy with one BLAS/OpenMP thread (set before numpy is imported; this module imports
numpy lazily for that reason): one process per core is the parallelism.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import time
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from weakstil.decode.procpool import ProcessPool, RingView, SharedPool, quiet_logging, worker_tasks

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.encoders.factory import Encoder

log = logging.getLogger(__name__)

#: Seconds between liveness checks while waiting.
POLL_S = 0.25
#: Ring slots per worker process (one being measured, one queued), plus two.
SLOTS_PER_PROCESS = 2
#: Slides of at most this many batches are measured in the embedding loop unless told otherwise
#: (starting the measurement processes would cost more than it saves).
SMALL_SLIDE_TILE_BATCHES = 2
#: Environment variables that cap a worker's numpy/BLAS threads.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def stats_processes(decode_record: dict[str, Any], cpus: int, device_type: str, torch_threads: int) -> int:
    """Measurement processes: as planned (:func:`weakstil.decode.plan.plan_cpu`), else the CPUs the
    decode plan leaves free, at least 1.

    On the CPU the decode workers and torch threads are busy; on CUDA torch's threads mostly wait
    for the GPU, so only the decode workers and this process count (nvJPEG decoding: this process
    only, leaving nearly every core to the measurements)."""
    plan = decode_record.get("plan") or {}
    if int(plan.get("stats_processes", 0) or 0) > 0:  # planned with the measured measurement cost
        return int(plan["stats_processes"])
    workers = int(plan.get("workers", (decode_record.get("stats") or {}).get("workers", 0)) or 0)
    if str(decode_record.get("path", "")).endswith("gpu"):
        workers = 0
    busy = workers + (1 if device_type == "cuda" else int(plan.get("threads", torch_threads) or 1))
    return max(1, int(cpus) - busy)


# -- the worker process -----------------------------------------------------------------
def worker_main(tasks, results, current_job, parent_pid: int) -> None:  # pragma: no cover - other process
    """Entry point of a measurement process (module-level: importable under ``spawn``)."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"  # before numpy loads its BLAS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_logging()
    import numpy as np

    from weakstil.decode.workers import _die_with_parent
    from weakstil.stain import SlideStain
    from weakstil.tilestats import batch_stats

    _die_with_parent()
    ring = RingView()
    try:
        for task in worker_tasks(tasks, current_job, parent_pid):
            job, name, shape, slot, count, he, max_c, white, mpp = task
            t0 = time.process_time()
            try:
                rows = batch_stats(ring.get(name, shape)[slot, :count],
                                   SlideStain(np.asarray(he), np.asarray(max_c), white=white), mpp)
                results.put((job, slot, rows, None, time.process_time() - t0))
            except BaseException as exc:  # report everything; the parent decides
                results.put((job, slot, None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}",
                             time.process_time() - t0))
    finally:
        ring.close()


# -- the pool ---------------------------------------------------------------------------
class StatsPool(ProcessPool):
    """``processes`` measurement workers, started on first use and kept for every slide of a run."""

    worker = staticmethod(worker_main)
    name = "weakstil-tilestats"

    def job(self, out, stain, mpp: float, batch_size: int, tile_px: int, pin_memory: bool = False) -> StatsJob:
        """Measure one slide: :meth:`StatsJob.submit` its batches, :meth:`StatsJob.finish` before
        using ``out`` ((N, len(COLUMNS)) float32, filled by tile index). ``pin_memory``: the tiles
        come from the GPU (nvJPEG): page-lock the ring for faster device -> host copies."""
        from weakstil.decode.shm import Ring, ring_max_bytes

        if not self.alive():
            self.close()
            self._start()
        slot_bytes = batch_size * tile_px * tile_px * 3
        n_slots = max(1, min(SLOTS_PER_PROCESS * self.n + 2, ring_max_bytes() // slot_bytes))
        if self._ring is None or not self._ring.fits(n_slots, batch_size, tile_px, pin_memory):
            self._drop_ring()
            self._ring = Ring(n_slots, batch_size, tile_px, pin_memory=pin_memory)
        self._job_id += 1
        self.set_job(self._job_id)
        return StatsJob(self, self._job_id, out, stain, mpp)


class StatsJob:
    """One slide's measurements in flight (see :meth:`StatsPool.job`)."""

    def __init__(self, pool: StatsPool, job: int, out, stain, mpp: float):
        import collections

        import numpy as np

        self.pool, self.job, self.out, self.mpp = pool, job, out, float(mpp)
        self.he, self.max_c = np.asarray(stain.he, np.float64), np.asarray(stain.max_c, np.float64)
        self.white = getattr(stain, "white", None)
        ring = pool._ring
        self.free = collections.deque(range(ring.shape[0]))
        self.start_of: dict[int, int] = {}  # slot -> first tile index of its batch
        self.cpu_seconds = 0.0  #: summed over workers
        self.wait_seconds = 0.0  #: this process waiting for a free slot or the last rows
        self.tiles = 0
        self.done = False
        self._checked_at = 0.0

    def submit(self, start: int, tiles) -> None:
        """Measure ``tiles`` (uint8 (b, px, px, 3), numpy or a tensor on any device) as rows
        ``start...`` of ``out``; the tiles are copied, so the caller may reuse its buffer at once."""
        import numpy as np

        t0 = time.perf_counter()
        while not self.free:
            self._collect()
        self.wait_seconds += time.perf_counter() - t0
        slot = self.free.popleft()
        ring = self.pool._ring
        count = len(tiles)
        dest = ring.array[slot, :count]
        if isinstance(tiles, np.ndarray):
            np.copyto(dest, tiles)
        else:  # a torch tensor (GPU decode): one device -> host copy straight into the slot
            import torch

            torch.from_numpy(dest).copy_(tiles)
        self.start_of[slot] = start
        self.pool._tasks.put((self.job, ring.name, ring.shape, slot, count, self.he, self.max_c, self.white,
                               self.mpp))
        self.tiles += count

    def finish(self) -> None:
        """Wait for every submitted batch's rows (raises if a worker failed or died)."""
        t0 = time.perf_counter()
        while self.start_of:
            self._collect()
        self.wait_seconds += time.perf_counter() - t0
        self.done = True
        self.pool.set_job(0)

    def cancel(self) -> None:
        """Abandon the slide: queued batches are skipped, late rows ignored; a worker still reading
        its slot keeps its own mapping, so the ring is replaced."""
        if not self.done:
            self.done = True
            self.pool.set_job(0)
            if self.start_of:
                self.pool._drop_ring()

    def record(self) -> dict[str, Any]:
        """What the measurements cost (recorded in the ``decode`` provenance)."""
        return {"processes": self.pool.n, "tiles": self.tiles, "cpu_seconds": round(self.cpu_seconds, 3),
                "wait_seconds": round(self.wait_seconds, 3)}

    def _check_alive(self) -> None:
        from weakstil.errors import WeakSTILError

        self._checked_at = time.monotonic()
        dead = [p for p in self.pool._procs if not p.is_alive()]
        if dead:
            from weakstil.decode.workers import worker_death_reason

            codes = [p.exitcode for p in dead]
            self.pool.close()
            raise WeakSTILError(f"{len(dead)} tile measurement worker(s) died (exit code "
                                f"{', '.join(map(str, codes))}{worker_death_reason(codes)})",
                                fix="check memory (a worker may have been killed) and run again") from None

    def _collect(self) -> None:
        from weakstil.errors import WeakSTILError

        try:
            job, slot, rows, err, seconds = self.pool._results.get(timeout=POLL_S)
        except queue.Empty:
            self._check_alive()
            return
        if time.monotonic() - self._checked_at > POLL_S:
            self._check_alive()
        if job != self.job:
            return  # a late result of an abandoned slide
        self.cpu_seconds += seconds
        start = self.start_of.pop(slot)
        self.free.append(slot)
        if err is not None:
            log.debug("tile measurement worker traceback:\n%s", err)
            raise WeakSTILError(f"measuring tiles failed ({err.splitlines()[0]})",
                                fix="run again; report the error if it repeats")
        self.out[start:start + len(rows)] = rows


# -- one slide's batches --------------------------------------------------------------
def measured_batches(batches: Iterator[tuple[int, Any]], stain: Any, mpp: float, stats,
                     stain_norm: str = "none", job: StatsJob | None = None) -> Iterator[tuple[int, Any]]:
    """Pass ``batches`` through, measuring each tile's :mod:`weakstil.tilestats` row into ``stats``,
    and re-render the tiles with the reference stain when ``stain_norm`` is ``macenko``
    (:mod:`weakstil.stain`). With a ``job`` (:mod:`weakstil.tilestats_pool`) the tiles are handed
    to the measurement processes and measured while the encoder runs (``job.finish()`` before
    reading ``stats``); without one they are measured here, before the batch goes on (``stats`` None
    and no job: not measured, ``--no-tile-stats``). GPU batches (tensors) are measured on a host copy."""
    import numpy as np

    from weakstil.stain import Normaliser, normalise_tensor
    from weakstil.tilestats import batch_stats

    normaliser = Normaliser(stain) if stain_norm == "macenko" else None

    try:
        for start, batch in batches:
            if job is not None:
                job.submit(start, batch)
            elif stats is not None:
                host = batch if isinstance(batch, np.ndarray) else batch.cpu().numpy()
                stats[start:start + len(host)] = batch_stats(host, stain, mpp)
            if normaliser is not None:  # a tensor (GPU-decoded) is normalised where it is
                batch = normaliser(batch) if isinstance(batch, np.ndarray) else normalise_tensor(batch, stain)
            yield start, batch
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def stats_job(n_tiles: int, stats, stain: Any, mpp: float, encoder: Encoder, decode_record: dict,
              *, batch_size: int, tile_px: int, processes: int | None = None) -> StatsJob | None:
    """The measurement processes' job for one slide, or ``None`` to measure in the embedding loop
    (``processes=0``, or automatic sizing on a slide of at most two batches, not worth starting
    processes for). ``processes=None``: the CPUs the decode plan leaves free, at least 1."""
    import torch

    from weakstil.runtime import cpu_count

    if processes is None:
        if n_tiles <= SMALL_SLIDE_TILE_BATCHES * batch_size:
            return None
        processes = stats_processes(decode_record, cpu_count(), encoder.device.type, torch.get_num_threads())
    from weakstil.decode.shm import workers_for_shm

    if workers_for_shm(processes, batch_size * tile_px * tile_px * 3) <= 0:
        return None
    gpu_tiles = str(decode_record.get("path", "")).endswith("gpu")
    return shared_stats_pool(processes).job(stats, stain, mpp, batch_size, tile_px, pin_memory=gpu_tiles)


# -- one pool per process ---------------------------------------------------------------
_SHARED: SharedPool[StatsPool] = SharedPool(StatsPool)


def shared_stats_pool(processes: int) -> StatsPool:
    """The process's measurement pool with ``processes`` workers (restarted when the number changes)."""
    return _SHARED.get(processes)


def close_shared_stats_pool() -> None:
    _SHARED.close()
