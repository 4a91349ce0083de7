"""Table of benchmarks/mil_ablation.py's records: mean ± sd over seeds, and the seed ensemble."""
import argparse, json, sys, numpy as np, collections
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("records", nargs="?", default=str(ROOT / ".bench/accuracy/ablation.jsonl"),
                help="the JSON-lines records of benchmarks/mil_ablation.py (default: %(default)s)")
ap.add_argument("epochs", nargs="?", default="30,40,60", help="comma-separated epoch counts to tabulate (default: %(default)s)")
args = ap.parse_args()
import pandas as pd
from weakstil.metrics import r2_score
sys.path.insert(0, str(ROOT / "benchmarks"))
from inputs import need  # noqa: E402
from mil_members import ACCURACY_RUN  # noqa: E402
f = need(args.records, "mil_ablation records", "run benchmarks/mil_ablation.py first (after benchmarks/accuracy.py)")
eps = [int(e) for e in args.epochs.split(",")]
recs = {}
for line in open(f):
    r = json.loads(line)
    if "centre_pred" not in r: continue
    recs[(r["cohort"], r["variant"], r["seed"])] = r
labels = {}
for c, csv in (("hard", "cohort-hard-n60-s0-2x2mm"), ("hard-b", "cohort-hard-b-n30-s1-2x2mm"), ("default", "cohort-default-n120-s0-2.5x2.5mm"), ("default-b", "cohort-default-b-n30-s1-2.5x2.5mm")):
    labels[c] = pd.read_csv(need(f"{ROOT}/.bench/accuracy/{csv}/labels.csv", "accuracy benchmark's cohort",
                                 f"run `{ACCURACY_RUN[c.removesuffix('-b')]}` first"))
from weakstil.cohort import read_cohort
L = {c: read_cohort(f"{ROOT}/.bench/accuracy/{p}/labels.csv").labels for c, p in (("hard", "cohort-hard-n60-s0-2x2mm"), ("hard-b", "cohort-hard-b-n30-s1-2x2mm"), ("default", "cohort-default-n120-s0-2.5x2.5mm"), ("default-b", "cohort-default-b-n30-s1-2.5x2.5mm"))}
by = collections.defaultdict(list)
for (c, v, s), r in recs.items(): by[(c, v)].append(r)
print("| cohort | variant | E | n | centre R² | look R² | avg | centre seed-ens | look seed-ens |")
for (c, v), rs in by.items():
    for e in eps:
        k = str(e)
        if k not in rs[0]["centre"]: continue
        ce = np.array([r["centre"][k][0] for r in rs]); lo = np.array([r["look"][k][0] for r in rs])
        cp = np.mean([r["centre_pred"][k] for r in rs], 0); lp = np.mean([r["look_pred"][k] for r in rs], 0)
        print(f"| {c} | {v} | {e} | {len(rs)} | {ce.mean():.3f} ± {ce.std(ddof=1) if len(rs)>1 else 0:.3f} | {lo.mean():.3f} ± {lo.std(ddof=1) if len(rs)>1 else 0:.3f} | {(ce.mean()+lo.mean())/2:.3f} | {r2_score(L[c], cp):.3f} | {r2_score(L[c+'-b'], lp):.3f} |")
