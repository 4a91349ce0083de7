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
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from weakstil.decode.readers import ReadSpec
from weakstil.errors import WeakSTILError

log = logging.getLogger(__name__)

#: Name prefix of our shared-memory segments (``/dev/shm/weakstil-...``).
SHM_PREFIX = "weakstil-"
#: Upper bound on the ring's size (bytes).
RING_MAX_BYTES = 768 << 20
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
    fallback: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        d = {"path": self.path, "decoder": self.decoder, "workers": self.workers, "batches": self.batches,
             "tiles": self.tiles, "decode_seconds": round(self.decode_seconds, 3),
             "wait_seconds": round(self.wait_seconds, 3)}
        if self.fallback:
            d["fallback"] = self.fallback
        d.update(self.extra)
        return d


# -- shared memory ----------------------------------------------------------------------
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


def leaked_segments() -> list[str]:
    """Our segments in ``/dev/shm`` (tests: must be empty after every run)."""
    try:
        return sorted(n for n in os.listdir("/dev/shm") if n.startswith(SHM_PREFIX))
    except FileNotFoundError:  # not Linux
        return []


class Ring:
    """``n`` batch slots of ``(batch, px, px, 3)`` uint8 in one shared-memory segment."""

    def __init__(self, n: int, batch: int, px: int, pin_memory: bool = False):
        from multiprocessing import shared_memory

        self.shape = (n, batch, px, px, 3)
        size = int(np.prod(self.shape))
        self.shm = shared_memory.SharedMemory(name=f"{SHM_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}",
                                              create=True, size=size)
        self.array = np.ndarray(self.shape, np.uint8, buffer=self.shm.buf)
        self._pinned = False
        if pin_memory:
            self._pinned = _cuda_host_register(self.array)

    @property
    def name(self) -> str:
        return self.shm.name

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


# -- the worker process -----------------------------------------------------------------
def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass


def worker_main(tasks, results, current_job, parent_pid: int) -> None:  # pragma: no cover - other process
    """Entry point of a decode process (module-level: importable under ``spawn``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    shm = ring = None
    shm_name = None
    reader = None
    reader_spec: ReadSpec | None = None
    try:
        while True:
            try:
                task = tasks.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent_pid:
                    return
                continue
            if task is None:
                return
            job, spec, name, shape, slot, start, coords = task
            if job != current_job.value:
                continue  # the slide was abandoned: skip its queued batches
            t0 = time.perf_counter()
            try:
                if name != shm_name:
                    ring = None
                    if shm is not None:
                        shm.close()
                    shm = attach_shm(name)
                    shm_name = name
                    ring = np.ndarray(shape, np.uint8, buffer=shm.buf)
                if spec != reader_spec:
                    if reader is not None:
                        reader.close()
                        reader = None
                    reader_spec = None
                    reader = spec.open()
                    reader_spec = spec
                reader.read_batch(coords, ring[slot, :len(coords)])
                results.put((job, slot, start, len(coords), None, time.perf_counter() - t0))
            except BaseException as exc:  # report everything; the parent decides
                from weakstil.decode.jpeg_tiles import JpegStreamError

                kind = "jpeg" if isinstance(exc, JpegStreamError) else (
                    "input" if isinstance(exc, WeakSTILError) else "crash")
                msg = exc.one_line() if isinstance(exc, WeakSTILError) else f"{type(exc).__name__}: {exc}"
                results.put((job, slot, start, len(coords), (kind, msg, traceback.format_exc()),
                             time.perf_counter() - t0))
    finally:
        ring = None
        if reader is not None:
            reader.close()
        if shm is not None:
            try:
                shm.close()
            except BufferError:
                pass


# -- the pool ---------------------------------------------------------------------------
class DecodePool:
    """``workers`` decode processes, started on first use and kept for every slide of a run.

    Use as a context manager (or call :meth:`close`)::

        with DecodePool(4) as pool:
            for start, batch in pool.batches(spec, coords, batch_size=64):
                ...
    """

    def __init__(self, workers: int, start_method: str = "spawn"):
        self.n = max(1, int(workers))
        self.start_method = start_method
        self._procs: list = []
        self._tasks = self._results = self._job = None
        self._job_id = 0

    # lifecycle -------------------------------------------------------------------
    def _start(self) -> None:
        import multiprocessing as mp

        ctx = mp.get_context(self.start_method)
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._job = ctx.Value("q", 0, lock=False)
        self._procs = [ctx.Process(target=worker_main, args=(self._tasks, self._results, self._job, os.getpid()),
                                   name=f"weakstil-decode-{i}", daemon=True) for i in range(self.n)]
        for p in self._procs:
            p.start()

    def alive(self) -> bool:
        return bool(self._procs) and all(p.is_alive() for p in self._procs)

    def close(self) -> None:
        if not self._procs:
            return
        if self._job is not None:
            self._job.value = -1
        for _ in self._procs:
            try:
                self._tasks.put(None)
            except (OSError, ValueError):
                break
        deadline = time.monotonic() + 5.0
        for p in self._procs:
            p.join(timeout=max(0.05, deadline - time.monotonic()))
        for p in self._procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=2.0)
        for q in (self._tasks, self._results):
            q.close()
            q.cancel_join_thread()
        self._procs = []

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            self.close()
        except Exception:
            pass

    # batches ---------------------------------------------------------------------
    def batches(self, spec: ReadSpec, coords: np.ndarray, batch_size: int, prefetch: int | None = None,
                pin_memory: bool = False, stats: DecodeStats | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, uint8 (b, px, px, 3))`` in order; a batch is valid until the next is asked for."""
        n = len(coords)
        if n == 0:
            return
        if not self.alive():
            self.close()
            self._start()
        px = spec.tile_px
        n_batches = -(-n // batch_size)
        slot_bytes = batch_size * px * px * 3
        prefetch = max(1, min(prefetch or 2 * self.n, n_batches, max(1, RING_MAX_BYTES // slot_bytes - 1)))
        ring = Ring(prefetch + 1, batch_size, px, pin_memory=pin_memory)
        self._job_id += 1
        job = self._job_id
        self._job.value = job
        stats = stats if stats is not None else DecodeStats()
        stats.path, stats.workers, stats.decoder = spec.path.value, self.n, str(spec.describe()["decoder"])
        coords = np.ascontiguousarray(coords, dtype=np.int64)
        free = collections.deque(range(prefetch + 1))
        slot_of: dict[int, int] = {}  # batch index -> slot
        done: dict[int, tuple] = {}
        specs = [spec]  # the spec in force (a JPEG failure switches it to OpenSlide)

        def submit(i: int) -> None:
            slot = slot_of[i] if i in slot_of else free.popleft()
            slot_of[i] = slot
            s = i * batch_size
            self._tasks.put((job, specs[0], ring.name, ring.shape, slot, s, coords[s:s + batch_size]))

        try:
            nxt = 0
            while nxt < n_batches and len(slot_of) < prefetch:
                submit(nxt)
                nxt += 1
            held: int | None = None  # the slot the consumer holds
            for i in range(n_batches):
                t0 = time.perf_counter()
                while i not in done:
                    self._collect(job, done, batch_size, stats, specs, submit)
                stats.wait_seconds += time.perf_counter() - t0
                start, count = done.pop(i)
                if held is not None:
                    free.append(held)
                held = slot_of.pop(i)
                while nxt < n_batches and len(slot_of) < prefetch and free:
                    submit(nxt)
                    nxt += 1
                stats.batches += 1
                stats.tiles += count
                yield start, ring.array[held, :count]
        finally:
            # queued tasks of this slide are skipped; a worker still writing keeps its own mapping
            # of the segment, so unlinking it now is safe (late results are told apart by job id)
            self._job.value = 0
            ring.close()

    def _collect(self, job: int, done: dict, batch_size: int, stats: DecodeStats, specs: list, submit) -> None:
        try:
            r_job, slot, start, count, err, seconds = self._results.get(timeout=POLL_S)
        except queue.Empty:
            dead = [p for p in self._procs if not p.is_alive()]
            if dead:
                codes = ", ".join(str(p.exitcode) for p in dead)
                self.close()
                raise DecodeWorkerError(f"{len(dead)} decode worker(s) died (exit code {codes})",
                                        fix="check memory (a worker may have been killed), or run with "
                                            "--workers 0 to decode in the main process") from None
            return
        if r_job != job:
            return  # a late result of an abandoned slide
        stats.decode_seconds += seconds
        i = start // batch_size
        if err is None:
            done[i] = (start, count)
            return
        kind, msg, tb = err
        if kind == "jpeg" and specs[0].jpeg is not None:
            log.warning("%s: %s; reading this slide through OpenSlide instead", specs[0].slide_path, msg)
            specs[0] = specs[0].fall_back(f"JPEG decoding failed: {msg}")
            stats.path, stats.fallback, stats.decoder = specs[0].path.value, msg, "openslide"
            submit(i)
            return
        if kind == "jpeg":  # a late JPEG failure after the switch: read that batch again via OpenSlide
            submit(i)
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
