"""Placement of nuclei and adipocytes for a whole slide (level-0 integer centres).

All centres are decided before rendering, so every block draws exactly the
objects that intersect it.  Lymphocytes inside the tumour bed are calibrated so
that their drawn coverage of bed stroma approaches the target sTIL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from .constants import BACKGROUND, DUCT, FAT, LUMEN, MASK_FACTOR, SLIDE_MPP, STROMA, TUMOR
from .fields import smooth_field
from .layout import Layout
from .orientation import OrientationField
from .sprites import N_ANGLES, SpriteBank, bank
from .style import LayoutParams

__all__ = ["CellSet", "FixedCells", "Stamps", "place_cells"]

logger = logging.getLogger(__name__)

I32 = NDArray[np.int32]
_MC_SAMPLES = 40_000


@dataclass
class Stamps:
    """Centres (level-0 px) and sprite indices of one kind of nucleus, sorted by y."""

    kind: str
    y: I32
    x: I32
    sprite: NDArray[np.int16]
    look: str = "default"

    def __post_init__(self) -> None:
        order = np.argsort(self.y, kind="stable")
        self.y = np.ascontiguousarray(self.y[order], dtype=np.int32)
        self.x = np.ascontiguousarray(self.x[order], dtype=np.int32)
        self.sprite = np.ascontiguousarray(self.sprite[order], dtype=np.int16)

    @property
    def bank(self) -> SpriteBank:
        return bank(self.kind, self.look)

    def __len__(self) -> int:
        return int(self.y.size)

    def select(self, y0: int, y1: int, x0: int, x1: int) -> NDArray[np.intp]:
        """Indices of the sprites whose box intersects the window."""
        h = self.bank.half
        i0, i1 = np.searchsorted(self.y, [y0 - h, y1 + h])
        xs = self.x[i0:i1]
        return np.flatnonzero((xs >= x0 - h) & (xs < x1 + h)) + i0


@dataclass
class CellSet:
    stamps: list[Stamps]  # drawn in this order
    adipocyte_y: I32
    adipocyte_x: I32
    target_stil: float
    predicted_stil: float  # Monte-Carlo estimate before rendering
    n_lymph_bed: int
    n_lymph_other: int

    def by_kind(self, kind: str) -> Stamps:
        for s in self.stamps:
            if s.kind == kind:
                return s
        raise KeyError(kind)


def _px(um: float) -> float:
    return um / SLIDE_MPP


def _lookup(regions: NDArray[np.uint8], y: NDArray, x: NDArray) -> NDArray[np.uint8]:
    h, w = regions.shape
    ly = np.clip(y // MASK_FACTOR, 0, h - 1)
    lx = np.clip(x // MASK_FACTOR, 0, w - 1)
    return regions[ly, lx]


def _inside(y: NDArray, x: NDArray, height: int, width: int) -> NDArray[np.bool_]:
    return (y >= 0) & (y < height) & (x >= 0) & (x < width)


def _bbox(mask: NDArray[np.bool_]) -> tuple[int, int, int, int] | None:
    """Level-0 bounding box (y0, y1, x0, x1) of a mask-grid mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    f = MASK_FACTOR
    return int(rows[0]) * f, (int(rows[-1]) + 1) * f, int(cols[0]) * f, (int(cols[-1]) + 1) * f


def _jittered_grid(rng: np.random.Generator, height: int, width: int, spacing: float, jitter: float,
                   mask: NDArray[np.bool_]) -> tuple[I32, I32]:
    """Jittered lattice points (global lattice) inside the bounding box of ``mask``;
    the caller filters them by region."""
    bb = _bbox(mask)
    if bb is None:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    y0, y1, x0, x1 = bb
    iy = np.arange(int(y0 // spacing), int(np.ceil(y1 / spacing)))
    ix = np.arange(int(x0 // spacing), int(np.ceil(x1 / spacing)))
    gy, gx = np.meshgrid((iy + 0.5) * spacing, (ix + 0.5) * spacing, indexing="ij")
    y = gy.ravel() + rng.uniform(-jitter, jitter, gy.size) * spacing
    x = gx.ravel() + rng.uniform(-jitter, jitter, gx.size) * spacing
    y = np.clip(np.round(y), 0, height - 1).astype(np.int32)
    x = np.clip(np.round(x), 0, width - 1).astype(np.int32)
    return y, x


def _sample_cells(rng: np.random.Generator, flat_idx: NDArray[np.intp], weights: NDArray[np.float64] | None,
                  n: int, lr_width: int) -> tuple[I32, I32]:
    """``n`` level-0 points in the given mask pixels (optionally weighted)."""
    if n <= 0 or flat_idx.size == 0:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    if weights is None:
        pick = flat_idx[rng.integers(0, flat_idx.size, n)]
    else:
        cdf = np.cumsum(weights)
        pick = flat_idx[np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), flat_idx.size - 1)]
    ly, lx = np.divmod(pick, lr_width)
    y = (ly * MASK_FACTOR + rng.integers(0, MASK_FACTOR, n)).astype(np.int32)
    x = (lx * MASK_FACTOR + rng.integers(0, MASK_FACTOR, n)).astype(np.int32)
    return y, x


def _lymph_area(look: str = "default") -> float:
    return float(bank("lymphocyte", look).footprint.sum(axis=(1, 2)).mean())


def _bed_lymph_candidates(rng: np.random.Generator, layout: Layout, p: LayoutParams, target: float,
                          height: int, width: int, scale: float, look: str = "default",
                          agg_scale: float = 1.0) -> tuple[I32, I32]:
    """Candidate bed-stroma lymphocytes (random order = priority order)."""
    regions = layout.regions
    bed_stroma = layout.bed_stroma
    flat = np.flatnonzero(bed_stroma)
    area_px = flat.size * MASK_FACTOR**2
    t = min(max(target / 100.0, 0.0), 0.985)
    lam = (-np.log(1.0 - min(1.15 * t + 0.03, 0.99)) * (1.0 + p.lymph_heterogeneity)) * scale
    n_max = int(np.ceil(area_px / _lymph_area(look) * lam))
    # intensity: smooth heterogeneity, plus a boost close to tumour nests
    het = np.exp(1.2 * smooth_field(rng, regions.shape, _px(90.0) / MASK_FACTOR))
    het /= het.mean()
    inten = (1.0 - p.lymph_heterogeneity) + p.lymph_heterogeneity * het
    if p.lymph_peritumoral > 0 and (regions == TUMOR).any():
        d = ndimage.distance_transform_edt(regions != TUMOR).astype(np.float32)
        inten *= 1.0 + p.lymph_peritumoral * np.exp(-d / (_px(30.0) / MASK_FACTOR))
    wts = inten.ravel()[flat].astype(np.float64)
    n_agg = int(n_max * p.lymph_aggregate_share)
    n_sc = n_max - n_agg
    ys, xs = _sample_cells(rng, flat, wts, n_sc, regions.shape[1])
    # aggregates: gaussian clusters around weighted centres, kept where bed stroma
    parts_y, parts_x = [ys], [xs]
    if n_agg > 0:
        # agg_scale > 1 (hard, dense infiltrates): fewer, larger and denser aggregates
        mean_size = rng.uniform(30.0, 120.0) * agg_scale**2
        n_cl = max(1, int(round(n_agg / mean_size)))
        cy, cx = _sample_cells(rng, flat, wts, n_cl, regions.shape[1])
        sizes = rng.multinomial(n_agg, rng.dirichlet(np.ones(n_cl)))
        sig = rng.uniform(_px(12.0), _px(35.0), n_cl) * agg_scale
        my = np.repeat(cy, sizes) + rng.normal(0, 1, n_agg) * np.repeat(sig, sizes)
        mx = np.repeat(cx, sizes) + rng.normal(0, 1, n_agg) * np.repeat(sig, sizes)
        my = np.round(my).astype(np.int32)
        mx = np.round(mx).astype(np.int32)
        ok = _inside(my, mx, height, width)
        my, mx = my[ok], mx[ok]
        ok = bed_stroma[my // MASK_FACTOR, mx // MASK_FACTOR]
        parts_y.append(my[ok])
        parts_x.append(mx[ok])
    y = np.concatenate(parts_y)
    x = np.concatenate(parts_x)
    perm = rng.permutation(y.size)
    return y[perm], x[perm]


def _covering(sy: I32, sx: I32, shape: tuple[int, int], y: I32, x: I32, sprite: NDArray[np.int16],
              b: SpriteBank) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(sample, sprite) index pairs where a sprite's footprint covers a sample pixel."""
    none = np.zeros(0, np.intp), np.zeros(0, np.intp)
    if y.size == 0:
        return none
    h = b.half
    # only sprites within reach of a sample matter: mark the sampled mask pixels
    # (dilated by the sprite reach) and drop the rest before building the tree
    reach = int(np.ceil((h * np.sqrt(2.0) + 1.0) / MASK_FACTOR))
    near = np.zeros(shape, bool)
    near[sy // MASK_FACTOR, sx // MASK_FACTOR] = True
    near = ndimage.binary_dilation(near, np.ones((2 * reach + 1, 2 * reach + 1), bool))
    keep = np.flatnonzero(near[np.clip(y // MASK_FACTOR, 0, shape[0] - 1), np.clip(x // MASK_FACTOR, 0, shape[1] - 1)])
    if keep.size == 0:
        return none
    # all (sample, sprite) pairs within the sprite box (Chebyshev distance <= h), as arrays (no
    # per-sample lists); the pair order differs from a ball query's, the callers only take minima
    tree = cKDTree(np.c_[y[keep], x[keep]])
    pairs = cKDTree(np.c_[sy, sx]).sparse_distance_matrix(tree, h + 0.5, p=np.inf, output_type="ndarray")
    if pairs.size == 0:
        return none
    i = pairs["i"].astype(np.intp)
    j = keep[pairs["j"]]
    dy = sy[i] - y[j] + h
    dx = sx[i] - x[j] + h
    ok = (dy >= 0) & (dy < b.size) & (dx >= 0) & (dx < b.size)
    i, j, dy, dx = i[ok], j[ok], dy[ok], dx[ok]
    cov = b.footprint[sprite[j], dy, dx]
    return i[cov], j[cov]


def _mc_min_priority(rng: np.random.Generator, bed_stroma: NDArray[np.bool_], y: I32, x: I32,
                     sprite: NDArray[np.int16], prio: NDArray[np.int64], look: str = "default",
                     fixed: list[Stamps] | tuple[Stamps, ...] = ()) -> NDArray[np.int64]:
    """For random bed-stroma pixels: smallest priority of a lymphocyte covering it (-1 where a
    ``fixed`` TIL sprite of another kind, e.g. a plasma cell, covers it)."""
    flat = np.flatnonzero(bed_stroma)
    sy, sx = _sample_cells(rng, flat, None, _MC_SAMPLES, bed_stroma.shape[1])
    big = np.iinfo(np.int64).max
    minp = np.full(sy.size, big, np.int64)
    i, j = _covering(sy, sx, bed_stroma.shape, y, x, sprite, bank("lymphocyte", look))
    np.minimum.at(minp, i, prio[j])
    for st in fixed:
        i, _ = _covering(sy, sx, bed_stroma.shape, st.y, st.x, st.sprite, st.bank)
        np.minimum.at(minp, i, np.int64(-1))
    return minp


@dataclass
class FixedCells:
    """Cells decided before the bed lymphocytes are calibrated (``--hard``): lymphocytes that
    never count (lymphoid structures outside the bed) and TIL sprites of other kinds (plasma
    cells, centroblasts) whose coverage the calibration takes as given."""

    lymph_y: I32
    lymph_x: I32
    til_stamps: list[Stamps]


def place_cells(rng: np.random.Generator, layout: Layout, p: LayoutParams, orient: OrientationField,
                target_stil: float, width: int, height: int, *, look: str = "default",
                fixed: FixedCells | None = None, agg_scale: float = 1.0) -> CellSet:
    """Decide every nucleus and adipocyte of the slide (``look`` picks the sprite banks;
    ``fixed`` and ``agg_scale`` are the hard confounders' share, see ``hard_cells``)."""
    regions = layout.regions
    lr_w = regions.shape[1]
    mm2_per_lr = (MASK_FACTOR * SLIDE_MPP / 1000.0) ** 2
    stamps: list[Stamps] = []

    # --- fibroblasts (all stroma), oriented along the collagen
    fl = np.flatnonzero(regions == STROMA)
    n_fib = int(rng.poisson(p.fibroblast_per_mm2 * fl.size * mm2_per_lr))
    fy, fx = _sample_cells(rng, fl, None, n_fib, lr_w)
    fb = bank("fibroblast", look)
    per = len(fb) // N_ANGLES
    abin = np.round(orient.theta_at(fy, fx) / np.pi * N_ANGLES).astype(np.int64) % N_ANGLES
    stamps.append(Stamps("fibroblast", fy, fx, (abin * per + rng.integers(0, per, fy.size)).astype(np.int16), look))

    # --- adipocyte seeds
    ay, ax = _jittered_grid(rng, height, width, _px(p.adipocyte_um), 0.38, regions == FAT)
    keep = _lookup(regions, ay, ax) == FAT
    ay, ax = ay[keep], ax[keep]
    o = np.argsort(ay, kind="stable")
    ay, ax = ay[o], ax[o]

    # --- normal ducts: luminal cells and a flattened outer myoepithelial layer
    duct = regions == DUCT
    if duct.any():
        d_out = ndimage.distance_transform_edt((regions == DUCT) | (regions == LUMEN)).astype(np.float32)
        gy_, gx_ = np.gradient(d_out)
        ly_, lx_ = _jittered_grid(rng, height, width, _px(7.0), 0.3, duct)
        r = _lookup(regions, ly_, lx_)
        dd = d_out[ly_ // MASK_FACTOR, lx_ // MASK_FACTOR]
        lum = (r == DUCT) & (dd > 1.2)
        lb = bank("luminal", look)
        stamps.append(Stamps("luminal", ly_[lum], lx_[lum], rng.integers(0, len(lb), int(lum.sum())).astype(np.int16),
                             look))
        my_, mx_ = _jittered_grid(rng, height, width, _px(9.0), 0.25, duct)
        r = _lookup(regions, my_, mx_)
        cy_, cx_ = my_ // MASK_FACTOR, mx_ // MASK_FACTOR
        myo = (r == DUCT) & (d_out[np.clip(cy_, 0, None), cx_] <= 1.5)
        my_, mx_, cy_, cx_ = my_[myo], mx_[myo], cy_[myo], cx_[myo]
        # tangent = normal (gradient) rotated by 90 degrees
        ang = np.mod(np.arctan2(gy_[cy_, cx_], gx_[cy_, cx_]) + np.pi / 2, np.pi)
        mb = bank("myoepithelial", look)
        per_m = len(mb) // N_ANGLES
        mbin = np.round(ang / np.pi * N_ANGLES).astype(np.int64) % N_ANGLES
        stamps.append(Stamps("myoepithelial", my_, mx_,
                             (mbin * per_m + rng.integers(0, per_m, my_.size)).astype(np.int16), look))
        d_duct = ndimage.distance_transform_edt(~((regions == DUCT) | (regions == LUMEN))).astype(np.float32)
    else:
        d_duct = None

    # --- tumour nuclei: dense jittered lattice inside nests
    ty, tx = _jittered_grid(rng, height, width, _px(p.tumor_spacing_um), 0.32, regions == TUMOR)
    keep = (_lookup(regions, ty, tx) == TUMOR) & (rng.random(ty.size) > 0.06)
    tb = bank("tumor", look)
    stamps.append(Stamps("tumor", ty[keep], tx[keep], rng.integers(0, len(tb), int(keep.sum())).astype(np.int16), look))

    # --- debris specks on the glass
    bl = np.flatnonzero(regions == BACKGROUND)
    n_deb = int(rng.poisson(25.0 * bl.size * mm2_per_lr))
    dy_, dx_ = _sample_cells(rng, bl, None, n_deb, lr_w)
    stamps.append(Stamps("debris", dy_, dx_, rng.integers(0, len(bank("debris", look)), dy_.size).astype(np.int16),
                         look))

    # --- lymphocytes that never count: stroma outside the bed (+ around ducts), inside nests
    la = _lymph_area(look)
    lb_ = bank("lymphocyte", look)
    out_stroma = (regions == STROMA) & ~layout.bed
    fo = np.flatnonzero(out_stroma)
    n_out = int(fo.size * MASK_FACTOR**2 / la * -np.log(1.0 - p.lymph_outside_coverage))
    w_out = None
    if d_duct is not None and fo.size:
        w_out = (1.0 + 12.0 * np.exp(-d_duct.ravel()[fo] / (_px(25.0) / MASK_FACTOR))).astype(np.float64)
        n_out = int(n_out * 1.3)
    oy, ox = _sample_cells(rng, fo, w_out, n_out, lr_w)
    ft = np.flatnonzero(regions == TUMOR)
    n_it = int(ft.size * MASK_FACTOR**2 / la * p.intratumoral_coverage)
    iy, ix = _sample_cells(rng, ft, None, n_it, lr_w)
    fixed_y = np.concatenate([oy, iy] + ([fixed.lymph_y] if fixed is not None else []))
    fixed_x = np.concatenate([ox, ix] + ([fixed.lymph_x] if fixed is not None else []))
    fixed_til = fixed.til_stamps if fixed is not None else []

    # --- bed-stroma lymphocytes, calibrated to the target on random pixels
    bed_stroma = layout.bed_stroma
    target = float(target_stil)
    scale = 1.0
    for _attempt in range(3):
        by, bx = _bed_lymph_candidates(rng, layout, p, target, height, width, scale, look, agg_scale)
        all_y = np.concatenate([fixed_y, by])
        all_x = np.concatenate([fixed_x, bx])
        spr = rng.integers(0, len(lb_), all_y.size).astype(np.int16)
        prio = np.concatenate([np.full(fixed_y.size, -1, np.int64), np.arange(by.size, dtype=np.int64)])
        minp = _mc_min_priority(rng, bed_stroma, all_y, all_x, spr, prio, look, fixed_til)
        srt = np.sort(minp)
        k = int(np.ceil(target / 100.0 * srt.size))
        n_cov_all = int(np.count_nonzero(srt < np.iinfo(np.int64).max))
        if k <= n_cov_all or scale >= 4.0:
            break
        scale *= 2.0
    if k <= 0:
        n_sel = 0
    elif k <= n_cov_all:
        n_sel = int(max(srt[k - 1] + 1, 0))
    else:
        n_sel = by.size
    predicted = 100.0 * float(np.mean(minp < n_sel))
    sel = prio < n_sel
    stamps.append(Stamps("lymphocyte", all_y[sel], all_x[sel], spr[sel], look))
    stamps.extend(fixed_til)
    logger.debug("lymphocytes: %d bed of %d candidates, %d other; target %.2f predicted %.2f",
                 n_sel, by.size, fixed_y.size, target, predicted)
    return CellSet(
        stamps=stamps,
        adipocyte_y=ay,
        adipocyte_x=ax,
        target_stil=target,
        predicted_stil=predicted,
        n_lymph_bed=int(n_sel),
        n_lymph_other=int(fixed_y.size),
    )
