"""Time `weakstil tile` on a large synthetic slide (default 20 mm = 40,000 × 40,000 px) on one core.

    .venv/bin/python benchmarks/tiling_speed.py [--size-mm 20] [--repeats 3]

The slide is generated once and cached in .bench/. Prints a markdown table with the
median time of each step and of the whole job (target: under 5 s on one core).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mm", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench")
    args = ap.parse_args()

    # one core, one thread: the target is for a single core
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"

    import weakstil
    from weakstil.slide import Slide
    from weakstil.synth import generate_slide
    from weakstil.tiles import TilingParams, find_tiles, tile_slide_to_dir

    args.cache.mkdir(exist_ok=True)
    slide_path = args.cache / f"large_{args.size_mm:g}mm.tiff"
    if not slide_path.exists():
        print(f"generating {slide_path} ({args.size_mm:g} mm square) once...", file=sys.stderr)
        t0 = time.perf_counter()
        generate_slide(slide_path, args.cache / f"large_{args.size_mm:g}mm_truth", "large", seed=1,
                       size_mm=(args.size_mm, args.size_mm))
        print(f"generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    params = TilingParams()
    load0 = os.getloadavg()[0]
    steps: dict[str, list[float]] = {"open": [], "thumbnail + tissue + grid": [], "whole job (h5 + png)": []}
    n_tiles = 0
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        slide = Slide.open(slide_path)
        t1 = time.perf_counter()
        tiles = find_tiles(slide, params)
        t2 = time.perf_counter()
        slide.close()
        with tempfile.TemporaryDirectory() as tmp:
            t3 = time.perf_counter()
            _, tiles = tile_slide_to_dir(slide_path, tmp, params)
            t4 = time.perf_counter()
        n_tiles = len(tiles.coords)
        steps["open"].append(t1 - t0)
        steps["thumbnail + tissue + grid"].append(t2 - t1)
        steps["whole job (h5 + png)"].append(t4 - t3)

    with Slide.open(slide_path) as s:
        W, H = s.dimensions
    print(f"\nslide {slide_path.name}: {W} x {H} px, {n_tiles} tiles kept of "
          f"{(W // 224) * (H // 224)} grid positions, 1 core, {args.repeats} repeats; 1-min load {load0:.2f} "
          f"before, {os.getloadavg()[0]:.2f} after (other processes on that core slow it); python "
          f"{platform.python_version()}, weakstil {weakstil.__version__}\n")
    print("| step | median s | min s | max s |\n|---|---|---|---|")
    for name, values in steps.items():
        print(f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    total = statistics.median(steps["whole job (h5 + png)"])
    print(f"\ntiling time (whole job, median): {total:.2f} s  -> {'PASS' if total < 5 else 'FAIL'} (target < 5 s)")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
