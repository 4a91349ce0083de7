"""Stage-2 accuracy on a synthetic cohort with exact truth: slide sTIL% and tile sTIL.

    .venv/bin/python benchmarks/accuracy.py                       # 120 slides (about 30 min on 2 cores)
    .venv/bin/python benchmarks/accuracy.py --group-column none --folds 5      # 5-fold by slide (cached: ~5 min)
    .venv/bin/python benchmarks/accuracy.py --slides 16 --pretrain-steps 20    # quick look (~3 min)

Steps (everything is cached under ``.bench/accuracy/`` and reused by later runs):

1. ``weakstil.synth.generate_cohort``: N slides (2.5 x 2.5 mm, 4 centres with their own
   stain look), labels = exact slide sTIL%, per-tile truth on the 224 px grid;
2. a small CNN encoder (``small-cnn``) pretrained with SimCLR on the cohort's tiles
   (``weakstil.pretrain``, short budget), and the same network randomly initialised;
3. ``weakstil.embed.embed_slide`` of every slide with both encoders;
4. ``weakstil.train.train_cohort``: cross-validated MIL regressor (default: leave-centre-out,
   one fold per centre), for mean vs attention aggregation, pretrained vs random encoder, and
   tumour-bed tiles (from the truth, as a pathologist's annotation would give them) vs all tiles;
5. a non-learned baseline (``benchmarks/colour_rule.py``): dark small-nucleus (lymphocyte) area
   over stroma area from colour deconvolution (skimage ``rgb2hed``), per tile; slide score =
   linear calibration of the slide ratio fitted on the training folds of the same CV split.

Metrics: slide R², MAE, Pearson, AUC for sTIL >= 30% (out of fold) and tile-level Pearson
between out-of-fold tile scores and the generator's tile sTIL (tiles matched by level-0
coordinates; tiles with >= 25% stroma). Targets: R² >= 0.9, AUC@30 >= 0.97, tile r >= 0.8.
Writes ``results-<slides>-s<seed>-<size>-<folds>fold-<group>.md`` and ``.json`` under the cache
folder and prints the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("accuracy")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from colour_rule import calibrate_oof, slide_ratio, tile_scores  # noqa: E402
from colour_rule import tile_counts as lymph_stroma_counts  # noqa: E402

#: Tiles with at least this stroma share count for the tile-level correlation.
MIN_STROMA = 0.25


# --- data -----------------------------------------------------------------------------------


def make_cohort(cache: Path, n: int, seed: int, size_mm: tuple[float, float]) -> Path:
    from weakstil.synth import generate_cohort

    out = cache / f"synth-s{seed}-{size_mm[0]:g}x{size_mm[1]:g}mm"
    t0 = time.perf_counter()
    generate_cohort(out, n, seed, size_mm=size_mm)  # keeps existing slides
    log.info("cohort: %d slides in %s (%.0f s)", n, out, time.perf_counter() - t0)
    return out / "labels.csv"


def pretrained_encoder_dir(cache: Path, slides: list[Path], steps: int, seed: int, tag: str) -> Path:
    from weakstil.pretrain import PretrainConfig, pretrain

    out = cache / f"pretrain-small-cnn-{tag}-steps{steps}"
    if (out / "model.safetensors").exists() and (out / "card.yaml").exists():
        log.info("pretrained encoder: reusing %s", out)
        return out
    if out.exists():  # an interrupted run: resume it
        resume = (out / "checkpoint.safetensors").exists()
    else:
        resume = False
    t0 = time.perf_counter()
    cfg = PretrainConfig(encoder="small-cnn", steps=steps, seed=seed, tiles_per_slide=64)
    res = pretrain(slides, out, cfg, device="cpu", resume=resume)
    log.info("pretrained small-cnn: %d steps on %d tiles, final loss %.3f (%.0f s)", res.steps, res.n_tiles,
             res.final_loss, time.perf_counter() - t0)
    return out


def embed_all(slides: list[Path], encoder_name: str | Path, weights: str | None, out_dir: Path) -> Path:
    import torch

    from weakstil.embed import embed_slide
    from weakstil.runtime import plan_threads
    from weakstil.encoders import create_encoder

    encoder = create_encoder(encoder_name, weights=weights, device="cpu", seed=0)
    workers, threads = plan_threads("cpu")
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    done = 0
    try:
        for s in slides:
            r = embed_slide(s, encoder, out_dir=out_dir, workers=workers, batch_size=64)
            done += 0 if r.skipped else r.n_tiles
    finally:
        torch.set_num_threads(prev)
    if done:
        log.info("embedded %d tiles with %s in %.0f s -> %s", done, encoder.name, time.perf_counter() - t0, out_dir)
    return out_dir


def read_truth_tiles(truth_dir: Path, slide_ids: list[str]) -> dict[str, pd.DataFrame]:
    import h5py

    out = {}
    for sid in slide_ids:
        with h5py.File(truth_dir / f"{sid}.h5", "r") as f:
            t = f["tiles"]
            c = t["coords"][:]
            out[sid] = pd.DataFrame({"x": c[:, 0], "y": c[:, 1], "stil": t["stil"][:],
                                     "stroma": t["stroma_fraction"][:], "bed": t["tumorbed_fraction"][:]})
    return out


def match(coords: np.ndarray, truth: pd.DataFrame) -> pd.DataFrame:
    """Truth rows for each tile coordinate (NaN where the truth grid has no such tile)."""
    idx = truth.set_index(["x", "y"])
    keys = pd.MultiIndex.from_arrays([coords[:, 0], coords[:, 1]])
    return idx.reindex(keys).reset_index(drop=True)


def bed_masks(features_dir: Path, truth: dict[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    import h5py

    masks = {}
    for sid, t in truth.items():
        with h5py.File(features_dir / f"{sid}.h5", "r") as f:
            m = match(f["coords"][:], t)
        masks[sid] = (m["bed"].fillna(0).to_numpy() >= 0.5)
    return masks


# --- evaluation -----------------------------------------------------------------------------


def slide_metrics(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from weakstil.metrics import mae, pearson, r2_score, roc_auc

    return {"r2": r2_score(t, p), "mae": mae(t, p), "pearson": pearson(t, p), "auc30": roc_auc(t >= 30, p)}


def tile_pearson(scores: dict[str, tuple[np.ndarray, np.ndarray]], truth: dict[str, pd.DataFrame],
                 masks: dict[str, np.ndarray] | None) -> tuple[float, int]:
    """Pearson over all slides' tiles with >= MIN_STROMA stroma (and in the bed when masks are used)."""
    from weakstil.metrics import pearson

    pred, true = [], []
    for sid, (coords, s) in scores.items():
        m = match(coords, truth[sid])
        ok = m["stil"].notna().to_numpy() & (m["stroma"].fillna(0).to_numpy() >= MIN_STROMA)
        if masks is not None:
            ok &= masks[sid]
        pred.append(s[ok])
        true.append(m["stil"].to_numpy()[ok])
    p, t = np.concatenate(pred), np.concatenate(true)
    return pearson(t, p), len(t)


def run_mil(name: str, csv: Path, features: Path, out: Path, truth, masks, args) -> dict:
    from weakstil.files import TileScoresFile
    from weakstil.mil.config import TrainConfig
    from weakstil.train import train_cohort

    agg = name.split("/")[1]
    cfg = TrainConfig(aggregator=agg, epochs=args.epochs, seed=args.seed, lr=args.lr)
    t0 = time.perf_counter()
    train_cohort(csv, features, out, cfg, n_folds=args.folds, group_column=args.group_column, overwrite=True,
                 tumorbeds=masks)
    secs = time.perf_counter() - t0
    oof = pd.read_csv(out / "cv" / "oof_predictions.csv", dtype={"slide_id": str})
    row = slide_metrics(oof["stil_true"].to_numpy(), oof["stil_pred"].to_numpy())
    scores = {}
    for sid in oof["slide_id"]:
        d = TileScoresFile.read(out / "cv" / "tiles" / f"{sid}.h5")
        scores[sid] = (d.coords, d.tile_scores)
    row["tile_r"], row["n_tiles"] = tile_pearson(scores, truth, masks)
    row["seconds"] = secs
    return row


def run_baseline(csv: Path, features: Path, cache: Path, truth, masks, folds: np.ndarray) -> dict:
    import h5py

    from weakstil.cohort import read_cohort

    cohort = read_cohort(csv)
    t0 = time.perf_counter()
    store = cache / "baseline-counts"
    store.mkdir(parents=True, exist_ok=True)
    counts, coords = {}, {}
    for sid, path in zip(cohort.slide_ids, cohort.table["path"]):
        with h5py.File(features / f"{sid}.h5", "r") as f:
            c = f["coords"][:]
            tsl0 = float(f.attrs["tile_size_level0"])
        cached = store / f"{sid}.npy"
        if cached.exists() and np.load(cached).shape[0] == len(c):
            counts[sid] = np.load(cached)
        else:
            counts[sid] = lymph_stroma_counts(Path(path), c, tsl0)
            np.save(cached, counts[sid])
        coords[sid] = c
    ratio = np.array([slide_ratio(counts[sid], masks[sid] if masks is not None else None)
                      for sid in cohort.slide_ids])
    y = cohort.labels
    pred, coef = calibrate_oof(ratio, y, folds)
    row = slide_metrics(y, pred)
    scores = {sid: (coords[sid], tile_scores(counts[sid], coef[int(k)])) for sid, k in zip(cohort.slide_ids, folds)}
    row["tile_r"], row["n_tiles"] = tile_pearson(scores, truth, masks)
    row["seconds"] = time.perf_counter() - t0
    return row


# --- main -----------------------------------------------------------------------------------


def fmt(v: float, d: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size-mm", type=float, nargs=2, default=(2.5, 2.5))
    ap.add_argument("--folds", type=int, default=4, help="CV folds (default 4 = leave one centre out)")
    ap.add_argument("--group-column", default="group", help="'group' (centre) or 'none' (split by slide)")
    ap.add_argument("--pretrain-steps", type=int, default=300)
    ap.add_argument("--pretrain-slides", type=int, default=40, help="slides whose tiles pretraining samples")
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--runs", default="pretrained/mean/bed,pretrained/attention/bed,random/mean/bed,"
                    "random/attention/bed,pretrained/mean/all,baseline/-/bed",
                    help="comma-separated encoder/aggregator/tiles")
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "accuracy")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("weakstil.mil", "weakstil.train", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    sys.path.insert(0, str(ROOT))
    t_all = time.perf_counter()
    cache = args.cache
    size = tuple(args.size_mm)
    tag = f"s{args.seed}-{size[0]:g}x{size[1]:g}mm"
    full_csv = make_cohort(cache, args.slides, args.seed, size)
    # the benchmark's own cohort file: exactly the first N slides
    table = pd.read_csv(full_csv).iloc[: args.slides]
    csv = full_csv.parent / f"labels-{args.slides}.csv"
    table.to_csv(csv, index=False)
    slides = [full_csv.parent / p for p in table["path"]]
    truth = read_truth_tiles(full_csv.parent / "truth", table["slide_id"].tolist())

    runs = [r.split("/") for r in args.runs.split(",")]
    features = {}
    if any(r[0] == "random" for r in runs) or any(r[0] == "baseline" for r in runs):
        features["random"] = embed_all(slides, "small-cnn", "random", cache / f"features-small-cnn-random-{tag}")
    if any(r[0] == "pretrained" for r in runs):
        enc_dir = pretrained_encoder_dir(cache, slides[: args.pretrain_slides], args.pretrain_steps, args.seed, tag)
        features["pretrained"] = embed_all(slides, enc_dir, None, cache / f"features-{enc_dir.name}-{tag}")

    results = []
    folds = None
    for enc, agg, tiles in runs:
        feats = features["random" if enc == "baseline" else enc]
        masks = bed_masks(feats, truth) if tiles == "bed" else None
        name = f"{enc}/{agg}/{tiles}"
        log.info("run %s", name)
        if enc == "baseline":
            if folds is None:
                from weakstil.cohort import group_kfold, read_cohort

                c = read_cohort(csv, group_column=args.group_column)
                folds = group_kfold(c.groups, args.folds, seed=args.seed)
            row = run_baseline(csv, feats, cache, truth, masks, folds)
        else:
            row = run_mil(name, csv, feats, cache / "runs" / f"{args.slides}-{tag}" / name.replace("/", "-"),
                          truth, masks, args)
            oof = pd.read_csv(cache / "runs" / f"{args.slides}-{tag}" / name.replace("/", "-") / "cv" /
                              "oof_predictions.csv")
            folds = oof["fold"].to_numpy()
        row.update({"encoder": enc, "aggregator": agg, "tiles": tiles})
        results.append(row)
        log.info("%s: R² %s, MAE %s, AUC@30 %s, tile r %s (%.0f s)", name, fmt(row["r2"]), fmt(row["mae"], 2),
                 fmt(row["auc30"]), fmt(row["tile_r"]), row["seconds"])

    lines = [
        f"Synthetic cohort: {args.slides} slides, seed {args.seed}, {size[0]:g}x{size[1]:g} mm, "
        f"{args.folds}-fold CV grouped by {args.group_column}; small-cnn encoder "
        f"(pretrained: SimCLR {args.pretrain_steps} steps); out-of-fold metrics; tile r on tiles with "
        f">= {MIN_STROMA:.0%} stroma (in the tumour bed for 'bed' runs).",
        "",
        "| encoder | aggregator | tiles | slide R² | MAE | Pearson | AUC@30 | tile r | tiles | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| {r['encoder']} | {r['aggregator']} | {r['tiles']} | {fmt(r['r2'])} | {fmt(r['mae'], 2)} | "
                     f"{fmt(r['pearson'])} | {fmt(r['auc30'])} | {fmt(r['tile_r'])} | {r['n_tiles']} | "
                     f"{r['seconds']:.0f} |")
    lines += ["", f"targets: R² >= 0.9, AUC@30 >= 0.97, tile r >= 0.8; total {time.perf_counter() - t_all:.0f} s"]
    text = "\n".join(lines)
    print(text)
    split = f"{args.folds}fold-{args.group_column}"
    (cache / f"results-{args.slides}-{tag}-{split}.md").write_text(text + "\n")
    (cache / f"results-{args.slides}-{tag}-{split}.json").write_text(
        json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
