"""Fault matrix h48d: a slide with one damaged JPEG tile opened in napari (lazily, so the reader accepts it) raised
OpenSlide's error at every redraw, and OpenSlide fails every read after one error, so the rest of the slide went with
it. The damaged chunk is now grey, one warning names the file, and the chunks after it are read from a new handle."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

TILE = 64


def _slide_with_a_damaged_tile(path: Path) -> Path:
    import tifffile

    img = np.random.default_rng(0).integers(100, 230, (4 * TILE, 4 * TILE, 3)).astype(np.uint8)
    tifffile.imwrite(path, img, tile=(TILE, TILE), photometric="rgb", compression="jpeg",
                     resolution=(2e4, 2e4), resolutionunit="CENTIMETER")  # 0.5 µm/px
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[5]  # row 1, column 1
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * 64)  # its JPEG start marker gone
    return path


def test_a_damaged_tile_is_grey_and_the_rest_of_the_slide_still_shows(tmp_path: Path, caplog) -> None:
    from napari_weakstil import slide_layers
    from napari_weakstil.slide_layers import open_pyramid

    grey_value = getattr(slide_layers, "DAMAGED_GREY", 128)

    pyramid = open_pyramid(_slide_with_a_damaged_tile(tmp_path / "damaged slide.tiff"), chunk_px=TILE)
    with caplog.at_level(logging.WARNING):
        pixels = np.asarray(pyramid.levels[0])
    grey = [(y, x) for y in range(4) for x in range(4)
            if (pixels[y * TILE:(y + 1) * TILE, x * TILE:(x + 1) * TILE] == grey_value).all()]
    assert grey == [(1, 1)]
    assert pixels[3 * TILE:, 3 * TILE:].std() > 10  # the last tile, read after the error: its own pixels
    warnings = [r.getMessage() for r in caplog.records if "cannot be decoded" in r.getMessage()]
    assert len(warnings) == 1 and "damaged slide.tiff" in warnings[0] and "Fix:" in warnings[0]
