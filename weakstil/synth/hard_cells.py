"""Cell-level confounders of ``--hard`` (level-0 centres, like ``cells``).

Before the bed lymphocytes are calibrated (``fixed_cells``): the dense lymphocytes of the
lymphoid structures outside the bed (with centroblasts in germinal centres), and plasma cells,
mostly in bed stroma. Plasma cells are TILs (the TILs Working Group scores all mononuclear
inflammatory cells): their whole cell is TIL area, and the calibration draws fewer lymphocytes
so that the label still lands near the slide's target.

After placement (``add_confounder_cells``): a share of tumour nuclei, clustered by nest, turns
small and hyperchromatic (``tumor_dark``); a share of fibroblasts turns plump and dark, plus
extra dark fibroblasts in bed stroma; apoptotic bodies in stroma and nests; nuclear dust and
ghost cells in necrosis; tumour-like nuclei in DCIS ducts. None of these is TIL area.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from .cells import CellSet, FixedCells, Stamps, _jittered_grid, _lookup, _sample_cells
from .constants import DCIS, MASK_FACTOR, NECROSIS, SLIDE_MPP, STROMA, TUMOR
from .fields import smooth_field
from .hard import Confounders
from .hard_layout import HardLayout
from .layout import Layout, _threshold_fraction
from .orientation import OrientationField
from .sprites import N_ANGLES, bank

__all__ = ["add_confounder_cells", "fixed_cells"]

logger = logging.getLogger(__name__)
I32 = NDArray[np.int32]
_MM2_PER_MASK_PX = (MASK_FACTOR * SLIDE_MPP / 1000.0) ** 2


def _px(um: float) -> float:
    return um / SLIDE_MPP


def _area(kind: str, look: str) -> float:
    """Mean footprint of a sprite kind in level-0 px."""
    return float(bank(kind, look).footprint.sum(axis=(1, 2)).mean())


def _n_for_coverage(mask_px: int, coverage: float, kind: str, look: str) -> int:
    """Sprites for ``coverage`` of ``mask_px`` mask pixels with random (Poisson) overlap."""
    return int(mask_px * MASK_FACTOR**2 / _area(kind, look) * -np.log(1.0 - min(coverage, 0.97)))


def _stamps(rng: np.random.Generator, kind: str, y: I32, x: I32, look: str) -> Stamps:
    return Stamps(kind, y, x, rng.integers(0, len(bank(kind, look)), y.size).astype(np.int16), look)


def _in(mask: NDArray[np.bool_], n: int, rng: np.random.Generator) -> tuple[I32, I32]:
    return _sample_cells(rng, np.flatnonzero(mask), None, n, mask.shape[1])


def _clustered(rng: np.random.Generator, where: NDArray[np.bool_], n: int, share: float,
               sigma_um: tuple[float, float], height: int, width: int) -> tuple[I32, I32]:
    """``n`` points in ``where``: ``share`` of them in gaussian clusters, the rest scattered."""
    n_cl = int(n * share)
    ys, xs = _in(where, n - n_cl, rng)
    if n_cl > 0 and where.any():
        k = max(1, n_cl // 25)
        cy, cx = _in(where, k, rng)
        sizes = rng.multinomial(n_cl, np.full(k, 1.0 / k))
        sig = np.repeat(rng.uniform(_px(sigma_um[0]), _px(sigma_um[1]), k), sizes)
        my = np.round(np.repeat(cy, sizes) + rng.normal(0, 1, n_cl) * sig).astype(np.int32)
        mx = np.round(np.repeat(cx, sizes) + rng.normal(0, 1, n_cl) * sig).astype(np.int32)
        ok = (my >= 0) & (my < height) & (mx >= 0) & (mx < width)
        my, mx = my[ok], mx[ok]
        ok = where[my // MASK_FACTOR, mx // MASK_FACTOR]
        ys, xs = np.concatenate([ys, my[ok]]), np.concatenate([xs, mx[ok]])
    return ys.astype(np.int32), xs.astype(np.int32)


def fixed_cells(rng: np.random.Generator, layout: Layout, hl: HardLayout, c: Confounders, target_stil: float,
                width: int, height: int, look: str) -> tuple[FixedCells, dict[str, int]]:
    """Lymphoid-structure lymphocytes, centroblasts and plasma cells (decided before calibration)."""
    regions = layout.regions
    follicle = hl.lymphoid & ~hl.capsule & ~hl.germinal
    ly, lx = _in(follicle, _n_for_coverage(int(follicle.sum()), rng.uniform(0.6, 0.85), "lymphocyte", look), rng)
    gy, gx = _in(hl.germinal, _n_for_coverage(int(hl.germinal.sum()), 0.3, "lymphocyte", look), rng)
    sy, sx = _in(hl.capsule, _n_for_coverage(int(hl.capsule.sum()), 0.04, "lymphocyte", look), rng)
    cby, cbx = _in(hl.germinal, _n_for_coverage(int(hl.germinal.sum()), 0.35, "centroblast", look), rng)
    til = [_stamps(rng, "centroblast", cby, cbx, look)]
    # plasma cells: a share of the bed's TIL area, clustered like an infiltrate; a few outside
    bed_stroma = layout.bed_stroma
    fp = 0.6 * c.plasma_cells * float(np.clip(target_stil / 100.0, 0.0, 1.0))
    n_pl = _n_for_coverage(int(bed_stroma.sum()), fp, "plasma", look) if c.plasma_cells > 0.05 else 0
    py, px = _clustered(rng, bed_stroma, n_pl, 0.6, (20.0, 50.0), height, width)
    out = (regions == STROMA) & ~layout.bed & ~hl.lymphoid
    n_po = _n_for_coverage(int(out.sum()), 0.15 * fp, "plasma", look) if n_pl else 0
    oy, ox = _in(out, n_po, rng)
    til.append(_stamps(rng, "plasma", np.concatenate([py, oy]), np.concatenate([px, ox]), look))
    fixed = FixedCells(lymph_y=np.concatenate([ly, gy, sy]).astype(np.int32),
                       lymph_x=np.concatenate([lx, gx, sx]).astype(np.int32), til_stamps=til)
    counts = {"n_lymphoid_lymphocytes": int(fixed.lymph_y.size), "n_centroblasts": int(cby.size),
              "n_plasma_bed": int(py.size), "n_plasma_other": int(oy.size)}
    return fixed, counts


def _split(stamps: list[Stamps], kind: str, pick: NDArray[np.bool_], new: Stamps) -> None:
    """Replace the stamps of ``kind`` by the unpicked ones, and add ``new``."""
    for i, st in enumerate(stamps):
        if st.kind == kind:
            stamps[i] = Stamps(kind, st.y[~pick], st.x[~pick], st.sprite[~pick], st.look)
            break
    stamps.append(new)


def add_confounder_cells(rng: np.random.Generator, cells: CellSet, layout: Layout, c: Confounders,
                         orient: OrientationField, width: int, height: int, look: str) -> dict[str, int]:
    """Add the non-TIL confounder cells to ``cells`` (in place); returns their counts."""
    regions = layout.regions
    counts: dict[str, int] = {}
    # hyperchromatic small tumour nuclei, clustered by nest
    tum = cells.by_kind("tumor")
    nests = regions == TUMOR
    field = smooth_field(rng, regions.shape, 120.0 / (MASK_FACTOR * SLIDE_MPP))
    zone = field > _threshold_fraction(field, nests, 0.9 * c.tumor_dark) if nests.any() else field > np.inf
    in_zone = zone[tum.y // MASK_FACTOR, tum.x // MASK_FACTOR]
    p_dark = np.where(in_zone, 0.85, 0.08 * c.tumor_dark) if c.tumor_dark > 0.02 else np.zeros(len(tum))
    pick = rng.random(len(tum)) < p_dark
    _split(cells.stamps, "tumor", pick, _stamps(rng, "tumor_dark", tum.y[pick], tum.x[pick], look))
    counts["n_tumor_dark"] = int(pick.sum())
    # plump dark fibroblasts: a share of the existing ones plus extra in bed stroma (desmoplasia)
    fib = cells.by_kind("fibroblast")
    per, per_d = len(bank("fibroblast", look)) // N_ANGLES, len(bank("fibroblast_dark", look)) // N_ANGLES
    pick = rng.random(len(fib)) < 0.55 * c.fibroblast_dark
    bed_stroma = layout.bed_stroma
    ey, ex = _in(bed_stroma, int(rng.poisson(500.0 * c.fibroblast_dark * bed_stroma.sum() * _MM2_PER_MASK_PX)), rng)
    abin = np.concatenate([fib.sprite[pick] // per,
                           np.round(orient.theta_at(ey, ex) / np.pi * N_ANGLES).astype(np.int64) % N_ANGLES])
    dy, dx = np.concatenate([fib.y[pick], ey]), np.concatenate([fib.x[pick], ex])
    spr = (abin * per_d + rng.integers(0, per_d, dy.size)).astype(np.int16)
    _split(cells.stamps, "fibroblast", pick, Stamps("fibroblast_dark", dy, dx, spr, look))
    counts["n_fibroblast_dark"] = int(dy.size)
    # apoptotic bodies (stroma, nests), nuclear dust and ghost cells (necrosis)
    s = c.apoptotic_debris
    nec = regions == NECROSIS
    stroma = regions == STROMA
    dens = [(bed_stroma, 1200.0 * s), (stroma & ~layout.bed, 150.0 * s), (nests, 900.0 * s), (nec, 15000.0)]
    parts = [_in(m, int(rng.poisson(d * m.sum() * _MM2_PER_MASK_PX)), rng) for m, d in dens]
    ay, ax = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    cells.stamps.append(_stamps(rng, "apoptotic", ay, ax, look))
    gy, gx = _in(nec, int(rng.poisson(3500.0 * nec.sum() * _MM2_PER_MASK_PX)), rng)
    cells.stamps.append(_stamps(rng, "ghost", gy, gx, look))
    counts["n_apoptotic"], counts["n_ghost"] = int(ay.size), int(gy.size)
    # DCIS: a dense lattice of tumour-like nuclei, some dark
    dcis = regions == DCIS
    ty, tx = _jittered_grid(rng, height, width, _px(rng.uniform(12.5, 15.0)), 0.32, dcis)
    keep = _lookup(regions, ty, tx) == DCIS
    ty, tx = ty[keep], tx[keep]
    dark = rng.random(ty.size) < 0.25
    cells.stamps.append(_stamps(rng, "tumor", ty[~dark], tx[~dark], look))
    cells.stamps.append(_stamps(rng, "tumor_dark", ty[dark], tx[dark], look))
    counts["n_dcis_nuclei"] = int(ty.size)
    logger.debug("hard cells: %s", counts)
    return counts
