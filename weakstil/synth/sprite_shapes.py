"""Nucleus sprite shapes: the bank type and the drawing primitives every kind is made of."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = ["N_ANGLES", "SpriteBank"]

F32 = NDArray[np.float32]

#: orientation bins of the elongated kinds (angle = pi * i / N_ANGLES)
N_ANGLES = 16


@dataclass(frozen=True)
class SpriteBank:
    alpha: F32  # (K, S, S) coverage 0..1
    h: F32  # (K, S, S) haematoxylin density (already multiplied by alpha)
    e: F32  # (K, S, S) eosin density (already multiplied by alpha)
    footprint: NDArray[np.bool_]  # (K, S, S) alpha >= 0.5

    @property
    def size(self) -> int:
        return int(self.alpha.shape[1])

    @property
    def half(self) -> int:
        return self.size // 2

    def __len__(self) -> int:
        return int(self.alpha.shape[0])


def _grid(size: int) -> tuple[F32, F32]:
    c = size // 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return y - c, x - c


def _texture(rng: np.random.Generator, size: int, sigma: float) -> F32:
    t = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma)
    s = t.std()
    return t / s if s > 0 else t


def _finish(alpha: list[F32], h: list[F32], e: list[F32]) -> SpriteBank:
    a = np.stack(alpha).astype(np.float32)
    hh = np.stack(h).astype(np.float32) * a
    ee = np.stack(e).astype(np.float32) * a
    return SpriteBank(alpha=a, h=hh, e=ee, footprint=a >= 0.5)


def _round_nuclei(rng: np.random.Generator, n: int, size: int, r_px: tuple[float, float],
                  ratio: tuple[float, float], h_level: tuple[float, float], grain: float,
                  e_level: float) -> SpriteBank:
    y, x = _grid(size)
    al, hl, el = [], [], []
    for _ in range(n):
        r = rng.uniform(*r_px)
        q = rng.uniform(*ratio)
        ang = rng.uniform(0, np.pi)
        u = x * np.cos(ang) + y * np.sin(ang)
        v = -x * np.sin(ang) + y * np.cos(ang)
        rho = np.sqrt((u / q) ** 2 + v**2)
        a = np.clip(r - rho + 0.5, 0.0, 1.0)
        tex = _texture(rng, size, 0.9)
        h = rng.uniform(*h_level) * (1.0 + grain * tex) * (1.0 + 0.08 * np.clip((rho / r) ** 2, 0, 1))
        al.append(a)
        hl.append(np.clip(h, 0.0, None))
        el.append(np.full_like(a, e_level))
    return _finish(al, hl, el)


def _tumor_nuclei(rng: np.random.Generator, n: int, size: int = 39, *, r0_px: tuple[float, float] = (10.0, 15.5),
                  ratio: tuple[float, float] = (1.0, 1.45), hyper_p: float = 0.22,
                  base_h: tuple[float, float] = (0.40, 0.60), rim_h: tuple[float, float] = (0.45, 0.75),
                  nucleoli: tuple[int, ...] = (0, 1, 1, 2)) -> SpriteBank:
    y, x = _grid(size)
    al, hl, el = [], [], []
    for _ in range(n):
        r0 = rng.uniform(*r0_px)  # major radius, px: 10-16 um long axis by default
        q = rng.uniform(*ratio)
        ang = rng.uniform(0, np.pi)
        u = x * np.cos(ang) + y * np.sin(ang)
        v = -x * np.sin(ang) + y * np.cos(ang)
        un = u / q
        rho = np.sqrt(un**2 + v**2)
        phi = np.arctan2(v, un)
        rad = np.ones_like(rho)
        for k in range(2, 6):
            rad += rng.normal(0, 0.055 / (k - 1) ** 0.5) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
        rr = (r0 / q) * rad
        depth = rr - rho  # >0 inside, px
        a = np.clip(depth + 0.5, 0.0, 1.0)
        hyper = rng.random() < hyper_p
        tex = _texture(rng, size, 1.0)
        granules = np.clip(tex - 0.6, 0, None)
        if hyper:
            h = rng.uniform(0.95, 1.25) + 0.25 * tex
        else:
            h = rng.uniform(*base_h) + 0.45 * granules + 0.08 * tex
        rim = np.clip(1.0 - np.abs(depth - 1.2) / 1.4, 0.0, 1.0)
        h = h + rim * rng.uniform(*rim_h)
        e = np.full_like(a, 0.16)
        n_nucleoli = 0 if hyper else int(rng.choice(list(nucleoli)))
        for _k in range(n_nucleoli):
            rn = rng.uniform(1.4, 2.4)
            off_r = rng.uniform(0, 0.45) * r0 / q
            off_a = rng.uniform(0, 2 * np.pi)
            ny_, nx_ = off_r * np.sin(off_a), off_r * np.cos(off_a)
            d = np.sqrt((y - ny_) ** 2 + (x - nx_) ** 2)
            s = np.clip(rn - d + 0.5, 0.0, 1.0)
            h = h + 0.55 * s
            e = e + 0.75 * s
        al.append(a)
        hl.append(np.clip(h, 0.0, None))
        el.append(e)
    return _finish(al, hl, el)


def _spindles(rng: np.random.Generator, per_angle: int, size: int, half_len: tuple[float, float],
              half_wid: tuple[float, float], h_level: tuple[float, float], bend_sd: float = 0.12) -> SpriteBank:
    """Elongated nuclei; sprite index = angle_bin * per_angle + variant."""
    y, x = _grid(size)
    al, hl, el = [], [], []
    for i in range(N_ANGLES):
        base = np.pi * i / N_ANGLES
        for _ in range(per_angle):
            ang = base + rng.normal(0, 0.05)
            L = rng.uniform(*half_len)
            W = rng.uniform(*half_wid)
            bend = rng.normal(0, bend_sd) * L
            u = x * np.cos(ang) + y * np.sin(ang)
            v = -x * np.sin(ang) + y * np.cos(ang)
            t = np.clip(u / L, -1.0, 1.0)
            v = v - bend * (1.0 - t**2)
            width = W * np.sqrt(np.clip(1.0 - (u / L) ** 2, 0.0, 1.0)) ** 0.7
            a = np.clip(width - np.abs(v) + 0.5, 0.0, 1.0) * (np.abs(u) <= L + 0.5)
            tex = _texture(rng, size, 0.8)
            h = rng.uniform(*h_level) * (1.0 + 0.12 * tex)
            al.append(a.astype(np.float32))
            hl.append(np.clip(h, 0.0, None))
            el.append(np.full_like(a, 0.12))
    return _finish(al, hl, el)


def _debris(rng: np.random.Generator, n: int, size: int = 9) -> SpriteBank:
    y, x = _grid(size)
    al, hl, el = [], [], []
    for _ in range(n):
        r = rng.uniform(0.8, 3.0)
        q = rng.uniform(1.0, 2.0)
        ang = rng.uniform(0, np.pi)
        u = x * np.cos(ang) + y * np.sin(ang)
        v = -x * np.sin(ang) + y * np.cos(ang)
        a = np.clip(r - np.sqrt((u / q) ** 2 + v**2) + 0.5, 0.0, 1.0)
        al.append(a)
        hl.append(np.full_like(a, rng.uniform(0.1, 0.5)))
        el.append(np.full_like(a, rng.uniform(0.2, 0.6)))
    return _finish(al, hl, el)
