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

from weakstil.decode.jpeg_streams import _segments

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
                    level0: Iterable[bytes], tables: bytes,
                    lower_levels: list[tuple[int, int, Iterable[np.ndarray]]], *,
                    quality: int = 80, colourspace: str = "rgb") -> Path:
    """An SVS whose level 0 is ``level0`` (abbreviated streams in raster order, sharing ``tables``)
    and whose lower levels are ``(width, height, tiles in raster order)`` (encoded here)."""
    import tifffile

    path = Path(path)
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        _write_level(tw, tables, list(level0), width, height, tile, colourspace,
                     aperio_description(width, height, tile, mpp, quality), mpp, subfile=False)
        for k, (lw, lh, tiles) in enumerate(lower_levels, start=1):
            t_tables, t_tiles = _encode_level(tiles, quality, colourspace)
            _write_level(tw, t_tables, t_tiles, lw, lh, tile, colourspace, f"Aperio level {k}", mpp * width / lw,
                         subfile=True)
    return path


# -- big tissue-like slides in seconds (benchmarks) ---------------------------------------
def texture_bank(n: int, tile: int, seed: int = 0) -> np.ndarray:
    """``n`` H&E-like ``tile`` x ``tile`` textures: pink stroma with smooth variation, purple
    nuclei, a few pale gaps (only to have realistic JPEG content; no biology implied)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:tile, 0:tile].astype(np.float32)
    out = np.empty((n, tile, tile, 3), np.uint8)
    stroma = np.array([236, 170, 200], np.float32)
    nucleus = np.array([95, 60, 140], np.float32)
    for k in range(n):
        low = rng.random((tile // 16, tile // 16)).astype(np.float32)
        field = np.asarray(Image.fromarray(low).resize((tile, tile), Image.Resampling.BICUBIC))
        img = stroma[None, None] * (0.86 + 0.2 * field[..., None])
        img += rng.normal(0, 6, (tile, tile, 1)).astype(np.float32)  # grain
        dens = np.zeros((tile, tile), np.float32)
        for cx, cy, r in zip(rng.uniform(0, tile, 60), rng.uniform(0, tile, 60), rng.uniform(3, 7, 60)):
            dens = np.maximum(dens, np.clip(1.5 - ((xx - cx) ** 2 + (yy - cy) ** 2) / (r * r), 0, 1))
        img = img * (1 - dens[..., None]) + nucleus * dens[..., None]
        gap = field > 0.85
        img[gap] = img[gap] * 0.3 + 245 * 0.7
        out[k] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def write_textured_svs(path: str | Path, width: int, height: int, mpp: float, *, tile: int = 240,
                       tissue: float = 0.8, quality: int = 80, colourspace: str = "rgb", seed: int = 0,
                       bank_size: int = 48) -> tuple[Path, int]:
    """An Aperio-like SVS of ``width`` x ``height`` px: an elliptic 'tissue' area (about ``tissue``
    of the slide) of H&E-like JPEG tiles from a pre-encoded bank, glass around it, and an x4
    pyramid of flat colours. Written in seconds even for 60,000 px slides.

    Returns the path and the number of level-0 JPEG tiles that hold tissue.
    """
    rng = np.random.default_rng(seed)
    across, down = -(-width // tile), -(-height // tile)
    bank = texture_bank(bank_size, tile, seed)
    glass = np.clip(244 + rng.normal(0, 2, (4, tile, tile, 3)), 0, 255).astype(np.uint8)
    tables, encoded = _encode_level(list(bank) + list(glass), quality, colourspace)
    # tissue: an ellipse covering ~`tissue` of the slide, a ragged border
    cy, cx = np.mgrid[0:down, 0:across].astype(np.float32)
    r = np.sqrt(tissue / np.pi * 4)
    d = ((cx + 0.5) / across - 0.5) ** 2 / (r / 2) ** 2 + ((cy + 0.5) / down - 0.5) ** 2 / (r / 2) ** 2
    mask = d + rng.normal(0, 0.04, d.shape) < 1.0
    pick = np.where(mask, rng.integers(0, bank_size, mask.shape), bank_size + rng.integers(0, 4, mask.shape))
    level0 = (encoded[k] for k in pick.ravel())
    colours = np.concatenate([bank.reshape(bank_size, -1, 3).mean(1), glass.reshape(4, -1, 3).mean(1)])
    cell = np.clip(colours[pick], 0, 255).astype(np.uint8)  # (down, across, 3): each level-0 tile's colour
    grain = np.clip(rng.normal(0, 3, (tile, tile, 1)), -8, 8).astype(np.int16)

    def flat_tiles(lw: int, lh: int) -> Iterator[np.ndarray]:
        f = tile * lw / width  # pixels of this level per level-0 tile
        for y0 in range(0, lh, tile):
            ys = np.minimum((np.arange(y0, y0 + tile) / f).astype(int), down - 1)
            for x0 in range(0, lw, tile):
                xs = np.minimum((np.arange(x0, x0 + tile) / f).astype(int), across - 1)
                yield np.clip(cell[ys[:, None], xs[None, :]] + grain, 0, 255).astype(np.uint8)

    lower = [(lw, lh, flat_tiles(lw, lh)) for lw, lh in level_sizes(width, height, tile)[1:]]
    write_svs_tiles(path, width, height, tile, mpp, level0, tables, lower, quality=quality, colourspace=colourspace)
    return Path(path), int(mask.sum())
