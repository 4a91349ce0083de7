"""How quickly the napari plugin shows a huge slide and its 100,000-tile result, and at what memory.

    xvfb-run -a -s "-screen 0 1700x1050x24" .venv/bin/python benchmarks/napari_view.py \
        [--result .bench/memory/scores/mosaic_87552.h5]

The default result is what ``benchmarks/score_memory.py`` leaves: an 87,552 x 87,552 px
pyramidal TIFF (0.5 µm/px, 2.8 GB) scored into about 109,000 tiles. It measures, in a real
napari window (Xvfb on a headless machine):

1. reading the result file into layers (heatmap, tumour bed, tissue) and opening the slide;
2. the first whole-slide render (napari reads only the coarse level's visible chunks);
3. a render at full resolution (1 screen px = 1 level-0 px) in the middle of the slide;
4. a pan at full resolution (new chunks read), and 1,000 tile look-ups (clicks);

and the process's resident memory after each step. The slide's pixels are 23 GB decoded:
the viewer must stay far below that.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--result", type=Path, default=ROOT / ".bench" / "memory" / "scores" / "mosaic_87552.h5")
    args = ap.parse_args()
    if not args.result.is_file():
        raise SystemExit(f"error: {args.result}: not found. Fix: run benchmarks/score_memory.py first, or pass "
                         "--result with a 'weakstil score' .h5 whose slide exists")
    import napari_weakstil  # noqa: F401  (Triton stays out of this GUI process)
    import napari
    import numpy as np

    from napari_weakstil._compat import camera
    from napari_weakstil._widget import ScoringWidget
    from napari_weakstil.result_layers import HEATMAP

    rows = []

    def step(name: str, t0: float) -> None:
        rows.append((name, time.perf_counter() - t0, rss_mb()))
        print(f"{name:<44} {rows[-1][1]:7.2f} s   RSS {rows[-1][2]:7.0f} MB", flush=True)

    t = time.perf_counter()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    widget = ScoringWidget(viewer)
    viewer.window.add_dock_widget(widget)
    step("napari window + widget", t)

    t = time.perf_counter()
    layers = viewer.open(args.result, plugin="napari-weakstil")
    heat = next(ly for ly in layers if ly.name.endswith(HEATMAP))
    res = heat.metadata["result"]
    slide = layers[0]
    step(f"open result ({len(res.coords):,} tiles) + slide", t)
    print(f"    slide levels: {[tuple(d.shape[:2]) for d in slide.data]}")

    t = time.perf_counter()
    viewer.reset_view()
    viewer.screenshot(canvas_only=True, flash=False)
    step("first whole-slide render", t)

    mpp = heat.metadata["slide_mpp"]
    h, w = slide.data[0].shape[:2]
    cam = camera(viewer)
    t = time.perf_counter()
    cam.center = (h / 2 * mpp, w / 2 * mpp)
    cam.zoom = 1 / mpp  # 1 screen px per level-0 px
    viewer.screenshot(canvas_only=True, flash=False)
    step("full-resolution render, slide centre", t)

    t = time.perf_counter()
    for k in range(1, 6):
        cam.center = (h / 2 * mpp + k * 400 * mpp, w / 2 * mpp + k * 700 * mpp)
        viewer.screenshot(canvas_only=True, flash=False)
    rows_before = len(rows)
    step("5 pans at full resolution (per pan below)", t)
    print(f"    per pan: {rows[rows_before][1] / 5:.2f} s")

    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(res.coords), 1000)
    t = time.perf_counter()
    hits = 0
    for i in pick:
        x, y = res.coords[i]
        info = widget.inspect_at(((y + res.tile_size / 2) * mpp, (x + res.tile_size / 2) * mpp))
        hits += info is not None and info["index"] == int(i)
    step(f"1,000 tile clicks ({hits} found the right tile)", t)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB (slide decoded would be {h * w * 3 / 1e9:.1f} GB)")
    viewer.close()


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
