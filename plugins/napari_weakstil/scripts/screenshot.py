"""Screenshots of the WeakSTIL napari plugin for docs/napari.md, made the way a user works.

1. ``weakstil demo --quick`` (unless ``--demo DIR`` already holds one, e.g. from ``make demo``):
   a synthetic cohort, a self-supervised encoder, a MIL model and a tumour-bed detector.
2. ``weakstil score`` with that model on a new 3 mm synthetic slide (the highest-label of four)
   and on the real CMU slide.
3. napari (a real window; run under ``xvfb-run`` on a headless machine): open a scored result
   file (its slide opens beside it), dock the scoring widget, click the highest-scoring tile,
   and save the whole window.

    xvfb-run -a -s "-screen 0 1700x1050x24" .venv/bin/python plugins/napari_weakstil/scripts/screenshot.py

Writes ``docs/images/napari_synthetic.png`` and ``docs/images/napari_cmu.png``, and
``docs/images/napari_bed_edit.png``: the synthetic slide's bed opened for editing (*Edit bed*), a
part of it cut away as a pathologist would, and *Rescore* showing the new sTIL% (``--only bed``
makes just that one).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
CMU = ROOT / "tests" / "data" / "CMU-1-Small-Region.svs"


def weakstil(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "weakstil", *map(str, args)], check=True)


def screenshot(result_h5: Path, out_png: Path, model: Path, zoom: float = 1.0) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_weakstil._compat import camera
    from napari_weakstil.result_layers import HEATMAP

    viewer = napari.Viewer(show=True, title="WeakSTIL in napari")
    viewer.window.resize(1650, 1000)
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    layers = viewer.open(result_h5, plugin="napari-weakstil")
    widget.model_edit.value = model
    viewer.scale_bar.visible = True
    viewer.scale_bar.unit = "um"
    viewer.reset_view()
    camera(viewer).zoom *= zoom
    heat = next(ly for ly in layers if ly.name.endswith(HEATMAP))
    res = heat.metadata["result"]
    i = int(np.nanargmax(np.where(res.tumorbed, res.tile_scores, np.nan))) if res.tumorbed is not None and \
        res.tumorbed.any() else int(np.argmax(res.tile_scores))
    x, y = res.coords[i]
    mpp = heat.metadata["slide_mpp"]
    widget.inspect_at(((y + res.tile_size / 2) * mpp, (x + res.tile_size / 2) * mpp))
    for _ in range(20):
        QApplication.processEvents()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out_png), canvas_only=False, flash=False)
    print(f"wrote {out_png}")
    viewer.close()


def bed_edit_screenshot(result_h5: Path, out_png: Path, cut: float = 0.45) -> None:
    """Edit bed, cut away the bed's right part (``cut`` of its width), Rescore; a small PNG."""
    import napari
    import shapely
    from PIL import Image
    from qtpy.QtWidgets import QApplication
    from shapely.geometry import Polygon, box

    from napari_weakstil.bed_layer import rings_to_shapes, shapes_to_rings

    viewer = napari.Viewer(show=True, title="WeakSTIL in napari: correcting the tumour bed")
    viewer.window.resize(1500, 860)
    _, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    viewer.open(result_h5, plugin="napari-weakstil")
    viewer.scale_bar.visible = True
    viewer.scale_bar.unit = "um"
    viewer.reset_view()
    editor = widget.bed_editor
    layer = editor.edit_bed()
    before = editor.rescore()
    polygons, holes = shapes_to_rings(list(layer.data), list(layer.shape_type), list(layer.features["part"]))
    bed = shapely.union_all([Polygon(p) for p in polygons])
    minx, miny, maxx, maxy = bed.bounds
    kept = bed.difference(box(maxx - cut * (maxx - minx), miny, maxx, miny + 0.6 * (maxy - miny)))
    kept_rings = [np.asarray(g.exterior.coords)[:-1] for g in getattr(kept, "geoms", [kept])]
    data, parts = rings_to_shapes(kept_rings, holes)
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    layer.add_polygons(data)
    layer.selected_data = {int(np.argmax([Polygon(r).area for r in kept_rings]))}  # its vertices show
    after = editor.rescore()
    print(f"{result_h5.stem}: sTIL {before.stil:.1f} % with the scored bed ({before.n_bed_tiles} tiles) -> "
          f"{after.stil:.1f} % after the edit ({after.n_bed_tiles} tiles)")
    for _ in range(20):
        QApplication.processEvents()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out_png), canvas_only=False, flash=False)
    viewer.close()
    # a README picture: 256 colours keep it small
    Image.open(out_png).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(out_png, optimize=True)
    print(f"wrote {out_png} ({out_png.stat().st_size / 1e3:.0f} KB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=ROOT / ".bench" / "napari_demo",
                    help="a 'weakstil demo' output folder (made with --quick when missing)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    ap.add_argument("--only", choices=("all", "bed"), default="all", help="'bed': only napari_bed_edit.png")
    args = ap.parse_args()
    import napari_weakstil  # noqa: F401  (keeps Triton out of this GUI process before torch loads)

    if not (args.demo / "scores" / "results.csv").is_file():
        weakstil("demo", "--quick", "--out", args.demo)
    import pandas as pd

    # a larger synthetic slide than the demo's, with a high label, shows the heatmap's range
    showcase = args.demo / "showcase"
    if not (showcase / "labels.csv").is_file():
        weakstil("synth", showcase, "--slides", 4, "--seed", 21, "--size-mm", 3, 3)
    labels = pd.read_csv(showcase / "labels.csv")
    best = labels.sort_values("stil").iloc[-1]
    showcase_scores = args.demo / "showcase_scores"
    synthetic = showcase_scores / f"{best['slide_id']}.h5"
    if not synthetic.is_file():
        weakstil("score", showcase / best["path"], "--model", args.demo / "model", "--out", showcase_scores)
    print(f"{best['slide_id']}: label sTIL {best['stil']:.1f} %")
    if args.only == "bed":
        bed_edit_screenshot(synthetic, args.out / "napari_bed_edit.png")
        return
    cmu_scores = args.demo / "cmu_scores"
    if not (cmu_scores / "CMU-1-Small-Region.h5").is_file():
        weakstil("score", CMU, "--model", args.demo / "model", "--out", cmu_scores)
    screenshot(synthetic, args.out / "napari_synthetic.png", args.demo / "model")
    screenshot(cmu_scores / "CMU-1-Small-Region.h5", args.out / "napari_cmu.png", args.demo / "model")
    bed_edit_screenshot(synthetic, args.out / "napari_bed_edit.png")


if __name__ == "__main__":
    main()
