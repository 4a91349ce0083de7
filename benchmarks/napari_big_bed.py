"""A pathologist's session in napari on a 100,000-tile result with a fragmented tumour bed: time each step.

    xvfb-run -a -s "-screen 0 1700x1050x24" .venv/bin/python benchmarks/napari_big_bed.py [--tiles 100000]

Writes two synthetic ``weakstil score`` files (a square grid of 448-px tiles on a 0.25 µm/px scan, as
``benchmarks/rescore_speed.py``; stroma-weighted; a detector-like bed on an 8 µm/px mask made of
thousands of islands and holes) under ``--work`` and, in a real napari window with the scoring widget
docked, times what a pathologist does: open the result, show the whole slide, toggle the heatmap and
bed, Edit bed, draw a shape and Rescore, Save bed, close it, open the next slide's result and edit its bed, and open
the first result again (its saved bed said beneath the number).
Prints seconds, the longest the viewer stood frozen in the step (the longest gap between two ticks of a 20-ms Qt
timer: the GUI thread busy) and the resident memory after each step. The bed box's buttons are clicked, as a
pathologist does: since hunt 32 they run the long work in a worker thread, and the step lasts until its result is
applied. ``--profile STEP`` writes a cProfile of one step to ``--work``/STEP.prof.
"""

from __future__ import annotations

import argparse
import cProfile
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_view import rss_mb  # the same measure as the viewing benchmark (run as a script: benchmarks/ is on the path)

SLIDE_MPP = 0.25
TILE = 448  # level-0 px: 224 px at 0.5 µm/px
MASK_MPP = 8.0


def fragmented_bed(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A detector-like bed: smoothed noise cut at a level, so the bed is a lace of islands and holes."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 6)
    return noise > np.quantile(noise, 0.45)


def write_result(path: Path, n_tiles: int, seed: int) -> dict:
    from weakstil.files import SlideScoresFile

    side = int(np.ceil(np.sqrt(n_tiles)))
    cols, rows = np.divmod(np.arange(n_tiles), side)
    coords = np.stack([cols * TILE, rows * TILE], 1).astype(np.int64)
    width = height = side * TILE + TILE
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 100, n_tiles).astype(np.float32)
    shape = (round(height * SLIDE_MPP / MASK_MPP), round(width * SLIDE_MPP / MASK_MPP))
    bed = fragmented_bed(shape, seed)
    f = SLIDE_MPP / MASK_MPP
    cy = np.clip(((coords[:, 1] + TILE / 2) * f).astype(int), 0, shape[0] - 1)
    cx = np.clip(((coords[:, 0] + TILE / 2) * f).astype(int), 0, shape[1] - 1)
    flags = bed[cy, cx]
    stroma = rng.uniform(0, 1, n_tiles).astype(np.float32)
    stil = float((scores * stroma)[flags].sum() / stroma[flags].sum())
    SlideScoresFile(coords=coords, tile_scores=scores, tumorbed=flags, tumorbed_fraction=flags.astype(np.float32),
                    tissue_fraction=np.ones(n_tiles, np.float32), tissue_mask=np.ones(shape, bool),
                    tissue_mask_mpp=MASK_MPP, tumorbed_mask=bed, tumorbed_mask_mpp=MASK_MPP, stroma_weight=stroma,
                    attrs={"slide_id": path.stem, "slide_mpp": SLIDE_MPP, "slide_width": width, "slide_height": height,
                           "tile_size_level0": float(TILE), "stil": stil, "threshold": 30.0,
                           "aggregator": "stroma"}).write(path)
    return {"width": width, "height": height}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=100_000)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--profile", default="", help="a step to profile (e.g. edit_bed, rescore, open_result)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="napari_big_bed_"))
    (work / "scores").mkdir(parents=True, exist_ok=True)
    paths = [work / "scores" / f"big_{i}.h5" for i in (1, 2)]
    for i, p in enumerate(paths):
        if not p.is_file():
            write_result(p, args.tiles, seed=i)

    import napari_weakstil  # noqa: F401
    import napari
    from napari.utils.triangulation_backend import get_backend

    from napari_weakstil._widget import ScoringWidget

    from qtpy.QtCore import QTimer

    rows: list[tuple[str, float, float, float]] = []
    ticks: list[float] = []
    ticker = QTimer()
    ticker.setInterval(20)
    ticker.timeout.connect(lambda: ticks.append(time.perf_counter()))

    def timed(name: str, fn, *a):
        prof = cProfile.Profile() if args.profile == name else None
        t0 = time.perf_counter()
        ticks[:] = [t0]
        ticker.start()
        if prof:
            prof.enable()
        out = fn(*a)
        napari.qt.get_qapp().processEvents()
        viewer.screenshot(canvas_only=True, flash=False)  # drawn: what the pathologist waits for
        if prof:
            prof.disable()
            prof.dump_stats(str(work / f"{name}.prof"))
        end = time.perf_counter()
        ticker.stop()
        frozen = float(np.diff([*ticks, end]).max())
        rows.append((name, end - t0, frozen, rss_mb()))
        print(f"{name:<34} {rows[-1][1]:8.2f} s   frozen {frozen:6.2f} s   RSS {rows[-1][3]:7.0f} MB", flush=True)
        return out

    def click(button):
        """A bed box button pressed, and its step waited for (a worker thread since hunt 32; before, at once)."""
        button.click()
        tasks = getattr(editor, "tasks", None)
        if tasks is not None:
            tasks.wait(timeout_s=1800)

    def opened(path: Path) -> list:
        """File > Open, waited for until its bed's outline (built in the background since hunt 33) and the saved bed's
        line are shown; the result's layers."""
        viewer.open(path, plugin="napari-weakstil")
        wait_drawn()
        return [ly for ly in viewer.layers if ly.metadata.get("result_path") == str(path)]

    def wait_drawn() -> None:
        try:
            from napari_weakstil import bed_saved, outline_later
        except ImportError:  # before hunt 33: all at once
            return
        outline_later.wait(1800)
        end = time.perf_counter() + 1800
        while bed_saved._working and time.perf_counter() < end:
            napari.qt.get_qapp().processEvents()
            time.sleep(0.01)

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    widget = ScoringWidget(viewer)
    viewer.window.add_dock_widget(widget)
    editor = widget.bed_editor
    print(f"{args.tiles:,} tiles per result; {work}; napari {napari.__version__}, triangulation: {get_backend()}")
    layers = timed("open_result", opened, paths[0])
    heat = next(ly for ly in layers if ly.metadata.get("role") == "sTIL score")
    bed = next(ly for ly in layers if ly.metadata.get("role") == "tumour bed")
    print(f"    scored bed outline: {len(bed.data):,} paths, {sum(len(d) for d in bed.data):,} vertices")
    timed("reset_view", viewer.reset_view)
    timed("toggle_heatmap", lambda: setattr(heat, "visible", not heat.visible))
    timed("toggle_bed", lambda: setattr(bed, "visible", not bed.visible))
    timed("edit_bed", click, editor.edit_button)
    layer = editor.layer()
    if layer is None:  # napari would draw it in pure Python for minutes: said, with the fix
        print(f"    {widget.status_label.text()}")
        raise SystemExit("stopped: Edit bed said the bed is slow to draw here (pip install bermuda)")
    print(f"    edited bed: {len(layer.data):,} shapes, {sum(len(d) for d in layer.data):,} vertices")
    from napari_weakstil._compat import camera

    cam = camera(viewer)
    timed("zoom_wheel_10_steps", lambda: [setattr(cam, "zoom", cam.zoom * 1.1) for _ in range(10)])
    timed("rescore_unedited", click, editor.rescore_button)
    print(f"    {widget.stil_label.text()}")
    w = float(heat.metadata["raster"].grid_shape[1]) * TILE
    timed("draw_hole", lambda: layer.add_polygons([np.array([[0.2 * w, 0.2 * w], [0.2 * w, 0.4 * w],
                                                              [0.4 * w, 0.4 * w], [0.4 * w, 0.2 * w]])]))
    timed("rescore", click, editor.rescore_button)
    print(f"    {widget.stil_label.text()}")
    timed("save_bed", click, editor.save_button)
    timed("remove_edit_layer", viewer.layers.remove, layer)
    timed("close_result", lambda: [viewer.layers.remove(ly) for ly in list(layers) if ly in viewer.layers])
    timed("open_next_result", opened, paths[1])
    timed("edit_bed_next (saved none)", click, editor.edit_button)
    for ly in list(viewer.layers):
        viewer.layers.remove(ly)
    timed("open_first_again (bed saved)", opened, paths[0])
    print(f"    {widget.detail_label.text().splitlines()[-1][:100]}")
    print(f"total {sum(r[1] for r in rows):.1f} s; frozen at most {max(r[2] for r in rows):.1f} s at once; "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (RSS at the steps' ends "
          f"at most {max(r[3] for r in rows):.0f} MB)")  # the peak within a step too, as napari_view.py
    viewer.close()


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
