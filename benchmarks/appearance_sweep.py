"""Accuracy on looks nobody tuned on: held-out slides re-rendered by appearance transforms.

    .venv/bin/python benchmarks/appearance_sweep.py --model DEMO/model --train-truth DEMO/cohort/truth \\
        --cohort COHORT --work WORK [--only hue,dim] [--slides 16]

Another lab's slides differ in stain hue and balance, brightness (white point), saturation, an aged
mount's yellow or another scanner's white balance, focus, sensor noise, compression, sharpening and
native resolution. Each transform below re-renders every held-out slide's level-0 pixels (glass
too, as a scanner would) at two strengths and writes a new pyramidal TIFF beside the same truth;
``weakstil score`` (exact beds from the truth's annotations, so only appearance differs) scores it
with the model, and the colour-deconvolution rule (``benchmarks/colour_rule.py``, linearly
calibrated on the model's training slides) scores the same slides. Printed per transform: slide R²,
MAE, 90 % interval coverage, share of slides with an appearance qc flag (any flag but
``near_threshold`` and the training-label ones), and the rule's R² / MAE. The transformed cohorts and
scores are kept under WORK (a condition is redone only when its scores are missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: Flags that say nothing about a slide's appearance (left out of the qc rate).
NOT_APPEARANCE = {"near_threshold", "above_training_labels", "below_training_labels"}


# --- transforms (uint8 RGB level 0 -> uint8 RGB) ----------------------------------------------


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def hue(img, deg):
    """Rotate the chroma plane (YIQ) by ``deg`` degrees: a stain of another hue."""
    m = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    a = np.radians(deg)
    r = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    t = np.linalg.inv(m) @ r @ m
    return _clip(img.astype(np.float32) @ t.T.astype(np.float32))


def he_balance(img, k):
    """Haematoxylin concentration x ``k`` against eosin, in optical density (the slide's own
    Macenko vectors): a lab that stains haematoxylin stronger (k > 1) or weaker (k < 1)."""
    from weakstil.stain import IO, estimate_stain

    step = max(1, img.shape[0] // 600)
    st = estimate_stain(img[::step, ::step])
    od = -np.log((img.astype(np.float32) + 1.0) / IO)
    c = od.reshape(-1, 3) @ np.linalg.pinv(st.he).T.astype(np.float32)
    od = od.reshape(-1, 3) + (k - 1.0) * np.maximum(c[:, :1], 0) * st.he[:, 0].astype(np.float32)[None]
    return _clip(IO * np.exp(-od) - 1.0).reshape(img.shape)


def dim(img, f):
    """Exposure x ``f``: the glass, too, is darker than white (another scanner's white point)."""
    return _clip(img.astype(np.float32) * f)


def gamma(img, g):
    return _clip(255.0 * (img.astype(np.float32) / 255.0) ** g)


def desat(img, s):
    """Saturation x ``s`` (towards the pixel's luminance): faded stain, a washed-out scan."""
    f = img.astype(np.float32)
    y = f @ np.array([0.299, 0.587, 0.114], np.float32)
    return _clip(y[..., None] + s * (f - y[..., None]))


def cast(img, gains):
    """Per-channel gains: a yellow (aged mount, warm white balance) or blue cast."""
    return _clip(img.astype(np.float32) * np.asarray(gains, np.float32))


def blur(img, sigma):
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigma)


def noise(img, sd):
    rng = np.random.default_rng(0)
    return _clip(img.astype(np.float32) + rng.normal(0, sd, img.shape).astype(np.float32))


def sharpen(img, amount, sigma=1.5):
    """An unsharp mask of ``amount`` at ``sigma`` px (1.5 px: 0.75 µm at 0.5 µm/px, the width
    ``weakstil.unsharp`` undoes)."""
    import cv2

    f = img.astype(np.float32)
    return _clip(f + amount * (f - cv2.GaussianBlur(f, (0, 0), sigma)))


def sharpen_wide(img, amount):
    """An unsharp mask at sigma 2 px (1 µm): wider than the one ``weakstil.unsharp`` assumes."""
    return sharpen(img, amount, 2.0)


def lowres(img, k):
    """Scanned at ``k`` x coarser and resampled up to the stated resolution."""
    import cv2

    h, w = img.shape[:2]
    small = cv2.resize(img, (w // k, h // k), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


#: name -> (function, (mild, strong)); ``jpeg`` is the quality the slide is written with.
TRANSFORMS = {
    "hue": (hue, (15.0, 30.0)),
    "h_strong": (he_balance, (1.4, 2.0)),
    "h_weak": (he_balance, (0.7, 0.45)),
    "dim": (dim, (0.88, 0.75)),
    "gamma": (gamma, (1.4, 0.65)),
    "desat": (desat, (0.6, 0.3)),
    "yellow": (cast, ((1.0, 0.97, 0.85), (1.0, 0.93, 0.7))),
    "blue": (cast, ((0.88, 0.95, 1.0), (0.75, 0.88, 1.0))),
    "blur": (blur, (1.0, 2.0)),
    "noise": (noise, (6.0, 14.0)),
    "jpeg": (None, (40, 12)),
    "sharpen": (sharpen, (1.0, 2.5)),
    "sharpen_wide": (sharpen_wide, (1.0, 2.5)),
    "lowres": (lowres, (2, 4)),
}


def conditions(only: list[str] | None) -> list[tuple[str, str, object]]:
    out = [("identity", "-", None)]
    for name in only or TRANSFORMS:  # in the order asked
        for label, s in zip(("mild", "strong"), TRANSFORMS[name][1]):
            out.append((name, label, s))
    return out


def write_slide(src: Path, dst: Path, name: str, strength) -> None:
    import tifffile

    from weakstil.synth.pyramid import strip_buffer, write_pyramid

    with tifffile.TiffFile(src) as tf:
        img = tf.pages[0].asarray()
        xres = tf.pages[0].tags["XResolution"].value
    mpp = 1e4 * xres[1] / xres[0]
    quality = 90
    if name == "jpeg":
        quality = int(strength)
    elif name != "identity":
        fn = TRANSFORMS[name][0]
        img = fn(img, strength)
    h, w = img.shape[:2]
    buf = strip_buffer(w, h)
    buf[:h, :w] = img
    tmp = dst.with_suffix(".part.tiff")
    write_pyramid(tmp, w, h, iter([(0, h, buf)]), mpp=mpp, quality=quality,
                  description=f"appearance sweep {name} {strength}")
    os.replace(tmp, dst)


# --- scoring ---------------------------------------------------------------------------------


def colour_calibration(model: Path, train_truth: Path, train_slides: Path, cache: Path) -> tuple[float, float]:
    from colour_rule import slide_ratio, tile_counts, truth_bed_tiles

    table = pd.read_csv(model / "qc" / "training_slides.csv")
    ratios, ys = [], []
    for sid, y in zip(table["slide_id"], table["stil_true"]):
        stored = cache / f"train-{sid}.npy"
        if stored.exists():
            counts = np.load(stored)
        else:
            coords, side = truth_bed_tiles(train_truth / f"{sid}.h5")
            counts = tile_counts(train_slides / f"{sid}.tiff", coords, side)
            np.save(stored, counts)
        ratios.append(slide_ratio(counts))
        ys.append(float(y))
    a, b = np.polyfit(ratios, ys, 1)
    return float(a), float(b)


def score_condition(cdir: Path, base: Path, model: Path, ids: list[str]) -> pd.DataFrame:
    out = cdir / "scores"
    if not (out / "results.csv").exists():
        cmd = [sys.executable, "-m", "weakstil", "score", *[str(cdir / "slides" / f"{s}.tiff") for s in ids],
               "-m", str(model), "-o", str(out), "--annotations", str(base / "truth"),
               "--device", "cpu", "--workers", "1", "--threads", "1", "-f", str(cdir / "features")]
        subprocess.run(cmd, check=False, capture_output=True, text=True)
    return pd.read_csv(out / "results.csv")


def colour_scores(cdir: Path, base: Path, ids: list[str], coef: tuple[float, float]) -> np.ndarray:
    from colour_rule import slide_ratio, tile_counts, truth_bed_tiles

    out = []
    for sid in ids:
        stored = cdir / f"colour-{sid}.npy"
        if stored.exists():
            counts = np.load(stored)
        else:
            coords, side = truth_bed_tiles(base / "truth" / f"{sid}.h5")
            counts = tile_counts(cdir / "slides" / f"{sid}.tiff", coords, side)
            np.save(stored, counts)
        out.append(np.clip(coef[0] * slide_ratio(counts) + coef[1], 0, 100))
    return np.array(out)


def appearance_flags(qc: object) -> list[str]:
    if not isinstance(qc, str) or not qc:
        return []
    return [f for f in qc.split(";") if f and f not in NOT_APPEARANCE]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--train-truth", type=Path, required=True, help="truth/ of the model's training cohort")
    ap.add_argument("--cohort", type=Path, required=True, help="held-out synthetic cohort (labels.csv, slides/, truth/)")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--slides", type=int, default=0, help="first N slides only (0: all)")
    ap.add_argument("--only", default="", help="comma-separated transforms, run in this order (identity always runs first)")
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args()
    from inputs import need, need_model

    need_model(args.model)
    need(args.cohort / "labels.csv", "--cohort (labels.csv)", "a held-out `weakstil synth` cohort folder")
    need(args.train_truth, "--train-truth folder", "the truth/ folder of the model's training cohort",
         kind="folder")
    from weakstil.metrics import mae, r2_score

    labels = pd.read_csv(args.cohort / "labels.csv")
    if args.slides:
        labels = labels.head(args.slides)
    ids, y = list(labels["slide_id"]), labels["stil"].to_numpy(float)
    args.work.mkdir(parents=True, exist_ok=True)
    coef = colour_calibration(args.model, args.train_truth, args.train_truth.parent / "slides", args.work)
    rows = []
    for name, label, strength in conditions([s for s in args.only.split(",") if s]):
        t0 = time.perf_counter()
        cdir = args.work / f"{name}-{label}"
        (cdir / "slides").mkdir(parents=True, exist_ok=True)
        for sid in ids:
            dst = cdir / "slides" / f"{sid}.tiff"
            if not dst.exists():
                write_slide(args.cohort / "slides" / f"{sid}.tiff", dst, name, strength)
        res = score_condition(cdir, args.cohort, args.model, ids).set_index("slide_id").reindex(ids)
        pred = res["stil"].to_numpy(float)
        ok = np.isfinite(pred)
        lo, hi = res["stil_lower_90"].to_numpy(float), res["stil_upper_90"].to_numpy(float)
        flags = [appearance_flags(q) for q in res["qc"]]
        flagged = np.array([bool(f) for f in flags])
        col = colour_scores(cdir, args.cohort, ids, coef)
        err = np.abs(pred - y)
        row = {"transform": name, "strength": label, "value": strength if not isinstance(strength, tuple) else list(strength),
               "n": int(ok.sum()), "r2": r2_score(y[ok], pred[ok]), "mae": mae(y[ok], pred[ok]),
               "coverage": float(np.mean((lo[ok] <= y[ok]) & (y[ok] <= hi[ok]))),
               "qc_rate": float(flagged[ok].mean()),
               "mae_unflagged": float(err[ok & ~flagged].mean()) if (ok & ~flagged).any() else float("nan"),
               "flags": sorted({f for fl in flags for f in fl}),
               "colour_r2": r2_score(y, col), "colour_mae": mae(y, col),
               "errors": [round(float(e), 1) for e in pred - y], "seconds": time.perf_counter() - t0}
        rows.append(row)
        print(f"{name:9s} {label:6s} R² {row['r2']:6.3f}  MAE {row['mae']:5.2f}  cover {100 * row['coverage']:3.0f}%  "
              f"qc {100 * row['qc_rate']:3.0f}%  | colour R² {row['colour_r2']:6.3f} MAE {row['colour_mae']:5.2f}"
              f"  {','.join(row['flags'])}  ({row['seconds']:.0f} s)", flush=True)
    print("\n| transform | strength | slide R² | MAE | 90 % coverage | qc-flag rate | MAE unflagged | colour rule R² | colour MAE |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['transform']} | {r['strength']} {r['value'] if r['value'] is not None else ''} | {r['r2']:.3f} | "
              f"{r['mae']:.2f} | {100 * r['coverage']:.0f} % | {100 * r['qc_rate']:.0f} % | {r['mae_unflagged']:.2f} | "
              f"{r['colour_r2']:.3f} | {r['colour_mae']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=float) + "\n")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
