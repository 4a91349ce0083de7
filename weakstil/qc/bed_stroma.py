"""The tumour bed's stroma against the training slides' beds: is there stroma to score sTIL over?

sTIL is the share of the *stroma* inside the tumour bed that lymphocytes cover (TILs Working Group).
A bed of solid tumour with almost no stroma has no meaningful sTIL, and a "bed" of stroma alone
(drawn around benign ducts or lobules: no invasive tumour) has none either; the model was checked
on neither. The product measures each tile's stroma share by colour deconvolution
(:mod:`weakstil.tilestats` ``stroma_estimate``); its mean over the bed's tiles is what this module
holds against the same mean over each training slide's bed, recorded at training time.

The check: outside when below the training beds' lowest or above their highest by more than the
floor of the tile-measurement check (:data:`weakstil.qc.morphometry.RANGE_FLOOR` x the training
range + :data:`weakstil.qc.morphometry.ABS_FLOOR`), and only with
:data:`weakstil.qc.morphometry.MIN_SLIDES` training slides or more (fewer: no reference, not
checked; models trained before hunt 36g have none). Nothing here is fitted to a look or a case.

Measured (hunt 36g, the quick demo's model retrained with this version: its 32 training slides'
annotated beds read 0.388-0.810, limits 0.345 and 0.853; slides scored over its detector's beds):
a bed of solid tumour with 1.8 % true stroma read 0.234 (the estimate does not reach 0 on tumour:
eosin-rich cytoplasm between nuclei reads as collagen context) and a bed drawn around benign ducts
on a slide without tumour read 0.912: both flagged. Ordinary slides: see docs/scoring.md's flag
table. The estimate follows the true stroma share loosely (synthetic beds of 27-66 % true stroma
read 31-77 %), so the check catches extremes only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil.qc.morphometry import ABS_FLOOR, MIN_SLIDES, RANGE_FLOOR
from weakstil.tilestats import STROMA_COLUMN

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.mil.bank import FeatureBank


def bed_stroma(bank: FeatureBank, i: int) -> float | None:
    """Slide ``i``'s mean stroma estimate over its bed's tiles (``None`` when the bank has none)."""
    bag = bank.bags[i]
    columns = list(bank.tile_stats_columns)
    if STROMA_COLUMN in columns:
        stroma = bank.slide_tile_stats(i)[:, columns.index(STROMA_COLUMN)]
    elif bank.stroma_estimate is not None:
        stroma = bank.slide_stroma(i).float().cpu().numpy()
    else:
        return None
    mask = np.asarray(bag.tile_mask, bool)
    if len(stroma) != len(mask) or not mask.any():
        return None
    value = float(np.mean(np.asarray(stroma, np.float64)[mask]))
    return value if math.isfinite(value) else None


def bed_stroma_reference(values: Sequence[float | None], min_slides: int | None = None) -> dict[str, Any] | None:
    """The training beds' stroma range and the limits a slide's bed may reach (``None`` with fewer
    than ``min_slides`` measured, :data:`weakstil.qc.morphometry.MIN_SLIDES`)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if len(v) < max(2, MIN_SLIDES if min_slides is None else min_slides):
        return None
    lo, hi = float(v.min()), float(v.max())
    floor = RANGE_FLOOR * (hi - lo) + ABS_FLOOR
    return {"column": STROMA_COLUMN, "training_min": lo, "training_max": hi, "median": float(np.median(v)),
            "n_slides": int(len(v)), "low": lo - floor, "high": hi + floor, "range_floor": RANGE_FLOOR,
            "floor": ABS_FLOOR}


def bed_stroma_outside(value: float | None, reference: dict[str, Any] | None) -> str:
    """Why a bed's stroma share is outside the training beds' range, in words (empty: inside, not
    measured or no reference)."""
    if value is None or not reference or not math.isfinite(value):
        return ""
    lo, hi, med = (100 * float(reference[k]) for k in ("training_min", "training_max", "median"))
    said = (f"stroma (estimated) {100 * value:.1f} % of the bed's tile area (training slides' beds {lo:.1f} to "
            f"{hi:.1f} %, median {med:.1f} %)")
    if value < float(reference["low"]):
        return (f"{said}: a bed of little stroma, less than any the model was checked on; sTIL over (almost) no "
                "stroma is not meaningful: check the bed")
    if value > float(reference["high"]):
        return (f"{said}: a bed of almost only stroma, more than any the model was checked on; few tumour cells: "
                "is there invasive tumour (a bed drawn around benign ducts or lobules?): check the bed")
    return ""
