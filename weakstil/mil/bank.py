"""All tiles of a cohort's slides in one (T, D) tensor, each feature cache read once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from weakstil.errors import WeakSTILError
from weakstil.mil.identity import check_same_identity, non_finite_error

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.files import FeaturesFile

log = logging.getLogger(__name__)

#: Above this many bytes (as float32) a feature bank is held as float16 in memory.
FLOAT16_ABOVE_BYTES = 3 * 1024**3


@dataclass
class SlideBag:
    """One slide's tiles inside a :class:`FeatureBank` (rows ``offset:offset+n``)."""

    slide_id: str
    offset: int
    n: int
    coords: np.ndarray
    tile_size_level0: float
    tile_mask: np.ndarray  #: the tiles whose scores make the slide score: its tumour bed (or all tiles)
    path: Path
    attrs: dict[str, object] = field(default_factory=dict, repr=False)  #: the feature cache's attributes

    @property
    def masked_rows(self) -> np.ndarray:
        return self.offset + np.flatnonzero(self.tile_mask)


def _stats_columns(cache: FeaturesFile) -> tuple[str, ...]:
    """The names of a feature file's tile measurements (``tile_stats_columns``; generic when absent)."""
    from weakstil.tumorbed.evidence import stats_column_names

    n = int(np.asarray(cache.tile_stats).shape[1]) if cache.tile_stats is not None else 0
    try:
        names = stats_column_names(cache.attrs.get("tile_stats_columns") or None) or []
    except ValueError:
        names = []
    return tuple(str(c) for c in names) if len(names) == n else tuple(f"tile_stat_{j}" for j in range(n))


def centre_slide_embeddings(features: np.ndarray) -> np.ndarray:
    """One slide's embeddings minus their mean over all its tiles (float32).

    What stays is how each tile differs from the rest of its slide: a slide-wide shift of the
    encoder's output (stain, scanner, section thickness) is gone. The slide-level abundance of
    lymphocytes and stroma that the mean also carried is still in the tile measurements
    (:mod:`weakstil.tilestats`, appended after this), which are never centred."""
    x = np.asarray(features, dtype=np.float32)
    return x - x.mean(axis=0, keepdims=True, dtype=np.float64).astype(np.float32) if len(x) else x


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
        #: (T,) each tile's colour-deconvolution stroma share (None when a feature file has none)
        self.stroma_estimate = stroma_estimate
        self.index = {b.slide_id: i for i, b in enumerate(bags)}
        #: per slide, what centring took off each row (None: not centred); see raw_slide_features
        self.embedding_offsets: list[torch.Tensor] | None = None
        #: the names of the tile measurements appended as the last columns (empty: none appended)
        self.tile_stats_columns: tuple[str, ...] = ()

    def __repr__(self) -> str:
        centred = ", centred" if self.embedding_offsets is not None else ""
        stats = f", tile_stats={len(self.tile_stats_columns)} columns" if self.tile_stats_columns else ""
        return (f"FeatureBank({len(self.bags)} slide{'' if len(self.bags) == 1 else 's'}, {int(self.features.shape[0])} tiles, dim={self.dim}{stats}"
                f"{centred}, {str(self.features.dtype).replace('torch.', '')})")

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def __len__(self) -> int:
        return len(self.bags)

    @classmethod
    def load(cls, paths: Sequence[str | Path], slide_ids: Sequence[str] | None = None, *, dtype: str = "auto",
             tumorbeds: dict[str, np.ndarray] | None = None, tile_stats: bool = False,
             stroma_estimate: bool = False, centre_embeddings: bool = False) -> FeatureBank:
        """Read each feature cache once: ``features``, ``coords``, attributes and the optional
        per-tile ``tumorbed`` flag, ``stroma_estimate`` and ``tile_stats`` (appended to the
        features when ``tile_stats``). ``centre_embeddings``: see :func:`centre_slide_embeddings`.

        ``tumorbeds`` (slide id -> bool per tile) overrides the files' tumour-bed flags.
        All files must come from the same encoder, weights and tile size; a slide whose
        tumour bed holds no tile falls back to all its tiles (with a warning).
        """
        from weakstil.files import FeaturesFile

        paths = [Path(p) for p in paths]
        slide_ids = list(slide_ids) if slide_ids is not None else [p.stem for p in paths]
        # the tile statistics always: their crush column trims a bed not given (:func:`weakstil.crush.crush_tiles`)
        caches = [FeaturesFile.read(p, skip=("tissue_mask",)) for p in paths]
        return cls.from_caches(caches, slide_ids, dtype=dtype, tumorbeds=tumorbeds, tile_stats=tile_stats,
                               stroma_estimate=stroma_estimate, centre_embeddings=centre_embeddings)

    @classmethod
    def from_caches(cls, caches: list[FeaturesFile], slide_ids: Sequence[str], *, dtype: str = "auto",
                    tumorbeds: dict[str, np.ndarray] | None = None, tile_stats: bool = False,
                    stroma_estimate: bool = False, centre_embeddings: bool = False) -> FeatureBank:
        """The bank of feature caches already read (see :meth:`load`). Their ``features`` arrays
        are moved into the bank: each cache's is set to ``None``. ``tile_stats`` / ``stroma_estimate``:
        the model needs them, a file without them is refused."""
        paths = [c.path for c in caches]
        for c in caches:
            for needed, name, have in ((tile_stats, "tile statistics", c.tile_stats),
                                       (stroma_estimate, "stroma estimate", c.stroma_estimate)):
                if needed and (have is None or len(have) != len(c.features)):
                    raise WeakSTILError(f"feature file has no {name}, which this model needs (embedded with "
                                        "--no-tile-stats, or by an older weakstil)", path=c.path,
                                        fix="run 'weakstil embed' again for this slide without --no-tile-stats")
        offsets: list[np.ndarray] | None = None
        if centre_embeddings:  # the slide means are kept: raw_slide_features (qc) adds them back
            offsets = []
            for c in caches:
                raw = np.asarray(c.features, dtype=np.float32)
                c.features = centre_slide_embeddings(raw)
                offsets.append(raw[:1] - c.features[:1] if len(raw) else np.zeros((1, raw.shape[1]), np.float32))
        stats_columns: tuple[str, ...] = ()
        if tile_stats:
            stats_columns = _stats_columns(caches[0]) if caches else ()
            for c in caches:
                c.features = np.concatenate([np.asarray(c.features, np.float32),
                                             np.asarray(c.tile_stats, np.float32)], axis=1)
        dims = {c.features.shape[1] for c in caches}
        if len(dims) > 1:
            by_dim = {d: [sid for sid, c in zip(slide_ids, caches) if c.features.shape[1] == d][:3] for d in dims}
            raise WeakSTILError(f"feature files disagree on the embedding size: {by_dim}",
                                fix="embed all slides with the same encoder")
        identity = check_same_identity(slide_ids, [c.attrs for c in caches])
        total = sum(len(c.features) for c in caches)
        dim = dims.pop()
        if dtype == "auto":
            dtype = "float16" if total * dim * 4 > FLOAT16_ABOVE_BYTES else "float32"
        # filled slide by slide, each cache's array dropped once copied: memory stays near one bank
        features = torch.empty((total, dim), dtype=getattr(torch, dtype))
        has_stroma = all(c.stroma_estimate is not None and len(c.stroma_estimate) == len(c.features) for c in caches)
        stroma = torch.zeros(total, dtype=torch.float32) if has_stroma else None
        bags: list[SlideBag] = []
        offset = 0
        for sid, p, cache in zip(slide_ids, paths, caches):
            n = len(cache.features)
            features[offset:offset + n] = torch.from_numpy(np.asarray(cache.features, dtype=np.float32))
            if stroma is not None:
                stroma[offset:offset + n] = torch.from_numpy(np.asarray(cache.stroma_estimate, dtype=np.float32))
            cache.features = None
            mask = cache.tumorbed if cache.tumorbed is not None and cache.tumorbed.shape == (n,) else None
            if tumorbeds is not None and sid in tumorbeds:
                mask = np.asarray(tumorbeds[sid], dtype=bool)
                if mask.shape != (n,):
                    raise WeakSTILError(f"tumour bed of {sid} has {mask.shape[0]} entries for {n} tiles",
                                        fix="compute the tumour bed on the same tiles")
            if mask is None:
                mask = np.ones(n, dtype=bool)
            crushed = 0
            if tumorbeds is None or sid not in tumorbeds:  # the file's flags or all tiles: crush left out as
                crushed = int(mask.sum())  # 'score' leaves it out of the whole tissue (a resolved bed has)
                mask = _without_crush(mask, cache, sid)
            if n == 0:
                raise WeakSTILError("feature file has no tiles", path=p, fix="check the slide has tissue")
            if not mask.any():  # train, evaluate and score give such a slide no score (they resolve its bed)
                log.warning("%s: %s; using all %d tiles", sid, f"the {crushed} tiles of its tumour bed are all crush "
                            "artefact" if crushed else "no tile in the tumour bed", n)
                mask = np.ones(n, dtype=bool)
            bags.append(SlideBag(sid, offset, n, np.asarray(cache.coords, dtype=np.int64), cache.tile_size_level0,
                                 mask, p, cache.attrs))
            offset += n
        if not torch.isfinite(features).all():
            bad = [b for b in bags if not torch.isfinite(features[b.offset:b.offset + b.n]).all()]
            raise non_finite_error([b.path for b in bad])  # named by file (NON_FINITE_FIX)
        log.debug("feature bank: %d slides, %d tiles x %d (%s)", len(bags), total, dim, dtype)
        bank = cls(features, bags, identity, stroma)
        bank.tile_stats_columns = stats_columns
        if offsets is not None:
            bank.embedding_offsets = [torch.from_numpy(np.pad(o[0], (0, dim - o.shape[1]))) for o in offsets]
        return bank

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

    def raw_slide_features(self, i: int) -> torch.Tensor:
        """One slide's features as the encoder made them (the slide mean added back when the bank
        centres embeddings): what the qc's embedding reference compares, so a slide-wide shift
        still shows there."""
        x = self.slide_features(i)
        if self.embedding_offsets is None:
            return x
        return x.float() + self.embedding_offsets[i].to(x.device)

    def slide_tile_stats(self, i: int) -> np.ndarray | None:
        """One slide's tile measurements (the appended columns; None when the bank has none)."""
        k = len(self.tile_stats_columns)
        return self.slide_features(i)[:, -k:].float().cpu().numpy() if k else None

    def slide_stroma(self, i: int) -> torch.Tensor | None:
        """One slide's stroma estimates (None when the bank has none)."""
        b = self.bags[i]
        return None if self.stroma_estimate is None else self.stroma_estimate[b.offset:b.offset + b.n]


def _without_crush(mask: np.ndarray, cache, slide_id: str) -> np.ndarray:
    """``mask`` less the cache's crush tiles (:func:`weakstil.crush.crush_tiles`): a bed no source gave (the
    feature file's own flags, or all its tiles, in ``train`` and ``evaluate``) is scored as ``score`` scores the
    whole tissue, from which the bed resolver leaves them out."""
    from weakstil.crush import crush_tiles

    crush = crush_tiles(cache) if cache.tile_stats is not None else None
    if crush is None or crush.shape != mask.shape or not (mask & crush).any():
        return mask
    log.info("%s: %d tile%s of crush artefact left out of its bed", slide_id, int((mask & crush).sum()),
             "s" if (mask & crush).sum() > 1 else "")
    return mask & ~crush
