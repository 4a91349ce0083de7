"""What ``weakstil train`` stores for the intervals and flags of ``weakstil score`` (under ``MODEL/qc/``).

* ``calibration.json``: the interval calibration on the out-of-fold predictions
  (:class:`weakstil.confidence.Calibration`), with what a slide's shift from the training
  cohort is measured against (:mod:`weakstil.qc.shift`);
* ``embeddings.safetensors``: the OOD score's reference tile embeddings (:mod:`weakstil.qc.embedding`);
* ``reference.json``: the flags' thresholds: the OOD threshold (from the training slides'
  leave-slide-out OOD scores), the training stain centre and range, the focus and pen/fold
  limits, the tumour-bed minimum, the weighting check's limit (from the out-of-fold scores),
  the training labels' range (:mod:`weakstil.qc.flags`), and the training slides' range of mean
  tile measurements when the model uses them (:mod:`weakstil.qc.morphometry`), and of their
  beds' stroma share (:mod:`weakstil.qc.bed_stroma`);
* ``training_slides.csv``: per training slide its label, out-of-fold prediction and interval
  (calibrated without the slide: leave-one-out), tile standard error, OOD score, its
  leave-group-out embedding distance and shift, image statistics, the flags it would get and
  its scan's ``slide_fingerprint`` (which slides ``weakstil evaluate`` counts as training slides).

Their SHA-256 are recorded in ``model.json`` under ``qc``; scoring refuses files that differ.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil.atomic import atomic_path
from weakstil.csv_cells import defused
from weakstil.confidence import (GRID_OFFSETS, SLIDES_ADVISED, Calibration, calibrate, conformal_quantile,
                                 coverage_spread, interval_columns, tile_standard_error_df)
from weakstil.modeldir import ModelDir
from weakstil.qc import bed_fallback
from weakstil.qc.bed_stroma import bed_stroma, bed_stroma_outside, bed_stroma_reference
from weakstil.qc.embedding import (fit_reference_and_neighbours, ood_threshold, shift_share_threshold,
                                   unfamiliar_reference)
from weakstil.qc.flags import (MIN_BED_TILES, flagged_summary, image_reference, join, label_reference, slide_flags,
                               weighting_gap, weighting_reference)
from weakstil.qc.image import ImageStats, slide_image_stats
from weakstil.qc.morphometry import UNCOMPARED, morphometry_outside, ratio_for_shift, training_range
from weakstil.qc.shift import (leave_group_out_distances, leave_group_out_stain, shift_reference, slide_blurry_share,
                               slide_shift)

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.mil.bank import FeatureBank
    from weakstil.mil.model import SlideScores

log = logging.getLogger(__name__)

#: Bumped when what is stored changes.
QC_FORMAT = 1


def training_image_stats(bank: FeatureBank, slide_paths: list[str], seed: int = 0,
                         on_slide: Callable[[int, int], None] | None = None) -> list[ImageStats | None]:
    """:class:`ImageStats` of every training slide (``None`` for a slide that cannot be read);
    ``on_slide(done, total)`` after each (a progress bar)."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import FeaturesFile
    from weakstil.slide import Slide
    from weakstil.stain import SlideStain

    out: list[ImageStats | None] = []
    # only tissue_fraction is read again: the attributes are the bank's (read from the same file by this run),
    # and a slide that cannot be opened (moved since embedding) costs no read of its feature file
    skip = tuple(ds.name for ds in FeaturesFile.DATASETS if ds.name != "tissue_fraction")
    from weakstil.ink_plane import ink_test_read

    for i, (bag, path) in enumerate(zip(bank.bags, slide_paths)):
        try:
            attrs = bag.attrs
            mpp_override = float(attrs["slide_mpp"]) if attrs.get("slide_mpp_source") == "override" else None
            with Slide.open(path, slide_mpp=mpp_override) as slide:
                tiles = FeaturesFile.read(bag.path, skip=skip)
                out.append(slide_image_stats(slide, bag.coords, tiles.tissue_fraction, int(attrs["tile_px"]),
                                             float(attrs["mpp"]), seed=seed,
                                             stain=SlideStain.from_attr(attrs.get("stain")),
                                             # named as the bed's ink veto named it (the feature file's id), so the
                                             # slide's ink test is made once for both where a cohort CSV renames
                                             # the slides (review r46c: made and kept twice)
                                             name=attrs.get("slide_id") or bag.slide_id))
        except (WeakSTILError, KeyError, OSError) as exc:
            log.warning("%s: no image statistics for the qc flags (%s)", bag.slide_id,
                        exc.one_line() if isinstance(exc, WeakSTILError) else exc)
            out.append(None)
        ink_test_read(bag.attrs.get("slide_id") or bag.slide_id)  # the QC is its bed's ink test's last reader
        if on_slide is not None:
            on_slide(i + 1, len(bank.bags))
    return out


def _write_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def fit_qc(folder: ModelDir, bank: FeatureBank, slide_paths: list[str], labels: np.ndarray,
           oof: list[SlideScores] | None, *, threshold: float, seed: int = 0, groups: np.ndarray | None = None,
           on_slide: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Fit and write everything under ``folder.qc_dir``; returns the ``model.json`` summary.

    ``oof``: the out-of-fold scores in bank order (``None`` without cross-validation: no interval);
    ``groups``: the cross-validation groups (centres; ``None``: each slide its own group)."""
    import pandas as pd

    from weakstil.runtime import sha256_file

    folder.qc_dir.mkdir(parents=True, exist_ok=True)
    n = len(bank)
    table = pd.DataFrame({"slide_id": [b.slide_id for b in bank.bags], "stil_true": np.asarray(labels, float),
                          "n_tumorbed_tiles": [int(b.tile_mask.sum()) for b in bank.bags],
                          # which scans these are, whatever the fold count: evaluate's in-sample check
                          # (weakstil.insample) goes by content, not by id
                          "slide_fingerprint": [str(b.attrs.get("slide_fingerprint") or "") for b in bank.bags]})
    summary: dict[str, Any] = {"format": QC_FORMAT}
    low_col, high_col = interval_columns()

    # 1. the OOD reference: embeddings of the training tiles, threshold from leave-slide-out scores
    feats = [bank.raw_slide_features(i).float().cpu().numpy() for i in range(n)]
    # each slide's leave-slide-out k-NN search done once: its distance, its unfamiliar share and (alone in its
    # group) its leave-group-out distance are made from it
    ref, distances, neighbours = fit_reference_and_neighbours(feats, seed=seed)
    ref.save(folder.embeddings_path)
    ood_scores = distances / ref.median_distance
    ood_thr = ood_threshold(ood_scores)
    table["ood_score"] = ood_scores
    unfamiliar, unfamiliar_shares, unfamiliar_counts = unfamiliar_reference(ref, feats, seed=seed,
                                                                            neighbours=neighbours)
    table["unfamiliar_share"] = unfamiliar_shares
    group_ids = np.arange(n) if groups is None else np.asarray(groups)
    # each slide against the other centres only (as the leave-centre-out CV predicted it)
    embedding_lgo, unfamiliar_lgo = leave_group_out_distances(ref, feats, group_ids, seed=seed,
                                                              tile_threshold=unfamiliar.get("tile_threshold", math.inf),
                                                              leave_slide_out=[d for d, _ in neighbours])
    table["embedding_distance_lgo"] = embedding_lgo
    table["unfamiliar_share_lgo"] = unfamiliar_lgo
    del feats, neighbours
    # 1b. the tile measurements the model appends (nuclear morphometry): their training range
    measured_means, morph_ref, morph_lgo, fitted = training_range(bank, group_ids)
    if morph_lgo is not None:
        table["morphometry_ratio_lgo"] = morph_lgo
    # 1c. the stroma share of each training slide's bed (weakstil.qc.bed_stroma)
    bed_stromas = [bed_stroma(bank, i) for i in range(n)]
    table["bed_stroma"] = [math.nan if v is None else v for v in bed_stromas]
    stroma_ref = bed_stroma_reference(bed_stromas)

    # 2. image statistics of the training slides: stain range, focus, ink
    stats = training_image_stats(bank, slide_paths, seed=seed, on_slide=on_slide)
    measured = [s for s in stats if s is not None]
    image_ref = image_reference(measured)
    flat = pd.DataFrame([s.flat() if s is not None else {} for s in stats])
    table = pd.concat([table, flat], axis=1)
    stain_lgo = leave_group_out_stain(stats, group_ids) if measured else None
    blurry = [slide_blurry_share(s) for s in stats]
    # the shift's unfamiliar share is by distance alone (weakstil.qc.embedding.shift_share)
    shift_ref = shift_reference(embedding_lgo, stain_lgo, unfamiliar_lgo if unfamiliar else None,
                                shift_share_threshold(unfamiliar), blurry_shares=blurry, morphometry_lgo=morph_lgo)
    shift = np.array([slide_shift(shift_ref, embedding_distance=embedding_lgo[i], unfamiliar_share=unfamiliar_lgo[i],
                                  stain=stain_lgo[i] if stain_lgo else None, blurry_share=blurry[i],
                                  morphometry_ratio=None if morph_lgo is None else
                                  ratio_for_shift(float(morph_lgo[i]), fitted[i]))
                      for i in range(n)])
    table["shift"] = shift

    # 3. the interval, calibrated on the out-of-fold predictions; how far the tile weights moved
    # each out-of-fold score from its tiles' plain mean (the weighting check)
    cal: Calibration | None = None
    gaps = np.full(n, np.nan)
    if oof is not None:
        gaps = np.array([weighting_gap(s.tile_stil, b.tile_mask, s.stil) for s, b in zip(oof, bank.bags)])
        table["weighting_gap_oof"] = gaps
        pred = np.array([s.stil for s in oof], float)
        # every placement of the bootstrap's block grid averaged (hunt 31): one placement moved with the grid
        se_df = np.array([tile_standard_error_df(s.tile_scores, s.weights, b.coords, b.tile_size_level0,
                                                 grid_offsets=GRID_OFFSETS)
                          for s, b in zip(oof, bank.bags)], float).reshape(-1, 2)
        cal = calibrate(labels, pred, se_df[:, 0], shift=shift, tile_df=se_df[:, 1])
        cal.tile_se_grid_offsets = GRID_OFFSETS
        se = cal.widened_se(np.nan_to_num(se_df[:, 0]), se_df[:, 1])  # fewer degrees of freedom than most: wider
        cal.shift_reference = shift_ref
        # every slide's interval calibrated on the others (what a new slide would get)
        from weakstil.confidence import scale_sd, to_scale

        u = scale_sd(pred, np.nan_to_num(se), cal.offset)
        nonconf = np.abs(to_scale(labels, cal.offset) - to_scale(pred, cal.offset)) / cal.sigma(u, shift)
        lows, highs = [], []
        for i in range(n):
            q_i = conformal_quantile(np.delete(nonconf, i), cal.level)
            if not math.isfinite(q_i):  # the other slides are too few for an interval: none, not 0-100
                lows.append(math.nan)
                highs.append(math.nan)
                continue
            loo = Calibration(**{**cal.__dict__, "q": q_i})
            lo, hi = loo.interval(pred[i], u[i], shift[i])
            lows.append(float(lo))
            highs.append(float(hi))
        table["stil_pred_oof"] = pred
        table["tile_standard_error"] = se_df[:, 0]  # as the scored slide's attributes: unwidened, with its df
        table["tile_standard_error_df"] = se_df[:, 1]
        if not cal.usable:  # too few slides: no interval (not 0-100, which would look calibrated)
            lows = highs = [math.nan] * n
        else:  # how far this calibration set's coverage may lie from the nominal level
            spread = coverage_spread(cal.n, cal.level)
            cal.extra["coverage_spread"] = {"low": spread[0], "high": spread[1], "quantiles": [0.05, 0.95],
                                            "method": "Beta(k, n + 1 - k), k = ceil((n + 1) level): split "
                                                      "conformal coverage given n calibration slides"}
            # a slide scored over its whole tissue (a detected bed that fell back to it) against the labels:
            # another region than the interval's (weakstil.qc.bed_fallback; hunt 40c covered 6 of 14)
            cal.extra[bed_fallback.KEY] = bed_fallback.fit(cal, labels, oof, bank.bags, shift, bed_se_df=se_df)
        table[low_col], table[high_col] = lows, highs
        _write_json(folder.calibration_path, cal.to_dict())
        summary["confidence"] = {k: v for k, v in cal.to_dict().items() if k != "extra"}
        if cal.usable:  # (without an interval its coverage and width mean nothing: 100 %, infinite)
            loo_said = (f"{100 * cal.coverage_loo:.0f}%" if math.isfinite(cal.coverage_loo)
                        else f"n/a: the {cal.n - 1} other slides are too few for a slide's interval")
            log.info("interval: %g%% nominal, out-of-fold coverage %.0f%% (leave-one-out %s), median width %.1f "
                     "points (%d slides), offset %g, shift weight %g (fitted %g, floor %g)", 100 * cal.level,
                     100 * cal.coverage_oof, loo_said, cal.width_median, cal.n, cal.offset,
                     cal.shift_weight, cal.shift_weight_fitted, cal.shift_weight_floor)
            if cal.n < SLIDES_ADVISED:
                log.warning("the %g%% interval is calibrated on %d out-of-fold slides, too few to pin it down: on new "
                            "slides like them it may cover anywhere from %.0f to %.0f%% (5th-95th percentile of "
                            "split conformal's coverage given %d slides), and its offset and shift weight were "
                            "fitted on the same slides; %d or more out-of-fold slides make it steadier",
                            100 * cal.level, cal.n, 100 * spread[0], 100 * spread[1], cal.n, SLIDES_ADVISED)
        else:
            log.warning("%d out-of-fold slides are too few for a %g%% interval; slides are scored without one",
                        cal.n, 100 * cal.level)

    reference = {"format": QC_FORMAT, "ood": {"threshold": ood_thr, "quantile": 0.99, "margin": 1.2,
                                              "median_distance": ref.median_distance, "neighbours": ref.neighbours,
                                              "components": int(ref.components.shape[1]),
                                              "reference_tiles": int(len(ref.reference)),
                                              "training_max": float(np.nanmax(ood_scores)),
                                              "unfamiliar": unfamiliar},
                 "morphometry": morph_ref, "bed_stroma": stroma_ref, "few_tumorbed_tiles": {"min_tiles": MIN_BED_TILES}, "near_threshold": {"threshold": float(threshold)},
                 "image": image_ref, "weighting": weighting_reference(gaps), "labels": label_reference(labels)}
    weighting_thr = (reference["weighting"] or {}).get("threshold")
    label_max, label_min = ((reference["labels"] or {}).get(k) for k in ("max", "min"))
    _write_json(folder.qc_reference_path, _finite(reference))

    # 4. the flags every training slide would get (a check of the thresholds' false-alarm rate)
    flags_col = []
    for i in range(n):
        low = table[low_col][i] if low_col in table else None
        high = table[high_col][i] if high_col in table else None
        flags, _ = slide_flags(ood_score=float(ood_scores[i]), ood_threshold=ood_thr,
                               unfamiliar=(float(unfamiliar_shares[i]), int(unfamiliar_counts[i]), unfamiliar),
                               n_bed_tiles=int(table["n_tumorbed_tiles"][i]), low=low, high=high, threshold=threshold,
                               image=stats[i], image_ref=image_ref, weighting_gap=float(gaps[i]),
                               weighting_threshold=weighting_thr,
                               stil=float(table["stil_pred_oof"][i]) if "stil_pred_oof" in table else None,
                               label_max=label_max, label_min=label_min,
                               morphometry=morphometry_outside(measured_means[i], morph_ref) if morph_ref else "",
                               morphometry_uncompared=UNCOMPARED if morph_ref and not fitted[i] else "",
                               bed_stroma=bed_stroma_outside(bed_stromas[i], stroma_ref))
        flags_col.append(join(flags))
    table["qc"] = flags_col
    with atomic_path(folder.qc_slides_path) as tmp:
        defused(table).to_csv(tmp, index=False, float_format="%.5g")
    flagged = float(np.mean([bool(f) for f in flags_col])) if n else math.nan
    log.info("qc: OOD threshold %.2f (training max %.2f); %d of %d training slides with image statistics; %s",
             ood_thr, float(np.nanmax(ood_scores)), len(measured), n, flagged_summary(flags_col))

    files = [p for p in (folder.calibration_path, folder.qc_reference_path, folder.embeddings_path,
                         folder.qc_slides_path) if p.is_file()]
    summary["files"] = {p.relative_to(folder.root).as_posix(): sha256_file(p) for p in files}
    summary["ood_threshold"] = ood_thr
    summary["training_flagged"] = flagged
    return _finite(summary)


def _finite(obj: Any) -> Any:
    """JSON-safe: non-finite floats become ``None``."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
