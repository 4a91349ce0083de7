"""Region-level confounders of ``--hard`` on the mask grid: necrosis inside the bed, lymphoid
structures and DCIS ducts outside it.

* Necrosis (``NECROSIS``) replaces the core of tumour nests inside the bed, leaving a viable
  rim: it is neither tumour nor stroma, so it leaves the sTIL denominator.
* Tertiary lymphoid structures (some with a germinal centre) sit in tissue outside the bed, at
  least 80 µm from it; a lymph-node-like fragment (capsule, subcapsular sinus, follicles with
  germinal centres) lies beside the tissue, or in tissue far from the bed. Their area is stroma
  (it is connective tissue, full of lymphocytes) and outside the bed, so it never counts; it is
  recorded in the ``lymphoid`` mask.
* DCIS-like ducts outside the bed: a duct filled with tumour-like cells (``DCIS``) inside a
  myoepithelial layer (``DUCT``), some with comedo necrosis or cribriform lumina.

Normal lobules are the generator's own ducts, drawn denser through ``LayoutParams.duct_per_mm2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .constants import BACKGROUND, DCIS, DUCT, FAT, LUMEN, MASK_MPP, NECROSIS, STROMA, TUMOR
from .fields import smooth_field
from .hard import Confounders
from .layout import Layout, _remove_small, _threshold_fraction

__all__ = ["HardLayout", "add_hard_regions"]

B = NDArray[np.bool_]


@dataclass
class HardLayout:
    lymphoid: B  # lymphoid structures outside the bed (TLS, lymph-node-like region)
    germinal: B  # germinal centres inside them
    capsule: B  # lymph-node capsule and subcapsular sinus (few lymphocytes)
    counts: dict[str, int] = field(default_factory=dict)


def _um(um: float) -> float:
    return um / MASK_MPP


def _mm2(mask: B) -> float:
    return float(mask.sum()) * (MASK_MPP / 1000.0) ** 2


def _window(shape: tuple[int, int], cy: float, cx: float, reach: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
    h, w = shape
    r = int(np.ceil(reach)) + 2
    y0, y1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
    x0, x1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
    yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
    xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
    return slice(y0, y1), slice(x0, x1), yy, xx


def _blob_rho(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, a: float, b: float, rough: float
              ) -> np.ndarray:
    """Normalised radius of an ellipse with a wavy outline (rho <= 1 is inside)."""
    ang = rng.uniform(0, np.pi)
    u = xx * np.cos(ang) + yy * np.sin(ang)
    v = -xx * np.sin(ang) + yy * np.cos(ang)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    phi = np.arctan2(v, u)
    wave = np.zeros_like(rho)
    for k in range(2, 6):
        wave += rng.normal(0, rough / k) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    return rho / (1.0 + wave)


def _pick(rng: np.random.Generator, mask: B) -> tuple[float, float] | None:
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    k = int(rng.integers(ys.size))
    return float(ys[k]) + 0.5, float(xs[k]) + 0.5


def _necrosis(rng: np.random.Generator, regions: np.ndarray, bed: B, s: float) -> int:
    if s < 0.1:
        return 0
    nests = bed & (regions == TUMOR)
    depth = ndimage.distance_transform_edt(nests).astype(np.float32)
    cand = nests & (depth >= _um(12.0))
    if not cand.any():
        return 0
    score = smooth_field(rng, regions.shape, _um(110.0)) + 0.8 * np.minimum(depth / _um(40.0), 1.0)
    want = 0.2 * s * float(bed.sum())
    nec = cand & (score > _threshold_fraction(score, cand, min(1.0, want / float(cand.sum()))))
    nec = _remove_small(nec, _um(28.0) ** 2)
    regions[nec] = NECROSIS
    return int(nec.sum())


def _tls(rng: np.random.Generator, regions: np.ndarray, ok: B, hl: HardLayout, s: float) -> int:
    n = min(int(rng.poisson(2.5 * s * _mm2(ok))), 10) if s > 0.05 else 0
    placed = 0
    for _ in range(n):
        for _try in range(6):
            c = _pick(rng, ok)
            if c is None:
                return placed
            r = _um(rng.uniform(45.0, 170.0) * (0.6 + 0.8 * s))
            a, b = r, r * rng.uniform(0.6, 1.0)
            sy, sx, yy, xx = _window(regions.shape, c[0], c[1], 1.4 * a)
            rho = _blob_rho(rng, yy, xx, a, b, 0.12)
            blob = rho <= 1.0
            if not ok[sy, sx][blob].all() or (rho <= 1.0).sum() < 8:
                continue
            win = regions[sy, sx]
            win[blob] = STROMA
            hl.lymphoid[sy, sx] |= blob
            if r > _um(90.0) and rng.random() < 0.6:
                hl.germinal[sy, sx] |= rho <= rng.uniform(0.35, 0.55)
            ok[sy, sx] &= ~(rho <= 1.6)
            placed += 1
            break
    return placed


def _lymph_node(rng: np.random.Generator, regions: np.ndarray, bed: B, ok: B, hl: HardLayout, s: float) -> int:
    if s < 0.3 or rng.random() > 0.8 * s + 0.2:
        return 0
    h, w = regions.shape
    r = _um(rng.uniform(220.0, 520.0))
    tissue = regions != BACKGROUND
    yy_, xx_ = np.mgrid[0:h, 0:w]
    edge = np.minimum(np.minimum(yy_, h - 1 - yy_), np.minimum(xx_, w - 1 - xx_)).astype(np.float64)
    # room for a separate fragment beside the tissue (at least 60 µm of glass around it)
    room = (np.minimum(ndimage.distance_transform_edt(~tissue), edge + _um(60.0)) - _um(60.0)) / 1.1
    r = min(r, float(room.max()) - 1.0)
    if r >= _um(150.0):
        cand = room > r
    else:  # else in tissue far from the bed
        r = _um(rng.uniform(150.0, 300.0))
        cand = (ndimage.distance_transform_edt(ok) > 1.3 * r) & (edge > r)
    c = _pick(rng, cand)
    if c is None:
        return 0
    sy, sx, yy, xx = _window(regions.shape, c[0], c[1], 1.3 * r)
    rho = _blob_rho(rng, yy, xx, r, r * rng.uniform(0.65, 0.9), 0.06)
    node = rho <= 1.0
    if (bed[sy, sx] & node).any():
        return 0
    regions[sy, sx][node] = STROMA
    hl.lymphoid[sy, sx] |= node
    rim = node & (rho > 1.0 - _um(rng.uniform(14.0, 22.0)) / r)  # capsule + subcapsular sinus
    hl.capsule[sy, sx] |= rim
    # follicles near the cortex, each with a germinal centre
    for _ in range(int(rng.integers(3, 9))):
        t = rng.uniform(0, 2 * np.pi)
        rr = rng.uniform(0.55, 0.8)
        fy, fx = rr * r * np.sin(t), rr * r * np.cos(t)
        fr = _um(rng.uniform(45.0, 95.0))
        d = np.sqrt((yy - fy) ** 2 + (xx - fx) ** 2)
        gc = node & ~rim & (d <= 0.6 * fr)
        hl.germinal[sy, sx] |= gc
    ok[sy, sx] &= ~(rho <= 1.5)
    return 1


def _dcis(rng: np.random.Generator, regions: np.ndarray, ok: B, s: float) -> int:
    n = min(int(rng.poisson(3.0 * s * _mm2(ok))) + int(s > 0.6), 6) if s > 0.1 else 0
    placed = 0
    for _ in range(n):
        for _try in range(6):
            c = _pick(rng, ok)
            if c is None:
                return placed
            a = _um(rng.uniform(60.0, 170.0))
            b = a * rng.uniform(0.6, 1.0)
            sy, sx, yy, xx = _window(regions.shape, c[0], c[1], 1.35 * a)
            rho = _blob_rho(rng, yy, xx, a, b, 0.05)
            if not ok[sy, sx][rho <= 1.3].all():
                continue
            win = regions[sy, sx]
            win[(rho <= 1.3) & (win == FAT)] = STROMA  # periductal stroma
            win[rho <= 1.0] = DUCT
            win[rho <= 1.0 - _um(6.0) / b] = DCIS
            if rng.random() < 0.45:
                win[rho <= rng.uniform(0.3, 0.55)] = NECROSIS  # comedo necrosis
            elif rng.random() < 0.5:  # cribriform: punched-out lumina
                for _k in range(int(rng.integers(3, 9))):
                    t, rr = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.65)
                    d = np.sqrt((yy - rr * a * np.sin(t)) ** 2 + (xx - rr * a * np.cos(t)) ** 2)
                    win[(d <= _um(rng.uniform(7.0, 14.0))) & (win == DCIS)] = LUMEN
            ok[sy, sx] &= ~(rho <= 1.6)
            placed += 1
            break
    return placed


def add_hard_regions(rng: np.random.Generator, layout: Layout, c: Confounders) -> HardLayout:
    """Draw necrosis, lymphoid structures and DCIS into ``layout.regions`` (in place)."""
    regions = layout.regions
    bed = layout.bed
    z = np.zeros(regions.shape, bool)
    hl = HardLayout(lymphoid=z.copy(), germinal=z.copy(), capsule=z.copy())
    hl.counts["n_necrosis_px"] = _necrosis(rng, regions, bed, c.necrosis)
    d_bed = ndimage.distance_transform_edt(~bed) if bed.any() else np.full(regions.shape, np.inf)
    ducts = ndimage.binary_dilation(np.isin(regions, (DUCT, LUMEN)), iterations=int(np.ceil(_um(30.0))))
    soft = np.isin(regions, (STROMA, FAT)) & ~ducts
    ok = soft & (d_bed > _um(80.0))
    hl.counts["n_lymph_node"] = _lymph_node(rng, regions, bed, ok, hl, c.lymphoid_outside)
    hl.counts["n_tls"] = _tls(rng, regions, ok, hl, c.lymphoid_outside)
    ok &= d_bed > _um(100.0)
    hl.counts["n_dcis_ducts"] = _dcis(rng, regions, ok, c.lobules_dcis)
    return hl
