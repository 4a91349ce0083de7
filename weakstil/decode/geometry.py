"""Pure geometry of output tiles over a tiled pyramid level (no I/O): which level pixels an output
tile comes from, which level tiles a batch of them covers, the DCT scale to decode at, and the
resize that matches :meth:`weakstil.slide.Slide.read_region`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: DCT-domain reductions libjpeg-turbo does while decoding (exact for tiles a multiple of 8 px).
DCT_SCALES = (8, 4, 2)
#: A DCT-reduced level may be this much coarser than the target (the resize then enlarges it by
#: at most this much): 40x scans are 0.2497-0.2634 µm/px, i.e. 0.499-0.527 µm/px at scale 1/2.
DCT_COARSER_TOLERANCE = 0.06


def choose_dct_scale(level_mpp: float, target_mpp: float, tile_w: int, tile_h: int) -> int:
    """The largest DCT reduction (8, 4, 2 or 1) whose result is not coarser than ``target_mpp``
    by more than :data:`DCT_COARSER_TOLERANCE` and divides the tile size."""
    for k in DCT_SCALES:
        if level_mpp * k <= target_mpp * (1 + DCT_COARSER_TOLERANCE) and tile_w % (8 * k) == 0 \
                and tile_h % (8 * k) == 0:
            return k
    return 1


@dataclass(frozen=True)
class Region:
    """Where one output tile comes from, in decoded-level pixels."""

    ix: int  #: integer top-left
    iy: int
    fx: float  #: sub-pixel offset of the true top-left
    fy: float
    w: int  #: source size that becomes the output (as Slide.read_region: ceil)
    h: int

    @property
    def read_w(self) -> int:
        return self.w + (1 if self.fx > 0 else 0)

    @property
    def read_h(self) -> int:
        return self.h + (1 if self.fy > 0 else 0)


def tile_region(x: float, y: float, out_w: int, out_h: int, px_per_out: float) -> Region:
    """The decoded-level region of an output tile at ``(x, y)`` (decoded-level px, maybe fractional)
    of ``out`` px whose pixels each cover ``px_per_out`` decoded pixels."""
    w = max(1, math.ceil(out_w * px_per_out - 1e-6))
    h = max(1, math.ceil(out_h * px_per_out - 1e-6))
    ix, iy = math.floor(x + 1e-6), math.floor(y + 1e-6)
    fx, fy = x - ix, y - iy
    return Region(ix, iy, fx if fx > 1e-6 else 0.0, fy if fy > 1e-6 else 0.0, w, h)


def tile_regions(x: np.ndarray, y: np.ndarray, out_px: int, px_per_out: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, int]:
    """:func:`tile_region` for arrays of positions (decoded-level px): ``(ix, iy, fx, fy, w, h)``,
    the same numbers element by element, without a Python object per tile."""
    w = h = max(1, math.ceil(out_px * px_per_out - 1e-6))
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    ix, iy = np.floor(x + 1e-6).astype(np.int64), np.floor(y + 1e-6).astype(np.int64)
    fx, fy = x - ix, y - iy
    return ix, iy, np.where(fx > 1e-6, fx, 0.0), np.where(fy > 1e-6, fy, 0.0), w, h


def tiles_covered(ix: np.ndarray, iy: np.ndarray, w: int, h: int, tile_w: int, tile_h: int, across: int,
                  valid_w: int, valid_h: int) -> np.ndarray:
    """Sorted indices of the level tiles that regions ``[ix, ix + w) x [iy, iy + h)`` cover inside
    the valid ``valid_w x valid_h`` extent (vectorised: no loop per region)."""
    ix, iy = np.asarray(ix, np.int64), np.asarray(iy, np.int64)
    x0, y0 = np.maximum(ix, 0), np.maximum(iy, 0)
    x1, y1 = np.minimum(ix + w, valid_w), np.minimum(iy + h, valid_h)
    ok = (x1 > x0) & (y1 > y0)
    if not ok.any():
        return np.empty(0, np.int64)
    x0, y0, x1, y1 = x0[ok], y0[ok], x1[ok], y1[ok]
    tx0, ty0 = x0 // tile_w, y0 // tile_h
    nx, ny = (x1 - 1) // tile_w - tx0 + 1, (y1 - 1) // tile_h - ty0 + 1
    kx, ky = np.arange(int(nx.max())), np.arange(int(ny.max()))
    tx = tx0[:, None, None] + kx[None, None, :]
    ty = ty0[:, None, None] + ky[None, :, None]
    keep = (kx[None, None, :] < nx[:, None, None]) & (ky[None, :, None] < ny[:, None, None])
    return np.unique((ty * across + tx)[keep])


def resize_region(region: np.ndarray, r: Region, out: np.ndarray, px_per_out: float | None = None) -> None:
    """Resize ``region`` (``read_h x read_w``) into ``out`` exactly as Slide.read_region does
    (``resample.resize_tile``: a box reduction by the whole factor, then ``READ_FILTER``), the sub-pixel
    offset folded into the box.

    ``px_per_out``: resize the tile's true extent (``out * px_per_out`` pixels) instead of the
    ``ceil`` of it that Slide.read_region resizes. At level-0 resolution the ceil adds under a
    pixel in 450; on a DCT-reduced level (a 0.499 µm/px scan at 1/2, read at 1.0) 225 pixels for
    224.45 stretch the tile by 0.25 %, half a pixel at its far edge (pixels 7.1 -> 3.0 grey levels
    from OpenSlide's on CMU-1-Small-Region at 1 µm/px)."""
    from PIL import Image

    from weakstil.resample import resize_tile

    oh, ow = out.shape[:2]
    if r.fx == 0 and r.fy == 0 and (r.w, r.h) == (ow, oh):
        out[...] = region[:oh, :ow]
        return
    im = Image.fromarray(region)
    if px_per_out is not None:
        res = resize_tile(im, (ow, oh), box=(r.fx, r.fy, r.fx + ow * px_per_out, r.fy + oh * px_per_out))
    elif r.fx == 0 and r.fy == 0:
        res = resize_tile(im, (ow, oh))
    else:
        res = resize_tile(im, (ow, oh), box=(r.fx, r.fy, r.fx + r.w, r.fy + r.h))
    out[...] = np.asarray(res)
