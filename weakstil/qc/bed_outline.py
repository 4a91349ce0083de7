"""How much a slide's sTIL% hangs on where a *detected* tumour bed's outline runs.

A model's interval is calibrated on its out-of-fold predictions, made over the beds its training
slides had. When those were annotated (a pathologist's outline, or a cohort's exact beds) and a
slide is scored over a bed the tumour-bed detector drew, the interval holds none of the
detector's outline error: the quick demo's model (trained on annotated beds, scoring with its
bundled detector) covered 90 % of 30 in-distribution slides with the exact beds but 73 % with
the detector's (hunt 25c). Detected outlines run about a tile off the true one (tile
resolution: docs/tumorbed-quality.md), and the stroma just outside a bed holds fewer TILs than
the stroma inside, so the slide's number moves with the outline.

The measure: the slide's sTIL% over the bed's *interior* (bed tiles whose eight grid neighbours
that are tissue tiles are all bed) and over the bed *grown* by one tile (with its tissue tiles
touching it), besides the bed itself. With the outline anywhere within a tile either way, all
positions alike, the number lies anywhere between those; its standard deviation is then the
range over ``sqrt(12)`` (a uniform distribution's), :data:`OUTLINE_SD_PER_RANGE`. It is added
to the slide's own uncertainty on the interval's scale like the tile standard error
(:meth:`weakstil.confidence.Calibration.interval`), and only where the calibration lacks it:
a detector's bed on a model trained mostly on other beds (:func:`calibration_lacks_outline_error`).
On large beds the rim is a small share of the tiles and the term shrinks by itself.
"""

from __future__ import annotations

import math

import numpy as np

#: A uniform distribution's standard deviation over its range (the outline anywhere within a tile).
OUTLINE_SD_PER_RANGE = 1.0 / math.sqrt(12.0)
#: The bed sources whose outline a detector drew (:class:`weakstil.tumorbed.bed.TumorBedSource`).
DETECTED_SOURCES = ("model",)


def grid_reach(tile_size_level0: float, stride: float) -> int:
    """Grid steps that make a tile's side (1 without overlap)."""
    return max(1, int(round(float(tile_size_level0) / float(stride)))) if stride > 0 else 1


def interior_and_grown(coords: np.ndarray, tile_size_level0: float, bed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(interior, grown)`` tile flags of a bed on the tile grid: its tiles whose eight neighbours
    that are tiles (tissue) are all bed, and the bed with every tile touching it. A neighbour cell
    without a tile (glass, the slide's edge) does not count against the interior. On an overlapping
    grid (``--overlap``: a stride under a tile) "neighbour" reaches as many grid steps as make a tile
    (:func:`grid_reach`), so the outline still moves by a tile: by one step a 50 % overlap halved the
    outline's error (hunt 26a)."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import grid_cells

    bed = np.asarray(bed, bool)
    if not len(bed):
        return bed.copy(), bed.copy()
    rows, cols, stride = grid_cells(coords, tile_size_level0)
    k = grid_reach(tile_size_level0, stride)
    shape = (rows.max() + 2 * k + 1, cols.max() + 2 * k + 1)  # empty cells all round
    in_bed, outside = np.zeros(shape, bool), np.zeros(shape, bool)
    in_bed[rows + k, cols + k] = bed
    outside[rows + k, cols + k] = ~bed
    square = np.ones((2 * k + 1, 2 * k + 1), bool)
    touches_outside = ndi.binary_dilation(outside, structure=square)[rows + k, cols + k]
    touches_bed = ndi.binary_dilation(in_bed, structure=square)[rows + k, cols + k]
    return bed & ~touches_outside, bed | touches_bed


def outline_sd(tile_scores: np.ndarray, bed: np.ndarray, coords: np.ndarray, tile_size_level0: float, *,
               stroma: np.ndarray | None = None, attention: np.ndarray | None = None) -> float:
    """The standard deviation (sTIL points) of the slide's sTIL% over where the bed's outline runs:
    the range of its score over the bed's interior, the bed and the bed grown by a tile, times
    :data:`OUTLINE_SD_PER_RANGE`; aggregated as the model does (attention logits, else stroma
    weights, else the mean). NaN without a bed."""
    from weakstil.mil.aggregate import slide_score

    bed = np.asarray(bed, bool)
    if not bed.any():
        return math.nan
    aggregator = "attention" if attention is not None else "stroma" if stroma is not None else "mean"
    interior, grown = interior_and_grown(coords, tile_size_level0, bed)
    values = [float(slide_score(tile_scores, stroma, flags, aggregator, attention=attention)[0])
              for flags in (interior, bed, grown) if flags.any()]
    values = [v for v in values if math.isfinite(v)]
    return OUTLINE_SD_PER_RANGE * (max(values) - min(values)) if values else math.nan


def calibration_lacks_outline_error(bed_source: str | None, training_sources: dict[str, int]) -> bool:
    """Whether a slide's interval must add its bed's outline error: its bed was detected, and at
    most half the model's training slides had a detected bed (their out-of-fold errors, which the
    interval is calibrated on, then hold little of a detector's outline error)."""
    if bed_source not in DETECTED_SOURCES:
        return False
    detected = sum(n for source, n in training_sources.items() if source in DETECTED_SOURCES)
    return detected * 2 <= sum(training_sources.values())
