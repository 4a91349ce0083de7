"""Target sTIL distribution, fitted to TCGA-BRCA pathologist scores.

Summary statistics of 342 pathologist sTIL scores (quantiles at 0, 5, ..., 100 %):
``[1, 1, 1, 1, 5, 5, 5, 5.5, 10, 10, 12.5, 15, 15, 20, 25, 30, 30, 35, 45, 60, 90]``
(median 12.5, 27 % of slides >= 30, 9 % >= 50).  The pathologists' rounding
creates point masses; the sampler uses a smooth, strictly increasing quantile
function through the middle of each tied run (with the 30 % knot placed so that
27 % of draws are >= 30), interpolated monotonically (PCHIP) in log space.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from scipy.interpolate import PchipInterpolator

__all__ = ["TCGA_QUANTILES", "sample_target_stil", "stil_quantile", "stratified_target_stil"]

#: quantiles of the TCGA-BRCA sTIL scores at probabilities 0, 0.05, ..., 1.
TCGA_QUANTILES: tuple[float, ...] = (
    1, 1, 1, 1, 5, 5, 5, 5.5, 10, 10, 12.5, 15, 15, 20, 25, 30, 30, 35, 45, 60, 90,
)

# (probability, sTIL %) knots of the smoothed quantile function
_KNOTS: tuple[tuple[float, float], ...] = (
    (0.0, 0.5),
    (0.075, 1.0),
    (0.25, 5.0),
    (0.35, 5.5),
    (0.425, 10.0),
    (0.5, 12.5),
    (0.575, 15.0),
    (0.65, 20.0),
    (0.70, 25.0),
    (0.73, 30.0),
    (0.85, 35.0),
    (0.90, 45.0),
    (0.95, 60.0),
    (1.0, 90.0),
)


@lru_cache(maxsize=1)
def _interpolator() -> PchipInterpolator:
    p = np.array([k[0] for k in _KNOTS])
    q = np.log(np.array([k[1] for k in _KNOTS]))
    return PchipInterpolator(p, q)


def stil_quantile(u: NDArray[np.floating] | float) -> NDArray[np.float64]:
    """Quantile function of the target distribution (sTIL % for probability u)."""
    uu = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    return np.exp(_interpolator()(uu))


def sample_target_stil(rng: np.random.Generator, size: int | None = None) -> NDArray[np.float64] | float:
    """Draw target sTIL percentages (0.5..90) from the TCGA-like distribution."""
    u = rng.random(size)
    out = stil_quantile(u)
    return float(out) if size is None else out


def stratified_target_stil(rng: np.random.Generator, size: int) -> NDArray[np.float64]:
    """``size`` targets that span the TCGA-like distribution: one draw from each of ``size`` equal
    probability bins, in random order (Latin-hypercube sampling).

    A small cohort drawn independently can miss the upper tail: two of our first three 40-slide
    demo cohorts held a single slide above 36 % (six expected), and a model trained without
    TIL-rich slides is biased low on every one it later scores, beyond anything its out-of-fold
    calibration saw (docs/scoring.md, *How sure is the number?*). Stratified, every bin is drawn: 40 slides
    hold one from the top 2.5 % (60-90 %) and four at 35 % or more.
    """
    if size < 0:
        raise ValueError("size must be >= 0")
    u = (rng.permutation(size) + rng.random(size)) / max(size, 1)
    return stil_quantile(u)
