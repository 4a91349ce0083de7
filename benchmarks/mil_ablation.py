"""MIL training ablation on the accuracy benchmark's cached features (no re-embedding): test R²
every ``--every`` epochs for leave-centre-out and look A -> B, per training seed and variant
(docs/accuracy.md, "Accuracy off the home ground"). Needs ``benchmarks/accuracy.py`` to have run first.

    nice -n 10 .venv/bin/python benchmarks/mil_ablation.py --variants base,noise0.5,ecentre --seeds 0,1,2 --epochs 60
    .venv/bin/python benchmarks/mil_ablation_table.py .bench/accuracy/ablation.jsonl 30,40,50

A private training loop (the library's ``fit`` without validation) so the variants can be
switched without touching the library: ``base`` = fixed epochs, no noise, raw embeddings."""
import sys, json, time, math, argparse
from pathlib import Path
import numpy as np
ROOT = Path(__file__).resolve().parents[1]; sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "benchmarks"))
import accuracy as A

ap = argparse.ArgumentParser()
ap.add_argument("--cohort", default="hard")
ap.add_argument("--variants", default="base")
ap.add_argument("--seeds", default="0,1,2")
ap.add_argument("--epochs", type=int, default=80)
ap.add_argument("--every", type=int, default=10)
ap.add_argument("--splits", default="centre,look")
ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / ".bench/accuracy/ablation.jsonl"))
args = ap.parse_args()
# torch and the MIL code after the arguments: `--help` answers without importing them
import torch  # noqa: E402
from weakstil.mil.config import TrainConfig  # noqa: E402
from weakstil.mil.model import TileMIL, score_slides  # noqa: E402
from weakstil.mil.training import _feature_stats, _sample_batch, _loss_fn  # noqa: E402
from weakstil.runtime import Deterministic, TorchThreads  # noqa: E402
from weakstil.metrics import r2_score, mae  # noqa: E402
cache = ROOT / ".bench/accuracy"
from inputs import need  # noqa: E402
from mil_members import ACCURACY_RUN, COHORTS, features_dir  # noqa: E402
# the accuracy benchmark's cohorts at its defaults, and the one pretrained encoder's features it made (the
# folders were named by one machine's encoder hash, e.g. features-hard-encoder-hard-ca22b25ef3)
kind = "hard" if args.cohort == "hard" else "default"
for name in COHORTS[kind]:
    need(cache / name / "labels.csv", "accuracy benchmark's cohort", f"run `{ACCURACY_RUN[kind]}` first")
ca = A.Cohort(kind, cache / COHORTS[kind][0] / "labels.csv"); ca.features["pre"] = features_dir(cache, kind, None)
cb = A.Cohort(f"{kind}-b", cache / COHORTS[kind][1] / "labels.csv"); cb.features["pre"] = features_dir(cache, f"{kind}-b", None)
bank_a = A.load_bank(ca, "pre", "stats"); bank_b = A.load_bank(cb, "pre", "stats")
NS = 19  # tile stats columns
from weakstil.tilestats import COLUMNS; NS = len(COLUMNS)

def slide_norm(bank):
    f = bank.features.clone()
    for b in bank.bags:
        x = f[b.offset:b.offset+b.n, -NS:]
        m, s = x.mean(0), x.std(0).clamp_min(1e-3)
        f[b.offset:b.offset+b.n, -NS:] = (x - m) / s
    bank.features = f
banks = {"raw": (bank_a, bank_b)}

VARIANTS = {
 "base": dict(),
 "lr1e-3": dict(lr=1e-3),
 "wd1e-2": dict(weight_decay=1e-2),
 "drop5": dict(dropout=0.5),
 "h64": dict(hidden=64),
 "noise0.5": dict(noise=0.5),
 "noise1": dict(noise=1.0),
 "fdrop0.2": dict(fdrop=0.2),
 "snorm": dict(snorm=True),
 "nostats": dict(nostats=True),
 "ecentre": dict(ecentre=True),
 "noise0.5-ecentre": dict(noise=0.5, ecentre=True),
}

def run_fit(bank, labels, train_idx, cfg, seed, epochs, noise, fdrop, evals):
    with Deterministic(), TorchThreads(1):
        torch.manual_seed(seed); rng = np.random.default_rng(seed)
        model = TileMIL(cfg.architecture(bank.dim))
        mean, std = _feature_stats(bank, train_idx)
        model.feature_mean.copy_(mean); model.feature_std.copy_(std)
        with torch.no_grad():
            p = float(np.clip(labels[train_idx].mean()/100, .01, .99)); model.score.bias.fill_(math.log(p/(1-p)))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        lf = _loss_fn(cfg); y = torch.from_numpy(labels)
        out = {}
        for ep in range(1, epochs+1):
            model.train(); order = rng.permutation(train_idx)
            for st in range(0, len(order), cfg.batch_slides):
                bt = order[st:st+cfg.batch_slides]
                x, mask, est = _sample_batch(bank, bt, cfg.max_tiles, rng, torch.device("cpu"))
                if noise: x = x + noise * std * torch.randn_like(x)
                if fdrop: x = torch.where(torch.rand_like(x) < fdrop, mean.expand_as(x), x)
                pred, _, _ = model(x, mask, est)
                loss = lf(pred, y[torch.from_numpy(bt)])
                opt.zero_grad(); loss.backward(); opt.step()
            if ep % args.every == 0:
                model.eval(); out[ep] = [fn(model) for fn in evals]
        return out

labels_a = ca.labels.astype(np.float32)
fo = open(args.out, "a")
for vname in args.variants.split(","):
    v = VARIANTS[vname]
    ba, bb = bank_a, bank_b
    if v.get("snorm") or v.get("nostats") or v.get("ecentre"):
        ba, bb = A.load_bank(ca, "pre", "stats"), A.load_bank(cb, "pre", "stats")
        if v.get("snorm"): slide_norm(ba); slide_norm(bb)
        elif v.get("ecentre"):
            for bk in (ba, bb):
                for b in bk.bags:
                    x = bk.features[b.offset:b.offset+b.n, :-NS]
                    bk.features[b.offset:b.offset+b.n, :-NS] = x - x.mean(0)
        else:
            ba.features = ba.features[:, :-NS].contiguous(); bb.features = bb.features[:, :-NS].contiguous()
    cfg = TrainConfig(aggregator="stroma", stroma_weight="learned", tile_stats=not v.get("nostats"),
                      **{k: x for k, x in v.items() if k in ("lr", "weight_decay", "dropout", "hidden")})
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.time()
        rec = {"cohort": args.cohort, "variant": vname, "seed": seed}
        if "centre" in args.splits:
            oof = {}
            for c in np.unique(ca.centres):
                te = np.flatnonzero(ca.centres == c); tr = np.flatnonzero(ca.centres != c)
                res = run_fit(ba, labels_a, tr, cfg, seed*100+1, args.epochs, v.get("noise", 0), v.get("fdrop", 0),
                              [lambda m, te=te: [s.stil for s in score_slides(m, ba, te)]])
                for ep, (p,) in res.items(): oof.setdefault(ep, np.zeros(len(labels_a)))[te] = p
            rec["centre"] = {ep: [r2_score(labels_a, p), mae(labels_a, p)] for ep, p in oof.items()}
            rec["centre_pred"] = {ep: p.tolist() for ep, p in oof.items()}
        if "look" in args.splits:
            res = run_fit(ba, labels_a, np.arange(len(labels_a)), cfg, seed*100, args.epochs, v.get("noise", 0), v.get("fdrop", 0),
                          [lambda m: [s.stil for s in score_slides(m, bb)]])
            rec["look"] = {ep: [r2_score(cb.labels, np.array(p)), mae(cb.labels, np.array(p))] for ep, (p,) in res.items()}
            rec["look_pred"] = {ep: p for ep, (p,) in res.items()}
        rec["seconds"] = time.time() - t0
        fo.write(json.dumps(rec, default=float) + "\n"); fo.flush()
        print(vname, seed, f"{rec['seconds']:.0f}s", {s: {ep: round(x[0], 3) for ep, x in rec[s].items()} for s in ("centre", "look") if s in rec}, flush=True)
