"""Tiles through OpenSlide (:meth:`weakstil.slide.Slide.read_region`): the path for every format
that is not JPEG-tiled TIFF/SVS (NDPI, MRXS, DICOM, JPEG 2000 SVS...) and the reference the other
paths are tested against."""

from __future__ import annotations

import numpy as np

from weakstil.slide import Slide


class OpenSlideTileReader:
    """Output tiles at ``mpp`` from an open :class:`Slide` (opened here when given a path)."""

    decoder = "openslide"

    def __init__(self, slide: Slide | str, mpp: float, slide_mpp: float | None = None):
        self._own = not isinstance(slide, Slide)
        self.slide = Slide.open(slide, slide_mpp=slide_mpp) if self._own else slide
        self.mpp = float(mpp)
        self.tiles_decoded = 0

    def read_tile(self, x: int, y: int, out: np.ndarray) -> None:
        out[...] = self.slide.read_region(int(x), int(y), out.shape[0], self.mpp)

    def read_batch(self, coords: np.ndarray, out: np.ndarray) -> None:
        for j, (x, y) in enumerate(coords):
            self.read_tile(int(x), int(y), out[j])

    def close(self) -> None:
        if self._own:
            self.slide.close()
