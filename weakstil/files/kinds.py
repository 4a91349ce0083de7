"""The five per-slide file kinds. Coordinates are level-0 pixels ``[x, y]`` of each tile's
top-left corner; per-tile datasets share the order of ``coords``; masks carry their µm/px in
an ``mpp`` attribute. Every file also has the attributes ``kind``, ``schema_version`` and
``complete`` = 1 (written last), and ``slide_fingerprint``: the identity of the scan it was made
from (:mod:`weakstil.fingerprint`), checked before the file is reused for a slide.

To add a dataset to a kind: a field with default ``None`` and an optional
``Dataset(name, dtype, required=False)`` in its ``DATASETS``; older files then read it as
``None`` and older readers ignore it. New attributes go into ``attrs`` (read with
:meth:`~weakstil.files.schema.SlideFile.attr`, ``None`` when absent).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weakstil.files import h5
from weakstil.files.schema import Dataset, SlideFile, register

# shared dataset declarations
_COORDS = Dataset("coords", "int64")
_TISSUE_FRACTION = Dataset("tissue_fraction", "float32")
_TISSUE_MASK = Dataset("tissue_mask", "uint8", gzip=True, mpp=True, as_bool=True)
#: Each tile's stroma weight in the slide score (stroma-aggregator models only).
_STROMA_WEIGHT = Dataset("stroma_weight", "float32", required=False)
#: The tiles' own scores before the blend with the slide's (``tile_scores`` are the published ones,
#: :func:`weakstil.mil.aggregate.tile_estimates`): what the slide's sTIL% and a rescored bed aggregate.
_TILE_SCORES_MODEL = Dataset("tile_scores_model", "float32", required=False)
#: Each tile's colour-deconvolution stroma share (weakstil.tilestats).
_STROMA_ESTIMATE = Dataset("stroma_estimate", "float32", required=False)


@register
@dataclass(kw_only=True)
class TilesFile(SlideFile):
    """``weakstil tile``: the tissue mask and the tile grid on it.

    Datasets ``coords`` (N, 2) int64, ``tissue_fraction`` (N,) float32, ``tissue_mask`` (H, W)
    uint8 with ``mpp``. Attributes: the tiling (``mpp``, ``tile_px``, ``tile_um``,
    ``tile_size_level0``, ``overlap_px``, ``tissue_threshold``, ``tile_mode``, ``mask_mpp``,
    ``tissue_params`` and ``tiling_key`` as JSON, ``n_tiles``), the slide (``slide_path``,
    ``slide_id``, ``slide_mpp``, ``slide_mpp_source``, ``slide_width``, ``slide_height``,
    ``slide_vendor``, ``slide_levels``, ``slide_fingerprint``), ``warnings`` (JSON), ``weakstil_version``,
    ``created``, ``background`` (``none``, or how the slide's black unscanned area was read:
    :mod:`weakstil.unscanned`).
    """

    KIND = "tiles"
    WHAT = "tiles file"
    MADE_BY = "weakstil tile"
    DATASETS = (_COORDS, _TISSUE_FRACTION, _TISSUE_MASK)

    coords: np.ndarray | None = None
    tissue_fraction: np.ndarray | None = None
    tissue_mask: np.ndarray | None = None
    tissue_mask_mpp: float | None = None


@register
@dataclass(kw_only=True)
class FeaturesFile(SlideFile):
    """``weakstil embed``: one embedding per tile, with the tiles file's datasets and attributes.

    Adds ``features`` (N, D) float32 and an optional ``tumorbed`` flag per tile (read by
    training when no other tumour-bed source is given), and the attributes ``encoder``,
    ``encoder_card`` (JSON), ``embed_dim``, ``weights_sha256`` (the tensors' hash, :mod:`weakstil.weights_id`),
    ``weights_file_sha256`` (the weights file's; optional), ``weights_source``,
    ``normalisation`` (JSON), ``precision``, ``device``, ``torch_version``, ``timm_version``,
    ``seed``, ``batch_size``, ``embed_seconds``, ``decode`` (JSON: how the tiles were read, see
    :mod:`weakstil.embed`; optional), ``cache_format`` and ``cache_key`` (sha256 of everything that
    changes the features: encoder, weights, precision, timm's minor version for a timm network, card
    incl. its stain normalisation, tiling, slide µm/px, slide fingerprint, tile-statistics version).

    Optional (files from before issue 13 have none): ``tile_stats`` (N, K) float32, each tile's
    stain and nuclear-morphometry measurements (:mod:`weakstil.tilestats`; attribute
    ``tile_stats_columns``, JSON), ``stroma_estimate`` (N,) float32, its colour-deconvolution
    stroma share, and the attributes ``stain`` (JSON: the slide's Macenko stain estimate),
    ``stain_norm`` (``none`` or ``macenko``: what the encoder saw), ``tilestats_version``,
    ``stain_estimate_version`` (how ``stain`` was estimated: :data:`weakstil.stain.STAIN_ESTIMATE_VERSION`).
    Optional (files from before hunt 32 have none): ``sharpening`` (JSON, :class:`weakstil.unsharp.Sharpening`:
    the slide's edge halo read before embedding and the unsharp-mask amount undone on its tiles, 0 for
    a slide under the ``sharpened`` flag's limit, whose tiles reach the encoder unchanged).
    """

    KIND = "features"
    WHAT = "feature cache"
    MADE_BY = "weakstil embed"
    #: the options that name a feature folder (``score`` embeds into its --features too)
    FOLDER = "a folder of their own for the feature caches (embed --out, score --features)"
    DATASETS = (Dataset("features", "float32", rows_chunk=256), _COORDS, _TISSUE_FRACTION, _TISSUE_MASK,
                Dataset("tumorbed", "bool", required=False, as_bool=True),
                Dataset("tile_stats", "float32", required=False), _STROMA_ESTIMATE)

    features: np.ndarray | None = None
    coords: np.ndarray | None = None
    tissue_fraction: np.ndarray | None = None
    tissue_mask: np.ndarray | None = None
    tissue_mask_mpp: float | None = None
    tumorbed: np.ndarray | None = None
    tile_stats: np.ndarray | None = None
    stroma_estimate: np.ndarray | None = None

    @classmethod
    def fix(cls) -> str:
        return "run 'weakstil embed' again for this slide"

    @classmethod
    def _check_datasets(cls, f, attrs: dict, path: Path) -> None:
        super()._check_datasets(f, attrs, path)
        shape, dim = f["features"].shape if "features" in f else None, attrs.get("embed_dim")
        if shape is not None and (len(shape) != 2 or (dim is not None and shape[1] != dim)):
            raise h5.SlideFileError(f"{cls.WHAT}'s 'features' has shape {shape}, not (tiles, {dim}) as its "
                                    "embed_dim says (edited, or written by another tool)", path=path,
                                    fix=f"delete it, then {cls.fix()}")

    @contextlib.contextmanager
    def streaming(self, path: str | Path, n: int, dim: int) -> Iterator[Callable[[int, np.ndarray], None]]:
        """Write the file while its features arrive in row blocks: the block gets ``put(start,
        rows)``. The other datasets come from this object; the per-tile measurements made while
        the tiles stream (``tile_stats``, ``stroma_estimate``) and ``attrs`` are written when the
        block ends (fill them in inside the block). Nothing appears at ``path`` if the block fails."""
        late = ("tile_stats", "stroma_estimate")
        with h5.open_write(path) as f:
            f.attrs["complete"] = 0
            feats = f.create_dataset("features", shape=(n, dim), dtype=np.float32, chunks=(max(1, min(n, 256)), dim))
            self._write_datasets(f, skip=("features", *late))

            def put(start: int, rows: np.ndarray) -> None:
                feats[start:start + len(rows)] = rows

            yield put
            self._write_datasets(f, skip=tuple(d.name for d in self.DATASETS if d.name not in late))
            self._write_attrs(f)
        self.path = Path(path)


@register
@dataclass(kw_only=True)
class BedFile(SlideFile):
    """``weakstil tumorbed apply``: one slide's tumour bed, in its feature cache's tile order.

    Datasets ``tumorbed`` (N,) uint8 flag, ``tumorbed_fraction`` (N,) float32, ``tumorbed_mask``
    uint8 with ``mpp``, ``coords`` and, when a detector ran, ``tumour_evidence`` (N,) float32 (its
    P(tile holds invasive tumour)). Attributes ``slide_id``, ``source`` (annotation / model /
    tissue / tissue-fallback: the detector's bed was empty or implausibly small, the whole tissue
    is used and ``detail`` says why), ``detail``, the annotation file (``annotation_path``,
    ``annotation_sha256``: a bed whose annotation has changed since is refused) or the detector
    (``detector_path``, ``detector_id``, ``detector_sha256``), ``features_path`` and the features' ``cache_key`` (a bed made from
    other features is refused), ``tile_size_level0``, ``slide_mpp``, ``slide_width``,
    ``slide_height``, ``slide_path``, ``slide_fingerprint``, ``encoder``, ``weights_sha256``, ``n_tiles``,
    ``n_tumorbed_tiles``, ``tile_threshold``, ``weakstil_version``, ``created``, ``library_versions``
    (JSON: torch's, numpy's, scipy's...).
    """

    KIND = "tumorbed"
    WHAT = "tumour-bed file"
    MADE_BY = "weakstil tumorbed apply"
    DATASETS = (Dataset("tumorbed", "uint8", as_bool=True), Dataset("tumorbed_fraction", "float32"),
                Dataset("tumorbed_mask", "uint8", gzip=True, mpp=True, as_bool=True), _COORDS,
                Dataset("tumour_evidence", "float32", required=False))

    tumorbed: np.ndarray | None = None
    tumorbed_fraction: np.ndarray | None = None
    tumorbed_mask: np.ndarray | None = None
    tumorbed_mask_mpp: float | None = None
    coords: np.ndarray | None = None
    tumour_evidence: np.ndarray | None = None


@register
@dataclass(kw_only=True)
class TileScoresFile(SlideFile):
    """``weakstil train`` (``MODEL/cv/tiles/``, out of fold) and ``weakstil evaluate`` (``tiles/``).

    Datasets ``coords``, ``tile_scores`` (N,) float32 0-100, ``weights`` (N,) float32 (each
    tile's share of the slide score), the tumour-bed flag (stored as ``tile_mask``, bool),
    ``attention`` (logits; attention models only) and ``stroma_weight`` (0-1, the tile's stroma
    weight before normalisation; stroma-aggregator models only). Attributes ``slide_id``,
    ``tile_size_level0``, ``stil_pred``, ``stil_true``, ``fold`` or ``model_sha256``,
    ``source``, ``aggregator``, ``weakstil_version`` and the slide placement (``slide_path``, ``slide_mpp``,
    ``slide_width``, ``slide_height``, ``mpp``, ``tile_px``, ``overlap_px``, ``tiling_key``,
    ``slide_fingerprint``).
    """

    KIND = "tile_scores"
    WHAT = "tile-score file"
    MADE_BY = "weakstil evaluate"
    DATASETS = (_COORDS, Dataset("tile_scores", "float32"), _TILE_SCORES_MODEL, Dataset("weights", "float32"),
                Dataset("tumorbed", "bool", stored_as="tile_mask", aliases=("tumorbed",), as_bool=True),
                Dataset("attention", "float32", required=False), _STROMA_WEIGHT)

    coords: np.ndarray | None = None
    tile_scores: np.ndarray | None = None
    tile_scores_model: np.ndarray | None = None
    weights: np.ndarray | None = None
    tumorbed: np.ndarray | None = None
    attention: np.ndarray | None = None
    stroma_weight: np.ndarray | None = None


@register
@dataclass(kw_only=True)
class SlideScoresFile(SlideFile):
    """``weakstil score``: one slide scored end to end.

    Datasets ``coords``, ``tile_scores`` (published) and ``tile_scores_model`` (the tiles' own,
    stroma-aggregator models), ``attention`` (attention models: the tiles'
    aggregation weights), ``attention_logits`` (their raw logits, so that an edited tumour bed
    can be rescored; optional), ``stroma_weight`` (stroma-aggregator models: each tile's stroma
    weight, 0-1), ``stroma_estimate`` (colour-deconvolution stroma share, when the features have
    it), ``tumorbed`` (N,) uint8 flag and ``tumorbed_fraction``,
    ``tissue_fraction``, ``tissue_mask`` and ``tumorbed_mask`` (each with ``mpp``). Attributes
    ``slide_id``, ``slide_path``, ``slide_relpath`` (the slide relative to the score folder), ``tile_size_level0``,
    ``stil``, ``stil_high``, ``threshold``,
    ``status``, ``n_tiles``, ``n_tumorbed_tiles``, ``model_id``, ``model_path``, ``aggregator``,
    ``encoder_id``, the tumour bed's ``tumorbed_source`` / ``tumorbed_detail`` /
    ``tumorbed_mask_mpp`` / ``tumorbed_tile_threshold``, the features' tiling, encoder and
    ``cache_key``, ``slide_fingerprint``, versions and ``created``. The sTIL% interval and qc flags
    (:mod:`weakstil.qc.scoring`): ``stil_lower_90``, ``stil_upper_90``, ``interval_level``,
    ``interval_uncertainty``, ``tile_standard_error`` (and its degrees of freedom
    ``tile_standard_error_df``), ``fold_stils`` (JSON), ``qc`` (flags
    joined by ``;``), ``qc_reasons`` (JSON: flag -> why), ``ood_score``, ``ood_threshold``,
    ``ood_unfamiliar_share``, ``ood_unfamiliar_threshold``, ``interval_unfamiliar_share``,
    ``morphometry_ratio`` (:mod:`weakstil.qc.morphometry`), ``bed_stroma`` (:mod:`weakstil.qc.bed_stroma`),
    ``interval_bed_outline_sd`` (a detected bed's outline error in the interval, :mod:`weakstil.qc.bed_outline`),
    ``interval_whole_tissue`` (how a whole-tissue slide's interval was made, :mod:`weakstil.qc.bed_fallback`),
    ``image_stats`` (JSON); absent in files scored before they existed.
    """

    KIND = "slide_scores"
    WHAT = "slide-score file"
    MADE_BY = "weakstil score"
    DATASETS = (_COORDS, Dataset("tile_scores", "float32"), _TILE_SCORES_MODEL,
                Dataset("attention", "float32", required=False),
                Dataset("tumorbed", "uint8", as_bool=True), Dataset("tumorbed_fraction", "float32"),
                _TISSUE_FRACTION, _TISSUE_MASK, Dataset("tumorbed_mask", "uint8", gzip=True, mpp=True, as_bool=True),
                Dataset("attention_logits", "float32", required=False), _STROMA_WEIGHT, _STROMA_ESTIMATE)

    coords: np.ndarray | None = None
    tile_scores: np.ndarray | None = None
    tile_scores_model: np.ndarray | None = None
    attention: np.ndarray | None = None
    stroma_weight: np.ndarray | None = None
    stroma_estimate: np.ndarray | None = None
    tumorbed: np.ndarray | None = None
    tumorbed_fraction: np.ndarray | None = None
    tissue_fraction: np.ndarray | None = None
    tissue_mask: np.ndarray | None = None
    tissue_mask_mpp: float | None = None
    tumorbed_mask: np.ndarray | None = None
    tumorbed_mask_mpp: float | None = None
    attention_logits: np.ndarray | None = None  #: raw attention logits of every tile (rescoring an edited bed)

    @property
    def stil(self) -> float | None:
        value = self.attrs.get("stil")
        return None if value is None or value != value else float(value)
