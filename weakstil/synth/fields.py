"""Smooth random fields and block-consistent resampling helpers."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = [
    "bilinear_axis_weights",
    "crop_clamped",
    "resample_bilinear",
    "smooth_field",
    "upsample_block",
    "upsample_margin",
]

F32 = NDArray[np.float32]


def crop_clamped(a: NDArray, y0: int, y1: int, x0: int, x1: int) -> NDArray:
    """``a[y0:y1, x0:x1]`` where out-of-range indices repeat the edge values."""
    h, w = a.shape[:2]
    if 0 <= y0 and y1 <= h and 0 <= x0 and x1 <= w:
        return a[y0:y1, x0:x1]
    rows = np.clip(np.arange(y0, y1), 0, h - 1)
    cols = np.clip(np.arange(x0, x1), 0, w - 1)
    return a[np.ix_(rows, cols)]


def bilinear_axis_weights(coords: NDArray[np.float64], n: int) -> tuple[NDArray[np.intp], NDArray[np.intp], F32]:
    """Lower/upper source indices and the upper weight for sample coordinates."""
    c = np.clip(coords, 0.0, n - 1)
    lo = np.floor(c).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    f = (c - lo).astype(np.float32)
    return lo, hi, f


def resample_bilinear(src: NDArray, ys: NDArray[np.float64], xs: NDArray[np.float64]) -> F32:
    """Sample ``src`` bilinearly at the grid ``ys x xs`` (source pixel-centre coordinates)."""
    src = np.asarray(src, dtype=np.float32)
    ylo, yhi, fy = bilinear_axis_weights(ys, src.shape[0])
    xlo, xhi, fx = bilinear_axis_weights(xs, src.shape[1])
    rows = src[ylo] * (1.0 - fy)[:, None] + src[yhi] * fy[:, None]
    out = rows[:, xlo]
    out *= (1.0 - fx)[None, :]
    out += rows[:, xhi] * fx[None, :]
    return out


def upsample_block(lr: NDArray, ly0: int, ly1: int, lx0: int, lx1: int, factor: int, *, linear: bool = True) -> F32:
    """Upsample the mask-grid window ``[ly0:ly1, lx0:lx1]`` by ``factor``.

    Linear mode interpolates between mask-pixel centres using one extra mask pixel
    on each side, so neighbouring blocks agree exactly; nearest mode repeats.
    """
    if not linear:
        c = crop_clamped(lr, ly0, ly1, lx0, lx1)
        return np.repeat(np.repeat(np.asarray(c, dtype=np.float32), factor, 0), factor, 1)
    c = crop_clamped(lr, ly0 - 1, ly1 + 1, lx0 - 1, lx1 + 1)
    off = (np.arange(factor) + 0.5) / factor - 0.5
    ys = (np.arange(ly0, ly1)[:, None] + off[None, :]).ravel() - (ly0 - 1)
    xs = (np.arange(lx0, lx1)[:, None] + off[None, :]).ravel() - (lx0 - 1)
    return resample_bilinear(c, ys, xs)


def upsample_margin(c: NDArray, factor: int, *, out: F32 | None = None, tmp: F32 | None = None) -> F32:
    """Bilinear x``factor`` upsampling of the inner part of ``c`` (1-pixel margin).

    Output pixel ``j`` of inner cell ``i`` samples source coordinate
    ``i + (j + 0.5) / factor - 0.5`` (pixel-centre convention), so windows cut
    from one large map agree exactly with the upsampled large map.  The large
    second pass is one broadcast multiply-add per half of each ``factor``-row
    block; ``out`` (shape ``(n * factor, m * factor)``) avoids allocating
    (``tmp`` is accepted for compatibility and no longer used).
    """
    c = np.asarray(c, dtype=np.float32)
    n, m = c.shape[0] - 2, c.shape[1] - 2
    if factor % 2:
        raise ValueError("factor must be even")
    off = ((np.arange(factor) + 0.5) / factor - 0.5).astype(np.float32)
    xs = (np.arange(1, m + 1)[:, None] + off[None, :]).ravel()
    xlo, xhi, fx = bilinear_axis_weights(xs, m + 2)
    h = factor // 2
    cols = _upsample_cols(c, xlo, xhi, fx, factor, h)  # (n + 2, m * factor)
    # output row r = i * factor + j reads source rows k and k + 1 (margin-relative) with
    # k = i for j < h and k = i + 1 for j >= h; the weight of row k + 1 is wpat[j]
    wpat = np.concatenate([1.0 + off[:h], off[h:]]).astype(np.float32)[:, None]
    diff = np.diff(cols, axis=0)  # (n + 1, m * factor)
    shape = (n * factor, m * factor)
    if out is None:
        out = np.empty(shape, np.float32)
    if out.shape != shape:
        raise ValueError(f"upsample_margin: out has shape {out.shape}, expected {shape}")
    dst = out if out.flags.c_contiguous else np.empty(shape, np.float32)
    # broadcast over the (n, factor) row blocks instead of gathering rows (same float32 ops)
    o4 = dst.reshape(n, factor, m * factor)
    lo, hi = o4[:, :h], o4[:, h:]
    np.multiply(diff[:n, None, :], wpat[None, :h], out=lo)
    np.multiply(diff[1:, None, :], wpat[None, h:], out=hi)
    lo += cols[:n, None, :]
    hi += cols[1:n + 1, None, :]
    if dst is not out:
        out[...] = dst
    return out


def _upsample_cols(c: F32, xlo: NDArray[np.intp], xhi: NDArray[np.intp], fx: F32, factor: int, h: int) -> F32:
    """``c[:, xlo] * (1 - fx) + c[:, xhi] * fx`` (same float32 operations), by broadcasting.

    Output column ``i * factor + j`` reads source columns ``i + s`` and ``i + s + 1`` with
    ``s = 0`` for ``j < h`` and ``1`` otherwise, with a weight that depends on ``j`` only; the
    gathers are used only if the indices do not follow that pattern.
    """
    m = c.shape[1] - 2
    if m <= 0:
        return c[:, xlo] * (1.0 - fx)[None, :] + c[:, xhi] * fx[None, :]
    base = np.repeat(np.arange(m), factor).reshape(m, factor) + (np.arange(factor) >= h)
    fxm = fx.reshape(m, factor)
    if not (np.array_equal(xlo.reshape(m, factor), base) and np.array_equal(xhi.reshape(m, factor), base + 1)
            and (fxm == fxm[:1]).all()):
        return c[:, xlo] * (1.0 - fx)[None, :] + c[:, xhi] * fx[None, :]
    wf = fxm[0]
    wl = 1.0 - wf
    cols = np.empty((c.shape[0], m, factor), np.float32)
    tmp = np.empty((c.shape[0], m), np.float32)
    for j in range(factor):
        s = int(j >= h)
        cj = cols[:, :, j]
        np.multiply(c[:, s:s + m], wl[j], out=cj)
        np.multiply(c[:, s + 1:s + m + 1], wf[j], out=tmp)
        cj += tmp
    return cols.reshape(c.shape[0], m * factor)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cell: float, *, octaves: int = 1) -> F32:
    """Zero-mean, unit-variance smooth noise with correlation length ~``cell`` px.

    White noise is drawn on a grid ``cell`` times coarser than ``shape``,
    Gaussian-filtered and bilinearly interpolated, so the cost is independent of
    the output resolution's fine scale.  Extra octaves add half-size detail.
    """
    h, w = shape
    out = np.zeros(shape, np.float32)
    amp = 1.0
    c = float(cell)
    for _ in range(max(1, octaves)):
        gh = int(np.ceil(h / c)) + 4
        gw = int(np.ceil(w / c)) + 4
        g = ndimage.gaussian_filter(rng.standard_normal((gh, gw)), 0.8, mode="wrap")
        ys = (np.arange(h) + 0.5) / c + 1.5
        xs = (np.arange(w) + 0.5) / c + 1.5
        f = resample_bilinear(g, ys, xs)
        f -= f.mean()
        s = f.std()
        out += amp * (f / s if s > 0 else f)
        amp *= 0.5
        c = max(c / 2.0, 1.0)
    out -= out.mean()
    s = out.std()
    return out / s if s > 0 else out
