"""Hunt 25 b: a slide's stain estimate is a property of the slide, not of which tiles were drawn.

The Macenko strengths are 99th percentiles, which a few tiles of dense nuclei (or of a marker
stroke's faint edge) decide. Version 4 read 48 tiles and only left out tiles touching the ink
the colour rule found, so an overview a little different (the ink mask a few pixels off) or a
few tiles fewer moved the haematoxylin strength of an inked slide by up to 12 % and every tile's
features with it.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest


@pytest.fixture(scope="module")
def inked_slide(tmp_path_factory):
    """Slide 1 of the accuracy benchmark's unseen-look cohort (hard, alt look, seed 1, 2 x 2 mm):
    a black marker stroke over the tissue."""
    import h5py

    from weakstil.synth.generator import generate_slide, slide_seed

    root = tmp_path_factory.mktemp("h25b")
    res = generate_slide(root / "synth_0001.tiff", root, "synth_0001", slide_seed(1, 1), size_mm=(2.0, 2.0),
                         group="centre_1", preview=False, hard=True, look="alt")
    with h5py.File(res.truth_path) as f:
        assert f.attrs["acq_pen_ink"] and f.attrs["acq_pen_fraction"] > 0.02  # really inked
    return res.path


def _jpeg(thumb: np.ndarray, quality: int = 90) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(thumb).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _change(a, b) -> np.ndarray:
    return np.abs(np.asarray(b.max_c) / np.asarray(a.max_c) - 1)


def test_b_stain_estimate_barely_moves_with_the_overview_or_a_few_tiles(inked_slide):
    # the same slide, its overview JPEG'd (quality 90) or 2 % brighter (the ink found changes by
    # 1,756 and 431 of 3,728 pixels), or 8 % of its tiles gone: version 4 moved the haematoxylin
    # strength by 8.4 % (JPEG), eosin by 4.6 %; now at most 1.8 % (hunt 25 b)
    from weakstil.slide import Slide
    from weakstil.stain import estimate_slide_stain
    from weakstil.tiles import find_tiles

    with Slide.open(inked_slide) as slide:
        tiles = find_tiles(slide)
        base = estimate_slide_stain(slide, tiles)
        assert base.source == "macenko"
        moved = [_change(base, estimate_slide_stain(slide, dataclasses.replace(tiles, thumbnail=thumb)))
                 for thumb in (_jpeg(tiles.thumbnail), np.clip(tiles.thumbnail * 1.02, 0, 255).astype(np.uint8))]
        rng = np.random.default_rng(0)
        for _ in range(4):
            keep = np.sort(rng.choice(len(tiles.coords), int(0.92 * len(tiles.coords)), replace=False))
            fewer = dataclasses.replace(tiles, coords=tiles.coords[keep], tissue_fraction=tiles.tissue_fraction[keep])
            moved.append(_change(base, estimate_slide_stain(slide, fewer)))
    moved = np.array(moved)
    # the 2 % brighter overview (row 1) moves the glass's white point 2 % since stain estimate 8 (hunt 30b:
    # densities against the slide's own glass, which this alt-look slide's 226/229/238 sets): eosin 0.9 % ->
    # 4.8 %, a shift the overview and the tiles, read from one scan, do not have; the rest stay under 4 %
    assert np.delete(moved, 1, axis=0).max() < 0.04 and moved[1].max() < 0.06, moved.round(3).tolist()
