"""The colour-deconvolution rule: a non-learned sTIL% baseline, and how it fares on synthetic cohorts.

    .venv/bin/python benchmarks/colour_rule.py --slides 48 --hard            # hard cohort, 4 centres
    .venv/bin/python benchmarks/colour_rule.py --slides 48                   # default look
    .venv/bin/python benchmarks/colour_rule.py --slides 48 --look alt        # the other look
    .venv/bin/python benchmarks/colour_rule.py --slides 48 --hard --look alt

The rule (``benchmarks/accuracy.py`` imports it from here):

1. ``tile_counts``: per tile, at 1 µm/px, skimage ``rgb2hed``; lymphocyte pixels = very high
   haematoxylin (above the top class of a 3-class Otsu on the tissue and at least 55 % of its
   99.9th percentile), opened with a 2 µm disk; stroma pixels = tissue of low haematoxylin and
   high eosin;
2. ``slide_ratio``: 100 * L / (L + S) summed over the slide's tumour-bed tiles (exact beds from
   the truth: tiles with >= 50 % bed);
3. ``calibrate_oof``: a linear map ratio -> sTIL% fitted on the training folds of a CV split and
   applied to the held-out fold (clipped to 0..100).

The script generates the cohort (``weakstil.synth.generate_cohort``, reused when it exists,
timed), applies the rule and prints the out-of-fold R² for a random 5-fold split by slide and for
leave-centre-out. Issue 13 asks that the rule fall to R² <= 0.6 on hard cohorts (it reaches
about 0.97 on the default look).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("colour_rule")

__all__ = ["calibrate_oof", "slide_ratio", "tile_counts", "tile_scores", "truth_bed_tiles"]


def tile_counts(slide_path: Path, coords: np.ndarray, tile_size_level0: float, mpp: float = 1.0) -> np.ndarray:
    """(lymphocyte px, stroma px) per tile from colour deconvolution at ``mpp`` µm/px.

    Lymphocytes: pixels of very high haematoxylin (above the top class of a 3-class Otsu on the
    tissue, and at least 55% of its 99.9th percentile), opened with a 2 µm disk so thin dark
    specks (chromatin, fibroblast edges) go. Stroma: tissue of low haematoxylin and high eosin.
    """
    from skimage.color import rgb2hed
    from skimage.filters import threshold_multiotsu, threshold_otsu
    from skimage.morphology import disk, opening

    from weakstil.slide import Slide

    with Slide.open(slide_path) as s:
        img = s.read_thumbnail(mpp)
        scale = s.mpp / mpp  # thumbnail px per level-0 px
    hed = rgb2hed(img)
    h, e = hed[..., 0], hed[..., 1]
    tissue = img.astype(np.int32).sum(-1) < 3 * 215
    if tissue.sum() < 100:
        return np.zeros((len(coords), 2))
    t1, t2 = threshold_multiotsu(h[tissue], classes=3)
    q = float(np.quantile(h[tissue], 0.999))
    lymph = opening(h > max(t2, 0.55 * q), disk(max(1, round(2.0 / mpp)))) & tissue
    low = tissue & (h < t1)
    stroma = low & (e > threshold_otsu(e[low]))
    side = tile_size_level0 * scale
    out = np.zeros((len(coords), 2))
    L, S = np.cumsum(np.cumsum(np.pad(lymph, ((1, 0), (1, 0))), 0), 1), \
        np.cumsum(np.cumsum(np.pad(stroma, ((1, 0), (1, 0))), 0), 1)
    for k, (x, y) in enumerate(coords):
        x0, y0 = int(round(x * scale)), int(round(y * scale))
        x1, y1 = min(x0 + int(round(side)), h.shape[1]), min(y0 + int(round(side)), h.shape[0])
        for j, cs in enumerate((L, S)):
            out[k, j] = cs[y1, x1] - cs[y0, x1] - cs[y1, x0] + cs[y0, x0]
    return out


def slide_ratio(counts: np.ndarray, mask: np.ndarray | None = None) -> float:
    """100 * lymphocyte / (lymphocyte + stroma) pixels over the selected tiles."""
    sel = counts if mask is None else counts[np.asarray(mask, bool)]
    lymph, stroma = sel.sum(0) if len(sel) else (0.0, 0.0)
    return 100.0 * float(lymph) / max(float(lymph + stroma), 1.0)


def calibrate_oof(ratio: np.ndarray, y: np.ndarray, folds: np.ndarray) -> tuple[np.ndarray, dict[int, tuple]]:
    """Out-of-fold predictions of a linear calibration ratio -> sTIL% fitted on the other folds."""
    ratio, y = np.asarray(ratio, float), np.asarray(y, float)
    pred = np.zeros_like(y)
    coef: dict[int, tuple[float, float]] = {}
    for k in np.unique(folds):
        tr, te = folds != k, folds == k
        a, b = np.polyfit(ratio[tr], y[tr], 1)
        pred[te] = np.clip(a * ratio[te] + b, 0, 100)
        coef[int(k)] = (float(a), float(b))
    return pred, coef


def tile_scores(counts: np.ndarray, coef: tuple[float, float]) -> np.ndarray:
    """Per-tile sTIL% of the rule with a fold's calibration."""
    a, b = coef
    lymph, stroma = counts[:, 0], counts[:, 1]
    return np.clip(a * 100 * lymph / np.maximum(lymph + stroma, 1.0) + b, 0, 100)


def truth_bed_tiles(truth_h5: Path, min_bed: float = 0.5) -> tuple[np.ndarray, float]:
    """Level-0 coordinates of the truth grid's tumour-bed tiles, and the tile side (level-0 px)."""
    import h5py

    with h5py.File(truth_h5, "r") as f:
        t = f["tiles"]
        coords = t["coords"][:]
        bed = t["tumorbed_fraction"][:] >= min_bed
        return coords[bed], float(t.attrs["tile_size_level0"])


# --- benchmark -------------------------------------------------------------------------------


def evaluate(cohort: Path, cache: Path, seed: int = 0) -> dict[str, object]:
    """The rule's out-of-fold R² on a cohort (random 5-fold by slide, leave-centre-out)."""
    import pandas as pd

    from weakstil.cohort import group_kfold
    from weakstil.metrics import r2_score, roc_auc

    table = pd.read_csv(cohort / "labels.csv")
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ratios = []
    for sid, path in zip(table["slide_id"], table["path"]):
        coords, side = truth_bed_tiles(cohort / "truth" / f"{sid}.h5")
        stored = cache / f"{sid}.npy"
        if stored.exists() and stored.stat().st_mtime >= (cohort / path).stat().st_mtime:
            counts = np.load(stored)
        else:
            counts = tile_counts(cohort / path, coords, side)
            np.save(stored, counts)
        ratios.append(slide_ratio(counts))
    secs = time.perf_counter() - t0
    ratio, y = np.array(ratios), table["stil"].to_numpy(float)
    groups = table["group"].astype(str).to_numpy()
    out: dict[str, object] = {"n": len(y), "rule_seconds": secs,
                              "pearson_ratio": float(np.corrcoef(ratio, y)[0, 1])}
    for name, folds in (("random 5-fold", group_kfold(table["slide_id"].to_numpy(), 5, seed=seed)),
                        ("leave-centre-out", group_kfold(groups, len(set(groups)), seed=seed))):
        pred, _ = calibrate_oof(ratio, y, folds)
        out[name] = {"r2": r2_score(y, pred), "auc30": roc_auc(y >= 30, pred)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size-mm", type=float, nargs=2, default=(2.5, 2.5))
    ap.add_argument("--groups", type=int, default=4)
    ap.add_argument("--hard", action="store_true", help="real-tissue confounders (weakstil synth --hard)")
    ap.add_argument("--look", default="default", help="appearance family (default, alt)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "colour_rule")
    args = ap.parse_args()
    if args.slides < 5 or not 2 <= args.groups <= args.slides:
        # the random 5-fold and leave-centre-out splits; it failed after making the cohort, its fix naming
        # --folds / --group-column, which this script does not have
        ap.error(f"--slides {args.slides} --groups {args.groups}: the random 5-fold split needs 5 slides or more, "
                 "leave-centre-out 2 centres or more (at most one a slide); e.g. --slides 8 --groups 2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from weakstil.synth import generate_cohort

    size = tuple(args.size_mm)
    name = f"synth-s{args.seed}-{size[0]:g}x{size[1]:g}mm-{args.slides}-g{args.groups}-{args.look}" + \
        ("-hard" if args.hard else "")
    cohort = args.cache / name
    t0 = time.perf_counter()
    generate_cohort(cohort, args.slides, args.seed, size_mm=size, n_groups=args.groups, hard=args.hard,
                    look=args.look, progress=False)
    gen = time.perf_counter() - t0
    res = evaluate(cohort, args.cache / f"{name}-counts", seed=args.seed)
    res.update({"cohort": str(cohort), "generate_seconds": gen, "hard": args.hard, "look": args.look})
    (args.cache / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    print(f"colour rule on {args.slides} slides ({size[0]:g} mm, {args.groups} centres, look {args.look}"
          f"{', hard' if args.hard else ''}): generation {gen:.0f} s (0 if cached), rule {res['rule_seconds']:.0f} s")
    print(f"  Pearson(ratio, sTIL) {res['pearson_ratio']:.3f}")
    for split in ("random 5-fold", "leave-centre-out"):
        r = res[split]
        print(f"  {split}: R² {r['r2']:.3f}, AUC@30 {r['auc30']:.3f}")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
