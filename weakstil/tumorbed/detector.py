"""The tumour-bed detector: a tile classifier on the encoder's embeddings (with the mean
embeddings of each tile's neighbourhood), trained from a few annotated slides, followed by
spatial smoothing on the tile grid, a closing and hole filling, so the stroma between tumour
nests is taken in. Saved as ``model.safetensors`` + ``model.json`` (kind ``weakstil-tumorbed``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from weakstil import __version__
from weakstil.errors import WeakSTILError
from weakstil.modeldir import META_FILE, WEIGHTS_FILE
from weakstil.settings import TILE_IN_BED
from weakstil.tumorbed.bed import SlideGeometry, TumorBed, TumorBedSource, from_annotation

log = logging.getLogger(__name__)

#: ``kind`` in a detector's model.json.
DETECTOR_KIND = "weakstil-tumorbed"


@dataclass(frozen=True)
class PostProcess:
    """Spatial post-processing of tile probabilities into a tumour-bed mask (sizes in µm)."""

    smooth_um: float = 150.0  #: Gaussian sigma over the tile-probability map
    threshold: float = 0.5
    closing_um: float = 150.0  #: joins nests and takes in the stroma between them
    min_area_mm2: float = 0.05  #: smaller detections are dropped
    max_hole_mm2: float = 0.5  #: holes smaller than this are filled


def from_tile_probabilities(prob: np.ndarray, geom: SlideGeometry, post: PostProcess | None = None,
                            detail: str = "") -> TumorBed:
    """Smooth tile probabilities on the grid, upsample to the mask grid, threshold and clean."""
    from scipy import ndimage as ndi
    from skimage import morphology

    post = post or PostProcess()
    h, w = geom.tissue_mask.shape
    if len(geom.coords) == 0:
        empty = np.zeros((h, w), bool)
        return TumorBed(empty, geom.mask_mpp, np.zeros(0, np.float32), TumorBedSource.MODEL, detail)
    stride = _grid_stride(geom.coords, geom.tile_size_level0)
    cols = np.round(geom.coords[:, 0] / stride).astype(int)
    rows = np.round(geom.coords[:, 1] / stride).astype(int)
    grid_p = np.zeros((rows.max() + 1, cols.max() + 1), np.float64)
    grid_w = np.zeros_like(grid_p)
    grid_p[rows, cols] = prob
    grid_w[rows, cols] = 1.0
    sigma = post.smooth_um / (stride * geom.slide_mpp)
    if sigma > 0:
        num = ndi.gaussian_filter(grid_p, sigma, mode="constant")
        den = ndi.gaussian_filter(grid_w, sigma, mode="constant")
        smooth = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 0.0)
    else:
        smooth = grid_p
    # mask pixel centres in grid units (tile centres sit at (i + 0.5) * stride + offset)
    f = geom.mask_mpp / geom.slide_mpp  # level-0 px per mask px
    yy = ((np.arange(h) + 0.5) * f - geom.tile_size_level0 / 2) / stride
    xx = ((np.arange(w) + 0.5) * f - geom.tile_size_level0 / 2) / stride
    gy, gx = np.meshgrid(yy, xx, indexing="ij")
    up = ndi.map_coordinates(smooth, [gy, gx], order=1, mode="nearest")
    mask = (up >= post.threshold) & geom.tissue_mask
    px_um2 = geom.mask_mpp ** 2
    radius = max(1, int(round(post.closing_um / geom.mask_mpp)))
    mask = ndi.binary_closing(mask, structure=morphology.disk(radius), border_value=0) & geom.tissue_mask
    mask = morphology.remove_small_holes(mask, max_size=max(1, int(post.max_hole_mm2 * 1e6 / px_um2)))
    mask = morphology.remove_small_objects(mask, max_size=max(1, int(post.min_area_mm2 * 1e6 / px_um2)))
    return TumorBed(mask, geom.mask_mpp, geom.tile_fractions(mask, geom.mask_mpp), TumorBedSource.MODEL, detail)


def _grid_stride(coords: np.ndarray, tile_size_level0: float) -> float:
    """The grid's stride in level-0 px (the smallest positive step between tile positions)."""
    steps = []
    for axis in (0, 1):
        values = np.unique(coords[:, axis])
        if len(values) > 1:
            steps.append(np.diff(values).min())
    return float(min(steps)) if steps else float(tile_size_level0)


def context_features(features: np.ndarray, coords: np.ndarray, tile_size_level0: float,
                     radius: int | tuple[int, ...]) -> np.ndarray:
    """Each tile's embedding next to the mean embeddings of the tiles around it, one
    (2r+1) x (2r+1) block on the grid per radius: the stroma between tumour nests is
    recognised by its neighbours, near and farther away."""
    from scipy import ndimage as ndi

    x = np.asarray(features, np.float32)
    radii = [r for r in ((radius,) if isinstance(radius, int) else tuple(radius)) if r > 0]
    if not radii or len(x) == 0:
        return x
    stride = _grid_stride(coords, tile_size_level0)
    cols = np.round(coords[:, 0] / stride).astype(int)
    rows = np.round(coords[:, 1] / stride).astype(int)
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


# --- the trainable tile classifier ------------------------------------------------------------
@dataclass
class TumorBedModel:
    """Logistic regression on standardised tile embeddings -> P(tile in tumour bed)."""

    weight: np.ndarray
    bias: float
    mean: np.ndarray
    std: np.ndarray
    meta: dict = field(default_factory=dict)
    post: PostProcess = field(default_factory=PostProcess)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = ((np.asarray(features, np.float32) - self.mean) / self.std) @ self.weight + self.bias
        return (1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))).astype(np.float32)

    @property
    def context_radius(self) -> tuple[int, ...]:
        r = self.meta.get("context_radius", 0)
        return (int(r),) if isinstance(r, (int, float)) else tuple(int(v) for v in r)

    def detect(self, features: np.ndarray, geom: SlideGeometry) -> TumorBed:
        x = context_features(features, geom.coords, geom.tile_size_level0, self.context_radius)
        return from_tile_probabilities(self.predict_proba(x), geom, self.post,
                                       detail=str(self.meta.get("model_id", "tumorbed-model")))

    @property
    def encoder_key(self) -> tuple[str | None, str | None]:
        return self.meta.get("encoder"), self.meta.get("weights_sha256")

    def save(self, directory: str | Path) -> Path:
        """``model.safetensors`` + ``model.json`` in ``directory`` (written atomically)."""
        from safetensors.numpy import save_file

        from weakstil.atomic import atomic_path, write_json

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {"weight": self.weight.astype(np.float32), "bias": np.array([self.bias], np.float32),
                   "mean": self.mean.astype(np.float32), "std": self.std.astype(np.float32)}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp))
        meta = {**self.meta, "kind": DETECTOR_KIND, "post_process": asdict(self.post),
                "weakstil_version": __version__}
        write_json(directory / META_FILE, meta, indent=2, sort_keys=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> TumorBedModel:
        from safetensors.numpy import load_file

        directory = Path(directory)
        meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
        if not meta_path.is_file() or not weights_path.is_file():
            raise WeakSTILError("not a tumour-bed model (needs model.json and model.safetensors)", path=directory,
                                fix="train one with 'weakstil tumorbed train'")
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") != DETECTOR_KIND:
            raise WeakSTILError(f"model.json says kind '{meta.get('kind')}', not a tumour-bed model",
                                path=directory, fix="pass the directory written by 'weakstil tumorbed train'")
        tensors = load_file(str(weights_path))
        expected = {"weight", "bias", "mean", "std"}
        if set(tensors) != expected:
            raise WeakSTILError(f"weights have keys {sorted(tensors)}, expected {sorted(expected)}",
                                path=weights_path, fix="retrain the tumour-bed model")
        post = PostProcess(**meta.get("post_process", {}))
        return cls(tensors["weight"], float(tensors["bias"][0]), tensors["mean"], tensors["std"], meta, post)


def fit_tumorbed_model(features: np.ndarray, labels: np.ndarray, *, l2: float = 1e-2, seed: int = 0,
                       meta: dict | None = None, post: PostProcess | None = None) -> TumorBedModel:
    """Class-balanced, L2-regularised logistic regression (full-batch L-BFGS in torch)."""
    import torch

    x = np.asarray(features, np.float32)
    y = np.asarray(labels, np.float32)
    if len(np.unique(y)) < 2:
        raise WeakSTILError("tumour-bed training needs tiles both inside and outside the tumour bed",
                            fix="add slides whose annotation does not cover all tissue")
    mean = x.mean(0)
    std = x.std(0) + 1e-6
    xt = torch.from_numpy((x - mean) / std)
    yt = torch.from_numpy(y)
    pos = float(y.mean())
    weights = torch.where(yt > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    torch.manual_seed(seed)
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

    opt.step(closure)
    model = TumorBedModel(w.detach().numpy().copy(), float(b.detach()[0]), mean, std, dict(meta or {}),
                          post or PostProcess())
    acc = float(((model.predict_proba(x) >= 0.5) == (y > 0.5)).mean())
    model.meta.update({"train_tiles": int(len(y)), "train_positive_share": pos, "train_accuracy": acc,
                       "seed": seed, "l2": l2})
    return model


# --- training from annotated slides ---------------------------------------------------------
@dataclass
class AnnotatedSlide:
    """Features of one slide's tiles, its geometry and the annotated tumour-bed mask."""

    slide_id: str
    features: np.ndarray
    geom: SlideGeometry
    bed_mask: np.ndarray  #: on the geometry's tissue-mask grid

    @property
    def tile_labels(self) -> np.ndarray:
        return self.geom.tile_fractions(self.bed_mask, self.geom.mask_mpp) >= TILE_IN_BED


#: Post-processing settings tried when fitting a detector (threshold x smoothing).
THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
SMOOTHING_UM = (0.0, 100.0, 150.0, 250.0)
CLOSING_UM = (0.0, 100.0, 200.0)


#: Neighbourhoods (radius in tiles) whose mean embeddings are added to each tile's own.
CONTEXT_RADIUS = (2, 5)


def train_tumorbed(slides: list[AnnotatedSlide], *, seed: int = 0, meta: dict | None = None,
                   context_radius: int | tuple[int, ...] = CONTEXT_RADIUS) -> TumorBedModel:
    """Fit the tile classifier on all slides, then choose the post-processing that maximises
    the mean Dice of leave-one-slide-out predictions against the annotations."""
    from weakstil.tissue import dice

    if not slides:
        raise WeakSTILError("no annotated slides to train the tumour-bed detector on",
                            fix="pass slides with annotations (--annotations DIR)")
    slides = [AnnotatedSlide(s.slide_id, context_features(s.features, s.geom.coords, s.geom.tile_size_level0,
                                                          context_radius), s.geom, s.bed_mask) for s in slides]
    radii = [context_radius] if isinstance(context_radius, int) else list(context_radius)
    meta = {**(meta or {}), "context_radius": [int(r) for r in radii]}
    x = np.concatenate([s.features for s in slides])
    y = np.concatenate([s.tile_labels for s in slides])
    # out-of-slide probabilities, so the chosen threshold is honest about unseen slides
    held_out = []
    if len(slides) >= 3:
        for i, s in enumerate(slides):
            rest = [t for j, t in enumerate(slides) if j != i]
            xr = np.concatenate([t.features for t in rest])
            yr = np.concatenate([t.tile_labels for t in rest])
            if len(np.unique(yr)) < 2:
                held_out.append(None)
                continue
            held_out.append(fit_tumorbed_model(xr, yr, seed=seed).predict_proba(s.features))
    model = fit_tumorbed_model(x, y, seed=seed, meta=meta)
    probs = [h if h is not None else model.predict_proba(s.features)
             for h, s in zip(held_out or [None] * len(slides), slides)]
    best, best_dice = PostProcess(), -1.0
    table = []
    for closing in CLOSING_UM:
        for smooth in SMOOTHING_UM:
            for thr in THRESHOLDS:
                post = PostProcess(smooth_um=smooth, threshold=thr, closing_um=closing)
                d = float(np.mean([dice(from_tile_probabilities(p, s.geom, post).mask, s.bed_mask)
                                   for p, s in zip(probs, slides)]))
                table.append({"smooth_um": smooth, "threshold": thr, "closing_um": closing, "dice": d})
                if d > best_dice + 1e-9:
                    best, best_dice = post, d
    model.post = best
    model.meta.update({"n_slides": len(slides), "slide_ids": [s.slide_id for s in slides],
                       "cv_dice": best_dice, "post_process_search": table})
    log.info("tumour-bed detector: %d slides, %d tiles, leave-one-slide-out Dice %.3f (smooth %g µm, threshold %g, "
             "closing %g µm)", len(slides), len(y), best_dice, best.smooth_um, best.threshold, best.closing_um)
    return model


def train_tumorbed_from_cache(features_dir: str | Path, annotations: str | Path, *,
                              slide_ids: list[str] | None = None, max_slides: int = 10,
                              seed: int = 0) -> TumorBedModel:
    """Train a detector on the cached embeddings of slides that have an annotation file.

    ``slide_ids`` restricts (and orders) the candidates; at most ``max_slides`` are used.
    """
    from weakstil.annotations import find_annotation
    from weakstil.files import FeaturesFile, feature_path

    features_dir = Path(features_dir)
    if slide_ids is None:
        slide_ids = sorted(p.stem for p in features_dir.glob("*.h5"))
    chosen: list[AnnotatedSlide] = []
    identity = None
    for sid in slide_ids:
        if len(chosen) >= max_slides:
            break
        annotation = find_annotation(annotations, sid)
        path = feature_path(features_dir, sid)
        if annotation is None or not path.is_file():
            continue
        cache = FeaturesFile.read(path)
        key = (cache.attr("encoder"), cache.attr("weights_sha256"))
        if identity is None:
            identity = key
        elif key != identity:
            raise WeakSTILError(f"features of {sid} come from another encoder than the other slides",
                                path=path, fix="embed all slides with one encoder")
        geom = SlideGeometry.from_file(cache)
        bed = from_annotation(annotation, geom)
        chosen.append(AnnotatedSlide(sid, np.asarray(cache.features, np.float32), geom, bed.mask))
    if not chosen:
        raise WeakSTILError("no slide has both cached features and an annotation", path=annotations,
                            fix="name annotation files <slide_id>.geojson / .xml and embed those slides first")
    meta = {"encoder": identity[0], "weights_sha256": identity[1], "annotations": str(annotations),
            "model_id": f"tumorbed-{len(chosen)}slides"}
    return train_tumorbed(chosen, seed=seed, meta=meta)
