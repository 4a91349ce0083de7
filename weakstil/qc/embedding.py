"""How far a slide's tile embeddings lie from the training cohort's: the out-of-distribution score.

``weakstil train`` keeps a reference sample of the training tiles' embeddings, projected onto
their first principal components (standardised features, at most :data:`COMPONENTS`), in
``MODEL/qc/embeddings.safetensors``. A slide's **distance** is the mean, over (a sample of) its
tiles, of each tile's Euclidean distance to its :data:`NEIGHBOURS`-th nearest reference tile in
that space (a k-NN density score; Sun et al. 2022, "Out-of-distribution detection with deep
nearest neighbors"). Its **OOD score** is that distance over the median distance of the
training slides, each measured leave-slide-out (its own reference tiles set aside), so 1 is a
typical training slide and the threshold (:func:`ood_threshold`) is set on the training slides'
own scores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Principal components kept.
COMPONENTS = 32
#: Reference tiles kept in all, and at most per training slide.
REFERENCE_TILES = 16384
REFERENCE_PER_SLIDE = 256
#: Tiles of a slide whose distances are averaged (a random sample of larger slides).
SLIDE_TILES = 512
#: The k of the k-NN distance.
NEIGHBOURS = 5
#: Tiles used to fit the principal components.
PCA_TILES = 20000
#: A tile is unfamiliar when its k-NN distance exceeds this quantile of the training tiles' own
#: (each measured leave-slide-out), so about 1 % of a training slide's tiles are.
UNFAMILIAR_TILE_QUANTILE = 0.99
#: The share of unfamiliar tiles that flags a slide is at least this, and at least
#: UNFAMILIAR_MARGIN x the 95th percentile of the training slides' shares ...
UNFAMILIAR_SHARE_FLOOR = 0.05
UNFAMILIAR_MARGIN = 2.0
#: ... and they are at least this many tiles (one or two of a small slide are chance).
UNFAMILIAR_MIN_TILES = 3


@dataclass
class EmbeddingReference:
    """Standardisation, principal axes and the reference tiles (in component space)."""

    mean: np.ndarray  #: (D,)
    scale: np.ndarray  #: (D,)
    components: np.ndarray  #: (D, K)
    reference: np.ndarray  #: (R, K) float32
    reference_slide: np.ndarray  #: (R,) int32: index of the training slide each reference tile comes from
    neighbours: int = NEIGHBOURS
    median_distance: float = 1.0  #: median leave-slide-out distance of the training slides
    #: (R,) each reference tile's k-NN distance to the other slides' reference tiles: how spread the
    #: training tiles are around it (None in a model trained before it: distances alone)
    reference_radius: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def project(self, features: np.ndarray) -> np.ndarray:
        x = (np.asarray(features, np.float32) - self.mean) / self.scale
        return x @ self.components

    def distance(self, features: np.ndarray, exclude_slide: int | Sequence[int] | np.ndarray | None = None,
                 seed: int = 0, max_tiles: int = SLIDE_TILES) -> float:
        """Mean k-NN distance of (up to ``max_tiles`` of) a slide's tiles to the reference tiles
        (those of training slide(s) ``exclude_slide`` left out)."""
        d = self.tile_distances(features, exclude_slide, seed, max_tiles)
        return float(d.mean()) if len(d) else math.nan

    def tile_distances(self, features: np.ndarray, exclude_slide: int | Sequence[int] | np.ndarray | None = None,
                       seed: int = 0, max_tiles: int = SLIDE_TILES) -> np.ndarray:
        """Each (of up to ``max_tiles`` sampled) tile's k-NN distance to the reference tiles (those
        of training slide(s) ``exclude_slide`` left out); empty without tiles or reference tiles."""
        return self.tile_neighbours(features, exclude_slide, seed, max_tiles)[0]

    def tile_neighbours(self, features: np.ndarray, exclude_slide: int | Sequence[int] | np.ndarray | None = None,
                        seed: int = 0, max_tiles: int = SLIDE_TILES) -> tuple[np.ndarray, np.ndarray | None]:
        """``(distances, ratios)`` of (up to ``max_tiles`` sampled) tiles: each tile's k-NN distance
        (:meth:`tile_distances`) and that distance over the median spread (``reference_radius``) of
        the k reference tiles it found, how far it lies beyond the training tiles *there* (a local
        outlier factor; Breunig et al. 2000); ratios ``None`` without the radii (an older model)."""
        import torch

        feats = np.asarray(features)
        if len(feats) > max_tiles:
            feats = feats[np.sort(np.random.default_rng(seed).choice(len(feats), max_tiles, replace=False))]
        keep = (np.ones(len(self.reference), bool) if exclude_slide is None
                else ~np.isin(self.reference_slide, np.atleast_1d(exclude_slide)))
        ref = self.reference[keep]
        k = min(self.neighbours, len(ref))
        if k == 0 or len(feats) == 0:
            return np.zeros(0, np.float32), None if self.reference_radius is None else np.zeros(0, np.float32)
        q = torch.from_numpy(np.ascontiguousarray(self.project(feats), dtype=np.float32))
        r = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32))
        d = torch.cdist(q, r)  # (n, R): n <= 512, R <= 16384
        values, index = torch.topk(d, k, dim=1, largest=False)
        dist = values[:, -1].numpy()
        if self.reference_radius is None:
            return dist, None
        spread = np.median(np.asarray(self.reference_radius, np.float32)[keep][index.numpy()], axis=1)
        return dist, (dist / np.maximum(spread, 1e-6)).astype(np.float32)

    def score(self, features: np.ndarray, seed: int = 0) -> float:
        """The OOD score: distance / the training slides' median distance."""
        return self.distance(features, seed=seed) / self.median_distance

    # -- files -------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        from weakstil.atomic import atomic_path

        # C order: safetensors.numpy writes a transposed (Fortran-order) array's memory as is,
        # which reads back scrambled
        arrays = {k: np.ascontiguousarray(v, dtype=dt) for k, v, dt in (
            ("mean", self.mean, np.float32), ("scale", self.scale, np.float32),
            ("components", self.components, np.float32), ("reference", self.reference, np.float32),
            ("reference_slide", self.reference_slide, np.int32))}
        if self.reference_radius is not None:
            arrays["reference_radius"] = np.ascontiguousarray(self.reference_radius, dtype=np.float32)
        # one metadata key: safetensors writes several in a random order, and the file's SHA-256 (in
        # model.json) would differ between two trainings with the same seed
        meta = {"weakstil_qc": json.dumps({"median_distance": float(self.median_distance),
                                           "neighbours": int(self.neighbours)}, sort_keys=True)}
        with atomic_path(Path(path)) as tmp:
            save_file(arrays, str(tmp), metadata=meta)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> EmbeddingReference:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(meta["weakstil_qc"]) if "weakstil_qc" in meta else meta  # two keys before
        _check_arrays(arrays, path)
        return cls(mean=arrays["mean"], scale=arrays["scale"], components=arrays["components"],
                   reference=arrays["reference"], reference_slide=arrays["reference_slide"],
                   neighbours=int(meta.get("neighbours", NEIGHBOURS)),
                   median_distance=float(meta.get("median_distance", 1.0)),
                   reference_radius=arrays.get("reference_radius"))


def _check_arrays(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    """Refuse a file whose arrays do not fit together (one written otherwise than by training, whose
    model.json hash was made to match): scoring would fail on it mid-run or flag by NaN radii."""
    from weakstil.mil.identity import ModelError

    names = ("mean", "scale", "components", "reference", "reference_slide")
    missing = [k for k in names if k not in arrays]
    problem = f"lacks {', '.join(missing)}" if missing else None
    if problem is None:
        n, (dim, k) = len(arrays["reference"]), arrays["components"].shape if arrays["components"].ndim == 2 else (0, -1)
        radius = arrays.get("reference_radius")
        if arrays["mean"].shape != (dim,) or arrays["scale"].shape != (dim,) or arrays["reference"].shape != (n, k):
            problem = "has arrays whose shapes do not fit together"
        elif arrays["reference_slide"].shape != (n,) or (radius is not None and radius.shape != (n,)):
            problem = f"does not have one reference_slide{' and reference_radius' if radius is not None else ''} " \
                      f"per reference tile ({n})"
        elif radius is not None and not bool(np.all(np.nan_to_num(radius, nan=-1.0, posinf=0.0) >= 0)):
            problem = "has NaN or negative reference_radius values"
    if problem:
        raise ModelError(f"quality-control reference embeddings {problem}", path=path,
                         fix="the model folder was changed; train the model again")


def fit_reference(slides: Sequence[np.ndarray], seed: int = 0) -> tuple[EmbeddingReference, np.ndarray]:
    """The reference of the training slides' tile features (one (n_i, D) array each) and every
    training slide's leave-slide-out distance (``median_distance`` is set from them)."""
    ref, distances, _ = fit_reference_and_neighbours(slides, seed)
    return ref, distances


def fit_reference_and_neighbours(slides: Sequence[np.ndarray], seed: int = 0
                                 ) -> tuple[EmbeddingReference, np.ndarray, list[tuple[np.ndarray, np.ndarray | None]]]:
    """:func:`fit_reference`, and each training slide's leave-slide-out :meth:`EmbeddingReference.tile_neighbours`
    (``exclude_slide=i, seed=seed + i``) that its distance is the mean of: what :func:`unfamiliar_reference`
    and :func:`weakstil.qc.shift.leave_group_out_distances` (a slide alone in its group) ask again, each the
    same k-NN search over the reference tiles, a third of ``weakstil train``'s qc CPU each."""
    rng = np.random.default_rng(seed)
    n_slides = len(slides)
    dim = int(slides[0].shape[1])
    # standardisation over all tiles (float64 sums: exact enough for millions of tiles)
    total = sum(len(s) for s in slides)
    s1 = np.zeros(dim)
    s2 = np.zeros(dim)
    for s in slides:
        x = np.asarray(s, np.float64)
        s1 += x.sum(0)
        s2 += (x * x).sum(0)
    mean = s1 / total
    scale = np.sqrt(np.maximum(s2 / total - mean * mean, 0.0))
    scale = np.where(scale > 1e-6, scale, 1.0)
    # principal axes of a sample spread evenly over the slides
    per = max(1, PCA_TILES // n_slides)
    sample = np.concatenate([_sample(s, per, rng) for s in slides]).astype(np.float64)
    z = (sample - mean) / scale
    k = int(min(COMPONENTS, dim, max(1, len(z) - 1)))
    _, _, vt = np.linalg.svd(z - z.mean(0), full_matrices=False)
    components = vt[:k].T
    ref = EmbeddingReference(mean=mean.astype(np.float32), scale=scale.astype(np.float32),
                             components=components.astype(np.float32), reference=np.zeros((0, k), np.float32),
                             reference_slide=np.zeros(0, np.int32))
    per_ref = max(1, min(REFERENCE_PER_SLIDE, REFERENCE_TILES // n_slides))
    picks = [_sample(s, per_ref, rng) for s in slides]
    ref.reference = np.concatenate([ref.project(p) for p in picks]).astype(np.float32)
    ref.reference_slide = np.concatenate([np.full(len(p), i, np.int32) for i, p in enumerate(picks)])
    ref.reference_radius = reference_radius(ref.reference, ref.reference_slide, ref.neighbours)
    # as ref.distance(s, exclude_slide=i, seed=seed + i), with the tiles' neighbours kept
    neighbours = [ref.tile_neighbours(s, exclude_slide=i, seed=seed + i) for i, s in enumerate(slides)]
    distances = np.array([float(d.mean()) if len(d) else math.nan for d, _ in neighbours])
    finite = distances[np.isfinite(distances)]
    ref.median_distance = float(np.median(finite)) if len(finite) else 1.0
    return ref, distances, neighbours


def reference_radius(reference: np.ndarray, slide_of: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Each reference tile's distance to its ``k``-th nearest reference tile of another slide
    (inf where no other slide has ``k`` tiles): how spread the training tiles are around it."""
    import torch

    r = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    slide_of = torch.from_numpy(np.asarray(slide_of, np.int64))
    out = np.full(len(r), np.inf, np.float32)
    k = min(k, len(r))
    for start in range(0, len(r), chunk):  # (chunk, R) at a time: R x R would be 1 GB at 16,384 tiles
        d = torch.cdist(r[start:start + chunk], r)
        d[slide_of[start:start + chunk, None] == slide_of[None, :]] = float("inf")
        if k:
            out[start:start + chunk] = torch.topk(d, k, dim=1, largest=False).values[:, -1].numpy()
    return out


def unfamiliar_tiles(distances: np.ndarray, ratios: np.ndarray | None, rule: dict) -> np.ndarray:
    """Which tiles are unfamiliar under ``rule``: farther from every training tile than its
    ``tile_threshold`` and, where the rule has a ``ratio_threshold`` (and the ratios are known),
    also that much farther than the training tiles near them are from each other."""
    out = np.asarray(distances) > float(rule["tile_threshold"])
    if rule.get("ratio_threshold") is not None and ratios is not None:
        out &= np.asarray(ratios) > float(rule["ratio_threshold"])
    return out


def unfamiliar_reference(ref: EmbeddingReference, slides: Sequence[np.ndarray], seed: int = 0,
                         neighbours: Sequence[tuple[np.ndarray, np.ndarray | None]] | None = None
                         ) -> tuple[dict, np.ndarray, np.ndarray]:
    """The unfamiliar-tile rule from the training slides (one (n_i, D) array each, in the order
    ``ref`` was fitted on): ``(rule, shares, counts)``: the tile distance above which a tile is
    unfamiliar and the share that flags a slide; each training slide's share and number of such
    tiles (leave-slide-out).

    Why besides the mean distance: a slide whose tissue is mostly like the training slides' but
    holds a kind the training slides lack (necrosis, DCIS, plasma-cell sheets, a lymph node) moves
    the mean little, while those tiles stand far from every training tile. On our hard look scored
    by a default-look model, 8 of 60 slides missed their interval without any flag about the slide
    (mean-distance scores 1.1-1.8 against a threshold of 1.8); 6 of them have 8-24 % unfamiliar
    tiles, against at most 1.7 % on 90 % of the training slides (``benchmarks/confidence.py``).

    Why the ratio as well (when ``ref`` has its ``reference_radius``): tissue the training slides
    hold but rarely (the dense infiltrate of the few TIL-rich ones in a TCGA-like cohort) lies far
    from most training tiles too, and the distance alone flagged the TIL-rich slides of the
    model's own generator (3 of 24 held-out slides of a 24-slide model, sTIL 61-84 %, errors 1-16
    points; ``benchmarks/confidence.py --slides 24``). Those tiles lie where the training tiles are
    sparse, as far from each other as from them; a tile of tissue the training slides lack lies
    far beyond the training tiles around it. So a tile is unfamiliar only when both its distance
    and its ratio (:meth:`EmbeddingReference.tile_neighbours`) exceed the 99th percentile of the
    training tiles' own (leave-slide-out).

    ``neighbours``: those leave-slide-out tile neighbours already found (:func:`fit_reference_and_neighbours`
    with the same ``seed``), not searched again."""
    per_slide = list(neighbours) if neighbours is not None else \
        [ref.tile_neighbours(s, exclude_slide=i, seed=seed + i) for i, s in enumerate(slides)]
    pooled = np.concatenate([d for d, _ in per_slide if len(d)]) if any(len(d) for d, _ in per_slide) else np.zeros(0)
    if len(pooled) == 0:
        return {}, np.full(len(slides), math.nan), np.zeros(len(slides), int)
    rule: dict = {"tile_threshold": float(np.quantile(pooled, UNFAMILIAR_TILE_QUANTILE)),
                  "tile_quantile": UNFAMILIAR_TILE_QUANTILE}
    ratios = [r[np.isfinite(r)] for _, r in per_slide if r is not None and len(r)]
    if ratios and len(np.concatenate(ratios)):
        rule["ratio_threshold"] = float(np.quantile(np.concatenate(ratios), UNFAMILIAR_TILE_QUANTILE))
    counts = np.array([int(unfamiliar_tiles(d, r, rule).sum()) for d, r in per_slide])
    shares = np.array([c / len(d) if len(d) else math.nan for c, (d, _) in zip(counts, per_slide)])
    finite = shares[np.isfinite(shares)]
    rule.update({"share_threshold": _share_threshold(finite), "min_tiles": UNFAMILIAR_MIN_TILES,
                 "training_max": float(finite.max()) if len(finite) else None})
    if "ratio_threshold" in rule:
        # the interval's shift keeps the distance alone: there it is what predicts the error (the
        # few TIL-rich slides' errors are larger in points too; with the spread part the out-of-fold
        # slides' shifts explained less and every interval widened: 8.5 -> 10.6 points in
        # distribution, coverage 95 -> 97 %, hard look 93 -> 98 %, benchmarks/confidence.py)
        alone = np.array([unfamiliar_share(d, rule)[0] for d, _ in per_slide])
        rule["distance_share_threshold"] = _share_threshold(alone[np.isfinite(alone)])
    return rule, shares, counts


def _share_threshold(shares: np.ndarray) -> float:
    """The share of unfamiliar tiles that flags a slide, from the training slides' own shares."""
    return max(UNFAMILIAR_SHARE_FLOOR, UNFAMILIAR_MARGIN * float(np.quantile(shares, 0.95)) if len(shares) else 0.0)


def shift_share(tile_distances: np.ndarray, rule: dict) -> float:
    """The share of a slide's unfamiliar tiles for the interval's shift (:mod:`weakstil.qc.shift`):
    by distance alone (see :func:`unfamiliar_reference`)."""
    return unfamiliar_share(tile_distances, rule)[0]


def shift_share_threshold(rule: dict) -> float | None:
    """The share that :func:`shift_share` is scaled by in the shift (the distance-alone rule's flag)."""
    return rule.get("distance_share_threshold", rule.get("share_threshold"))


def unfamiliar_share(tile_distances: np.ndarray, rule: dict, ratios: np.ndarray | None = None) -> tuple[float, int]:
    """``(share, count)`` of a slide's sampled tiles that are unfamiliar (:func:`unfamiliar_tiles`)."""
    d = np.asarray(tile_distances)
    if not rule or len(d) == 0:
        return math.nan, 0
    count = int(unfamiliar_tiles(d, ratios, rule).sum())
    return count / len(d), count


def _sample(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.asarray(x)
    if len(x) <= n:
        return x
    return x[np.sort(rng.choice(len(x), n, replace=False))]


def ood_threshold(scores: np.ndarray, quantile: float = 0.99, margin: float = 1.2) -> float:
    """The OOD-score threshold from the training slides' leave-slide-out scores: their
    ``quantile`` (the 99th percentile; with few slides about their maximum) times ``margin``,
    since a cohort of tens of slides shows only part of its own spread."""
    s = np.asarray(scores, np.float64)
    s = s[np.isfinite(s)]
    if len(s) == 0:
        return math.inf
    return float(np.quantile(s, quantile) * margin)
