"""Tumour evidence per tile: a class-balanced logistic regression on the tile embeddings.

Trained from tumour-bed outlines alone, so its labels are about *where the tumour is*: tiles
well inside an annotated bed are the positive examples, tiles well outside it the negative
ones, and tiles the outline cuts through are left out. Its output is only ever used as
positive evidence (seeds, see weakstil.bed_geometry): a low score never removes a tile that
geometry puts in the bed, so stroma dense with lymphocytes between or around tumour nests is
in the bed whatever the classifier makes of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Tiles with at least this share inside the annotated bed are positive examples ...
POSITIVE_FRACTION = 0.9
#: ... and tiles with at most this share negative ones; tiles in between are not used.
NEGATIVE_FRACTION = 0.1


def slide_standardised(features: np.ndarray) -> np.ndarray:
    """Each embedding dimension centred and scaled over the slide's own tiles: what is left is how
    a tile differs from the rest of its slide, which survives a change of stain or scanner far
    better than the raw embedding does."""
    x = np.asarray(features, np.float32)
    if len(x) < 2:
        return x - x.mean(0) if len(x) else x
    return (x - x.mean(0)) / (x.std(0) + 1e-6)


#: Tile statistics (weakstil.tilestats, colour deconvolution with the slide's own stain vectors)
#: that describe tumour cells: area shares of medium and large *pale* (vesicular) nuclei. Tumour
#: nuclei are 75 µm² and up with open chromatin; lymphocytes are 28-64 µm² and dark, and where
#: they crowd (aggregates, TLS, lymph node) their touching nuclei merge into large *dark* blobs,
#: so the dark and the small bins are left out: the evidence never reads lymphocyte density,
#: present or absent, as tumour.
TUMOUR_NUCLEI_COLUMNS: tuple[str, ...] = tuple(
    f"{size}_pale_{ctx}" for size in ("medium", "large") for ctx in ("stroma", "nest"))


def stats_column_names(attr) -> list[str] | None:
    """A feature file's ``tile_stats_columns`` attribute (JSON text) as a list, or ``None``."""
    import json

    if attr is None:
        return None
    return list(json.loads(attr)) if isinstance(attr, (str, bytes)) else [str(c) for c in attr]


def stats_inputs(tile_stats: np.ndarray | None, columns: list[str] | tuple[str, ...] | None,
                 wanted: tuple[str, ...]) -> np.ndarray:
    """The ``wanted`` columns of a slide's ``tile_stats`` (named by ``columns``), standardised
    over the slide's own tiles like the embeddings. Raises when the file has none of them."""
    from weakstil.errors import WeakSTILError

    if tile_stats is None or columns is None:
        raise WeakSTILError("the detector uses tile statistics but the feature file has none",
                            fix="embed the slide again with this WeakSTIL (it writes tile_stats)")
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise WeakSTILError(f"the feature file's tile statistics lack {missing}",
                            fix="embed the slide again with this WeakSTIL")
    idx = [list(columns).index(c) for c in wanted]
    return slide_standardised(np.asarray(tile_stats, np.float32)[:, idx])


def context_inputs(features: np.ndarray, coords: np.ndarray, tile_size_level0: float,
                   radii: tuple[int, ...] = (), per_slide: bool = False) -> np.ndarray:
    """Each tile's embedding (standardised over its slide when ``per_slide``), next to the mean
    embedding of the (2r+1) x (2r+1) tiles around it for every radius ``r`` in ``radii`` (none:
    the tile's own embedding only)."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import grid_cells

    x = slide_standardised(features) if per_slide else np.asarray(features, np.float32)
    radii = tuple(int(r) for r in radii if int(r) > 0)
    if not radii or len(x) == 0:
        return x
    rows, cols, _ = grid_cells(coords, tile_size_level0)
    grid = np.zeros((rows.max() + 1, cols.max() + 1, x.shape[1]), np.float32)
    count = np.zeros(grid.shape[:2], np.float32)
    grid[rows, cols] = x
    count[rows, cols] = 1.0
    out = [x]
    for r in radii:
        size = 2 * r + 1
        summed = ndi.uniform_filter(grid, size=(size, size, 1), mode="constant")
        n = ndi.uniform_filter(count, size=size, mode="constant")
        out.append(summed[rows, cols] / np.maximum(n[rows, cols], 1e-6)[:, None])
    return np.concatenate(out, axis=1)


def training_labels(bed_fraction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, used) per tile from its share inside the annotated bed."""
    bed_fraction = np.asarray(bed_fraction, np.float32)
    positive = bed_fraction >= POSITIVE_FRACTION
    used = positive | (bed_fraction <= NEGATIVE_FRACTION)
    return positive, used


@dataclass
class LogisticEvidence:
    """P(tile holds invasive tumour) = sigmoid(w · standardised embedding + b)."""

    weight: np.ndarray
    bias: float
    mean: np.ndarray
    std: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = ((np.asarray(x, np.float32) - self.mean) / self.std) @ self.weight + self.bias
        return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)

    def tensors(self) -> dict[str, np.ndarray]:
        return {"weight": self.weight.astype(np.float32), "bias": np.array([self.bias], np.float32),
                "mean": self.mean.astype(np.float32), "std": self.std.astype(np.float32)}

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray]) -> LogisticEvidence:
        return cls(t["weight"], float(t["bias"][0]), t["mean"], t["std"])


def neutral_directions(x: np.ndarray, mean: np.ndarray, std: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` main directions (k x D, orthonormal, in the standardised space) in which tiles
    without tumour differ from each other: stroma light or dense with lymphocytes, fat, normal
    tissue. A classifier kept orthogonal to them cannot read any of these as evidence for or
    against tumour; in a tile that mixes tumour and lymphocytes, only the tumour counts."""
    z = (np.asarray(x, np.float32) - mean) / std
    z = z - z.mean(0)
    k = int(min(k, z.shape[0] - 1, z.shape[1] - 1))
    if k <= 0:
        return np.zeros((0, z.shape[1]), np.float32)
    _, _, vt = np.linalg.svd(z.astype(np.float64), full_matrices=False)
    return vt[:k].astype(np.float32)


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-2, seed: int = 0,
                 sample_weight: np.ndarray | None = None, neutral_x: np.ndarray | None = None,
                 neutral_k: int = 0) -> LogisticEvidence:
    """Class-balanced, L2-regularised logistic regression (full-batch L-BFGS in torch: the
    same bytes for the same inputs and seed). With ``neutral_x`` (tiles without tumour) and
    ``neutral_k`` > 0 its weights are kept orthogonal to their ``neutral_k`` main directions
    (:func:`neutral_directions`)."""
    import torch

    from weakstil.errors import WeakSTILError

    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.float32)
    if len(np.unique(y)) < 2:
        raise WeakSTILError("tumour-bed training needs tiles both well inside and well outside the annotated beds",
                            fix="add slides whose annotation does not cover all tissue")
    mean = x.mean(0)
    std = x.std(0) + 1e-6
    z = (x - mean) / std
    v = neutral_directions(neutral_x, mean, std, neutral_k) if neutral_x is not None and neutral_k > 0 else None
    if v is not None and len(v):
        z = z - (z @ v.T) @ v
    xt = torch.from_numpy(np.ascontiguousarray(z, np.float32))
    yt = torch.from_numpy(y)
    pos = float(y.mean())
    weights = torch.where(yt > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    if sample_weight is not None:
        weights = weights * torch.from_numpy(np.asarray(sample_weight, np.float32))
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = xt @ w + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yt, reduction="none") * weights).mean()
        loss = loss + l2 * (w * w).sum() / len(yt) * 10
        loss.backward()
        return loss

    with torch.random.fork_rng(devices=[]):  # seeded apart: the caller's torch random stream stays as it was
        torch.manual_seed(seed)
        opt.step(closure)
    weight = w.detach().numpy().astype(np.float32)
    if v is not None and len(v):  # the same scores on raw inputs: project the weights instead of the data
        weight = weight - v.T @ (v @ weight)
    return LogisticEvidence(weight, float(b.detach()[0]), mean, std)
