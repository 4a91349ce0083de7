"""Intervals on a slide's sTIL%, calibrated on the cross-validation's out-of-fold predictions.

A slide's interval is ``t⁻¹(t(ŷ) ± q·σ)`` where

* ``t(y) = log(y + c)`` puts the error on a relative scale: sTIL errors grow with the level (a
  slide at 2 % is rarely off by 10 points, one at 50 % often is), so the interval is
  narrow at low sTIL and wide at high sTIL, and never leaves 0-100 %. The offset ``c`` is chosen
  among :data:`OFFSETS` by the mean interval score of the out-of-fold slides (a proper score of
  width and misses, so the error model that fits best wins; a large ``c``: errors of nearly the
  same size at every level), taking the largest ``c`` within one standard error of the best
  (:func:`_choose_offset`);
* ``σ = sqrt(σ₀² + u²)``: ``σ₀`` is the typical out-of-fold error on that scale (its median
  absolute value) and ``u`` the slide's own uncertainty on it: the standard error of its score
  over its tumour-bed tiles (a block bootstrap in closed form, :func:`tile_standard_error`). A
  slide with few bed tiles or very mixed tile scores gets a wider interval. An error estimated
  from fewer blocks (or tiles) than the calibration slides' median is widened by the ratio of
  Student's ``t`` factors (:func:`relative_small_sample_factor`): the conformal quantile already
  holds how unsure a typical slide's error estimate is, not how unsure a 2-tile bed's is. The
  cross-validation fold models' spread is **not** added (calibration version 2): the out-of-fold residuals the
  scale is calibrated on are errors of those very fold models, so their disagreement is already
  in ``σ₀`` and ``q``; version 1 added it per slide as well (counted twice: intervals 30-40 %
  wider on slides like the training ones), and a version-1 calibration is still scored
  that way (:meth:`Calibration.uncertainty`);
* the scale grows with how far the slide lies from the training cohort, its **shift** ``s >= 0``
  (:mod:`weakstil.qc.shift`: its tile embeddings' distance from the training tiles and its stain's
  distance from the training stain, both relative to a typical training slide measured
  leave-group-out): ``σ·(1 + β·s)``. The out-of-fold slides have a shift too (the
  cross-validation leaves whole centres out, so each was predicted from, and is measured
  against, the other centres); ``β`` is chosen among :data:`SHIFT_WEIGHTS` by the likelihood
  of the out-of-fold residuals under a Laplace scale model, but never below
  :data:`SHIFT_WEIGHT_FLOOR`: a cohort whose centres differ little (all in one look) cannot
  show how the errors grow on slides further away, and then fits ``β = 0``, which leaves
  intervals far too narrow on another lab's slides. Only then is ``q`` set by the conformal
  quantile, so the coverage on slides like the calibration slides does not depend on ``β``.
  This is normalised ("locally weighted") split conformal prediction (Papadopoulos et al.
  2002; Lei et al. 2018 §5.2): a slide unlike the training slides gets a wider interval, a
  typical one a narrower one;
* ``q`` is the split-conformal quantile of the out-of-fold nonconformity scores
  ``|t(y) − t(ŷ)| / σ``: the ``⌈(n+1)·level⌉``-th smallest of ``n``, so that a nominal 90 %
  interval covers at least 90 % of slides exchangeable with the training cohort
  (Vovk et al. 2005; Lei et al. 2018, "Distribution-free predictive inference for regression").

The out-of-fold predictions come from models that never saw the slide (nor its group), so the
calibration is not optimistic. :func:`calibrate` also reports the leave-one-out coverage: each
out-of-fold slide's interval calibrated on the other slides only, an honest estimate of how
often the interval holds on a new slide.

Everything here is numpy on arrays (no files, no torch), so it is tested on toys whose
coverage is known.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from weakstil.tile_error import (BLOCK_TILES, GRID_OFFSETS, MIN_BLOCKS, tile_standard_error,  # noqa: F401
                                 tile_standard_error_df)

#: Nominal coverage of the interval written by ``weakstil score``.
LEVEL = 0.90
#: Candidate offsets ``c`` (sTIL percentage points) of ``t(y) = log(y + c)``.
OFFSETS = (2.0, 5.0, 10.0, 20.0, 50.0, 200.0)
#: Candidate weights ``β`` of the shift term ``σ·(1 + β·s)``.
SHIFT_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
#: Least shift weight ``β``: the scale grows at least 0.6 times as fast as the distance beyond a
#: typical new centre. A prior, not a fit: on our 4-centre single-look training cohort the fit gives 0
#: (its centres differ too little). 0.75 was chosen (2026-12-01) before the shift held the share of
#: unfamiliar tiles, which widened the hard look's intervals further; with it, three models (the quick
#: demo's, 24 and 48 training slides) covered their alt / hard held-out slides 100 / 100, 100 / 96 and
#: 95 / 93 % at 0.75, and 95 / 95, 100 / 92 and 93 / 90 % at 0.6, with a lower interval score on all
#: six (README "How sure is the number?": 0 under-covers them, 1.0 over-covers).
SHIFT_WEIGHT_FLOOR = 0.6
#: What ``calibration.json`` holds: 1 added the fold models' spread to every slide's scale (on top
#: of out-of-fold residuals that already hold it); 2 does not, and floors ``β`` at SHIFT_WEIGHT_FLOOR.
#: (``tile_df_reference``, added later within version 2, is optional: absent, nothing is widened.)
CALIBRATION_VERSION = 2
#: Fewer out-of-fold slides than this: no interval (the calibration would be meaningless).
MIN_SLIDES = 5


def to_scale(stil: np.ndarray | float, offset: float) -> np.ndarray:
    """sTIL% (0-100) onto the relative error scale ``log(y + c)``."""
    return np.log(np.clip(np.asarray(stil, np.float64), 0.0, 100.0) + offset)


def from_scale(t: np.ndarray | float, offset: float) -> np.ndarray:
    """Back from the error scale to sTIL%, clipped to 0-100."""
    return np.clip(np.exp(np.asarray(t, np.float64)) - offset, 0.0, 100.0)


def scale_sd(stil: np.ndarray | float, sd: np.ndarray | float, offset: float) -> np.ndarray:
    """A standard deviation in sTIL points onto the error scale (delta method: ``sd / (y + c)``)."""
    return np.asarray(sd, np.float64) / (np.clip(np.asarray(stil, np.float64), 0.0, 100.0) + offset)


def small_sample_factor(df: float, level: float = LEVEL) -> float:
    """How much wider an interval must be when its standard error is estimated from ``df``
    degrees of freedom: ``t_df / z`` at the two-sided ``level`` (Student 1908). ×3.8 at 1, ×1.22 at
    5, ×1.05 at 20, 1 for no estimate (``df`` NaN or infinite)."""
    if not math.isfinite(df) or df <= 0:
        return 1.0
    # scipy.special's quantile functions, not scipy.stats's distributions (the same numbers: stdtrit is t.ppf,
    # ndtri norm.ppf): scipy.stats took about 0.7 s to import in every `score` and `train` process, special 0.3 s
    from scipy.special import ndtri, stdtrit

    p = 0.5 + level / 2.0
    return float(stdtrit(df, p) / ndtri(p))


def relative_small_sample_factor(df: float, reference: float, level: float = LEVEL) -> float:
    """How much a tile standard error from ``df`` degrees of freedom is widened beyond those of the
    calibration slides (median ``reference``): ``max(1, t_df / t_reference)``; 1 without a
    reference (a calibration written before it) or a ``df``.

    A bed of 2 tiles that happen to agree measured a standard error of 0.24 points, and its
    interval was narrower than a 56-tile slide's (an outside tester, hunt 9c #3): an error
    estimated from one difference is itself mostly noise. Widening every slide by its own
    ``t_df / z`` instead (tried) shrinks the conformal quantile and reshapes the calibration: on
    the 1.2 mm benchmark slides (median 3 degrees of freedom) intervals widened by 30-60 % without
    covering more (``benchmarks/confidence.py``, hard look 78 -> 80 %, width 29.5 -> 48.4)."""
    if not (math.isfinite(reference) and reference > 0 and math.isfinite(df) and df > 0) or df >= reference:
        return 1.0
    return small_sample_factor(df, level) / small_sample_factor(reference, level)


def fold_spread(fold_stils: np.ndarray | list[float] | None, offset: float) -> float:
    """Standard deviation of the fold models' scores of a slide on the error scale (0 for < 2)."""
    if fold_stils is None:
        return 0.0
    t = to_scale(np.asarray(fold_stils, np.float64), offset)
    t = t[np.isfinite(t)]
    return float(np.std(t, ddof=1)) if len(t) >= 2 else 0.0


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The ``⌈(n+1)·level⌉``-th smallest of ``n`` scores (``inf`` when that exceeds ``n``)."""
    s = np.sort(np.asarray(scores, np.float64)[np.isfinite(scores)])
    n = len(s)
    k = int(math.ceil((n + 1) * level))
    if n == 0 or k > n:
        return math.inf
    return float(s[k - 1])


#: Fewer out-of-fold slides than this: ``weakstil train`` warns that the interval's coverage is unsure.
SLIDES_ADVISED = 30


def coverage_spread(n: int, level: float = LEVEL, tail: float = 0.05) -> tuple[float, float]:
    """The ``tail`` and ``1 - tail`` quantiles of the coverage that an interval calibrated on ``n``
    slides has on new slides like them. Split conformal covers at least ``level`` on average over
    calibration sets, but a given set's coverage is ``Beta(k, n + 1 - k)``, ``k = ⌈(n+1)·level⌉``
    (Vovk 2012, "Conditional validity of inductive conformal predictors"; Angelopoulos & Bates
    2021, §3.2): 12 slides at 90 %: 78-100 %; 30: 80-97 %. ``(nan, nan)`` without an interval."""
    k = int(math.ceil((n + 1) * level))
    if n <= 0 or k > n:
        return math.nan, math.nan
    from scipy.special import betaincinv  # beta.ppf without importing scipy.stats (small_sample_factor)

    return float(betaincinv(k, n + 1 - k, tail)), float(betaincinv(k, n + 1 - k, 1.0 - tail))


def _loo_interval_scores(y: np.ndarray, pred: np.ndarray, se: np.ndarray, shift: np.ndarray, level: float,
                         c: float, beta: float) -> np.ndarray | None:
    """Each out-of-fold slide's interval score (Gneiting & Raftery 2007: width plus ``2/α``
    times the distance by which the label falls outside; a proper scoring rule, so the true
    error model wins on average), its interval calibrated without it (``None``: too few
    slides)."""
    alpha = 1.0 - level
    cal = _fit(y, pred, se, level, c, shift, beta)
    u = scale_sd(pred, se, c)
    sig = cal.sigma(u, shift)
    nonconf = np.abs(to_scale(y, c) - to_scale(pred, c)) / sig
    scores = np.empty(len(y))
    for i in range(len(y)):
        q_i = conformal_quantile(np.delete(nonconf, i), level)
        if not math.isfinite(q_i):
            return None
        half = q_i * float(sig[i])
        t = float(to_scale(pred[i], c))
        lo, hi = float(from_scale(t - half, c)), float(from_scale(t + half, c))
        scores[i] = (hi - lo) + 2.0 / alpha * (max(lo - y[i], 0.0) + max(y[i] - hi, 0.0))
    return scores


def _choose_offset(y: np.ndarray, pred: np.ndarray, se: np.ndarray, level: float,
                   offsets: tuple[float, ...]) -> float:
    """The largest offset whose leave-one-out mean interval score is within one standard error
    of the best one's (the middle offset when there are too few slides to compare).

    The "one-standard-error rule" (Breiman et al. 1984; Hastie et al., *Elements of
    Statistical Learning* §7.10): the standard error is that of the per-slide score
    differences to the best offset (paired, as all offsets score the same slides). A large
    ``c`` is the plainer error model (errors of about the same size at every level); a small
    one bets that errors shrink towards 0 % sTIL, a bet a small cohort with few high-sTIL
    slides cannot back up. Taking the best mean alone chose ``c`` = 2 on a 24-slide cohort,
    and its intervals were then ~70 points wide above 30 % and worse on held-out slides of
    every look than with ``c`` = 200."""
    zero = np.zeros_like(pred)
    scores: dict[float, np.ndarray] = {}
    for c in offsets:
        s = _loo_interval_scores(y, pred, se, zero, level, c, 0.0)
        if s is None:
            return float(offsets[len(offsets) // 2])
        scores[float(c)] = s
    best = min(scores, key=lambda c: (float(scores[c].mean()), c))
    n = len(y)
    chosen = best
    for c, s in scores.items():
        diff = s - scores[best]
        sem = float(diff.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        if float(diff.mean()) <= sem + 1e-9 and c > chosen:
            chosen = c
    return float(chosen)


def _choose_shift_weight(y: np.ndarray, pred: np.ndarray, se: np.ndarray, shift: np.ndarray, level: float,
                         c: float, weights: tuple[float, ...]) -> float:
    """The shift weight ``β`` of the largest likelihood of the out-of-fold residuals ``r`` under
    a Laplace scale model ``|r| ~ k·sqrt(σ0² + u²)·(1 + β·s)`` (``k`` profiled out: the mean of
    ``|r|`` over the scale; a robust fit of how the error grows with the shift). Ties: the smaller."""
    resid = np.abs(to_scale(y, c) - to_scale(pred, c))
    base = _fit(y, pred, se, level, c).sigma(scale_sd(pred, se, c))
    best, best_nll = 0.0, math.inf
    for beta in sorted(weights):
        scale = base * (1.0 + beta * shift)
        k = max(float(np.mean(resid / scale)), 1e-12)
        nll = len(resid) * math.log(k) + float(np.log(scale).sum())
        if nll < best_nll - 1e-9:
            best, best_nll = float(beta), nll
    return best


def _fit(y: np.ndarray, pred: np.ndarray, se: np.ndarray, level: float, c: float,
         shift: np.ndarray | None = None, beta: float = 0.0) -> Calibration:
    resid = np.abs(to_scale(y, c) - to_scale(pred, c))
    u = scale_sd(pred, se, c)
    sigma0 = max(float(np.median(resid)) if len(resid) else math.nan, 1e-3)  # a perfect fit: no zero width
    cal = Calibration(level=float(level), offset=float(c), sigma0=sigma0, q=math.inf, n=len(y),
                      coverage_oof=math.nan, coverage_loo=math.nan, width_median=math.nan, shift_weight=float(beta))
    cal.q = conformal_quantile(resid / cal.sigma(u, shift), level)
    return cal


class CalibrationError(ValueError):
    """``calibration.json`` edited or damaged into values no calibration has."""


#: What a calibration's numbers must be: (lowest, highest, lowest allowed itself).
_FIELD_RANGES = {"level": (0.0, 1.0, False), "offset": (0.0, math.inf, False), "sigma0": (0.0, math.inf, False),
                 "q": (0.0, math.inf, True), "n": (0.0, math.inf, True), "shift_weight": (0.0, math.inf, True),
                 "tile_df_reference": (0.0, math.inf, True), "tile_se_grid_offsets": (1.0, 64.0, True)}
#: absent from version-1 files (the others: from older ones)
_OPTIONAL_FIELDS = {"shift_weight", "tile_df_reference", "tile_se_grid_offsets"}
_NULLABLE_FIELDS = {"q", "tile_df_reference"}  #: q null: infinite (too few slides for an interval)


def _check_fields(d: dict[str, Any]) -> None:
    for key, (low, high, low_ok) in _FIELD_RANGES.items():
        if key not in d and key not in _OPTIONAL_FIELDS:
            raise CalibrationError(f"calibration has no '{key}'")
        value = d.get(key)
        if key not in d or (value is None and key in _NULLABLE_FIELDS):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or \
                not (low <= value if low_ok else low < value) or value > high:
            bound = (">= " if low_ok else "> ") + f"{low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
            raise CalibrationError(f"calibration '{key}' is {value!r}; it must be a number {bound}")


@dataclass
class Calibration:
    """What ``weakstil train`` stores to put an interval on a slide's sTIL% (model.json ``confidence``)."""

    level: float  #: nominal coverage
    offset: float  #: ``c`` of ``t(y) = log(y + c)``
    sigma0: float  #: typical out-of-fold error on that scale (median absolute residual)
    q: float  #: conformal quantile of ``|t(y) − t(ŷ)| / σ``
    n: int  #: out-of-fold slides it was calibrated on
    coverage_oof: float  #: share of out-of-fold slides inside their interval (>= level by construction)
    coverage_loo: float  #: the same, each slide's interval calibrated without it (honest)
    width_median: float  #: median interval width (sTIL points) on the out-of-fold slides
    shift_weight: float = 0.0  #: ``β`` of the per-slide scale ``sqrt(σ0² + u²)·(1 + β·shift)``
    shift_weight_fitted: float = math.nan  #: the maximum-likelihood ``β`` (NaN: ``β`` was given)
    #: what a slide's shift is measured against (:func:`weakstil.qc.shift.shift_reference`)
    shift_reference: dict[str, Any] = field(default_factory=dict)
    shift_weight_floor: float = 0.0  #: the least ``β`` allowed when it was fitted
    #: median degrees of freedom of the calibration slides' tile standard errors (NaN: none widened)
    tile_df_reference: float = math.nan
    #: placements of the tile bootstrap's block grid averaged per axis (:func:`tile_standard_error_df`): 1 in
    #: calibrations written before hunt 31 (the grid from the slide's corner), which score that way
    tile_se_grid_offsets: int = 1
    #: 1: the fold models' spread was added to ``u``; 2: ``u`` is the tile standard error only
    version: int = CALIBRATION_VERSION
    method: str = ("normalised split conformal on out-of-fold predictions, log(y + c) scale, per-slide scale "
                   "sqrt(σ0² + u_tiles²)·(1 + β·shift), β = max(fitted, floor); fold spread not added "
                   "(it is in the out-of-fold residuals)")
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, float) and not math.isfinite(v):
                d[k] = None  # JSON has no inf/NaN
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """From ``calibration.json``; one written before the version field is version 1. A newer
        version than this WeakSTIL knows raises ``ValueError`` (its intervals would be wrong)."""
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        _check_fields(known)
        known["version"] = int(d.get("version") or 1)
        known["tile_se_grid_offsets"] = int(known.get("tile_se_grid_offsets") or 1)
        if known["version"] > CALIBRATION_VERSION:
            raise ValueError(f"interval calibration version {known['version']} is newer than this WeakSTIL's "
                             f"({CALIBRATION_VERSION})")
        for k in ("q", "coverage_oof", "coverage_loo", "width_median", "shift_weight_fitted", "tile_df_reference"):
            if known.get(k) is None:
                known[k] = math.inf if k == "q" else math.nan
        return cls(**known)

    @property
    def usable(self) -> bool:
        return math.isfinite(self.q) and self.n >= MIN_SLIDES

    def widened_se(self, tile_se: np.ndarray | float, tile_df: np.ndarray | float) -> np.ndarray:
        """Tile standard errors widened for fewer degrees of freedom than the calibration slides'
        (:func:`relative_small_sample_factor`)."""
        df = np.broadcast_to(np.asarray(tile_df, np.float64), np.shape(tile_se))
        factor = [relative_small_sample_factor(float(d), self.tile_df_reference, self.level) for d in df.ravel()]
        return np.asarray(tile_se, np.float64) * np.reshape(factor, np.shape(tile_se))

    def tile_standard_error(self, tile_scores: np.ndarray, weights: np.ndarray, coords: np.ndarray | None,
                            tile_size_level0: float | None) -> tuple[float, float]:
        """A scored slide's tile standard error and degrees of freedom, as this calibration's slides' were
        measured (its block grid placements)."""
        return tile_standard_error_df(tile_scores, weights, coords, tile_size_level0,
                                      grid_offsets=self.tile_se_grid_offsets)

    def uncertainty(self, stil: float, tile_se: float, fold_stils: np.ndarray | list[float] | None,
                    tile_df: float = math.nan) -> float:
        """``u`` of one scored slide as this calibration was fitted: the tile standard error
        (widened when it has fewer degrees of freedom ``tile_df`` than the calibration slides'),
        alone (version 2), or with the fold models' spread added (version 1, kept for old models)."""
        tile_se = float(self.widened_se(tile_se, tile_df))
        return slide_uncertainty(stil, tile_se, fold_stils if self.version < 2 else None, self.offset)

    def sigma(self, u: np.ndarray | float, shift: np.ndarray | float | None = None) -> np.ndarray:
        u = np.nan_to_num(np.asarray(u, np.float64), nan=0.0)
        base = np.sqrt(self.sigma0 ** 2 + u ** 2)
        if shift is None or not self.shift_weight:
            return base
        s = np.clip(np.nan_to_num(np.asarray(shift, np.float64), nan=0.0), 0.0, None)
        return base * (1.0 + self.shift_weight * s)

    def interval(self, stil: np.ndarray | float, u: np.ndarray | float = 0.0,
                 shift: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` sTIL% for point scores ``stil`` with per-slide uncertainty ``u`` (error
        scale) and shift from the training cohort ``shift`` (:mod:`weakstil.qc.shift`)."""
        t = to_scale(stil, self.offset)
        half = self.q * self.sigma(u, shift)
        return from_scale(t - half, self.offset), from_scale(t + half, self.offset)


def slide_uncertainty(stil: float, tile_se: float, fold_stils: np.ndarray | list[float] | None,
                      offset: float) -> float:
    """``u`` of one slide on the error scale: its tile standard error and the fold models' spread."""
    u_tiles = float(scale_sd(stil, 0.0 if not math.isfinite(tile_se) else tile_se, offset))
    return math.sqrt(u_tiles ** 2 + fold_spread(fold_stils, offset) ** 2)


def calibrate(y: np.ndarray, pred: np.ndarray, tile_se: np.ndarray | None = None, *, level: float = LEVEL,
              offsets: tuple[float, ...] = OFFSETS, offset: float | None = None, shift: np.ndarray | None = None,
              shift_weights: tuple[float, ...] = SHIFT_WEIGHTS, shift_weight: float | None = None,
              shift_weight_floor: float = SHIFT_WEIGHT_FLOOR, tile_df: np.ndarray | None = None) -> Calibration:
    """Calibrate intervals on out-of-fold labels ``y``, predictions ``pred``, each slide's
    tile standard error ``tile_se`` (sTIL points; ``None``: not used) with its degrees of freedom
    ``tile_df`` (``None``: none widened) and its shift from the other centres ``shift``
    (``None``: not used, ``β = 0``). ``shift_weight``: a fixed ``β``; else the fitted one, at
    least ``shift_weight_floor``."""
    y = np.asarray(y, np.float64)
    pred = np.asarray(pred, np.float64)
    ok = np.isfinite(y) & np.isfinite(pred)
    y, pred = y[ok], pred[ok]
    se = np.zeros_like(pred) if tile_se is None else np.nan_to_num(np.asarray(tile_se, np.float64)[ok], nan=0.0)
    sh = (np.zeros_like(pred) if shift is None
          else np.clip(np.nan_to_num(np.asarray(shift, np.float64)[ok], nan=0.0), 0.0, None))
    df_reference = math.nan
    if tile_df is not None:
        dfs = np.asarray(tile_df, np.float64)[ok]
        if np.isfinite(dfs).any():
            df_reference = float(np.median(dfs[np.isfinite(dfs)]))
            se = se * np.array([relative_small_sample_factor(d, df_reference, level) for d in dfs])
    n = len(y)
    c = float(offset) if offset is not None else (_choose_offset(y, pred, se, level, offsets) if n else offsets[0])
    beta_fitted = math.nan
    if shift_weight is not None:
        beta = float(shift_weight)
    elif n and shift is not None:
        beta_fitted = _choose_shift_weight(y, pred, se, sh, level, c, shift_weights)
        beta = max(beta_fitted, float(shift_weight_floor))
    else:
        beta = 0.0
    cal = _fit(y, pred, se, level, c, sh, beta)
    cal.shift_weight_fitted = beta_fitted
    cal.tile_df_reference = df_reference
    cal.shift_weight_floor = float(shift_weight_floor) if shift_weight is None and shift is not None else 0.0
    u = scale_sd(pred, se, c)
    score = np.abs(to_scale(y, c) - to_scale(pred, c)) / cal.sigma(u, sh)
    q = cal.q
    if n and not math.isfinite(q):  # no interval (too few slides): its coverage is not 100 %, it is none
        cal.width_median = math.inf
    elif n:
        lo, hi = cal.interval(pred, u, sh)
        inside = (y >= lo - 1e-9) & (y <= hi + 1e-9)
        cal.coverage_oof = float(inside.mean())
        cal.width_median = float(np.median(hi - lo)) if math.isfinite(q) else math.inf
        # leave-one-out: slide i's interval from the quantile of the other n - 1 slides; none when they
        # are too few for one (9 slides: 8 left), whose "coverage" would be 100 % of unbounded intervals
        q_loo = [conformal_quantile(np.delete(score, i), level) for i in range(n)]
        if all(math.isfinite(q_i) for q_i in q_loo):
            cal.coverage_loo = float(np.mean([score[i] <= q_i for i, q_i in enumerate(q_loo)]))
    return cal


def coverage(y: np.ndarray, low: np.ndarray, high: np.ndarray) -> float:
    """Share of labels inside their interval (NaN intervals are skipped)."""
    y, low, high = (np.asarray(a, np.float64) for a in (y, low, high))
    ok = np.isfinite(y) & np.isfinite(low) & np.isfinite(high)
    return float(((y[ok] >= low[ok]) & (y[ok] <= high[ok])).mean()) if ok.any() else math.nan


def interval_columns(level: float = LEVEL) -> tuple[str, str]:
    """The results.csv columns of the interval at ``level``: ``stil_lower_90``, ``stil_upper_90``
    (not "low"/"high": ``stil_high`` is the sTIL-high call)."""
    pct = f"{100 * level:g}".replace(".", "_")
    return f"stil_lower_{pct}", f"stil_upper_{pct}"
