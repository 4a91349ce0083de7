"""Render-time extras of non-default output: the look's optics and palette, the hard regions'
textures, and acquisition artefacts (tissue folds, out-of-focus patches, pen marks).

Everything here changes pixels only, never the truth: a fold doubles the optical density of
the tissue under it, an out-of-focus patch blurs it, marker ink adds its own absorbance. All
fields live on the mask grid (or are global), so blocks of a slide render independently yet
agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .constants import BACKGROUND, DCIS, MASK_FACTOR, MASK_MPP, NECROSIS, STROMA
from .fields import crop_clamped, smooth_field, upsample_margin
from .hard import Confounders, centre_rng
from .layout import Layout, _threshold_fraction
from .looks import LookRender
from .style import SlideStyle
from .textures import textures, window

__all__ = ["RenderExtras", "make_render_extras"]

F32 = NDArray[np.float32]
_G = 2  # padding of the smoothed mask-grid windows (as in render)

#: absorbance (RGB optical density per unit ink) of common marker colours
_INKS: dict[str, tuple[float, float, float]] = {
    "green": (0.80, 0.18, 0.62), "blue": (0.85, 0.50, 0.08), "black": (0.70, 0.68, 0.62), "red": (0.05, 0.72, 0.52),
}


@dataclass
class RenderExtras:
    look: LookRender
    stroma_h_extra: float = 0.0  # haematoxylin over-staining of stroma (hard stain shift)
    fold: F32 | None = None  # extra optical-density gain per mask pixel (1 = doubled tissue)
    focus: F32 | None = None  # out-of-focus weight per mask pixel (0..1)
    focus_sigma: float = 0.0
    pen: F32 | None = None  # ink density per mask pixel
    pen_od: tuple[float, float, float] = (0.0, 0.0, 0.0)
    attrs: dict[str, object] = field(default_factory=dict)

    @property
    def texture_look(self) -> str:
        return self.look.look

    def region_lut(self, st: SlideStyle) -> tuple[F32, F32]:
        h = np.asarray(self.look.lut_h, np.float32).copy()
        e = np.asarray(self.look.lut_e, np.float32).copy()
        e[STROMA] = st.stroma_eosin
        h[STROMA] += self.stroma_h_extra
        return h * np.float32(st.h_scale), e * np.float32(st.e_scale)

    def log_i0(self, st: SlideStyle) -> tuple[np.float32, np.float32, np.float32]:
        b = st.brightness
        return tuple(np.float32(np.log(255.0 * b * g)) for g in self.look.illuminant)  # type: ignore[return-value]

    def _field(self, a: F32, ly0: int, ly1: int, lx0: int, lx1: int, out: F32, tmp: F32) -> F32:
        return upsample_margin(crop_clamped(a, ly0 - 1, ly1 + 1, lx0 - 1, lx1 + 1), MASK_FACTOR, out=out, tmp=tmp)

    def region_textures(self, reg: NDArray[np.uint8], hmap: F32, emap: F32, ey0: int, ex0: int,
                        tmp: F32, tmp2: F32) -> None:
        """Granular necrosis and mottled DCIS cytoplasm (``reg`` is the padded region window)."""
        tex = textures(self.texture_look)
        eh, ew = hmap.shape
        for code, amp, offset in ((NECROSIS, 0.45, (811, 97)), (DCIS, 0.2, (517, 733))):
            if not (reg == code).any():
                continue
            w = ndimage.gaussian_filter((reg == code).astype(np.float32) * amp, 0.7, truncate=3.0)[_G:-_G, _G:-_G]
            m = upsample_margin(w, MASK_FACTOR, out=tmp, tmp=tmp2)
            m *= window(tex.mottle, ey0 + offset[0], ex0 + offset[1], eh, ew, out=tmp2)
            m += 1.0
            hmap *= m
            emap *= m

    def optics(self, hmap: F32, emap: F32, ly0: int, ly1: int, lx0: int, lx1: int, bufs: list[F32]) -> None:
        """Fold (optical-density gain) and out-of-focus blur, in place."""
        a, b = bufs[0], bufs[1]
        if self.fold is not None:
            g = self._field(self.fold, ly0, ly1, lx0, lx1, a, b)
            if g.max() > 0:
                g += 1.0
                hmap *= g
                emap *= g
        if self.focus is not None:
            w = self._field(self.focus, ly0, ly1, lx0, lx1, a, b)
            rows = np.flatnonzero(w.max(axis=1) > 0.01)
            if rows.size:
                # blur only the box around the out-of-focus pixels (with the kernel's reach), which
                # gives those pixels exactly what a whole-window blur would
                cols = np.flatnonzero(w.max(axis=0) > 0.01)
                r = int(3.0 * self.focus_sigma + 0.5) + 1
                sy = slice(max(0, rows[0] - r), rows[-1] + r + 1)
                sx = slice(max(0, cols[0] - r), cols[-1] + r + 1)
                wc = w[sy, sx]
                for m in (hmap, emap):
                    mc = m[sy, sx]
                    bc = ndimage.gaussian_filter(mc, self.focus_sigma, truncate=3.0)
                    bc -= mc
                    bc *= wc
                    mc += bc

    def sharpen(self, hmap: F32, emap: F32, tmp: F32) -> None:
        """The look's scanner sharpening (unsharp mask), in place."""
        if self.look.sharpen <= 0:
            return
        for m in (hmap, emap):
            ndimage.gaussian_filter(m, self.look.sharpen_sigma, truncate=3.0, output=tmp)
            np.subtract(m, tmp, out=tmp)
            tmp *= np.float32(self.look.sharpen)
            m += tmp
            np.maximum(m, 0.0, out=m)

    def pen_window(self, ly0: int, ly1: int, lx0: int, lx1: int, out: F32, tmp: F32) -> F32 | None:
        if self.pen is None:
            return None
        p = self._field(self.pen, ly0, ly1, lx0, lx1, out, tmp)
        return p if p.max() > 0 else None


def _um(um: float) -> float:
    return um / MASK_MPP


def _band(d: NDArray[np.float32], half_width: float, soft: float = 1.5) -> F32:
    return np.clip((half_width - np.abs(d)) / soft + 0.5, 0.0, 1.0).astype(np.float32)


def _folds(rng: np.random.Generator, layout: Layout, s: float) -> F32 | None:
    if s < 0.15 or rng.random() > 0.4 + 0.6 * s:
        return None
    shape = layout.shape
    tissue = layout.tissue
    ys, xs = np.nonzero(tissue)
    if ys.size == 0:
        return None
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    out = np.zeros(shape, np.float32)
    for _ in range(1 + int(rng.random() < 0.5 * s)):
        k = int(rng.integers(ys.size))
        ang = rng.uniform(0, np.pi)
        along = (xx - xs[k]) * np.cos(ang) + (yy - ys[k]) * np.sin(ang)
        d = -(xx - xs[k]) * np.sin(ang) + (yy - ys[k]) * np.cos(ang)
        d += _um(rng.uniform(10.0, 40.0)) * np.sin(along / _um(rng.uniform(150.0, 400.0)))
        half_len = _um(rng.uniform(400.0, 1500.0))
        band = _band(d, _um(rng.uniform(12.0, 35.0) * (0.6 + 0.8 * s))) * _band(along, half_len, 4.0)
        out = np.maximum(out, band * np.float32(rng.uniform(0.7, 1.0)))
    return (out * tissue).astype(np.float32)


def _focus(rng: np.random.Generator, layout: Layout, s: float) -> tuple[F32 | None, float]:
    if s < 0.15:
        return None, 0.0
    f = smooth_field(rng, layout.shape, _um(280.0))
    thr = _threshold_fraction(f, np.ones(layout.shape, bool), 0.08 + 0.32 * s)
    return np.clip((f - thr) / 0.4, 0.0, 1.0).astype(np.float32), float(1.5 + 2.5 * s)


def _pen(rng: np.random.Generator, layout: Layout, s: float, ink: str) -> F32 | None:
    if s < 0.15 or rng.random() > 0.3 + 0.7 * s:
        return None
    shape = layout.shape
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    ref = layout.bed if layout.bed.any() else layout.tissue
    ys, xs = np.nonzero(ref)
    cy, cx = float(ys.mean()), float(xs.mean())
    r0 = float(np.sqrt(ref.sum() / np.pi))
    # the pathologist's circle around the tumour: an open arc of a wobbly ellipse
    ry, rx = r0 * rng.uniform(1.15, 1.6), r0 * rng.uniform(1.15, 1.6)
    rho = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    phi = np.arctan2(yy - cy, xx - cx)
    rho += 0.05 * np.sin(3 * phi + rng.uniform(0, 2 * np.pi))
    start, span = rng.uniform(-np.pi, np.pi), rng.uniform(0.6, 1.8) * np.pi
    rel = np.mod(phi - start, 2 * np.pi)
    width = _um(rng.uniform(60.0, 160.0)) / (0.5 * (ry + rx))
    arc = _band(rho - 1.0, width / 2, soft=1.0 / (0.5 * (ry + rx))) * (rel <= span)
    streak = 1.0 + 0.25 * smooth_field(rng, shape, _um(40.0))
    dens = rng.uniform(0.5, 1.0) * (0.5 + 0.5 * s)
    pen = ndimage.gaussian_filter(arc.astype(np.float32), 0.8) * streak * np.float32(dens)
    return np.clip(pen, 0.0, None).astype(np.float32)


def make_render_extras(rng: np.random.Generator, layout: Layout, look: LookRender, group: str,
                       c: Confounders | None, stroma_h_extra: float = 0.0) -> RenderExtras:
    """Extras of a slide: the look's parameters plus, when hard, its acquisition artefacts."""
    ex = RenderExtras(look=look, stroma_h_extra=stroma_h_extra)
    if c is None:
        return ex
    ex.fold = _folds(rng, layout, c.fold)
    ex.focus, ex.focus_sigma = _focus(rng, layout, c.focus)
    ink = str(centre_rng(group, "ink").choice(sorted(_INKS)))
    ex.pen = _pen(rng, layout, c.pen, ink)
    ex.pen_od = _INKS[ink]
    tissue = layout.regions != BACKGROUND
    n_t = max(int(tissue.sum()), 1)
    ex.attrs = {
        "fold_fraction": float((ex.fold > 0.5).sum() / n_t) if ex.fold is not None else 0.0,
        "focus_fraction": float((ex.focus[tissue] > 0.5).sum() / n_t) if ex.focus is not None else 0.0,
        "focus_sigma_px": ex.focus_sigma,
        "pen_fraction": float((ex.pen > 0.1).sum() / layout.regions.size) if ex.pen is not None else 0.0,
        "pen_ink": ink if ex.pen is not None else "",
    }
    return ex
