"""The three image primitives of the per-tile measurements (:mod:`weakstil.tilestats`), from OpenCV.

OpenCV (``opencv-python-headless``, a dependency) does them several times faster than numpy/scipy,
single-threaded (the parallelism is one measurement process per core). Where it cannot be imported
(a bare GPU machine given only the wheels it needs), numpy/scipy give the same results: a table
lookup is exact, box counts are exact integers, and both label 4-connected components in raster
order of their first pixel (tested equal in ``tests/test_tilestats.py``).
"""

from __future__ import annotations

import functools
import logging
from typing import Protocol

import numpy as np

log = logging.getLogger(__name__)


class ImageOps(Protocol):
    name: str

    def lut(self, tile: np.ndarray, table: np.ndarray) -> np.ndarray:
        """``table[tile]`` for a uint8 (H, W, 3) tile and a 256-entry float32 table."""

    def label4(self, mask: np.ndarray) -> tuple[int, np.ndarray]:
        """(number of 4-connected components, int32 labels 1..n, 0 outside) of a uint8 (H, W) mask."""

    def box_count(self, mask: np.ndarray, size: int, limit: int | None = None) -> np.ndarray:
        """(H, W): ``mask`` pixels in the ``size`` x ``size`` box around each pixel, edges mirrored
        (``scipy.ndimage.uniform_filter(mode="reflect")`` x size², exactly); uint16 when ``limit``
        (the largest number the caller makes from a count, default size²) fits in it, else int32."""


class OpenCVOps:
    name = "opencv"

    def __init__(self, cv2):
        cv2.setNumThreads(1)
        cv2.ocl.setUseOpenCL(False)
        self.cv2 = cv2

    def lut(self, tile, table):
        return self.cv2.LUT(tile, table)

    def label4(self, mask):
        n, labels = self.cv2.connectedComponentsWithAlgorithm(mask, 4, self.cv2.CV_32S, self.cv2.CCL_SAUF)
        return n - 1, labels

    def box_count(self, mask, size, limit=None):
        depth = self.cv2.CV_16U if _narrow(size, limit) else self.cv2.CV_32S
        return self.cv2.boxFilter(mask, depth, (size, size), normalize=False, borderType=self.cv2.BORDER_REFLECT)


class NumpyOps:
    name = "numpy"

    def lut(self, tile, table):
        return table[tile]

    def label4(self, mask):
        from scipy import ndimage as ndi

        labels, n = ndi.label(mask)
        return n, labels.astype(np.int32, copy=False)

    def box_count(self, mask, size, limit=None):
        r = size // 2
        out = mask.astype(np.int32)
        for axis in (0, 1):  # running sums along each axis of the mirrored image
            pad = [(0, 0), (0, 0)]
            pad[axis] = (r + 1, r)
            c = np.pad(out, pad, mode="symmetric").cumsum(axis, dtype=np.int32)
            hi = [slice(None)] * 2
            lo = [slice(None)] * 2
            hi[axis], lo[axis] = slice(size, None), slice(None, -size)
            out = c[tuple(hi)] - c[tuple(lo)]
        return out.astype(np.uint16) if _narrow(size, limit) else out


def _narrow(size: int, limit: int | None) -> bool:
    """Whether box counts (and ``limit``, the most the caller makes of one) fit in uint16."""
    return max(size * size, limit or 0) < 2 ** 16


@functools.lru_cache(maxsize=2)
def image_ops(backend: str = "auto") -> ImageOps:
    """``opencv``, ``numpy`` or ``auto`` (OpenCV when it imports)."""
    if backend in ("auto", "opencv"):
        try:
            import cv2
        except ImportError:
            if backend == "opencv":
                raise
            log.warning("OpenCV (opencv-python-headless) is missing: tile measurements use numpy/scipy "
                        "(same numbers, about twice the CPU time)")
        else:
            return OpenCVOps(cv2)
    return NumpyOps()
