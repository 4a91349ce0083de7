"""Speed and memory of the synthetic slide generator.

    python benchmarks/synth_speed.py            # 2.5 mm slides, pinned to one core
    python benchmarks/synth_speed.py --large    # + a 20 mm x 20 mm slide
    python benchmarks/synth_speed.py --compare  # default vs --hard vs --look alt (same seeds)

The process pins itself to one CPU core (``--all-cores`` to skip), like
``taskset -c 0``.  Prints wall seconds per slide (the first, "cold" slide includes building the
process-wide sprite and texture banks) and the peak resident memory of the
process (``resource.getrusage``), which must stay below 4 GB for the large slide.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _one(out: Path, name: str, size_mm: float, seed: int, hard: bool = False, look: str = "default"
         ) -> tuple[float, float]:
    from weakstil.synth import generate_slide

    t0 = time.perf_counter()
    res = generate_slide(out / f"{name}.tiff", out, name, seed, size_mm=(size_mm, size_mm), hard=hard, look=look)
    dt = time.perf_counter() - t0
    mb = (out / f"{name}.tiff").stat().st_size / 1e6
    mode = ("hard " if hard else "") + look
    print(f"{name} [{mode}]: {size_mm} mm ({res.width}x{res.height} px) {dt:.2f} s, sTIL {res.stil:.2f} "
          f"(target {res.target_stil:.2f}), {res.n_levels} levels, {mb:.1f} MB tiff, "
          f"peak RSS {_peak_rss_mb():.0f} MB", flush=True)
    return dt, _peak_rss_mb()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", action="store_true", help="also generate a 20 mm x 20 mm slide")
    ap.add_argument("--large-mm", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=3, help="number of 2.5 mm slides (different seeds)")
    ap.add_argument("--out", type=Path, default=None, help="keep the slides here (default: temp dir)")
    ap.add_argument("--all-cores", action="store_true", help="do not pin the process to one core")
    ap.add_argument("--hard", action="store_true", help="generate with the real-tissue confounders")
    ap.add_argument("--look", default="default", help="appearance family (default, alt)")
    ap.add_argument("--compare", action="store_true",
                    help="time default, --hard and --look alt on the same seeds (warm banks)")
    args = ap.parse_args(argv)
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    print(f"python {sys.version.split()[0]}, usable cores: {cores}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        if args.compare:
            modes = [(False, "default"), (True, "default"), (False, "alt"), (True, "alt")]
            for hard, look in modes:  # build every bank first: the comparison is warm
                _one(out, "warmup", 1.0, 1, hard, look)
            med = {}
            for hard, look in modes:
                ts = sorted(_one(out, f"bench_{i}", 2.5, 1000 + i, hard, look)[0] for i in range(max(1, args.repeat)))
                med[(hard, look)] = ts[len(ts) // 2]
            base = med[(False, "default")]
            for (hard, look), t in med.items():
                print(f"2.5 mm {'hard ' if hard else ''}{look}: warm median {t:.2f} s ({t / base:.2f}x default)",
                      flush=True)
            return 0
        times = [_one(out, f"bench_{i}", 2.5, 1000 + i, args.hard, args.look)[0] for i in range(max(1, args.repeat))]
        warm = times[1:] or times
        print(f"2.5 mm slide: cold {times[0]:.2f} s, warm median {sorted(warm)[len(warm) // 2]:.2f} s "
              f"(limit 10 s on one core)", flush=True)
        if args.large:
            for p in out.glob("bench_*"):
                p.unlink()
            dt, rss = _one(out, "bench_large", args.large_mm, 2024)
            print(f"{args.large_mm:g} mm slide: {dt:.1f} s, peak RSS {rss:.0f} MB (limit 4096 MB)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
