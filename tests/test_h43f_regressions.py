"""Regressions found in the code merged from helpers h43a and h43d (helper h43f).

- ``scan_incomplete``: tissue in a hole of a straight-edged fill region was taken as a section lying on its flat
  glass and never counted as cut (h43d). A scan area that the fill frames on every side (the scanner stopped on the
  right, and the image is padded with its fill round the rest) is such a hole too: its tissue, cut along the
  stopped edge, was no longer a cut (904 µm white, 896 black on f6318fa; 0 on 6eb3fce). A hole is a section on
  its glass only where tissue lines its whole rim; a framed scan area has glass along the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import write_tiff_slide


def _scan_cut(tmp_path: Path, rgb: np.ndarray, name: str) -> float:
    from weakstil.qc.scan_gap import scan_gap
    from weakstil.slide import Slide
    from weakstil.tissue import TissueParams, detect_tissue

    with Slide.open(write_tiff_slide(tmp_path / name, rgb, mpp=0.5, levels=3)) as slide:
        thumb = slide.read_thumbnail(4.0)
    return scan_gap(thumb, 4.0, detect_tissue(thumb, 4.0, TissueParams()), 2.0)[0]


@pytest.mark.parametrize("fill", [255, 0])
def test_a_scan_area_framed_by_fill_and_stopped_on_one_side_is_still_cut(tmp_path, fill):
    from weakstil.qc.scan_gap import CUT_UM

    rng = np.random.default_rng(0)
    size = 2400  # 1.2 mm at 0.5 µm/px
    rgb = np.clip(np.array([232, 230, 238]) + rng.normal(0, 3, (size, size, 3)), 0, 255).astype(np.uint8)  # glass
    yy, xx = np.mgrid[:size, :size]
    section = (yy - 1200) ** 2 + (xx - 1300) ** 2 < 900 ** 2
    rgb[section] = np.clip(np.array([215, 140, 190]) + rng.normal(0, 12, (int(section.sum()), 3)), 0, 255)
    rgb[:, 1600:] = fill  # the scanner stopped: the section's right part is fill
    rgb[:160], rgb[-160:], rgb[:, :160] = fill, fill, fill  # and the fill frames the scanned area on every side
    assert _scan_cut(tmp_path, rgb, "framed.tiff") >= CUT_UM  # was 0.0 (the scanned area: a "hole" of the fill)
