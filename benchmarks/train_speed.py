"""Time `weakstil train` (5-fold CV + final model) on a large made-up feature cache.

    .venv/bin/python benchmarks/train_speed.py [--slides 300] [--tiles 2000] [--dim 768] [--folds 5] [--members 5]

Features are random but structured (as in tests/planted.py): each tile's embedding encodes
a latent tile sTIL, and the slide label is the mean over its tiles, so the model really has
something to learn and early stopping behaves as on real data. The cache is generated once
under .bench/train_speed/. Prints load and training time and the CV metrics.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def make_cache(root: Path, n_slides: int, n_tiles: int, dim: int, seed: int = 0) -> Path:
    from planted import write_feature_file

    done = root / "labels.csv"
    if done.exists():
        return done
    rng = np.random.default_rng(seed)
    (root / "slides").mkdir(parents=True, exist_ok=True)
    W = rng.normal(size=(8, dim)).astype(np.float32)
    rows = ["slide_id,path,stil,group"]
    for i in range(n_slides):
        sid = f"B{i:04d}"
        m = rng.uniform(0.02, 0.9)
        u = rng.beta(m * 6 + 0.05, (1 - m) * 6 + 0.05, size=n_tiles).astype(np.float32)
        z = np.c_[np.tanh(2 * (u - 0.5)), rng.normal(size=(n_tiles, 7)).astype(np.float32)]
        feats = z @ W + 0.3 * rng.standard_normal((n_tiles, dim), dtype=np.float32)
        side = int(np.ceil(np.sqrt(n_tiles)))
        coords = np.stack([448 * (np.arange(n_tiles) % side), 448 * (np.arange(n_tiles) // side)], 1)
        write_feature_file(root / "features" / f"{sid}.h5", sid, feats, coords)
        (root / "slides" / f"{sid}.tiff").write_bytes(b"placeholder")
        rows.append(f"{sid},slides/{sid}.tiff,{100 * u.mean():.3f},P{i // 2}")  # two slides per patient
    done.write_text("\n".join(rows) + "\n")
    return done


def main() -> None:
    from weakstil import settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slides", type=int, default=300)
    ap.add_argument("--tiles", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--aggregator", default=settings.AGGREGATOR)
    ap.add_argument("--epochs", type=int, default=settings.EPOCHS)
    ap.add_argument("--members", type=int, default=settings.MEMBERS, help="models per fold")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: automatic)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "train_speed")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from weakstil.mil import TrainConfig
    from weakstil.train import train_cohort

    root = args.cache / f"{args.slides}x{args.tiles}x{args.dim}"
    t0 = time.perf_counter()
    csv = make_cache(root, args.slides, args.tiles, args.dim)
    print(f"cache ready in {time.perf_counter() - t0:.1f} s: {root}")
    out = root / f"model-{args.aggregator}-{args.device.replace(':', '')}"
    shutil.rmtree(out, ignore_errors=True)
    load0 = os.getloadavg()[0]  # other processes' CPU use (training picks its threads from it)
    t0 = time.perf_counter()
    cfg = TrainConfig(aggregator=args.aggregator, epochs=args.epochs, device=args.device, threads=args.threads,
                      members=args.members)
    res = train_cohort(csv, root / "features", out, cfg, n_folds=args.folds)
    total = time.perf_counter() - t0
    meta = json.loads((out / "model.json").read_text())
    tr = meta["training"]
    m = res["cv"]["metrics"] if res["cv"] else {}
    from weakstil.runtime import cpu_count

    # what a comparison needs: the torch threads training chose (--threads 0 picks them from the load)
    print(f"{cpu_count()} CPUs, {tr['config'].get('threads')} torch thread(s) used (--threads {args.threads}); "
          f"versions {json.dumps(meta.get('versions', {}), sort_keys=True)}")
    print("| slides | tiles/slide | dim | folds | members | aggregator | device | load avg | load s | total s "
          "| best epochs | CV R² | CV MAE |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.slides} | {args.tiles} | {args.dim} | {args.folds} | {args.members} | {args.aggregator} "
          f"| {args.device} "
          f"| {load0:.1f}-{os.getloadavg()[0]:.1f} "
          f"| {tr['load_seconds']:.1f} | {total:.0f} | {sorted(set(res['cv']['best_epochs'])) if res['cv'] else '-'} "
          f"| {m.get('r2', float('nan')):.3f} | {m.get('mae', float('nan')):.2f} |")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
