"""Fault hunt 13, area d: the honesty of a score (qc flags, intervals) on unusual slides."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _blurred(tile: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage as ndi

    out = ndi.gaussian_filter(tile.astype(np.float32), sigma=(sigma, sigma, 0))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)  # a slide's pixels are 8-bit


def test_a_slide_blurred_far_past_the_limit_reads_blurry_not_sharp(cmu):
    """D1: the focus measure compares each tile's strongest neighbour differences with a re-blurred
    copy's. On a tile blurred far past the limit the strongest "edges" left were the 1-level steps of
    8-bit rounding, which the re-blur removes, so it read sharp: the 48 focus tiles of a synthetic
    slide blurred by a Gaussian of 25 px had blur median 0.48 (0.26 with JPEG), 35 px 0.39, 50 px
    0.31, while 3 px read 0.72: the more out of focus, the less ``blurry``."""
    from PIL import Image

    from weakstil.qc.image import BLURRY_TILE, tile_blur
    from weakstil.slide import Slide

    with Slide.open(cmu) as slide:
        tiles = [slide.read_region(x, y, 224, 0.5) for x, y in ((400, 800), (1200, 1400), (1800, 2000))]
    tiles += [np.asarray(Image.open(p).convert("RGB")) for p in sorted((ROOT / "tests" / "data" / "kather").glob("*.png"))]
    assert len(tiles) >= 11
    assert (tile_blur(tiles) < BLURRY_TILE).all()  # in focus: unchanged
    for sigma in (3, 8, 25, 40):
        blur = tile_blur([_blurred(t, sigma) for t in tiles])
        assert (blur > BLURRY_TILE).all(), (sigma, np.round(blur, 2))
    # a tile with no edge at all (featureless) is as blurred as can be, not unmeasured
    assert tile_blur([np.full((224, 224, 3), 200, np.uint8)])[0] == 1.0
