"""How close each slide's stain estimate comes to the synthetic generator's own stain vectors, and
how well the tile measurements made with it track the truth.

    .venv/bin/python benchmarks/stain_angles.py COHORT_DIR [COHORT_DIR ...] [--slides 40]

For every slide of each cohort (``weakstil synth`` folders: ``labels.csv`` and ``truth/*.h5``, whose
``style_h_vec``/``style_e_vec`` attributes are the vectors the slide was rendered with) it prints the
angle in degrees between the estimated and the true haematoxylin and eosin vectors, for

* ``tiles``: :func:`weakstil.stain.estimate_slide_stain` (the slide's own tissue tiles at 0.5 µm/px,
  the estimate the features use, stain estimate version 4);
* ``thumbnail``: the estimate before version 4 (the tissue of a 4 µm/px thumbnail read from the
  stored pyramid level, marker ink and its strokes' margin left out),

then the mean and the worst per cohort, the seconds each takes per slide, and the Pearson r between
the generator's per-tile stroma share and the tiles' colour-deconvolution ``stroma_estimate``
(:mod:`weakstil.tilestats`) made with each estimate (truth tiles with over half tissue; pooled over
the cohort's slides, and the mean of the per-slide r).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def angle(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def thumbnail_estimate(slide):
    """The estimate of stain estimate version 3 (the 4 µm/px thumbnail)."""
    from weakstil.stain import estimate_stain, stain_pixels
    from weakstil.tissue import TissueParams, detect_tissue

    mpp = max(4.0, float(slide.mpp))
    thumb = slide.read_thumbnail(mpp)
    try:
        tissue = detect_tissue(thumb, mpp, TissueParams())
    except Exception:
        tissue = None
    return estimate_stain(thumb, None if tissue is None else stain_pixels(thumb, mpp, tissue))


def main() -> None:
    import h5py
    import pandas as pd

    from weakstil.slide import Slide
    from weakstil.stain import estimate_slide_stain
    from weakstil.metrics import pearson
    from weakstil.tiles import find_tiles
    from weakstil.tilestats import COLUMNS, STROMA_COLUMN, batch_stats

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cohorts", nargs="+", type=Path)
    ap.add_argument("--slides", type=int, default=40, help="at most this many slides per cohort")
    args = ap.parse_args()
    from inputs import need

    for cohort in args.cohorts:
        need(cohort / "labels.csv", "cohort (labels.csv)", "a `weakstil synth` cohort folder (it has truth/)")
    for cohort in args.cohorts:
        labels = pd.read_csv(cohort / "labels.csv").head(args.slides)
        rows = []
        stroma: dict[str, list] = {"tiles": [], "thumb": []}
        for row in labels.itertuples():
            with h5py.File(cohort / "truth" / f"{row.slide_id}.h5") as f:
                true_h, true_e = np.asarray(f.attrs["style_h_vec"]), np.asarray(f.attrs["style_e_vec"])
                truth_tiles = {k: f["tiles"][k][:] for k in ("coords", "stroma_fraction", "tissue_fraction")}
            with Slide.open(cohort / row.path) as slide:
                tiles = find_tiles(slide)
                t0 = time.perf_counter()
                new = estimate_slide_stain(slide, tiles)
                t1 = time.perf_counter()
                old = thumbnail_estimate(slide)
                t2 = time.perf_counter()
                keep = truth_tiles["tissue_fraction"] > 0.5
                pixels = np.stack([slide.read_region(int(x), int(y), 224, 0.5) for x, y in truth_tiles["coords"][keep]])
            stroma_true = truth_tiles["stroma_fraction"][keep]
            for name, stain in (("tiles", new), ("thumb", old)):
                stroma[name].append((stroma_true, batch_stats(pixels, stain, 0.5)[:, COLUMNS.index(STROMA_COLUMN)]))
            rows.append({"slide": row.slide_id, "tiles_h": angle(new.he[:, 0], true_h), "tiles_e": angle(new.he[:, 1], true_e),
                         "thumb_h": angle(old.he[:, 0], true_h), "thumb_e": angle(old.he[:, 1], true_e),
                         "tiles_s": t1 - t0, "thumb_s": t2 - t1})
        df = pd.DataFrame(rows)
        print(f"{cohort} ({len(df)} slides): angle to the generator's vectors, degrees, mean (worst)")
        for method in ("thumb", "tiles"):
            print(f"  {method:>5}: H {df[f'{method}_h'].mean():5.2f} ({df[f'{method}_h'].max():5.1f})  "
                  f"E {df[f'{method}_e'].mean():5.2f} ({df[f'{method}_e'].max():5.1f})  "
                  f"{df[f'{method}_s'].mean():.3f} s/slide  stroma r pooled "
                  f"{pearson(*(np.concatenate(v) for v in zip(*stroma[method]))):.3f}, per slide "
                  f"{np.mean([pearson(a, b) for a, b in stroma[method]]):.3f}")
        worst = df.assign(gap=df["tiles_e"] - df["thumb_e"]).sort_values("gap").iloc[[0, -1]]
        print("  largest eosin change either way:", "; ".join(
            f"{r.slide} {r.thumb_e:.1f} -> {r.tiles_e:.1f}" for r in worst.itertuples()))


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
