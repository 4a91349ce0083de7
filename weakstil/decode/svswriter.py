"""Aperio-like SVS files for tests and benchmarks: JPEG tiles as Aperio writes them.

Aperio's scanners store every level as tiles of *abbreviated* JPEG streams (no tables) with the
quantisation and Huffman tables once in the JPEGTables tag, in the RGB colour space (photometric
RGB, component ids 0, 1, 2, no Adobe marker, no chroma subsampling), and an ImageDescription that
starts with "Aperio" (OpenSlide's vendor ``aperio``; ``MPP`` and ``AppMag`` in it). :func:`write_svs`
writes such a file from an RGB image with Pillow's encoder (plus, for comparison, the YCbCr 4:2:0
variant); :func:`write_svs_tiles` writes one from pre-encoded level-0 tiles, for big benchmark
slides that must be written in seconds. Only tifffile and Pillow are needed (no imagecodecs).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from weakstil.decode.jpeg_tiles import _segments

#: Pyramid reduction between levels (Aperio: 4).
STEP = 4


def encode_tile(tile: np.ndarray, quality: int = 80, colourspace: str = "rgb") -> bytes:
    """A complete baseline JPEG of an ``(h, w, 3)`` uint8 tile: RGB 4:4:4 (Aperio) or YCbCr 4:2:0."""
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(tile))
    if colourspace == "rgb":
        im.save(buf, "JPEG", quality=quality, subsampling=0, keep_rgb=True)
    else:
        im.save(buf, "JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


def split_tables(stream: bytes, colourspace: str) -> tuple[bytes, bytes]:
    """``(tables, abbreviated tile)`` of a complete stream, the way Aperio stores them.

    Tables: SOI, every DQT and DHT, EOI. Tile: SOI and the remaining segments, without APP
    markers; for RGB the component ids become 0, 1, 2 (Aperio's), so nothing in the tile says RGB.
    """
    tables, tile, pos = [b"\xff\xd8"], [b"\xff\xd8"], 2
    for marker, start, end in _segments(stream):
        seg = stream[start:end]
        if marker in (0xDB, 0xC4):
            tables.append(seg)
        elif 0xE0 <= marker <= 0xEF:
            pass
        elif marker == 0xDA:
            if colourspace == "rgb":
                seg = _renumber_sos(seg)
            tile.append(seg)
        else:
            if colourspace == "rgb" and marker == 0xC0:
                seg = _renumber_sof(seg)
            tile.append(seg)
        pos = end
        if marker == 0xDA:
            break
    tables.append(b"\xff\xd9")
    return b"".join(tables), b"".join(tile) + stream[pos:]


def _renumber_sof(seg: bytes) -> bytes:
    b = bytearray(seg)
    for k in range(b[9]):
        b[10 + 3 * k] = k
    return bytes(b)


def _renumber_sos(seg: bytes) -> bytes:
    # SOS: FFDA, length(2), count, then (id, tables) per component, then 3 bytes; the scan data
    # follows the header. Only the header's ids change.
    b = bytearray(seg)
    n = b[4]
    for k in range(n):
        b[5 + 2 * k] = k
    return bytes(b)


def aperio_description(width: int, height: int, tile: int, mpp: float, quality: int) -> str:
    mag = 40 if mpp < 0.375 else 20
    return (f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] ({tile}x{tile}) "
            f"JPEG/RGB Q={quality}|AppMag = {mag}|MPP = {mpp:.4f}|Filename = weakstil-synthetic")


def level_sizes(width: int, height: int, tile: int) -> list[tuple[int, int]]:
    sizes = [(width, height)]
    while min(sizes[-1]) // STEP >= tile:
        w, h = sizes[-1]
        sizes.append((w // STEP, h // STEP))
    return sizes


def _tiles_of(img: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    h, w = img.shape[:2]
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            t = img[y:y + tile, x:x + tile]
            if t.shape[:2] != (tile, tile):  # edge tiles padded (OpenSlide clips them to the level)
                pad = np.full((tile, tile, 3), 255, np.uint8)
                pad[:t.shape[0], :t.shape[1]] = t
                t = pad
            yield t


def _encode_level(tiles: Iterable[np.ndarray], quality: int, colourspace: str) -> tuple[bytes, list[bytes]]:
    tables, out = None, []
    for t in tiles:
        tab, body = split_tables(encode_tile(t, quality, colourspace), colourspace)
        if tables is None:
            tables = tab
        elif tab != tables:  # Pillow uses fixed tables per quality: never expected
            raise ValueError("JPEG tables differ between tiles")
        out.append(body)
    assert tables is not None
    return tables, out


def _photometric(colourspace: str) -> str:
    return "rgb" if colourspace == "rgb" else "ycbcr"


def _write_level(tw, tables: bytes, tiles: list[bytes], w: int, h: int, tile: int, colourspace: str,
                 description: str | None, mpp: float, subfile: bool) -> None:
    tw.write(iter(tiles), shape=(h, w, 3), dtype=np.uint8, tile=(tile, tile), compression="jpeg",
             photometric=_photometric(colourspace), subsampling=(1, 1) if colourspace == "rgb" else (2, 2),
             compressionargs={"outcolorspace": 2 if colourspace == "rgb" else 6},  # photometric RGB / YCbCr
             jpegtables=tables, description=description, resolution=(1e4 / mpp, 1e4 / mpp),
             resolutionunit="CENTIMETER", subfiletype=1 if subfile else 0, metadata=None)


def write_svs(path: str | Path, rgb: np.ndarray, mpp: float, *, tile: int = 240, quality: int = 80,
              colourspace: str = "rgb") -> Path:
    """Write ``rgb`` (level 0) and its x4 pyramid as an Aperio-like SVS (see the module docstring)."""
    import tifffile

    from weakstil.synth.pyramid import downsample_mean

    path = Path(path)
    h, w = rgb.shape[:2]
    with tifffile.TiffWriter(path, bigtiff=w * h * 3 > 2**31) as tw:
        img = rgb
        for k, (lw, lh) in enumerate(level_sizes(w, h, tile)):
            if k:
                img = downsample_mean(img, STEP)[:lh, :lw]
            tables, tiles = _encode_level(_tiles_of(img, tile), quality, colourspace)
            desc = aperio_description(w, h, tile, mpp, quality) if k == 0 else f"Aperio level {k}"
            _write_level(tw, tables, tiles, lw, lh, tile, colourspace, desc, mpp * w / lw, subfile=k > 0)
    return path


def write_svs_tiles(path: str | Path, width: int, height: int, tile: int, mpp: float,
                    level0: Iterable[bytes], tables: bytes, lower_levels: list[np.ndarray], *,
                    quality: int = 80, colourspace: str = "rgb") -> Path:
    """An SVS whose level 0 is ``level0`` (abbreviated streams in raster order, sharing ``tables``)
    and whose lower levels are the given images (encoded here)."""
    import tifffile

    path = Path(path)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        _write_level(tw, tables, list(level0), width, height, tile, colourspace,
                     aperio_description(width, height, tile, mpp, quality), mpp, subfile=False)
        for k, img in enumerate(lower_levels, start=1):
            lh, lw = img.shape[:2]
            t_tables, t_tiles = _encode_level(_tiles_of(img, tile), quality, colourspace)
            _write_level(tw, t_tables, t_tiles, lw, lh, tile, colourspace, f"Aperio level {k}", mpp * width / lw,
                         subfile=True)
    return path
