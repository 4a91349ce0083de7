"""Per-tile measurements (weakstil.tilestats) off the encoder's critical path (issue 18).

    .venv/bin/python benchmarks/tilestats_throughput.py                  # synthetic 8000 x 8000 SVS, small-cnn
    .venv/bin/python benchmarks/tilestats_throughput.py --repeats 3 --processes 1,2

Prints

* ``tile_stats`` CPU ms per tile on one core (``time.process_time``, the slide's first tiles);
* the measurement pool's tiles/s with ``p`` processes (stats only: batches submitted as fast as
  the workers take them);
* ``embed_slide`` wall seconds and tiles/s for small-cnn, measurements in the embedding loop
  (``stats_processes=0``, the old serial path) vs in the pool (default sizing), interleaved A/B
  runs, and that both give bit-identical ``tile_stats``;
* a projection for the GPU path: measurement tiles/s with N processes = N x the one-core rate
  (the workers share nothing; on a GPU node nearly every CPU is free for them).

Wall times are noisy on a shared machine: the CPU-time figures and the interleaved A/B order
are what to compare; re-run on a quiet machine for the targets.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, default=None, help="default: a synthetic 8000 x 8000 px SVS")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "weakstil-bench")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--processes", default="1,2", help="pool sizes for the stats-only rows")
    ap.add_argument("--gpu-cpus", default="8,14,15", help="free CPUs of a GPU node for the projection")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from benchmarks.embed_throughput import default_slide
    from benchmarks.tilestats_compare import read_tiles
    from weakstil.embed import embed_slide, open_encoder
    from weakstil.files import FeaturesFile
    from weakstil.runtime import cpu_count
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams
    from weakstil.tilestats import COLUMNS, batch_stats
    from weakstil.tilestats_pool import shared_stats_pool

    load0 = os.getloadavg()
    slide_path = args.slide or default_slide(args.cache_dir)
    params = TilingParams()
    out = [f"command: {' '.join([Path(sys.executable).name] + sys.argv)}", f"{cpu_count()} CPU(s)", ""]
    sample, stain, coords = read_tiles(slide_path, 128)
    out.append(f"slide {slide_path.name}: {len(coords)} tissue tiles of {params.tile_px} px at {params.mpp} µm/px")

    # one core
    batch_stats(sample[:4], stain, params.mpp)
    cpu = []
    for _ in range(3):
        c0 = time.process_time()
        batch_stats(sample, stain, params.mpp)
        cpu.append(time.process_time() - c0)
    ms = 1e3 * min(cpu) / len(sample)
    out.append(f"tile_stats: {ms:.2f} ms/tile CPU on one core (min of 3 x {len(sample)} tiles) = "
               f"{1e3 / ms:.0f} tiles/s per core")

    # the pool alone
    bs = args.batch_size
    tiles = np.concatenate([sample] * -(-1024 // len(sample)))[:1024]
    for p in [int(x) for x in args.processes.split(",") if x]:
        pool = shared_stats_pool(p)
        rows = np.zeros((len(tiles), len(COLUMNS)), np.float32)
        job = pool.job(rows, stain, params.mpp, bs, params.tile_px)  # starts the workers
        for s in range(0, 2 * bs * p, bs):
            job.submit(s, tiles[s:s + bs])
        job.finish()
        t0 = time.perf_counter()
        job = pool.job(rows, stain, params.mpp, bs, params.tile_px)
        for s in range(0, len(tiles), bs):
            job.submit(s, tiles[s:s + bs])
        job.finish()
        dt = time.perf_counter() - t0
        assert np.array_equal(rows[:len(sample)], batch_stats(sample, stain, params.mpp))
        out.append(f"stats pool, {p} process(es): {len(tiles) / dt:.0f} tiles/s ({len(tiles)} tiles, {dt:.2f} s wall)")

    # embed_slide end to end, serial vs pool, interleaved
    enc, planner = open_encoder("small-cnn", "random", "cpu", batch_size=bs)
    cache = args.cache_dir / "tilestats-bench"
    import resource

    def own_cpu() -> float:  # this process (encoder threads and, serially, the measurements); not the workers
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    runs: dict[str, list[float]] = {"serial": [], "pool": []}
    cpu_runs: dict[str, list[float]] = {"serial": [], "pool": []}
    stats: dict[str, np.ndarray] = {}
    procs = {}
    embed_slide(slide_path, enc, out_path=cache / "warm.h5", params=params, batch_size=bs, planner=planner,
                overwrite=True)  # plan, start both pools
    for _ in range(args.repeats):
        for name, k in (("serial", 0), ("pool", None)):
            t0, c0 = time.perf_counter(), own_cpu()
            r = embed_slide(slide_path, enc, out_path=cache / f"{name}.h5", params=params, batch_size=bs,
                            planner=planner, overwrite=True, stats_processes=k)
            runs[name].append(time.perf_counter() - t0)
            cpu_runs[name].append(own_cpu() - c0)
            f = FeaturesFile.read(r.path)
            stats[name] = f.tile_stats
            import json

            procs[name] = json.loads(f.attrs["decode"])
    n = len(coords)
    plan = procs["pool"].get("plan", {})
    out.append("")
    out.append(f"embed_slide small-cnn, {n} tiles, plan {plan.get('workers')} decode worker(s) + "
               f"{plan.get('threads')} torch thread(s):")
    for name in runs:
        med = statistics.median(runs[name])
        out.append(f"  {name:6s} (tile_stats {procs[name]['tile_stats']}): median {med:.2f} s = {n / med:.0f} tiles/s; "
                   f"runs {[round(x, 2) for x in runs[name]]}; main-process CPU median "
                   f"{statistics.median(cpu_runs[name]):.2f} s")
    out.append(f"  tile_stats identical: {np.array_equal(stats['serial'], stats['pool'])}; "
               f"speed-up {statistics.median(runs['serial']) / statistics.median(runs['pool']):.2f}x")
    # the embedding loop alone (no tissue detection, stain estimate or file), interleaved
    from weakstil.decode.batches import shared_pool
    from weakstil.decode.readers import plan_reader
    from weakstil.embed import embed_batches
    from weakstil.tilestats_pool import measured_batches, stats_processes

    w, t = int(plan.get("workers") or 1), int(plan.get("threads") or 1)
    procs_auto = stats_processes(procs["pool"], cpu_count(), "cpu", t)
    loop: dict[str, list[float]] = {"serial": [], "pool": []}
    with Slide.open(slide_path) as slide:
        spec = plan_reader(slide, params.mpp, params.tile_px)
        for _ in range(args.repeats):
            for name in loop:
                rows = np.zeros((n, len(COLUMNS)), np.float32)
                t0 = time.perf_counter()
                job = shared_stats_pool(procs_auto).job(rows, stain, params.mpp, bs, params.tile_px) \
                    if name == "pool" else None
                embed_batches(enc, measured_batches(shared_pool(w).batches(spec, coords, bs), stain, params.mpp,
                                                    rows, "none", job), lambda s, f: None)
                if job is not None:
                    job.finish()
                loop[name].append(time.perf_counter() - t0)
    out.append(f"embedding loop only ({w} decode worker(s) + {t} torch thread(s), {procs_auto} measurement "
               f"process(es) in the pool row):")
    for name, v in loop.items():
        med = statistics.median(v)
        out.append(f"  {name:6s}: median {med:.2f} s = {n / med:.0f} tiles/s; runs {[round(x, 2) for x in v]}")
    out.append(f"  speed-up {statistics.median(loop['serial']) / statistics.median(loop['pool']):.2f}x")
    out.append("")
    for c in [int(x) for x in args.gpu_cpus.split(",") if x]:
        out.append(f"GPU path projection: {c} measurement processes x {1e3 / ms:.0f} tiles/s = {c * 1e3 / ms:.0f} tiles/s "
                   f"(a 15,000-tile slide's measurements in {15000 * ms / 1e3 / c:.2f} s)")
    out.append(f"1-min load average {load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    print("\n".join(out))


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
