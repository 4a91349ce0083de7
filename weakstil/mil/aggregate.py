"""Slide sTIL% from tile scores: the one aggregation used by training, evaluation, ensembles and napari.

The TILs Working Group defines stromal TILs as the share of *stroma* area inside the tumour
bed that lymphocytes cover::

    sTIL% = 100 * sum(lymphocyte area in bed stroma) / sum(bed stroma area)

With per-tile sTIL% ``s_t`` (lymphocyte area over stroma area of tile ``t``) and stroma area
``w_t`` this is exactly a stroma-weighted mean over the bed tiles::

    sTIL% = sum_t w_t * s_t / sum_t w_t                     (aggregator "stroma")

so a tile that is 90 % tumour weighs a tenth of a tile that is all stroma. The other
aggregators are kept for comparison and old models:

* ``mean``: the plain mean of the bed tiles' scores (WeakSTIL 2022; biased by construction:
  every tile weighs the same whatever its stroma);
* ``attention``: gated attention, ``softmax(a_t)`` weights learned from slide labels alone.

Everything here works on torch tensors with a leading batch axis (``(..., N)``);
:func:`slide_score` is the numpy entry point for one slide (score files, the napari rescore).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil import settings
from weakstil.mil.config import Aggregator

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: A slide whose bed tiles together hold less stroma than this (in tiles' worth of stroma)
#: falls back to equal weights: its ratio would be noise over almost nothing.
MIN_TOTAL_STROMA = 1e-3


def aggregate(scores: torch.Tensor, mask: torch.Tensor, aggregator: str | Aggregator, *,
              stroma: torch.Tensor | None = None, logits: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Slide sTIL% ``(...,)`` and tile weights ``(..., N)`` (summing to 1 over ``mask``).

    ``scores`` are the tiles' sTIL% (0-100), ``mask`` (bool) the tumour-bed tiles,
    ``stroma`` the tiles' stroma weights in [0, 1] (aggregator ``stroma``), ``logits`` the
    attention logits (aggregator ``attention``). Tiles outside ``mask`` get weight 0; a row
    without any tile gives 0.
    """
    import torch

    agg = Aggregator(aggregator)
    maskf = mask.to(scores.dtype)
    if agg is Aggregator.ATTENTION:
        if logits is None:
            raise ValueError("the attention aggregator needs logits")
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        weights = torch.nan_to_num(weights, nan=0.0)  # a row without any tile
    elif agg is Aggregator.STROMA:
        if stroma is None:
            raise ValueError("the stroma aggregator needs stroma weights")
        w = stroma.to(scores.dtype).clamp_min(0.0) * maskf
        total = w.sum(-1, keepdim=True)
        equal = maskf / maskf.sum(-1, keepdim=True).clamp_min(1.0)
        weights = torch.where(total > MIN_TOTAL_STROMA, w / total.clamp_min(MIN_TOTAL_STROMA), equal)
    else:
        weights = maskf / maskf.sum(-1, keepdim=True).clamp_min(1.0)
    return (weights * scores).sum(-1), weights


def slide_score(tile_scores: Any, stroma_weights: Any = None, bed_mask: Any = None,
                aggregator: str | Aggregator = settings.AGGREGATOR, attention: Any = None
                ) -> tuple[float, np.ndarray]:
    """One slide's sTIL% and its tiles' weights from per-tile arrays (numpy or lists).

    ``tile_scores`` (N,) sTIL% per tile; ``stroma_weights`` (N,) in [0, 1] (needed by
    ``stroma``); ``bed_mask`` (N,) bool, default all tiles; ``attention`` (N,) logits (needed
    by ``attention``). An empty bed gives NaN. This is what a viewer calls to rescore a slide
    after the bed was edited: the same function the model uses.
    """
    import torch

    s = torch.as_tensor(np.asarray(tile_scores, dtype=np.float64))
    mask = torch.ones(s.shape, dtype=torch.bool) if bed_mask is None else \
        torch.as_tensor(np.asarray(bed_mask, dtype=bool))
    if mask.shape != s.shape:
        raise ValueError(f"bed mask has {tuple(mask.shape)} entries for {tuple(s.shape)} tiles")
    if not bool(mask.any()):
        return float("nan"), np.zeros(s.shape, np.float32)
    w = None if stroma_weights is None else torch.as_tensor(np.asarray(stroma_weights, dtype=np.float64))
    a = None if attention is None else torch.as_tensor(np.asarray(attention, dtype=np.float64))
    stil, weights = aggregate(s, mask, aggregator, stroma=w, logits=a)
    return float(stil), weights.numpy().astype(np.float32)


def tile_estimates(tile_scores: Any, stroma_weights: Any, in_score: Any,
                   prior_stroma: float = settings.TILE_PRIOR_STROMA) -> np.ndarray:
    """Each tile's sTIL% as published: its score shrunk towards the slide's by its stroma weight.

    A tile's sTIL% is lymphocyte area over *stroma* area, so a tile with little stroma has little
    evidence for it, and a model trained on slide labels with the stroma-weighted aggregate is
    barely corrected on such a tile (it weighs little in the slide). The estimate is the
    precision-weighted blend ``(w·s + k·m) / (w + k)`` (empirical Bayes, the stroma weight ``w``
    as the tile's evidence, ``k`` the prior's). The prior ``m = Σ s·w/(w+k) / Σ w/(w+k)`` over the
    tiles in the score (``in_score``) is the one that leaves the stroma-weighted slide sTIL%
    exactly as it was, so a viewer's rescore from the published tiles gives the slide's number.
    Without stroma weights (mean and attention models) or with ``k = 0``: the scores as they are.
    """
    s = np.asarray(tile_scores, np.float64)
    if stroma_weights is None or prior_stroma <= 0:
        return s.astype(np.float32)
    w = np.clip(np.asarray(stroma_weights, np.float64), 0.0, None)
    m = np.asarray(in_score, bool)
    r = w / (w + prior_stroma)
    if not m.any() or r[m].sum() <= 0:
        return s.astype(np.float32)
    prior = float((r[m] * s[m]).sum() / r[m].sum())
    return (r * s + (1 - r) * prior).astype(np.float32)
