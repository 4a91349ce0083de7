"""Helper h41s (review of hunt 41h's ``scan_incomplete`` rule).

- The colour split between a white gap and flat grey glass marked only row and column neighbours of the opened
  fill: where JPEG rings at a section's tip the line between the two colours steps diagonally, the white third
  joined the glass through that step, and the merged region, bounded by the section's curved outline, was not
  straight: a 45° section with its right third white read 0 µm (864 before hunt 41h). Now every 8-neighbour pair of
  other colours is split, in the whole fill: 840 µm, flagged.
- ``read_mpp`` NaN or infinite raised ValueError / OverflowError, and one coarser than the thumbnail (a unit slip)
  made the block wider than the image and hid every cut: now read as the thumbnail's own.
"""

from __future__ import annotations

from conftest import write_tiff_slide
from test_h41h_scan_gap_staircase import _section_on_flat_glass, _stats


def test_a_blanked_third_of_a_turned_section_on_flat_glass_is_a_cut_and_read_mpp_is_sanitised(tmp_path):
    from weakstil.qc.scan_gap import CUT_UM, scan_gap
    from weakstil.tissue import TissueParams, detect_tissue

    rgb = _section_on_flat_glass(degrees=45.0)
    rgb[:, 2 * rgb.shape[1] // 3:] = 255  # the scanner stopped: the rest of the slide is white fill
    path = write_tiff_slide(tmp_path / "third45.tiff", rgb, mpp=0.5, levels=3)
    stats = _stats(path)
    assert stats.scan_cut_um >= CUT_UM, stats  # 0 µm with hunt 41h's row/column split

    from weakstil.slide import Slide

    with Slide.open(path) as slide:
        thumb = slide.read_thumbnail(4.0)
    tissue = detect_tissue(thumb, 4.0, TissueParams())
    own = scan_gap(thumb, 4.0, tissue, None)
    assert own[0] >= CUT_UM, own
    for bad in (float("nan"), float("inf"), 1e4, -1.0, 0.0):  # raised, or hid the cut
        assert scan_gap(thumb, 4.0, tissue, bad) == own, bad
