"""A slide's tile measurements (nuclear morphometry, per-tile stain) against the training slides' range.

A model that appends the tile measurements of :mod:`weakstil.tilestats` to its embeddings learns
its tile scores from both. The embedding check (:mod:`weakstil.qc.embedding`) compares a slide's
tiles on the first principal components of all those standardised dimensions, which the
encoder's hundreds of dimensions dominate; the few dozen measurements a pathologist would look at
(how many small dark round nuclei lie in stroma, how large and dark the tumour nuclei are) can
move far beyond anything in training while the embedding distance stays typical. Measured with
the quick demo's model (hunt 25): a cohort whose tumour nuclei are all small and hyperchromatic
(as dark as lymphocytes) had a median OOD score of 1.0 and shift 0.4, while its area of small
dark round nuclei "in stroma" was 2.2x the training slides' median, beyond the furthest training
slide on 9 of 10 slides; the model read the dark tumour nuclei as TILs (5.3 % scored 16.7, its
interval 11.8-21.7), and nothing was flagged.

The check: per measurement, the slide's mean over its tiles against the training slides' median,
outside when it lies further from it than :data:`MARGIN` x the furthest training slide *on that
side*, plus a floor (:data:`RANGE_FLOOR` x the training range, and :data:`ABS_FLOOR`), the same
form as the stain check (:func:`weakstil.qc.flags.stain_reference`). Each side has its own spread,
because these are mostly area shares bounded by 0: a measurement that vanishes (pale tumour
nuclei in nests, when every tumour nucleus is dark) is as far outside as one that doubles.
Nothing here is fitted to a look: only the training slides' medians and extremes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: A measurement is outside when further from the training median than MARGIN x the furthest
#: training slide on that side (the stain check's margin) ...
MARGIN = 1.5
#: ... plus this share of the training range ...
RANGE_FLOOR = 0.1
#: ... plus this (in the measurement's units: 0.1 % of a tile's area for the area shares), so a
#: measurement every training slide had at 0 is not outside for a trace.
ABS_FLOOR = 1e-3
#: Measurements named in a flag's reason (the furthest first).
NAMED = 3
#: An area share outside the range by less of the tile area (beyond the furthest training slide) than this part of
#: the largest such excess among the slide's outside area shares is not named beside them, only counted ("and n
#: more"): a share whose training range is a sliver near 0 lies "far" outside at a few % of the tile area. A slide of
#: pure lymphocyte sheets (hunt 44b, sTIL 85 %) named "crush artefact: 2.7 % of the tile area (training slides to
#: 0.674 %)" second, its 2 points beside 16-26 points of nuclear and eosin area, and a pathologist looked for crush.
#: Alone outside, a small share is still named (CMU-1: lymphocyte-sized nuclei outside stroma 2.29 %, hunt 26c).
MINOR_EXCESS = 0.25
#: Training slides the check needs: its limits are the furthest training slides, and the furthest
#: of a few slides says little of how far a slide of the same cohort may lie (over 29 measurements
#: one of them is nearly always beyond). The quick demo's 40 slides of one look, the check fitted
#: on n of them and the rest scored (30 draws each): in-distribution slides flagged at n = 2, 3, 5,
#: 8, 12, 20, 30: 99.7, 98.5, 84, 47, 28, 7.5, 3.3 % (hunt 26a). Below this no reference is made
#: (not flagged, no shift part); the embedding and stain checks still run.
MIN_SLIDES = 20
#: A slide of fewer tiles than the training slides' typical count has a noisier mean: its allowed
#: distance grows by this many standard errors of the *extra* sampling noise,
#: ``SAMPLING_Z * sd * sqrt(1/n - 1/n_typical)`` (``sd`` each measurement's tile-to-tile standard
#: deviation pooled over the training slides; nothing added at the training slides' size or above).
#: The quick demo's 10 held-out slides cut to k random tiles (20 draws each; its 30 training
#: slides' limits, 128 tiles typical): flagged at k = 5, 10, 20, 40 with the limits alone 62, 33,
#: 16, 2 %, with this 7.5, 1, 1, 0 %; whole slides unchanged, and so the small-dark-round-nuclei
#: area x 2.2 (flagged 60 %; cut to 20 tiles 62 -> 41 %: a small slide must lie further) (hunt 26a).
SAMPLING_Z = 2.0


#: Said with the stain flag of a slide whose features' stain is the reference fallback (its Macenko fit failed: too
#: few stained pixels). Its tile measurements are unmixed with the reference vectors and strengths, on a scale not
#: known for this slide: three in-distribution 0.3 mm slides (2-4 tiles) read mean eosin 0.205 against the training
#: slides' 0.505-0.647 and large dark nuclei in nests 4.7 % against 0.11-1.29 % (helper h47e). Not compared, as
#: their stain is not (:func:`weakstil.qc.stain_range.stain_outside`).
UNCOMPARED = ("its tile measurements (nuclei, stained areas, mean stain) were made with the reference stain too, on a "
              "scale not known for this slide, so they were not compared with the training slides' either")


#: The tile-measurement ratio an uncompared slide (:data:`UNCOMPARED`) counts in its interval's shift: the flag's limit,
#: so that part of the shift is 1 (:func:`weakstil.qc.shift.slide_shift`), as an embedding or stain distance that
#: could not be measured counts twice the typical one. Not counted (0), a slide of pink tissue without haematoxylin,
#: whose fit failed, went from flagged out_of_distribution with a 90 % interval of 0-100 % to no such flag and 0-32.4 %
#: (a model of 11 default-look 0.8 mm slides; review r47e): what could not be compared narrowed the interval.
UNCOMPARED_RATIO = 1.0


def ratio_for_shift(ratio: float | None, fitted: bool) -> float | None:
    """The tile-measurement ratio a slide's interval shift counts: its own (``None``: not measured), or
    :data:`UNCOMPARED_RATIO` where its stain was not fitted (:func:`stain_fitted`) and so its measurements not compared."""
    return ratio if fitted else UNCOMPARED_RATIO


def stain_fitted(attrs: dict[str, Any]) -> bool:
    """Whether a features file's tile measurements were made with the slide's own fitted stain: ``False`` where its
    ``stain`` attribute records the reference fallback (the Macenko estimate failed); a file without one (older, or
    stain recording off) as before."""
    from weakstil.stain import SlideStain

    stain = SlideStain.from_attr(attrs.get("stain"))
    return stain is None or stain.source == "macenko"


def slide_means(tile_stats: np.ndarray) -> np.ndarray:
    """A slide's measurements: the mean over its tiles of each column (NaN without tiles)."""
    x = np.asarray(tile_stats, np.float64)
    if x.ndim != 2 or not len(x):
        return np.full(x.shape[-1] if x.ndim == 2 else 0, math.nan)
    return x.mean(axis=0)


def tile_spread(tile_stats: Sequence[np.ndarray | None]) -> tuple[np.ndarray, float] | None:
    """Each measurement's tile-to-tile standard deviation pooled over slides (their tile arrays), and
    their median tile count (``None`` without a slide of 2 tiles or more)."""
    arrays = [np.asarray(x, np.float64) for x in tile_stats if x is not None and len(x) >= 2]
    arrays = [x for x in arrays if x.ndim == 2 and np.isfinite(x).all()]
    if not arrays:
        return None
    return np.sqrt(np.mean([x.var(axis=0, ddof=1) for x in arrays], axis=0)), float(np.median([len(x) for x in arrays]))


def morphometry_reference(means: Sequence[np.ndarray], columns: Sequence[str],
                          min_slides: int | None = None,
                          spread: tuple[np.ndarray, float] | None = None) -> dict[str, Any] | None:
    """The training slides' median of each measurement and how far from it a slide may lie on
    each side (``None`` with fewer than ``min_slides`` slides measured, :data:`MIN_SLIDES`);
    ``spread``: :func:`tile_spread` of the training slides (recorded for slides of fewer tiles)."""
    m = np.asarray([np.asarray(v, np.float64) for v in means if v is not None and np.isfinite(v).all()])
    needed = max(2, MIN_SLIDES if min_slides is None else min_slides)
    if m.ndim != 2 or len(m) < needed or m.shape[1] != len(columns):
        return None
    centre = np.median(m, axis=0)
    lo, hi = m.min(axis=0), m.max(axis=0)
    floor = RANGE_FLOOR * (hi - lo) + ABS_FLOOR
    return {"columns": [str(c) for c in columns], "median": centre.tolist(),
            "below": (MARGIN * (centre - lo) + floor).tolist(), "above": (MARGIN * (hi - centre) + floor).tolist(),
            "training_min": lo.tolist(), "training_max": hi.tolist(), "n_slides": int(len(m)),
            "margin": MARGIN, "range_floor": RANGE_FLOOR, "floor": ABS_FLOOR,
            **({"tile_sd": [float(v) for v in spread[0]], "typical_tiles": spread[1], "sampling_z": SAMPLING_Z}
               if spread is not None and len(spread[0]) == len(columns) else {})}


def morphometry_ratios(means: np.ndarray, reference: dict[str, Any], n_tiles: int | None = None) -> np.ndarray:
    """Per measurement, the slide's distance from the training median over the allowed distance on
    its side: above 1 is outside the training range (NaN where not measured). ``n_tiles``: the
    tiles the slide's means are of; fewer than the training slides' typical count widen the
    allowed distance by their extra sampling noise (:data:`SAMPLING_Z`; references with
    ``tile_sd``, models trained since hunt 26a)."""
    x = np.asarray(means, np.float64)
    centre = np.asarray(reference["median"], np.float64)
    if x.shape != centre.shape:
        return np.full(centre.shape, math.nan)
    d = x - centre
    allowed = np.where(d >= 0, np.asarray(reference["above"], np.float64), np.asarray(reference["below"], np.float64))
    if n_tiles is not None and reference.get("tile_sd") is not None:
        extra = 1.0 / max(int(n_tiles), 1) - 1.0 / float(reference["typical_tiles"])
        if extra > 0:
            allowed = allowed + float(reference.get("sampling_z", SAMPLING_Z)) * np.sqrt(extra) * \
                np.asarray(reference["tile_sd"], np.float64)
    return np.abs(d) / np.maximum(allowed, 1e-12)


def morphometry_ratio(means: np.ndarray | None, reference: dict[str, Any] | None,
                      n_tiles: int | None = None) -> float | None:
    """The largest of :func:`morphometry_ratios` (``None`` when not measured or no reference)."""
    if means is None or not reference:
        return None
    r = morphometry_ratios(means, reference, n_tiles)
    r = r[np.isfinite(r)]
    return float(r.max()) if len(r) else None


def morphometry_outside(means: np.ndarray | None, reference: dict[str, Any] | None,
                        n_tiles: int | None = None) -> str:
    """Why a slide's tile measurements are outside the training range, in words (empty: inside).
    The range is written "a to b": "1.88e-05-0.000116" read as a subtraction (hunt 26a)."""
    if means is None or not reference:
        return ""
    r = morphometry_ratios(means, reference, n_tiles)
    out = [j for j in np.argsort(-np.nan_to_num(r, nan=-1.0)) if r[j] > 1.0]
    if not out:
        return ""
    minor = minor_shares(means, reference, out)
    out = [j for j in out if j not in minor] + [j for j in out if j in minor]  # the minor ones last, only counted
    named = [j for j in out[:NAMED] if j not in minor]
    x, centre = np.asarray(means, np.float64), reference["median"]
    lo, hi = reference["training_min"], reference["training_max"]

    def said_one(j: int) -> str:
        name = reference["columns"][j]
        words, scale, unit = describe(name)
        v = [f"{scale * float(a):.3g}" for a in (x[j], lo[j], hi[j], centre[j])]
        share = " of the tile area" if unit == " %" else ""
        span = f"{v[1]} to {v[2]}"  # with a hyphen, '-0.0367-0.258' and '1.88e-05-0.000116' read as subtractions
        if words == name:  # a column this version does not know: its name, as before
            return f"{name} {v[0]}{unit} (training slides {span}{unit}, median {v[3]}{unit})"
        return f"{words}: {v[0]}{unit}{share} (training slides {span}{unit}, median {v[3]}{unit}) [{name}]"

    said = "; ".join(said_one(j) for j in named)
    more = f" and {len(out) - len(named)} more" if len(out) > len(named) else ""
    return f"tile measurements outside the training range: {said}{more}"


def minor_shares(means: np.ndarray, reference: dict[str, Any], outside: Sequence[int]) -> set[int]:
    """Of the ``outside`` measurements, the area shares outside by a small part of the tile area against the
    others (:data:`MINOR_EXCESS`): not named in the reason. The excess is the distance beyond the furthest
    training slide on that side, in the share's own units (a part of the tile's area)."""
    x = np.asarray(means, np.float64)
    lo, hi = np.asarray(reference["training_min"], np.float64), np.asarray(reference["training_max"], np.float64)
    shares = [j for j in outside if describe(reference["columns"][j])[2] == " %"]
    excess = {j: max(float(x[j] - hi[j]), float(lo[j] - x[j]), 0.0) for j in shares}
    largest = max(excess.values(), default=0.0)
    return {j for j, e in excess.items() if e < MINOR_EXCESS * largest}


#: Nuclear blob area bins of :mod:`weakstil.tilestats` in words (its ``AREA_BINS_UM2``).
#: Blobs are connected haematoxylin: touching nuclei (a dense lymphocyte sheet) are read as one larger blob (hunt 44b:
#: a slide of pure lymphocyte sheets read "dark nuclei over 160 µm² outside stroma (in nests)", 20.5 % of its tiles).
_SIZES = {"debris": "specks under 12 µm²", "small": "lymphocyte-sized nuclei (12-75 µm²)",
          "medium": "nuclei of 75-160 µm² (large nuclei, or touching ones read as one)",
          "large": "nuclei over 160 µm² (large nuclei, or touching ones read as one)"}
_SHARE = (100.0, " %")
_PLAIN = {
    "stroma_estimate": ("stroma (estimated)", *_SHARE), "tissue": ("tissue (not glass or fat)", *_SHARE),
    "eosin_dominant": ("eosin-dominant tissue", *_SHARE), "nuclear": ("haematoxylin-stained area", *_SHARE),
    "mean_h": ("mean haematoxylin in tissue (1 = the slide's strongest)", 1.0, ""),
    "mean_e": ("mean eosin in tissue (1 = the slide's strongest)", 1.0, ""),
    "h_p90": ("90th-percentile haematoxylin in tissue (1 = the slide's strongest)", 1.0, ""),
    "small_dark_round_stroma": ("small dark round (lymphocyte-like) nuclei in stroma", *_SHARE),
    "elongated_stroma": ("elongated (fibroblast-like) nuclei in stroma", *_SHARE),
    "nuclei_per_100um2": ("haematoxylin blobs (nuclei and specks) per 100 µm² of tissue", 1.0, ""),
    "mean_roundness": ("mean nuclear roundness (minor / major axis, 1 = round)", 1.0, ""),
    "small_dark_round_count": ("lymphocyte-like nuclei in stroma per 100 x 100 µm", 1.0, ""),
    "dark_tumour_nuclei": ("dark tumour-sized nuclei in nests (hyperchromatic tumour)", *_SHARE),
    "crush_share": ("crush artefact (dense, streamed haematoxylin without nuclear outlines)", *_SHARE),
}


def describe(column: str) -> tuple[str, float, str]:
    """A tile measurement in a pathologist's words: ``(words, scale, unit)``, the value shown being
    ``scale x`` the stored one (area shares: " %" of the tile); an unknown column by its name."""
    if column in _PLAIN:
        return _PLAIN[column]
    parts = column.split("_")
    if len(parts) == 3 and parts[0] in _SIZES and parts[1] in ("dark", "pale") and parts[2] in ("stroma", "nest"):
        where = "in stroma" if parts[2] == "stroma" else "outside stroma (in nests or dense cell sheets)"
        return (f"{parts[1]} {_SIZES[parts[0]]} {where}", *_SHARE)
    return column, 1.0, ""


def leave_group_out_ratios(means: Sequence[np.ndarray], groups: Sequence, columns: Sequence[str]) -> np.ndarray:
    """Each training slide's :func:`morphometry_ratio` against the other groups' slides only (as the
    leave-centre-out cross-validation predicted it; NaN where they are too few)."""
    groups = np.asarray([str(g) for g in groups])
    out = np.full(len(means), math.nan)
    for i, x in enumerate(means):
        # a slide's distance relative to its other groups' (the shift's scale): not held to MIN_SLIDES
        ref = morphometry_reference([v for j, v in enumerate(means) if groups[j] != groups[i]], columns, min_slides=2)
        r = morphometry_ratio(x, ref)
        out[i] = math.nan if r is None else r
    return out


def training_range(bank, group_ids: Sequence) -> tuple[list[np.ndarray], dict[str, Any] | None, np.ndarray | None,
                                                      list[bool]]:
    """The training slides' tile measurements (a :class:`~weakstil.mil.data.FeatureBank`'s): each slide's means, their
    range (:func:`morphometry_reference`; ``None``: the check is off), each slide's leave-group-out ratio and whether
    its stain was fitted (:func:`stain_fitted`). A slide whose features' stain is the reference fallback was measured
    on a scale unknown for it: left out of the range (NaN means), as it is not compared when scored
    (:data:`UNCOMPARED`). With too few slides left the check is off, said as a warning (helper h44m: at info level a
    model of 18 slides scored another generator's cohort with its out-of-distribution check resting on the embeddings
    alone, unsaid) that counts the slides left out and why (review r47e: a cohort of 3 such slides was told "0
    training slides measured ... train on 3 or more slides")."""
    columns = bank.tile_stats_columns
    fitted = [stain_fitted(b.attrs) for b in bank.bags]
    if not columns:
        return [], None, None, fitted
    measured = [bank.slide_tile_stats(i) if ok else None for i, ok in enumerate(fitted)]
    means = [slide_means(x) if x is not None else np.full(len(columns), math.nan) for x in measured]
    reference = morphometry_reference(means, columns, spread=tile_spread(measured))
    left_out = fitted.count(False)
    if reference is None:
        said = (f" ({left_out} left out: their stain fit failed, so their tile measurements were made with the "
                "reference stain, on a scale not known for them)" if left_out else "")
        log.warning("tile-measurement check off: %d training slides measured%s, it needs %d (weakstil.qc.morphometry): "
                    "slides this model scores are not compared with its training slides' nuclei and tissue "
                    "measurements, only their embeddings and stain; train on %d or more slides %s",
                    sum(1 for v in means if np.isfinite(v).all()), said, MIN_SLIDES, MIN_SLIDES,
                    "whose stain can be fitted (sections with enough stained tissue)" if left_out else "for it")
        return means, None, None, fitted
    if left_out:
        log.info("tile-measurement range: %d of %d training slides left out (their stain fit failed, so their tile "
                 "measurements were made with the reference stain)", left_out, len(fitted))
    return means, reference, leave_group_out_ratios(means, group_ids, columns), fitted
