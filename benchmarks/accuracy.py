"""Stage-2 accuracy with exact truth: random split, leave-centre-out and look A -> B.

    .venv/bin/python benchmarks/accuracy.py                    # the default run (cached under .bench/accuracy)
    .venv/bin/python benchmarks/accuracy.py --cohorts default  # only the default look
    .venv/bin/python benchmarks/accuracy.py --rows pre/stroma/stats,pre/mean/-,colour --splits centre
    .venv/bin/python benchmarks/accuracy.py --cohorts hard --rows pre/stroma/stats --pretrain-seed 1  # another encoder, same cohorts

Cohorts (``weakstil.synth``, exact truth; a cohort is made once and reused):

* ``default``: the default generator, 4 centres with their own stain look;
* ``hard``: ``synth --hard`` (confounders, per-centre acquisition), when available;
* ``default-b``, ``hard-b``: the same kind of cohort in another look (``synth --look``), for
  look A -> B.

For every cohort a small CNN (``small-cnn``) is pretrained with the default ``weakstil
pretrain`` settings on the cohort's own slides (as a user would: no labels involved) and both
it and the random-init network embed every slide (``weakstil.embed.embed_slide``: embeddings,
tile statistics, stroma estimate). Tumour beds come from the truth's annotation files
(``--annotations``, as a pathologist would give them).

Splits (out-of-fold / held-out metrics):

* ``random``: 5-fold cross-validation by slide;
* ``centre``: leave one centre out (one fold per centre);
* ``look``: train on cohort A (all of it), score cohort B (another look, never seen; B is
  embedded with A's encoder). Rows score B with the final model and with the ensemble of A's
  cross-validation fold models (``+ens``).

Rows ``ENCODER/AGGREGATOR/FEATURES``: ENCODER ``pre`` (pretrained) or ``rnd`` (random init);
AGGREGATOR ``mean``, ``attention``, ``stroma`` (learned stroma weights) or ``stroma-est``
(colour-deconvolution stroma estimate as weight); FEATURES ``-`` (embedding) or ``stats``
(embedding + tile statistics); ``colour`` is the colour-deconvolution rule
(``benchmarks/colour_rule.py``), linearly calibrated on the same training folds.

Metrics: slide R², MAE, AUC for sTIL >= 30 %, and tile Pearson between tile scores and the
generator's tile sTIL (bed tiles with >= 25 % stroma). Every result is cached by its settings
under ``.bench/accuracy/results/``; the table goes to ``.bench/accuracy/results.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("accuracy")

#: Tiles with at least this stroma share count for the tile-level correlation.
MIN_STROMA = 0.25
#: Names the default pretraining settings in the encoder's cache key (bump when they change).
PRETRAIN_RECIPE = "r2"
DEFAULT_ROWS = "pre/mean/-,pre/attention/-,pre/stroma/-,pre/stroma/stats,pre/stroma-est/stats,colour"


# --- cohorts, encoders, features -------------------------------------------------------------


def make_cohort(cache: Path, kind: str, n: int, seed: int, size_mm: tuple[float, float], look_b: str = "alt"
                ) -> Path | None:
    """The cohort's labels.csv (made once); None when this weakstil cannot make that kind."""
    import inspect

    from weakstil.synth import generate_cohort

    params = inspect.signature(generate_cohort).parameters
    kwargs: dict[str, object] = {}
    if kind.startswith("hard"):
        if "hard" not in params:
            log.warning("cohort %s skipped: this weakstil.synth has no hard mode", kind)
            return None
        kwargs["hard"] = True
    if kind.endswith("-b"):
        if "look" not in params:
            log.warning("cohort %s skipped: this weakstil.synth has no --look", kind)
            return None
        kwargs["look"] = look_b
    out = cache / f"cohort-{kind}-n{n}-s{seed}-{size_mm[0]:g}x{size_mm[1]:g}mm"
    if not (out / "labels.csv").exists() or len(pd.read_csv(out / "labels.csv")) < n:
        t0 = time.perf_counter()
        generate_cohort(out, n, seed, size_mm=size_mm, progress=False, **kwargs)
        log.info("cohort %s: %d slides (%.0f s)", kind, n, time.perf_counter() - t0)
    return out / "labels.csv"


def pretrained_encoder(cache: Path, tag: str, slides: list[Path], args) -> Path:
    from weakstil.pretrain import PretrainConfig, pretrain

    seed = args.seed if args.pretrain_seed is None else args.pretrain_seed
    cfg = PretrainConfig(encoder="small-cnn", steps=args.pretrain_steps, seed=seed, stain_norm=args.stain_norm,
                         augment=json.loads(args.pretrain_augment or "{}"))
    changed = {k: v for k, v in asdict(cfg).items() if v != getattr(PretrainConfig(), k)}  # vs the defaults
    key = hashlib.sha256(json.dumps([tag, len(slides), PRETRAIN_RECIPE, changed], sort_keys=True).encode()
                         ).hexdigest()[:10]
    out = cache / f"encoder-{tag}-{key}"
    if (out / "card.yaml").exists():
        return out
    t0 = time.perf_counter()
    res = pretrain(slides, out, cfg, device="cpu", resume=(out / "checkpoint.safetensors").exists())
    log.info("pretrained %s: %d steps on %d tiles, loss %.3f (%.0f s)", out.name, res.steps, res.n_tiles,
             res.final_loss, time.perf_counter() - t0)
    return out


def _reusable(path: Path) -> bool:
    """A complete feature file with the tile statistics, by today's stain estimate and tile statistics."""
    from weakstil.files import FeaturesFile
    from weakstil.stain import STAIN_ESTIMATE_VERSION
    from weakstil.tilestats import TILESTATS_VERSION

    try:
        attrs, shapes = FeaturesFile.read_header(path)
    except Exception:
        return False
    return ("tile_stats" in shapes and "stroma_estimate" in shapes
            and str(attrs.get("stain_estimate_version")) == str(STAIN_ESTIMATE_VERSION)
            and str(attrs.get("tilestats_version")) == str(TILESTATS_VERSION))


def embed_all(slides: list[Path], encoder_name: str | Path, weights: str | None, out_dir: Path,
              reembed: bool = False, stain_norm: str = "card") -> Path:
    """``weakstil embed`` of every slide into ``out_dir`` (``out_dir`` is named after the encoder's
    folder, whose name holds its settings' hash). Feature files this benchmark made before are
    reused unless ``reembed`` or made by another stain estimate or tile statistics version (which
    change the features; the package version alone does not, though ``weakstil embed`` redoes it)."""
    from weakstil.embed import cache_path, embed_slide, open_encoder

    todo = [s for s in slides if reembed or not _reusable(cache_path(out_dir, s))]
    if not todo:
        return out_dir
    encoder, planner = open_encoder(encoder_name, weights, "cpu", batch_size=64, seed=0, stain_norm=stain_norm)
    t0, done = time.perf_counter(), 0
    for s in todo:
        r = embed_slide(s, encoder, out_dir=out_dir, batch_size=64, planner=planner, overwrite=reembed)
        done += 0 if r.skipped else r.n_tiles
    if done:
        log.info("embedded %d tiles with %s in %.0f s -> %s", done, encoder.name, time.perf_counter() - t0, out_dir)
    return out_dir


class Cohort:
    """One cohort's labels, truth tiles, beds and feature folders."""

    def __init__(self, name: str, csv: Path):
        from weakstil.cohort import read_cohort

        self.name, self.csv, self.root = name, csv, csv.parent
        self.table = read_cohort(csv)
        self.ids = list(self.table.slide_ids)
        self.labels = self.table.labels.astype(np.float32)
        self.centres = np.asarray(self.table.groups).astype(str)
        self.slides = [self.root / p for p in self.table.table["path"]]
        self.features: dict[str, Path] = {}
        self._truth: dict[str, pd.DataFrame] | None = None
        self._beds: dict[str, dict[str, np.ndarray]] = {}

    def truth(self) -> dict[str, pd.DataFrame]:
        import h5py

        if self._truth is None:
            self._truth = {}
            for sid in self.ids:
                with h5py.File(self.root / "truth" / f"{sid}.h5", "r") as f:
                    t = f["tiles"]
                    c = t["coords"][:]
                    self._truth[sid] = pd.DataFrame({"x": c[:, 0], "y": c[:, 1], "stil": t["stil"][:],
                                                     "stroma": t["stroma_fraction"][:]})
        return self._truth

    def beds(self, enc: str) -> dict[str, np.ndarray]:
        """Tumour-bed tiles from the truth's annotation files, as ``train --annotations`` reads them."""
        from weakstil.tumorbed.resolver import BedSources

        if enc not in self._beds:
            beds = BedSources.open(annotations=self.root / "truth")
            self._beds[enc] = beds.cohort({sid: self.features[enc] / f"{sid}.h5" for sid in self.ids})
        return self._beds[enc]


# --- metrics --------------------------------------------------------------------------------


def match(coords: np.ndarray, truth: pd.DataFrame) -> pd.DataFrame:
    idx = truth.set_index(["x", "y"])
    return idx.reindex(pd.MultiIndex.from_arrays([coords[:, 0], coords[:, 1]])).reset_index(drop=True)


def slide_metrics(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from weakstil.metrics import mae, r2_score, roc_auc

    return {"r2": r2_score(t, p), "mae": mae(t, p), "auc30": roc_auc(t >= 30, p)}


def tile_pearson(cohort: Cohort, tiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """Pearson over bed tiles with >= MIN_STROMA stroma: ``tiles[sid] = (coords, scores, bed)``."""
    from weakstil.metrics import pearson

    pred, true = [], []
    truth = cohort.truth()
    for sid, (coords, s, bed) in tiles.items():
        m = match(coords, truth[sid])
        ok = m["stil"].notna().to_numpy() & (m["stroma"].fillna(0).to_numpy() >= MIN_STROMA) & bed
        pred.append(s[ok])
        true.append(m["stil"].to_numpy()[ok])
    return pearson(np.concatenate(true), np.concatenate(pred))


# --- rows -------------------------------------------------------------------------------------


def train_config(agg: str, feats: str, args):
    from weakstil.mil.config import TrainConfig

    stroma_weight = "estimate" if agg == "stroma-est" else "learned"
    extra = {} if args.epochs is None else {"epochs": args.epochs}
    if args.stopping is not None:
        extra["stopping"] = args.stopping
    if args.feature_noise is not None:
        extra["feature_noise"] = args.feature_noise
    if args.centre_embeddings is not None:
        extra["centre_embeddings"] = bool(args.centre_embeddings)
    return TrainConfig(aggregator="stroma" if agg.startswith("stroma") else agg, stroma_weight=stroma_weight,
                       tile_stats=feats != "-", seed=args.train_seed, threads=args.threads, **extra)


def load_bank(cohort: Cohort, enc: str, feats: str, centre_embeddings: bool = False):
    from weakstil.mil import FeatureBank
    from weakstil.tilestats import COLUMNS

    paths = [cohort.features[enc] / f"{sid}.h5" for sid in cohort.ids]
    bank = FeatureBank.load(paths, cohort.ids, tumorbeds=cohort.beds(enc), tile_stats=feats != "-",
                            centre_embeddings=centre_embeddings and feats != "statsonly")
    if feats == "statsonly":  # the tile statistics alone: what the learned embedding adds
        bank.features = bank.features[:, -len(COLUMNS):].contiguous()
    return bank


def split_groups(cohort: Cohort, split: str) -> tuple[np.ndarray, int]:
    if split == "random":
        return np.array(cohort.ids, dtype=object), 5
    return cohort.centres.astype(object), len(np.unique(cohort.centres))


def mil_cv(cohort: Cohort, split: str, enc: str, agg: str, feats: str, args) -> dict:
    from weakstil.mil import cross_validate

    cfg = train_config(agg, feats, args)
    bank = load_bank(cohort, enc, feats, cfg.centre_embeddings)
    groups, k = split_groups(cohort, split)
    t0 = time.perf_counter()
    cv = cross_validate(bank, cohort.labels, groups, cfg, k)
    row = slide_metrics(cohort.labels, np.array([s.stil for s in cv.scores]))
    row["tile_r"] = tile_pearson(cohort, {b.slide_id: (b.coords, s.tile_stil, b.tile_mask)
                                          for b, s in zip(bank.bags, cv.scores)})
    row["seconds"] = time.perf_counter() - t0
    return row


def mil_transfer(a: Cohort, b: Cohort, enc: str, agg: str, feats: str, args) -> list[dict]:
    """Train on all of A (final model + CV fold models), score B: final and ensemble rows."""
    from weakstil.mil.ensemble import score_slides_ensemble
    from weakstil.mil import cross_validate, fit, score_slides

    cfg = train_config(agg, feats, args)
    bank_a, bank_b = load_bank(a, enc, feats, cfg.centre_embeddings), load_bank(b, enc, feats, cfg.centre_embeddings)
    t0 = time.perf_counter()
    cv = cross_validate(bank_a, a.labels, a.centres.astype(object), cfg, 5 if len(np.unique(a.centres)) >= 5
                        else len(np.unique(a.centres)))
    epochs = cfg.epochs if cfg.stopping == "fixed" else max(1, int(round(float(np.median(cv.best_epochs)))))
    final = fit(bank_a, a.labels, np.arange(len(bank_a)), None, cfg, seed=cfg.seed, epochs=epochs).model
    rows = []
    for tag, scores in (("", score_slides(final, bank_b)), ("+ens", score_slides_ensemble(cv.models, bank_b))):
        row = slide_metrics(b.labels, np.array([s.stil for s in scores]))
        row["tile_r"] = tile_pearson(b, {bb.slide_id: (bb.coords, s.tile_stil, bb.tile_mask)
                                         for bb, s in zip(bank_b.bags, scores)})
        row["seconds"] = time.perf_counter() - t0
        row["variant"] = tag
        rows.append(row)
    return rows


def colour_counts(cohort: Cohort, enc: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(coords, per-tile [lymphocyte px, stroma px]) from the colour rule, cached per slide."""
    from weakstil.files import FeaturesFile

    from colour_rule import tile_counts  # benchmarks/colour_rule.py
    store = cohort.root / "colour-rule"
    store.mkdir(exist_ok=True)
    out = {}
    for sid, path in zip(cohort.ids, cohort.slides):
        f = FeaturesFile.read(cohort.features[enc] / f"{sid}.h5", skip=("features", "tissue_mask", "tile_stats"))
        c, tsl0 = np.asarray(f.coords), f.tile_size_level0
        cached = store / f"{sid}.npy"
        if cached.exists() and np.load(cached).shape[0] == len(c):
            counts = np.load(cached)
        else:
            counts = tile_counts(path, c, tsl0)
            np.save(cached, counts)
        out[sid] = (c, counts)
    return out


def colour_row(train: Cohort, test: Cohort | None, split: str, enc: str, args) -> dict:
    """Slide ratio of the colour rule over the bed, linearly calibrated on the training slides."""
    t0 = time.perf_counter()

    def ratios(c: Cohort):
        counts, beds = colour_counts(c, enc), c.beds(enc)
        r = []
        for sid in c.ids:
            lym, strm = counts[sid][1][beds[sid]].sum(0)
            r.append(100 * lym / max(lym + strm, 1.0))
        return np.array(r), counts, beds

    ra, ca, ba = ratios(train)
    if test is None:
        groups, k = split_groups(train, split)
        from weakstil.cohort import group_kfold

        folds = group_kfold(groups, k, seed=args.seed)
        fits = {int(f): np.polyfit(ra[folds != f], train.labels[folds != f], 1) for f in np.unique(folds)}
        coef = [fits[int(f)] for f in folds]
        target, r, counts, beds = train, ra, ca, ba
    else:
        a_, b_ = np.polyfit(ra, train.labels, 1)
        r, counts, beds = ratios(test)
        coef = [(a_, b_)] * len(test.ids)
        target = test
    pred = np.clip([a_ * x + b_ for (a_, b_), x in zip(coef, r)], 0, 100)
    row = slide_metrics(target.labels, np.asarray(pred))
    tiles = {}
    for sid, (a_, b_) in zip(target.ids, coef):
        c, n = counts[sid]
        tiles[sid] = (c, np.clip(a_ * 100 * n[:, 0] / np.maximum(n[:, 0] + n[:, 1], 1.0) + b_, 0, 100), beds[sid])
    row["tile_r"] = tile_pearson(target, tiles)
    row["seconds"] = time.perf_counter() - t0
    return row


# --- main -------------------------------------------------------------------------------------


def fmt(v, d: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def cached(cache: Path, key: dict, compute):
    path = cache / "results" / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".json")
    if path.exists():
        return json.loads(path.read_text())
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "value": value}, default=float, indent=1))
    return {"key": key, "value": value}


def main() -> None:
    from weakstil.settings import TILE_PRIOR_STROMA
    from weakstil.stain import STAIN_ESTIMATE_VERSION
    from weakstil.tilestats import TILESTATS_VERSION

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohorts", default="hard,default", help="hard and/or default (look B is made for hard)")
    ap.add_argument("--slides", type=int, default=60)
    ap.add_argument("--slides-b", type=int, default=30, help="slides of the look-B cohort")
    ap.add_argument("--size-mm", type=float, nargs=2, default=(2.0, 2.0))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--look-b", default="alt", help="the look of cohort B (weakstil synth --look)")
    ap.add_argument("--splits", default="random,centre,look")
    ap.add_argument("--rows", default=DEFAULT_ROWS)
    ap.add_argument("--pretrain-steps", type=int, default=None, help="default: weakstil pretrain's default")
    ap.add_argument("--pretrain-seed", type=int, default=None,
                    help="seed of the pretraining alone (default: --seed, which also draws the cohorts)")
    ap.add_argument("--pretrain-augment", default=None,
                    help='JSON overrides of the pretraining augmentation, e.g. \'{"noise_p": 0.5}\'')
    ap.add_argument("--epochs", type=int, default=None, help="default: weakstil train's default")
    ap.add_argument("--stopping", default=None, help="fixed or early (default: weakstil train's default)")
    ap.add_argument("--feature-noise", type=float, default=None, help="default: weakstil train's default")
    ap.add_argument("--centre-embeddings", type=int, choices=(0, 1), default=None,
                    help="1/0: per-slide centred embeddings or not (default: weakstil train's default)")
    ap.add_argument("--seeds", default=None, help="comma-separated training seeds: the table shows mean ± sd "
                    "(default: --seed alone)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--stain-norm", default="card", choices=("card", "none", "macenko"),
                    help="tile stain normalisation before the encoder, in pretraining and embedding "
                         "(weakstil embed --stain-norm; 'card': the encoder card's, none for ours)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "accuracy")
    ap.add_argument("--reembed", action="store_true", help="embed again even where this benchmark's features exist")
    args = ap.parse_args()
    args.train_seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else [args.seed]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("weakstil.mil", "weakstil.train", "weakstil.tumorbed", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    t_all = time.perf_counter()
    size = tuple(args.size_mm)
    rows = [r.split("/") if r != "colour" else ["-", "colour", "-"] for r in args.rows.split(",")]
    splits = args.splits.split(",")
    encs = sorted({r[0] for r in rows if r[0] != "-"})

    unknown = [k for k in args.cohorts.split(",") if k not in ("hard", "default")]
    if unknown:  # it made a default-look cohort under that name (minutes) and measured it
        raise SystemExit(f"error: --cohorts {args.cohorts}: {', '.join(unknown)} is not a cohort kind. "
                         "Fix: hard and/or default, e.g. --cohorts hard,default")
    cohorts: dict[str, Cohort] = {}
    for kind in args.cohorts.split(","):
        csv = make_cohort(args.cache, kind, args.slides, args.seed, size)
        if csv is not None:
            cohorts[kind] = Cohort(kind, csv)
        if "look" in splits and csv is not None:
            csv_b = make_cohort(args.cache, f"{kind}-b", args.slides_b, args.seed + 1, size, args.look_b)
            if csv_b is not None:
                cohorts[f"{kind}-b"] = Cohort(f"{kind}-b", csv_b)
    timings = {}
    for name, c in cohorts.items():
        if name.endswith("-b"):
            continue
        t0 = time.perf_counter()
        enc_dir = pretrained_encoder(args.cache, name, c.slides, args) if "pre" in encs else None
        timings[f"{name}: pretrain"] = time.perf_counter() - t0
        for enc in encs:
            src, weights = (enc_dir, None) if enc == "pre" else ("small-cnn", "random")
            tag = Path(str(src)).name + ("" if args.stain_norm == "card" or enc == "pre" else f"-{args.stain_norm}")
            t0 = time.perf_counter()
            c.features[enc] = embed_all(c.slides, src, weights, args.cache / f"features-{name}-{tag}", args.reembed,
                                        args.stain_norm)
            timings[f"{name}: embed {enc}"] = time.perf_counter() - t0
            if f"{name}-b" in cohorts:  # look B through A's encoder (or the same random one)
                b = cohorts[f"{name}-b"]
                b.features[enc] = embed_all(b.slides, src, weights, args.cache / f"features-{name}-b-{tag}",
                                            args.reembed, args.stain_norm)

    results = []
    for name, c in cohorts.items():
        if name.endswith("-b"):
            continue
        for split in splits:
            pairs = [(c, None)] if split != "look" else ([(c, cohorts[f"{name}-b"])] if f"{name}-b" in cohorts else [])
            for a, b in pairs:
                for enc, agg, feats in rows:
                    if enc == "-":  # the colour rule reads tile coordinates from any features (same tiling)
                        enc = sorted(a.features)[0]
                    elif b is not None and enc not in b.features:
                        continue
                    for seed in (args.train_seeds if agg != "colour" else [args.seed]):
                        args.train_seed = seed
                        cfg = train_config(agg if agg != "colour" else "mean", feats, args)  # resolved settings
                        key = {"cohort": a.name, "test": b.name if b else None, "n": len(a.ids), "split": split,
                               "row": [enc if agg != "colour" else "-", agg, feats], "epochs": cfg.epochs,
                               "stopping": cfg.stopping, "feature_noise": cfg.feature_noise,
                               "centre_embeddings": cfg.centre_embeddings, "seed": args.seed, "train_seed": seed,
                               "features": str(a.features.get(enc).resolve()), "v": 5,  # + what made them:
                               "stain_estimate": STAIN_ESTIMATE_VERSION, "tilestats": TILESTATS_VERSION}
                        if agg != "colour":  # the MIL's width and models per fold (older results had 128 and 1)
                            key.update(hidden=cfg.hidden, members=cfg.members)
                            if TILE_PRIOR_STROMA:  # tile r is of the published tiles (older results: raw scores)
                                key.update(tile_prior_stroma=TILE_PRIOR_STROMA)
                        log.info("%s / %s / %s / seed %d", a.name, split, "/".join([enc, agg, feats]), seed)
                        if agg == "colour":
                            out = cached(args.cache, key, lambda: [colour_row(a, b, split, enc, args)])
                        elif b is None:
                            out = cached(args.cache, key, lambda: [mil_cv(a, split, enc, agg, feats, args)])
                        else:
                            out = cached(args.cache, key, lambda: mil_transfer(a, b, enc, agg, feats, args))
                        for v in out["value"]:
                            results.append({"cohort": a.name, "split": split if b is None else f"{a.name}->{b.name}",
                                            "row": "colour rule" if agg == "colour" else f"{enc}/{agg}/{feats}"
                                            + v.get("variant", ""), "train_seed": seed, **v})

    def stat(vals: list[float], d: int = 3) -> str:  # mean ± sd over the training seeds
        v = np.array([np.nan if x is None else x for x in vals], dtype=float)
        return fmt(float(v.mean()), d) + (f" ± {fmt(float(v.std(ddof=1)), d)}" if len(v) > 1 else "")

    lines = ["| cohort | split | row | seeds | slide R² | MAE | AUC@30 | tile r | s |",
             "|---|---|---|---|---|---|---|---|---|"]
    grouped: dict[tuple, list[dict]] = {}
    for r in results:
        grouped.setdefault((r["cohort"], r["split"], r["row"]), []).append(r)
    for (cohort, split, row), rs in grouped.items():
        lines.append(f"| {cohort} | {split} | {row} | {len(rs)} | {stat([r['r2'] for r in rs])} | "
                     f"{stat([r['mae'] for r in rs], 2)} | {stat([r['auc30'] for r in rs])} | "
                     f"{stat([r['tile_r'] for r in rs])} | {np.mean([r['seconds'] for r in rs]):.0f} |")
    lines += ["", "steps: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
              f"total {time.perf_counter() - t_all:.0f} s; targets (hard, leave-style-out): R² >= 0.9, "
              "AUC@30 >= 0.97, tile r >= 0.85, R² >= colour rule + 0.2; default look R² >= 0.95"]
    text = "\n".join(lines)
    print(text)
    (args.cache / "results.md").write_text(text + "\n")
    (args.cache / "results.json").write_text(json.dumps(results, indent=1, default=float) + "\n")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
