"""A made-up cohort whose tile embeddings encode a known tile sTIL (no slides, no encoder).

Each tile has a latent sTIL ``u`` (0-100); its feature vector is
``W @ [u/100, nuisance...] + noise`` and the slide label is the mean ``u`` of its tiles
(of its tumour-bed tiles when ``tumorbed`` is planted). With ``stroma`` every tile also has a
stroma share ``s`` encoded in its features (and written, with noise, as the feature file's
``stroma_estimate``); the label is then the stroma-weighted mean ``sum(s * u) / sum(s)`` of the
sTIL definition, and a slide-dependent share of tiles are tumour with little stroma and any sTIL,
so the plain mean of ``u`` is biased. A model trained on slide labels
only must recover ``u`` per tile to do well: that is the weak-label-to-tile property.
The feature files follow the layout of ``weakstil embed``'s cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

ENCODER = "planted"
WEIGHTS = "ab" * 32


#: ``weakstil train`` options for tests that need files written, not learning.
TRAIN_BRIEF = ("--hidden", "8", "--epochs", "2", "--members", "1", "--threads", "1")


def said(proc) -> str:
    """A finished CLI run's stderr on one line (rich wraps long messages)."""
    return " ".join(proc.stderr.split())


def write_feature_file(path: Path, slide_id: str, feats: np.ndarray, coords: np.ndarray, *, encoder: str = ENCODER,
                       weights_sha256: str = WEIGHTS, mpp: float = 0.5, tile_px: int = 224,
                       tumorbed: np.ndarray | None = None, complete: int = 1,
                       stroma_estimate: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=feats.astype(np.float32))
        f.create_dataset("coords", data=coords.astype(np.int64))
        f.create_dataset("tissue_fraction", data=np.ones(len(coords), np.float32))
        ds = f.create_dataset("tissue_mask", data=np.ones((8, 8), np.uint8))
        ds.attrs["mpp"] = 4.0
        if tumorbed is not None:
            f.create_dataset("tumorbed", data=tumorbed.astype(bool))
        if stroma_estimate is not None:
            f.create_dataset("stroma_estimate", data=stroma_estimate.astype(np.float32))
        f.attrs.update({
            "tile_size_level0": tile_px * mpp / 0.25, "mpp": mpp, "tile_px": tile_px, "slide_id": slide_id,
            "slide_mpp": 0.25, "encoder": encoder, "encoder_card": json.dumps({"name": encoder, "dim": feats.shape[1]}),
            "weights_sha256": weights_sha256,
            "tiling_key": json.dumps({"mpp": mpp, "tile_px": tile_px, "overlap_px": 0}),
            "cache_key": "planted", "complete": complete,
        })
    return path


def make_planted_cohort(root: Path, n_slides: int = 40, *, dim: int = 32, tiles: tuple[int, int] = (120, 220),
                        n_groups: int = 8, seed: int = 0, noise: float = 0.3, tumorbed: bool = False,
                        nonlinear: bool = True, stroma: bool = False) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Write ``root/labels.csv``, ``root/slides/*.tiff`` (placeholders) and ``root/features/*.h5``.

    Returns the label table and the latent tile sTIL per slide (with ``stroma``: ``(u, s)`` pairs).
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "slides").mkdir(exist_ok=True)
    n_latent = 5 if stroma else 4
    W = rng.normal(size=(n_latent, dim))
    group_shift = rng.normal(scale=0.8, size=(n_groups, n_latent - 1))
    rows, truth = [], {}
    for i in range(n_slides):
        sid = f"S{i:03d}"
        g = i % n_groups
        n = int(rng.integers(*tiles))
        mean = rng.uniform(2, 90) / 100
        conc = 6.0
        u = 100 * rng.beta(mean * conc + 0.05, (1 - mean) * conc + 0.05, size=n)
        if stroma:  # a slide-dependent share of tumour tiles with little stroma and any sTIL (its few
            # stroma pixels decide nothing): the plain mean of u is biased, differently per slide
            tumour = rng.random(n) < rng.uniform(0.0, 0.9)
            s = np.where(tumour, rng.uniform(0.02, 0.15, size=n), rng.uniform(0.5, 1.0, size=n))
            u = np.where(tumour, rng.uniform(0, 100, size=n), u)
            nuisance = group_shift[g] + rng.normal(scale=1.0, size=(n, n_latent - 1))
            nuisance[:, 0] = 2 * s - 1
        else:
            nuisance = group_shift[g] + rng.normal(scale=1.0, size=(n, n_latent - 1))
        z = np.c_[u / 100, nuisance]
        if nonlinear:
            z[:, 0] = np.tanh(2 * (z[:, 0] - 0.5))  # monotone but not linear in u
        feats = z @ W + noise * rng.normal(size=(n, dim))
        side = int(np.ceil(np.sqrt(n)))
        coords = np.array([(448 * (k % side), 448 * (k // side)) for k in range(n)], dtype=np.int64)
        bed = None
        if tumorbed:
            bed = np.zeros(n, dtype=bool)
            bed[: max(1, int(0.6 * n))] = True
            # outside the bed tiles look different and carry no label information
            u_out = u.copy()
            feats[~bed] += 2.0
            label = float(u[bed].mean())
        elif stroma:
            u_out = (u, s)
            label = float((s * u).sum() / s.sum())
        else:
            u_out = u
            label = float(u.mean())
        est = np.clip(s + rng.normal(scale=0.05, size=n), 0, 1) if stroma else None
        write_feature_file(root / "features" / f"{sid}.h5", sid, feats, coords, tumorbed=bed, stroma_estimate=est)
        (root / "slides" / f"{sid}.tiff").write_bytes(b"placeholder")
        rows.append({"slide_id": sid, "path": f"slides/{sid}.tiff", "stil": round(label, 3), "group": f"G{g}"})
        truth[sid] = u_out
    table = pd.DataFrame(rows)
    table.to_csv(root / "labels.csv", index=False)
    return table, truth


def write_generic_tiff(path: Path, img: np.ndarray, mpp: float) -> Path:
    """A generic tiled TIFF (JPEG, x4 levels) of ``img`` at ``mpp``, as the synthetic generator writes."""
    from weakstil.synth.pyramid import strip_buffer, write_pyramid

    h, w = img.shape[:2]

    def strips():
        for y0 in range(0, h, 1024):
            rows = min(1024, h - y0)
            buf = strip_buffer(w, rows)
            buf[:rows, :w] = img[y0:y0 + rows]
            yield y0, rows, buf

    write_pyramid(path, w, h, strips(), mpp=mpp)
    return path
