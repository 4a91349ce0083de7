"""Time and memory of a slide's tissue pieces (:func:`weakstil.qc.pieces.slide_pieces`) on a big tissue mask.

    .venv/bin/python benchmarks/pieces_speed.py                 # 87,552 px square slide: 5,472 px mask, one piece
    .venv/bin/python benchmarks/pieces_speed.py --side 40000 --pieces 9 --repeats 5

``weakstil score`` finds each slide's tissue pieces (per-piece sTIL%, ``tma_like``) since hunt 39g, and the
napari widget at the first *Rescore*. The mask is the score file's 8 µm/px tissue mask of a 0.5 µm/px slide
tiled in 224 px tiles (one tile per grid cell); ``--pieces`` splits it into a grid of that many pieces. Reports
the median and worst of ``--repeats`` calls and the peak of numpy's allocations during one (tracemalloc).

Hunt 39j, 2 shared CPU cores (load 2-3 from other jobs), a 30-million-px mask with 2 % pinholes, 152,100 tiles
(87,552 px square, the size of ``benchmarks/score_memory.py``'s 100,000-tissue-tile mosaic), 3 calls:

| code | 1 piece: median (worst) s | peak MB of numpy arrays | 9 pieces: median s | peak MB |
|---|---|---|---|---|
| 63e95a8 (pixel coordinates by ``np.nonzero``, a whole-mask ``bincount``, the mask labelled twice) | 1.16-3.35 (5.1-7.7) | 993 | 1.41 | 361 |
| now (row sums in 256-row blocks, areas from the pieces' boxes, one labelling) | 0.56-0.59 (0.66) | 158 | 0.54 | 158 |
| + hunt 39l's joining of parts < 100 µm apart (the mask grown by a 50 µm disc before labelling; load 3.9) | 0.65 (0.69) | 158 | – | – |

In ``weakstil score`` of that mosaic (one 21-Mpx piece; cProfile): 0.85 s -> 0.30 s (docs/scoring.md, hunt 39j).
Same pieces (area, centre, axes) on 40 random masks (``tests/test_h39g_pieces.py`` checks them against the
pixel covariance). What is left is the labelling, ``find_objects`` and the tiles' sample points, each one pass
over the mask.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc

import numpy as np


def mask_and_tiles(side: int, pieces: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An 8 µm/px mask of a ``side`` px (0.5 µm/px) square slide, 2 % pinholes, cut into a grid of
    ``pieces`` pieces, and the slide's 224 px tile corners."""
    m = int(side * 0.5 // 8)
    mask = np.random.default_rng(seed).random((m, m)) > 0.02
    mask[:100], mask[-100:], mask[:, :100], mask[:, -100:] = False, False, False, False
    k = int(np.ceil(np.sqrt(pieces)))
    for cut in np.linspace(0, m, k + 1)[1:-1].astype(int):
        mask[cut - 10:cut + 10] = False
        mask[:, cut - 10:cut + 10] = False
    grid = np.arange(0, side - 224, 224)
    return mask, np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2).astype(np.int64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=87_552, help="slide width and height, level-0 px at 0.5 µm/px")
    ap.add_argument("--pieces", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from weakstil.qc.pieces import slide_pieces

    mask, coords = mask_and_tiles(args.side, args.pieces)
    slide_pieces(coords, 224.0, mask[:500, :500], 8.0, 0.5)  # imports apart
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        _, found = slide_pieces(coords, 224.0, mask, 8.0, 0.5)
        times.append(time.perf_counter() - t)
    tracemalloc.start()
    slide_pieces(coords, 224.0, mask, 8.0, 0.5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"mask {mask.shape[1]} x {mask.shape[0]} px, {len(coords):,} tiles, {len(found)} pieces: median "
          f"{statistics.median(times):.2f} s, worst {max(times):.2f} s over {args.repeats}; peak of numpy's "
          f"allocations {peak / 1e6:.0f} MB (the labels alone: {mask.size * 4 / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
