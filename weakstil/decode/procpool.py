"""The life of a pool of spawned worker processes, shared by the decode pool
(:class:`weakstil.decode.workers.DecodePool`) and the tile-measurement pool
(:class:`weakstil.tilestats_pool.StatsPool`), and the one pool of each kind a process keeps.

A pool starts ``n`` workers on first use (``spawn``: no fork of a process with torch/OpenMP
threads), each running the subclass's ``worker(tasks, results, current_job, parent_pid)``; it
keeps its shared-memory ring from slide to slide, and :meth:`ProcessPool.close` stops the workers
(sentinels, then a kill after a grace period) and unlinks the ring. Standard library only: worker
processes import this module.
"""

from __future__ import annotations

import atexit
import os
import queue
import time
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar


# -- inside a worker process ------------------------------------------------------------
def quiet_logging() -> None:
    """A worker's own log records go nowhere. It opens the slides the parent opened and said what
    there was to say about (an ``--slide-mpp`` override...); with no handler of its own, each
    worker's copy went through logging's last-resort handler, a second, bare line on stderr.
    Failures reach the parent through the result queue."""
    import logging

    logging.getLogger().addHandler(logging.NullHandler())


def worker_tasks(tasks, current_job, parent_pid: int, poll_s: float = 1.0) -> Iterator[tuple]:
    """The tasks a worker should run, in order: each a tuple whose first item is its job id.
    Tasks of an abandoned job (not ``current_job``) are skipped; the iteration ends on the
    ``None`` sentinel, or when the parent process has gone (polled every ``poll_s`` when idle, and
    before every task: a worker still starting when its parent was killed missed PR_SET_PDEATHSIG
    and, never idle in a long queue, decoded on for minutes)."""
    while True:
        try:
            task = tasks.get(timeout=poll_s)
        except queue.Empty:
            if os.getppid() != parent_pid:
                return
            continue
        if task is None or os.getppid() != parent_pid:
            return
        if task[0] != current_job.value:
            continue  # the slide was abandoned: skip its queued batches
        yield task


class RingView:
    """A worker's view of the parent's shared-memory ring, attached again only when the parent
    hands out a new segment (a new name)."""

    def __init__(self) -> None:
        self._shm: Any = None
        self._name: str | None = None
        self.array: Any = None

    def get(self, name: str, shape: tuple[int, ...], flat: bool = False):
        """The ring as a uint8 array of ``shape`` (``flat``: slots and their tiles merged into one axis)."""
        if name != self._name:
            import numpy as np

            from weakstil.decode.shm import attach_shm

            self.close()
            self._shm = attach_shm(name)
            self._name = name
            array = np.ndarray(shape, np.uint8, buffer=self._shm.buf)
            self.array = array.reshape((-1,) + tuple(shape[2:])) if flat else array
        return self.array

    def close(self) -> None:
        self.array = None
        if self._shm is not None:
            try:
                self._shm.close()
            except BufferError:  # a view still held somewhere: the OS frees it at exit
                pass
            self._shm = None
            self._name = None


class ProcessPool:
    """``n`` spawned workers sharing a task queue, a result queue and the current job id."""

    #: ``worker_main(tasks, results, current_job, parent_pid)``, a module-level function (spawn pickles it by name)
    worker: Callable[..., None]
    #: process names: ``<name>-<i>``
    name = "weakstil-worker"

    def __init__(self, processes: int, start_method: str = "spawn"):
        self.n = max(1, int(processes))
        self.start_method = start_method
        self._procs: list = []
        self._tasks = self._results = self._job = None
        self._job_id = 0
        self._ring: Any = None  # weakstil.decode.shm.Ring, kept from slide to slide (creating and pinning it costs)

    def _start(self) -> None:
        import multiprocessing as mp
        import signal
        import threading
        from multiprocessing import resource_tracker

        # the workers and multiprocessing's resource tracker are born ignoring Ctrl-C and a closed
        # terminal (an ignored signal stays ignored across exec): the parent stops them, where each
        # worker would otherwise print its own KeyboardInterrupt traceback, and a tracker killed by
        # SIGHUP beside its parent came back without its records (a KeyError traceback per queue)
        main = threading.current_thread() is threading.main_thread()
        stopping = [s for s in (signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None] if main else []
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in stopping}
        try:
            resource_tracker.ensure_running()
            ctx = mp.get_context(self.start_method)
            self._tasks, self._results = ctx.Queue(), ctx.Queue()
            self._job = ctx.Value("q", 0, lock=False)
            self._procs = [ctx.Process(target=type(self).worker, args=(self._tasks, self._results, self._job,
                                                                       os.getpid()),
                                       name=f"{self.name}-{i}", daemon=True) for i in range(self.n)]
            for p in self._procs:
                p.start()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def set_job(self, job: int) -> None:
        """Tell the workers which job is current (0: none); nothing once the pool is closed."""
        if self._job is not None:
            self._job.value = job

    def alive(self) -> bool:
        return bool(self._procs) and all(p.is_alive() for p in self._procs)

    def _drop_ring(self) -> None:
        if self._ring is not None:
            self._ring.close()
            self._ring = None

    def close(self) -> None:
        self._drop_ring()
        if not self._procs:
            return
        self.set_job(-1)
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
            # the queue's feeder thread holds two of its semaphores: left to end on its own, it dropped
            # them itself, and one unlinked there as the interpreter exited (a pool closed at exit) was
            # never unregistered: "resource_tracker: There appear to be 1 leaked semaphore objects"
            feeder = getattr(q, "_thread", None)
            if feeder is not None and feeder.ident is not None:  # never started (no thread left: ulimit -v, -u)
                feeder.join(timeout=2.0)  # not forever: a feeder stuck on a full pipe of dead workers
            q.cancel_join_thread()
        self._procs = []
        # dropped now, not at interpreter exit: the queues' semaphores are unlinked when their last
        # reference goes, and ones still referenced when the process ends are reported by
        # multiprocessing's resource tracker as "leaked semaphore objects"
        self._tasks = self._results = self._job = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - safety net
        try:
            self.close()
        except Exception:
            pass


P = TypeVar("P", bound=ProcessPool)


class SharedPool(Generic[P]):
    """The process's one pool of a kind, restarted when the number of workers changes and closed
    at exit (workers keep their decoded tiles and the ring between slides)."""

    def __init__(self, make: Callable[[int], P]):
        self._make = make
        self._pool: P | None = None
        atexit.register(self.close)

    def get(self, n: int) -> P:
        if self._pool is not None and self._pool.n != n:
            self.close()
        if self._pool is None:
            self._pool = self._make(n)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
