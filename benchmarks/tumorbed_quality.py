"""Tumour-bed quality within and across looks, on synthetic cohorts with exact truth.

    .venv/bin/python benchmarks/tumorbed_quality.py                       # every pair of 3 looks x 40 slides (~1.5 h on 2 busy cores)
    .venv/bin/python benchmarks/tumorbed_quality.py --slides 16 --cohorts default hard   # a quick look
    .venv/bin/python benchmarks/tumorbed_quality.py --encoder /path/to/pretrain_dir      # a pretrained encoder
    # issue 14's cross-look pairs only (a detector per training look, applied to the other look):
    nice -n 10 .venv/bin/python benchmarks/tumorbed_quality.py --cohorts default alt hard \
        --pairs default:alt default:hard alt:hard --cache /work/scratch/tumorbed/bench

Everything is cached under ``--cache`` (default ``.bench/tumorbed/``) and reused.

1. **Cohorts** (``weakstil.synth.generate_slide``): ``default`` (the ordinary look), ``hard``
   (``--hard``: lymphoid aggregates / TLS and lymph-node regions outside the bed, dense
   infiltrates inside it on TIL-rich slides, DCIS and lobules outside, necrosis inside, and
   acquisition artefacts) and ``alt-hard`` (``--hard --look alt``: another lab's stain, scanner
   and nuclei). The sTIL targets cycle through the bands < 10, 10-30, 30-60 and > 60 %, so every
   band holds a quarter of the slides (a TCGA-like draw would give few slides > 60 %).
2. **Embedding** of every slide with one encoder (default: the seeded random-init small CNN,
   which has seen no look; ``--encoder`` takes a ``weakstil pretrain`` folder).
3. **Detector per look**: ``train_tumorbed_from_cache`` (what ``weakstil tumorbed train`` runs)
   on 10 annotated slides drawn like TCGA (4 < 10 %, 3 of 10-30 %, 2 of 30-60 %, 1 > 60 %; the
   generator's GeoJSON outlines are the annotations), then ``apply_tumorbed`` (``weakstil
   tumorbed apply``) on every slide of every cohort that it was not trained on.
4. **Dice** of each written bed (``tumorbed_mask`` at its ``mpp``) against the exact truth, by
   sTIL band: within look (trained and applied on the same look) and across looks; the worst
   slides. Two checks of the bed definition on every slide: the share of the truth bed's
   lymphocyte-dense stroma that the detected bed keeps (should be ~1: TIL-rich stroma next to
   tumour is bed), and the share of lymphoid aggregates (lymphocyte-dense components of at least
   0.01 mm² more than 200 µm outside the truth bed: TLS, lymph node, aggregates) that it takes in
   (should be ~0); each with the number of slides that have such tissue.
5. **Slide R²** (out of fold, MIL with the default settings (stroma aggregator), ``train_cohort`` as ``weakstil
   train`` runs it) on each cohort with tumour-bed tiles from the exact annotations, from the
   per-slide beds of the detector trained on that look (``--tumorbed-beds``; its 10 training
   slides keep their annotations, as ``tumorbed apply --annotations --tumorbed`` gives them)
   and of a detector trained on another look, and from the whole tissue.

Targets (issue 14): across looks, mean Dice >= 0.9, min >= 0.75, no slide > 60 % sTIL below 0.8;
slide R² with detected beds within 0.03 of R² with exact beds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("tumorbed")

BANDS = ((0.0, 10.0, "< 10"), (10.0, 30.0, "10-30"), (30.0, 60.0, "30-60"), (60.0, 101.0, "> 60"))
#: Targets drawn uniformly inside each band (band edges kept clear: the drawn label lands near the target).
BAND_TARGETS = ((1.5, 9.0), (11.0, 28.0), (32.0, 58.0), (62.0, 88.0))
#: Annotated training slides per band: a TCGA-like handful of 10.
TRAIN_PER_BAND = (4, 3, 2, 1)
COHORTS = {"default": {"hard": False, "look": "default"}, "hard": {"hard": True, "look": "default"},
           "alt-hard": {"hard": True, "look": "alt"}, "alt": {"hard": False, "look": "alt"}}


def band_of(stil: float) -> str:
    return next(name for lo, hi, name in BANDS if lo <= stil < hi)


def make_cohort(out: Path, n: int, seed: int, size_mm: float, hard: bool, look: str) -> Path:
    """``n`` slides whose targets cycle through the sTIL bands; ``labels.csv`` as the generator writes it."""
    import h5py

    from weakstil.synth import generate_slide, slide_seed

    rng = np.random.default_rng(seed)
    rows = []
    t0 = time.perf_counter()
    for i in range(n):
        lo, hi = BAND_TARGETS[i % len(BAND_TARGETS)]
        target = float(rng.uniform(lo, hi))
        sid, group = f"synth_{i:04d}", f"centre_{i % 4}"
        truth = out / "truth" / f"{sid}.h5"
        if truth.is_file() and (out / "slides" / f"{sid}.tiff").is_file():
            with h5py.File(truth, "r") as f:
                stil = float(f.attrs["stil"])
        else:
            kwargs = {"hard": True} if hard else {}
            if look != "default":
                kwargs["look"] = look
            stil = generate_slide(out / "slides" / f"{sid}.tiff", out / "truth", sid, slide_seed(seed, i),
                                  size_mm=(size_mm, size_mm), target_stil=target, group=group, preview=False,
                                  **kwargs).stil
        rows.append({"slide_id": sid, "path": f"slides/{sid}.tiff", "stil": round(stil, 4), "group": group})
    pd.DataFrame(rows).to_csv(out / "labels.csv", index=False)
    log.info("cohort %s: %d slides (%.0f s)", out.name, n, time.perf_counter() - t0)
    return out / "labels.csv"


def embed_cohort(cohort: Path, encoder_name: str, weights: str | None, out: Path) -> Path:
    import torch

    from weakstil.embed import embed_slide
    from weakstil.runtime import plan_threads
    from weakstil.encoders import create_encoder

    table = pd.read_csv(cohort / "labels.csv")
    encoder = create_encoder(encoder_name, weights=weights, device="cpu", seed=0)
    workers, threads = plan_threads("cpu")
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for p in table["path"]:
            embed_slide(cohort / p, encoder, out_dir=out, workers=workers, batch_size=64,
                        keep_other_settings=False)  # the benchmark's own cache
    finally:
        torch.set_num_threads(prev)
    return out


def training_ids(table: pd.DataFrame) -> list[str]:
    """10 slides like a TCGA draw: 4 < 10 %, 3 of 10-30 %, 2 of 30-60 %, 1 > 60 %."""
    want = dict(zip([b[2] for b in BANDS], TRAIN_PER_BAND))
    chosen = []
    for sid, stil in zip(table["slide_id"], table["stil"]):
        b = band_of(stil)
        if want[b] > 0:
            want[b] -= 1
            chosen.append(sid)
    return chosen


def truth_dice(bed_h5: Path, truth_h5: Path) -> float:
    import h5py
    from skimage.transform import resize

    from weakstil.tissue import dice

    with h5py.File(bed_h5, "r") as f:
        mask = f["tumorbed_mask"][:].astype(bool)
    with h5py.File(truth_h5, "r") as f:
        truth = resize(f["tumorbed"][:].astype(np.float32), mask.shape, order=1, anti_aliasing=True) > 0.5
    return dice(mask, truth)


#: Lymphocyte-dense: at least this share of the tissue covered by lymphocytes within ~50 µm.
DENSE_LYMPH = 0.3
#: "Far from tumour": more than this outside the truth bed.
FAR_UM = 200.0
#: A lymphoid aggregate: a far lymphocyte-dense component at least this large (a ~110 µm disc).
MIN_AGGREGATE_MM2 = 0.01


def lymph_checks(bed_h5: Path, truth_h5: Path) -> dict:
    """Share of the truth bed's lymphocyte-dense stroma inside the detected bed, and share of the
    lymphocyte-dense tissue far (> ``FAR_UM``) outside the truth bed that the detected bed takes in
    (NaN where the slide has none)."""
    import h5py
    from scipy import ndimage as ndi
    from skimage.transform import resize

    with h5py.File(truth_h5, "r") as f:
        truth, tissue = f["tumorbed"][:].astype(bool), f["tissue"][:].astype(bool)
        lymph, mpp = f["lymphocyte"][:].astype(np.float32), float(f.attrs["mask_mpp"])
        stroma = f["stroma"][:].astype(bool)
    with h5py.File(bed_h5, "r") as f:
        det = resize(f["tumorbed_mask"][:].astype(np.float32), truth.shape, order=0) > 0.5
    dense = ndi.gaussian_filter(lymph, 25.0 / mpp) >= DENSE_LYMPH
    inside = truth & stroma & dense
    far = dense & tissue & (ndi.distance_transform_edt(~truth) * mpp > FAR_UM)
    labels, n = ndi.label(far)  # aggregates: far dense components of at least MIN_AGGREGATE_MM2
    sizes = np.bincount(labels.ravel(), minlength=n + 1) * mpp * mpp / 1e6
    far = (sizes >= MIN_AGGREGATE_MM2)[labels] & far
    return {"dense_bed_kept": float(det[inside].mean()) if inside.sum() * mpp * mpp / 1e6 >= 0.01 else np.nan,
            "far_lymph_taken": float(det[far].mean()) if far.any() else np.nan}


def summarise(df: pd.DataFrame) -> dict:
    out = {"n": int(len(df)), "mean": float(df["dice"].mean()), "median": float(df["dice"].median()),
           "min": float(df["dice"].min()), "fallbacks": int((df["source"] == "tissue-fallback").sum()),
           "dense_bed_kept": float(df["dense_bed_kept"].mean()), "far_lymph_taken": float(df["far_lymph_taken"].mean()),
           "dense_bed_slides": int(df["dense_bed_kept"].notna().sum()),
           "far_lymph_slides": int(df["far_lymph_taken"].notna().sum()),
           "worst": [f"{r.slide_id} ({r.stil:.0f} %): {r.dice:.3f}" for r in df.nsmallest(3, "dice").itertuples()]}
    for _, _, name in BANDS:
        v = df.loc[df["band"] == name, "dice"]
        out[name] = {"n": int(len(v)), "mean": float(v.mean()) if len(v) else None,
                     "min": float(v.min()) if len(v) else None}
    return out


def main() -> None:
    from weakstil.tumorbed import BedSources, apply_tumorbed, train_tumorbed_from_cache
    from weakstil.tumorbed.detector import TumorBedDetector

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohorts", nargs="+", default=["default", "hard", "alt-hard"], choices=sorted(COHORTS))
    ap.add_argument("--slides", type=int, default=40)
    ap.add_argument("--size-mm", type=float, default=2.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--encoder", default="small-cnn", help="card name or 'weakstil pretrain' folder")
    ap.add_argument("--weights", default="random", help="'random' (seeded) for a card; ignored for a folder")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--no-r2", action="store_true", help="Dice only")
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "tumorbed")
    ap.add_argument("--reuse-detectors", action="store_true",
                    help="load a detector saved by an earlier run on the same training slides instead of training")
    ap.add_argument("--evidence-stats", action="store_true",
                    help="tumour evidence from the embedding plus tumour-nuclei morphometry (tile statistics)")
    ap.add_argument("--no-veto", action="store_true",
                    help="detectors without the lymphoid and ink vetoes (weakstil.tumorbed.veto, .ink), as before them")
    ap.add_argument("--no-cell-gate", action="store_true",
                    help="detectors without the tumour-cell gate (weakstil.tumorbed.cellgate), as before it")
    ap.add_argument("--no-augment", action="store_true",
                    help="detectors without the jittered copies in their final fit (weakstil.tumorbed.augment), as "
                         "before them (their runs folder is the one those runs wrote, without '-aug1')")
    ap.add_argument("--pairs", nargs="+", metavar="TRAIN:TEST",
                    help="train look -> test look pairs (default: every pair of --cohorts, within look too)")
    args = ap.parse_args()
    pairs = ([tuple(p.split(":")) for p in args.pairs] if args.pairs else
             [(a, b) for a in args.cohorts for b in args.cohorts])
    if any(a not in args.cohorts or b not in args.cohorts for a, b in pairs):
        ap.error("--pairs names a look that is not in --cohorts")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("weakstil.mil", "weakstil.train", "weakstil.embed", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    if any(a == b for a, b in pairs) and args.slides <= sum(TRAIN_PER_BAND):
        # every slide trained the detector: nothing held out (a KeyError traceback after the training)
        ap.error(f"--slides {args.slides}: the detector trains on up to {sum(TRAIN_PER_BAND)} slides of a look, "
                 f"so a within-look pair needs more to measure; pass --slides {2 * sum(TRAIN_PER_BAND)} or more")
    from weakstil.encoders.cards import load_card

    load_card(args.encoder)  # a mistyped folder failed only after its cohorts were made
    weights = None if Path(args.encoder).is_dir() else args.weights
    enc_tag = Path(args.encoder).name + (f"-{weights}" if weights else "")
    cohorts, features, tables = {}, {}, {}
    for name in args.cohorts:
        spec = COHORTS[name]
        cdir = args.cache / f"{name}-n{args.slides}-s{args.seed}-{args.size_mm:g}mm"
        make_cohort(cdir, args.slides, args.seed + 1000 * list(COHORTS).index(name), args.size_mm, spec["hard"],
                    spec["look"])
        cohorts[name] = cdir
        tables[name] = pd.read_csv(cdir / "labels.csv")
        features[name] = embed_cohort(cdir, args.encoder, weights, cdir / f"features-{enc_tag}")

    runs = args.cache / "runs" / (f"n{args.slides}-s{args.seed}-{enc_tag}" + ("-stats" if args.evidence_stats else "")
                                 + ("-noveto" if args.no_veto else "") + ("-nogate" if args.no_cell_gate else "")
                                 + ("" if args.no_augment else "-aug1"))
    rows, detectors = [], {}
    for train_look in dict.fromkeys(a for a, _ in pairs):
        ids = training_ids(tables[train_look])
        t0 = time.perf_counter()
        det_dir = runs / f"detector-{train_look}"
        saved = det_dir / "model.json"
        if args.reuse_detectors and saved.is_file() and json.loads(saved.read_text()).get("slide_ids") == ids \
                and bool(json.loads(saved.read_text()).get("ink_veto", {}).get("enabled")) != args.no_veto \
                and bool(json.loads(saved.read_text()).get("augmentation", {}).get("enabled")) != args.no_augment:
            detector = TumorBedDetector.load(det_dir)
            log.info("detector %s: reused from %s", train_look, det_dir)
        else:
            detector = train_tumorbed_from_cache(features[train_look], cohorts[train_look] / "truth", slide_ids=ids,
                                                 seed=args.seed, tile_stats=args.evidence_stats,
                                                 lymphoid_veto=not args.no_veto, ink_veto=not args.no_veto,
                                                 tumour_cell_gate=not args.no_cell_gate, augment=not args.no_augment)
            detector.save(det_dir)
        seconds = float(detector.meta.get("train_seconds", time.perf_counter() - t0))
        detectors[train_look] = (detector, det_dir, ids, seconds)
        for test_look in [b for a, b in pairs if a == train_look]:
            beds = runs / f"beds-{train_look}-on-{test_look}"
            for sid, stil in zip(tables[test_look]["slide_id"], tables[test_look]["stil"]):
                trained_on = test_look == train_look and sid in ids
                # the detector's own training slides keep their annotation (annotation > detector)
                sources = BedSources(annotations=cohorts[test_look] / "truth" if trained_on else None,
                                     detector=detector, detector_path=det_dir)
                applied = apply_tumorbed(features[test_look] / f"{sid}.h5", beds, sources)
                if trained_on:
                    continue
                truth = cohorts[test_look] / "truth" / f"{sid}.h5"
                rows.append({"train_look": train_look, "test_look": test_look, "slide_id": sid, "stil": stil,
                             "band": band_of(stil), "source": applied.bed.source.value,
                             "dice": truth_dice(applied.h5_path, truth), **lymph_checks(applied.h5_path, truth)})
    if not rows:
        raise SystemExit("error: no held-out slide to measure (the detectors trained on them all). "
                         f"Fix: pass more --slides (at least {2 * sum(TRAIN_PER_BAND)})")
    per_slide = pd.DataFrame(rows)
    per_slide.to_csv(runs / "dice_per_slide.csv", index=False)
    within = per_slide[per_slide["train_look"] == per_slide["test_look"]]
    across = per_slide[per_slide["train_look"] != per_slide["test_look"]]
    result: dict = {"settings": vars(args) | {"cache": str(args.cache)}, "encoder": enc_tag,
                    "detectors": {k: {"cv_dice": d.meta["cv_dice"], "cv_dice_min": d.meta["cv_dice_min"],
                                      "shape": d.shape.to_dict(), "train_slides": ids, "train_s": round(s, 1)}
                                  for k, (d, _, ids, s) in detectors.items()},
                    "dice": {"within": summarise(within) if len(within) else None,
                             "across": summarise(across) if len(across) else None,
                             "pairs": {f"{a} -> {b}": summarise(g) for (a, b), g in
                                       per_slide.groupby(["train_look", "test_look"])}}}

    if not args.no_r2:
        from weakstil.metrics import mae, pearson, r2_score
        from weakstil.mil import TrainConfig
        from weakstil.train import train_cohort

        r2 = {}
        for look in dict.fromkeys(b for _, b in pairs):
            csv = cohorts[look] / "labels.csv"
            ids = list(tables[look]["slide_id"])
            sources = {"exact (annotations)": dict(annotations=cohorts[look] / "truth")}
            for other in [a for a, b in pairs if b == look]:
                sources[f"detected ({other} detector)"] = dict(beds=runs / f"beds-{other}-on-{look}")
            sources["whole tissue"] = {}
            r2[look] = {}
            for label, src in sources.items():
                # the same tumour-bed tiles train --annotations / --tumorbed-beds would use; whole
                # tissue: every tile (the feature files carry no bed flags)
                masks = (BedSources(**src).cohort({sid: features[look] / f"{sid}.h5" for sid in ids}) if src
                         else {sid: None for sid in ids})
                masks = {k: v for k, v in masks.items() if v is not None} or None
                out = runs / "mil" / look / label.split()[0] / (src.get("beds", Path("x")).name if src else "all")
                train_cohort(csv, features[look], out, TrainConfig(epochs=args.epochs, seed=args.seed),
                             n_folds=args.folds, overwrite=True, tumorbeds=masks, group_column="none")
                oof = pd.read_csv(out / "cv" / "oof_predictions.csv")
                t, p = oof["stil_true"].to_numpy(), oof["stil_pred"].to_numpy()
                r2[look][label] = {"r2": r2_score(t, p), "pearson": pearson(t, p), "mae": mae(t, p)}
        result["r2"] = r2

    (runs / "results.json").write_text(json.dumps(result, indent=2))
    print_report(result, per_slide)


def print_report(result: dict, per_slide: pd.DataFrame) -> None:
    print(f"\n## Tumour-bed detector, encoder {result['encoder']}\n")
    for look, d in result["detectors"].items():
        print(f"- detector trained on {look} ({len(d['train_slides'])} slides, {d['train_s']:.0f} s): "
              f"leave-one-slide-out Dice {d['cv_dice']:.3f} (min {d['cv_dice_min']:.3f}); {d['shape']}")
    names = [b[2] for b in BANDS]
    print("\n| train look -> test look | n | mean | median | min | " + " | ".join(f"sTIL {b} %: mean / min"
                                                                          for b in names) + " | fallbacks | dense bed stroma kept | far lymphoid taken |")
    print("|---" * (8 + len(names)) + "|")
    blocks = list(result["dice"]["pairs"].items())
    for key in ("within", "across"):
        if result["dice"][key]:
            blocks.append((f"**all {key} look**", result["dice"][key]))
    for pair, s in blocks:
        bands = " | ".join(f"{s[b]['mean']:.3f} / {s[b]['min']:.3f} ({s[b]['n']})" if s[b]["n"] else "-"
                           for b in names)
        print(f"| {pair} | {s['n']} | {s['mean']:.3f} | {s['median']:.3f} | {s['min']:.3f} | {bands} | "
              f"{s['fallbacks']} | {s['dense_bed_kept']:.3f} ({s.get('dense_bed_slides', '?')}) | "
              f"{s['far_lymph_taken']:.3f} ({s.get('far_lymph_slides', '?')}) |")
    for pair, s in blocks:
        print(f"- worst slides, {pair}: " + "; ".join(s["worst"]))
    across = per_slide[per_slide["train_look"] != per_slide["test_look"]]
    if len(across):
        high = across[across["stil"] > 60]
        a = result["dice"]["across"]
        ok = a["mean"] >= 0.9 and a["min"] >= 0.75 and (high["dice"].min() >= 0.8 if len(high) else True)
        print(f"\nacross looks: mean {a['mean']:.3f} (>= 0.9), min {a['min']:.3f} (>= 0.75), "
              f"min over sTIL > 60 % {high['dice'].min() if len(high) else float('nan'):.3f} (>= 0.8) -> "
              f"{'PASS' if ok else 'FAIL'}")
    if "r2" in result:
        print("\n| cohort | tumour-bed tiles for MIL | slide R² (out of fold) | Pearson | MAE | R² - R² exact |")
        print("|---|---|---|---|---|---|")
        for look, table in result["r2"].items():
            exact = table["exact (annotations)"]["r2"]
            for label, m in table.items():
                print(f"| {look} | {label} | {m['r2']:.3f} | {m['pearson']:.3f} | {m['mae']:.2f} | "
                      f"{m['r2'] - exact:+.3f} |")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
