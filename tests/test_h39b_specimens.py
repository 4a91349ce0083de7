"""Specimen types as a breast pathology lab sends them (outside-tester hunt 39b).

A biopsy fragment of 0.1 mm² (a 0.35 mm disc, its stained part 0.02 mm² in two pieces, the rest fat)
was refused with "no tissue found (0 tiles). Fix: check the slide is not blank; if tissue is faint,
lower --tissue-threshold": the slide is not blank, and no threshold brings back what the tissue
detector drops as debris (stained pieces under 0.02 mm²). The refusal now names the pieces and their
area and says a fragment this small is too small to score; a blank slide (dust, a bubble, glass) keeps
its old line (tests/test_a_hunt16.py).
"""

from __future__ import annotations

import numpy as np
from conftest import write_tiff_slide

from weakstil.slide import Slide
from weakstil.tiles import TilingParams, find_tiles


def test_a_fragment_smaller_than_debris_is_named_not_called_blank(tmp_path):
    rng = np.random.default_rng(0)
    rgb = np.clip(240 + rng.integers(-4, 5, (1200, 1200, 1)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    # a stained fragment of 110 x 110 µm (0.0121 mm², under the 0.02 mm² debris size) at 0.5 µm/px
    rgb[500:720, 500:720] = np.clip(np.array([205, 120, 180]) + rng.integers(-20, 21, (220, 220, 3)), 0, 255)
    path = write_tiff_slide(tmp_path / "fragment.tiff", rgb, levels=2)
    with Slide.open(path) as slide:
        tiles = find_tiles(slide, TilingParams())
    assert len(tiles.coords) == 0
    err = str(tiles.no_tissue_error(path))
    assert "only 1 stained piece, 0.01" in err and "dropped as debris" in err, err
    assert "too small to score" in err and "lower --tissue-threshold" not in err, err
