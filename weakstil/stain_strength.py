"""A slide's stain strengths that a tissue fold does not set (stain estimate 11; 9 and 10 were reverted).

The strengths (:attr:`weakstil.stain.SlideStain.max_c`) scale every concentration of the slide
(1.0 = a strongly stained pixel of that slide). Up to estimate 8 they were the 99th-percentile H and
E concentrations of all the pixels the estimate reads, pooled. A tissue fold doubles the optical
density over a few per cent of the tissue, so the darkest 1 % of the pooled pixels was all fold and
every concentration was divided by a strength up to twice too high (hunt 45c: og45c_028's
haematoxylin 0.95 -> 1.89, its score 53 -> 16 %, no flag).

Now each tile's own strengths come first (:data:`TILE_PERCENTILE` of its pixels), and the slide's are
a quantile of those over its tiles (:data:`SLIDE_QUANTILE`), times a fixed calibration
(:data:`STRENGTH_SCALE`) that keeps them on estimate 8's scale (the reference strengths and every
trained model assume it). A fold, however dark, holds fewer than 1 - SLIDE_QUANTILE of the
tiles and cannot set the value; and no tile is ever left in or out by a decision, so the value
moves smoothly with which tiles were drawn (leaving dark tiles out, hunts 45f and 45k, made an inked
slide's eosin strength move 27-48 % when 8 % of its tiles were dropped).

Pure numpy: :mod:`weakstil.stain` passes its constants and plane test in (no import cycle).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

#: A tile's strengths: this percentile of its own pixels' H and E concentrations (4 µm blocks, those the
#: Macenko fit reads: stained and in the plane of the stains; about the 4th darkest of a tile's 784). 99: a
#: synthetic disc scanned at 0.85 x exposure (22 tiles read, 9 in the dim copy) moved the H strength 3.7 % (99.5:
#: 1.9 %), the 74 slides without a fold spread wider about estimate 8 (H sd of the log ratio 0.085 against 0.069) ...
TILE_PERCENTILE = 99.5
#: ... and the slide's: this quantile of its tiles' strengths, each tile counted once, by Harrell and Davis's
#: estimator (a weighted mean of all the order statistics, weights smooth in the rank): a plain percentile
#: follows the one tile at its rank: on an inked alt-look slide with a fold a 2 % brighter overview moved the
#: eosin strength 7.0 % (tiles' 99th percentiles; Harrell-Davis 5.5 %, with 99.5th 4.4 %; estimate 8 4.8 %) ...
SLIDE_QUANTILE = 0.70
#: ... times this (H, E): over 74 slides without a fold (hunt 45c 30, 44b 24, in-house 20) the median of
#: estimate 8's pooled 99th percentile over the tile statistic (geometric mean 0.994 / 1.022: the eosin one is
#: pulled up by necrotic slides, whose debris set 8's eosin strength as a fold does; docs/encoders.md, stain estimate 11).
STRENGTH_SCALE = np.array([0.996, 0.970])


def block_mean(tiles: np.ndarray, k: int) -> np.ndarray:
    """uint8 tiles (n, h, w, 3) averaged over ``k`` x ``k`` pixel blocks (a ragged edge dropped), rounded."""
    n, h, w, _ = tiles.shape
    k = max(1, min(k, h, w))
    blocks = tiles[:, :h - h % k, :w - w % k].reshape(n, h // k, k, w // k, k, 3)
    return np.rint(blocks.mean(axis=(2, 4), dtype=np.float32)).astype(np.uint8)


def tile_strengths(blocks: np.ndarray, he: np.ndarray, od_offset: np.ndarray, *, io: float, beta: float,
                   min_pixels: int, in_plane: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(n, 2) each tile's :data:`TILE_PERCENTILE` H and E concentration (unscaled: ``pinv(he)`` of the optical
    density), NaN for a tile without a stained pixel. ``blocks``: (n, h, w, 3) uint8, the pixels the fit read
    tile by tile; densities against ``io`` plus ``od_offset`` (the slide's glass); pixels under ``beta`` in any
    channel and, when at least ``min_pixels`` stay, those ``in_plane`` says are off the stains' plane are not
    counted, as in the fit."""
    n = len(blocks)
    od = -np.log((blocks.reshape(n, -1, 3).astype(np.float64) + 1.0) / io) + np.asarray(od_offset, np.float64)
    keep = ~np.any(od < beta, axis=-1)
    plane = in_plane(od[keep])
    if plane.sum() >= min_pixels:
        keep[keep] = plane
    conc = od @ np.linalg.pinv(np.asarray(he, np.float64)).T
    out = np.full((n, 2), np.nan)
    for i in np.flatnonzero(keep.any(axis=1)):
        out[i] = np.percentile(conc[i][keep[i]], TILE_PERCENTILE, axis=0)
    return out


def slide_strengths(per_tile: np.ndarray) -> np.ndarray | None:
    """(2,) the slide's strengths from :func:`tile_strengths`: their :data:`SLIDE_QUANTILE` over the tiles
    (:func:`harrell_davis`), times :data:`STRENGTH_SCALE`; None without a tile or when not positive."""
    per_tile = np.asarray(per_tile, np.float64)
    per_tile = per_tile[np.isfinite(per_tile).all(axis=1)]
    if not len(per_tile):
        return None
    strengths = harrell_davis(per_tile, SLIDE_QUANTILE) * STRENGTH_SCALE
    return strengths if np.isfinite(strengths).all() and (strengths > 1e-3).all() else None


def harrell_davis(values: np.ndarray, q: float) -> np.ndarray:
    """The Harrell-Davis estimate of the ``q`` quantile of ``values`` (n, ...) along axis 0: the order statistics
    weighted by the Beta(q (n + 1), (1 - q) (n + 1)) mass of each rank's interval (Harrell and Davis 1982)."""
    from scipy.special import betainc

    values = np.sort(np.asarray(values, np.float64), axis=0)
    n = len(values)
    weights = np.diff(betainc(q * (n + 1), (1 - q) * (n + 1), np.arange(n + 1) / n))
    return np.tensordot(weights, values, axes=(0, 0))


def with_tile_strengths(stain, blocks: np.ndarray, **kwargs):
    """``stain`` (a Macenko :class:`~weakstil.stain.SlideStain` fitted on ``blocks``) with the strengths of
    :func:`slide_strengths`; as it is when it is the reference stain or no tile gives strengths.
    ``kwargs``: :func:`tile_strengths`'s."""
    if stain.source != "macenko":
        return stain
    strengths = slide_strengths(tile_strengths(blocks, stain.he, stain.od_offset(), **kwargs))
    return stain if strengths is None else dataclasses.replace(stain, max_c=strengths)
