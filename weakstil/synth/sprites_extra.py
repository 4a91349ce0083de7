"""Sprite banks of the hard confounders, the lymphoid structures and the alternative looks.

Kinds (``sprites.EXTRA_KINDS``):

* ``plasma``: plasma cell, an oval cell with ample basophilic cytoplasm, an eccentric round
  nucleus with peripheral chromatin clumps (the "clock face") and a pale perinuclear hof. Its
  whole cell (nucleus and cytoplasm) is TIL area: the TILs Working Group scores every
  mononuclear inflammatory cell, lymphocytes and plasma cells alike.
* ``tumor_dark``: a hyperchromatic tumour nucleus as small and dark as a lymphocyte, with a
  slightly irregular outline.
* ``fibroblast_dark``: plump, dark (activated or cross-cut) fibroblast nuclei, some nearly
  round; oriented like ``fibroblast`` (index = angle bin * per-angle + variant).
* ``apoptotic``: an apoptotic/karyorrhectic body, a shrunken eosinophilic cell holding one to
  four pyknotic nuclear fragments.
* ``centroblast``: germinal-centre B cell, large vesicular nucleus with nucleoli at the membrane.
* ``ghost``: a pale nuclear outline of a dead cell in necrosis.

``alt_bank`` gives the six base kinds in the ``alt`` look: other sizes, chromatin and shapes.
"""

from __future__ import annotations

import numpy as np

from .sprite_shapes import (
    SpriteBank,
    _debris,
    _finish,
    _grid,
    _round_nuclei,
    _spindles,
    _texture,
    _tumor_nuclei,
)

__all__ = ["alt_bank", "extra_bank"]


def _ellipse_alpha(y: np.ndarray, x: np.ndarray, cy: float, cx: float, a: float, b: float,
                   ang: float) -> tuple[np.ndarray, np.ndarray]:
    """Anti-aliased alpha of an ellipse (semi-axes a along ``ang``, b across) and its radius."""
    u = (x - cx) * np.cos(ang) + (y - cy) * np.sin(ang)
    v = -(x - cx) * np.sin(ang) + (y - cy) * np.cos(ang)
    rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    return np.clip((1.0 - rho) * min(a, b) + 0.5, 0.0, 1.0), rho


def _plasma(rng: np.random.Generator, n: int, size: int, alt: bool) -> SpriteBank:
    y, x = _grid(size)
    al, hl, el = [], [], []
    for _ in range(n):
        a = rng.uniform(10.0, 12.5) if not alt else rng.uniform(10.5, 13.0)  # px: a 10-13 um long cell
        b = a * rng.uniform(0.66, 0.85)
        ang = rng.uniform(0, 2 * np.pi)
        body, _ = _ellipse_alpha(y, x, 0.0, 0.0, a, b, ang)
        rn = rng.uniform(4.3, 5.4)  # nucleus radius, px (about 5 um across)
        off = (a - rn) * rng.uniform(0.55, 0.85)  # eccentric, towards one pole
        ny, nx = off * np.sin(ang), off * np.cos(ang)
        d = np.sqrt((y - ny) ** 2 + (x - nx) ** 2)
        nuc = np.clip(rn - d + 0.5, 0.0, 1.0)
        # perinuclear hof on the cell-centre side of the nucleus
        hy, hx = (off - rn - 1.5) * np.sin(ang), (off - rn - 1.5) * np.cos(ang)
        hof = np.exp(-((y - hy) ** 2 + (x - hx) ** 2) / (2 * 2.2**2))
        cyto_h = rng.uniform(0.45, 0.62) * (1.0 - 0.6 * hof)
        tex = _texture(rng, size, 0.8)
        # clock face: chromatin clumps around the nuclear rim and one in the middle
        k = int(rng.integers(6, 10))
        phase = rng.uniform(0, 2 * np.pi)
        clumps = np.exp(-((y - ny) ** 2 + (x - nx) ** 2) / (2 * 0.9**2))
        for i in range(k):
            t = phase + 2 * np.pi * i / k + rng.normal(0, 0.12)
            r = rn * rng.uniform(0.58, 0.72)
            clumps = np.maximum(clumps, np.exp(-((y - ny - r * np.sin(t)) ** 2 + (x - nx - r * np.cos(t)) ** 2)
                                                / (2 * 0.85**2)))
        nuc_h = rng.uniform(0.75, 0.95) + (0.95 if not alt else 0.8) * clumps + 0.06 * tex
        h = cyto_h * (1.0 - nuc) + nuc_h * nuc
        e = (rng.uniform(0.22, 0.32) if not alt else rng.uniform(0.30, 0.40)) * (1.0 - nuc) + 0.10 * nuc
        al.append(np.maximum(body * 0.97, nuc))
        hl.append(np.clip(h, 0.0, None))
        el.append(e)
    return _finish(al, hl, el)


def _tumor_dark(rng: np.random.Generator, n: int, size: int, alt: bool) -> SpriteBank:
    y, x = _grid(size)
    al, hl, el = [], [], []
    for _ in range(n):
        r0 = rng.uniform(6.5, 9.0) if not alt else rng.uniform(7.0, 9.5)
        q = rng.uniform(1.0, 1.35)
        ang = rng.uniform(0, np.pi)
        u = x * np.cos(ang) + y * np.sin(ang)
        v = -x * np.sin(ang) + y * np.cos(ang)
        un = u / q
        rho = np.sqrt(un**2 + v**2)
        phi = np.arctan2(v, un)
        rad = np.ones_like(rho)
        for k in range(2, 6):  # angular, slightly irregular outline
            rad += rng.normal(0, 0.07 / (k - 1) ** 0.5) * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
        depth = r0 / q * rad - rho
        a = np.clip(depth + 0.5, 0.0, 1.0)
        tex = _texture(rng, size, 0.9)
        h = rng.uniform(1.35, 1.85) + 0.18 * tex
        al.append(a)
        hl.append(np.clip(h, 0.0, None))
        el.append(np.full_like(a, 0.14))
    return _finish(al, hl, el)


def _apoptotic(rng: np.random.Generator, n: int, size: int) -> SpriteBank:
    y, x = _grid(size)
    al, hl, el = [], [], []
    for _ in range(n):
        rb = rng.uniform(3.0, 5.5)
        body, _ = _ellipse_alpha(y, x, 0.0, 0.0, rb * rng.uniform(1.0, 1.3), rb, rng.uniform(0, np.pi))
        frag = np.zeros_like(body)
        for _k in range(int(rng.choice([1, 1, 2, 3, 4]))):
            rf = rng.uniform(1.0, 2.6)
            t, r = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6) * rb
            d = np.sqrt((y - r * np.sin(t)) ** 2 + (x - r * np.cos(t)) ** 2)
            frag = np.maximum(frag, np.clip(rf - d + 0.5, 0.0, 1.0))
        h = 0.10 * (1.0 - frag) + rng.uniform(1.7, 2.3) * frag
        e = rng.uniform(0.50, 0.80) * (1.0 - frag) + 0.15 * frag
        al.append(np.maximum(body * 0.85, frag))
        hl.append(h)
        el.append(e)
    return _finish(al, hl, el)


def _ghost(rng: np.random.Generator, n: int, size: int) -> SpriteBank:
    y, x = _grid(size)
    al, hl, el = [], [], []
    for _ in range(n):
        a_ = rng.uniform(7.0, 13.0)
        alpha, rho = _ellipse_alpha(y, x, 0.0, 0.0, a_, a_ / rng.uniform(1.0, 1.4), rng.uniform(0, np.pi))
        rim = np.clip(1.0 - np.abs(rho - 0.85) / 0.2, 0.0, 1.0)
        tex = _texture(rng, size, 1.2)
        h = rng.uniform(0.08, 0.18) + 0.15 * rim + 0.04 * tex
        al.append(alpha * 0.6)
        hl.append(np.clip(h, 0.0, None))
        el.append(np.full_like(alpha, rng.uniform(0.15, 0.3)))
    return _finish(al, hl, el)


def extra_bank(kind: str, alt: bool, rng: np.random.Generator) -> SpriteBank:
    """Bank of a confounder / lymphoid kind (``alt``: in the alt look; ``rng`` seeded per kind)."""
    if kind == "plasma":
        return _plasma(rng, 48, 29, alt)
    if kind == "tumor_dark":
        return _tumor_dark(rng, 64, 27, alt)
    if kind == "fibroblast_dark":
        return _spindles(rng, 4, 31, (4.5, 11.0), (2.6, 4.0), (1.35, 1.75), bend_sd=0.2 if alt else 0.1)
    if kind == "apoptotic":
        return _apoptotic(rng, 32, 15)
    if kind == "centroblast":
        return _tumor_nuclei(rng, 32, 27, r0_px=(8.5, 11.0), ratio=(1.0, 1.3), hyper_p=0.0,
                             base_h=(0.45, 0.65), rim_h=(0.5, 0.7), nucleoli=(1, 2))
    if kind == "ghost":
        return _ghost(rng, 32, 33)
    raise ValueError(f"unknown sprite kind {kind!r}")


def alt_bank(kind: str, rng: np.random.Generator) -> SpriteBank:
    """A base kind in the ``alt`` look: other nucleus sizes, chromatin and shapes."""
    if kind == "lymphocyte":  # a little larger, coarser chromatin, lighter
        return _round_nuclei(rng, 64, 21, (6.5, 8.5), (1.0, 1.3), (1.25, 1.65), 0.25, 0.12)
    if kind == "tumor":  # rounder, vesicular, thick membrane, prominent nucleoli
        return _tumor_nuclei(rng, 96, 43, r0_px=(11.0, 17.5), ratio=(1.0, 1.3), hyper_p=0.12,
                             base_h=(0.28, 0.42), rim_h=(0.7, 1.0), nucleoli=(1, 1, 2, 3))
    if kind == "fibroblast":  # longer, thinner, wavier
        return _spindles(rng, 4, 55, (13.0, 25.0), (1.2, 2.0), (0.85, 1.2), bend_sd=0.25)
    if kind == "luminal":
        return _round_nuclei(rng, 32, 21, (5.0, 7.0), (1.0, 1.5), (0.9, 1.2), 0.2, 0.12)
    if kind == "myoepithelial":
        return _spindles(rng, 2, 27, (7.0, 10.0), (1.5, 2.2), (0.9, 1.2), bend_sd=0.2)
    if kind == "debris":
        return _debris(rng, 16)
    raise ValueError(f"unknown sprite kind {kind!r}")

