"""Hunt 41h: ``scan_incomplete`` raised on clean slides whose glass is one exact colour, after JPEG.

JPEG keeps flat glass exactly flat only in blocks clear of tissue, so the flat region's outline is a staircase on
the block grid, and a pyramid level's last block, padded past the image's right and bottom edges, rings, so flat
glass stops a block short of them: a straight rim the image long. Together they read the glass round a section as
straight as a scanner's stripe, and the section's whole outline counted as a cut (hunt 41e: the outside generator's
``og41a_011`` 3,924 µm rotated 180°, 0 as it was). Now a staircase's runs no longer count as straight (straight is 3
JPEG blocks or more, on the fill opened and closed by a block), the border band is a block wide, and the cut is
the tissue along straight runs of 200 µm or more (:mod:`weakstil.qc.scan_gap`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import write_tiff_slide

GLASS = (232, 230, 238)  # one exact colour, as a synthetic slide's glass


def _section_on_flat_glass(size: int = 3000, degrees: float = 15.0) -> np.ndarray:
    """A 1.8 mm square of noisy tissue turned by ``degrees`` on flat glass, 0.5 µm/px: its edges, neither a row
    nor a column, become a staircase of JPEG blocks."""
    rng = np.random.default_rng(0)
    rgb = np.empty((size, size, 3), np.uint8)
    rgb[:] = GLASS
    yy, xx = np.mgrid[:size, :size].astype(np.float32) - size / 2
    a = np.deg2rad(degrees)
    section = (np.abs(xx * np.cos(a) + yy * np.sin(a)) < 0.3 * size) & (np.abs(yy * np.cos(a) - xx * np.sin(a)) < 0.3 * size)
    rgb[section] = np.clip(np.array([215, 140, 190]) + rng.normal(0, 12, (int(section.sum()), 3)), 0, 255)
    return rgb


def _stats(path: Path):
    from weakstil.qc.image import slide_image_stats
    from weakstil.slide import Slide

    with Slide.open(path) as slide:
        return slide_image_stats(slide, np.zeros((0, 2)), None, 224, 0.5)


def test_a_clean_section_on_flat_glass_is_not_a_scan_gap_but_a_blanked_third_still_is(tmp_path):
    from weakstil.qc.scan_gap import CUT_UM

    rgb = _section_on_flat_glass()
    clean = _stats(write_tiff_slide(tmp_path / "clean.tiff", rgb, mpp=0.5, levels=3))
    # the old rule: 4,084 µm of "cut" (the block staircase and the padded rim read 80 % straight)
    assert clean.scan_cut_um < CUT_UM / 2 and clean.scan_lost_tiles == 0, clean
    third = rgb.copy()
    third[:, 2 * rgb.shape[1] // 3:] = 255  # the scanner stopped: the rest of the slide is white fill
    cut = _stats(write_tiff_slide(tmp_path / "third.tiff", third, mpp=0.5, levels=3))
    assert cut.scan_cut_um >= CUT_UM, cut
