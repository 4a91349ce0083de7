"""Stage 1: embed every tile of a slide with an encoder, cached per slide in HDF5.

The cache ``CACHE/<slide_id>.h5`` is a :class:`weakstil.files.FeaturesFile` (layout documented
there): the tiles, their ``features`` (N, D) float32 and the encoder's provenance, with a
``cache_key``: sha256 of the encoder name, its weights' sha256, the card fields that change
features (model, kwargs, input size, mean/std, pooling, stain normalisation), the tiling key, the
slide's µm/px, the slide's content fingerprint (:mod:`weakstil.fingerprint`) and the version of the
per-tile stain/morphometry measurements (:mod:`weakstil.tilestats`, stored beside the features with
each tile's stroma estimate; the slide's Macenko stain estimate is in the ``stain`` attribute).

The file is written under a temporary name beside the target and renamed when complete, so an
interrupted run never leaves a file that looks complete; a rerun removes such leftovers. A
rerun skips a slide only when its cache is complete and its ``cache_key`` matches: a cache made
from another slide file of the same name, or without a fingerprint, is recomputed with one log
line. The slide's lock (:mod:`weakstil.locks`) is held from that check to the rename, so runs
sharing a cache folder never embed one slide twice nor remove each other's temporary files.

The ``decode`` attribute (JSON) records how the tiles were read (:mod:`weakstil.decode`): the
``mode`` asked for, the ``path`` taken (``jpeg-tiles``, ``jpeg-tiles-gpu`` or ``openslide``, with
the reason for OpenSlide or for not using the GPU), decoder, pyramid level and DCT scale, decode
workers and torch threads with the measured plan behind them, and timings. It is not part of the
cache key (every path gives the same tiles within decoder tolerance; see
:mod:`weakstil.decode.batches`).

Speed: JPEG-tiled TIFF/SVS levels are decoded by libjpeg-turbo in worker processes into a ring of
shared-memory batch buffers (on CUDA: by nvJPEG on the GPU), other formats through OpenSlide,
while the main process runs the encoder; the split of the CPUs is planned from measured stage
costs (:mod:`weakstil.decode`). The per-tile measurements are made in their own processes beside
the encoder (:mod:`weakstil.tilestats_pool`). Memory does not grow with the slide.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from weakstil import settings
from weakstil.code_version import version as code_version
from weakstil.atomic import remove_stale_temps
from weakstil.errors import WeakSTILError
from weakstil.feature_cache import (CACHE_FORMAT, cache_key, cache_status, legacy_match, refuse_other_work,
                                    settings_differences)
from weakstil.files import FeaturesFile, slide_file
from weakstil.locks import OutputLock
from weakstil.outputdir import check_replaceable
from weakstil.runtime import TorchThreads, library_versions, package_version
from weakstil.slide import Slide, slide_id_from_path
from weakstil.tiles import SlideTiles, TilingParams, find_tiles

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.decode.batches import ThreadPlanner
    from weakstil.encoders.factory import Encoder

log = logging.getLogger(__name__)

@dataclass
class EmbedResult:
    path: Path
    n_tiles: int
    skipped: bool
    seconds: float

    @property
    def tiles_per_s(self) -> float:
        return self.n_tiles / self.seconds if self.seconds > 0 else float("nan")


# -- decoding ---------------------------------------------------------------------------
def iter_tile_batches(slide: Slide, coords: np.ndarray, tile_px: int, mpp: float, batch_size: int,
                      workers: int = 1, prefetch: int | None = None, pin_memory: bool = False,
                      ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, uint8 (b, tile_px, tile_px, 3))`` batches in order, decoded ahead by threads.

    The pre-:mod:`weakstil.decode` reader (OpenSlide in threads of this process), kept as the
    "old default" baseline of ``benchmarks/embed_throughput.py``; embedding uses
    :func:`weakstil.decode.tile_batches`.

    At most ``prefetch`` batches are in flight; buffers are reused from a fixed ring, so memory
    is bounded whatever the slide's size. A yielded array is valid until the next one is asked for.
    Close the generator (``contextlib.closing``) before closing ``slide`` when stopping early:
    closing waits for the decode threads.
    """
    n = len(coords)
    if n == 0:
        return
    workers = max(1, int(workers))
    prefetch = max(1, prefetch or 2 * workers)
    n_batches = (n + batch_size - 1) // batch_size
    n_buf = min(n_batches, prefetch + 2)
    buffers = _alloc_buffers(n_buf, batch_size, tile_px, pin_memory)
    stop = threading.Event()

    def read(i: int) -> tuple[int, np.ndarray]:
        start = i * batch_size
        stop_at = min(n, start + batch_size)
        buf = buffers[i % n_buf]
        for j, (x, y) in enumerate(coords[start:stop_at]):
            if stop.is_set():
                break
            buf[j] = slide.read_region(int(x), int(y), tile_px, mpp)
        return start, buf[: stop_at - start]

    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="weakstil-decode") as pool:
        try:
            nxt = 0
            while nxt < n_batches and len(pending) < prefetch:
                pending.append(pool.submit(read, nxt))
                nxt += 1
            while pending:
                start, batch = pending.popleft().result()
                yield start, batch
                if nxt < n_batches:
                    pending.append(pool.submit(read, nxt))
                    nxt += 1
        finally:
            stop.set()
            for fut in pending:
                fut.cancel()


def _alloc_buffers(n: int, batch_size: int, tile_px: int, pin_memory: bool) -> list[np.ndarray]:
    if pin_memory:
        import torch

        return [torch.empty((batch_size, tile_px, tile_px, 3), dtype=torch.uint8, pin_memory=True).numpy()
                for _ in range(n)]
    return [np.empty((batch_size, tile_px, tile_px, 3), np.uint8) for _ in range(n)]


#: Batches whose features are still on their way back from the GPU before the loop waits for the
#: oldest: the device always has queued work, and Python never stalls it.
READBACK_LAG = 2


def embed_batches(encoder: Encoder, batches: Iterator[tuple[int, np.ndarray]],
                  sink: Callable[[int, np.ndarray], None], *, lag: int | None = None,
                  side_stream: bool | None = None, timings: dict | None = None) -> None:
    """Run ``encoder`` over ``batches`` and hand each ``(start, float32 features)`` to ``sink``, in order.

    On CUDA nothing in the loop waits for the device except the readback of the batch ``lag``
    batches back: host->device copies of CPU batches go on a copy stream (the batch's host buffer
    is given back to the producer only once its copy is done), the encoder runs on its own
    non-default stream (no implicit synchronisation with work on the legacy default stream, e.g.
    inside nvJPEG), and features come back through pinned memory asynchronously. ``lag=0`` is the
    old synchronous loop; ``side_stream=False`` runs on the current stream. Left as None, both follow
    the batches: host batches get ``READBACK_LAG`` and the own stream; batches already on the GPU
    (nvJPEG decoding) get lag 0 on the current stream: on an H200 with ResNet-50 the encoder's kernels
    took 17 instead of 37 ms per 256 tiles beside the decoder's (one profile run, YCbCr SVS: 11,165
    vs 5,161 tiles/s end to end; two check runs on fresh machines: 8,169 vs 7,422 YCbCr, 6,096 vs
    5,091 RGB). ``timings`` (a dict,
    optional) gathers host seconds per stage (``wait`` for the next batch, ``h2d``, ``launch`` of
    transform + forward, ``readback_wait``, ``sink``) and, on CUDA, device seconds of
    ``gpu_transform`` and ``gpu_forward`` (CUDA events), plus ``batches`` and ``tiles``.
    """
    import contextlib
    import time

    import torch

    dev = encoder.device
    cuda = dev.type == "cuda"
    tm = timings
    clock = time.perf_counter
    source = iter(batches)

    def add(key: str, value: float) -> None:
        if tm is not None:
            tm[key] = tm.get(key, 0.0) + value

    copier = torch.cuda.Stream(dev) if cuda else None
    copied = None  # event: the last host->device copy has read its host buffer
    pending: collections.deque = collections.deque()  # (start, features, done event, timing events)

    def drain(keep: int) -> None:
        while len(pending) > keep:
            start, feats, done, evs = pending.popleft()
            t0 = clock()
            if done is not None:
                done.synchronize()
            add("readback_wait", clock() - t0)
            if evs is not None:
                add("gpu_transform", evs[0].elapsed_time(evs[1]) / 1e3)
                add("gpu_forward", evs[1].elapsed_time(evs[2]) / 1e3)
            t0 = clock()
            sink(start, feats.numpy())
            add("sink", clock() - t0)

    try:
        t0 = clock()
        first = next(source, None)  # the batches decide the loop's lag and stream (see above)
        add("wait", clock() - t0)
        on_gpu = cuda and first is not None and isinstance(first[1], torch.Tensor) and _on_device(first[1], dev)
        lag = max(0, int((0 if on_gpu else READBACK_LAG) if lag is None else lag))
        compute = torch.cuda.Stream(dev) if cuda and (not on_gpu if side_stream is None else side_stream) else None
        it = itertools.chain([first] if first is not None else [], source)
        with torch.inference_mode(), (torch.cuda.stream(compute) if compute is not None
                                      else contextlib.nullcontext()):
            while True:
                if copied is not None:
                    copied.synchronize()  # the producer may reuse the last batch's host buffer after next()
                    copied = None
                t0 = clock()
                item = next(it, None)
                add("wait", clock() - t0)
                if item is None:
                    break
                start, batch = item
                t0 = clock()
                t = batch if isinstance(batch, torch.Tensor) else torch.from_numpy(batch)  # GPU decode: a tensor
                if not _on_device(t, dev):
                    if cuda:
                        cur = torch.cuda.current_stream(dev)
                        with torch.cuda.stream(copier):
                            t = t.to(dev, non_blocking=True)
                            copied = torch.cuda.Event()
                            copied.record(copier)
                        cur.wait_event(copied)
                        t.record_stream(cur)  # allocated on the copy stream, used on this one
                    else:
                        t = t.to(dev)
                t1 = clock()
                add("h2d", t1 - t0)
                evs = None
                if cuda and tm is not None:
                    evs = [torch.cuda.Event(enable_timing=True) for _ in range(3)]
                    evs[0].record()
                if evs is not None:
                    x = encoder.transform(t)
                    evs[1].record()
                    feats = encoder.forward(x)
                    evs[2].record()
                else:
                    feats = encoder.run(t)  # on the CPU in cache-sized micro-batches
                done = None
                if cuda:
                    host = torch.empty(feats.shape, dtype=feats.dtype, pin_memory=True)
                    host.copy_(feats, non_blocking=True)
                    done = torch.cuda.Event()
                    done.record()
                    feats = host
                add("launch", clock() - t1)
                add("batches", 1)
                add("tiles", len(feats))
                pending.append((start, feats, done, evs))
                drain(lag)
            drain(0)
    finally:
        # an error or interrupt must stop the decode threads before the slide is closed
        close = getattr(source, "close", None) or getattr(batches, "close", None)
        if close is not None:
            close()


def _on_device(t, dev) -> bool:
    return t.device.type == dev.type and (dev.index is None or t.device.index == dev.index)


# -- the encoder of a run ----------------------------------------------------------------
def with_stain_norm(encoder: Encoder, stain_norm: str) -> Encoder:
    """Set the encoder card's tile stain normalisation (``card`` keeps it); it is a card field, so
    it is part of the cache key and recorded in the features' ``encoder_card``."""
    if stain_norm != "card":
        import dataclasses

        encoder.card = dataclasses.replace(encoder.card, stain_norm=None if stain_norm == "none" else stain_norm)
    return encoder



def open_encoder(name: str | Path, weights: str | None = None, device: str = settings.DEVICE, *,
                 workers: int = settings.DECODE_WORKERS, threads: int = settings.TORCH_THREADS,
                 batch_size: int = settings.BATCH_SIZE, seed: int = settings.SEED,
                 stain_norm: str = settings.STAIN_NORM, tile_stats: bool = True) -> tuple[Encoder, ThreadPlanner]:
    """The encoder on its device and the planner of its decode workers and torch threads
    (:class:`weakstil.decode.ThreadPlanner`: ``workers``/``threads`` > 0 are kept, the rest is
    planned from the speeds measured on the first slide). ``stain_norm``: ``card`` (the card's),
    ``none`` or ``macenko`` overrides the card's tile stain normalisation (part of the cache key);
    ``tile_stats=False``: the plan leaves no CPUs for per-tile measurements (``--no-tile-stats``)."""
    import torch

    from weakstil.decode.batches import ThreadPlanner
    from weakstil.encoders.factory import create_encoder
    from weakstil.runtime import resolve_device

    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels
    enc = create_encoder(name, weights, str(dev), seed=seed)
    with_stain_norm(enc, stain_norm)
    return enc, ThreadPlanner(enc, batch_size, workers=workers or None, threads=threads or None,
                              tile_stats=tile_stats)


# -- one slide --------------------------------------------------------------------------
def cache_path(out_dir: str | Path, slide_path: str | Path) -> Path:
    """Where ``weakstil embed`` caches a slide's features: ``OUT/<slide id of the file>.h5``."""
    return slide_file(out_dir, slide_id_from_path(slide_path))


def embed_slide(slide_path: str | Path, encoder: Encoder, out_path: str | Path | None = None,
                params: TilingParams | None = None, *, out_dir: str | Path | None = None,
                slide_mpp: float | None = None, allow_upsample: bool = False, batch_size: int = settings.BATCH_SIZE,
                workers: int = 1, prefetch: int | None = None, overwrite: bool = False, seed: int = settings.SEED,
                progress: Callable[[int, int], None] | None = None, decode: str = "auto",
                planner: ThreadPlanner | None = None, stats_processes: int | None = None,
                tile_stats: bool = True, keep_other_settings: bool = True) -> EmbedResult:
    """Embed the tissue tiles of one slide into ``out_path`` (or ``out_dir/<slide_id>.h5``).

    Skips the slide when a complete cache with the same cache key exists (unless ``overwrite``); remakes
    one with other settings, but refuses to replace *another encoder's or tiling's* (hours of GPU work) unless
    ``overwrite`` or ``keep_other_settings=False`` (a folder only this run uses, like ``score``'s own).
    ``progress(done, total)`` after every batch. A bad slide raises a WeakSTILError (no output).
    ``workers``: decode processes (0: decode in this process), unless a ``planner``
    (:class:`weakstil.decode.ThreadPlanner`) decides them and the torch threads;
    ``decode``: ``cpu``, ``gpu`` or ``auto`` (:class:`weakstil.decode.DecodeMode`);
    ``stats_processes``: processes measuring the tiles (:mod:`weakstil.tilestats_pool`) beside the
    encoder (``None``: the CPUs the plan leaves free, at least 1; 0: in the embedding loop);
    ``tile_stats=False``: no measurements (no ``tile_stats``/``stroma_estimate`` in the file; part of
    the cache key).
    """
    if out_path is None:
        if out_dir is None:
            raise ValueError("give out_path or out_dir")
        out_path = cache_path(out_dir, slide_path)
    out_path = Path(out_path)
    params = params or TilingParams()
    t0 = time.perf_counter()
    with Slide.open(slide_path, slide_mpp=slide_mpp) as slide, OutputLock(out_path):
        slide.check_target_mpp(params.mpp, allow_upsample=allow_upsample)
        key = cache_key(encoder, params, slide.mpp, slide.fingerprint, tile_stats=tile_stats)
        remove_stale_temps(out_path)  # leftovers of a killed run (live ones of other runs are kept)
        status = cache_status(out_path, key, slide.fingerprint,
                              lambda a: settings_differences(a, encoder, params, slide.mpp, tile_stats),
                              lambda a: legacy_match(a, encoder, params, slide.mpp, slide.fingerprint, tile_stats))
        if status is not None and not tile_stats and cache_status(out_path, cache_key(
                encoder, params, slide.mpp, slide.fingerprint, tile_stats=True), slide.fingerprint,
                legacy=lambda a: legacy_match(a, encoder, params, slide.mpp, slide.fingerprint)) is None:
            status = None  # made with the measurements: the same features and more (--no-tile-stats skips work)
        if status is None:
            from weakstil.unscanned import read_as_tissue_before

            attrs, _ = FeaturesFile.read_header(out_path)
            status = read_as_tissue_before(attrs, slide)
            if status is None:
                from weakstil.unsharp import sharpened_before

                status = sharpened_before(out_path, attrs, slide)
        if status is None and not overwrite:
            return EmbedResult(out_path, int(attrs["n_tiles"]), True, time.perf_counter() - t0)
        if status not in (None, "missing"):
            other_file = "another slide file" in status  # a name two scans share: said louder than a setting
            if keep_other_settings and not overwrite:  # another scan's µm/px is no mistyped --slide-mpp
                refuse_other_work(out_path, encoder, params, None if other_file else slide.mpp)
            log.log(logging.WARNING if other_file else logging.INFO, "%s: the feature cache %s %s; embedding again%s",
                    slide.path, out_path, status, " (its features are replaced by this file's)" if other_file else "")
        check_replaceable(out_path, FeaturesFile)
        _check_resolution(encoder, params, slide)
        tiles = find_tiles(slide, params, allow_upsample=allow_upsample)
        n = len(tiles.coords)
        if n == 0:
            raise tiles.no_tissue_error(slide.path)
        with TorchThreads(None):  # the plan sets the torch threads for this slide; the caller's come back after
            _write_cache(out_path, slide, tiles, encoder, key, batch_size=batch_size, workers=workers,
                         prefetch=prefetch, seed=seed, progress=progress, t0=t0, decode=decode, planner=planner,
                         stats_processes=stats_processes, tile_stats=tile_stats)
    return EmbedResult(out_path, n, False, time.perf_counter() - t0)


def _check_resolution(encoder: Encoder, params: TilingParams, slide: Slide) -> None:
    """Warn when the encoder sees another magnification than it was trained at: tiles are resized to
    its input, so what it sees is ``--mpp`` x ``--tile-size`` / input px (448 px tiles at 0.5 µm/px
    reach a 224 px encoder at 1 µm/px, as --mpp 1 would: 11A #7)."""
    card = encoder.card
    seen = params.mpp * params.tile_px / card.input_px
    resized = params.tile_px != card.input_px
    if abs(seen - card.mpp) / card.mpp > 0.1:
        how = (f" ({params.tile_px} px tiles at {params.mpp:.3g} µm/px resized to its {card.input_px} px input)"
               if resized else "")
        log.warning("%s: the encoder sees tiles at %.3g µm/px%s but encoder '%s' was trained at %.3g µm/px",
                    slide.path, seen, how, card.name, card.mpp)
    elif resized:
        log.info("%s: %d px tiles are resized to the encoder's %d px input", slide.path, params.tile_px,
                 card.input_px)


def _non_finite(encoder: Encoder, slide: Slide, bad: int, seen: int) -> WeakSTILError:
    """The error of non-finite features: in fp32 from finite pixels only the weights can make them
    (named first, and no advice to run in the fp32 the run already used); in fp16/bf16 an overflow may."""
    if encoder.precision == "fp32":
        return WeakSTILError(f"encoder '{encoder.name}' gives non-finite features (NaN/inf) in fp32 for {bad} of "
                             f"the first {seen} tiles of {slide.path}: the weights hold non-finite or overflowing "
                             "values", path=encoder.weights_source,
                             fix="check the weights file: download, export or train it again (every slide would "
                                 "fail the same way)")
    return WeakSTILError(f"{bad} of {seen} tiles gave non-finite features (encoder '{encoder.name}', precision "
                         f"{encoder.precision})", path=slide.path,
                         fix="run in fp32 (--device cpu) to tell an overflow of the low precision from broken "
                             "weights, or check the encoder weights")


def _write_cache(path: Path, slide: Slide, tiles: SlideTiles, encoder: Encoder, key: str, *, batch_size: int,
                 workers: int, prefetch: int | None, seed: int, progress: Callable[[int, int], None] | None,
                 t0: float, decode: str = "auto", planner: ThreadPlanner | None = None,
                 stats_processes: int | None = None, tile_stats: bool = True) -> None:
    import torch

    from weakstil.decode.batches import provenance_json, tile_batches

    from weakstil.stain import STAIN_ESTIMATE_VERSION, estimate_slide_stain
    from weakstil.tilestats import COLUMNS, STROMA_COLUMN, TILESTATS_VERSION
    from weakstil.tilestats_pool import measured_batches, stats_job
    from weakstil.unsharp import corrected_batches, slide_sharpening

    n, d = len(tiles.coords), encoder.embed_dim
    cache = FeaturesFile(coords=tiles.coords, tissue_fraction=tiles.tissue_fraction, tissue_mask=tiles.tissue_mask,
                         tissue_mask_mpp=float(tiles.mask_mpp))
    stain = estimate_slide_stain(slide, tiles)
    sharpening = slide_sharpening(slide, tiles.coords, tiles.tissue_fraction, tiles.params.tile_px, tiles.params.mpp)
    stain_norm = encoder.card.stain_norm or "none"
    stats = np.zeros((n, len(COLUMNS)), np.float32) if tile_stats else None
    with cache.streaming(path, n, d) as put:
        done = 0
        bad = 0

        def sink(start: int, out: np.ndarray) -> None:
            nonlocal done, bad
            bad += int((~np.isfinite(out)).any(axis=1).sum())
            if bad and encoder.precision == "fp32":  # finite pixels in, NaN out: the weights; stop now
                raise _non_finite(encoder, slide, bad, done + len(out))
            put(start, out)
            done += len(out)
            if progress is not None:
                progress(done, n)

        batches, decode_record = tile_batches(slide, tiles.coords, tiles.params.tile_px, tiles.params.mpp, encoder,
                                              batch_size=batch_size, decode=decode, workers=workers,
                                              planner=planner, prefetch=prefetch)
        batches = corrected_batches(batches, sharpening, tiles.params.mpp)  # a scanner's sharpening undone
        job = None if stats is None else stats_job(n, stats, stain, tiles.params.mpp, encoder, decode_record(),
                                                   batch_size=batch_size, tile_px=tiles.params.tile_px,
                                                   processes=stats_processes)
        try:
            embed_batches(encoder, measured_batches(batches, stain, tiles.params.mpp, stats, stain_norm, job), sink)
            if job is not None:
                job.finish()  # every tile's row is in ``stats`` before the file is finished
        finally:
            if job is not None:
                job.cancel()  # an error or interrupt: queued batches are skipped, nothing is kept
        if done != n:  # a decode thread stopped early (an interrupt); nothing is written
            raise WeakSTILError(f"embedded {done} of {n} tiles", path=slide.path,
                                fix="run again (the slide may be damaged if this repeats)")
        if bad:
            raise _non_finite(encoder, slide, bad, n)
        cache.attrs.update(tiles.attrs())
        cache.attrs.update({"stain": json.dumps(stain.to_dict()), "stain_norm": stain_norm,
                            "stain_estimate_version": STAIN_ESTIMATE_VERSION, "sharpening": sharpening.to_json()})
        if stats is not None:
            cache.tile_stats = stats
            tile_stats_record = job.record() if job is not None else {"processes": 0}
            cache.stroma_estimate = stats[:, COLUMNS.index(STROMA_COLUMN)].copy()
            cache.attrs.update({"tilestats_version": TILESTATS_VERSION, "tile_stats_columns": json.dumps(list(COLUMNS))})
        else:
            tile_stats_record = {"skipped": "--no-tile-stats"}
        cache.attrs.update({
            "encoder": encoder.name, "encoder_card": encoder.card.to_json(), "embed_dim": d,
            "weights_sha256": encoder.weights_sha256, "weights_source": encoder.weights_source,
            "weights_file_sha256": getattr(encoder, "weights_file_sha256", ""),  # the file's (before hunt 24: weights_sha256)
            "normalisation": json.dumps(encoder.normalisation()), "precision": encoder.precision,
            "device": str(encoder.device), "torch_version": str(torch.__version__),
            "timm_version": package_version("timm"), "weakstil_version": code_version(),
            "library_versions": json.dumps(library_versions("torch", "timm"), sort_keys=True),  # the reader's too
            "seed": int(seed if encoder.seed is None else encoder.seed), "batch_size": int(batch_size),
            "warnings": json.dumps(tiles.recorded_warnings), "decode": provenance_json({**decode_record(), "tile_stats": tile_stats_record}), "cache_key": key, "cache_format": CACHE_FORMAT,
            "embed_seconds": float(time.perf_counter() - t0), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
