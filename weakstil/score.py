"""Stage: score slides end to end — tiles, embeddings (cached), tumour bed, tile scores, slide sTIL%.

Per slide, in ``OUT``:

* ``<slide_id>.h5``: ``coords`` (level-0), ``tile_scores``, ``attention`` (attention models),
  ``stroma_weight`` (stroma-aggregator models: each tile's weight in the slide score, 0-1),
  ``stroma_estimate`` (the colour-deconvolution stroma share from the features),
  ``tumorbed`` flag and ``tumorbed_fraction`` per tile, ``tissue_mask`` and ``tumorbed_mask``
  (each with attribute ``mpp``); attributes ``tile_size_level0``, ``stil``, ``stil_high``,
  ``threshold``, ``status``, model / encoder / tiling identity, versions, ``complete``.
* ``<slide_id>_heatmap.png``: thumbnail, tile-score heatmap, tumour-bed outline, colour bar.
* ``<slide_id>.geojson``: the tiles as QuPath ``tile`` objects with their scores as measurements.

and ``results.csv`` with one row per input, rewritten atomically after every slide, so a run
killed midway loses nothing and a rerun only does what is missing or failed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from weakstil import __version__
from weakstil.atomic import atomic_path
from weakstil.errors import WeakSTILError
from weakstil.slide import slide_id_from_path

log = logging.getLogger(__name__)

RESULT_COLUMNS = ["slide_id", "path", "stil", "stil_high", "threshold", "n_tiles", "n_tumorbed_tiles",
                  "tumorbed_source", "status", "error", "model_id", "encoder_id", "seconds"]
STATUS_OK = "ok"
STATUS_ERROR = "error"
STATUS_NO_BED = "no tumour bed"
#: Statuses a rerun does not redo.
FINISHED = (STATUS_OK, STATUS_NO_BED)


@dataclass
class ScoreOptions:
    model: Path
    out: Path
    features: Path | None = None  #: embedding cache (default OUT/features)
    encoder: str | None = None  #: overrides the encoder recorded in the model
    weights: str | None = None
    device: str = "auto"
    workers: int = 2
    batch_size: int = 64
    slide_mpp: float | None = None
    allow_upsample: bool = False
    annotations: Path | None = None
    tumorbed_model: Path | None = None
    tumorbed_beds: Path | None = None  #: precomputed beds (weakstil tumorbed apply), used first
    threshold: float | None = None
    overwrite: bool = False

    @property
    def cache_dir(self) -> Path:
        return self.features or self.out / "features"


@dataclass
class _Context:
    """What every slide of a batch shares: the MIL model, encoder, detector."""

    opts: ScoreOptions
    model: Any
    meta: dict
    model_id: str
    threshold: float
    params: Any
    detector: Any = None
    detector_path: Path | None = None
    models: list = field(default_factory=list)  #: what scores slides: [model] or the CV fold models
    _encoder: Any = field(default=None, repr=False)

    @property
    def encoder_id(self) -> str:
        enc = self.meta.get("encoder", {})
        return f"{enc.get('name')}@{str(enc.get('weights_sha256'))[:12]}"

    def encoder(self):
        """Built on first use: a rerun whose slides are all already scored never loads it."""
        if self._encoder is None:
            self._encoder = load_scoring_encoder(self.opts, self.meta)
        return self._encoder


def load_scoring_encoder(opts: ScoreOptions, meta: dict):
    """The encoder the model was trained on: ``--encoder``, else ``MODEL/encoder``, else the
    card recorded in the model; its weights must hash to what the model recorded."""
    from weakstil.encoders.factory import create_encoder

    recorded = meta.get("encoder", {})
    name = opts.encoder
    if name is None:
        bundled = opts.model / "encoder"
        name = str(bundled) if bundled.is_dir() else recorded.get("name")
    if not name:
        raise WeakSTILError("the model does not record its encoder", path=opts.model, fix="pass --encoder")
    encoder = create_encoder(name, weights=opts.weights, device=opts.device)
    recorded_card = recorded.get("card") or {}
    if isinstance(recorded_card, dict) and recorded_card.get("stain_norm") != encoder.card.stain_norm:
        import dataclasses  # the stain normalisation the features were made with (embed --stain-norm)

        encoder.card = dataclasses.replace(encoder.card, stain_norm=recorded_card.get("stain_norm"))
    want = recorded.get("weights_sha256")
    if want and encoder.weights_sha256 != want:
        raise WeakSTILError(
            f"encoder '{name}' has weights {encoder.weights_sha256[:12]} but the model was trained on "
            f"{str(want)[:12]}", path=opts.model,
            fix="pass the encoder the model was trained with (--encoder DIR / --weights FILE)")
    return encoder


def _tiling_params(meta: dict):
    from weakstil.tiles import TilingParams
    from weakstil.tiling import TileMode
    from weakstil.tissue import TissueParams

    tiling = meta.get("tiling", {})
    key = tiling.get("key")
    if isinstance(key, str):
        key = json.loads(key)
    if not key:
        return TilingParams(mpp=float(tiling.get("mpp", 0.5)), tile_px=int(tiling.get("tile_px", 224)))
    return TilingParams(mpp=key["mpp"], tile_px=key["tile_px"], overlap_px=key["overlap_px"],
                        tissue_threshold=key["tissue_threshold"], mode=TileMode(key["mode"]),
                        mask_mpp=key["mask_mpp"], tissue=TissueParams(**key["tissue"]))


def open_context(opts: ScoreOptions) -> _Context:
    from weakstil.ensemble import load_scoring_models
    from weakstil.tumorbed import TumorBedModel

    models, meta = load_scoring_models(opts.model)
    model = models[0]
    model_id = f"{opts.model.resolve().name}@{str(meta.get('weights_sha256'))[:12]}"
    threshold = float(opts.threshold if opts.threshold is not None else meta.get("threshold", 30.0))
    detector_path = opts.tumorbed_model
    if detector_path is None and (opts.model / "tumorbed" / "model.json").is_file():
        detector_path = opts.model / "tumorbed"
    detector = TumorBedModel.load(detector_path) if detector_path is not None else None
    return _Context(opts, model, meta, model_id, threshold, _tiling_params(meta), detector, detector_path, models)


def _read_previous(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"slide_id": str}, keep_default_na=False)
    except Exception:  # unreadable: redo everything
        log.warning("%s is unreadable; all slides will be scored again", path)
        return {}
    return {str(r["slide_id"]): r for r in table.to_dict("records")}


def _write_results(path: Path, rows: dict[str, dict]) -> None:
    import pandas as pd

    table = pd.DataFrame(list(rows.values()), columns=RESULT_COLUMNS)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")


def _outputs_exist(out: Path, slide_id: str) -> bool:
    return all((out / f"{slide_id}{suffix}").is_file() for suffix in (".h5", "_heatmap.png", ".geojson"))


def score_batch(slides: list[Path], opts: ScoreOptions,
                on_slide: Callable[[str, dict], None] | None = None, progress: bool = True,
                on_tiles: Callable[[str, int, int], None] | None = None) -> list[dict]:
    """Score ``slides``; returns the result rows of this batch (also in OUT/results.csv).

    A slide that fails gets status ``error`` and its reason; the others go on. ``on_slide(id,
    row)`` is called after each slide and ``on_tiles(id, done, total)`` as its tiles are embedded
    (a GUI's progress bar).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    opts.out.mkdir(parents=True, exist_ok=True)
    ctx = open_context(opts)
    results_path = opts.out / "results.csv"
    from weakstil.atomic import remove_stale_temps

    remove_stale_temps(results_path)
    rows = _read_previous(results_path)
    batch_rows: list[dict] = []
    seen: dict[str, Path] = {}
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, disable=not progress, transient=True) as bar:
        batch_task = bar.add_task("slides", total=len(slides))
        for path in slides:
            slide_id = slide_id_from_path(path)
            prev = rows.get(slide_id)
            if slide_id in seen:
                row = _error_row(path, slide_id, ctx, WeakSTILError(
                    f"slide id '{slide_id}' is also the id of {seen[slide_id]}", path=path,
                    fix="rename one of the files: outputs are named by slide id"), 0.0)
            elif (not opts.overwrite and prev is not None and prev.get("status") in FINISHED
                  and prev.get("model_id") == ctx.model_id and _outputs_exist(opts.out, slide_id)):
                log.info("%s: already scored (%s), skipped", slide_id, prev.get("status"))
                row = prev
            else:
                tile_task = bar.add_task(f"  {slide_id}", total=None)

                def tick(done: int, total: int, _task=tile_task, _id=slide_id) -> None:
                    bar.update(_task, completed=done, total=total)
                    if on_tiles is not None:
                        on_tiles(_id, done, total)

                t0 = time.perf_counter()
                try:
                    row = score_slide(path, ctx, progress=tick)
                except WeakSTILError as exc:
                    row = _error_row(path, slide_id, ctx, exc, time.perf_counter() - t0)
                    import sys

                    sys.stderr.write(f"error: {exc.one_line()}\n")
                bar.remove_task(tile_task)
            seen.setdefault(slide_id, Path(path))
            rows[slide_id] = row
            batch_rows.append(row)
            _write_results(results_path, rows)
            if on_slide is not None:
                on_slide(slide_id, row)
            bar.advance(batch_task)
    return batch_rows


def _error_row(path: Path, slide_id: str, ctx: _Context, exc: WeakSTILError, seconds: float) -> dict:
    return {"slide_id": slide_id, "path": str(path), "stil": math.nan, "stil_high": "", "threshold": ctx.threshold,
            "n_tiles": 0, "n_tumorbed_tiles": 0, "tumorbed_source": "", "status": STATUS_ERROR,
            "error": exc.one_line(), "model_id": ctx.model_id, "encoder_id": ctx.encoder_id,
            "seconds": round(seconds, 2)}


def score_slide(path: Path, ctx: _Context, progress: Callable[[int, int], None] | None = None) -> dict:
    """Score one slide and write its outputs. Raises WeakSTILError for a bad slide."""
    from weakstil.embed import embed_slide, read_features
    from weakstil.ensemble import score_slides_ensemble
    from weakstil.mil import FeatureBank, check_features_match_model
    from weakstil.tumorbed import check_detector_matches, resolve_tumorbed

    opts = ctx.opts
    t0 = time.perf_counter()
    slide_id = slide_id_from_path(path)
    cached = ctx.opts.cache_dir / f"{slide_id}.h5"

    result = embed_slide(path, _LazyEncoder(ctx), out_path=cached, params=ctx.params, slide_mpp=opts.slide_mpp,
                         allow_upsample=opts.allow_upsample, batch_size=opts.batch_size, workers=opts.workers,
                         progress=progress)
    data = read_features(result.path)
    check_features_match_model(ctx.meta, data, result.path)
    if ctx.detector is not None:
        check_detector_matches(ctx.detector, data, ctx.detector_path)
    bed = resolve_tumorbed(slide_id, data, annotations=opts.annotations, detector=ctx.detector,
                           beds=opts.tumorbed_beds)
    flags = bed.tile_flags
    # every tile gets a score (the heatmap); only tumour-bed tiles make the slide's sTIL%
    mask = flags if flags.any() else np.ones(len(flags), bool)
    bank = FeatureBank.load([result.path], [slide_id], tile_masks={slide_id: mask},
                            tile_stats=ctx.model.arch.tile_stats)
    scores = score_slides_ensemble(ctx.models, bank, device=_torch_device(opts.device))[0]
    tile_scores = np.asarray(scores.tile_scores, np.float32)
    attention = None if scores.attention is None else np.asarray(scores.weights, np.float32)
    stroma = None if scores.stroma is None else np.asarray(scores.stroma, np.float32)
    if flags.any():
        stil, status = float(scores.stil), STATUS_OK
        stil_high: object = bool(stil >= ctx.threshold)
    else:
        stil, status, stil_high = math.nan, STATUS_NO_BED, ""
        log.warning("%s: no tumour bed found; no score", slide_id)
    _write_slide_outputs(path, slide_id, ctx, data, bed, tile_scores, attention, stil, stil_high, status, stroma)
    return {"slide_id": slide_id, "path": str(path), "stil": round(stil, 4) if status == STATUS_OK else math.nan,
            "stil_high": stil_high, "threshold": ctx.threshold, "n_tiles": int(len(tile_scores)),
            "n_tumorbed_tiles": int(flags.sum()), "tumorbed_source": bed.source.value, "status": status,
            "error": "", "model_id": ctx.model_id, "encoder_id": ctx.encoder_id,
            "seconds": round(time.perf_counter() - t0, 2)}


def _torch_device(device: str):
    from weakstil.encoders.factory import resolve_device

    return resolve_device(device)


class _LazyEncoder:
    """Looks like an Encoder to embed_slide but builds the real one on first use, so a rerun
    whose slides are all already scored never loads the encoder's weights."""

    def __init__(self, ctx: _Context):
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx.encoder(), name)


def _write_slide_outputs(path: Path, slide_id: str, ctx: _Context, data: dict, bed, tile_scores: np.ndarray,
                         attention: np.ndarray | None, stil: float, stil_high: object, status: str,
                         stroma: np.ndarray | None = None) -> None:
    import h5py

    from weakstil.outputs import write_heatmap_png, write_tiles_geojson
    from weakstil.slide import Slide
    from weakstil.tiles import overlay_mpp

    from weakstil.atomic import remove_stale_temps

    out = ctx.opts.out
    for suffix in (".h5", "_heatmap.png", ".geojson"):
        remove_stale_temps(out / f"{slide_id}{suffix}")
    coords = np.asarray(data["coords"])
    tsl0 = float(data["tile_size_level0"])
    with atomic_path(out / f"{slide_id}.h5") as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("coords", data=coords.astype(np.int64))
            f.create_dataset("tile_scores", data=tile_scores)
            if attention is not None:
                f.create_dataset("attention", data=attention)
            if stroma is not None:
                f.create_dataset("stroma_weight", data=stroma)
            if data.get("stroma_estimate") is not None:
                f.create_dataset("stroma_estimate", data=np.asarray(data["stroma_estimate"], np.float32))
            f.create_dataset("tumorbed", data=bed.tile_flags.astype(np.uint8))
            f.create_dataset("tumorbed_fraction", data=bed.tile_fraction.astype(np.float32))
            f.create_dataset("tissue_fraction", data=np.asarray(data["tissue_fraction"], np.float32))
            ds = f.create_dataset("tissue_mask", data=np.asarray(data["tissue_mask"], np.uint8), compression="gzip")
            ds.attrs["mpp"] = float(data["tissue_mask_mpp"])
            ds = f.create_dataset("tumorbed_mask", data=bed.mask.astype(np.uint8), compression="gzip")
            ds.attrs["mpp"] = float(bed.mask_mpp)
            attrs = {
                "slide_id": slide_id, "slide_path": str(Path(path).resolve()), "tile_size_level0": tsl0,
                "stil": stil, "stil_high": str(stil_high), "threshold": ctx.threshold, "status": status,
                "n_tiles": int(len(tile_scores)), "n_tumorbed_tiles": int(bed.tile_flags.sum()),
                "model_id": ctx.model_id, "model_path": str(ctx.opts.model.resolve()),
                "aggregator": str(ctx.meta.get("architecture", {}).get("aggregator", "")),
                "encoder_id": ctx.encoder_id, "weakstil_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **bed.attrs(),
            }
            for key in ("mpp", "tile_px", "tile_um", "slide_mpp", "slide_mpp_source", "slide_width", "slide_height",
                        "tiling_key", "encoder", "weights_sha256", "cache_key", "torch_version", "timm_version"):
                if key in data:
                    attrs[key] = data[key]
            for key, value in attrs.items():
                f.attrs[key] = value
            f.attrs["complete"] = 1
    with Slide.open(path, slide_mpp=ctx.opts.slide_mpp) as slide:
        mpp = overlay_mpp(slide)
        thumb = slide.read_thumbnail(mpp)
        slide_mpp = slide.mpp
    label = (f"sTIL {stil:.1f}% ({'high' if stil_high else 'low'} at {ctx.threshold:g}%)"
             if status == STATUS_OK else status)
    write_heatmap_png(out / f"{slide_id}_heatmap.png", thumb, mpp, slide_mpp, coords, tsl0, tile_scores,
                      tumorbed_mask=bed.mask, title=f"{slide_id}: {label}", stroma_weights=stroma)
    measurements = {"sTIL score": tile_scores, "tumour bed": bed.tile_flags.astype(np.float32)}
    if attention is not None:
        measurements["attention"] = attention
    if stroma is not None:
        measurements["stroma weight"] = stroma
    classes = np.where(bed.tile_flags, "Tumor bed", "Other")
    write_tiles_geojson(out / f"{slide_id}.geojson", coords, tsl0, measurements, classes)


def bundle_for_scoring(model_dir: str | Path, features_dir: str | Path, tumorbed: str | Path | None = None) -> list[str]:
    """Make a trained model self-contained for ``weakstil score``: copy a local encoder
    (a ``weakstil pretrain`` directory the features were made with) into ``MODEL/encoder`` and
    a tumour-bed detector into ``MODEL/tumorbed``. Returns what was bundled."""
    import shutil

    from weakstil.mil import read_feature_attrs

    model_dir = Path(model_dir)
    bundled = []
    first = next(iter(sorted(Path(features_dir).glob("*.h5"))), None)
    if first is not None:
        source = Path(str(read_feature_attrs(first).get("weights_source", "")))
        if source.is_file() and (source.parent / "card.yaml").is_file():
            target = model_dir / "encoder"
            target.mkdir(parents=True, exist_ok=True)
            for name in ("card.yaml", source.name):
                shutil.copy2(source.parent / name, target / name)
            bundled.append("encoder")
    if tumorbed is not None and Path(tumorbed).resolve() != (model_dir / "tumorbed").resolve():
        shutil.copytree(tumorbed, model_dir / "tumorbed", dirs_exist_ok=True)
        bundled.append("tumorbed")
    return bundled
