"""Models per fold and MLP width on the accuracy benchmark's cached features (no re-embedding):
slide R², MAE and tile r (vs the true tile sTIL) for leave-centre-out, random 5-fold and the
unseen look (train on cohort A, score B with the fold ensemble), per training seed, with the
library's own ``cross_validate`` (docs/accuracy.md, "Accuracy off the home ground"). Needs
``benchmarks/accuracy.py`` to have run first (its cohorts and features in ``--cache``).

Split ``high``: label-range extrapolation. The models are trained (``--members`` of them, as one
cross-validation fold) on the slides below the cohort's 75th sTIL percentile and score the top
quarter, which they never saw anything like; R² is then over that narrow range, so the row also
prints the mean signed error (bias) of those slides.

    B="nice -n 10 .venv/bin/python benchmarks/mil_members.py"
    $B --variants h128m1:hidden=128,members=1 h64m5:hidden=64,members=5 --seeds 0,1,2
    $B --cohort default --splits centre,look --variants h128m1:hidden=128,members=1 h64m5:hidden=64,members=5
    $B --splits high,centre --variants learned:stroma_weight=learned estimate:stroma_weight=estimate
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

#: The cohorts benchmarks/accuracy.py makes by default: (A, B) folder names per kind.
COHORTS = {"hard": ("cohort-hard-n60-s0-2x2mm", "cohort-hard-b-n30-s1-2x2mm"),
           "default": ("cohort-default-n120-s0-2.5x2.5mm", "cohort-default-b-n30-s1-2.5x2.5mm")}
#: the accuracy benchmark's run that makes them (and the features read here)
ACCURACY_RUN = {"hard": "benchmarks/accuracy.py --cohorts hard",
                "default": "benchmarks/accuracy.py --cohorts default --slides 120 --size-mm 2.5 2.5"}


def parse_variant(text: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` -> (name, TrainConfig keywords; ints, floats or strings)."""
    name, _, spec = text.partition(":")
    kw: dict = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        for cast in (int, float, str):
            try:
                kw[key] = cast(value)
                break
            except ValueError:
                continue
    return name, kw


def features_dir(cache: Path, cohort: str, encoder: str | None) -> Path:
    found = sorted(cache.glob(f"features-{cohort}-{encoder or 'encoder-*'}"))
    if len(found) != 1:
        raise SystemExit(f"error: {cache}: {len(found)} feature folders for {cohort!r} "
                         f"({', '.join(p.name for p in found) or 'none'}); pass --encoder NAME")
    return found[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "accuracy")
    ap.add_argument("--cohort", choices=sorted(COHORTS), default="hard")
    ap.add_argument("--encoder", default=None, help="feature folder suffix, e.g. encoder-hard-2aa9f0d7e7 or "
                                                    "small-cnn-macenko (default: the one pretrained encoder)")
    ap.add_argument("--variants", nargs="+", default=["h128m1:hidden=128,members=1", "h64m5:hidden=64,members=5"])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--splits", default="centre,random,look")
    args = ap.parse_args()

    import accuracy as A
    from weakstil.mil import cross_validate
    from weakstil.mil.config import TrainConfig
    from weakstil.mil.ensemble import score_slides_ensemble
    from weakstil.mil.training import fit

    from inputs import need

    name_a, name_b = COHORTS[args.cohort]
    for name in (name_a, name_b):
        need(args.cache / name / "labels.csv", "accuracy benchmark's cohort",
             f"run `{ACCURACY_RUN[args.cohort]} --cache {args.cache}` first")
    a = A.Cohort(args.cohort, args.cache / name_a / "labels.csv")
    b = A.Cohort(f"{args.cohort}-b", args.cache / name_b / "labels.csv")
    a.features["pre"] = features_dir(args.cache, args.cohort, args.encoder)
    b.features["pre"] = features_dir(args.cache, f"{args.cohort}-b", args.encoder)
    bank_a, bank_b = A.load_bank(a, "pre", "stats"), A.load_bank(b, "pre", "stats")
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"features: {a.features['pre'].name}; seeds {seeds}")
    print("| variant | split | slide R² | MAE | bias | tile r |\n|---|---|---|---|---|---|")
    for text in args.variants:
        name, kw = parse_variant(text)
        for split in args.splits.split(","):
            rows = []
            for seed in seeds:
                cfg = TrainConfig(aggregator="stroma", tile_stats=True, seed=seed, **kw)
                labels = a.labels
                if split == "look":  # train on A (leave-centre-out folds), score B with the fold ensemble
                    cv = cross_validate(bank_a, a.labels, a.centres.astype(object), cfg, len(np.unique(a.centres)))
                    test, bags, scores = b, bank_b.bags, score_slides_ensemble(cv.models, bank_b)
                    labels = b.labels
                elif split == "high":  # train below the 75th percentile, score the top quarter
                    high = a.labels >= np.quantile(a.labels, 0.75)
                    models = [fit(bank_a, a.labels, np.flatnonzero(~high), None, cfg, seed=seed + 1 + 1000 * m).model
                              for m in range(cfg.members)]
                    test, scores = a, score_slides_ensemble(models, bank_a, np.flatnonzero(high))
                    bags = [bag for bag, h in zip(bank_a.bags, high) if h]
                    labels = a.labels[high]
                else:
                    groups, k = A.split_groups(a, split)
                    test, bags, scores = a, bank_a.bags, cross_validate(bank_a, a.labels, groups, cfg, k).scores
                pred = np.array([s.stil for s in scores])
                m = A.slide_metrics(labels, pred)
                tile_r = A.tile_pearson(test, {bag.slide_id: (bag.coords, s.tile_stil, bag.tile_mask)
                                               for bag, s in zip(bags, scores)})
                rows.append((m["r2"], m["mae"], float(np.mean(pred - labels)), tile_r))
            r = np.array(rows)
            print(f"| {name} | {split} | {r[:, 0].mean():.3f} ± {r[:, 0].std():.3f} | {r[:, 1].mean():.2f} "
                  f"| {r[:, 2].mean():+.2f} | {r[:, 3].mean():.3f} ± {r[:, 3].std():.3f} |", flush=True)


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
