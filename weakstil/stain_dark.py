"""Tiles too dark for their slide, left out of the slide's stain estimate (stain estimate 9).

The slide's stain strengths (:attr:`weakstil.stain.SlideStain.max_c`) are 99th-percentile
concentrations of the pixels read, so whatever holds the darkest 1 % of them decides every
concentration on the slide. A tissue fold (a doubled layer: twice the optical density, both
stains) over a few per cent of the tissue holds them all: on hunt 45c's outside cohort a fold over
4-9 % of the tissue moved the haematoxylin strength by up to x2.00 (og45c_028: 0.95 -> 1.89) and the
score by up to 37 points, with no flag.

:func:`dark_tiles` marks the tiles whose darker part (the :data:`DARK_QUANTILE` of the summed H and
E concentrations of their stained 4 µm blocks) exceeds :data:`DARK_RATIO` x that of the slide's
:data:`DARK_ANCHOR` percentile tile; :func:`without_dark_tiles` also leaves out their neighbours darker
than that tile (a fold's edge) and refits the estimate on the rest. The test is relative to the slide
itself, so a slide dark everywhere (a thick section, a dense cellular tumour) leaves nothing out and
keeps its strengths; it is anchored on the slide's darker tiles, not the median, so dense tumour or
lymphocyte tiles among pale stroma and fat are mostly kept; and it reads a tile's 90th percentile, not
its darkest pixels, so a few dense nuclei do not mark a tile.

Measured (hunt 45f): on hunt 45c's 11 fold slides the strengths move x0.93-1.02 (H) and x1.00-1.03 (E;
one slide x1.55) with the fold, against x1.06-2.00 / x1.06-1.94 with estimate 8. On 20 in-house
synthetic slides (``weakstil synth --stratified --seed 0``, 1.5 mm) 16 estimates are unchanged and 4
lose 2-6 % of their H strength. Not free on another look: on 5 of the 11 fold slides' copies without
a fold (the eosin-heavy ``warm`` look, with necrosis) a few very dark eosin tiles are left out too and
their E strength falls x0.64-0.74; on 13 of hunt 44b's 24 TIFF slides (no folds) H falls x0.84-0.97 (one x0.62).
OOF R² did not fall on any of the three cohorts (45c 0.439 -> 0.888, 44b 0.974 -> 0.975, in-house 0.938 -> 0.941).
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

#: Per tile, this quantile of its stained blocks' summed H and E concentrations (unscaled) ...
DARK_QUANTILE = 90.0
#: ... above this many times that of the slide's tile at this percentile: a fold doubles it
#: (hunt 45c: x1.3 on the 75th percentile tile; x1.4 let partly folded tiles keep the eosin strength
#: x1.6 up on 2 of 11 fold slides, the median tile x1.6 marked more tumour tiles on in-house slides).
DARK_RATIO = 1.3
DARK_ANCHOR = 75.0
#: A tile with fewer stained blocks than this (glass, fat) is never marked.
DARK_MIN_BLOCKS = 10
#: Tiles are left out only when at most this share of them is dark (more: the slide is dark) ...
DARK_MAX_SHARE = 0.25
#: ... and at least this many are read (a median of fewer tells little).
DARK_MIN_TILES = 8


def block_mean(tiles: np.ndarray, k: int) -> np.ndarray:
    """uint8 tiles (n, h, w, 3) averaged over ``k`` x ``k`` pixel blocks (a ragged edge dropped), rounded."""
    n, h, w, _ = tiles.shape
    k = max(1, min(k, h, w))
    blocks = tiles[:, :h - h % k, :w - w % k].reshape(n, h // k, k, w // k, k, 3)
    return np.rint(blocks.mean(axis=(2, 4), dtype=np.float32)).astype(np.uint8)


def dark_tiles(blocks: np.ndarray, stain, *, io: float, beta: float, with_above: bool = False):
    """Which tiles (``blocks``: uint8 (n, h, w, 3), the tiles' block means) are too dark for their
    slide under its first estimate ``stain`` (:class:`~weakstil.stain.SlideStain`; optical densities
    against ``io``, blocks under ``beta`` in a channel unstained): see the module.
    None marked when fewer than :data:`DARK_MIN_TILES` tiles or more than :data:`DARK_MAX_SHARE` of them would be.
    ``with_above``: also which tiles are darker than the anchor tile (a pair of arrays)."""
    blocks = np.asarray(blocks)
    n = len(blocks)
    if n < DARK_MIN_TILES or blocks.ndim != 4:
        return (np.zeros(n, bool),) * 2 if with_above else np.zeros(n, bool)
    od = -np.log((blocks.reshape(n, -1, 3).astype(np.float64) + 1.0) / io) + stain.od_offset()
    total = (od @ np.linalg.pinv(stain.he).T).sum(-1)  # unscaled H + E: the ratio does not need max_c
    stained = ~np.any(od < beta, axis=-1)
    enough = stained.sum(1) >= DARK_MIN_BLOCKS
    if enough.sum() < DARK_MIN_TILES:
        return (np.zeros(n, bool),) * 2 if with_above else np.zeros(n, bool)
    level = np.zeros(n)
    level[enough] = np.nanpercentile(np.where(stained, total, np.nan)[enough], DARK_QUANTILE, axis=1)
    anchor = float(np.percentile(level[enough], DARK_ANCHOR))
    if not anchor > 0:
        return (np.zeros(n, bool),) * 2 if with_above else np.zeros(n, bool)
    dark = level > DARK_RATIO * anchor
    dark = dark if dark.sum() <= DARK_MAX_SHARE * n else np.zeros(n, bool)
    return (dark, level > anchor) if with_above else dark


def without_dark_tiles(blocks: np.ndarray, stain, fit, *, io: float, beta: float,
                       coords: np.ndarray | None = None, step: float = 0.0):
    """``stain`` (``fit(blocks)``: :func:`weakstil.stain.estimate_stain`) fitted again without the
    :func:`dark_tiles`, and without the tiles next to one (``coords``: the tiles' corners, ``step``
    apart) that are darker than the slide's :data:`DARK_ANCHOR` percentile tile: a fold is one piece,
    and the tile its edge crosses holds a share of it too small to mark but dark enough to set the
    99th percentiles. ``stain`` itself when none is dark or it is the reference."""
    if stain.source != "macenko":
        return stain
    dark, above = dark_tiles(blocks, stain, io=io, beta=beta, with_above=True)
    if not dark.any():
        return stain
    if coords is not None and step > 0:
        cells = np.rint(np.asarray(coords, np.float64) / step).astype(np.int64)
        marked = {tuple(c) for c in cells[dark]}
        near = np.array([any((c[0] + i, c[1] + j) in marked for i in (-1, 0, 1) for j in (-1, 0, 1)) for c in cells])
        dark = dark | (near & above)
    refit = fit(blocks[~dark])
    log.debug("stain: %d of %d tiles too dark for the slide left out (fold?); strengths %s -> %s",
              int(dark.sum()), len(dark), np.round(stain.max_c, 3), np.round(refit.max_c, 3))
    return refit if refit.source == "macenko" else stain
