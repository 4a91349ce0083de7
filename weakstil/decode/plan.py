"""How many decode workers and torch threads: planned from the measured cost of each stage.

On a CPU-only machine both stages compete for the same cores. A heavy encoder (ResNet-50:
~100 ms of CPU per tile) needs every core and leaves decoding (~1 ms per tile) a few per cent
of one, so the best plan runs torch on all cores with one decode worker beside it; a light
encoder (small-cnn: ~2 ms per tile) needs a real share of the cores for decoding. So the plan is
measured, once per run and read path, on the slide itself:

* ``decode``: tiles/s of one decode worker (the slide's first tiles, decoded in this process);
* ``encoder(t)``: tiles/s of the encoder alone with ``t`` torch threads (random tiles, every
  ``t`` on machines of up to 8 CPUs, else 1, 2, 4, ... and all, interpolated), at the best
  **micro-batch**: on the CPU the encoder runs each decoded batch in slices of a
  few tiles, because a slice whose activations stay in the CPU caches runs much faster than the
  whole batch (2 CPUs, tiles/s at 64 -> best slice: ResNet-50 to layer 3 26 -> 53 at 2 tiles,
  small-cnn 780 -> 1,400 at 32, ViT-S/16 17 -> 21 at 4-16); the best slice depends on the model
  and the CPU, so it is measured (1, 2, 4, ... up to the batch, with all threads, stopping once
  the rate falls well below the best or one call would take too long);

* ``stats``: tiles/s of one process making the per-tile measurements (:mod:`weakstil.tilestats`,
  made beside the encoder by ``s = max(1, C - w - t)`` processes, :mod:`weakstil.tilestats_pool`);

and the predicted end-to-end rate of ``w`` workers and ``t`` threads on ``C`` cores is

    min(encoder(t), w * decode, s * stats, C / (1 / decode + t / encoder(t) + 1 / stats))

(each stage alone, and the CPU time all need per tile against the cores there are). The plan
with the highest prediction wins; ties go to fewer processes and threads, except that a plan
whose torch threads take every core gets a second decode worker when decoding needs more than a
tenth of one core (the kernel's scheduling, not the CPU time, then starves the encoder). On CUDA
the encoder does not use the cores: decoding gets all but one (``--decode cpu``), torch a few
threads.
``--workers`` / ``--threads`` fix either number; the other is still planned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

log = logging.getLogger(__name__)

#: Seconds spent measuring each encoder thread count and micro-batch (after one warm-up call).
ENCODER_PROBE_S = 0.15
#: Micro-batches tried (tiles per encoder call on the CPU), up to the batch size.
MICRO_BATCHES = (1, 2, 4, 8, 16, 32, 64)
#: Micro-batch of a CPU plan that was not measured (small slides): better than a whole 64-tile
#: batch for every encoder measured (see the module docstring).
DEFAULT_MICRO_BATCH = 16
#: Larger micro-batches are not tried once their rate falls below this share of the best one ...
MICRO_BATCH_STOP = 0.8
#: ... or once one call would take longer than this (s): a heavy encoder's best slice is small.
MICRO_BATCH_MAX_CALL_S = 0.5
#: A second decode worker when torch takes every core and decoding needs more than this share
#: of one core (see :func:`plan_cpu`).
SPARE_WORKER_SHARE = 0.1
#: Seconds of decoding measured.
DECODE_PROBE_S = 0.3
#: Tiles measured (weakstil.tilestats) to time the measurements.
STATS_PROBE_TILES = 8


@dataclass
class ThreadPlan:
    """The split, and what it was based on (recorded in every feature file)."""

    workers: int
    threads: int
    cpus: int
    source: str  #: "measured", "cuda", "given" or "fallback"
    decode_tiles_per_s: float = float("nan")  #: one worker
    encoder_tiles_per_s: dict[int, float] = field(default_factory=dict)  #: per torch thread count
    micro_batch: int = 0  #: tiles per encoder call on the CPU (0: the whole batch)
    encoder_micro_batches: dict[int, int] = field(default_factory=dict)  #: the micro-batch each rate was measured at
    predicted_tiles_per_s: float = float("nan")
    stats_tiles_per_s: float = float("nan")  #: one measurement process
    stats_processes: int = 0  #: measurement processes planned (0: not planned; embed sizes them itself)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["encoder_tiles_per_s"] = {str(k): round(v, 2) for k, v in self.encoder_tiles_per_s.items()}
        d["encoder_micro_batches"] = {str(k): int(v) for k, v in self.encoder_micro_batches.items()}
        for k in ("decode_tiles_per_s", "predicted_tiles_per_s", "stats_tiles_per_s"):
            d[k] = None if not np.isfinite(d[k]) else round(float(d[k]), 2)
        return d


def stats_processes(cpus: int, workers: int, threads: int) -> int:
    """Measurement processes beside ``workers`` decode processes and ``threads`` torch threads."""
    return max(1, cpus - workers - threads)


def predict(workers: int, threads: int, cpus: int, decode: float, encoder: dict[int, float],
            stats: float | None = None) -> float:
    """Predicted end-to-end tiles/s (see the module docstring; ``stats`` None: measurements not counted)."""
    e = encoder[threads]
    if not stats:
        return min(e, workers * decode, cpus / (1.0 / decode + threads / e))
    return min(e, workers * decode, stats_processes(cpus, workers, threads) * stats,
               cpus / (1.0 / decode + threads / e + 1.0 / stats))


def thread_candidates(cpus: int) -> list[int]:
    if cpus <= 8:
        return list(range(1, cpus + 1))
    out, t = [], 1
    while t < cpus:
        out.append(t)
        t *= 2
    return out + [cpus]


def interpolate_rates(measured: dict[int, float], cpus: int) -> dict[int, float]:
    """Rates for every thread count 1..cpus from a few measured ones (linear in between)."""
    ks = sorted(measured)
    xs = np.array(ks, float)
    ys = np.array([measured[k] for k in ks], float)
    return {t: measured.get(t, float(np.interp(t, xs, ys))) for t in range(1, cpus + 1)}


def choose(cpus: int, decode: float, encoder: dict[int, float], workers: int | None = None,
           threads: int | None = None, stats: float | None = None,
           max_threads: int | None = None) -> tuple[int, int, float]:
    """``(workers, threads, predicted)`` maximising :func:`predict` (``workers``/``threads`` fixed
    when given; ``max_threads``: at most that many torch threads, e.g. OMP_NUM_THREADS)."""
    best: tuple[float, int, int] | None = None
    if threads and threads not in encoder:  # more threads than CPUs: as fast as all CPUs
        encoder = {**encoder, threads: encoder[max(encoder)]}
    for t in ([threads] if threads else range(1, min(cpus, max_threads or cpus) + 1)):
        for w in ([workers] if workers else range(1, cpus + 1)):
            r = predict(w, t, cpus, decode, encoder, stats)
            # 1 % slack: a plan must be clearly faster to justify more processes or threads
            if best is None or r > best[0] * 1.01:
                best = (r, w, t)
    assert best is not None
    return best[1], best[2], best[0]


def measure_encoder(run_batch: Callable[[int], None], threads: list[int], max_batch: int,
                    seconds: float = ENCODER_PROBE_S) -> tuple[dict[int, float], dict[int, int]]:
    """``(rates, micro_batches)``: the tiles/s of ``run_batch(m)`` for each torch thread count,
    and the micro-batch ``m`` it was measured at. The best ``m`` (:data:`MICRO_BATCHES` up to
    ``max_batch``) is searched with the most threads, the count a CPU plan nearly always runs
    (the best slice moves little with the thread count: one or two steps of 2); the other counts
    are measured at it. The current thread count is restored."""
    import torch

    def rate(m: int) -> float:
        run_batch(m)  # warm-up: oneDNN builds its primitives per input shape
        n, t0 = 0, time.perf_counter()
        while True:
            run_batch(m)
            n += m
            if time.perf_counter() - t0 >= seconds:
                return n / (time.perf_counter() - t0)

    before = torch.get_num_threads()
    order = sorted(threads, reverse=True)
    sizes = [m for m in MICRO_BATCHES if m < max_batch] + [max_batch]
    try:
        torch.set_num_threads(order[0])
        best = (0.0, sizes[0])
        for m in sizes:
            r = rate(m)
            if r > best[0]:
                best = (r, m)
            elif r < MICRO_BATCH_STOP * best[0]:
                break  # past the best slice: larger ones only spill more out of the caches
            if 2 * m / r > MICRO_BATCH_MAX_CALL_S:
                break
        rates, chunks = {order[0]: best[0]}, {order[0]: best[1]}
        for t in order[1:]:
            torch.set_num_threads(t)
            rates[t], chunks[t] = rate(best[1]), best[1]
    finally:
        torch.set_num_threads(before)
    return rates, chunks


def nearest_micro_batch(chunks: dict[int, int], threads: int) -> int:
    """The measured micro-batch of the thread count nearest ``threads`` (:data:`DEFAULT_MICRO_BATCH`
    when none was measured)."""
    if not chunks:
        return DEFAULT_MICRO_BATCH
    return chunks[min(chunks, key=lambda k: (abs(k - threads), k))]


def measure_decode(read: Callable[[np.ndarray, np.ndarray], None], coords: np.ndarray, tile_px: int,
                   seconds: float = DECODE_PROBE_S) -> float:
    """Tiles/s of one decoder reading ``coords`` once, in order (as a worker reads a batch: neighbours
    share JPEG tiles), for about ``seconds``, in this process."""
    if len(coords) == 0:
        return float("nan")
    out = np.empty((8, tile_px, tile_px, 3), np.uint8)
    n, t0 = 0, time.perf_counter()
    for i in range(0, len(coords), 8):
        part = coords[i:i + 8]
        read(part, out[:len(part)])
        n += len(part)
        if time.perf_counter() - t0 >= seconds:
            break
    return n / (time.perf_counter() - t0)


def plan_cuda(cpus: int, workers: int | None = None, threads: int | None = None, decode: float | None = None,
              stats: float | None = None) -> ThreadPlan:
    """The encoder runs whole batches on the GPU (no micro-batch), its torch threads mostly wait.

    Without the per-tile measurements decoding gets the cores. With them (``decode`` and ``stats``:
    one decode worker's and one measurement process's measured tiles/s) the cores besides this
    process are split between the two in proportion to their costs, so neither starves the other
    (16 CPUs, 20x SVS, ResNet-50: 15 decode workers left one measurement process, 509 tiles/s)."""
    given = "given" if workers and threads else "cuda"
    if decode and stats and np.isfinite(decode) and np.isfinite(stats) and decode > 0 and stats > 0:
        avail = max(2, cpus - 1)
        w = workers or int(min(avail - 1, max(1, round(avail * stats / (decode + stats)))))
        n_stats = max(1, avail - w)
        t = threads or 1
        return ThreadPlan(w, t, cpus, given, decode_tiles_per_s=decode, stats_tiles_per_s=stats,
                          stats_processes=n_stats, predicted_tiles_per_s=min(w * decode, n_stats * stats))
    w = workers or max(1, min(16, cpus - 1))
    t = threads or max(1, min(4, cpus - w))
    return ThreadPlan(w, t, cpus, given)


def measure_stats(tiles: np.ndarray, mpp: float) -> float:
    """Tiles/s of one process making the per-tile measurements on ``tiles`` (the reference stain:
    the cost does not depend on it), in this process."""
    from weakstil.stain import SlideStain
    from weakstil.tilestats import batch_stats

    if len(tiles) == 0:
        return float("nan")
    stain = SlideStain.reference()
    batch_stats(tiles[:1], stain, mpp)  # imports, tables
    t0 = time.perf_counter()
    batch_stats(tiles, stain, mpp)
    return len(tiles) / max(time.perf_counter() - t0, 1e-9)


def plan_cpu(decode: float, encoder: dict[int, float], cpus: int, workers: int | None = None,
             threads: int | None = None, stats: float | None = None,
             micro_batches: dict[int, int] | None = None, max_threads: int | None = None) -> ThreadPlan:
    """The CPU plan from measured rates (``encoder`` may hold only some thread counts; ``stats``:
    one measurement process's tiles/s, None or NaN: not counted; ``micro_batches``: the best
    micro-batch per measured thread count, see :func:`measure_encoder`)."""
    stats = stats if stats is not None and np.isfinite(stats) and stats > 0 else None
    rates = interpolate_rates(encoder, cpus) if encoder else {}
    chunks = dict(micro_batches or {})
    if not rates or not np.isfinite(decode) or decode <= 0:
        w = workers or max(1, cpus // 3)
        t = threads or max(1, min(cpus - w, max_threads or cpus))
        return ThreadPlan(w, t, cpus, "fallback", micro_batch=nearest_micro_batch(chunks, t))
    w, t, r = choose(cpus, decode, rates, workers, threads, stats, max_threads)
    if workers is None and w == 1 and t >= cpus > 1 and r > SPARE_WORKER_SHARE * decode:
        # torch runs on every core and decoding needs a real share of one: the kernel shares the
        # cores among runnable threads, so one decoder against t torch threads gets 1/(t+1) of them
        # just when the ring runs low; a second (idle when the ring is full) catches up sooner
        # (2 CPUs, small-cnn, interleaved runs: 1 + 2 was 0.90-0.97 of 2 + 2; ResNet-50 0.99)
        w = 2
    source = "given" if workers and threads else "measured"
    return ThreadPlan(w, t, cpus, source, decode, encoder, nearest_micro_batch(chunks, t),
                      chunks, r, stats or float("nan"), stats_processes(cpus, w, t) if stats else 0)
