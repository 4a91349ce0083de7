"""Periodic texture banks (collagen, cytoplasm mottle, pixel noise).

Textures are periodic (FFT-filtered white noise, optionally warped), drawn once
per process from a fixed seed and read through ``window`` at global level-0
coordinates with wrap-around, so blocks of a slide render independently yet agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from numpy.typing import NDArray
__all__ = ["TextureBank", "textures", "FIBRE_ANGLES", "PERIOD", "window"]

F32 = NDArray[np.float32]
PERIOD = 1024
#: orientation of each collagen texture (radians)
FIBRE_ANGLES: tuple[float, ...] = (0.0, np.pi / 3, 2 * np.pi / 3)


@dataclass(frozen=True)
class TextureBank:
    collagen: tuple[F32, ...]  # per angle: zero-mean density modulation (fibres, bundles, clefts)
    mottle: F32  # zero-mean unit-variance cytoplasm texture
    edge: F32  # zero-mean fine texture that roughens region edges
    noise: tuple[F32, F32]  # white noise, unit variance


def _filter(n: NDArray[np.float32], sig_along: float, sig_across: float, angle: float) -> F32:
    f = sfft.rfft2(n)
    ky = sfft.fftfreq(PERIOD).astype(np.float32)[:, None]
    kx = sfft.rfftfreq(PERIOD).astype(np.float32)[None, :]
    ka = kx * np.float32(np.cos(angle)) + ky * np.float32(np.sin(angle))
    kc = kx * np.float32(-np.sin(angle)) + ky * np.float32(np.cos(angle))
    ka *= np.float32(sig_along)
    kc *= np.float32(sig_across)
    ka *= ka
    kc *= kc
    ka += kc
    ka *= np.float32(-2.0 * np.pi**2)
    f *= np.exp(ka)
    out = sfft.irfft2(f, s=(PERIOD, PERIOD)).astype(np.float32)
    out -= out.mean()
    return out / out.std()


def _white(rng: np.random.Generator) -> NDArray[np.float32]:
    return rng.standard_normal((PERIOD, PERIOD)).astype(np.float32)


def _collagen(rng: np.random.Generator, angle: float, warp: F32) -> F32:
    # wavy fibres: sample straight anisotropic noise through a smooth periodic warp
    fib = _filter(_white(rng), 11.0, 0.9, angle)
    bun = _filter(_white(rng), 28.0, 4.5, angle)
    yy, xx = np.ogrid[0:PERIOD, 0:PERIOD]
    # displace (nearest pixel) along the fibre normal (-sin, cos) so fibres undulate
    cy = (yy + np.rint(warp * np.cos(angle)).astype(np.intp)) % PERIOD
    cx = (xx + np.rint(-warp * np.sin(angle)).astype(np.intp)) % PERIOD
    idx = cy * PERIOD + cx
    fib = fib.ravel()[idx]
    bun = bun.ravel()[idx]
    dens = (1.0 + 0.30 * fib) * np.clip(1.0 + 0.55 * bun, 0.08, 1.35)
    dens -= dens.mean()
    return dens.astype(np.float32)


def _collagen_alt(rng: np.random.Generator, angle: float, warp: F32) -> F32:
    # alt look: thicker lamellar bundles with white clefts between them
    fib = _filter(_white(rng), 16.0, 1.4, angle)
    bun = _filter(_white(rng), 45.0, 7.0, angle)
    cleft = _filter(_white(rng), 30.0, 1.8, angle)
    yy, xx = np.ogrid[0:PERIOD, 0:PERIOD]
    cy = (yy + np.rint(warp * np.cos(angle)).astype(np.intp)) % PERIOD
    cx = (xx + np.rint(-warp * np.sin(angle)).astype(np.intp)) % PERIOD
    idx = cy * PERIOD + cx
    fib, bun, cleft = fib.ravel()[idx], bun.ravel()[idx], cleft.ravel()[idx]
    dens = (1.0 + 0.40 * fib) * np.clip(1.0 + 0.7 * bun, 0.05, 1.5) * np.where(cleft > 1.7, 0.15, 1.0)
    dens -= dens.mean()
    return dens.astype(np.float32)


def _alt_textures() -> TextureBank:
    rng = np.random.Generator(np.random.PCG64(20250917))
    warp = 12.0 * _filter(_white(rng), 30.0, 30.0, 0.0)
    collagen = tuple(_collagen_alt(rng, a, warp) for a in FIBRE_ANGLES)
    mottle = _filter(_white(rng), 4.0, 4.0, 0.0)
    edge = _filter(_white(rng), 2.2, 2.2, 0.0)
    # demosaicked sensor noise: spatially correlated over about a pixel
    noise = (_filter(_white(rng), 0.7, 0.7, 0.0), _filter(_white(rng), 0.7, 0.7, 0.0))
    return TextureBank(collagen=collagen, mottle=mottle, edge=edge, noise=noise)


@lru_cache(maxsize=None)
def textures(look: str = "default") -> TextureBank:
    """The texture bank of a look (built once per process)."""
    if look != "default":
        return _alt_textures()
    rng = np.random.Generator(np.random.PCG64(20240611))
    warp = 7.0 * _filter(_white(rng), 26.0, 26.0, 0.0)
    collagen = tuple(_collagen(rng, a, warp) for a in FIBRE_ANGLES)
    mottle = _filter(_white(rng), 2.5, 2.5, 0.0)
    edge = _filter(_white(rng), 1.6, 1.6, 0.0)
    noise = (_white(rng), _white(rng))
    return TextureBank(collagen=collagen, mottle=mottle, edge=edge, noise=noise)


def _segments(start: int, n: int, period: int) -> list[tuple[int, int, int]]:
    """(dst offset, src offset, length) runs covering ``start .. start + n`` mod period."""
    out = []
    done = 0
    while done < n:
        src = (start + done) % period
        ln = min(period - src, n - done)
        out.append((done, src, ln))
        done += ln
    return out


def window(tex: F32, y0: int, x0: int, h: int, w: int, *, out: F32 | None = None) -> F32:
    """The infinitely tiled texture at global window ``[y0:y0+h, x0:x0+w]`` (a copy,
    assembled from contiguous block copies; ``out`` avoids allocating)."""
    if out is None:
        out = np.empty((h, w), tex.dtype)
    for dy, sy, ly in _segments(y0, h, tex.shape[0]):
        for dx, sx, lx in _segments(x0, w, tex.shape[1]):
            out[dy:dy + ly, dx:dx + lx] = tex[sy:sy + ly, sx:sx + lx]
    return out
