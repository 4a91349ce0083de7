"""The ``qc`` flags of a scored slide: each one's rule and threshold.

Flags are advice: the slide keeps status ``ok`` and its score. ``results.csv`` lists them in
one ``qc`` column, separated by ``;`` (empty when none).

=============================  ==================================================================
flag                           raised when
=============================  ==================================================================
out_of_distribution            the slide's OOD score (mean k-NN distance of its tile embeddings
                               to the training tiles', relative to the training slides',
                               :mod:`weakstil.qc.embedding`) exceeds the threshold set on the
                               training slides (their leave-slide-out 99th percentile x 1.2),
                               or its share of unfamiliar tiles (farther than 99 % of training
                               tiles are) exceeds the share set on the training slides
                               (:func:`weakstil.qc.embedding.unfamiliar_reference`),
                               or its mean tile measurements (nuclear morphometry) lie outside
                               the training slides' range (:mod:`weakstil.qc.morphometry`)
few_tumorbed_tiles             fewer than :data:`MIN_BED_TILES` tiles (0.2 mm² at 112 µm tiles)
                               in the tumour bed
near_threshold                 the sTIL% interval straddles the sTIL-high threshold
stain_outside_training_range   a stain statistic (Macenko H or E vector angle, H or E
                               strength, mean optical density per channel) further from the
                               training median than 1.5 x the furthest training slide (plus a
                               floor), or the image is not brightfield H&E; or the bed came from a
                               detector whose training slides were stained otherwise
                               (:mod:`weakstil.tumorbed.look`)
blurry                         more than :data:`BLURRY_SHARE` of the sampled tissue tiles have
                               a blur effect above :data:`weakstil.qc.image.BLURRY_TILE`
sharpened                      the slide's strongest edges overshoot on their light side by more
                               than :data:`weakstil.qc.image.SHARPENED_HALO` of their contrast
                               (median over the focus tiles): a scanner's sharpening past what
                               the model was checked on; its halos read as more lymphocytes.
                               Such a slide's tiles are unsharpened before the encoder
                               (:mod:`weakstil.unsharp`); the note says by how much
pen_or_folds                   marker ink near the tissue plus fold-like tissue exceed
                               :data:`PEN_FOLD_SHARE` of the tissue area
weighting_outside_training_    the slide score departs from the plain mean of its bed tiles'
range                          scores by more than :data:`WEIGHTING_MARGIN` x the most any
                               training slide's out-of-fold score did (at least
                               :data:`WEIGHTING_FLOOR` points): the tile weights (stroma or
                               attention), not the tile scores, decide the number beyond
                               anything cross-validation checked
above_training_labels          the slide's sTIL% is above the highest label of the training
                               slides: the model extrapolates, and neither it nor its interval
                               was checked there (a model trained on labels up to 34.5 % scored
                               slides of 51-57 % at 34-41 %)
below_training_labels          the slide's sTIL% is more than 2.5 points below the lowest label of
                               the training slides (a model trained on labels of 29-85 % scored 15 slides of
                               0.5-5.7 % at 20-29 %, intervals 17-23 to 24-35, none holding the truth)
bed_unlike_training            the slide was scored over the whole tissue (no bed source, or a bed fallback)
                               by a model trained on tumour beds (annotations, a detector): its
                               tiles and its interval are not what the model was checked on; or
                               inside a tumour bed by a model trained over the whole tissue, which
                               reads a bed too high (24 new slides: +7.9 points on average); or
                               a bed whose ink veto measured ink over tissue under another
                               ink-plane rule than the model's training beds (helper h46c)
no_interval                    the slide has a score but the model has no calibrated interval
                               (trained without cross-validation, or on fewer than 9 out-of-fold
                               slides): nothing says how far off the number may be
mpp_overridden                 ``--slide-mpp`` replaced the resolution the slide file states by
                               more than :data:`MPP_OVERRIDE_MARGIN` (one value for a batch,
                               meant for the slide without one, also changes the others)
tumorbed_incomplete            the detector's bed left out tiles with tumour cells joined to its own
                               tumour, a third of its tiles or more
                               (:func:`weakstil.tumorbed.cellgate.tumour_cells_left_out`), or
                               tumour on a tissue piece it does not reach (another core or section:
                               :func:`weakstil.tumorbed.cellgate.tumour_on_other_pieces`)
tumorbed_lymphoid              the detector's lymphoid veto left no bed and was set aside: the bed
                               lies where the tumour evidence is lymphoid tissue, a TIL-rich bed or
                               an aggregate / lymph node taken for tumour (a bed of 2 tiles on a
                               lymphoid region beside the tumour scored 97 %, truth 5 %, hunt 36e)
bed_stroma_outside_training_  the mean stroma estimate over the bed's tiles lies below the lowest or above
range                          the highest training slide's bed (plus a floor): a bed of solid tumour
                               with almost no stroma, or of stroma alone (no invasive tumour?);
                               neither gives a meaningful sTIL (:mod:`weakstil.qc.bed_stroma`)
mpp_unit_slip                  the plain TIFF's µm/px is a common scan resolution (0.25, 0.5) times or divided by 2.54:
                               its resolution tags likely hold px/cm under ResolutionUnit inch or the reverse, and the
                               tiles are of another physical size (:func:`weakstil.tiff_layout.unit_slip`)
upsampled                      the scan is coarser than the model's µm/px by more than
                               :data:`weakstil.slide.COARSER_TOLERANCE` and was read upsampled (``--allow-upsample``):
                               the tiles hold less detail than the model's training tiles
scan_incomplete                the scan is incomplete: a straight-edged region of one exact colour
                               (white, black, a fill grey) has tissue along
                               :data:`weakstil.qc.scan_gap.CUT_UM` or more of its edge, or lies
                               inside the tissue as a lost tile (:mod:`weakstil.qc.scan_gap`): the
                               score rests on the part that was scanned
tma_like                       6 or more separate round tissue pieces of similar size: a tissue microarray
                               or several specimens pooled into one sTIL% (:mod:`weakstil.qc.pieces`)
=============================  ==================================================================
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

import numpy as np

from weakstil.metrics import STIL_DECIMALS, interval_ends_text
from weakstil.qc.image import BLURRY_TILE, IMAGE_STATS_VERSION, SHARPENED_HALO, ImageStats
from weakstil.qc.scan_gap import CUT_UM as SCAN_CUT_UM
from weakstil.qc.stain_range import (STAIN_FLOORS, STAIN_LOOK_SLIDES, STAIN_MARGIN, _angle, stain_centre,  # noqa: F401
                                     stain_distances, stain_outside, stain_reference)
from weakstil.slide import COARSER_TOLERANCE  # the margin past which a scan is refused or read upsampled


class Flag(str, Enum):
    OUT_OF_DISTRIBUTION = "out_of_distribution"
    FEW_TUMORBED_TILES = "few_tumorbed_tiles"
    NEAR_THRESHOLD = "near_threshold"
    STAIN = "stain_outside_training_range"
    BLURRY = "blurry"
    SHARPENED = "sharpened"
    PEN_OR_FOLDS = "pen_or_folds"
    WEIGHTING = "weighting_outside_training_range"
    ABOVE_LABELS = "above_training_labels"
    BELOW_LABELS = "below_training_labels"
    BED_UNLIKE_TRAINING = "bed_unlike_training"
    NO_INTERVAL = "no_interval"
    MPP_OVERRIDDEN = "mpp_overridden"
    MPP_UNIT_SLIP = "mpp_unit_slip"
    UPSAMPLED = "upsampled"
    ANNOTATION_MISPLACED = "annotation_misplaced"
    TUMORBED_INCOMPLETE = "tumorbed_incomplete"
    TUMORBED_LYMPHOID = "tumorbed_lymphoid"
    BED_STROMA = "bed_stroma_outside_training_range"
    SCAN_INCOMPLETE = "scan_incomplete"
    TMA_LIKE = "tma_like"


FLAGS = tuple(f.value for f in Flag)
#: Separator of several flags in the ``qc`` column.
SEPARATOR = ";"
#: Fewer tumour-bed tiles than this: the score rests on too little tissue.
MIN_BED_TILES = 16
#: ``--slide-mpp`` this far (relative) from the file's own µm/px: flagged ``mpp_overridden``.
MPP_OVERRIDE_MARGIN = 0.1
#: Share of blurry tissue tiles above which a slide is flagged.
BLURRY_SHARE = 0.25
#: Share of ink plus fold-like pixels (of the tissue area) above which a slide is flagged.
PEN_FOLD_SHARE = 0.08
#: The weighting check: a slide is flagged when |plain mean of its bed tiles' scores - its score|
#: exceeds WEIGHTING_MARGIN x the training slides' largest out-of-fold value, and at least the floor
#: (points). A model trained on few TIL-rich slides can learn stroma weights that shun
#: lymphocyte-dense tiles; beyond the training labels it then scores a 79.7 % slide 9.6 % while its
#: tiles average 52.9 (README, *Accuracy off the home ground*).
WEIGHTING_MARGIN = 1.25
WEIGHTING_FLOOR = 5.0
#: ``below_training_labels``: a score this many points under the lowest training label (half the 5-point step pathologists
#: score sTIL in: a model that has seen 1 % does not flag a slide it scores 0.4 %; one trained on 29-85 % flags 20-26 %).
BELOW_LABELS_SLACK = 2.5

#: Each flag in a pathologist's words, for pages that show the codes (the cohort report's legend): the
#: model's cross-validation report and heatmap titles show only codes, which a reader cannot look up
#: (hunt 37o). The rules are in this module's table.
MEANING: dict[str, str] = {
    Flag.OUT_OF_DISTRIBUTION.value: "the tissue looks unlike the training slides' (tile embeddings or nuclear "
                                    "measurements): the score may not hold",
    Flag.FEW_TUMORBED_TILES.value: f"fewer than {MIN_BED_TILES} tiles in the tumour bed: the score rests on little tissue",
    Flag.NEAR_THRESHOLD.value: "the 90 % interval contains the sTIL-high threshold: the high/low call is uncertain",
    Flag.STAIN.value: "the H&E stain (hue, strength, density) lies outside the training slides' range, or the image "
                      "is not brightfield H&E",
    Flag.BLURRY.value: f"over {BLURRY_SHARE:.0%} of the tissue is out of focus",
    Flag.SHARPENED.value: "the scanner sharpened the image more than the model was checked on (unsharpened before "
                          "scoring)",
    Flag.PEN_OR_FOLDS.value: f"marker ink or tissue folds cover over {PEN_FOLD_SHARE:.0%} of the tissue",
    Flag.WEIGHTING.value: "the tiles' weighting (stroma or attention) moves the score further than on any training "
                          "slide",
    Flag.ABOVE_LABELS.value: "scored above the highest sTIL% the model was trained on: it extrapolates",
    Flag.BELOW_LABELS.value: "scored below the lowest sTIL% the model was trained on: it extrapolates",
    Flag.BED_UNLIKE_TRAINING.value: "scored over another region than the model was trained on (whole tissue vs "
                                    "tumour bed), or on a bed whose ink veto followed another rule than the "
                                    "training beds'",
    Flag.NO_INTERVAL.value: "the model has no calibrated interval: nothing says how far off the number may be",
    Flag.MPP_OVERRIDDEN.value: "the resolution (µm/px) given by hand differs from the one the file states",
    Flag.MPP_UNIT_SLIP.value: "the file's resolution looks written in the wrong unit (px/cm vs inch): the tiles may "
                              "be of another physical size",
    Flag.UPSAMPLED.value: "scanned coarser than the model reads: the tiles were upsampled and hold less detail",
    Flag.ANNOTATION_MISPLACED.value: "the drawn tumour bed looked drawn in another frame or unit (mostly off the tissue as written): check "
                                     "where it lies",
    Flag.TUMORBED_INCOMPLETE.value: "the detected tumour bed left out a third or more of its tumour's tiles, or the tumour of another tissue piece (core or section)",
    Flag.TUMORBED_LYMPHOID.value: "the detected tumour bed lies on lymphoid tissue (a TIL-rich bed, or an aggregate "
                                  "or lymph node taken for tumour): check the bed",
    Flag.BED_STROMA.value: "the tumour bed holds far less or far more stroma than the training beds (solid tumour, "
                           "or no invasive tumour?)",
    Flag.SCAN_INCOMPLETE.value: "part of the scan is missing (a blank or filled band, half or tiles cutting through "
                                "the tissue): the score rests on the part that was scanned; rescan",
    Flag.TMA_LIKE.value: "6 or more separate round tissue pieces of similar size (a tissue microarray, or several "
                         "specimens?): one sTIL% pooled over them is no one specimen's; see each piece's own",
}

#: Each flag in a few plain words, for a heatmap's title (:func:`weakstil.outputs.heatmap_title`): the title showed
#: the codes ("qc: pen_or_folds, near_threshold", hunt 38d); :data:`MEANING` says more, in the report's legend.
LABEL: dict[str, str] = {
    "out_of_distribution": "tissue unlike the training slides", "few_tumorbed_tiles": "few tumour-bed tiles",
    "near_threshold": "high/low call uncertain", "stain_outside_training_range": "stain unlike the training slides",
    "blurry": "out of focus", "sharpened": "sharpened by the scanner", "pen_or_folds": "marker ink or folds",
    "weighting_outside_training_range": "tile weighting unlike training", "above_training_labels":
    "above the training labels", "below_training_labels": "below the training labels", "bed_unlike_training":
    "region unlike training (tissue vs bed)", "no_interval": "no interval", "mpp_overridden": "resolution set by hand",
    "mpp_unit_slip": "resolution in the wrong unit?", "upsampled": "upsampled scan", "annotation_misplaced":
    "annotation misplaced?", "tumorbed_incomplete": "detected bed incomplete", "tumorbed_lymphoid":
    "bed on lymphoid tissue?", "bed_stroma_outside_training_range": "bed stroma unlike training",
    "scan_incomplete": "incomplete scan", "tma_like": "TMA or several specimens?",
}


def label_reference(labels: np.ndarray) -> dict[str, Any] | None:
    """The training labels' range, for the ``above_training_labels`` and ``below_training_labels`` checks
    (None: no finite label)."""
    y = np.asarray(labels, np.float64)
    y = y[np.isfinite(y)]
    return {"max": float(y.max()), "min": float(y.min()), "n": int(len(y))} if len(y) else None


def weighting_gap(tile_scores: np.ndarray, bed: np.ndarray, stil: float) -> float:
    """|plain mean of the scores of the tiles the slide score aggregates (``bed``, bool) - the
    slide score|, in points (NaN without such tiles or score)."""
    scores, used = np.asarray(tile_scores, np.float64), np.asarray(bed, bool)
    if not used.any() or not math.isfinite(stil):
        return math.nan
    return float(abs(scores[used].mean() - stil))


def weighting_reference(gaps: np.ndarray) -> dict[str, Any] | None:
    """The weighting check's threshold from the training slides' out-of-fold gaps (None: none finite)."""
    g = np.asarray(gaps, np.float64)
    g = g[np.isfinite(g)]
    if not len(g):
        return None
    return {"threshold": max(WEIGHTING_MARGIN * float(g.max()), WEIGHTING_FLOOR), "training_max": float(g.max()),
            "margin": WEIGHTING_MARGIN, "floor": WEIGHTING_FLOOR}


def image_reference(stats: list[ImageStats]) -> dict[str, Any] | None:
    """Everything the image flags need from the training slides (``None`` when none was measured)."""
    if not stats:
        return None
    return {"version": IMAGE_STATS_VERSION, "n_slides": len(stats), "stain": stain_reference(stats),
            "blurry": {"tile_blur": BLURRY_TILE, "max_share": BLURRY_SHARE},
            "pen_or_folds": {"max_share": PEN_FOLD_SHARE}}


def slide_flags(*, ood_score: float | None, ood_threshold: float | None, n_bed_tiles: int,
                unfamiliar: tuple[float, int, dict] | None = None, crush_tiles: int = 0,
                low: float | None, high: float | None, threshold: float, image: ImageStats | None,
                image_ref: dict[str, Any] | None, min_bed_tiles: int = MIN_BED_TILES,
                weighting_gap: float | None = None, weighting_threshold: float | None = None,
                stil: float | None = None, label_max: float | None = None, label_min: float | None = None,
                interval_available: bool | None = None, no_interval_why: str | None = None,
                bed_unlike_training: str | None = None,
                slide_mpp: float | None = None, file_mpp: float | None = None,
                base_mpp: float | None = None, target_mpp: float | None = None,
                annotation_misplaced: str = "", bed_incomplete: str = "", bed_unlike_detector: str = "", morphometry_uncompared: str = "",
                bed_lymphoid: str = "", bed_stroma: str = "", tma_like: str = "", morphometry: str = "", sharpening: Any = None, unit_slip: tuple[str, float] | None = None,
                ) -> tuple[list[str], dict]:
    """The flags of one slide and why each was raised (``{flag: reason}``). ``sharpening``: the
    features file's :class:`weakstil.unsharp.Sharpening` reading (the ``sharpened`` note says what was undone).

    ``interval_available``: whether the model carries a usable calibration (``None``: not asked), and
    ``no_interval_why`` why not (:func:`weakstil.qc.scoring.no_interval_why`);
    ``bed_unlike_training``: why the slide's bed is not like the training slides' (``None``: it is);
    ``base_mpp``: the slide's finest µm/px as read (after ``--slide-mpp``), ``target_mpp``: the model's;
    ``morphometry``: why its tile measurements are outside the training range (empty: inside or not
    measured; :func:`weakstil.qc.morphometry.morphometry_outside`); ``morphometry_uncompared``: why they were not
    compared (made with the reference stain; :data:`weakstil.qc.morphometry.UNCOMPARED`), said with the stain flag; ``bed_stroma``: why the bed's stroma
    share is outside the training beds' (:func:`weakstil.qc.bed_stroma.bed_stroma_outside`); ``crush_tiles``: see assess."""
    why: dict[str, str] = {}
    ood = []
    if ood_score is not None and ood_threshold is not None and not ood_score <= ood_threshold:
        ood.append(f"OOD score {ood_score:.2f} > {ood_threshold:.2f}")
    if unfamiliar is not None and unfamiliar[2]:
        share, count, rule = unfamiliar
        if math.isfinite(share) and share > float(rule["share_threshold"]) and count >= int(rule.get("min_tiles", 1)):
            ood.append(f"{100 * share:.1f}% of its sampled tiles ({count}) unlike any training tile > "
                       f"{100 * float(rule['share_threshold']):.1f}% (and at least {int(rule.get('min_tiles', 1))})")
    if morphometry:
        ood.append(morphometry)
    if ood:
        why[Flag.OUT_OF_DISTRIBUTION.value] = "; ".join(ood)
    if n_bed_tiles < min_bed_tiles:
        why[Flag.FEW_TUMORBED_TILES.value] = f"{n_bed_tiles} tumour-bed tiles < {min_bed_tiles}" + (f" ({crush_tiles} more left out as crush artefact)" if crush_tiles > 0 else "")
    # on the interval as written (results.csv's 4 decimals), as the call is made on the sTIL% written: an upper
    # end of 7.46416 written 7.4642 held the threshold 7.4642 in the table without the flag
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high) \
            and round(low, STIL_DECIMALS) < threshold <= round(high, STIL_DECIMALS):
        ends = interval_ends_text(low, high, threshold).replace("–", "-")
        why[Flag.NEAR_THRESHOLD.value] = f"interval {ends} contains the threshold {float(threshold):.10g}"
    if image is not None and image_ref is not None and int(image_ref.get("version", 0)) == image.version:
        reasons = stain_outside(image, image_ref["stain"])
        if reasons:
            why[Flag.STAIN.value] = "; ".join(reasons)
        blur = image_ref.get("blurry", {})
        if image.focus_tiles and image.blurry_share > float(blur.get("max_share", BLURRY_SHARE)):
            why[Flag.BLURRY.value] = (f"{100 * image.blurry_share:.0f}% of {image.focus_tiles} tissue tiles blurry "
                                      f"(blur effect > {float(blur.get('tile_blur', BLURRY_TILE)):g})")
        share = image.pen_share + image.fold_share
        limit = float(image_ref.get("pen_or_folds", {}).get("max_share", PEN_FOLD_SHARE))
        if share > limit:
            why[Flag.PEN_OR_FOLDS.value] = (f"ink {100 * image.pen_share:.1f}% + folds {100 * image.fold_share:.1f}% "
                                            f"of the tissue > {100 * limit:g}%")
    # a fixed physical rule, as sharpened's: a scanner's gap is no matter of the training slides
    if image is not None and (image.scan_cut_um >= SCAN_CUT_UM or image.scan_lost_tiles > 0):  # NaN: not measured
        gaps = ([f"tissue along {image.scan_cut_um:.0f} µm of the straight edge of a blank or constant-fill region "
                 f"(>= {SCAN_CUT_UM:g} µm)"] if image.scan_cut_um >= SCAN_CUT_UM else []) + \
            ([f"{image.scan_lost_tiles} rectangular blank region(s) inside the tissue (lost tiles)"]
             if image.scan_lost_tiles > 0 else [])
        why[Flag.SCAN_INCOMPLETE.value] = "; ".join(gaps) + ": an incomplete scan; rescan the slide"
    # tile measurements made with the reference stain, not compared (weakstil.qc.morphometry.UNCOMPARED); the bed's
    # detector trained on another stain (weakstil.tumorbed.look)
    if morphometry_uncompared or bed_unlike_detector:
        why[Flag.STAIN.value] = "; ".join(r for r in (why.get(Flag.STAIN.value), morphometry_uncompared,
                                                      bed_unlike_detector) if r)
    # a fixed physical limit, not the training slides' range (as blurry's): checked whatever the model recorded
    if image is not None and math.isfinite(image.halo) and image.halo > SHARPENED_HALO:
        if sharpening is not None and sharpening.corrected:
            why[Flag.SHARPENED.value] = (
                f"edges overshoot by {image.halo:.2f} of their contrast > {SHARPENED_HALO:g}: a scanner's sharpening, "
                f"undone before the encoder (an unsharp mask of amount {sharpening.amount:.2f} at "
                f"{sharpening.sigma_um:g} µm; halo after {sharpening.halo_after:.2f}); the correction is an estimate: "
                "scan with sharpening off")
        else:
            why[Flag.SHARPENED.value] = (f"edges overshoot by {image.halo:.2f} of their contrast > {SHARPENED_HALO:g}: "
                                         "a scanner's sharpening, whose halos read as lymphocytes (scores run high); "
                                         "scan with sharpening off")
    if weighting_gap is not None and weighting_threshold is not None and math.isfinite(weighting_gap) \
            and weighting_gap > weighting_threshold:
        why[Flag.WEIGHTING.value] = (f"score {weighting_gap:.1f} points from the mean of its tile scores "
                                     f"> {weighting_threshold:.1f}")
    if stil is not None and label_max is not None and math.isfinite(stil) and stil > label_max:
        why[Flag.ABOVE_LABELS.value] = (f"sTIL {stil:.1f}% above the highest training label {label_max:.1f}%: "
                                        "extrapolated, likely under-scored")
    if stil is not None and label_min is not None and math.isfinite(stil) and stil < label_min - BELOW_LABELS_SLACK:
        why[Flag.BELOW_LABELS.value] = (f"sTIL {stil:.1f}% below the lowest training label {label_min:.1f}%: "
                                        "extrapolated, likely over-scored")
    if bed_unlike_training and stil is not None and math.isfinite(stil):
        why[Flag.BED_UNLIKE_TRAINING.value] = bed_unlike_training
    if interval_available is False and stil is not None and math.isfinite(stil):
        why[Flag.NO_INTERVAL.value] = "no 90 % interval: " + (no_interval_why or (
            "the model has no calibrated interval (trained without cross-validation or on too few slides); "
            "train with --folds 5 on more slides for one"))
    if slide_mpp is not None and file_mpp and abs(slide_mpp / file_mpp - 1) > MPP_OVERRIDE_MARGIN:
        why[Flag.MPP_OVERRIDDEN.value] = (f"--slide-mpp {slide_mpp:g} replaced the file's own {file_mpp:.4g} µm/px "
                                          f"({slide_mpp / file_mpp:.2f}x): tiles of another physical size")
    if unit_slip:  # ``weakstil.tiff_layout.unit_slip`` of the file's own µm/px, read as it stood
        why[Flag.MPP_UNIT_SLIP.value] = f"{unit_slip[0]}: if it is a {unit_slip[1]:g} µm/px scan, rescore with " \
                                        f"--slide-mpp {unit_slip[1]:g}"
    if base_mpp and target_mpp and base_mpp > target_mpp * (1 + COARSER_TOLERANCE):
        why[Flag.UPSAMPLED.value] = (f"a {base_mpp:.3g} µm/px scan read at the model's {target_mpp:g} µm/px "
                                     f"(upsampled {base_mpp / target_mpp:.1f}x, --allow-upsample): tiles with less "
                                     "detail than the model's")
    if annotation_misplaced:  # its bed is where the file says, which is likely not where the pathologist drew
        why[Flag.ANNOTATION_MISPLACED.value] = annotation_misplaced
    if bed_incomplete and stil is not None and math.isfinite(stil):  # a detected bed that left out tumour joined to it
        why[Flag.TUMORBED_INCOMPLETE.value] = bed_incomplete
    if bed_lymphoid and stil is not None and math.isfinite(stil):  # only the log and the bed file said so
        why[Flag.TUMORBED_LYMPHOID.value] = ("the detector's lymphoid veto was set aside: the bed lies on tumour "
                                             "evidence it took for lymphoid tissue, a TIL-rich bed or a lymphoid "
                                             "aggregate / lymph node taken for tumour: check the bed (" +
                                             bed_lymphoid + ")")
    if bed_stroma and stil is not None and math.isfinite(stil):  # until hunt 36g only OOD's all-tile mean said so
        why[Flag.BED_STROMA.value] = bed_stroma
    if tma_like and stil is not None and math.isfinite(stil):  # one number of many specimens (hunt 39g)
        why[Flag.TMA_LIKE.value] = tma_like
    flags = [f for f in FLAGS if f in why]
    return flags, why


#: Bed sources that are the whole tissue, not a tumour bed.
WHOLE_TISSUE = ("tissue", "tissue-fallback")


def bed_unlike_training(bed_source: str, training_beds: dict | None, ink_rule: int | None = None) -> str | None:
    """Why a slide whose bed came from ``bed_source`` is unlike the training slides (``None``: it is
    not): scored over the whole tissue by a model whose training slides mostly had a tumour bed, or
    inside a tumour bed by a model trained mostly over the whole tissue (hunt 32f: such a model learns
    to stretch the whole tissue's diluted lymphocyte share; the demo's 40 slides trained so scored 24
    new slides +7.9 points on average inside their beds, R² 0.795, against 0.908 over the whole tissue);
    or a bed whose ink veto measured ink over tissue under another ink-plane rule (``ink_rule``) than every
    training bed's (:func:`ink_rule_unlike_training`)."""
    return _region_unlike_training(bed_source, training_beds) or ink_rule_unlike_training(ink_rule, training_beds)


def ink_rule_unlike_training(ink_rule: int | None, training_beds: dict | None) -> str | None:
    """Why a bed whose ink veto measured ink over tissue under ``ink_rule`` (:data:`weakstil.ink_plane.INK_PLANE_RULE`)
    is unlike the beds the model was trained on (its ``tumorbeds`` record's ``ink_plane_rules``, recorded since helper
    h46c: a model trained before records none and is not checked), or None: other tiles may be vetoed as ink."""
    from weakstil.ink_plane import rule_said, rules_said

    trained = (training_beds or {}).get("ink_plane_rules") or {}
    if ink_rule is None or not trained or str(int(ink_rule)) in trained:
        return None
    return (f"its bed's ink veto measured ink over tissue under {rule_said(int(ink_rule))}, the model's training beds "
            f"under {rules_said(trained)}: other tiles may be vetoed as ink than in "
            "training; train the model again on beds drawn by this WeakSTIL")


def _region_unlike_training(bed_source: str, training_beds: dict | None) -> str | None:
    """:func:`bed_unlike_training`'s whole tissue against tumour bed."""
    slides = bed_sources(training_beds)
    whole = sum(n for source, n in slides.items() if source in WHOLE_TISSUE)
    if bed_source not in WHOLE_TISSUE and whole * 2 > sum(slides.values()) > 0:
        return (f"scored inside its tumour bed ({bed_source}); the model was trained over the whole tissue "
                f"({training_bed_kinds(training_beds)}) and reads a bed's sTIL% too high: train it with the "
                "training slides' tumour beds (--annotations, --tumorbed-beds or --tumorbed)")
    # models trained before the record told the two apart wrote "feature files' flags or all tiles"
    # (usually all tiles): not counted as beds
    with_bed = sum(n for source, n in slides.items()
                   if source not in ("tissue", "tissue-fallback", "feature files' flags or all tiles"))
    # a detector's bed that fell back to the whole tissue too (hunt 40c: unflagged, 14 of an outside cohort's 40
    # slides' 90 % intervals covered 6 of 14, and all 6 sTIL-high ones read low, e.g. 83.1 % as 23.0 %)
    if bed_source not in WHOLE_TISSUE or with_bed * 2 <= sum(slides.values()):
        return None
    how = "its detected bed fell back to it" if bed_source == "tissue-fallback" else "no bed source, or one that gave it"
    return (f"scored over the whole tissue ({how}); the model was trained on tumour beds "
            f"({training_bed_kinds(training_beds)}): give the slide's tumour bed (--annotations, --tumorbed-beds or --tumorbed)")


#: The tally in a ``tumorbeds`` record's ``slides`` of how many beds came from ``--tumorbed-beds``:
#: not a source of its own (those slides are also counted under their bed's source).
PRECOMPUTED_TALLY = "precomputed"


def bed_sources(beds_record: dict | None) -> dict[str, int]:
    """How many slides got their bed from each source, from a ``tumorbeds`` record (model.json
    ``training.tumorbeds``, metrics.json ``tumorbeds``), without the ``precomputed`` tally."""
    slides = (beds_record or {}).get("slides") or {}
    return {source: n for source, n in slides.items() if source != PRECOMPUTED_TALLY}


def training_bed_kinds(training_beds: dict | None) -> str:
    """Where the training slides' beds came from, in words ("6 annotation, 2 tissue", and
    "(6 precomputed)" when they came from --tumorbed-beds)."""
    kinds = ", ".join(f"{n} {source}" for source, n in sorted(bed_sources(training_beds).items()))
    precomputed = ((training_beds or {}).get("slides") or {}).get(PRECOMPUTED_TALLY)
    return f"{kinds} ({precomputed} precomputed)" if precomputed else kinds


def join(flags: list[str]) -> str:
    return SEPARATOR.join(flags)


def flagged_summary(qc_cells: list[str]) -> str:
    """How many training slides are flagged and by which flags, for train's closing qc line:
    "47% of training slides flagged (near_threshold 14)". A share alone read as an alarm where every
    flag was ``near_threshold`` (an interval holding the threshold: wide intervals, not odd slides;
    hunt 45c: 14 of 30 slides, all of them that)."""
    if not qc_cells:
        return "no training slides"
    counts: dict[str, int] = {}
    for cell in qc_cells:
        for flag in split(cell):
            counts[flag] = counts.get(flag, 0) + 1
    share = 100 * sum(bool(split(c)) for c in qc_cells) / len(qc_cells)
    said = ", ".join(f"{f} {n}" for f, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{share:.0f}% of training slides flagged" + (f" ({said})" if said else "")


def split(qc: object) -> list[str]:
    """The flags of a ``qc`` cell (empty or NaN: none)."""
    if qc is None or (isinstance(qc, float) and math.isnan(qc)):
        return []
    return [f for f in str(qc).split(SEPARATOR) if f]
