"""Smooth collagen-fibre orientation field, shared by fibroblasts and textures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .fields import resample_bilinear, smooth_field
from .textures import FIBRE_ANGLES

__all__ = ["OrientationField"]

F32 = NDArray[np.float32]


@dataclass(frozen=True)
class OrientationField:
    """Orientation (mod pi) stored as (cos 2θ, sin 2θ) on a coarse grid."""

    c2: F32
    s2: F32
    cell: int  # level-0 px per coarse pixel

    @classmethod
    def random(cls, rng: np.random.Generator, width: int, height: int, cell: int = 128,
               scale_px: float = 500.0) -> OrientationField:
        shape = (int(np.ceil(height / cell)) + 2, int(np.ceil(width / cell)) + 2)
        c = max(scale_px / cell, 1.5)
        gx = smooth_field(rng, shape, c)
        gy = smooth_field(rng, shape, c)
        theta = np.arctan2(gy, gx)
        return cls(c2=np.cos(2 * theta).astype(np.float32), s2=np.sin(2 * theta).astype(np.float32), cell=cell)

    def _coords(self, v: NDArray) -> NDArray[np.float64]:
        return (np.asarray(v, dtype=np.float64) + 0.5) / self.cell - 0.5

    def theta_at(self, y: NDArray, x: NDArray) -> F32:
        """Orientation (radians, 0..pi) at level-0 points."""
        yc, xc = self._coords(y), self._coords(x)
        y0 = np.clip(np.round(yc).astype(np.intp), 0, self.c2.shape[0] - 1)
        x0 = np.clip(np.round(xc).astype(np.intp), 0, self.c2.shape[1] - 1)
        th = 0.5 * np.arctan2(self.s2[y0, x0], self.c2[y0, x0])
        return np.mod(th, np.pi).astype(np.float32)

    def texture_weights(self, ys: NDArray, xs: NDArray, power: float = 3.0) -> F32:
        """Blend weights (len(FIBRE_ANGLES), len(ys), len(xs)) on a level-0 sub-grid."""
        yc, xc = self._coords(ys), self._coords(xs)
        c2 = resample_bilinear(self.c2, yc, xc)
        s2 = resample_bilinear(self.s2, yc, xc)
        norm = np.sqrt(c2 * c2 + s2 * s2) + 1e-6
        c2 /= norm
        s2 /= norm
        w = np.stack([
            ((1.0 + c2 * np.float32(np.cos(2 * a)) + s2 * np.float32(np.sin(2 * a))) * 0.5) ** power
            for a in FIBRE_ANGLES
        ])
        w /= w.sum(axis=0, keepdims=True)
        return w.astype(np.float32)
