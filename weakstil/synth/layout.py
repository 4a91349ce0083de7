"""Region layout on the mask grid (MASK_MPP µm per pixel).

Every region label is decided here, on the coarse grid; level 0 is its exact
nearest-neighbour upsampling, so the saved masks are the full-resolution truth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .constants import BACKGROUND, DUCT, FAT, LUMEN, MASK_MPP, STROMA, TUMOR
from .fields import smooth_field
from .style import LayoutParams

__all__ = ["Layout", "generate_layout"]

logger = logging.getLogger(__name__)


@dataclass
class Layout:
    regions: NDArray[np.uint8]  # region code per mask pixel
    bed: NDArray[np.bool_]  # tumour bed per mask pixel

    @property
    def shape(self) -> tuple[int, int]:
        return self.regions.shape  # type: ignore[return-value]

    def mask(self, code: int) -> NDArray[np.bool_]:
        return self.regions == code

    @property
    def tissue(self) -> NDArray[np.bool_]:
        return self.regions != BACKGROUND

    @property
    def bed_stroma(self) -> NDArray[np.bool_]:
        return self.bed & (self.regions == STROMA)


def _um(um: float) -> float:
    """µm to mask pixels."""
    return um / MASK_MPP


def _threshold_fraction(field: NDArray[np.float32], where: NDArray[np.bool_], fraction: float) -> float:
    vals = field[where]
    if vals.size == 0:
        return float("inf")
    k = int(np.clip(round((1.0 - fraction) * vals.size), 0, vals.size - 1))
    return float(np.partition(vals, k)[k])


def _remove_small(mask: NDArray[np.bool_], min_px: float, *, keep_rel: float = 0.0) -> NDArray[np.bool_]:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes >= max(min_px, keep_rel * sizes.max())
    keep[0] = False
    return keep[lab]


def _fill_small_holes(mask: NDArray[np.bool_], max_px: float) -> NDArray[np.bool_]:
    holes = ~mask
    lab, n = ndimage.label(holes)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    fill = sizes <= max_px
    fill[0] = False
    fill[border] = False
    return mask | fill[lab]


def _bump(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float, angle: float) -> NDArray[np.float32]:
    h, w = shape
    y = (np.arange(h, dtype=np.float32) - cy)[:, None]
    x = (np.arange(w, dtype=np.float32) - cx)[None, :]
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = (x * ca + y * sa) / np.float32(rx)
    v = (-x * sa + y * ca) / np.float32(ry)
    return np.exp(-0.5 * (u * u + v * v)).astype(np.float32)


def _tissue(rng: np.random.Generator, shape: tuple[int, int], p: LayoutParams) -> NDArray[np.bool_]:
    h, w = shape
    field = np.zeros(shape, np.float32)
    centres = rng.uniform(0.3, 0.7, (p.n_tissue_blobs, 2))
    if p.n_tissue_blobs == 2:
        centres[0] = rng.uniform(0.25, 0.45, 2)
        centres[1] = rng.uniform(0.55, 0.75, 2)
        if rng.random() < 0.5:
            centres[:, 0] = centres[::-1, 0]
    for cy, cx in centres:
        s = 0.30 if p.n_tissue_blobs == 1 else 0.22
        field = np.maximum(
            field,
            _bump(shape, cy * h, cx * w, rng.uniform(0.8, 1.2) * s * h, rng.uniform(0.8, 1.2) * s * w,
                  rng.uniform(0, np.pi)),
        )
    field += 0.22 * smooth_field(rng, shape, max(h, w) / 5.0)
    field += 0.10 * smooth_field(rng, shape, max(h, w) / 14.0)
    field += 0.04 * smooth_field(rng, shape, _um(60.0), octaves=2)
    # discourage tissue touching the slide edge
    ey = np.minimum(np.arange(h), np.arange(h)[::-1]).astype(np.float32)
    ex = np.minimum(np.arange(w), np.arange(w)[::-1]).astype(np.float32)
    edge = np.minimum(ey[:, None] / (0.08 * h), ex[None, :] / (0.08 * w))
    field -= 0.8 * np.clip(1.0 - edge, 0.0, 1.0)
    thr = _threshold_fraction(field, np.ones(shape, bool), p.tissue_fraction)
    tissue = field > thr
    tissue = _remove_small(tissue, 0.002 * h * w)
    return _fill_small_holes(tissue, 0.0005 * h * w)


def _bed(rng: np.random.Generator, tissue: NDArray[np.bool_], p: LayoutParams) -> NDArray[np.bool_]:
    h, w = tissue.shape
    # choose a centre deep inside the tissue (distance on a coarse copy)
    step = max(1, min(h, w) // 128)
    dist = ndimage.distance_transform_edt(tissue[::step, ::step])
    wts = dist.ravel() ** 2
    idx = int(rng.choice(wts.size, p=wts / wts.sum()))
    cy, cx = (np.array(np.unravel_index(idx, dist.shape)) + 0.5) * step
    area = p.bed_fraction * float(tissue.sum())
    r = np.sqrt(area / np.pi)
    ratio = rng.uniform(0.75, 1.33)
    field = _bump(tissue.shape, cy, cx, 1.15 * r * ratio, 1.15 * r / ratio, rng.uniform(0, np.pi))
    field += 0.18 * smooth_field(rng, tissue.shape, r / 1.5)
    field += 0.04 * smooth_field(rng, tissue.shape, _um(80.0), octaves=2)
    thr = _threshold_fraction(field, tissue, p.bed_fraction)
    bed = tissue & (field > thr)
    return _remove_small(bed, min(_um(200.0) ** 2, 0.2 * bed.sum()), keep_rel=0.1)


def _nests(rng: np.random.Generator, bed: NDArray[np.bool_], p: LayoutParams) -> NDArray[np.bool_]:
    field = smooth_field(rng, bed.shape, _um(p.nest_scale_um), octaves=2)
    d_in = ndimage.distance_transform_edt(bed).astype(np.float32)
    field -= 2.0 * np.clip(1.0 - d_in / _um(40.0), 0.0, 1.0)
    thr = _threshold_fraction(field, bed, p.nest_fraction)
    nests = bed & (field > thr)
    return _remove_small(nests, _um(18.0) ** 2)


def _draw_ducts(rng: np.random.Generator, regions: NDArray[np.uint8], allowed: NDArray[np.bool_],
                p: LayoutParams) -> None:
    h, w = regions.shape
    area_mm2 = float(allowed.sum()) * (MASK_MPP / 1000.0) ** 2
    n = int(rng.poisson(p.duct_per_mm2 * area_mm2))
    if n == 0:
        return
    ys, xs = np.nonzero(allowed)
    for _ in range(n):
        k = int(rng.integers(ys.size))
        cy, cx = float(ys[k]), float(xs[k])
        if rng.random() < 0.6:  # lobule: a cluster of small acini
            n_ac = int(rng.integers(5, 13))
            spread = _um(rng.uniform(70.0, 140.0))
            parts = [(cy + rng.normal(0, spread / 2), cx + rng.normal(0, spread / 2),
                      _um(rng.uniform(28.0, 48.0)), rng.uniform(0.7, 1.0), _um(rng.uniform(14.0, 18.0)))
                     for _ in range(n_ac)]
        else:  # a single larger duct
            parts = [(cy, cx, _um(rng.uniform(60.0, 120.0)), rng.uniform(0.5, 0.9), _um(rng.uniform(16.0, 22.0)))]
        for py, px, a, ratio, t in parts:
            b = a * ratio
            ang = rng.uniform(0, np.pi)
            rr = int(np.ceil(a * 1.35)) + 2
            y0, y1 = int(py) - rr, int(py) + rr + 1
            x0, x1 = int(px) - rr, int(px) + rr + 1
            if y0 < 0 or x0 < 0 or y1 > h or x1 > w:
                continue
            yy = np.arange(y0, y1, dtype=np.float32)[:, None] - py
            xx = np.arange(x0, x1, dtype=np.float32)[None, :] - px
            u = xx * np.cos(ang) + yy * np.sin(ang)
            v = -xx * np.sin(ang) + yy * np.cos(ang)
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            win_allowed = allowed[y0:y1, x0:x1]
            if not win_allowed[rho <= 1.3].all():
                continue
            outer = rho <= 1.0
            ai, bi = max(a - t, 0.8), max(b - t, 0.8)
            inner = np.sqrt((u / ai) ** 2 + (v / bi) ** 2) <= 1.0
            win = regions[y0:y1, x0:x1]
            win[outer & ~inner] = DUCT
            win[inner] = LUMEN
            allowed[y0:y1, x0:x1] &= ~(rho <= 1.3)


def generate_layout(rng: np.random.Generator, shape: tuple[int, int], p: LayoutParams) -> Layout:
    """Draw the region map and tumour bed for a slide whose mask grid is ``shape``."""
    tissue = _tissue(rng, shape, p)
    bed = _bed(rng, tissue, p)
    nests = _nests(rng, bed, p)
    regions = np.where(tissue, np.uint8(STROMA), np.uint8(BACKGROUND)).astype(np.uint8)
    regions[nests] = TUMOR
    fat_field = smooth_field(rng, shape, _um(220.0), octaves=2)
    outside = tissue & ~bed
    if p.fat_fraction_outside > 0 and outside.any():
        thr = _threshold_fraction(fat_field, outside, p.fat_fraction_outside)
        regions[outside & (fat_field > thr)] = FAT
    if p.fat_fraction_bed > 0:
        bed_stroma = bed & ~nests
        thr = _threshold_fraction(fat_field, bed, p.fat_fraction_bed)
        regions[bed_stroma & (fat_field > thr)] = FAT
    allowed = outside & (regions == STROMA)
    _draw_ducts(rng, regions, allowed, p)
    logger.debug(
        "layout %s: tissue %.2f bed %.2f nests/bed %.2f", shape, tissue.mean(), bed.mean() / max(tissue.mean(), 1e-9),
        (regions[bed] == TUMOR).mean() if bed.any() else 0.0,
    )
    return Layout(regions=regions, bed=bed)
