"""Does self-supervised pretraining help? Leave-one-out k-NN on tiles with known class.

    .venv/bin/python benchmarks/knn_eval.py [--encoder DIR] [--steps 300] [--work .bench/knn]

Compares tile embeddings of our pretrained encoder with the same network at random init (and a
6-number colour baseline: per-channel mean and std of RGB) by leave-one-out k-NN accuracy
(k = 1 and 3, cosine similarity, ties broken by the nearest neighbour) on

* the 32 real Kather CRC-VAL-HE-7K tiles in tests/data/kather (8 classes x 4), and their
  LYM / STR / TUM subset (3 x 4), CC BY 4.0, see tests/data/kather/ATTRIBUTION.md;
* synthetic tiles with known class, when ``weakstil.synth`` is available: tiles of held-out
  synthetic slides whose truth says tumour (tumour >= 60 %), lymphocyte-poor stroma (stroma
  >= 60 %, sTIL < 5 %) or lymphocyte-rich stroma (stroma >= 60 %, sTIL >= 25 %).

Without ``--encoder``, the script pretrains ``small-cnn`` itself (``weakstil.pretrain``) on the
CMU slide plus the synthetic training slides (never on the evaluation slides or on Kather),
and keeps the result in ``--work`` so a rerun reuses it. Chance level is 1/8 and 1/3.
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KATHER = ROOT / "tests" / "data" / "kather"
CMU = ROOT / "tests" / "data" / "CMU-1-Small-Region.svs"


def knn_loo(features: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out k-NN accuracy with cosine similarity (majority vote, ties -> nearest)."""
    f = features / (np.linalg.norm(features, axis=1, keepdims=True) + 1e-12)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    correct = 0
    for i in range(len(f)):
        nn = np.argsort(-sim[i], kind="stable")[:k]
        votes: dict[str, int] = {}
        for j in nn:
            votes[labels[j]] = votes.get(labels[j], 0) + 1
        best = max(votes.values())
        winners = [labels[j] for j in nn if votes[labels[j]] == best]  # in order of similarity
        correct += winners[0] == labels[i]
    return correct / len(f)


def colour_features(tiles: np.ndarray) -> np.ndarray:
    x = tiles.reshape(len(tiles), -1, 3).astype(np.float32) / 255
    return np.concatenate([x.mean(1), x.std(1)], axis=1)


def load_kather() -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    rows = list(csv.DictReader(open(KATHER / "labels.csv")))
    tiles = np.stack([np.asarray(Image.open(KATHER / r["filename"]).convert("RGB")) for r in rows])
    return tiles, np.array([r["label"] for r in rows])


def synth_cohort(work: Path, n_slides: int, seed: int) -> Path | None:
    try:
        from weakstil.synth import generate_cohort
    except ImportError as exc:
        print(f"synthetic tiles skipped: weakstil.synth is not available ({exc})")
        return None
    out = work / f"synth_{n_slides}_{seed}"
    if not (out / "labels.csv").exists():
        t = time.perf_counter()
        generate_cohort(out, n_slides, seed, size_mm=(2.5, 2.5), progress=False)
        print(f"generated {n_slides} synthetic slides in {time.perf_counter() - t:.0f} s -> {out}")
    return out


def synth_tiles(cohort: Path, slide_ids: list[str], per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    from weakstil.slide import Slide

    rng = np.random.default_rng(seed)
    picks: dict[str, list[tuple[str, np.ndarray]]] = {"TUM": [], "STR": [], "LYM-STR": []}
    for sid in slide_ids:
        with h5py.File(cohort / "truth" / f"{sid}.h5") as f:
            t = {k: f["tiles"][k][:] for k in ("coords", "tumor_fraction", "stroma_fraction", "stil")}
        stil = np.nan_to_num(t["stil"], nan=-1)
        classes = {"TUM": t["tumor_fraction"] >= 0.6,
                   "STR": (t["stroma_fraction"] >= 0.6) & (stil >= 0) & (stil < 5),
                   "LYM-STR": (t["stroma_fraction"] >= 0.6) & (stil >= 25)}
        for name, sel in classes.items():
            picks[name] += [(sid, c) for c in t["coords"][sel]]
    tiles, labels = [], []
    for name, items in picks.items():
        take = rng.choice(len(items), size=min(per_class, len(items)), replace=False) if items else []
        for i in sorted(take):
            sid, (x, y) = items[i]
            with Slide.open(cohort / "slides" / f"{sid}.tiff") as s:
                tiles.append(s.read_region(int(x), int(y), 224, 0.5))
            labels.append(name)
    return np.stack(tiles), np.array(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", type=Path, help="a 'weakstil pretrain' directory (default: train one)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--synth-slides", type=int, default=6, help="half for pretraining, half for evaluation")
    ap.add_argument("--cohort", type=Path, help="an existing synthetic cohort (e.g. synth --hard) instead of a new one; "
                    "tiles of its second half are the synthetic evaluation set")
    ap.add_argument("--random-encoder", default=None, help="base card of the random-init network (default: the "
                    "pretrained encoder's base)")
    ap.add_argument("--per-class", type=int, default=30, help="synthetic tiles per class")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random-seeds", type=int, default=5, help="random inits for the spread column")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--work", type=Path, default=ROOT / ".bench" / "knn")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from inputs import need

    if args.encoder is not None:  # before the synthetic slides are made (38 s), not after
        from weakstil.encoders.cards import load_card

        load_card(args.encoder)
    if args.cohort is not None:
        need(args.cohort / "slides", "--cohort's slides/", "a `weakstil synth` cohort folder", kind="folder")

    import torch

    from weakstil.encoders import create_encoder
    from weakstil.pretrain import PretrainConfig, pretrain

    if args.threads:
        torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    if args.cohort is not None:
        cohort = args.cohort
    else:
        cohort = synth_cohort(args.work, args.synth_slides, args.seed) if args.synth_slides >= 2 else None
    train_ids = eval_ids = []
    if cohort is not None:
        ids = sorted(p.stem for p in (cohort / "slides").glob("*.tiff"))
        train_ids, eval_ids = ids[: len(ids) // 2], ids[len(ids) // 2:]

    enc_dir = args.encoder
    if enc_dir is None:
        enc_dir = args.work / f"small-cnn-simclr-{args.steps}-{len(train_ids)}synth-s{args.seed}"
        if not (enc_dir / "card.yaml").exists():
            slides = [CMU] + [cohort / "slides" / f"{s}.tiff" for s in train_ids]
            t = time.perf_counter()
            r = pretrain(slides, enc_dir, PretrainConfig(steps=args.steps, batch_size=args.batch_size,
                                                         seed=args.seed), device="auto",
                         resume=(enc_dir / "checkpoint.safetensors").exists())
            print(f"pretrained small-cnn: {r.steps} steps on {r.n_tiles} tiles of {len(slides)} slides, loss "
                  f"{r.card.training['loss_first']:.3f} -> {r.card.training['loss_last10_mean']:.3f} (mean of last "
                  f"10), {time.perf_counter() - t:.0f} s -> {enc_dir}")
    pre = create_encoder(enc_dir)
    base = args.random_encoder or pre.card.base or pre.card.name
    rnd = create_encoder(base, weights="random", seed=args.seed)
    tr = pre.card.training or {}
    print(f"pretrained encoder: {pre.name} ({pre.card.model}), {tr.get('steps')} SimCLR steps on "
          f"{tr.get('n_tiles')} tiles of {', '.join(tr.get('slides', []))}")

    sets = []
    k_tiles, k_labels = load_kather()
    sets.append(("Kather, 8 classes", k_tiles, k_labels))
    sub = np.isin(k_labels, ["LYM", "STR", "TUM"])
    sets.append(("Kather, LYM/STR/TUM", k_tiles[sub], k_labels[sub]))
    if cohort is not None and eval_ids:
        s_tiles, s_labels = synth_tiles(cohort, eval_ids, args.per_class, args.seed)
        counts = ", ".join(f"{c} {int((s_labels == c).sum())}" for c in np.unique(s_labels))
        sets.append((f"synthetic held-out ({counts})", s_tiles, s_labels))

    others = [create_encoder(base, weights="random", seed=args.seed + 1 + i) for i in range(args.random_seeds - 1)]
    print()
    print("| tiles | n | chance | colour mean/std k=1 | k=3 | random-init k=1 | k=3 | pretrained k=1 | k=3 "
          f"| random-init, {args.random_seeds} seeds: k=1 mean [min-max] | k=3 mean [min-max] |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, tiles, labels in sets:
        feats = {"colour": colour_features(tiles), "random": rnd.embed(tiles), "pre": pre.embed(tiles)}
        cells = [f"{knn_loo(feats[m], labels, k):.3f}" for m in ("colour", "random", "pre") for k in (1, 3)]
        spread = []
        for k in (1, 3):
            accs = [knn_loo(feats["random"], labels, k)] + [knn_loo(e.embed(tiles), labels, k) for e in others]
            spread.append(f"{np.mean(accs):.3f} [{min(accs):.3f}-{max(accs):.3f}]")
        print(f"| {name} | {len(labels)} | {1 / len(np.unique(labels)):.3f} | " + " | ".join(cells + spread) + " |")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
