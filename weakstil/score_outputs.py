"""A scored slide's output files in ``OUT`` (see :mod:`weakstil.score`): ``<slide_id>.h5`` (a
:class:`weakstil.files.SlideScoresFile`), ``<slide_id>_heatmap.png`` and ``<slide_id>.geojson``, with
the provenance attributes they share. Split from :mod:`weakstil.score` (which was at its 500 lines)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from weakstil import settings
from weakstil.code_version import version as code_version
from weakstil.atomic import remove_stale_temps
from weakstil.files import SlideScoresFile, slide_file
from weakstil.outputs import slide_relpath
from weakstil.runtime import library_versions
from weakstil.score_state import OUTPUT_SUFFIXES, SCORED, STATUS_BED_FALLBACK


def title_labels(status: str) -> dict[str, object]:
    """How a heatmap's title (:func:`weakstil.outputs.heatmap_title`) names a slide of ``status``."""
    return {"label": None if status in SCORED else status, "fallback": status if status == STATUS_BED_FALLBACK else ""}


#: Feature-cache attributes copied into a slide's score file.
COPIED_ATTRS = ("mpp", "tile_px", "tile_um", "slide_mpp", "slide_mpp_source", "slide_width", "slide_height",
                 "tiling_key", "encoder", "weights_sha256", "weights_file_sha256", "cache_key", "torch_version", "timm_version",
                 "slide_fingerprint", "slide_bounds_x", "slide_bounds_y", "ndpi_offset_x_nm", "ndpi_offset_y_nm")


def crush_attr(bed) -> dict:
    """The bed's crush tiles (:mod:`weakstil.crush`) for the scores HDF5 only (napari rescores without them)."""
    from weakstil.crush import PACKED_ATTR, packed

    return {PACKED_ATTR: packed(bed.excluded)} if bed.excluded is not None and bed.excluded.any() else {}


def write_slide_outputs(path: Path, slide_id: str, ctx: Any, features, bed, tile_scores: np.ndarray,
                         attention: np.ndarray | None, stil: float, stil_high: object, status: str,
                         qc_attrs: dict | None = None, attention_logits: np.ndarray | None = None,
                         stroma: np.ndarray | None = None, model_scores: np.ndarray | None = None) -> None:
    from weakstil.annotation_frame import origin_of
    from weakstil.outputs import write_slide_heatmap, write_tiles_geojson
    from weakstil.slide import Slide
    from weakstil.tiles import heatmap_mpp

    out = ctx.opts.out
    for suffix in OUTPUT_SUFFIXES:
        remove_stale_temps(out / f"{slide_id}{suffix}")
    coords = np.asarray(features.coords)
    tsl0 = float(features.attrs["tile_size_level0"])
    attrs = {
        "slide_id": slide_id, "slide_path": str(Path(path).resolve()), "tile_size_level0": tsl0,
        "slide_relpath": slide_relpath(path, out),  # the slide found again after it and OUT moved together
        "stil": stil, "stil_high": stil_high if isinstance(stil_high, bool) else "",  # a real bool; "": no call
        "threshold": ctx.threshold, "status": status,
        "n_tiles": int(len(tile_scores)), "n_tumorbed_tiles": int(bed.tile_flags.sum()),
        "model_id": ctx.model_id, "model_path": str(ctx.opts.model.resolve()),
        "aggregator": str(ctx.meta.get("architecture", {}).get("aggregator", "")),
        "model_seed": int(ctx.meta.get("seed", -1)),  # scoring itself draws nothing (qc sampling: seed 0)
        "tile_prior_stroma": settings.TILE_PRIOR_STROMA if stroma is not None else 0.0,
        "encoder_id": ctx.encoder_id, "weakstil_version": code_version(),  # the reader's, torch's releases: this run's, the features'
        "library_versions": json.dumps(library_versions("torch", "timm"), sort_keys=True),
        "features_library_versions": str(features.attrs.get("library_versions", "")),  # "": embedded before hunt 33
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "score_request": json.dumps(ctx.request(slide_id, path)),
        **bed.attrs()}
    attrs.update({k: features.attrs[k] for k in COPIED_ATTRS if k in features.attrs})
    attrs.update(qc_attrs or {})
    with Slide.open(path, slide_mpp=ctx.opts.listed.mpp_of(path, ctx.opts.slide_mpp)) as slide:
        mpp = heatmap_mpp(slide)
        thumb = slide.read_thumbnail(mpp)
        slide_mpp = slide.mpp
    write_slide_heatmap(out / f"{slide_id}_heatmap.png", thumb, mpp, slide_mpp, coords, tsl0, tile_scores,
                        bed.tile_flags, bed.mask, slide_id=slide_id, stil=stil, stil_high=stil_high,
                        threshold=ctx.threshold, attrs=attrs, **title_labels(status), stroma_weights=stroma)
    # the slide-score file after the slow heatmap: it is what a rerun takes as 'scored', so a run
    # killed while the heatmap is drawn leaves no complete-looking score file; the tile GeoJSON comes
    # after it (a GeoJSON is replaced only beside our score file: an annotation is never overwritten)
    SlideScoresFile(coords=coords, tile_scores=tile_scores, attention=attention, attention_logits=attention_logits,
                    tile_scores_model=None if stroma is None or model_scores is None else model_scores,
                    stroma_weight=stroma, stroma_estimate=features.stroma_estimate, tumorbed=bed.tile_flags,
                    tumorbed_fraction=bed.tile_fraction, tissue_fraction=features.tissue_fraction,
                    tissue_mask=features.tissue_mask, tissue_mask_mpp=float(features.tissue_mask_mpp),
                    tumorbed_mask=bed.mask, tumorbed_mask_mpp=float(bed.mask_mpp),
                    attrs={**attrs, **crush_attr(bed)}).write(slide_file(out, slide_id))
    measurements = {"sTIL score": tile_scores, "tumour bed": bed.tile_flags.astype(np.float32)}
    if attention is not None:
        measurements["attention"] = attention
    if stroma is not None:
        measurements["stroma weight"] = stroma
    write_tiles_geojson(out / f"{slide_id}.geojson", coords, tsl0, measurements, np.where(bed.tile_flags, "Tumor bed",
                        "Other"), written_by=SlideScoresFile.MADE_BY, origin=origin_of(features.attrs),  # QuPath's frame
                        provenance=attrs)
