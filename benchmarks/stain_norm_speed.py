"""Macenko stain normalisation speed: rendering each pixel vs the slide's colour table (issue 18).

    .venv/bin/python benchmarks/stain_norm_speed.py                      # a synthetic 8 x 8 mm slide
    .venv/bin/python benchmarks/stain_norm_speed.py --slide S.svs --repeats 3

Prints

* ms per 224 px tile on one core of :func:`weakstil.stain.normalise` (optical density by table,
  float32 arithmetic per pixel) and of :class:`weakstil.stain.Normaliser` once its 2^24-colour
  table is built (one lookup per pixel), on the slide's own tissue tiles, and whether the two
  give identical pixels;
* the table's build time (paid once per slide, after ``TABLE_AFTER_PIXELS`` pixels);
* ``weakstil embed`` (``embed_slide``, small-cnn, the card's Macenko normalisation, default plan)
  wall seconds and tiles/s with the table and with every pixel rendered, interleaved A/B runs.

Wall times are noisy on a shared machine; the per-tile CPU figures are what to compare.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def synthetic_slide(cache_dir: Path, size_mm: float) -> Path:
    from weakstil.synth import generate_cohort

    out = cache_dir / f"stain-norm-{size_mm:g}mm"
    if not (out / "labels.csv").is_file():
        generate_cohort(out, 1, 0, size_mm=(size_mm, size_mm), n_groups=1)
    return next((out / "slides").iterdir())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, default=None, help="default: a synthetic --size-mm slide")
    ap.add_argument("--size-mm", type=float, default=8.0)
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "weakstil-bench")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import weakstil.stain as stain_mod
    from weakstil.embed import embed_slide, open_encoder
    from weakstil.slide import Slide
    from weakstil.stain import Normaliser, colour_table, estimate_slide_stain, normalise
    from weakstil.tiles import TilingParams, find_tiles

    slide_path = args.slide or synthetic_slide(args.cache_dir, args.size_mm)
    params = TilingParams()
    with Slide.open(slide_path) as slide:
        stain = estimate_slide_stain(slide)
        coords = find_tiles(slide, params).coords
        pick = coords[np.linspace(0, len(coords) - 1, min(128, len(coords))).astype(int)]
        tiles = np.stack([slide.read_region(int(x), int(y), params.tile_px, params.mpp) for x, y in pick])
    t0 = time.perf_counter()
    table = colour_table(stain)
    build = time.perf_counter() - t0
    direct = Normaliser(stain, table_after_pixels=2 ** 62)
    lookup = Normaliser(stain, table_after_pixels=0)
    lookup.table = table

    def ms_per_tile(fn) -> float:
        fn(tiles)
        c0 = time.process_time()
        for _ in range(3):
            fn(tiles)
        return 1e3 * (time.process_time() - c0) / (3 * len(tiles))

    ms_direct, ms_table = ms_per_tile(direct), ms_per_tile(lookup)
    same = np.array_equal(lookup(tiles), normalise(tiles, stain))
    out = [f"slide {slide_path} ({len(coords)} tissue tiles, stain {stain.source}); {len(tiles)} tiles timed",
           f"normalise, every pixel rendered: {ms_direct:.3f} ms/tile CPU",
           f"colour table lookup:             {ms_table:.3f} ms/tile CPU ({ms_direct / ms_table:.1f}x); "
           f"identical pixels: {same}",
           f"table build: {build:.2f} s once per slide (= {1e3 * build / ms_direct:.0f} tiles rendered directly); "
           f"built after {stain_mod.TABLE_AFTER_PIXELS / params.tile_px ** 2:.0f} tiles"]

    enc, planner = open_encoder("small-cnn", "random", "cpu")
    runs: dict[str, list[float]] = {"table": [], "every pixel": []}
    default_after = stain_mod.TABLE_AFTER_PIXELS
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for name in runs:
                stain_mod.TABLE_AFTER_PIXELS = default_after if name == "table" else 2 ** 62
                res = embed_slide(slide_path, enc, Path(tmp) / "f.h5", params, planner=planner, overwrite=True)
                runs[name].append(res.seconds)
    stain_mod.TABLE_AFTER_PIXELS = default_after
    out.append(f"embed_slide (small-cnn, stain_norm {enc.card.stain_norm}, {planner.cpus} CPUs, default plan), "
               "interleaved:")
    for name, v in runs.items():
        med = statistics.median(v)
        out.append(f"  {name:11s}: median {med:.2f} s = {len(coords) / med:.0f} tiles/s; runs {[round(x, 2) for x in v]}")
    out.append(f"1-min load average after: {os.getloadavg()[0]:.2f}")
    print("\n".join(out))


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
