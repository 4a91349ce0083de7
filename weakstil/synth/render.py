"""Block renderer: Beer–Lambert H&E of one level-0 window plus its lymphocyte mask.

Region identity comes from the mask grid (exact x8 nearest upsampling); only the
*appearance* of region borders is anti-aliased (bilinear blend of the region
colours, sharpened and roughened), which never changes any truth value.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from .artefacts import RenderExtras
from .cells import CellSet, Stamps
from .constants import BACKGROUND, BLOCK_MARGIN, DUCT, FAT, LUMEN, MASK_FACTOR, STROMA, TUMOR
from .fields import crop_clamped, resample_bilinear, smooth_field, upsample_margin
from .layout import Layout
from .orientation import OrientationField
from .sprites import TIL_KINDS
from .style import SlideStyle
from .textures import FIBRE_ANGLES, textures, window

__all__ = ["RenderPlan", "Workspace", "render_block", "workspace"]

F32 = NDArray[np.float32]
_STAMP_CHUNK = 1 << 21  # sprite pixels per vectorised stamping batch
_FAT_MARGIN = 256  # level-0 px of adipocyte seeds considered around a block
_WHITE = (BACKGROUND, FAT)  # regions rendered (almost) without stain


@dataclass
class RenderPlan:
    width: int
    height: int
    layout: Layout
    style: SlideStyle
    cells: CellSet
    orient: OrientationField
    var_h: F32  # coarse multiplicative stain variation (cell = orient.cell)
    var_e: F32
    tex_offset: tuple[int, int]
    noise_seed: int
    extra: RenderExtras | None = None  # non-default output only (look, hard regions, artefacts)

    @classmethod
    def create(cls, rng: np.random.Generator, width: int, height: int, layout: Layout, style: SlideStyle,
               cells: CellSet, orient: OrientationField) -> RenderPlan:
        shape = orient.c2.shape
        var_h = (1.0 + 0.07 * smooth_field(rng, shape, 4.0)).astype(np.float32)
        var_e = (1.0 + 0.09 * smooth_field(rng, shape, 4.0)).astype(np.float32)
        off = rng.integers(0, 1 << 20, 2)
        return cls(width, height, layout, style, cells, orient, var_h, var_e,
                   (int(off[0]), int(off[1])), int(rng.integers(0, 1 << 62)))

    def region_lut(self) -> tuple[F32, F32]:
        if self.extra is not None:
            return self.extra.region_lut(self.style)
        s = self.style
        h = np.zeros(8, np.float32)
        e = np.zeros(8, np.float32)
        h[BACKGROUND], e[BACKGROUND] = 0.0, 0.0
        h[STROMA], e[STROMA] = 0.045, s.stroma_eosin
        h[TUMOR], e[TUMOR] = 0.22, 0.36
        h[FAT], e[FAT] = 0.0, 0.0
        h[DUCT], e[DUCT] = 0.22, 0.50
        h[LUMEN], e[LUMEN] = 0.02, 0.10
        return h * np.float32(s.h_scale), e * np.float32(s.e_scale)


def _stamp(st: Stamps, idx: NDArray[np.intp], ey0: int, ex0: int, eh: int, ew: int,
           na: F32, nh: F32, ne: F32, lm: NDArray[np.bool_] | None, lm2: NDArray[np.bool_] | None = None) -> None:
    """Composite the selected sprites (max) into the window arrays."""
    if idx.size == 0:
        return
    b = st.bank
    s, half = b.size, b.half
    ar = np.arange(s)
    per = max(1, _STAMP_CHUNK // (s * s))
    na_f, nh_f, ne_f = na.ravel(), nh.ravel(), ne.ravel()
    lm_f = lm.ravel() if lm is not None else None
    lm2_f = lm2.ravel() if lm2 is not None else None
    for c0 in range(0, idx.size, per):
        ii = idx[c0:c0 + per]
        rows = (st.y[ii] - ey0 - half)[:, None] + ar[None, :]
        cols = (st.x[ii] - ex0 - half)[:, None] + ar[None, :]
        spr = st.sprite[ii]
        a = b.alpha[spr]
        valid = (a > 0) & ((rows >= 0) & (rows < eh))[:, :, None] & ((cols >= 0) & (cols < ew))[:, None, :]
        flat = (rows[:, :, None] * ew + cols[:, None, :])[valid]
        np.maximum.at(na_f, flat, a[valid])
        np.maximum.at(nh_f, flat, b.h[spr][valid])
        np.maximum.at(ne_f, flat, b.e[spr][valid])
        if lm_f is not None:
            fp = b.footprint[spr][valid]
            lm_f[flat[fp]] = True
            if lm2_f is not None:
                lm2_f[flat[fp]] = True


def _fat_membranes(plan: RenderPlan, ey0: int, ex0: int, fat: NDArray[np.bool_]
                   ) -> tuple[tuple[slice, slice], F32] | None:
    """Adipocyte membranes (borders of the Voronoi cells of the adipocyte centres).

    ``fat`` is the window's fat mask on the mask grid; only its bounding box is
    computed.  Returns the level-0 window slices of that box and the membrane map.
    """
    rows = np.flatnonzero(fat.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(fat.any(axis=0))
    f = MASK_FACTOR
    by0, by1 = ey0 + int(rows[0]) * f, ey0 + (int(rows[-1]) + 1) * f
    bx0, bx1 = ex0 + int(cols[0]) * f, ex0 + (int(cols[-1]) + 1) * f
    cy, cx = plan.cells.adipocyte_y, plan.cells.adipocyte_x
    wy0, wy1 = by0 - _FAT_MARGIN, by1 + _FAT_MARGIN
    wx0, wx1 = bx0 - _FAT_MARGIN, bx1 + _FAT_MARGIN
    i0, i1 = np.searchsorted(cy, [wy0, wy1])
    sy, sx = cy[i0:i1], cx[i0:i1]
    k = (sx >= wx0) & (sx < wx1)
    sy, sx = sy[k], sx[k]
    if sy.size == 0:
        return None
    # Voronoi labels at half resolution (1 um): nearest seed by feature transform
    hh, hw = (wy1 - wy0) // 2, (wx1 - wx0) // 2
    seeds = np.zeros((hh, hw), np.int32)
    seeds[(sy - wy0) // 2, (sx - wx0) // 2] = np.arange(1, sy.size + 1, dtype=np.int32)
    ind = ndimage.distance_transform_edt(seeds == 0, return_distances=False, return_indices=True)
    lab = seeds.ravel()[ind[0].ravel() * hw + ind[1].ravel()].reshape(hh, hw)
    del ind
    mem = np.zeros((hh, hw), bool)
    np.not_equal(lab[:, 1:], lab[:, :-1], out=mem[:, 1:])
    mem[1:, :] |= lab[1:, :] != lab[:-1, :]
    mg = _FAT_MARGIN // 2
    mem = mem[mg:hh - mg, mg:hw - mg]
    full = np.empty((mem.shape[0] * 2, mem.shape[1] * 2), np.float32)
    np.copyto(full.reshape(mem.shape[0], 2, mem.shape[1], 2), mem[:, None, :, None])
    return (slice(by0 - ey0, by1 - ey0), slice(bx0 - ex0, bx1 - ex0)), full


_SMOOTH_SIGMA = 0.7  # mask px
_SMOOTH_PAD = 2  # = int(3 * sigma + 0.5): extra mask px so windows agree


def _smooth(a: F32) -> F32:
    """Gaussian-smooth a mask-grid window and drop the ``_SMOOTH_PAD`` border."""
    g = _SMOOTH_PAD
    return ndimage.gaussian_filter(a, _SMOOTH_SIGMA, truncate=3.0)[g:-g, g:-g]


class Workspace:
    """Reusable scratch arrays for ``render_block`` (one per thread).

    Re-touching the same memory for every block avoids page-faulting dozens of
    fresh 18 MB temporaries per block; buffers are flat and grow on demand.
    """

    def __init__(self) -> None:
        self._flat: dict[tuple[str, str], NDArray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> NDArray:
        n = int(np.prod(shape))
        key = (name, np.dtype(dtype).str)
        buf = self._flat.get(key)
        if buf is None or buf.size < n:
            buf = np.empty(n, dtype)
            self._flat[key] = buf
        return buf[:n].reshape(shape)

    def clear(self) -> None:
        self._flat.clear()


_LOCAL = threading.local()


def workspace() -> Workspace:
    ws = getattr(_LOCAL, "ws", None)
    if ws is None:
        ws = _LOCAL.ws = Workspace()
    return ws


def _rep(a: NDArray, f: int, out: F32) -> F32:
    """Nearest x f upsampling into ``out`` (C-contiguous, shape ``(n * f, m * f)``)."""
    n, m = a.shape
    if not out.flags.c_contiguous or out.shape != (n * f, m * f):
        raise ValueError("_rep needs a C-contiguous output of the upsampled shape")
    np.copyto(out.reshape(n, f, m, f), np.asarray(a, np.float32)[:, None, :, None])
    return out


def render_block(plan: RenderPlan, y0: int, y1: int, x0: int, x1: int, *,
                 out: NDArray[np.uint8] | None = None,
                 parts: dict[str, F32] | None = None) -> tuple[NDArray[np.uint8], F32]:
    """Render level-0 window ``[y0:y1, x0:x1]`` (multiples of MASK_FACTOR).

    Returns the RGB pixels (written into ``out`` when given) and the TIL (lymphocyte, and
    with ``--hard`` plasma-cell and centroblast) coverage fraction on the mask grid (drawn
    TIL pixels per MASK_FACTOR x MASK_FACTOR block / MASK_FACTOR**2). With ``parts``, the
    plasma cells' own coverage is stored in ``parts["plasma"]``.
    """
    f = MASK_FACTOR
    m = BLOCK_MARGIN
    ey0, ey1, ex0, ex1 = y0 - m, y1 + m, x0 - m, x1 + m
    eh, ew = ey1 - ey0, ex1 - ex0
    ly0, ly1, lx0, lx1 = ey0 // f, ey1 // f, ex0 // f, ex1 // f
    st = plan.style
    ex = plan.extra
    tex = textures() if ex is None else textures(ex.texture_look)
    W = workspace()
    E = (eh, ew)
    t1, t2 = W.get("t1", E), W.get("t2", E)

    def win(t: F32, wy: int, wx: int, dst: F32) -> F32:
        return window(t, wy, wx, eh, ew, out=dst)

    # --- mask-grid quantities on the window; region colours are smoothed slightly on
    # the mask grid (rounded corners instead of 8-px stair steps), then upsampled
    g = _SMOOTH_PAD
    reg = crop_clamped(plan.layout.regions, ly0 - 1 - g, ly1 + 1 + g, lx0 - 1 - g, lx1 + 1 + g)
    inner = reg[1 + g:-1 - g, 1 + g:-1 - g]
    present = np.bincount(inner.ravel(), minlength=8) > 0
    lut_h, lut_e = plan.region_lut()
    lys = (np.arange(ly0 - 1 - g, ly1 + 1 + g) + 0.5) * f  # level-0 centres of those mask pixels
    lxs = (np.arange(lx0 - 1 - g, lx1 + 1 + g) + 0.5) * f
    cell = plan.orient.cell
    cys, cxs = lys / cell - 0.5, lxs / cell - 0.5
    hmap = upsample_margin(_smooth(lut_h[reg] * resample_bilinear(plan.var_h, cys, cxs)), f,
                           out=W.get("h", E), tmp=t1)
    emap = upsample_margin(_smooth(lut_e[reg] * resample_bilinear(plan.var_e, cys, cxs)), f,
                           out=W.get("e", E), tmp=t1)
    lys, lxs = lys[1 + g:-1 - g], lxs[1 + g:-1 - g]

    # --- crisp, slightly rough borders between stained and unstained regions
    white = np.isin(reg, _WHITE)
    if white.any() and not white.all():
        col = upsample_margin(_smooth((~white).astype(np.float32)), f, out=W.get("c", E), tmp=t1)
        sharp = np.subtract(col, 0.5, out=t2)
        sharp *= 4.0
        sharp += 0.5
        rough = win(tex.edge, ey0 + 71, ex0 + 193, t1)
        rough *= 0.25
        sharp += rough
        np.clip(sharp, 0.0, 1.0, out=sharp)
        np.maximum(col, 0.03, out=col)
        sharp /= col
        hmap *= sharp
        emap *= sharp

    # --- collagen texture (orientation-blended) inside stroma; its weight follows the
    # smoothed stroma outline (no stair steps), sharpened and roughened a little
    if present[STROMA]:
        wts = plan.orient.texture_weights(lys, lxs)
        oy, ox = plan.tex_offset
        acc = W.get("c", E)
        for k in range(len(FIBRE_ANGLES)):
            wk = _rep(wts[k], f, t2)
            tk = win(tex.collagen[k], ey0 + oy, ex0 + ox, t1)
            if k == 0:
                np.multiply(wk, tk, out=acc)
            else:
                wk *= tk
                acc += wk
        ws = upsample_margin(_smooth((reg == STROMA).astype(np.float32)), f, out=t2, tmp=t1)
        ws -= 0.5
        ws *= 2.5
        ws += 0.5 + 0.15 * win(tex.edge, ey0 + 389, ex0 + 41, t1)
        np.clip(ws, 0.0, 1.0, out=ws)
        ws *= np.float32(st.fibre_contrast)
        acc *= ws
        acc += 1.0
        np.maximum(acc, 0.05, out=acc)
        emap *= acc
    if present[TUMOR]:
        mt = upsample_margin(_smooth((reg == TUMOR).astype(np.float32) * 0.2), f, out=t2, tmp=t1)
        mt *= win(tex.mottle, ey0 + 517, ex0 + 733, t1)
        mt += 1.0
        emap *= mt
        hmap *= mt
    if ex is not None:
        ex.region_textures(reg, hmap, emap, ey0, ex0, t1, t2)
    if present[FAT]:
        fat = inner == FAT
        res = _fat_membranes(plan, ey0, ex0, fat)
        if res is not None:
            (sl_y, sl_x), mem = res
            fy0, fx0 = sl_y.start // f, sl_x.start // f
            fw = fat[fy0:fy0 + mem.shape[0] // f, fx0:fx0 + mem.shape[1] // f]
            mem *= _rep(fw.astype(np.float32), f, W.get("fat", mem.shape))
            emap[sl_y, sl_x] += mem * np.float32(0.42 * st.e_scale)
            mem *= np.float32(0.04 * st.h_scale)
            hmap[sl_y, sl_x] += mem
            del mem
        if (reg == BACKGROUND).any():
            # close the outermost adipocytes with a membrane along the (smoothed) tissue edge
            tis = upsample_margin(_smooth((reg != BACKGROUND).astype(np.float32)), f, out=t2, tmp=t1)
            tis -= 0.5
            np.abs(tis, out=tis)
            tis *= -7.0
            tis += 1.0
            np.maximum(tis, 0.0, out=tis)
            near = upsample_margin(_smooth((reg == FAT).astype(np.float32)), f, out=W.get("c", E), tmp=t1)
            near *= 3.0
            np.minimum(near, 1.0, out=near)
            tis *= near
            np.multiply(tis, np.float32(0.42 * st.e_scale), out=t1)
            emap += t1
            tis *= np.float32(0.04 * st.h_scale)
            hmap += tis

    # --- per-pixel noise (block-dependent offsets into a periodic noise bank)
    brng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(plan.noise_seed, spawn_key=(y0, x0))))
    no = brng.integers(0, 1 << 20, 4)
    sig = np.float32(st.noise_sigma)
    nz = win(tex.noise[0], int(no[0]), int(no[1]), t1)
    nz *= sig
    hmap += nz
    nz = win(tex.noise[1], int(no[2]), int(no[3]), t1)
    nz *= sig
    emap += nz

    # --- nuclei
    na = W.get("na", E)
    nh = W.get("nh", E)
    ne = W.get("ne", E)
    lm = W.get("lm", E, bool)
    for a in (na, nh, ne, lm):
        a.fill(0)
    pm = None
    if parts is not None:
        pm = W.get("pm", E, bool)
        pm.fill(0)
    for stamps in plan.cells.stamps:
        idx = stamps.select(ey0, ey1, ex0, ex1)
        _stamp(stamps, idx, ey0, ex0, eh, ew, na, nh, ne, lm if stamps.kind in TIL_KINDS else None,
               pm if stamps.kind == "plasma" else None)
    nh *= np.float32(st.nucleus_darkness * st.h_scale)
    ne *= np.float32(st.e_scale)
    np.subtract(1.0, na, out=t1)
    hmap *= t1
    hmap += nh
    na *= 0.7
    np.subtract(1.0, na, out=t1)
    emap *= t1
    emap += ne
    if ex is not None:
        ex.optics(hmap, emap, ly0, ly1, lx0, lx1, [W.get("x1", E), W.get("x2", E)])

    if st.blur_sigma > 0.3:
        hmap = ndimage.gaussian_filter(hmap, st.blur_sigma, truncate=3.0, output=t1)
        emap = ndimage.gaussian_filter(emap, st.blur_sigma, truncate=3.0, output=t2)
    if ex is not None:
        ex.sharpen(hmap, emap, W.get("x1", E))

    hc = hmap[m:-m, m:-m]
    ec = emap[m:-m, m:-m]
    bh, bw = hc.shape
    rgb = np.empty((bh, bw, 3), np.uint8) if out is None else out
    if rgb.shape != (bh, bw, 3):
        raise ValueError(f"out has shape {rgb.shape}, expected {(bh, bw, 3)}")
    log_i0 = np.float32(np.log(255.0 * st.brightness))
    log_i0c = (log_i0, log_i0, log_i0) if ex is None else ex.log_i0(st)
    pen = None if ex is None else ex.pen_window(ly0, ly1, lx0, lx1, W.get("x1", E), W.get("x2", E))
    od = W.get("na", (bh, bw))
    tmp = W.get("nh", (bh, bw))
    for c in range(3):
        np.multiply(hc, np.float32(-st.h_vec[c]), out=od)
        np.multiply(ec, np.float32(-st.e_vec[c]), out=tmp)
        od += tmp
        if pen is not None:
            np.multiply(pen[m:-m, m:-m], np.float32(-ex.pen_od[c]), out=tmp)  # type: ignore[union-attr]
            od += tmp
        od += log_i0c[c]
        np.exp(od, out=od)
        np.minimum(od, 255.0, out=od)
        rgb[:, :, c] = od
    lmc = lm[m:-m, m:-m]
    cov = lmc.reshape(bh // f, f, bw // f, f).sum(axis=(1, 3), dtype=np.int32).astype(np.float32) / np.float32(f * f)
    if parts is not None and pm is not None:
        pmc = pm[m:-m, m:-m]
        parts["plasma"] = (pmc.reshape(bh // f, f, bw // f, f).sum(axis=(1, 3), dtype=np.int32).astype(np.float32)
                           / np.float32(f * f))
    return rgb, cov
