"""Which reader a slide's tiles come from: JPEG tiles decoded here, or OpenSlide.

:func:`plan_reader` decides once per slide, in the main process, and returns a picklable
:class:`ReadSpec` that any process (a decode worker) can open. The decision and its reason are
recorded with the features (``decode`` provenance).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

import numpy as np

from weakstil.decode.jpeg_tiles import JpegPlan, JpegStreamError, decoder_name, plan_jpeg
from weakstil.slide import Slide

log = logging.getLogger(__name__)


class ReadPath(str, Enum):
    """Where tile pixels come from."""

    JPEG = "jpeg-tiles"  #: compressed TIFF tiles, libjpeg-turbo on the CPU
    OPENSLIDE = "openslide"
    NVJPEG = "jpeg-tiles-gpu"  #: compressed TIFF tiles, nvJPEG (torchvision) on the GPU


class TileReader(Protocol):
    decoder: str
    tiles_decoded: int

    def read_batch(self, coords: np.ndarray, out: np.ndarray) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ReadSpec:
    """How to read one slide's tiles at ``mpp``; opens in any process."""

    slide_path: str
    slide_mpp: float  #: the resolved scan resolution (metadata or override)
    mpp: float
    tile_px: int
    jpeg: JpegPlan | None = None  #: None: OpenSlide
    reason: str = ""  #: why OpenSlide (when it is)
    whiten_black: bool = False  #: the slide's black unscanned area is read as white glass (:mod:`weakstil.unscanned`)

    @property
    def path(self) -> ReadPath:
        return ReadPath.JPEG if self.jpeg is not None else ReadPath.OPENSLIDE

    def open(self) -> TileReader:
        if self.jpeg is not None:
            reader = self.jpeg.open()
        else:
            from weakstil.decode.openslide_reader import OpenSlideTileReader

            reader = OpenSlideTileReader(self.slide_path, self.mpp, slide_mpp=self.slide_mpp)
        if self.whiten_black:
            from weakstil.decode.whitening import WhiteningReader

            return WhiteningReader(reader)
        return reader

    def fall_back(self, reason: str) -> ReadSpec:
        return replace(self, jpeg=None, reason=reason)

    def describe(self) -> dict[str, object]:
        d: dict[str, object] = {"path": self.path.value}
        if self.jpeg is not None:
            d.update(self.jpeg.describe())
            d["decoder"] = decoder_name()
        else:
            d["decoder"] = "openslide"
            d["reason"] = self.reason
        if self.whiten_black:
            from weakstil.unscanned import RECORD

            d["background"] = RECORD
        return d


def plan_reader(slide: Slide, mpp: float, tile_px: int, prefer_jpeg: bool = True) -> ReadSpec:
    """The reader for ``slide`` at ``mpp``: JPEG tiles when the level allows it, else OpenSlide."""
    base = ReadSpec(str(slide.path), float(slide.mpp), float(mpp), int(tile_px))
    plan: JpegPlan | str = "OpenSlide asked for"
    if prefer_jpeg:
        try:
            plan = plan_jpeg(slide, mpp)
        except Exception as exc:  # odd files must never stop embedding: OpenSlide reads them
            plan = f"{type(exc).__name__}: {exc}"
    from weakstil.errors import SlideError
    from weakstil.unscanned import black_background

    try:  # after the plan: a failed OpenSlide read leaves the slide's handle failed
        base = replace(base, whiten_black=black_background(slide))
    except SlideError:  # an overview OpenSlide cannot read (a damaged tile): the readers say where
        pass
    if not prefer_jpeg:
        return replace(base, reason=str(plan))
    if isinstance(plan, str):
        log.debug("%s: tiles through OpenSlide (%s)", slide.path, plan)
        return replace(base, reason=plan)
    return replace(base, jpeg=plan)


__all__ = ["JpegStreamError", "ReadPath", "ReadSpec", "TileReader", "plan_reader"]
