"""Is the 90 % interval's width honest slide by slide? Coverage, width and near_threshold of scored held-out cohorts.

    PYTHONPATH=. .venv/bin/python benchmarks/interval_by_slide.py --model MODEL \\
        default=SCORED_DIR:LABELS_CSV alt=SCORED_DIR:LABELS_CSV hard=SCORED_DIR:LABELS_CSV \\
        [--reweight-labels ../shared/data/labels/tcga_bc_tils.csv]

Each cohort: a ``weakstil score`` output folder (``results.csv`` and the slides' HDF5) and the
cohort's ``labels.csv`` (``slide_id``, ``stil``: a ``weakstil synth`` cohort's truth). Prints:

1. per cohort: MAE, coverage, median width, the share of slides flagged ``near_threshold`` (and
   re-weighted to a real label mix with ``--reweight-labels``, bins of the true sTIL% as in
   ``benchmarks/confidence_variants.py``), the share with another flag, and the coverage per
   sTIL band (< 10, 10-30, >= 30 %);
2. per cohort, the slides in thirds of each per-slide quantity the width could follow: the tile
   standard error (in the scale), the fold models' spread within a fold (not in the scale: the
   out-of-fold residuals hold it) and the tumour-bed tile count: coverage, median width, MAE, and
   median width / MAE. An honest per-slide width keeps coverage and width / MAE flat across the
   thirds (wider where the errors are larger);
3. the interval with the tile standard error's weight in the scale ``sqrt(σ0² + (λ·u)²)`` at
   λ = 1 (as stored), 0.5 and 0, calibrated again on the model's out-of-fold slides
   (``MODEL/qc/training_slides.csv``, ``c`` and ``β`` chosen again as ``weakstil train`` does),
   with the mean interval score (width + 20 × miss, lower is better) of the held-out slides and of
   the out-of-fold slides leave-one-out.

Reads only; nothing is scored again.
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
BANDS = ((0.0, 10.0, "<10"), (10.0, 30.0, "10-30"), (30.0, 101.0, ">=30"))
LABEL_BINS = (0.0, 5.0, 10.0, 20.0, 30.0, 40.0, 60.0, 100.01)


def load(scored: Path, labels: Path, fold_of: np.ndarray) -> pd.DataFrame:
    """The scored slides with their truth; ``fold_of``: the fold of each of the model's fold models, in the
    order of the slides' ``fold_stils``."""
    from weakstil.files import SlideScoresFile, slide_file

    res = pd.read_csv(scored / "results.csv", keep_default_na=False, na_values=[""])
    lab = pd.read_csv(labels)[["slide_id", "stil"]].rename(columns={"stil": "truth"})
    df = res.merge(lab, on="slide_id")
    df = df[(df["status"] == "ok") & df["stil_lower_90"].notna()].copy()
    if df.empty:  # a KeyError traceback from the merge below
        raise SystemExit(f"error: {scored}: no slide of {labels} scored ok with a 90 % interval. Fix: score with a "
                         "model that has one (trained with cross-validation on 9 or more out-of-fold slides)")
    rows = []
    for sid in df["slide_id"]:
        a, _ = SlideScoresFile.read_header(slide_file(scored, sid))
        folds = np.asarray(json.loads(a.get("fold_stils", "[]")), float)
        # the members' spread within each fold (root mean variance); NaN without several members a fold
        var = [folds[fold_of == k].var(ddof=1) for k in np.unique(fold_of) if (fold_of == k).sum() > 1] \
            if len(folds) == len(fold_of) else []
        within = float(np.sqrt(np.mean(var))) if var else math.nan
        rows.append({"slide_id": sid, "tile_se": float(a.get("tile_standard_error", math.nan)),
                     "tile_df": float(a.get("tile_standard_error_df", math.nan)),
                     "bed_sd": float(a.get("interval_bed_outline_sd", 0.0)),
                     "shift": float(a.get("interval_shift", 0.0)), "fold_spread": within})
    df = df.merge(pd.DataFrame(rows), on="slide_id")
    df["inside"] = (df["truth"] >= df["stil_lower_90"]) & (df["truth"] <= df["stil_upper_90"])
    df["width"] = df["stil_upper_90"] - df["stil_lower_90"]
    df["err"] = (df["stil"] - df["truth"]).abs()
    return df


def near(low: np.ndarray, high: np.ndarray, threshold: float) -> np.ndarray:
    return (np.round(low, 4) < threshold) & (threshold <= np.round(high, 4))


def label_weights(truth: np.ndarray, real: np.ndarray) -> np.ndarray:
    cohort_bin = np.clip(np.digitize(truth, LABEL_BINS) - 1, 0, len(LABEL_BINS) - 2)
    real_share = np.histogram(np.clip(real, 0, 100), LABEL_BINS)[0].astype(float)
    counts = np.bincount(cohort_bin, minlength=len(LABEL_BINS) - 1).astype(float)
    real_share[counts == 0] = 0.0
    w = (real_share / real_share.sum())[cohort_bin] / counts[cohort_bin]
    return w / w.sum()


def interval_score(y, low, high) -> float:
    return float(np.mean(high - low + 20.0 * (np.clip(low - y, 0, None) + np.clip(y - high, 0, None))))


def variant(oof: pd.DataFrame, lam: float):
    """The stored calibration's method with the tile standard error weighted by ``lam``: the calibration and
    the out-of-fold slides' leave-one-out interval score."""
    from weakstil.confidence import calibrate, conformal_quantile, from_scale, scale_sd, to_scale

    y, p = oof["stil_true"].to_numpy(float), oof["stil_pred_oof"].to_numpy(float)
    se, df = oof["tile_standard_error"].fillna(0).to_numpy(float) * lam, oof["tile_standard_error_df"].to_numpy(float)
    sh = oof["shift"].to_numpy(float)
    cal = calibrate(y, p, se, shift=sh, tile_df=df)
    sig = cal.sigma(scale_sd(p, cal.widened_se(se, df), cal.offset), sh)
    nonconf = np.abs(to_scale(y, cal.offset) - to_scale(p, cal.offset)) / sig
    lo, hi = np.empty(len(y)), np.empty(len(y))
    for i in range(len(y)):
        half = conformal_quantile(np.delete(nonconf, i), cal.level) * sig[i]
        t = to_scale(p[i], cal.offset)
        lo[i], hi[i] = from_scale(t - half, cal.offset), from_scale(t + half, cal.offset)
    return cal, interval_score(y, lo, hi)


def rescored(d: pd.DataFrame, cal, lam: float) -> tuple[np.ndarray, np.ndarray]:
    from weakstil.confidence import scale_sd

    s = d["stil"].to_numpy(float)
    u_tile = scale_sd(s, cal.widened_se(d["tile_se"].fillna(0).to_numpy(float) * lam, d["tile_df"].to_numpy(float)),
                      cal.offset)
    u = np.hypot(u_tile, scale_sd(s, d["bed_sd"].fillna(0).to_numpy(float), cal.offset))
    return cal.interval(s, u, d["shift"].to_numpy(float))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--threshold", type=float, default=30.0)
    ap.add_argument("--reweight-labels", type=Path, default=None, help="CSV of real sTIL%% (column --label-column)")
    ap.add_argument("--label-column", default="tils_score")
    ap.add_argument("cohorts", nargs="+", help="NAME=SCORED_DIR:LABELS_CSV")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from inputs import need, need_model

    need_model(args.model)
    for spec in args.cohorts:
        name, _, rest = spec.partition("=")
        scored, _, labels = rest.partition(":")
        if not (name and scored and labels):
            raise SystemExit(f"error: {spec!r}: not NAME=SCORED_DIR:LABELS_CSV. Fix: e.g. "
                             "default=out/scores:cohort/labels.csv")
        need(Path(scored) / "results.csv", f"{name}'s `weakstil score` results", "score the cohort's slides "
             "with this model first: `weakstil score --slides LABELS_CSV --model MODEL --out SCORED_DIR`")
        need(labels, f"{name}'s labels CSV", "a `weakstil synth` cohort's labels.csv (slide_id, stil)")
    if args.reweight_labels:
        need(args.reweight_labels, "--reweight-labels CSV", "e.g. ../shared/data/labels/tcga_bc_tils.csv")
    meta = json.loads((args.model / "model.json").read_text())
    fold_of = np.array([int(e.get("fold", 0)) for e in meta.get("folds") or []])
    data = {}
    for spec in args.cohorts:
        name, _, rest = spec.partition("=")
        scored, _, labels = rest.partition(":")
        data[name] = load(Path(scored), Path(labels), fold_of)
    real = pd.read_csv(args.reweight_labels)[args.label_column].to_numpy(float) if args.reweight_labels else None
    thr = args.threshold

    print("| cohort | n | MAE | coverage | median width | near_threshold | (re-weighted) | other flags | "
          + " | ".join(f"coverage {b[2]}" for b in BANDS) + " |")
    print("|" + "---|" * (8 + len(BANDS)))
    for name, d in data.items():
        nt = near(d["stil_lower_90"].to_numpy(), d["stil_upper_90"].to_numpy(), thr)
        other = d["qc"].fillna("").map(lambda q: any(f and f != "near_threshold" for f in str(q).split(";")))
        rew = f"{100 * float(label_weights(d['truth'].to_numpy(), real) @ nt):.0f} %" if real is not None else ""
        bands = [d[(d["truth"] >= lo) & (d["truth"] < hi)] for lo, hi, _ in BANDS]
        print(f"| {name} | {len(d)} | {d['err'].mean():.1f} | {100 * d['inside'].mean():.0f} % | "
              f"{d['width'].median():.1f} | {100 * nt.mean():.0f} % | {rew} | {100 * other.mean():.0f} % | "
              + " | ".join(f"{100 * b['inside'].mean():.0f} % ({len(b)})" if len(b) else "" for b in bands) + " |")

    print("\nthirds of each per-slide quantity: coverage / median width / MAE / width÷MAE")
    print("| cohort | by | low third | middle third | high third |\n|---|---|---|---|---|")
    for name, d in data.items():
        for col in ("tile_se", "fold_spread", "n_tumorbed_tiles"):
            if not d[col].notna().all():
                continue
            third = pd.qcut(d[col].rank(method="first"), 3, labels=False)
            cells = []
            for k in range(3):
                g = d[third == k]
                cells.append(f"{100 * g['inside'].mean():.0f} % / {g['width'].median():.1f} / {g['err'].mean():.1f} / "
                             f"{g['width'].median() / max(g['err'].mean(), 1e-9):.1f}")
            print(f"| {name} | {col} | " + " | ".join(cells) + " |")

    from weakstil.modeldir import ModelDir

    oof = pd.read_csv(ModelDir(args.model).qc_slides_path)
    print("\ntile standard error's weight λ in the scale (calibrated again on the out-of-fold slides): coverage / "
          "median width / near_threshold / interval score; out-of-fold leave-one-out interval score")
    print("| λ | c | β | q | " + " | ".join(data) + " | out-of-fold (LOO) |\n|" + "---|" * (len(data) + 5))
    for lam in (1.0, 0.5, 0.0):
        cal, loo = variant(oof, lam)
        cells = []
        for d in data.values():
            lo, hi = rescored(d, cal, lam)
            y = d["truth"].to_numpy(float)
            cells.append(f"{100 * np.mean((y >= lo - 1e-9) & (y <= hi + 1e-9)):.0f} % / {np.median(hi - lo):.1f} / "
                         f"{100 * near(lo, hi, thr).mean():.0f} % / {interval_score(y, lo, hi):.1f}")
        print(f"| {lam:g} | {cal.offset:g} | {cal.shift_weight:g} | {cal.q:.2f} | " + " | ".join(cells)
              + f" | {loo:.1f} |")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
