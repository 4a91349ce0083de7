"""Embedding throughput: decode-only, encoder-only and end-to-end tiles/s on one slide.

    .venv/bin/python benchmarks/embed_throughput.py [--slide PATH] [--encoder small-cnn] [--min-tiles 1000]

The slide's tissue tiles (default: the committed CMU slide, its 46 tiles cycled until there are
``--min-tiles``) are read at 0.5 µm/px, 224 px, exactly as ``weakstil embed`` reads them.

* decode-only: the decode pool (``--workers`` threads) fills batches, nothing else runs
* encoder-only: random uint8 batches through the same transform + encoder (``--threads``)
* end-to-end: the real pipeline, decoding overlapped with inference (``weakstil.embed``)
* efficiency = end-to-end / min(decode-only, encoder-only), same thread split for all three
* serial bound = 1 / (1/decode + 1/encoder): what no overlap at all would give; a machine whose
  CPUs share one core's arithmetic (see the printed "parallel capacity") cannot beat it by much

By default the split is the one ``weakstil embed`` picks for this machine
(``weakstil.runtime.plan_threads``). Rows under "context" use every core for one stage alone,
which the pipeline cannot have. Each figure is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def parallel_capacity(seconds: float = 2.0) -> float:
    """Work done by two concurrent single-threaded matmul loops relative to one alone.

    2.0 means two independent cores; about 1.0 means the two CPUs share one core's arithmetic
    (hyper-threads of one core, or a host that schedules both vCPUs on one core).
    """
    import threading

    import torch

    torch.set_num_threads(1)
    a = torch.randn(512, 512)

    def loop(out: list, i: int) -> None:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ a
            n += 1
        out[i] = n

    one = [0]
    loop(one, 0)
    two = [0, 0]
    threads = [threading.Thread(target=loop, args=(two, i)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(two) / one[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, default=ROOT / "tests" / "data" / "CMU-1-Small-Region.svs")
    ap.add_argument("--encoder", default="small-cnn")
    ap.add_argument("--weights", default="random")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--min-tiles", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=0, help="decode threads (0: as weakstil embed)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: as weakstil embed)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-context", action="store_true", help="skip the all-cores context rows")
    args = ap.parse_args()

    import torch

    from weakstil.embed import embed_batches, iter_tile_batches
    from weakstil.runtime import plan_threads
    from weakstil.encoders import create_encoder
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams, find_tiles

    enc = create_encoder(args.encoder, args.weights, args.device)
    dev = enc.device
    workers, threads = plan_threads(dev.type, args.workers or None)
    threads = args.threads or threads
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    params = TilingParams()
    slide = Slide.open(args.slide)
    coords0 = find_tiles(slide, params).coords
    reps = max(1, -(-args.min_tiles // len(coords0)))
    coords = np.concatenate([coords0] * reps)
    n, bs, px = len(coords), args.batch_size, params.tile_px
    rng = np.random.default_rng(0)
    fake = [rng.integers(0, 256, (bs, px, px, 3), dtype=np.uint8) for _ in range(4)]
    pin = dev.type == "cuda"

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def decode_only(w: int):
        def run() -> None:
            for _start, batch in iter_tile_batches(slide, coords, px, params.mpp, bs, workers=w, pin_memory=pin):
                batch[0, 0, 0, 0]  # touch
        return run

    def encoder_only() -> None:
        with torch.inference_mode():
            done = 0
            while done < n:
                b = min(bs, n - done)
                t = torch.from_numpy(fake[(done // bs) % len(fake)][:b])
                x = enc.transform(t.to(dev, non_blocking=True) if dev.type != "cpu" else t)
                enc.forward(x).cpu()
                done += b
        sync()

    def end_to_end(w: int):
        out = np.empty((n, enc.embed_dim), np.float32)

        def sink(start: int, f: np.ndarray) -> None:
            out[start:start + len(f)] = f

        def run() -> None:
            embed_batches(enc, iter_tile_batches(slide, coords, px, params.mpp, bs, workers=w, pin_memory=pin), sink)
            sync()
        return run

    def measure(w: int, t: int) -> tuple[float, float, float]:
        torch.set_num_threads(t)
        # warm-up: oneDNN kernels, OpenSlide's tile cache, thread pools
        end_to_end(w)()
        d = n / timed(decode_only(w), args.repeats)
        e = n / timed(encoder_only, args.repeats)
        a = n / timed(end_to_end(w), args.repeats)
        return d, e, a

    capacity = parallel_capacity()
    load_before = os.getloadavg()[0]
    d, e, a = measure(workers, threads)
    rows = [("decode-only", workers, "-", d), ("encoder-only (random tensors)", "-", threads, e),
            ("end-to-end", workers, threads, a)]
    context = []
    if not args.no_context and dev.type == "cpu" and cpus and cpus > 1:
        torch.set_num_threads(cpus)
        context.append(("decode-only, all cores", cpus, "-", n / timed(decode_only(cpus), args.repeats)))
        context.append(("encoder-only, all cores", "-", cpus, n / timed(encoder_only, args.repeats)))
        context.append(("end-to-end, oversubscribed", cpus, cpus, n / timed(end_to_end(cpus), args.repeats)))

    eff = a / min(d, e)
    serial = 1 / (1 / d + 1 / e)  # both stages on one core's worth of arithmetic
    print(f"slide {args.slide.name}: {len(coords0)} tissue tiles x {reps} = {n} tiles of {px} px at "
          f"{params.mpp} µm/px; encoder {enc.name} ({enc.card.model}, {enc.embed_dim}-d, {enc.precision}) on {dev}; "
          f"batch {bs}; {cpus} CPU(s) ({platform.processor() or platform.machine()}); torch {torch.__version__}; "
          f"median of {args.repeats}")
    print()
    print("| measurement | decode threads | torch threads | tiles/s |")
    print("|---|---:|---:|---:|")
    for name, w, t, v in rows:
        print(f"| {name} | {w} | {t} | {v:.1f} |")
    print(f"| **efficiency** = end-to-end / min(decode-only, encoder-only) | | | **{eff:.3f}** |")
    print(f"| serial bound 1 / (1/decode + 1/encoder): no overlap at all | | | {serial:.1f} |")
    print(f"| end-to-end / serial bound | | | {a / serial:.3f} |")
    if context:
        print("| *context (one stage alone on every core)* | | | |")
        for name, w, t, v in context:
            print(f"| {name} | {w} | {t} | {v:.1f} |")
    print()
    print(f"parallel capacity of the {cpus} CPUs: two concurrent single-thread matmul loops do {capacity:.2f}x "
          f"the work of one (2.0 = two real cores); 1-min load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other processes share the CPUs when it exceeds 0).")
    if capacity < 1.5:
        print("With less than ~1.5x, decoding and inference cannot run side by side at full speed here: "
              "end-to-end is capped near the serial bound, and the efficiency target needs real cores.")
    slide.close()


if __name__ == "__main__":
    main()
