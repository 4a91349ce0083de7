"""The interval and flags of one slide at ``weakstil score``, from what ``weakstil train`` stored.

:class:`SlideAssessor` is loaded once per batch (the calibration, the fold models, the OOD
reference, the image thresholds) and :meth:`SlideAssessor.assess` gives one slide's
``results.csv`` columns and slide-score HDF5 attributes. A model trained before these files
existed scores as before, with empty interval columns and only the flags that need nothing
from training (few tumour-bed tiles).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil.confidence import (GRID_OFFSETS, LEVEL, SLIDES_ADVISED, Calibration, CalibrationError, coverage_spread,
                                 interval_columns, scale_sd, tile_standard_error_df)
from weakstil.mil.identity import ModelError
from weakstil.modeldir import CALIBRATION_FILE, ModelDir
from weakstil.qc.bed_outline import calibration_lacks_outline_error, outline_sd
from weakstil.qc.bed_fallback import interval as whole_tissue_interval, needs_whole_tissue_interval
from weakstil.qc.bed_stroma import bed_stroma, bed_stroma_outside
from weakstil.qc.embedding import shift_share, unfamiliar_share
from weakstil.qc.flags import MIN_BED_TILES, bed_sources, bed_unlike_training, join, slide_flags, weighting_gap
from weakstil.qc.morphometry import (UNCOMPARED, morphometry_outside, morphometry_ratio, ratio_for_shift, slide_means,
                                    stain_fitted)
from weakstil.qc.shift import slide_shift_from_stats
from weakstil.tiff_layout import unit_slip as tiff_unit_slip

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.mil.bank import FeatureBank
    from weakstil.mil.model import SlideScores
    from weakstil.qc.embedding import EmbeddingReference

log = logging.getLogger(__name__)

LOW_COLUMN, HIGH_COLUMN = interval_columns(LEVEL)
#: The columns ``weakstil score`` adds to results.csv.
RESULT_COLUMNS = (LOW_COLUMN, HIGH_COLUMN, "qc")


def qc_file_problems(folder: ModelDir, meta: dict, folds: bool = False) -> list[tuple[Path, bool]]:
    """The quality-control files ``model.json`` lists (``qc.files``; with ``folds``, its fold models
    too) that are missing (``True``) or no longer hash to their recorded SHA-256 (``False``):
    ``weakstil score`` refuses such a model."""
    from weakstil.runtime import sha256_file

    recorded = dict((meta.get("qc") or {}).get("files") or {})
    if folds and isinstance(meta.get("folds"), list):
        recorded.update({str(e.get("file")): e.get("sha256") for e in meta["folds"] if isinstance(e, dict)})
    return [(path, not path.is_file()) for rel, sha in recorded.items()
            if not (path := folder.root / rel).is_file() or sha256_file(path) != sha]


def interval_note(folder: ModelDir, meta: dict) -> str | None:
    """One line (for ``weakstil report``) saying why the slides this model scores get no sTIL% interval,
    or none at all (None when they get one): a qc file or fold model that ``model.json`` lists is
    missing or changed (then ``weakstil score`` refuses the model), or the model has no calibration
    (trained without cross-validation, or before intervals existed)."""
    problems = qc_file_problems(folder, meta, folds=True)  # a lost fold model: refused the same way
    if problems:
        said = "; ".join(f"{path} {'is missing' if missing else 'does not match model.json (SHA-256 differs)'}"
                         for path, missing in problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3
                                                               else "")
        return (f"{said}: 'weakstil score' refuses this model until the whole model folder is copied again"
                + (" (without its calibration a slide's sTIL% has no interval)"
                   if any(path == folder.calibration_path for path, _ in problems) else ""))
    rel = folder.calibration_path.relative_to(folder.root).as_posix()
    if rel not in ((meta.get("qc") or {}).get("files") or {}) and folder.calibration_path.is_file():
        return f"{folder.calibration_path} is not listed in model.json (qc.files): the slides it scores get no " \
            "sTIL% interval"
    why = no_interval_why(meta)
    return None if why is None else f"{folder.root}: {why}: the slides it scores get no sTIL% interval"


def no_interval_why(meta: dict) -> str | None:
    """Why a model's slides get no sTIL% interval, in a reader's words (``None``: they get one):
    trained without cross-validation (``--folds 1``), on too few out-of-fold slides, or before
    intervals existed."""
    from weakstil.confidence import MIN_SLIDES

    qc = meta.get("qc") or {}
    if f"qc/{CALIBRATION_FILE}" in (qc.get("files") or {}):
        conf = qc.get("confidence") or {}
        n = int(conf.get("n") or 0)
        if conf.get("q") is not None and n >= MIN_SLIDES:
            return None
        level = float(conf.get("level") or LEVEL)  # split conformal: q is finite from level / (1 - level) slides
        needed = max(MIN_SLIDES, math.ceil(round(level / (1 - level), 6)))
        return (f"the model's interval calibration rests on {n} out-of-fold slide(s), too few for a {100 * level:g} % "
                f"interval ({needed} or more; retrain on more slides for one)")
    training = meta.get("training") or {}
    if qc and "cross_validation" in training and not training.get("cross_validation"):
        return ("the model was trained without cross-validation (--folds 1), so it has no calibrated interval "
                "(retrain with --folds 5 for one)")
    return ("the model has no calibrated interval (no qc/calibration.json listed in its model.json: trained before "
            "intervals existed, or without cross-validation; retrain with --folds 5 for one)")


@dataclass
class SlideAssessor:
    """What scoring needs to put an interval and flags on a slide."""

    calibration: Calibration | None = None
    fold_models: list = field(default_factory=list)
    embedding: EmbeddingReference | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    training_beds: dict | None = None  #: model.json training.tumorbeds: where the training slides' beds came from
    no_interval: str | None = None  #: why the slides get no interval (said once per run; None: they get one)

    @classmethod
    def load(cls, model_dir: str | Path, meta: dict, arch, fold_models: list | None = None) -> SlideAssessor:
        """From a model folder; files listed in ``model.json`` must match their SHA-256.
        ``fold_models``: the cross-validation fold models when already loaded (ensemble scoring)."""
        from weakstil.mil.store import load_fold_models
        from weakstil.mil.store import LFS_FIX
        from weakstil.qc.embedding import EmbeddingReference
        from weakstil.runtime import lfs_pointer_note

        folder = ModelDir(model_dir)
        recorded = (meta.get("qc") or {}).get("files") or {}
        for path, missing in qc_file_problems(folder, meta)[:1]:
            if missing:
                raise ModelError("quality-control file of the model is missing", path=path,
                                 fix="copy the whole model folder, or train the model again")
            if pointer := lfs_pointer_note(path):
                raise ModelError(pointer, path=path, fix=LFS_FIX)
            raise ModelError("quality-control file does not match model.json (SHA-256 differs)", path=path,
                             fix="the model folder was changed; train the model again")
        out = cls(fold_models=fold_models if fold_models is not None else load_fold_models(model_dir, meta, arch),
                  training_beds=(meta.get("training") or {}).get("tumorbeds"))
        if folder.calibration_path.is_file() and folder.calibration_path.relative_to(folder.root).as_posix() in recorded:
            try:
                out.calibration = Calibration.from_dict(json.loads(folder.calibration_path.read_text(encoding="utf-8")))
            except CalibrationError as exc:
                raise ModelError(str(exc), path=folder.calibration_path,
                                 fix="the model folder was changed; train the model again") from None
            except ValueError as exc:
                raise ModelError(str(exc), path=folder.calibration_path, fix="upgrade WeakSTIL") from exc
        if folder.embeddings_path.is_file() and folder.embeddings_path.relative_to(folder.root).as_posix() in recorded:
            out.embedding = EmbeddingReference.load(folder.embeddings_path)
        if folder.qc_reference_path.is_file():
            out.reference = json.loads(folder.qc_reference_path.read_text(encoding="utf-8"))
        if out.calibration is None or not out.calibration.usable:
            out.no_interval = no_interval_why(meta) or "the model's interval calibration is not usable"
        elif out.calibration.n < SLIDES_ADVISED:  # once per run: the train log that said it may be long gone
            cal = out.calibration
            low, high = coverage_spread(cal.n, cal.level)
            log.warning("%s: the %g %% interval was calibrated on %d out-of-fold slides: on slides like the training "
                        "slides it may cover anywhere from %.0f to %.0f %% (5th-95th percentile), so read each slide's "
                        "interval as approximate", model_dir, 100 * cal.level, cal.n, 100 * low, 100 * high)
        return out

    @property
    def level(self) -> float:
        return self.calibration.level if self.calibration is not None else LEVEL

    def fold_stils(self, bank: FeatureBank, device) -> list[float]:
        from weakstil.mil.model import score_slides

        return [float(score_slides(m.to(device), bank, device=device)[0].stil) for m in self.fold_models]

    def assess(self, *, bank: FeatureBank, scores: SlideScores, stil: float, n_bed_tiles: int, threshold: float,
               slide_path: str | Path, slide_mpp: float | None, tissue_fraction: np.ndarray | None,
               tile_px: int, mpp: float, device, seed: int = 0, bed_source: str | None = None,
               annotation_misplaced: str = "", bed_incomplete: str = "",
               bed_unlike_detector: str = "", bed_detail: str = "", bed_lymphoid: str = "",
               tma_like: str = "", crush_tiles: int = 0, bed_ink_rule: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(result columns, HDF5 attributes)`` of one scored slide (``stil`` NaN: not scored).
        ``bed_unlike_detector``: why the bed's detector is unchecked on the slide's stain
        (:mod:`weakstil.tumorbed.look`), ``bed_detail`` the bed's detail (a detector's id), ``bed_lymphoid``
        the detector's seed vetoes when its lymphoid veto was set aside, ``tma_like`` why the slide looks
        like a tissue microarray (:func:`weakstil.qc.pieces.tma_like`), ``crush_tiles`` the bed's tiles left out as
        crush artefact (:mod:`weakstil.crush`), ``bed_ink_rule`` the ink-plane rule its ink veto measured ink over
        tissue under (:func:`weakstil.tumorbed.resolver.bed_ink_rule`)."""
        from weakstil.tumorbed.resolver import trained_detector

        if bed_unlike_detector and bed_sources(self.training_beds).get("model") \
                and trained_detector(self.training_beds) == bed_detail:
            # trained over this detector's own beds: its out-of-fold errors and look checks hold them (a model
            # trained so on 16 mosaic slides read 16 others at R² 0.96 over the demo detector's beds)
            bed_unlike_detector = ""
        from weakstil.qc.image import slide_image_stats
        from weakstil.slide import Slide
        from weakstil.stain import SlideStain
        from weakstil.unsharp import Sharpening

        bag = bank.bags[0]
        attrs: dict[str, Any] = {"interval_level": self.level}
        ood_score = ood_thr = distance = unfamiliar = None
        for_shift = math.nan
        if self.embedding is not None:
            tile_d, ratios = self.embedding.tile_neighbours(bank.raw_slide_features(0).float().cpu().numpy(), seed=seed)
            distance = float(tile_d.mean()) if len(tile_d) else math.nan
            ood_score = distance / self.embedding.median_distance
            ood_thr = (self.reference.get("ood") or {}).get("threshold")
            attrs["ood_score"], attrs["ood_threshold"] = ood_score, ood_thr
            rule = (self.reference.get("ood") or {}).get("unfamiliar") or {}  # absent in models trained before it
            if rule:
                share, count = unfamiliar_share(tile_d, rule, ratios)
                unfamiliar = (share, count, rule)
                attrs["ood_unfamiliar_share"], attrs["ood_unfamiliar_threshold"] = share, rule["share_threshold"]
                for_shift = shift_share(tile_d, rule)
                attrs["interval_unfamiliar_share"] = for_shift
        morph_ref = self.reference.get("morphometry")  # absent in models trained before it, or without tile stats
        stats = bank.slide_tile_stats(0) if morph_ref else None
        # measured with the reference stain (its fit failed): on a scale unknown for this slide, not compared
        uncompared = UNCOMPARED if stats is not None and not stain_fitted(bag.attrs) else ""
        means = slide_means(stats) if stats is not None and not uncompared else None
        n_measured = len(stats) if stats is not None else None
        morph_ratio = morphometry_ratio(means, morph_ref, n_measured)
        if morph_ratio is not None:
            attrs["morphometry_ratio"] = morph_ratio
        # the bed's own stroma against the training beds' (absent in models trained before hunt 36g: not checked)
        stroma_ref = self.reference.get("bed_stroma")
        stroma = bed_stroma(bank, 0) if stroma_ref else None
        if stroma is not None:
            attrs["bed_stroma"] = stroma
        image_ref = self.reference.get("image")
        image = None
        with Slide.open(slide_path, slide_mpp=slide_mpp) as slide:
            file_mpp = slide.backend.mpp  # the file's own value, which --slide-mpp may have replaced
            base_mpp = float(slide.mpp)  # as read: upsampled when coarser than the model's
            unit_slip = tiff_unit_slip(base_mpp, slide.backend.properties) if slide_mpp is None else None
            if image_ref is not None:
                image = slide_image_stats(slide, bag.coords, tissue_fraction, tile_px, mpp, seed=seed,
                                          stain=SlideStain.from_attr(bag.attrs.get("stain")), name=bag.slide_id)
                attrs["image_stats"] = json.dumps(image.to_dict())
        low = high = math.nan
        if math.isfinite(stil):
            # as the calibration's slides were measured; without one, every placement of the block grid
            se, se_df = (self.calibration.tile_standard_error if self.calibration is not None else partial(
                tile_standard_error_df, grid_offsets=GRID_OFFSETS))(scores.tile_scores, scores.weights, bag.coords,
                                                                    bag.tile_size_level0)
            folds = self.fold_stils(bank, device) if self.fold_models else []
            attrs["tile_standard_error"] = se
            attrs["tile_standard_error_df"] = se_df
            attrs["fold_stils"] = json.dumps([round(v, 4) for v in folds])
            if self.calibration is not None and self.calibration.usable:
                cal = self.calibration
                u = cal.uncertainty(stil, se, folds, se_df)
                if calibration_lacks_outline_error(bed_source, bed_sources(self.training_beds)):
                    # a detector's outline on a model calibrated on other beds (weakstil.qc.bed_outline)
                    bed_sd = outline_sd(scores.tile_scores, bag.tile_mask, bag.coords, bag.tile_size_level0,
                                        stroma=scores.stroma, attention=scores.attention)
                    if math.isfinite(bed_sd):
                        attrs["interval_bed_outline_sd"] = bed_sd
                        u = math.hypot(u, float(scale_sd(stil, bed_sd, cal.offset)))
                shift = slide_shift_from_stats(cal.shift_reference, distance, image, (image_ref or {}).get("stain"),
                                               for_shift if unfamiliar else None,
                                               ratio_for_shift(morph_ratio, not uncompared)) \
                    if cal.shift_reference else 0.0
                lo, hi = cal.interval(stil, u, shift)
                low, high = float(lo), float(hi)
                if needs_whole_tissue_interval(bed_source, self.training_beds):
                    # the whole tissue scored by a model calibrated on beds: its own residuals, else 0-100
                    low, high, attrs["interval_whole_tissue"] = whole_tissue_interval(cal, stil, u, shift)
                if not math.isfinite(se):  # one weighted tile: its sampling error is unknown, not zero
                    low, high, u = 0.0, 100.0, math.inf
                attrs["interval_uncertainty"] = u
                attrs["interval_shift"] = shift
        min_tiles = int((self.reference.get("few_tumorbed_tiles") or {}).get("min_tiles", MIN_BED_TILES))
        gap = weighting_gap(scores.tile_stil, bag.tile_mask, stil)  # of the published tiles, as a user sees them
        gap_thr = (self.reference.get("weighting") or {}).get("threshold")
        attrs["weighting_gap"], attrs["weighting_threshold"] = gap, gap_thr
        flags, why = slide_flags(ood_score=ood_score, ood_threshold=ood_thr, unfamiliar=unfamiliar,
                                 n_bed_tiles=n_bed_tiles, crush_tiles=crush_tiles,
                                 low=low, high=high, threshold=threshold, image=image, image_ref=image_ref,
                                 min_bed_tiles=min_tiles, weighting_gap=gap, weighting_threshold=gap_thr,
                                 stil=stil, label_max=(self.reference.get("labels") or {}).get("max"),
                                 label_min=(self.reference.get("labels") or {}).get("min"),
                                 interval_available=self.no_interval is None, no_interval_why=self.no_interval,
                                 bed_unlike_training=bed_unlike_training(bed_source, self.training_beds, bed_ink_rule)
                                 if bed_source else None, slide_mpp=slide_mpp, file_mpp=file_mpp,
                                 base_mpp=base_mpp, target_mpp=mpp, unit_slip=unit_slip,
                                 annotation_misplaced=annotation_misplaced,
                                 bed_incomplete=bed_incomplete, bed_unlike_detector=bed_unlike_detector,
                                 bed_lymphoid=bed_lymphoid, tma_like=tma_like, bed_stroma=bed_stroma_outside(stroma, stroma_ref),
                                 morphometry=morphometry_outside(means, morph_ref, n_measured),
                                 morphometry_uncompared=uncompared,
                                 sharpening=Sharpening.from_json(bag.attrs.get("sharpening")))
        qc = join(flags)
        attrs.update({LOW_COLUMN: low, HIGH_COLUMN: high, "qc": qc, "qc_reasons": json.dumps(why)})
        for flag, reason in why.items():
            if flag != "no_interval":  # the same for every slide of a run: said once by 'weakstil score'
                log.info("%s: qc %s (%s)", bag.slide_id, flag, reason)
        row = {LOW_COLUMN: round(low, 4) if math.isfinite(low) else math.nan,
               HIGH_COLUMN: round(high, 4) if math.isfinite(high) else math.nan, "qc": qc,
               "qc_reasons": " | ".join(f"{flag}: {reason}" for flag, reason in why.items())}
        return row, {k: v for k, v in attrs.items() if v is not None}


def interval_text(low: float | None, high: float | None, level: float = LEVEL,
                  threshold: float | None = None) -> str:
    """``"90 % interval 17.1–30.2"`` (empty without an interval); with ``threshold``, each end keeps
    the side of it that ``near_threshold`` judged (:func:`weakstil.metrics.interval_ends_text`)."""
    from weakstil.metrics import interval_ends_text

    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"{100 * level:g} % interval {interval_ends_text(low, high, threshold)}"
