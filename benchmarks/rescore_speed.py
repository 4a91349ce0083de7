"""Rescoring an edited tumour bed from cached tile scores: time on a 100,000-tile slide.

    .venv/bin/python benchmarks/rescore_speed.py                  # 100,000 tiles, 5,000-vertex bed
    .venv/bin/python benchmarks/rescore_speed.py --tiles 400000 --vertices 20000 --repeats 10

Writes a synthetic ``weakstil score`` file (:class:`weakstil.files.SlideScoresFile`: a square
grid of 224-px tiles at 0.5 µm/px on a 0.25 µm/px scan, tissue mask at 8 µm/px, attention
logits) under ``--work`` and times, with a wobbly many-vertex bed polygon and a hole:

* ``read``: :meth:`weakstil.bed_edit.ScoredTiles.read` (once per slide in the napari widget);
* ``rescore``: :meth:`ScoredTiles.rescore` (what *Rescore* runs), stroma-weighted, mean and attention aggregation,
  split into polygons -> tile flags and the aggregation; the first call (torch import) apart.

Target: rescore < 1 s on 100,000 tiles. Timings on a shared machine are noisy: the median of
``--repeats`` is reported beside the worst.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SLIDE_MPP = 0.25
TILE = 448  # level-0 px: 224 px at 0.5 µm/px
MASK_MPP = 8.0


def write_score_file(path: Path, n_tiles: int, aggregator: str, seed: int = 0) -> dict:
    from weakstil.files import SlideScoresFile

    side = int(np.ceil(np.sqrt(n_tiles)))
    cols, rows = np.divmod(np.arange(n_tiles), side)
    coords = np.stack([cols * TILE, rows * TILE], 1).astype(np.int64)
    width = height = side * TILE + TILE
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 100, n_tiles).astype(np.float32)
    logits = rng.normal(0, 1, n_tiles).astype(np.float32)
    shape = (round(height * SLIDE_MPP / MASK_MPP), round(width * SLIDE_MPP / MASK_MPP))
    tissue = np.ones(shape, bool)
    flags = np.ones(n_tiles, bool)
    weights = np.exp(logits - logits.max())
    SlideScoresFile(coords=coords, tile_scores=scores, tumorbed=flags, tumorbed_fraction=np.ones(n_tiles, np.float32),
                    tissue_fraction=np.ones(n_tiles, np.float32), tissue_mask=tissue, tissue_mask_mpp=MASK_MPP,
                    tumorbed_mask=tissue, tumorbed_mask_mpp=MASK_MPP,
                    attention=(weights / weights.sum()).astype(np.float32) if aggregator == "attention" else None,
                    attention_logits=logits if aggregator == "attention" else None,
                    stroma_weight=rng.uniform(0, 1, n_tiles).astype(np.float32) if aggregator == "stroma" else None,
                    attrs={"slide_id": f"bench_{aggregator}", "slide_mpp": SLIDE_MPP, "slide_width": width,
                           "slide_height": height, "tile_size_level0": float(TILE), "stil": float(scores.mean()),
                           "threshold": 30.0, "aggregator": aggregator}).write(path)
    return {"width": width, "height": height}


def bed_polygon(width: int, height: int, vertices: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A wobbly outline over most of the slide (``vertices`` vertices, level-0 [x, y]) and a hole."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, vertices, endpoint=False)
    r = 0.42 * (1 + 0.08 * np.sin(7 * t) + 0.02 * rng.standard_normal(vertices))
    outline = np.stack([width * (0.5 + r * np.cos(t)), height * (0.5 + r * np.sin(t))], 1)
    hole = np.array([[0.45, 0.45], [0.55, 0.45], [0.55, 0.55], [0.45, 0.55]]) * [width, height]
    return outline, hole


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--vertices", type=int, default=5_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()

    from weakstil.bed_edit import ScoredTiles, aggregate_bed, bed_shape, bed_tile_flags

    work = args.work or Path(tempfile.mkdtemp(prefix="rescore_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"{args.tiles:,} tiles, bed polygon of {args.vertices:,} vertices + a hole; {args.repeats} repeats")
    print(f"{'aggregator':<10} {'read s':>8} {'1st s':>8} {'median s':>9} {'worst s':>8} {'flags s':>8} "
          f"{'aggr s':>8} {'bed tiles':>10} {'sTIL %':>8}")
    for aggregator in ("stroma", "mean", "attention"):
        path = work / f"bench_{aggregator}.h5"
        size = write_score_file(path, args.tiles, aggregator)
        outline, hole = bed_polygon(size["width"], size["height"], args.vertices)
        t0 = time.perf_counter()
        tiles = ScoredTiles.read(path)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tiles.rescore([outline], [hole])
        first_s = time.perf_counter() - t0
        times, flag_times, agg_times = [], [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = tiles.rescore([outline], [hole])
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            flags = bed_tile_flags(bed_shape([outline], [hole]), tiles.geometry)
            t1 = time.perf_counter()
            aggregate_bed(tiles.tile_scores, flags, tiles.logits, tiles.stroma, tiles.aggregator)
            flag_times.append(t1 - t0)
            agg_times.append(time.perf_counter() - t1)
        print(f"{aggregator:<10} {read_s:8.3f} {first_s:8.3f} {statistics.median(times):9.3f} {max(times):8.3f} "
              f"{statistics.median(flag_times):8.3f} {statistics.median(agg_times):8.3f} "
              f"{result.n_bed_tiles:>10,} {result.stil:8.2f}")
    print("target: rescore (median, worst) < 1 s on 100,000 tiles")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
