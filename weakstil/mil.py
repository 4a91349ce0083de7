"""Stage 2: a weakly supervised multiple-instance regressor on cached tile embeddings.

Every tile gets an sTIL score in 0-100 (``100 * sigmoid`` of a small MLP on its
embedding); the slide sTIL% aggregates the scores of its tumour-bed tiles:

* ``mean`` (WeakSTIL, Schirris et al. 2022): the plain mean of the tile scores;
* ``attention`` (ECTIL-style): ``sum_i softmax(a_i) * s_i`` with gated attention
  ``a_i = w^T (tanh(V h_i) * sigmoid(U h_i))`` over the tiles' hidden features.

Only slide labels are used for training (MSE or Huber on sTIL%/100). The tile scores
are therefore learned from weak labels; with the mean aggregator they are directly on
the sTIL% scale and make the heatmap.

This module imports torch at import time: import it lazily from the CLI.

Model directory (``MODEL/``): ``model.safetensors`` (weights, feature normalisation
buffers) and ``model.json`` (architecture, encoder identity, tiling, threshold,
training settings and cross-validated metrics, seed, versions, SHA-256 of the weights).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from weakstil import __version__
from weakstil.atomic import atomic_path
from weakstil.errors import WeakSTILError
from weakstil.milconfig import Architecture, TrainConfig

log = logging.getLogger(__name__)

FORMAT = "weakstil-mil"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
#: Above this many bytes (as float32) a feature bank is held as float16 in memory.
FLOAT16_ABOVE_BYTES = 3 * 1024**3
#: Tiles scored per forward pass at inference.
SCORE_CHUNK = 16384


class ModelError(WeakSTILError):
    """A model directory is missing, damaged or does not fit the features."""


# --- network ----------------------------------------------------------------------------


class TileMIL(nn.Module):
    """Per-tile sTIL regressor; the slide score aggregates the tiles (see :mod:`weakstil.aggregate`).

    Aggregator ``stroma``: a second head gives every tile a stroma weight in (0, 1) (or the
    weight is the colour-deconvolution stroma estimate stored with the features), and the
    slide is the stroma-weighted mean of the tile scores, as in the sTIL definition.
    """

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.register_buffer("feature_mean", torch.zeros(arch.input_dim))
        self.register_buffer("feature_std", torch.ones(arch.input_dim))
        layers: list[nn.Module] = []
        d = arch.input_dim
        for _ in range(arch.layers):
            layers += [nn.Linear(d, arch.hidden), nn.GELU(), nn.Dropout(arch.dropout)]
            d = arch.hidden
        self.body = nn.Sequential(*layers)
        self.score = nn.Linear(d, 1)
        if arch.aggregator == "attention":
            self.attn_v = nn.Linear(d, arch.attention_dim)
            self.attn_u = nn.Linear(d, arch.attention_dim)
            self.attn_w = nn.Linear(arch.attention_dim, 1)
        if self.learns_stroma:
            self.stroma_head = nn.Linear(d, 1)

    @property
    def learns_stroma(self) -> bool:
        return self.arch.aggregator == "stroma" and self.arch.stroma_weight == "learned"

    @property
    def needs_stroma_estimate(self) -> bool:
        return self.arch.aggregator == "stroma" and self.arch.stroma_weight == "estimate"

    def tiles(self, x: torch.Tensor, stroma_estimate: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Tile scores (0-100), attention logits and stroma weights (None when unused) for ``x`` (..., D)."""
        # feature standardisation folded into the first layer: x is never copied
        first = self.body[0]
        w = first.weight / self.feature_std
        h = self.body[1:](nn.functional.linear(x, w, first.bias - w @ self.feature_mean))
        scores = 100.0 * torch.sigmoid(self.score(h).squeeze(-1))
        logits = stroma = None
        if self.arch.aggregator == "attention":
            logits = self.attn_w(torch.tanh(self.attn_v(h)) * torch.sigmoid(self.attn_u(h))).squeeze(-1)
        if self.learns_stroma:
            stroma = torch.sigmoid(self.stroma_head(h).squeeze(-1))
        elif self.needs_stroma_estimate:
            if stroma_estimate is None:
                raise ModelError("this model weighs tiles by the stroma estimate of the feature files, and the "
                                 "features have none", fix="embed the slides again with this weakstil version")
            stroma = stroma_estimate.to(scores.dtype)
        return scores, logits, stroma

    def aggregate(self, scores: torch.Tensor, logits: torch.Tensor | None, mask: torch.Tensor,
                  stroma: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Slide sTIL% and tile weights (summing to 1 over ``mask`` along the last axis)."""
        from weakstil.aggregate import aggregate

        return aggregate(scores, mask, self.arch.aggregator, stroma=stroma, logits=logits)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, stroma_estimate: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, N, D), ``mask`` (B, N) bool -> slide sTIL% (B,), tile scores (B, N), weights (B, N)."""
        scores, logits, stroma = self.tiles(x, stroma_estimate)
        slide, weights = self.aggregate(scores, logits, mask, stroma)
        return slide, scores, weights


# --- features in memory -----------------------------------------------------------------

#: Feature-cache dataset with each tile's colour-deconvolution stroma share (weakstil.tilestats).
STROMA_ESTIMATE = "stroma_estimate"
#: Feature-cache dataset with each tile's stain and morphometry measurements (weakstil.tilestats).
TILE_STATS = "tile_stats"
#: Attributes of a feature cache that identify the encoder and tiles.
IDENTITY_ATTRS = ("encoder", "weights_sha256", "mpp", "tile_px")


@dataclass
class SlideBag:
    """One slide's tiles inside a :class:`FeatureBank` (rows ``offset:offset+n``)."""

    slide_id: str
    offset: int
    n: int
    coords: np.ndarray
    tile_size_level0: float
    tile_mask: np.ndarray  #: tiles that make up the slide score (tumour bed)
    path: Path

    @property
    def masked_rows(self) -> np.ndarray:
        return self.offset + np.flatnonzero(self.tile_mask)


def _attr(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_feature_attrs(path: str | Path) -> dict[str, object]:
    """File attributes of a feature cache (encoder identity, tiling, slide info)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return {k: _attr(v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise WeakSTILError(f"cannot read features ({exc})", path=path, fix="re-run 'weakstil embed'") from None


def _read_features(path: Path) -> dict[str, object]:
    """Stage 1's reader (weakstil.embed.read_features) when present, else a minimal one."""
    try:
        from weakstil.embed import read_features
    except ImportError:  # pragma: no cover - stage 1 not installed
        import h5py

        with h5py.File(path, "r") as f:
            return {"features": f["features"][:], "coords": f["coords"][:]}
    return read_features(path)


def _tile_mask_from_file(f, n: int) -> np.ndarray | None:
    for name in ("tumorbed", "tumorbed_flag", "tumorbed_flags"):
        if name in f and f[name].shape == (n,):
            return f[name][:].astype(bool)
    return None


class FeatureBank:
    """All tiles of a cohort's slides in one (T, D) tensor, loaded once.

    Held as float32, or float16 when the cohort is large (``dtype="auto"``); batches are
    gathered from it and converted to float32 for the network.
    """

    def __init__(self, features: torch.Tensor, bags: list[SlideBag], identity: dict[str, object],
                 stroma_estimate: torch.Tensor | None = None):
        self.features = features
        self.bags = bags
        self.identity = identity
        #: (T,) colour-deconvolution stroma share per tile (weakstil.tilestats), None when a file has none
        self.stroma_estimate = stroma_estimate
        self.index = {b.slide_id: i for i, b in enumerate(bags)}

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return len(self.bags)

    @classmethod
    def load(cls, paths: Sequence[str | Path], slide_ids: Sequence[str] | None = None, *, dtype: str = "auto",
             tile_masks: dict[str, np.ndarray] | None = None, tile_stats: bool = False) -> FeatureBank:
        """Read ``features``, ``coords`` and the optional per-tile ``tumorbed`` flag of each file.

        ``tile_masks`` (slide id -> bool per tile) overrides the file's tumour-bed flags.
        ``tile_stats``: append each tile's stain and morphometry measurements
        (:mod:`weakstil.tilestats`) to its embedding.
        All files must come from the same encoder, weights and tile size; a slide whose
        tumour bed holds no tile falls back to all its tiles (with a warning).
        """
        import h5py

        paths = [Path(p) for p in paths]
        slide_ids = list(slide_ids) if slide_ids is not None else [p.stem for p in paths]
        shapes, attrs = [], []
        for p in paths:
            try:
                with h5py.File(p, "r") as f:
                    if "features" not in f or "coords" not in f:
                        raise WeakSTILError("not a feature cache (no 'features'/'coords')", path=p,
                                            fix="re-run 'weakstil embed'")
                    shape = f["features"].shape
                    if tile_stats:
                        if TILE_STATS not in f or f[TILE_STATS].shape[0] != shape[0]:
                            raise WeakSTILError("feature cache has no tile statistics (made by an older weakstil)",
                                                path=p, fix="run 'weakstil embed' again for this slide")
                        shape = (shape[0], shape[1] + f[TILE_STATS].shape[1])
                    shapes.append(shape)
                    attrs.append({k: _attr(v) for k, v in f.attrs.items()})
            except OSError as exc:
                raise WeakSTILError(f"cannot read features ({exc})", path=p, fix="re-run 'weakstil embed'") from None
        dims = {s[1] for s in shapes}
        if len(dims) > 1:
            by_dim = {d: [sid for sid, s in zip(slide_ids, shapes) if s[1] == d][:3] for d in dims}
            raise WeakSTILError(f"feature files disagree on the embedding size: {by_dim}",
                                fix="embed all slides with the same encoder")
        identity = check_same_identity(slide_ids, attrs)
        total = sum(s[0] for s in shapes)
        dim = dims.pop()
        if dtype == "auto":
            dtype = "float16" if total * dim * 4 > FLOAT16_ABOVE_BYTES else "float32"
        features = torch.empty((total, dim), dtype=getattr(torch, dtype))
        stroma = torch.zeros(total, dtype=torch.float32)
        has_stroma = True
        bags: list[SlideBag] = []
        offset = 0
        for sid, p, (n, _), a in zip(slide_ids, paths, shapes, attrs):
            data = _read_features(p)
            x = np.asarray(data["features"], dtype=np.float32)
            coords = np.asarray(data["coords"], dtype=np.int64)
            with h5py.File(p, "r") as f:
                if tile_stats:
                    x = np.concatenate([x, f[TILE_STATS][:].astype(np.float32)], axis=1)
                features[offset:offset + n] = torch.from_numpy(x)
                mask = _tile_mask_from_file(f, n)
                if has_stroma and STROMA_ESTIMATE in f and f[STROMA_ESTIMATE].shape == (n,):
                    stroma[offset:offset + n] = torch.from_numpy(f[STROMA_ESTIMATE][:].astype(np.float32))
                else:
                    has_stroma = False
            if tile_masks is not None and sid in tile_masks:
                mask = np.asarray(tile_masks[sid], dtype=bool)
                if mask.shape != (n,):
                    raise WeakSTILError(f"tile mask of {sid} has {mask.shape[0]} entries for {n} tiles",
                                        fix="compute the tumour bed on the same tiles")
            if mask is None:
                mask = np.ones(n, dtype=bool)
            if n == 0:
                raise WeakSTILError("feature file has no tiles", path=p, fix="check the slide has tissue")
            if not mask.any():
                log.warning("%s: no tile in the tumour bed; using all %d tiles", sid, n)
                mask = np.ones(n, dtype=bool)
            tsl0 = float(a.get("tile_size_level0", a.get("tile_px", 224)))
            bags.append(SlideBag(sid, offset, n, coords, tsl0, mask, p))
            offset += n
        if not torch.isfinite(features).all():
            bad = [b.slide_id for b in bags if not torch.isfinite(features[b.offset:b.offset + b.n]).all()]
            raise WeakSTILError(f"features contain NaN or infinite values in {len(bad)} slides: {', '.join(bad[:5])}",
                                fix="re-run 'weakstil embed' for these slides")
        log.debug("feature bank: %d slides, %d tiles x %d (%s)", len(bags), total, dim, dtype)
        return cls(features, bags, identity, stroma if has_stroma else None)

    def to_device(self, device: torch.device) -> None:
        """Hold the features on ``device`` (a GPU: no copy per step) when they fit; else stay put."""
        if device.type == "cpu" or self.features.device == device:
            return
        try:
            self.features = self.features.to(device)
            if self.stroma_estimate is not None:
                self.stroma_estimate = self.stroma_estimate.to(device)
        except torch.OutOfMemoryError:  # pragma: no cover - depends on the GPU
            log.warning("features (%.1f GB) do not fit on %s; batches are copied from host memory",
                        self.features.numel() * self.features.element_size() / 1e9, device)

    def slide_features(self, i: int) -> torch.Tensor:
        b = self.bags[i]
        return self.features[b.offset:b.offset + b.n]

    def slide_stroma(self, i: int) -> torch.Tensor | None:
        b = self.bags[i]
        return None if self.stroma_estimate is None else self.stroma_estimate[b.offset:b.offset + b.n]


def check_same_identity(slide_ids: Sequence[str], attrs: Sequence[dict[str, object]]) -> dict[str, object]:
    """Encoder identity shared by all feature files; error naming the odd ones out."""
    def key(a):
        return tuple(str(a.get(k)) for k in IDENTITY_ATTRS)

    keys = [key(a) for a in attrs]
    values, counts = np.unique(np.array([json.dumps(k) for k in keys]), return_counts=True)
    if len(values) > 1:
        common = json.loads(values[np.argmax(counts)])
        odd = [sid for sid, k in zip(slide_ids, keys) if list(k) != common]
        raise WeakSTILError(
            f"feature files come from different encoders or tile settings: {len(odd)} slides differ from the "
            f"majority ({', '.join(f'{n}={v}' for n, v in zip(IDENTITY_ATTRS, common))}), e.g. {', '.join(odd[:5])}",
            fix="embed all slides of the cohort with the same encoder, weights and --mpp/--tile-size",
        )
    a = attrs[0] if attrs else {}
    card = a.get("encoder_card")
    try:
        card = json.loads(card) if isinstance(card, str) else card
    except json.JSONDecodeError:
        pass
    tiling = a.get("tiling_key")
    try:
        tiling = json.loads(tiling) if isinstance(tiling, str) else tiling
    except json.JSONDecodeError:
        pass
    return {
        "encoder": a.get("encoder"),
        "weights_sha256": a.get("weights_sha256"),
        "encoder_card": card,
        "mpp": a.get("mpp"),
        "tile_px": a.get("tile_px"),
        "tiling_key": tiling,
    }


def check_features_match_model(meta: dict, identity: dict[str, object], where: str | Path) -> None:
    """Refuse features made with another encoder, other weights or other tiles than the model's."""
    enc = meta.get("encoder", {})
    tiling = meta.get("tiling", {})
    problems = []
    if str(enc.get("name")) != str(identity.get("encoder")):
        problems.append(f"encoder {identity.get('encoder')!r} but the model was trained on {enc.get('name')!r}")
    if str(enc.get("weights_sha256")) != str(identity.get("weights_sha256")):
        problems.append(f"encoder weights {str(identity.get('weights_sha256'))[:12]} but the model's are "
                        f"{str(enc.get('weights_sha256'))[:12]}")
    for k in ("mpp", "tile_px"):
        mv, fv = tiling.get(k), identity.get(k)
        if mv is not None and fv is not None and not math.isclose(float(mv), float(fv), rel_tol=1e-6):
            problems.append(f"{k} {fv} but the model's is {mv}")
    if problems:
        raise ModelError("features do not fit the model: " + "; ".join(problems), path=where,
                         fix=f"embed the slides with the model's encoder ({enc.get('name')}, same weights, "
                             f"--mpp {tiling.get('mpp')} --tile-size {tiling.get('tile_px')})")


# --- training ---------------------------------------------------------------------------


#: on_epoch(stage, epoch, max_epochs, train_loss, val_loss, done)
EpochCallback = Callable[[str, int, int, float, float, bool], None]


@dataclass
class FitResult:
    model: TileMIL
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise WeakSTILError(f"unknown device {device!r}", fix="use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WeakSTILError("CUDA is not available on this machine", fix="pass --device cpu")
    if dev.type == "cuda":  # deterministic cuBLAS (read when the first handle is made)
        import os

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return dev


def _loss_fn(cfg: TrainConfig):
    if cfg.loss == "huber":
        return lambda pred, target: nn.functional.huber_loss(pred / 100.0, target / 100.0, delta=cfg.huber_delta)
    return lambda pred, target: nn.functional.mse_loss(pred / 100.0, target / 100.0)


def _feature_stats(bank: FeatureBank, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std over all tiles of the given slides (float64 accumulation)."""
    s = torch.zeros(bank.dim, dtype=torch.float64, device=bank.features.device)
    ss = torch.zeros(bank.dim, dtype=torch.float64, device=bank.features.device)
    n = 0
    for i in idx:
        x = bank.slide_features(int(i)).to(torch.float64)
        s += x.sum(0)
        ss += (x * x).sum(0)
        n += x.shape[0]
    mean = s / max(n, 1)
    var = (ss / max(n, 1) - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return mean.float().cpu(), std.float().cpu()


class _Deterministic:
    """Deterministic torch algorithms inside the block (restored afterwards)."""

    def __enter__(self):
        self.prev = torch.are_deterministic_algorithms_enabled()
        self.prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc):
        torch.use_deterministic_algorithms(self.prev, warn_only=self.prev_warn)


#: Below this many multiply-adds per forward pass, extra threads cost more than they give.
SMALL_WORK = 5e7


def choose_threads(work: float, requested: int = 0) -> int:
    """Torch threads for a network doing ``work`` multiply-adds per forward pass.

    ``requested`` > 0 is obeyed. Otherwise: one thread for small networks (thread start-up
    dominates), else the cores not already busy with other processes (1-minute load average),
    at most torch's default. On a loaded machine, more threads than free cores make every
    parallel region wait for a descheduled thread: training ran 6x slower with 2 threads than
    with 1 on a 2-core machine already running two other jobs.
    """
    if requested > 0:
        return int(requested)
    if work < SMALL_WORK:
        return 1
    import os

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on this platform
        busy = 0.0
    return max(1, min(torch.get_num_threads(), cpus, int(cpus - busy + 0.5)))


class _Threads:
    """Run torch with ``n`` threads inside the block (restored afterwards)."""

    def __init__(self, n: int):
        self.n = n

    def __enter__(self):
        self.prev = torch.get_num_threads()
        if self.n != self.prev:
            torch.set_num_threads(self.n)
            log.debug("torch threads: %d", self.n)

    def __exit__(self, *exc):
        if self.n != self.prev:
            torch.set_num_threads(self.prev)


def _sample_batch(bank: FeatureBank, slides: np.ndarray, max_tiles: int, rng: np.random.Generator,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Features (B, M, D) float32, mask (B, M) and stroma estimates (B, M) (or None) of up to
    ``max_tiles`` tumour-bed tiles per slide."""
    rows = []
    for i in slides:
        r = bank.bags[int(i)].masked_rows
        if len(r) > max_tiles:
            r = r[np.sort(rng.choice(len(r), max_tiles, replace=False))]
        rows.append(r)
    m = max(len(r) for r in rows)
    idx = np.zeros((len(rows), m), dtype=np.int64)
    mask = np.zeros((len(rows), m), dtype=bool)
    for j, r in enumerate(rows):
        idx[j, :len(r)] = r
        mask[j, :len(r)] = True
    rows_t = torch.from_numpy(idx).to(bank.features.device)
    x = bank.features[rows_t].to(device=device, dtype=torch.float32)
    stroma = None if bank.stroma_estimate is None else bank.stroma_estimate[rows_t].to(device)
    return x, torch.from_numpy(mask).to(device), stroma


@dataclass
class SlideScores:
    """One slide scored with all its tiles."""

    slide_id: str
    stil: float
    tile_scores: np.ndarray  #: (N,) float32 0-100, every tile
    weights: np.ndarray  #: (N,) float32 aggregation weight (0 outside the tumour bed)
    attention: np.ndarray | None  #: (N,) raw attention logits (attention aggregator only)
    stroma: np.ndarray | None = None  #: (N,) stroma weight in [0, 1] (stroma aggregator only)


@torch.no_grad()
def score_slides(model: TileMIL, bank: FeatureBank, idx: Sequence[int] | None = None,
                 device: torch.device | str = "cpu", threads: int = 0) -> list[SlideScores]:
    """Score every tile of the given slides (all slides by default) and aggregate.

    ``threads``: torch threads (0: :func:`choose_threads`)."""
    device = torch.device(device) if isinstance(device, str) else device
    model.eval()
    idx = range(len(bank)) if idx is None else idx
    if not len(idx):
        return []
    typical = float(np.median([bank.bags[int(i)].n for i in idx]))
    with _Threads(choose_threads(min(typical, SCORE_CHUNK) * bank.dim * model.arch.hidden, threads)):
        return [_score_one(model, bank, int(i), device) for i in idx]


def _score_one(model: TileMIL, bank: FeatureBank, i: int, device: torch.device) -> SlideScores:
    b = bank.bags[int(i)]
    feats = bank.slide_features(int(i))
    est = bank.slide_stroma(int(i))
    scores, logits, stromas = [], [], []
    for start in range(0, b.n, SCORE_CHUNK):
        x = feats[start:start + SCORE_CHUNK].to(device=device, dtype=torch.float32)
        e = None if est is None else est[start:start + SCORE_CHUNK].to(device)
        s, a, st = model.tiles(x, e)
        scores.append(s)
        if a is not None:
            logits.append(a)
        if st is not None:
            stromas.append(st)
    s = torch.cat(scores)
    a = torch.cat(logits) if logits else None
    st = torch.cat(stromas) if stromas else None
    mask = torch.from_numpy(b.tile_mask).to(device)
    slide, w = model.aggregate(s[None], None if a is None else a[None], mask[None], None if st is None else st[None])
    return SlideScores(b.slide_id, float(slide[0]), s.float().cpu().numpy(), w[0].float().cpu().numpy(),
                       None if a is None else a.float().cpu().numpy(),
                       None if st is None else st.float().cpu().numpy())


def fit(bank: FeatureBank, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray | None,
        cfg: TrainConfig, *, seed: int, epochs: int | None = None, stage: str = "train",
        on_epoch: EpochCallback | None = None) -> FitResult:
    """Train one model on ``train_idx`` slides.

    With ``val_idx`` the model with the lowest validation loss is kept (early stopping
    after ``cfg.patience`` epochs without improvement); without it, exactly ``epochs``
    epochs are run.
    """
    cfg.check()
    device = resolve_device(cfg.device)
    max_epochs = int(epochs if epochs is not None else cfg.epochs)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.float32)
    tiles_per_step = cfg.batch_slides * min(cfg.max_tiles, max(int(b.tile_mask.sum()) for b in bank.bags))
    threads = choose_threads(tiles_per_step * bank.dim * cfg.hidden, cfg.threads)
    with _Deterministic(), _Threads(threads):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = TileMIL(cfg.architecture(bank.dim))
        mean, std = _feature_stats(bank, train_idx)
        model.feature_mean.copy_(mean)
        model.feature_std.copy_(std)
        with torch.no_grad():  # start every tile at the mean training label
            p = float(np.clip(labels[train_idx].mean() / 100.0, 0.01, 0.99))
            model.score.bias.fill_(math.log(p / (1 - p)))
        model.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = _loss_fn(cfg)
        y_all = torch.from_numpy(labels).to(device)
        best_loss, best_state, best_epoch = math.inf, None, max_epochs
        history: list[dict[str, float]] = []
        epoch = 0
        for epoch in range(1, max_epochs + 1):
            model.train()
            order = rng.permutation(train_idx)
            total, count = 0.0, 0
            for start in range(0, len(order), cfg.batch_slides):
                batch = order[start:start + cfg.batch_slides]
                x, mask, est = _sample_batch(bank, batch, cfg.max_tiles, rng, device)
                pred, _, _ = model(x, mask, est)
                loss = loss_fn(pred, y_all[torch.from_numpy(batch).to(device)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
                count += len(batch)
            train_loss = total / max(count, 1)
            val_loss = math.nan
            if val_idx is not None and len(val_idx):
                preds = np.array([s.stil for s in score_slides(model, bank, val_idx, device, threads)],
                                 dtype=np.float32)
                val_loss = float(loss_fn(torch.from_numpy(preds), torch.from_numpy(labels[val_idx])))
                if val_loss < best_loss - 1e-7:
                    best_loss, best_epoch = val_loss, epoch
                    best_state = copy.deepcopy(model.state_dict())
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            stop = val_idx is not None and len(val_idx) > 0 and epoch - best_epoch >= cfg.patience
            if on_epoch is not None:
                on_epoch(stage, epoch, max_epochs, train_loss, val_loss, stop or epoch == max_epochs)
            if stop:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch = epoch
        model.eval()
    return FitResult(model=model.cpu(), best_epoch=best_epoch, epochs_run=epoch, history=history)


@dataclass
class CVResult:
    folds: np.ndarray  #: fold per slide
    scores: list[SlideScores]  #: out-of-fold, in bank order
    best_epochs: list[int]
    histories: list[list[dict[str, float]]]
    models: list[TileMIL] = field(default_factory=list)  #: one per fold (on the CPU)


#: Fewer training groups than this: the early-stopping split is by slide (whole groups would
#: take a third or more of the training data away, e.g. one of three centres).
MIN_GROUPS_FOR_GROUP_SPLIT = 5


def inner_split(train_idx: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split training slides into (fit, validation) for early stopping: whole groups when there
    are enough groups (patients), else by slide."""
    from weakstil.cohort import group_holdout

    g = np.asarray(groups, dtype=object)[train_idx]
    n_groups = len(np.unique(g.astype(str)))
    if n_groups < MIN_GROUPS_FOR_GROUP_SPLIT:
        g = np.array([str(i) for i in train_idx], dtype=object)
        log.debug("%d groups among the training slides: early-stopping split by slide", n_groups)
    held = group_holdout(g, fraction, seed)
    if held.all() or not held.any():
        return train_idx, train_idx[:0]
    return train_idx[~held], train_idx[held]


def cross_validate(bank: FeatureBank, labels: np.ndarray, groups: np.ndarray, cfg: TrainConfig, n_folds: int,
                   *, on_epoch: EpochCallback | None = None) -> CVResult:
    """Group-aware K-fold: each slide scored by the model that did not see its group."""
    from weakstil.cohort import group_kfold

    what = "slides" if len(np.unique(np.asarray(groups).astype(str))) == len(groups) else "groups"
    folds = group_kfold(groups, n_folds, seed=cfg.seed, what=what)
    scores: list[SlideScores | None] = [None] * len(bank)
    best_epochs, histories, models = [], [], []
    for k in range(n_folds):
        test = np.flatnonzero(folds == k)
        train = np.flatnonzero(folds != k)
        fit_idx, val_idx = inner_split(train, groups, cfg.val_fraction, cfg.seed + 1000 + k)
        res = fit(bank, labels, fit_idx, val_idx, cfg, seed=cfg.seed + k + 1, stage=f"fold {k + 1}/{n_folds}",
                  on_epoch=on_epoch)
        best_epochs.append(res.best_epoch)
        histories.append(res.history)
        dev = resolve_device(cfg.device)
        for i, s in zip(test, score_slides(res.model.to(dev), bank, test, dev, threads=cfg.threads)):
            scores[int(i)] = s
        models.append(res.model.cpu())
        log.info("fold %d/%d: %d train, %d validation, %d test slides, best epoch %d", k + 1, n_folds,
                 len(fit_idx), len(val_idx), len(test), res.best_epoch)
    return CVResult(folds=folds, scores=scores, best_epochs=best_epochs, histories=histories,  # type: ignore[arg-type]
                    models=models)


# --- saving and loading -----------------------------------------------------------------


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions() -> dict[str, str]:
    return {"weakstil": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": np.__version__}


def save_model(model: TileMIL, directory: str | Path, meta: dict[str, object]) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory`` (atomically each)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        # one metadata key only: safetensors writes several in random (hash) order, which would
        # make the bytes of identical models differ
        save_file(state, str(tmp), metadata={"weakstil": json.dumps({"format": FORMAT, "version": FORMAT_VERSION})})
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta,
            "architecture": asdict(model.arch), "weights_file": WEIGHTS_FILE,
            "weights_sha256": sha256_file(directory / WEIGHTS_FILE)}
    with atomic_path(directory / META_FILE) as tmp:
        tmp.write_text(json.dumps(full, indent=2, default=_json_default) + "\n")
    return directory


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def load_model(directory: str | Path) -> tuple[TileMIL, dict]:
    """Rebuild the network from ``model.json`` and load its weights strictly.

    Fails with a :class:`ModelError` when a file is missing, the weights' hash differs
    from the one recorded, or the weight names/shapes do not match the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
    fix = "pass the directory written by 'weakstil train' (it holds model.json and model.safetensors)"
    if not directory.is_dir():
        raise ModelError("model directory not found", path=directory, fix=fix)
    for p in (meta_path, weights_path):
        if not p.exists():
            raise ModelError(f"{p.name} is missing", path=directory, fix=fix)
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"model.json is not valid JSON ({exc})", path=meta_path, fix="train the model again") from None
    if meta.get("format") != FORMAT:
        raise ModelError(f"not a WeakSTIL MIL model (format {meta.get('format')!r})", path=meta_path, fix=fix)
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelError(f"model format version {meta.get('format_version')} is newer than this weakstil "
                         f"understands ({FORMAT_VERSION})", path=meta_path, fix="upgrade weakstil")
    recorded = meta.get("weights_sha256")
    actual = sha256_file(weights_path)
    if recorded != actual:
        raise ModelError(f"model.safetensors does not match model.json (SHA-256 {actual[:12]}, recorded "
                         f"{str(recorded)[:12]})", path=weights_path,
                         fix="the weights were changed or mixed up with another model; train again")
    try:
        arch = Architecture(**meta["architecture"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"model.json architecture is incomplete ({exc})", path=meta_path, fix=fix) from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read weights ({exc})", path=weights_path, fix="train the model again") from None
    model = TileMIL(arch)
    from weakstil.weights import state_dict_diff

    missing, unexpected, wrong = state_dict_diff(model.state_dict(), state)
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected)}")
        if wrong:
            parts.append(f"wrong shape {', '.join(wrong)}")
        raise ModelError("weights do not match the architecture in model.json: " + "; ".join(parts),
                         path=weights_path, fix="train the model again")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta


def model_meta(bank: FeatureBank, cfg: TrainConfig, *, threshold: float, extra: dict | None = None) -> dict:
    """The model.json fields that describe where the model comes from."""
    ident = bank.identity
    return {
        "encoder": {"name": ident.get("encoder"), "weights_sha256": ident.get("weights_sha256"),
                    "card": ident.get("encoder_card")},
        "tiling": {"mpp": ident.get("mpp"), "tile_px": ident.get("tile_px"), "key": ident.get("tiling_key")},
        "threshold": float(threshold),
        "seed": int(cfg.seed),
        "training": {"config": asdict(cfg), **(extra or {})},
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
