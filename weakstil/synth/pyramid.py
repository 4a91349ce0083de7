"""Streaming pyramidal tiled-TIFF writer (JPEG tiles, OpenSlide generic-tiff)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile
from numpy.typing import NDArray

from .constants import MIN_LEVEL_SIZE, PYRAMID_STEP, TIFF_TILE

__all__ = ["downsample_mean", "level_shapes", "strip_buffer", "write_pyramid"]

logger = logging.getLogger(__name__)
U8 = NDArray[np.uint8]


def level_shapes(width: int, height: int) -> list[tuple[int, int]]:
    """(width, height) of every pyramid level: x4 steps while the smaller side >= 256."""
    shapes = [(width, height)]
    w, h = width, height
    while True:
        w, h = -(-w // PYRAMID_STEP), -(-h // PYRAMID_STEP)
        if min(w, h) < MIN_LEVEL_SIZE:
            break
        shapes.append((w, h))
    return shapes


def downsample_mean(img: U8, k: int = PYRAMID_STEP) -> U8:
    """Area-average ``k`` x ``k`` blocks, rounded (edge blocks padded by replication)."""
    h, w = img.shape[:2]
    ph, pw = (-h) % k, (-w) % k
    if ph or pw:
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="edge")
    rows = img[0::k].astype(np.uint16)
    for i in range(1, k):
        rows += img[i::k]
    s = rows[:, 0::k].copy()
    for i in range(1, k):
        s += rows[:, i::k]
    s += (k * k) // 2
    s //= k * k
    return s.astype(np.uint8)


def strip_buffer(width: int, rows: int) -> U8:
    """White buffer for ``rows`` image rows, padded to whole TIFF tiles."""
    t = TIFF_TILE
    buf = np.empty((-(-rows // t) * t, -(-width // t) * t, 3), np.uint8)
    buf[rows:] = 255
    buf[:rows, width:] = 255
    return buf


def write_pyramid(path: Path, width: int, height: int, strips: Iterable[tuple[int, int, U8]], *, mpp: float,
                  quality: int = 88, description: str = "", thumb_size: int = 1024) -> tuple[int, U8]:
    """Write level 0 from ``strips`` and build the lower levels.

    ``strips`` yields ``(y0, rows, buf)`` top to bottom: ``buf`` (see
    ``strip_buffer``) holds image rows ``y0 .. y0 + rows`` in its top-left corner
    and is padded to whole tiles; ``rows`` is a multiple of 256 except at the end.

    Returns the level count and a thumbnail: the smallest level (from x4 down) whose
    longer side is still >= ``thumb_size``, else the x4 level.
    """
    shapes = level_shapes(width, height)
    t = TIFF_TILE
    n_tx = -(-width // t)
    # the x4 level is always built (it is also the thumbnail source of small slides)
    lvl1 = np.empty((-(-height // PYRAMID_STEP), -(-width // PYRAMID_STEP), 3), np.uint8)

    def tiles() -> Iterator[U8]:
        expect = 0
        for y0, sh, buf in strips:
            n_ty = -(-sh // t)
            if y0 != expect or buf.shape[0] < n_ty * t or buf.shape[1] < n_tx * t:
                raise ValueError(f"strip at {y0} (expected {expect}) of shape {buf.shape}")
            if y0 % PYRAMID_STEP:
                raise ValueError("strip origin must be a multiple of the pyramid step")
            expect += sh
            d = downsample_mean(buf[:sh, :width])
            lvl1[y0 // PYRAMID_STEP:y0 // PYRAMID_STEP + d.shape[0]] = d
            for ty in range(n_ty):
                for tx in range(n_tx):
                    yield buf[ty * t:(ty + 1) * t, tx * t:(tx + 1) * t]
        if expect != height:
            raise ValueError(f"strips cover {expect} rows, expected {height}")

    bigtiff = width * height * 3 > 2**31
    opts = dict(tile=(t, t), compression="jpeg", compressionargs={"level": int(quality)},
                photometric="rgb", resolutionunit="CENTIMETER", metadata=None)
    with tifffile.TiffWriter(path, bigtiff=bigtiff) as tw:
        tw.write(tiles(), shape=(height, width, 3), dtype=np.uint8, subifds=0,
                 resolution=(1e4 / mpp, 1e4 / mpp), description=description or None,
                 software="weakstil.synth", **opts)
        prev: U8 = lvl1
        thumb: U8 = lvl1
        for k, (w, h) in enumerate(shapes[1:], start=1):
            if k > 1:
                prev = downsample_mean(prev)
            if prev.shape[:2] != (h, w):
                raise AssertionError(f"level {k}: {prev.shape} != {(h, w)}")
            tw.write(prev, subfiletype=1, resolution=(1e4 / (mpp * width / w), 1e4 / (mpp * height / h)), **opts)
            if max(w, h) >= thumb_size:
                thumb = prev
    return len(shapes), thumb
