"""Tiles straight from the JPEG-compressed levels of a TIFF/SVS, decoded with libjpeg-turbo.

OpenSlide decodes every JPEG tile of a region one call at a time, holding per-slide locks. Here
the compressed tiles are read with tifffile (``page.dataoffsets`` / ``databytecounts``), completed
with the level's JPEGTables (Aperio stores abbreviated streams) and decoded by libjpeg-turbo via
``simplejpeg`` (Pillow when it is missing: the same library, a little more overhead), with the
DCT-domain downscaling of libjpeg-turbo when the level is finer than needed (a 40x scan read at
0.5 µm/px decodes at scale 1/2). Decoded tiles are kept in a small LRU, because neighbouring
output tiles share JPEG tiles.

The geometry is that of :meth:`weakstil.slide.Slide.read_region`: the same pyramid level, the same
``ceil(out * scale / downsample)`` region size, the same Pillow resize (``resample.resize_tile``) and white outside
the level, so at scale 1 the pixels are OpenSlide's bit for bit (libjpeg-turbo both ways). The
differences: at a DCT scale < 1 the reduction happens in the decoder, and where a region starts
between level pixels (levels > 0) the sub-pixel offset goes into the one resize instead of
OpenSlide's extra cairo resampling.

Colour: the TIFF photometric decides, as in OpenSlide. Aperio writes RGB-colourspace JPEGs whose
streams say nothing about it (component ids 0, 1, 2: libjpeg would guess YCbCr), so the stream
gets an Adobe APP14 marker with the right transform before decoding (``jpeg_stream``, in
:mod:`weakstil.decode.jpeg_streams`).

Damaged data (a tile whose entropy-coded bytes were zeroed or cut by a broken copy) stops the
slide with :class:`CorruptTileError`, as OpenSlide refuses it, instead of becoming flat blocks.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from weakstil.decode.geometry import (  # noqa: F401 - re-exported: the geometry lived here
    DCT_COARSER_TOLERANCE, DCT_SCALES, Region, choose_dct_scale, resize_region, tile_region, tile_regions,
    tiles_covered)
from weakstil.decode.jpeg_streams import has_colour_markers, jpeg_stream, stream_prefix
from weakstil.errors import SlideError

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.slide import Slide

log = logging.getLogger(__name__)

#: TIFF tag values.
COMPRESSION_JPEG = 7
PHOTOMETRIC_RGB = 2
PHOTOMETRIC_YCBCR = 6
#: OpenSlide vendors whose levels are plain TIFF tile grids (others, e.g. Ventana's overlapping
#: tiles or Philips' sparse ones, keep OpenSlide's own layout logic).
GRID_VENDORS = ("aperio", "generic-tiff")
#: Decoded tiles kept per reader (bytes).
CACHE_BYTES = 48 << 20
WHITE = 255


class JpegStreamError(ValueError):
    """A compressed tile cannot be decoded the way its level says."""


class CorruptTileError(SlideError):
    """A compressed tile's data is damaged: libjpeg would fill flat blocks in; the slide stops."""


#: Starts of the libjpeg warnings about damaged entropy-coded data (JWRN_HIT_MARKER,
#: JWRN_HUFF_BAD_CODE, JWRN_MUST_RESYNC, JWRN_EXTRANEOUS_DATA; JWRN_JPEG_EOF). libjpeg decodes on
#: with grey or flat blocks; OpenSlide makes every libjpeg warning fatal, so such a tile must
#: stop the slide here too, not turn into features of garbage.
CORRUPT_DATA_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file")
#: ... except padding between the last scan and EOI: strict decoding stops at the first warning,
#: so when this one comes first every block was decoded whole (some writers pad tiles).
PADDING_WARNING = "extraneous bytes before marker 0xd9"


def is_corrupt_data(message: str) -> bool:
    message = message.strip()
    return message.startswith(CORRUPT_DATA_WARNINGS) and not message.endswith(PADDING_WARNING)


# -- levels -----------------------------------------------------------------------------
@dataclass(frozen=True)
class JpegLevel:
    """One JPEG-tiled pyramid level of a TIFF file: enough to read its tiles in any process."""

    path: str
    page: int  #: index in ``TiffFile.pages``
    width: int
    height: int
    tile_w: int
    tile_h: int
    colourspace: str  #: "rgb" or "ycbcr" (from the TIFF photometric)
    tables: bytes | None

    @property
    def tiles_across(self) -> int:
        return -(-self.width // self.tile_w)

    @property
    def tiles_down(self) -> int:
        return -(-self.height // self.tile_h)


def jpeg_page_problem(page) -> str | None:
    """Why a tifffile page cannot be read tile by tile here (None when it can)."""
    if not page.is_tiled:
        return "not tiled"
    if int(page.compression) != COMPRESSION_JPEG:
        return f"compression {int(page.compression)} is not JPEG"
    if int(page.photometric) not in (PHOTOMETRIC_RGB, PHOTOMETRIC_YCBCR):
        return f"photometric {int(page.photometric)} is not RGB/YCbCr"
    if page.samplesperpixel != 3 or page.bitspersample != 8 or int(page.planarconfig) != 1:
        return f"{page.samplesperpixel} samples of {page.bitspersample} bits (planar {int(page.planarconfig)})"
    if getattr(page, "tiledepth", 1) not in (0, 1) or page.imagedepth not in (0, 1):
        return "volumetric tiles"
    if page.tilewidth % 8 or page.tilelength % 8:
        return f"tile size {page.tilewidth}x{page.tilelength} is not a multiple of 8"
    n = -(-page.imagewidth // page.tilewidth) * -(-page.imagelength // page.tilelength)
    if len(page.dataoffsets) != n:
        return f"{len(page.dataoffsets)} tiles for a {n}-tile grid"
    return None


def find_jpeg_levels(path: str | Path, level_dimensions: list[tuple[int, int]]) -> dict[int, JpegLevel | str]:
    """For every OpenSlide level (by its ``(width, height)``), the matching JPEG-tiled TIFF page,
    or a reason why there is none."""
    import tifffile

    out: dict[int, JpegLevel | str] = {}
    try:
        with tifffile.TiffFile(str(path)) as tif:
            pages = list(tif.pages)
            for level, (w, h) in enumerate(level_dimensions):
                reason = f"no TIFF page of {w}x{h} px"
                for i, page in enumerate(pages):
                    if (page.imagewidth, page.imagelength) != (w, h):
                        continue
                    problem = jpeg_page_problem(page)
                    if problem is not None:
                        reason = problem
                        continue
                    cs = "rgb" if int(page.photometric) == PHOTOMETRIC_RGB else "ycbcr"
                    tables = bytes(page.jpegtables) if page.jpegtables is not None else None
                    out[level] = JpegLevel(str(path), i, w, h, page.tilewidth, page.tilelength, cs, tables)
                    break
                else:
                    out[level] = reason
    except Exception as exc:  # not a TIFF (NDPI is one, MRXS/DICOM are not), or an odd one
        reason = f"tifffile cannot read it ({type(exc).__name__}: {exc})"
        return {level: reason for level in range(len(level_dimensions))}
    return out


# -- decoding ---------------------------------------------------------------------------
class CorruptJpegData(ValueError):
    """The decoder's word for damaged data (the reader adds where the tile is)."""


def _decoder():
    try:
        import simplejpeg

        def decode(stream: bytes, reduce: int, tw: int, th: int) -> np.ndarray:
            size = {} if reduce == 1 else {"min_width": tw // reduce, "min_height": th // reduce}
            try:  # strict: libjpeg's warnings raise, so damaged data is seen
                return simplejpeg.decode_jpeg(stream, colorspace="RGB", strict=True, **size)
            except ValueError as exc:
                if is_corrupt_data(str(exc)):
                    raise CorruptJpegData(str(exc)) from None
            # another warning (padding before EOI, an odd marker): the pixels are whole
            return simplejpeg.decode_jpeg(stream, colorspace="RGB", strict=False, **size)
        return decode, "simplejpeg"
    except ImportError:  # Pillow bundles libjpeg-turbo too (draft() = DCT scaling)
        import io

        from PIL import Image

        def decode_pil(stream: bytes, reduce: int, tw: int, th: int) -> np.ndarray:
            im = Image.open(io.BytesIO(stream))
            if reduce > 1:
                im.draft("RGB", (tw // reduce, th // reduce))
            return np.asarray(im.convert("RGB"))
        return decode_pil, "pillow"


def decoder_name() -> str:
    return _decoder()[1]


class JpegTileReader:
    """Reads output tiles of one slide from one JPEG level at one DCT scale.

    ``x, y`` are level-0 pixels; ``l0_per_decoded`` is how many level-0 pixels one decoded pixel
    spans (the level's downsample times the DCT reduction), ``l0_per_out`` the same for an output
    pixel (target µm/px over the slide's µm/px).
    """

    def __init__(self, level: JpegLevel, reduce: int, l0_per_decoded: float, l0_per_out: float,
                 cache_bytes: int = CACHE_BYTES):
        import tifffile

        self.level = level
        self.reduce = int(reduce)
        self.l0_per_decoded = float(l0_per_decoded)
        self.l0_per_out = float(l0_per_out)
        self._tif = tifffile.TiffFile(level.path)
        page = self._tif.pages[level.page]
        if (page.imagewidth, page.imagelength) != (level.width, level.height):
            raise JpegStreamError(f"page {level.page} is {page.imagewidth}x{page.imagelength}, expected "
                                  f"{level.width}x{level.height}")
        self._offsets = np.asarray(page.dataoffsets, np.int64)
        self._counts = np.asarray(page.databytecounts, np.int64)
        self._fh = open(level.path, "rb")  # our own handle: positioned reads, no tifffile lock
        self._prefix = stream_prefix(level.tables, level.colourspace)
        self._strip = False
        first = int(np.argmax(self._counts > 0)) if (self._counts > 0).any() else -1
        if first >= 0:
            self._strip = has_colour_markers(self._raw(first))
        self._decode, self.decoder = _decoder()
        self.dtw, self.dth = level.tile_w // self.reduce, level.tile_h // self.reduce
        # the decoded level's valid extent (beyond it: tile padding, shown white like OpenSlide)
        self.valid_w = level.width // self.reduce
        self.valid_h = level.height // self.reduce
        self._cache: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self._cache_max = max(16, cache_bytes // (self.dtw * self.dth * 3))
        self.tiles_decoded = 0

    def close(self) -> None:
        self._fh.close()
        self._tif.close()
        self._cache.clear()

    # raw bytes -------------------------------------------------------------------
    def _raw(self, index: int) -> bytes:
        n = int(self._counts[index])
        if n <= 0:
            return b""
        return _pread(self._fh, int(self._offsets[index]), n)

    def stream(self, index: int) -> bytes:
        """The complete JPEG stream of tile ``index`` (b"" for a missing tile)."""
        raw = self._raw(index)
        return jpeg_stream(raw, self._prefix, self._strip) if raw else b""

    # decoded tiles -----------------------------------------------------------------
    def decoded_tile(self, index: int) -> np.ndarray | None:
        """``(dth, dtw, 3)`` uint8 of tile ``index`` at the reader's scale; None when it is missing."""
        hit = self._cache.get(index)
        if hit is not None:
            self._cache.move_to_end(index)
            return hit
        stream = self.stream(index)
        if not stream:
            return None
        try:
            arr = self._decode(stream, self.reduce, self.level.tile_w, self.level.tile_h)
        except CorruptJpegData as exc:
            raise self._damaged(index, str(exc)) from None
        except Exception as exc:
            raise JpegStreamError(f"JPEG tile {index} of page {self.level.page} cannot be decoded ({exc})") from None
        if arr.shape[:2] != (self.dth, self.dtw):
            raise JpegStreamError(f"JPEG tile {index} decoded to {arr.shape[1]}x{arr.shape[0]} px, expected "
                                  f"{self.dtw}x{self.dth}")
        self.tiles_decoded += 1
        self._cache[index] = arr
        if len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)
        return arr

    def _damaged(self, index: int, why: str) -> CorruptTileError:
        """The error of tile ``index``, placed in level-0 pixels (where a viewer shows it)."""
        col, row = index % self.level.tiles_across, index // self.level.tiles_across
        ds = self.l0_per_decoded / self.reduce  # level-0 pixels per pixel of this level
        x, y = round(col * self.level.tile_w * ds), round(row * self.level.tile_h * ds)
        return CorruptTileError(f"the JPEG tile at level-0 x={x}, y={y} (TIFF page {self.level.page}, tile column "
                                f"{col}, row {row}) is damaged ({why})", path=self.level.path,
                                fix="the file is damaged (a broken copy or export): copy or export it again "
                                    "from the scanner or archive")

    def region_of(self, x: float, y: float, out_px: int) -> Region:
        return tile_region(x / self.l0_per_decoded, y / self.l0_per_decoded, out_px, out_px,
                           self.l0_per_out / self.l0_per_decoded)

    def read_region_px(self, r: Region, out: np.ndarray | None = None) -> np.ndarray:
        """The decoded-level pixels of region ``r`` (``read_h x read_w``), white outside the level;
        written into ``out`` when given (the output tile itself when no resize is needed: one copy
        per pixel fewer)."""
        rw, rh = r.read_w, r.read_h
        x0, y0 = max(r.ix, 0), max(r.iy, 0)
        x1, y1 = min(r.ix + rw, self.valid_w), min(r.iy + rh, self.valid_h)
        if out is None:
            buf = np.full((rh, rw, 3), WHITE, np.uint8)
        else:
            buf = out
            if (x0, y0, x1, y1) != (r.ix, r.iy, r.ix + rw, r.iy + rh):  # partly outside the level
                buf[...] = WHITE
        if x1 <= x0 or y1 <= y0:
            return buf
        tw, th, across = self.dtw, self.dth, self.level.tiles_across
        for ty in range(y0 // th, (y1 - 1) // th + 1):
            for tx in range(x0 // tw, (x1 - 1) // tw + 1):
                tile = self.decoded_tile(ty * across + tx)
                sx0, sy0 = max(x0, tx * tw), max(y0, ty * th)
                sx1, sy1 = min(x1, (tx + 1) * tw), min(y1, (ty + 1) * th)
                dst = buf[sy0 - r.iy:sy1 - r.iy, sx0 - r.ix:sx1 - r.ix]
                if tile is None:  # a missing tile: white, as OpenSlide shows it
                    dst[...] = WHITE
                    continue
                dst[...] = tile[sy0 - ty * th:sy1 - ty * th, sx0 - tx * tw:sx1 - tx * tw]
        return buf

    def read_tile(self, x: int, y: int, out: np.ndarray) -> None:
        """Write the output tile at level-0 ``(x, y)`` into ``out`` (``(px, px, 3)`` uint8)."""
        r = self.region_of(x, y, out.shape[0])
        if r.fx == 0 and r.fy == 0 and (r.w, r.h) == out.shape[1::-1]:
            self.read_region_px(r, out)  # no resize: the level's pixels go straight into the output
            return
        # at scale 1 the ceil-sized box of Slide.read_region (bit for bit); DCT-reduced: the true extent
        exact = self.l0_per_out / self.l0_per_decoded if self.reduce > 1 else None
        resize_region(self.read_region_px(r), r, out, exact)

    def read_batch(self, coords: np.ndarray, out: np.ndarray) -> None:
        for j, (x, y) in enumerate(coords):
            self.read_tile(int(x), int(y), out[j])

    def read_into(self, coords: np.ndarray, out: np.ndarray, dest: np.ndarray) -> None:
        """Tile ``j`` of ``coords`` into ``out[dest[j]]`` (a worker filling a band of ring slots)."""
        for (x, y), d in zip(coords.tolist(), dest.tolist()):
            self.read_tile(x, y, out[d])

    def streams_buffer(self, indices) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """The complete JPEG streams of tiles ``indices`` packed in one uint8 buffer, and
        ``(index, start, end)`` of each present tile: one positioned read per tile straight into
        place, the prefix copied in front (the GPU path slices its input tensors out of it)."""
        idx = [int(i) for i in indices]
        counts = [int(self._counts[i]) for i in idx]
        if self._strip:  # tiles with their own colour markers: per-tile streams
            streams = [(i, self.stream(i)) for i, c in zip(idx, counts) if c > 0]
            buf = np.frombuffer(b"".join(s for _, s in streams), np.uint8).copy()
            spans, pos = [], 0
            for i, s in streams:
                spans.append((i, pos, pos + len(s)))
                pos += len(s)
            return buf, spans
        pre = np.frombuffer(self._prefix, np.uint8)
        lp = len(pre)
        total = sum(lp + c - 2 for c in counts if c > 0)
        buf = np.empty(max(total, 1), np.uint8)
        mv = memoryview(buf)
        fd = self._fh.fileno()
        spans, pos = [], 0
        for i, c in zip(idx, counts):
            if c <= 0:
                continue
            at = pos + lp - 2  # the tile's SOI lands on the prefix's last 2 bytes, then the prefix goes on top
            got = _preadv(fd, mv[at:at + c], int(self._offsets[i]))
            if got != c:
                raise JpegStreamError(f"JPEG tile {i} of page {self.level.page}: read {got} of {c} bytes")
            buf[pos:pos + lp] = pre
            spans.append((i, pos, pos + lp + c - 2))
            pos += lp + c - 2
        return buf, spans


def _preadv(fd: int, view: memoryview, offset: int) -> int:
    """Read ``len(view)`` bytes at ``offset`` into ``view``; the count read."""
    import os

    try:
        return os.preadv(fd, [view], offset)
    except (AttributeError, OSError):  # no preadv: read, then copy
        data = os.pread(fd, len(view), offset) if hasattr(os, "pread") else b""
        view[:len(data)] = data
        return len(data)


def _pread(fh, offset: int, n: int) -> bytes:
    import os

    try:
        return os.pread(fh.fileno(), n, offset)
    except (AttributeError, OSError):  # no pread (Windows)
        fh.seek(offset)
        return fh.read(n)


# -- choosing the level -----------------------------------------------------------------
@dataclass(frozen=True)
class JpegPlan:
    """How a slide's tiles at ``mpp`` come from a JPEG level: picklable, for worker processes."""

    level_index: int  #: OpenSlide level
    level: JpegLevel
    reduce: int  #: DCT reduction (1, 2, 4, 8)
    l0_per_decoded: float
    l0_per_out: float

    def open(self) -> JpegTileReader:
        return JpegTileReader(self.level, self.reduce, self.l0_per_decoded, self.l0_per_out)

    def describe(self) -> dict[str, object]:
        return {"level": self.level_index, "tiff_page": self.level.page, "dct_scale": f"1/{self.reduce}",
                **({"dct_resize": "true extent"} if self.reduce > 1 else {}),  # was the ceil-sized box
                "jpeg_colourspace": self.level.colourspace, "jpeg_tables": self.level.tables is not None,
                "tile": [self.level.tile_w, self.level.tile_h]}


def plan_jpeg(slide: Slide, mpp: float) -> JpegPlan | str:
    """The JPEG plan for reading ``slide`` at ``mpp``, or why OpenSlide must read it."""
    if slide.vendor not in GRID_VENDORS:
        return f"vendor {slide.vendor!r} (tiles are read by OpenSlide's own layout)"
    level = slide.best_level_for_mpp(mpp)
    dims = [tuple(d) for d in slide.backend.level_dimensions]
    levels = find_jpeg_levels(slide.path, dims)
    found = levels.get(level)
    if not isinstance(found, JpegLevel):
        return f"level {level}: {found}"
    ds = slide.level_downsamples[level]
    reduce = choose_dct_scale(slide.level_mpp(level), mpp, found.tile_w, found.tile_h)
    from weakstil.slide import read_scale

    return JpegPlan(level, found, reduce, ds * reduce, read_scale(slide.mpp, mpp))
