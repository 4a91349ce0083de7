"""Decode worker processes filling a ring of shared-memory batch buffers.

Decoding in threads of the embedding process shares one GIL and one scheduler with the encoder's
torch threads; separate processes decode on every core they are given and stay out of the
encoder's way. The main process owns one shared-memory segment split into batch slots; a worker
takes a task (slide read spec, slot, tile coordinates), decodes straight into the slot and
reports back; batches are yielded in order, each slot reused once the consumer has moved on.

Safety:

* workers are started with ``spawn`` (no fork of a process with torch/OpenMP threads), import only
  numpy, Pillow, tifffile, simplejpeg and OpenSlide, ignore Ctrl-C (the main process decides) and
  exit when their parent dies (Linux ``PR_SET_PDEATHSIG``, and a parent check on every idle second);
* the segment is created and unlinked by the main process only (workers attach without
  registering it with the resource tracker, which would unlink it under the owner), so normal
  ends, errors and interrupts leave nothing in ``/dev/shm``; after a SIGKILL of the main process
  Python's resource tracker removes it;
* a worker that dies or fails stops the slide with one clear error; a JPEG tile that cannot be
  decoded switches the slide to OpenSlide (recorded) instead.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from weakstil.decode.procpool import ProcessPool, RingView, quiet_logging, worker_tasks
from weakstil.decode.readers import ReadSpec
from weakstil.decode.shm import (  # noqa: F401 - re-exported: the ring lived here
    RING_MAX_BYTES, RING_MIN_BYTES, SHM_PREFIX, Ring, attach_shm, leaked_segments, ring_max_bytes)
from weakstil.errors import WeakSTILError

log = logging.getLogger(__name__)

#: Work goes to the workers in bands of consecutive batches about this many rows of output tiles
#: tall, each split by columns into one strip per batch (see :meth:`DecodePool.batches`). A
#: boundary between two workers' tiles decodes the JPEG tiles it cuts twice: with one task per
#: batch (256 tiles ~ 2 rows of a 32,000 px slide) 46 % more JPEG tiles are decoded than by one
#: worker; with bands of 8 rows (4 batches) 15 % (64-tile batches: 100 % -> 27 %).
BAND_ROWS = 8
#: At most this many batches per band (the ring holds about workers + 2 bands).
BAND_MAX_BATCHES = 16
#: Seconds between liveness checks while waiting.
POLL_S = 0.25


class DecodeWorkerError(WeakSTILError):
    """A decode worker failed or died."""


@dataclass
class DecodeStats:
    """What the decode side did for one slide (recorded in the provenance)."""

    path: str = ""
    decoder: str = ""
    workers: int = 0
    batches: int = 0
    tiles: int = 0
    decode_seconds: float = 0.0  #: summed over workers (CPU time spent decoding)
    wait_seconds: float = 0.0  #: time the consumer waited for a batch
    jpeg_tiles_decoded: int = 0  #: JPEG tiles the workers decoded (> tiles: shared tiles decoded twice)
    band: int = 0  #: batches per band (decoded together, split by columns among the workers)
    ring_slots: int = 0
    ring_seconds: float = 0.0  #: creating (and page-locking) the shared-memory ring
    pinned: bool = False  #: the ring is page-locked for asynchronous copies to the GPU
    fallback: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        d = {"path": self.path, "decoder": self.decoder, "workers": self.workers, "batches": self.batches,
             "tiles": self.tiles, "decode_seconds": round(self.decode_seconds, 3),
             "wait_seconds": round(self.wait_seconds, 3), "jpeg_tiles_decoded": self.jpeg_tiles_decoded,
             "band": self.band, "ring_slots": self.ring_slots, "ring_seconds": round(self.ring_seconds, 3),
             "pinned": self.pinned}
        if self.fallback:
            d["fallback"] = self.fallback
        d.update(self.extra)
        return d


def band_batches(coords: np.ndarray, batch_size: int, workers: int) -> int:
    """Batches per band: about :data:`BAND_ROWS` rows of the slide's output tiles (1 for one
    worker, whose cache already carries from one batch to the next, or for scattered tiles)."""
    if workers <= 1 or len(coords) == 0:
        return 1
    per_row = len(coords) / max(1, len(np.unique(coords[:, 1])))
    return int(np.clip(round(BAND_ROWS * per_row / batch_size), 1, BAND_MAX_BATCHES))


def band_tasks(coords: np.ndarray, lo: int, n_parts: int) -> list[np.ndarray]:
    """Split the tiles ``coords`` (global indices ``lo...``) of one band into ``n_parts`` column
    strips of equal size, each in raster order: a worker decodes a compact strip, whose JPEG tiles
    stay in its cache from one row of output tiles to the next."""
    idx = np.arange(lo, lo + len(coords))
    if n_parts <= 1:
        return [idx]
    by_x = np.lexsort((coords[:, 1], coords[:, 0]))
    out = []
    for part in np.array_split(by_x, n_parts):
        if len(part):
            part = part[np.lexsort((coords[part, 0], coords[part, 1]))]
            out.append(idx[part])
    return out


# -- the worker process -----------------------------------------------------------------
def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass


def read_into(reader, coords: np.ndarray, out: np.ndarray, dest: np.ndarray) -> None:
    """Tile ``j`` of ``coords`` into ``out[dest[j]]`` with any :class:`TileReader`."""
    if hasattr(reader, "read_into"):
        reader.read_into(coords, out, dest)
        return
    for j, d in enumerate(dest.tolist()):
        reader.read_batch(coords[j:j + 1], out[d:d + 1])


def worker_main(tasks, results, current_job, parent_pid: int) -> None:  # pragma: no cover - other process
    """Entry point of a decode process (module-level: importable under ``spawn``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    quiet_logging()
    _die_with_parent()
    ring = RingView()
    reader = None
    reader_spec: ReadSpec | None = None
    try:
        for task in worker_tasks(tasks, current_job, parent_pid):
            job, spec, name, shape, task_id, coords, dest = task
            t0 = time.perf_counter()
            decoded = 0
            try:
                out = ring.get(name, shape, flat=True)
                if spec != reader_spec:
                    if reader is not None:
                        reader.close()
                        reader = None
                    reader_spec = None
                    reader = spec.open()
                    reader_spec = spec
                before = reader.tiles_decoded
                read_into(reader, coords, out, dest)
                decoded = reader.tiles_decoded - before
                results.put((job, task_id, None, time.perf_counter() - t0, decoded))
            except BaseException as exc:  # report everything; the parent decides
                from weakstil.decode.jpeg_tiles import JpegStreamError

                kind = "jpeg" if isinstance(exc, JpegStreamError) else (
                    "input" if isinstance(exc, WeakSTILError) else "crash")
                msg = exc.one_line() if isinstance(exc, WeakSTILError) else f"{type(exc).__name__}: {exc}"
                results.put((job, task_id, (kind, msg, traceback.format_exc()), time.perf_counter() - t0, decoded))
    finally:
        ring.close()
        if reader is not None:
            reader.close()


# -- the pool ---------------------------------------------------------------------------
def worker_death_reason(codes: list) -> str:
    """What a worker's exit code says: SIGBUS is a full /dev/shm (the ring's pages could not be
    allocated; "check memory" alone sent the user to the RAM), SIGKILL the out-of-memory killer."""
    import signal

    if -int(signal.SIGBUS) in codes:
        from weakstil.decode.shm import SHM_DIR

        try:
            st = os.statvfs(SHM_DIR)
            free = f", {st.f_bavail * st.f_frsize / 2**20:.1f} MB free now"
        except OSError:
            free = ""
        return (f": SIGBUS, {SHM_DIR} is full{free}; give it more room (docker run --shm-size=1g) "
                f"or lower --batch-size")
    if -int(signal.SIGKILL) in codes:
        return ": SIGKILL, e.g. the out-of-memory killer or the job's memory limit"
    return ""


class DecodePool(ProcessPool):
    """``workers`` decode processes, started on first use and kept for every slide of a run.

    Use as a context manager (or call :meth:`close`)::

        with DecodePool(4) as pool:
            for start, batch in pool.batches(spec, coords, batch_size=64):
                ...
    """

    worker = staticmethod(worker_main)
    name = "weakstil-decode"

    def __init__(self, workers: int, start_method: str = "spawn"):
        super().__init__(workers, start_method)
        self._checked_at = 0.0  # last liveness check of the workers

    # batches ---------------------------------------------------------------------
    def batches(self, spec: ReadSpec, coords: np.ndarray, batch_size: int, prefetch: int | None = None,
                pin_memory: bool = False, stats: DecodeStats | None = None,
                band: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, uint8 (b, px, px, 3))`` in order; a batch is valid until the next is asked for.

        Work is handed out in bands of ``band`` consecutive batches (default :func:`band_batches`:
        about :data:`BAND_ROWS` rows of tiles; 1 with one worker), each split into as many column
        strips as it has batches, one task per strip: neighbouring output tiles share JPEG tiles,
        and a compact strip keeps them in one worker's cache where one task per batch would decode
        every tile row a batch boundary cuts in two workers. ``prefetch``: batches decoded ahead
        (default: workers + band)."""
        n = len(coords)
        if n == 0:
            return
        if not self.alive():
            self.close()
            self._start()
        stats = stats if stats is not None else DecodeStats()
        px = spec.tile_px
        n_batches = -(-n // batch_size)
        slot_bytes = batch_size * px * px * 3
        g = int(band) if band else band_batches(coords, batch_size, self.n)
        max_slots = max(1, ring_max_bytes() // slot_bytes)
        g = max(1, min(g, n_batches, max(1, max_slots // 3)))  # room for >= 2 bands and the one held
        ahead = max(1, prefetch or (self.n + g))
        n_slots = max(1, min(g * (-(-ahead // g) + 1), max_slots, n_batches))
        g = min(g, n_slots)
        t0 = time.perf_counter()
        ring = self._ring
        if ring is None or not ring.fits(n_slots, batch_size, px, pin_memory):
            self._drop_ring()
            ring = self._ring = Ring(n_slots, batch_size, px, pin_memory=pin_memory)
        stats.ring_seconds += time.perf_counter() - t0
        self._job_id += 1
        job = self._job_id
        self.set_job(job)
        stats.path, stats.workers, stats.decoder = spec.path.value, self.n, str(spec.describe()["decoder"])
        stats.band, stats.ring_slots, stats.pinned = g, n_slots, ring.pinned
        coords = np.ascontiguousarray(coords, dtype=np.int64)
        free = collections.deque(range(n_slots))
        slot_of: dict[int, int] = {}  # batch index -> slot
        band_left: dict[int, int] = {}  # band -> tasks not done
        tasks: dict[int, tuple] = {}  # task id -> (band, coords, dest), kept for a resubmission
        specs = [spec]  # the spec in force (a JPEG failure switches it to OpenSlide)
        n_bands = -(-n_batches // g)
        outstanding = [0]

        def put(task_id: int) -> None:
            _b, c, dest = tasks[task_id]
            self._tasks.put((job, specs[0], ring.name, ring.shape, task_id, c, dest))
            outstanding[0] += 1

        def band_size(b: int) -> int:
            return min(g, n_batches - b * g)

        def submit(b: int) -> None:
            first = b * g
            for i in range(first, first + band_size(b)):
                slot_of[i] = free.popleft()
            lo, hi = first * batch_size, min(n, (first + band_size(b)) * batch_size)
            parts = band_tasks(coords[lo:hi], lo, band_size(b))
            band_left[b] = len(parts)
            for part in parts:
                dest = np.array([slot_of[j // batch_size] * batch_size + j % batch_size for j in part.tolist()],
                                np.int64)
                task_id = len(tasks)
                tasks[task_id] = (b, coords[part], dest)
                put(task_id)

        finished = False
        try:
            nxt = 0
            held: int | None = None  # the slot the consumer holds
            for i in range(n_batches):
                if held is not None:
                    free.append(held)  # the consumer asked for the next batch: the last one is free
                    held = None
                while nxt < n_bands and len(free) >= band_size(nxt):
                    submit(nxt)
                    nxt += 1
                b = i // g
                t0 = time.perf_counter()
                while band_left[b] > 0:
                    self._collect(job, tasks, band_left, outstanding, stats, specs, put)
                stats.wait_seconds += time.perf_counter() - t0
                held = slot_of.pop(i)
                count = min(batch_size, n - i * batch_size)
                stats.batches += 1
                stats.tiles += count
                yield i * batch_size, ring.array[held, :count]
            finished = True
        finally:
            self.set_job(0)  # the pool may be closed by now (a worker died)
            if not (finished and outstanding[0] == 0):
                # queued tasks of this slide are skipped; a worker still writing keeps its own mapping
                # of the segment, so unlinking it now is safe (late results are told apart by job id)
                self._drop_ring()

    def _check_alive(self) -> None:
        self._checked_at = time.monotonic()
        dead = [p for p in self._procs if not p.is_alive()]
        if dead:
            codes = [p.exitcode for p in dead]
            self.close()
            raise DecodeWorkerError(f"{len(dead)} decode worker(s) died (exit code {', '.join(map(str, codes))}"
                                    f"{worker_death_reason(codes)})",
                                    fix="check memory (a worker may have been killed), or run with "
                                        "--workers 0 to decode in the main process") from None

    def _collect(self, job: int, tasks: dict, band_left: dict, outstanding: list, stats: DecodeStats,
                 specs: list, put) -> None:
        try:
            r_job, task_id, err, seconds, decoded = self._results.get(timeout=POLL_S)
        except queue.Empty:
            self._check_alive()
            return
        if time.monotonic() - self._checked_at > POLL_S:  # results flowing: still notice a dead worker
            self._check_alive()
        if r_job != job:
            return  # a late result of an abandoned slide
        outstanding[0] -= 1
        stats.decode_seconds += seconds
        stats.jpeg_tiles_decoded += decoded
        if err is None:
            band_left[tasks[task_id][0]] -= 1
            return
        kind, msg, tb = err
        if kind == "jpeg" and specs[0].jpeg is not None:
            log.warning("%s: %s; reading this slide through OpenSlide instead", specs[0].slide_path, msg)
            specs[0] = specs[0].fall_back(f"JPEG decoding failed: {msg}")
            stats.path, stats.fallback, stats.decoder = specs[0].path.value, msg, "openslide"
            put(task_id)
            return
        if kind == "jpeg":  # a late JPEG failure after the switch: read that strip again via OpenSlide
            put(task_id)
            return
        log.debug("decode worker traceback:\n%s", tb)
        if kind == "input":
            raise WeakSTILError(msg)
        raise DecodeWorkerError(f"decoding tiles failed ({msg})", path=specs[0].slide_path,
                                fix="run with --decode cpu --workers 0 to see the full error, and report it")


def iter_batches_inline(spec: ReadSpec, coords: np.ndarray, batch_size: int,
                        stats: DecodeStats | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """The same batches decoded in this process (``--workers 0``; tests, tiny slides)."""
    n = len(coords)
    if n == 0:
        return
    stats = stats if stats is not None else DecodeStats()
    reader = spec.open()
    stats.path, stats.workers, stats.decoder = spec.path.value, 0, reader.decoder
    buf = np.empty((batch_size, spec.tile_px, spec.tile_px, 3), np.uint8)
    try:
        for start in range(0, n, batch_size):
            part = coords[start:start + batch_size]
            t0 = time.perf_counter()
            try:
                reader.read_batch(part, buf[:len(part)])
            except Exception as exc:
                from weakstil.decode.jpeg_tiles import JpegStreamError

                if not isinstance(exc, JpegStreamError):
                    raise
                log.warning("%s: %s; reading this slide through OpenSlide instead", spec.slide_path, exc)
                reader.close()
                spec = spec.fall_back(f"JPEG decoding failed: {exc}")
                stats.path, stats.fallback, stats.decoder = spec.path.value, str(exc), "openslide"
                reader = spec.open()
                reader.read_batch(part, buf[:len(part)])
            dt = time.perf_counter() - t0
            stats.decode_seconds += dt
            stats.wait_seconds += dt
            stats.batches += 1
            stats.tiles += len(part)
            yield start, buf[:len(part)]
    finally:
        reader.close()
