"""Hunt 23 a: the tissue mask is the same physical mask whatever the scan's µm/px."""

from __future__ import annotations


import numpy as np
import pytest

from planted import write_generic_tiff


_write = write_generic_tiff


@pytest.fixture(scope="module")
def slide_and_40x_copy(tmp_path_factory):
    """A hard, alt-look synthetic slide at 0.5 µm/px (levels 0.5, 2) and the same slide upsampled
    2x (bilinear) as a 40x scan at 0.25 µm/px (levels 0.25, 1, 4)."""
    import tifffile
    from PIL import Image

    from weakstil.synth.generator import generate_slide, slide_seed

    root = tmp_path_factory.mktemp("h23a")
    src = root / "synth_0002.tiff"
    generate_slide(src, root, "synth_0002", slide_seed(4, 2), size_mm=(1.5, 1.5), group="centre_2",
                   preview=False, hard=True, look="alt")
    img = tifffile.imread(src, level=0)
    h, w = img.shape[:2]
    up = np.asarray(Image.fromarray(img).resize((2 * w, 2 * h), Image.Resampling.BILINEAR))
    return src, _write(root / "x40.tiff", up, 0.25)


def test_a_40x_copy_of_a_slide_gets_its_tiles(slide_and_40x_copy):
    # the overview was the stored level 2x finer than the mask: a 20x scan's 2 µm level, a 40x scan's
    # 4 µm level (JPEG'd at its own scale), and the glass level stopped after two steps on a broad
    # histogram (232.0 or 233.0): 100 tiles at 0.5 µm/px, 103 at 0.25 (hunt 23 a)
    from weakstil.slide import Slide
    from weakstil.tiles import find_tiles

    a, b = (find_tiles(Slide.open(p)) for p in slide_and_40x_copy)
    assert b.tissue_mask.shape == a.tissue_mask.shape
    assert abs(len(a.coords) - len(b.coords)) <= 1, (len(a.coords), len(b.coords))
    assert (a.tissue_mask != b.tissue_mask).mean() < 0.01

