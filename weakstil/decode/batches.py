"""Tile batches for the encoder: picks the read path and the split of the CPUs, and says what it did.

:func:`tile_batches` is what :func:`weakstil.embed.embed_slide` calls: per slide it decides

* the read path: JPEG tiles decoded here (CPU, libjpeg-turbo), on the GPU (nvJPEG), or OpenSlide
  (``--decode cpu|gpu|auto``; auto = the GPU when the encoder runs on CUDA and the level is JPEG);
* on the CPU path, the decode workers and torch threads (:class:`ThreadPlanner`, measured once per
  run and read path), with one pool of worker processes kept for the whole run;

and returns the batches plus a provenance dict (``decode`` attribute of the feature file).

Cache-key policy: the read path is *not* part of the feature cache key. Every path gives the
OpenSlide path's tiles within JPEG-decoder tolerance (bit-exact at DCT scale 1 on the CPU; features
within cosine 0.999 on the DCT-scaled and GPU paths, tested in ``tests/test_decode.py`` and
``benchmarks/gpu_check.py``), the same tolerance as running the encoder on another device, which
the key does not include either. A cache made on a GPU node is therefore reused on a laptop; the
``decode`` attribute records which path made it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil.decode.modes import DecodeMode
from weakstil.decode.procpool import SharedPool
from weakstil.decode.plan import (STATS_PROBE_TILES, ThreadPlan, measure_decode, measure_encoder, measure_stats,
                                  nearest_micro_batch, plan_cpu, plan_cuda)
from weakstil.decode.readers import ReadPath, ReadSpec, plan_reader
from weakstil.decode.shm import workers_for_shm
from weakstil.decode.workers import DecodePool, DecodeStats, iter_batches_inline
from weakstil.runtime import cpu_count, env_threads
from weakstil.slide import READ_REDUCE

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.encoders.factory import Encoder
    from weakstil.slide import Slide

log = logging.getLogger(__name__)


# -- one pool per process ---------------------------------------------------------------
_SHARED: SharedPool[DecodePool] = SharedPool(DecodePool)


def shared_pool(workers: int) -> DecodePool:
    """The process's decode pool with ``workers`` processes (restarted when the number changes)."""
    return _SHARED.get(workers)


def close_shared_pool() -> None:
    _SHARED.close()


# -- planning ---------------------------------------------------------------------------
#: The encoder probe's ``(rates, micro_batches)`` measured in this process, by encoder card, device,
#: tile size, batch and thread candidates (see :meth:`ThreadPlanner._encoder_probe`).
_PROBED: dict[tuple, tuple[dict[int, float], dict[int, int]]] = {}

#: Slides of at most this many batches are not worth measuring a plan on.
SMALL_SLIDE_BATCHES = 2

class ThreadPlanner:
    """Plans ``(decode workers, torch threads, micro-batch)`` for an encoder, measured on the first
    slide of each read path (see :mod:`weakstil.decode.plan`), and applies the torch thread count
    and the encoder's micro-batch."""

    def __init__(self, encoder: Encoder, batch_size: int = 64, workers: int | None = None,
                 threads: int | None = None, cpus: int | None = None, tile_stats: bool = True):
        self.encoder = encoder
        self.tile_stats = tile_stats  #: plan room for the per-tile measurements (False: --no-tile-stats)
        self.batch_size = batch_size
        self.workers = workers or None
        self.threads = threads or None
        self.cpus = cpus or cpu_count()
        #: the user's (or the job's) OMP_NUM_THREADS caps the torch threads a plan picks: it planned up to
        #: every core of the affinity mask, 2 threads under OMP_NUM_THREADS=1 (hunt 36f); --threads wins
        self.max_threads = env_threads()
        self._encoder_rates: tuple[dict[int, float], dict[int, int]] | None = None
        self._plans: dict[tuple, ThreadPlan] = {}

    def _encoder_probe(self, tile_px: int) -> tuple[dict[int, float], dict[int, int]]:
        """Encoder tiles/s per thread count and the micro-batch of each (measured once per planner)."""
        import torch

        from weakstil.decode.plan import MICRO_BATCHES, thread_candidates

        if self._encoder_rates is None:
            b = min(self.batch_size, max(MICRO_BATCHES))
            threads = [self.threads] if self.threads else thread_candidates(min(self.cpus,
                                                                                 self.max_threads or self.cpus))
            # the rates depend on the architecture, input and threads, not on the weights: a process that
            # plans again for the same encoder (napari's Score slide, a second Scorer, the test suite's
            # many embeds) reuses the first measurement instead of spending about 2 s of CPU on it again
            key = (self.encoder.card.to_json(), str(self.encoder.device), tile_px, b, tuple(threads))
            if key in _PROBED:
                self._encoder_rates = _PROBED[key]
                return self._encoder_rates
            tiles = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (b, tile_px, tile_px, 3),
                                                                         dtype=np.uint8))
            enc = self.encoder

            def run(n: int) -> None:
                with torch.inference_mode():
                    enc.forward(enc.transform(tiles[:n]))

            self._encoder_rates = _PROBED[key] = measure_encoder(run, threads, b)
        return self._encoder_rates

    def plan(self, spec: ReadSpec, coords: np.ndarray) -> ThreadPlan:
        key = (spec.path, spec.jpeg.reduce if spec.jpeg else 0, spec.tile_px)
        cuda = self.encoder.device.type == "cuda"
        if key not in self._plans and not cuda and len(coords) <= SMALL_SLIDE_BATCHES * self.batch_size:
            # measuring would cost more than it saves; a later, bigger slide is measured. With the split
            # given too (a workflow's embed job: one slide a process), the micro-batch probe alone took
            # 1.8 s of CPU on a 25-tile slide whose embedding took 1 s
            t = self.threads or min(self.cpus, self.max_threads or self.cpus)
            chunks = self._encoder_rates[1] if self._encoder_rates else {}
            p = ThreadPlan(self.workers or 1, t, self.cpus, "given" if self.workers and self.threads else "small slide",
                           micro_batch=nearest_micro_batch(chunks, t))
            self._apply(p)
            return p
        if key not in self._plans:
            if cuda and self.tile_stats and not self.workers:
                # CPU decoding beside the measurements: the cores split by their measured costs
                decode, stats = self._measure(spec, coords)
                p = plan_cuda(self.cpus, None, self.threads, decode=decode, stats=stats)
            elif cuda:
                p = plan_cuda(self.cpus, self.workers, self.threads)
            elif self.workers and self.threads:
                # the split is given; the micro-batch is still measured (for that thread count)
                rates, chunks = self._encoder_probe(spec.tile_px)
                p = ThreadPlan(self.workers, self.threads, self.cpus, "given", encoder_tiles_per_s=rates,
                               micro_batch=nearest_micro_batch(chunks, self.threads), encoder_micro_batches=chunks)
            else:
                decode, stats = self._measure(spec, coords)
                rates, chunks = self._encoder_probe(spec.tile_px)
                p = plan_cpu(decode, rates, self.cpus, self.workers, self.threads, stats=stats, micro_batches=chunks,
                             max_threads=self.max_threads)
            measured = "; ".join(f"{what} {v:.0f} tiles/s" for what, v in (
                ("decode per worker", p.decode_tiles_per_s), ("measurements per process", p.stats_tiles_per_s),
                ("predicted", p.predicted_tiles_per_s)) if math.isfinite(v))  # a given split measures less
            log.info("plan (%s): %d decode worker(s), %d torch thread(s) in micro-batches of %s tiles, %d tile "
                     "measurement process(es) on %d CPU(s)%s [%s%s]", spec.path.value, p.workers, p.threads,
                     p.micro_batch or "all", p.stats_processes, p.cpus,
                     f" (OMP_NUM_THREADS={self.max_threads})" if self.max_threads else "", p.source,
                     f"; {measured}" if measured else "")
            self._plans[key] = p
        p = self._plans[key]
        self._apply(p)
        return p

    def _measure(self, spec: ReadSpec, coords: np.ndarray) -> tuple[float, float | None]:
        """One decode worker's tiles/s on this slide, and one measurement process's (None without them)."""
        reader = spec.open()
        try:
            decode = measure_decode(reader.read_batch, coords[len(coords) // 4:], spec.tile_px)
            stats = None
            if self.tile_stats:
                sample = np.empty((STATS_PROBE_TILES, spec.tile_px, spec.tile_px, 3), np.uint8)
                part = coords[len(coords) // 2:][:STATS_PROBE_TILES]
                reader.read_batch(part, sample[:len(part)])
                stats = measure_stats(sample[:len(part)], spec.mpp)
        finally:
            reader.close()
        return decode, stats

    def _apply(self, p: ThreadPlan) -> None:
        """Torch threads and the encoder's micro-batch of plan ``p``."""
        import torch

        torch.set_num_threads(p.threads)
        self.encoder.micro_batch = p.micro_batch


# -- batches ----------------------------------------------------------------------------
def tile_batches(slide: Slide, coords: np.ndarray, tile_px: int, mpp: float, encoder: Encoder, *,
                 batch_size: int = 64, decode: str | DecodeMode = DecodeMode.AUTO, workers: int = 1,
                 planner: ThreadPlanner | None = None, prefetch: int | None = None,
                 ) -> tuple[Iterator[tuple[int, Any]], Callable[[], dict[str, Any]]]:
    """``(batches, provenance)`` for one slide: ``batches`` yields ``(start, uint8 (b, px, px, 3))``
    (numpy, or a tensor on the encoder's device on the GPU path) in order; ``provenance()`` is the
    ``decode`` record, complete once the batches are consumed.

    ``workers``: decode processes (0: decode in this process); ignored when ``planner`` is given.
    """
    import torch

    mode = DecodeMode(decode)
    dev = encoder.device
    spec = plan_reader(slide, mpp, tile_px)
    record: dict[str, Any] = {"mode": mode.value, "reduce": READ_REDUCE}
    gpu_reason = _gpu_reason(mode, spec, dev)
    if gpu_reason is None:
        from weakstil.decode.gpu import GpuTileBatches, full_scale

        gpu = GpuTileBatches(spec.jpeg, coords, tile_px, batch_size, dev)
        record.update(path=ReadPath.NVJPEG.value, decoder="torchvision.io.decode_jpeg (nvJPEG)",
                      **{k: v for k, v in full_scale(spec.jpeg).describe().items()},
                      torch_threads=torch.get_num_threads())
        batches = _gpu_with_fallback(gpu, slide, spec, coords, batch_size, encoder, record, planner, workers,
                                     prefetch)
        if spec.whiten_black:  # the CPU readers whiten their own tiles (ReadSpec.open)
            from weakstil.unscanned import RECORD

            record["background"] = RECORD
            batches = _whitened_gpu(batches)
        return batches, lambda: record
    record["gpu"] = gpu_reason
    plan = planner.plan(spec, coords) if planner is not None else None
    n_workers = workers_for_shm(plan.workers if plan is not None else max(0, int(workers)),
                                batch_size * tile_px * tile_px * 3)
    stats = DecodeStats()
    if n_workers >= 1:
        batches = shared_pool(n_workers).batches(spec, coords, batch_size, prefetch=prefetch,
                                                 pin_memory=dev.type == "cuda", stats=stats)
    else:
        batches = iter_batches_inline(spec, coords, batch_size, stats=stats)
    record.update(spec.describe())
    record["torch_threads"] = torch.get_num_threads()
    if env_threads():  # what capped them (the plan's own record has no room for the environment)
        record["omp_num_threads"] = env_threads()
    if plan is not None:
        record["plan"] = plan.to_dict()

    def provenance() -> dict[str, Any]:
        out = dict(record)
        out.update(path=stats.path or out["path"], decoder=stats.decoder or out.get("decoder"))
        out["stats"] = stats.to_dict()
        return out

    return batches, provenance


def _whitened_gpu(batches: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """The GPU path's batches with the slide's black unscanned area white, whitened on the device
    (batches of a CPU fallback come whitened from their reader already: whitening is idempotent)."""
    from weakstil.unscanned import whiten

    for start, batch in batches:
        whiten(batch)
        yield start, batch


def _gpu_reason(mode: DecodeMode, spec: ReadSpec, dev) -> str | None:
    """None when the GPU path is used; else why not."""
    if mode == DecodeMode.CPU:
        return "--decode cpu"
    if dev.type != "cuda":
        if mode == DecodeMode.GPU:
            from weakstil.runtime import warn_once

            warn_once(log, ("decode-gpu-on-cpu",), "--decode gpu needs the encoder on a GPU (--device cuda); the "
                      "encoder runs on %s, so tiles are decoded on the CPU", dev)
        return "the encoder runs on the CPU"
    if spec.jpeg is None:
        if mode == DecodeMode.GPU:
            log.warning("%s: --decode gpu not possible (not JPEG tiles: %s); decoding on the CPU", spec.slide_path,
                        spec.reason)
        return f"not JPEG tiles ({spec.reason})"
    from weakstil.decode.gpu import gpu_problem

    problem = gpu_problem(spec.jpeg, dev)
    if problem and mode == DecodeMode.GPU:
        log.warning("%s: --decode gpu not possible (%s); decoding on the CPU", spec.slide_path, problem)
    return problem


def _gpu_with_fallback(gpu, slide: Slide, spec: ReadSpec, coords: np.ndarray, batch_size: int, encoder: Encoder,
                       record: dict, planner: ThreadPlanner | None, workers: int, prefetch: int | None
                       ) -> Iterator[tuple[int, Any]]:
    """The GPU batches; if the GPU cannot decode the first batch, the CPU path for the whole slide."""
    from weakstil.decode.gpu import GpuDecodeUnavailable

    it = iter(gpu)
    try:
        try:
            first = next(it)
        except StopIteration:
            return
        except (GpuDecodeUnavailable, RuntimeError) as exc:
            log.warning("%s: GPU decoding failed (%s); decoding on the CPU", slide.path, exc)
            gpu.close()
            batches, prov = tile_batches(slide, coords, spec.tile_px, spec.mpp, encoder, batch_size=batch_size,
                                         decode=DecodeMode.CPU, workers=workers, planner=planner,
                                         prefetch=prefetch)
            try:
                yield from batches
            finally:
                record.clear()
                record.update(prov())
                record["mode"] = "gpu"
                record["gpu"] = f"failed: {exc}"
            return
        yield first
        yield from it
        record["tiles_decoded"] = gpu.tiles_decoded
        record["gpu_reading"] = gpu.reading_name  # how nvJPEG's output was read (RGB-stored tiles: "raw")
    finally:
        it.close()
        gpu.close()


def provenance_json(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, default=str)
