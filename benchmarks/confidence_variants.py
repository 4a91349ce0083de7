"""Interval variants on already scored held-out slides, without scoring again (same MIL model).

    .venv/bin/python benchmarks/confidence_variants.py --cache .bench/confidence test_default test_alt test_hard

Reads what ``benchmarks/confidence.py`` left in ``--cache`` (the model's out-of-fold slides in
``MODEL/qc/training_slides.csv``, each scored slide's HDF5 attributes: tile standard error, fold
models' scores, OOD score, image statistics) and recomputes every slide's 90 % interval with the
shift weight ``β`` fitted (what ``weakstil train`` stores) or fixed, the shift from embeddings and
stain or from embeddings only, with or without the fold models' spread. Prints, per variant and
cohort, coverage, median width and the share of intervals containing the threshold (near_threshold).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def scored(cache: Path, model: str, name: str, ref: dict, median_distance: float, stain_ref: dict) -> pd.DataFrame:
    from weakstil.files import SlideScoresFile, slide_file
    from weakstil.qc.image import ImageStats
    from weakstil.qc.shift import slide_shift, slide_shift_from_stats

    out = cache / "scores" / f"{model}--{name}"
    res = pd.read_csv(out / "results.csv")
    lab = pd.read_csv(cache / "cohorts" / name / "labels.csv")[["slide_id", "stil"]].rename(columns={"stil": "truth"})
    df = res.merge(lab, on="slide_id")
    df = df[df["status"] == "ok"].copy()
    rows = []
    for sid in df["slide_id"]:
        a, _ = SlideScoresFile.read_header(slide_file(out, sid))
        img = ImageStats.from_dict(json.loads(a["image_stats"])) if "image_stats" in a else None
        dist = float(a["ood_score"]) * median_distance
        rows.append({"slide_id": sid, "tile_se": a.get("tile_standard_error", math.nan),
                     "folds": json.loads(a.get("fold_stils", "[]")),
                     "shift": slide_shift_from_stats(ref, dist, img, stain_ref),
                     "shift_embedding": slide_shift(ref, embedding_distance=dist)})
    return df.merge(pd.DataFrame(rows), on="slide_id")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "confidence")
    ap.add_argument("--model", default="train_default")
    ap.add_argument("--threshold", type=float, default=30.0)
    ap.add_argument("cohorts", nargs="+")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from safetensors import safe_open

    from weakstil.confidence import Calibration, calibrate, coverage, slide_uncertainty
    from weakstil.modeldir import ModelDir

    folder = ModelDir(args.cache / "models" / args.model)
    stored = Calibration.from_dict(json.loads(folder.calibration_path.read_text()))
    ref = stored.shift_reference
    with safe_open(str(folder.embeddings_path), "numpy") as f:
        median_distance = float((f.metadata() or {})["median_distance"])
    stain_ref = json.loads(folder.qc_reference_path.read_text())["image"]["stain"]
    t = pd.read_csv(folder.qc_slides_path)
    y, p = t["stil_true"].to_numpy(float), t["stil_pred_oof"].to_numpy(float)
    se = t["tile_standard_error"].fillna(0).to_numpy(float)
    oof_shift = {"shift": t["shift"].to_numpy(float),
                 "shift_embedding": np.clip(t["embedding_distance_lgo"] / ref["embedding_distance"] - 1, 0, None).to_numpy()}
    data = {n: scored(args.cache, args.model, n, ref, median_distance, stain_ref) for n in args.cohorts}
    print(f"stored: offset {stored.offset:g}, β {stored.shift_weight:g} (fitted {stored.shift_weight_fitted:g})")
    print("| variant | β | " + " | ".join(f"{n} coverage / width / near_threshold" for n in data) + " |")
    print("|" + "---|" * (len(data) + 2))
    for which in ("shift", "shift_embedding"):
        for beta in (None, 0.0, 1.0, 2.0):
            for folds in (True, False):
                cal = calibrate(y, p, se, shift=oof_shift[which], shift_weight=beta, offset=stored.offset)
                cells = []
                for df in data.values():
                    st = df["stil"].to_numpy(float)
                    u = np.array([slide_uncertainty(s, e, f if folds else None, cal.offset)
                                  for s, e, f in zip(st, df["tile_se"], df["folds"])])
                    lo, hi = cal.interval(st, u, df[which].to_numpy(float))
                    near = np.mean((lo < args.threshold) & (args.threshold <= hi))
                    cells.append(f"{100 * coverage(df['truth'], lo, hi):.0f}% / {np.median(hi - lo):.1f} / "
                                 f"{100 * near:.0f}% (shift {np.median(df[which]):.2f})")
                name = f"{'embedding+stain' if which == 'shift' else 'embedding'} shift, "
                name += "with fold spread" if folds else "no fold spread"
                print(f"| {name} | {'fitted ' + format(cal.shift_weight, 'g') if beta is None else format(beta, 'g')} | "
                      + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
