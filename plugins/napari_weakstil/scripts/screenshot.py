"""Screenshots of the WeakSTIL napari plugin for the README, made the way a user works.

1. ``weakstil demo --quick`` (unless ``--demo DIR`` already holds one, e.g. from ``make demo``):
   a synthetic cohort, a self-supervised encoder, a MIL model and a tumour-bed detector.
2. ``weakstil score`` with that model on a new 3 mm synthetic slide (the highest-label of four)
   and on the real CMU slide.
3. napari (a real window; run under ``xvfb-run`` on a headless machine): open a scored result
   file (its slide opens beside it), dock the scoring widget, click the highest-scoring tile,
   and save the whole window.

    xvfb-run -a -s "-screen 0 1700x1050x24" .venv/bin/python plugins/napari_weakstil/scripts/screenshot.py

Writes ``docs/images/napari_synthetic.png`` and ``docs/images/napari_cmu.png``.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=ROOT / ".bench" / "napari_demo",
                    help="a 'weakstil demo' output folder (made with --quick when missing)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
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
    cmu_scores = args.demo / "cmu_scores"
    if not (cmu_scores / "CMU-1-Small-Region.h5").is_file():
        weakstil("score", CMU, "--model", args.demo / "model", "--out", cmu_scores)
    screenshot(synthetic, args.out / "napari_synthetic.png", args.demo / "model")
    screenshot(cmu_scores / "CMU-1-Small-Region.h5", args.out / "napari_cmu.png", args.demo / "model")


if __name__ == "__main__":
    main()
