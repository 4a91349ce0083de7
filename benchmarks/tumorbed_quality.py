"""Tumour-bed quality on a synthetic cohort with exact truth.

    .venv/bin/python benchmarks/tumorbed_quality.py [--slides 40] [--train-slides 10]

Shares the cohort, pretrained encoder and feature caches of ``benchmarks/accuracy.py``
(``.bench/accuracy/``), so running either first makes the other quick.

1. Trains the tumour-bed detector (`weakstil.tumorbed`) on the generator's GeoJSON outlines of
   the first ``--train-slides`` slides (at most 10, as the issue asks).
2. Dice of the detected bed against the truth mask on every other (held-out) slide, next to
   the Dice of the whole tissue (what you get without tumour-bed detection).
3. Slide sTIL% R² (cross-validated MIL, mean aggregator) when the tumour-bed tiles come from
   the truth, from the detector, or from the whole tissue.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
log = logging.getLogger("tumorbed")


def main() -> None:
    import accuracy as acc  # the accuracy benchmark's cached cohort / encoder / features

    from weakstil.files import FeaturesFile
    from weakstil.tissue import dice
    from weakstil.synth import read_truth
    from weakstil.tumorbed import BedSources, SlideGeometry, train_tumorbed_from_cache, whole_tissue

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=40)
    ap.add_argument("--train-slides", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size-mm", type=float, nargs=2, default=(2.5, 2.5))
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--pretrain-slides", type=int, default=40)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "accuracy")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("weakstil.mil", "weakstil.train", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    size = tuple(args.size_mm)
    tag = f"s{args.seed}-{size[0]:g}x{size[1]:g}mm"
    full_csv = acc.make_cohort(args.cache, args.slides, args.seed, size)
    table = pd.read_csv(full_csv).iloc[: args.slides]
    cohort_dir = full_csv.parent
    csv = cohort_dir / f"labels-{args.slides}.csv"
    table.to_csv(csv, index=False)
    slides = [cohort_dir / p for p in table["path"]]
    enc_dir = acc.pretrained_encoder_dir(args.cache, slides[: args.pretrain_slides], args.pretrain_steps,
                                         args.seed, tag)
    features = acc.embed_all(slides, enc_dir, None, args.cache / f"features-{enc_dir.name}-{tag}")

    ids = table["slide_id"].tolist()
    train_ids = ids[: min(args.train_slides, 10)]
    t0 = time.perf_counter()
    detector = train_tumorbed_from_cache(features, cohort_dir / "truth", slide_ids=train_ids, seed=args.seed)
    train_s = time.perf_counter() - t0

    from skimage.transform import resize

    rows = []
    detected_masks, truth_masks, tissue_masks = {}, {}, {}
    for sid in ids:
        data = FeaturesFile.read(features / f"{sid}.h5")
        geom = SlideGeometry.from_file(data)
        bed = detector.detect(np.asarray(data.features), geom)
        truth_bed = read_truth(cohort_dir / "truth" / f"{sid}.h5")[0].tumorbed.astype(np.float32)
        truth = resize(truth_bed, bed.mask.shape, order=1, anti_aliasing=True) > 0.5
        tissue = whole_tissue(geom)
        rows.append({"slide_id": sid, "held_out": sid not in train_ids, "dice_detected": dice(bed.mask, truth),
                     "dice_whole_tissue": dice(tissue.mask, truth)})
        detected_masks[sid] = bed.tile_flags
        tissue_masks[sid] = tissue.tile_flags
        truth_masks[sid] = BedSources(annotations=cohort_dir / "truth").resolve(sid, data).tile_flags
    per_slide = pd.DataFrame(rows)
    held = per_slide[per_slide["held_out"]]

    from weakstil.metrics import mae, pearson, r2_score
    from weakstil.mil.config import TrainConfig
    from weakstil.train import train_cohort

    r2_rows = []
    for name, masks in (("truth (annotation)", truth_masks), ("detected", detected_masks),
                        ("whole tissue", tissue_masks)):
        out = args.cache / "runs" / f"tumorbed-{args.slides}-{tag}" / name.split()[0]
        train_cohort(csv, features, out, TrainConfig(epochs=args.epochs, seed=args.seed), n_folds=args.folds,
                     overwrite=True, tumorbeds=masks)
        oof = pd.read_csv(out / "cv" / "oof_predictions.csv")
        t, p = oof["stil_true"].to_numpy(), oof["stil_pred"].to_numpy()
        r2_rows.append((name, r2_score(t, p), pearson(t, p), mae(t, p)))

    print(f"\n## Tumour-bed detector: trained on {len(train_ids)} annotated slides ({train_s:.0f} s), "
          f"{len(held)} held-out slides ({args.slides} x {size[0]:g} mm, seed {args.seed})\n")
    print("| tumour bed | Dice vs truth, held-out mean | min | median |\n|---|---|---|---|")
    for col, label in (("dice_detected", "detected"), ("dice_whole_tissue", "whole tissue")):
        v = held[col].to_numpy()
        print(f"| {label} | {v.mean():.3f} | {v.min():.3f} | {np.median(v):.3f} |")
    print(f"\nleave-one-slide-out Dice on the training slides (chooses the post-processing): "
          f"{detector.meta['cv_dice']:.3f}; smoothing {detector.post.smooth_um:g} µm, threshold "
          f"{detector.post.threshold:g}\n")
    print("| tumour-bed tiles for MIL (train and score) | slide R² (CV) | Pearson | MAE |\n|---|---|---|---|")
    for name, r2, r, m in r2_rows:
        print(f"| {name} | {r2:.3f} | {r:.3f} | {m:.2f} |")
    target = held["dice_detected"].mean()
    print(f"\nheld-out Dice {target:.3f} -> {'PASS' if target >= 0.9 else 'FAIL'} (target >= 0.9)")


if __name__ == "__main__":
    main()
