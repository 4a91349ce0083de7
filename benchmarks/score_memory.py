"""Peak memory of `weakstil score` on a slide with at least 100,000 tissue tiles.

    .venv/bin/python benchmarks/score_memory.py [--tiles 100000] [--workdir .bench/memory]

1. Renders one synthetic slide and cuts an all-tissue block from its tumour bed.
2. Writes a huge pyramidal JPEG TIFF (0.5 µm/px) that repeats that block, with enough
   tiles (about 71,000 x 71,000 px for 100,000 tiles of 224 px); cached for reruns.
3. Trains a tiny MIL model (small CNN, seeded random weights) on a small synthetic cohort.
4. Runs `weakstil score` on the huge slide in a child process and reports the peak memory of it
   and its decode / measurement worker processes together (summed RSS, sampled; target: under
   2 GB; ``memwatch.py``), the largest single process's peak RSS, and the time. Embedding
   100,000 tiles on 2 CPU cores takes minutes.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from memwatch import run_watched  # run as a script: benchmarks/ is on the path

import weakstil
from weakstil.runtime import cpu_count

ROOT = Path(__file__).resolve().parents[1]
TILE = 256  # TIFF tile size


def source_block(workdir: Path) -> np.ndarray:
    """A 4096x4096 all-tissue block from the tumour bed of a synthetic slide."""
    import h5py

    from weakstil.slide import Slide
    from weakstil.synth import generate_slide

    slide_path = workdir / "source.tiff"
    if not slide_path.exists():
        generate_slide(slide_path, workdir / "source_truth", "source", seed=11, size_mm=(2.5, 2.5), target_stil=25.0)
    with h5py.File(workdir / "source_truth" / "source.h5") as f:
        tissue = f["tissue"][:].astype(bool)
    # the 4096 px (512 mask px) window with the most tissue
    best, best_xy = -1.0, (0, 0)
    for y in range(0, tissue.shape[0] - 512 + 1, 16):
        for x in range(0, tissue.shape[1] - 512 + 1, 16):
            share = tissue[y:y + 512, x:x + 512].mean()
            if share > best:
                best, best_xy = share, (x, y)
    x, y = best_xy
    with Slide.open(slide_path) as s:
        return s.read_region(x * 8, y * 8, 4096, 0.5)


def write_mosaic(path: Path, block: np.ndarray, side: int) -> None:
    """A pyramidal tiled JPEG TIFF of ``side`` x ``side`` px repeating ``block``."""
    import tifffile
    from PIL import Image

    levels = []
    size = side
    k = 0
    while size >= 1024 or k == 0:
        levels.append((k, size))
        size //= 4
        k += 1
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for k, size in levels:
            f = 4**k
            src = block if f == 1 else np.asarray(Image.fromarray(block).resize((4096 // f, 4096 // f), Image.BOX))
            reps = max(1, math.ceil(TILE / src.shape[0]))
            src = np.tile(src, (reps, reps, 1))
            n = src.shape[0] // TILE

            def tiles(size=size, src=src, n=n):
                for ty in range(math.ceil(size / TILE)):
                    for tx in range(math.ceil(size / TILE)):
                        sy, sx = (ty % n) * TILE, (tx % n) * TILE
                        yield src[sy:sy + TILE, sx:sx + TILE]

            opts = dict(shape=(size, size, 3), dtype=np.uint8, tile=(TILE, TILE), compression="jpeg",
                        photometric="rgb", resolution=(1e4 / (0.5 * f), 1e4 / (0.5 * f)), resolutionunit="CENTIMETER")
            if k == 0:
                tw.write(tiles(), subifds=0, **opts)
            else:
                tw.write(tiles(), subfiletype=1, **opts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--workdir", type=Path, default=ROOT / ".bench" / "memory")
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "weakstil"]

    # the repeated block is about 70 % tissue: lay out enough grid positions for the target
    side = int(math.ceil(math.sqrt(args.tiles / 0.66)) * 224)
    side = int(math.ceil(side / TILE) * TILE)
    big = work / f"mosaic_{side}.tiff"
    if not big.exists():
        t0 = time.perf_counter()
        write_mosaic(big, source_block(work), side)
        print(f"wrote {big.name} ({side} x {side} px, {big.stat().st_size / 1e9:.2f} GB) in "
              f"{time.perf_counter() - t0:.0f} s", file=sys.stderr)

    model = work / "model"
    if not (model / "model.json").exists():
        from weakstil.synth import generate_cohort

        cohort = work / "cohort"
        generate_cohort(cohort, 6, seed=2, size_mm=(1.0, 1.0), progress=False)
        subprocess.run([*cli, "embed", str(cohort / "slides" / "*.tiff"), "--out", str(work / "train_features"),
                        "--encoder", "small-cnn", "--weights", "random"], check=True)
        subprocess.run([*cli, "train", str(cohort / "labels.csv"), "--features", str(work / "train_features"),
                        "--out", str(model), "--folds", "1", "--epochs", "5", "--overwrite"], check=True)

    out = work / "scores"
    # score keeps the slide's features under its --out and reuses them: a rerun measured scoring without
    # embedding (no decode workers; 46 s instead of 170 s on a 3,337-tile slide). Every run embeds.
    shutil.rmtree(out, ignore_errors=True)
    # score decodes (and measures tiles) in worker processes: the peak is of score and its workers
    # together (RUSAGE_CHILDREN's ru_maxrss was the largest single process, and counted the
    # embed/train runs above too)
    load0 = os.getloadavg()[0]
    with open(work / "score.log", "w+") as log_file:
        w = run_watched([*cli, "score", str(big), "--model", str(model), "--out", str(out), "--weights", "random",
                         "--device", "cpu", "--overwrite"], stdout=log_file, stderr=subprocess.STDOUT, text=True)
        if w.returncode != 0:
            log_file.seek(0)
            print(log_file.read()[-3000:], file=sys.stderr)
            raise SystemExit(f"weakstil score failed (exit {w.returncode}); its log: {work / 'score.log'}")
    seconds, peak_gb, largest_gb = w.seconds, w.tree_peak_bytes / 1e9, w.largest_bytes / 1e9
    import pandas as pd

    table = pd.read_csv(out / "results.csv", dtype={"slide_id": str})
    row = table[table["slide_id"] == big.stem].iloc[0]
    print(f"\n{cpu_count()} CPUs, 1-min load {load0:.2f} before, {os.getloadavg()[0]:.2f} after; weakstil "
          f"{weakstil.__version__}, python {platform.python_version()}; up to {w.max_processes} processes "
          "(score and its decode / measurement workers)")
    print("\n| slide | tiles | tumour-bed tiles | sTIL% | time s | tiles/s | peak GB, score + workers | "
          "peak RSS GB, largest process |\n|---|---|---|---|---|---|---|---|")
    print(f"| {big.name} ({side}x{side}) | {row.n_tiles} | {row.n_tumorbed_tiles} | {row.stil:.1f} | {seconds:.0f} | "
          f"{row.n_tiles / seconds:.0f} | {peak_gb:.2f} | {largest_gb:.2f} |")
    print(f"\npeak memory of `weakstil score` and its workers (summed RSS, sampled every 0.1 s): {peak_gb:.2f} GB "
          f"-> {'PASS' if peak_gb < 2 else 'FAIL'} (target < 2 GB)")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
