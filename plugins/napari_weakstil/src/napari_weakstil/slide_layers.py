"""Whole-slide images as lazy multiscale napari data, in micrometres.

Every pyramid level becomes one dask array whose chunks are read from OpenSlide only when
napari asks for them (the visible field of view at the level that suits the zoom), so a
100,000-pixel slide opens in a moment and memory follows the screen, not the slide.

World coordinates are micrometres: level 0 gets ``scale = (mpp, mpp)`` and napari derives the
coarser levels' scale from their shapes, so result layers placed in µm line up at every zoom.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from weakstil.settings import SLIDE_FILE_SUFFIXES

log = logging.getLogger(__name__)

#: Side of a dask chunk in level pixels: a few OpenSlide tiles, small enough to load quickly.
CHUNK_PX = 1024
#: Coarsest level napari should get: below this (px per side) a zoomed-out view reads little.
MAX_COARSEST_PX = 2048
#: OpenSlide's formats: what the slide reader claims.
SLIDE_SUFFIXES = SLIDE_FILE_SUFFIXES


@dataclass
class SlidePyramid:
    """An open slide's levels as dask arrays (finest first) and what is needed to place them."""

    path: Path
    levels: list[Any]  #: dask arrays (h, w, 3) uint8, finest first
    mpp: float | None  #: level-0 µm/px; None when the file records none (then world units are pixels)
    mpp_source: str
    vendor: str
    fingerprint: str | None = None  #: the scan's content fingerprint (weakstil.fingerprint): which scan is shown

    @property
    def scale(self) -> tuple[float, float]:
        s = self.mpp if self.mpp is not None else 1.0
        return (s, s)

    @property
    def units(self) -> str:
        return "um" if self.mpp is not None else "pixel"

    def layer_data(self, name: str | None = None) -> tuple[list[Any], dict[str, Any], str]:
        """``(data, kwargs, 'image')`` as a napari reader returns it."""
        kwargs: dict[str, Any] = {
            "name": name or self.path.name,
            "rgb": True,
            "multiscale": True,
            "scale": self.scale,
            "units": (self.units, self.units),
            "metadata": {
                "weakstil_kind": "slide",
                "slide_path": str(self.path),
                "slide_id": slide_id(self.path),
                "mpp": self.mpp,
                "mpp_source": self.mpp_source,
                "vendor": self.vendor,
                "slide_fingerprint": self.fingerprint,
            },
        }
        return self.levels, kwargs, "image"


def slide_id(path: str | Path) -> str:
    from weakstil.slide import slide_id_from_path

    return slide_id_from_path(path)


def open_pyramid(path: str | Path, slide_mpp: float | None = None, chunk_px: int = CHUNK_PX) -> SlidePyramid:
    """Open ``path`` as a lazy pyramid; raises :class:`weakstil.errors.SlideError` for a bad file.

    A slide without µm/px in its metadata still opens (in pixel units, with a warning) so it can
    be looked at; scoring it needs ``slide_mpp``.
    """
    from weakstil.errors import NoMppError
    from weakstil.slide import Slide
    from weakstil.slide_backend import open_backend

    path = Path(path)
    try:
        slide = Slide.open(path, slide_mpp=slide_mpp)
        backend, mpp, source = slide.backend, slide.mpp, slide.mpp_source.value
    except NoMppError:  # (decided on the class: the plain-image error also says "microns-per-pixel")
        log.warning("%s: no µm/px in the file; shown in pixel units (scoring needs --slide-mpp)", path)
        backend, mpp, source = open_backend(path), None, "none"
    handle = _Handle(backend, path)
    levels = [_level_array(handle, level, chunk_px) for level in range(backend.level_count)]
    levels += _extra_levels(levels[-1], chunk_px)
    vendor = str(backend.properties.get("openslide.vendor", ""))
    # the backend stays open as long as the levels' chunk readers (napari's layer) hold it
    return SlidePyramid(path=path, levels=levels, mpp=mpp, mpp_source=source, vendor=vendor,
                        fingerprint=_fingerprint(backend))


def _fingerprint(backend: Any) -> str | None:
    """The content fingerprint of the scan as opened, so that a result opened over this layer later
    can tell whether it was made from these pixels (the file may be replaced meanwhile)."""
    from weakstil.fingerprint import backend_fingerprint

    try:
        return backend_fingerprint(backend)
    except OSError:
        return None


#: What a chunk whose pixels cannot be decoded shows: mid grey, neither tissue nor glass.
DAMAGED_GREY = 128


class _Handle:
    """The slide backend the chunk readers share. A damaged file (a tile's JPEG cut short) raised OpenSlide's error
    in napari at every redraw, and OpenSlide's handle fails every later read after one error: a read that fails is
    tried once more on a fresh handle (another chunk's error may have spoilt this one), then shown grey with one
    warning naming the file (fault matrix h48d)."""

    def __init__(self, backend: Any, path: Path):
        import threading

        self.backend, self.path, self.warned, self.lock = backend, path, False, threading.Lock()

    def read(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        from weakstil.slide import rgba_to_rgb

        for _ in range(2):
            backend = self.backend
            try:
                return rgba_to_rgb(np.asarray(backend.read_region(location, level, size)))
            except Exception as exc:  # noqa: BLE001 - OpenSlideError, or an OSError of the file
                error = exc
                self._reopen(backend)
        if not self.warned:
            self.warned = True
            log.warning("%s: pixels at level %d, %d,%d cannot be decoded (%s): shown grey. Fix: the file may be "
                        "damaged; copy or export it again", self.path, level, *location, str(error)[:120])
        return np.full((size[1], size[0], 3), DAMAGED_GREY, np.uint8)

    def _reopen(self, failed: Any) -> None:
        """A fresh handle in place of ``failed``, unless another chunk's reader replaced it already."""
        from weakstil.slide_backend import open_backend

        with self.lock:
            if self.backend is failed:
                try:
                    self.backend = open_backend(self.path)
                except Exception:  # noqa: BLE001 - the file is gone or unreadable now: keep the old handle
                    pass


def _level_array(handle: _Handle, level: int, chunk_px: int):
    """One pyramid level as a dask array whose chunks are reads from the slide backend."""
    import dask.array as da

    w, h = handle.backend.level_dimensions[level]
    downsample = float(handle.backend.level_downsamples[level])
    def read_chunk(block_info=None) -> np.ndarray:
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        # read_region takes the top-left in level-0 pixels and the size in level pixels; OpenSlide
        # is thread-safe, so dask's threads read chunks in parallel from one handle
        location = (int(round(x0 * downsample)), int(round(y0 * downsample)))
        return handle.read(location, level, (x1 - x0, y1 - y0))

    chunks = (_chunk_sizes(h, chunk_px), _chunk_sizes(w, chunk_px), (3,))
    return da.map_blocks(read_chunk, chunks=chunks, dtype=np.uint8, name=f"openslide-{id(handle)}-{level}")


def _extra_levels(coarsest, chunk_px: int) -> list:
    """Lazy 4x-coarser levels below a file's coarsest one while it is still large (single-level
    TIFFs, small pyramids): zoomed out, napari then reads a few coarse chunks, not the whole level."""
    import dask.array as da

    extra = []
    level = coarsest
    while max(level.shape[:2]) > MAX_COARSEST_PX:
        h, w = level.shape[0] // 4 * 4, level.shape[1] // 4 * 4
        level = da.coarsen(np.mean, level[:h, :w], {0: 4, 1: 4}).astype(np.uint8).rechunk((chunk_px, chunk_px, 3))
        extra.append(level)
    return extra


def _chunk_sizes(n: int, chunk: int) -> tuple[int, ...]:
    full, rest = divmod(n, chunk)
    return (chunk,) * full + ((rest,) if rest else ())


#: How a slide layer got a µm/px that its file does not record: entered in the widget, or from its result.
ENTERED_MPP = ("override", "result")


def set_scan_mpp(layer: Any, mpp: float) -> None:
    """The slide layer shown at the Scan µm/px it was scored with (its file records none, or it was entered)."""
    layer.scale = (mpp, mpp)
    layer.units = ("um", "um")
    layer.metadata["mpp"] = mpp
    layer.metadata["mpp_source"] = "override"


def scan_mpp_override(layer: Any) -> float | None:
    """The µm/px a slide layer was given (scored with an entered Scan µm/px, or from its result), else None."""
    if layer is None:
        return None
    meta = layer.metadata
    return float(meta["mpp"]) if meta.get("mpp") and meta.get("mpp_source") in ENTERED_MPP else None


def scored_upsampling(layer: Any) -> bool:
    """Whether the slide layer was last scored with Allow upsampling (--allow-upsample) ticked."""
    return bool(layer is not None and layer.metadata.get("allow_upsample"))
