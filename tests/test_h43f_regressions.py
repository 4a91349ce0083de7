"""Regressions found in the code merged from helpers h43a and h43d (helper h43f).

- ``scan_incomplete``: tissue in a hole of a straight-edged fill region was taken as a section lying on its flat
  glass and never counted as cut (h43d). A scan area that the fill frames on every side (the scanner stopped on the
  right, and the image is padded with its fill round the rest) is such a hole too: its tissue, cut along the
  stopped edge, was no longer a cut (904 µm white, 896 black on f6318fa; 0 on 6eb3fce). A hole is a section on
  its glass only where tissue lines its whole rim; a framed scan area has glass along the rest.
- A single-level slide's whole image (h43d) was kept in a module-wide dict for good: after a run had ended (the
  napari plugin's viewer), for every thread, and served by path, size and modification time to a later read of a
  file replaced by one alike in those (an uncompressed TIFF of the same size, copied in with its time kept). It is
  kept now inside a score run's ``whole_levels_kept()`` only.
"""

from __future__ import annotations

import os
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


def _single_level_tiff(path: Path, rgb: np.ndarray) -> Path:
    """A single-level tiled TIFF without compression (its size set by its pixel count alone)."""
    import tifffile

    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", compression=None,
                     resolution=(1e4 / 0.5, 1e4 / 0.5), resolutionunit="CENTIMETER")
    return path


def test_a_single_level_slide_replaced_between_runs_is_read_again(tmp_path):
    """Two runs in one process (the napari plugin scoring a slide, then again after the file was replaced by a
    corrected copy of the same size that kept its time): the second sees the new pixels."""
    from weakstil.slide import Slide
    from weakstil.whole_level import kept_levels, whole_levels_kept

    path = tmp_path / "single.tiff"
    old = np.full((600, 800, 3), 235, np.uint8)
    old[100:500, 100:700] = (200, 120, 170)
    new = old.copy()
    new[100:500, 100:700] = (90, 40, 120)
    _single_level_tiff(path, old)
    st = os.stat(path)

    def overview() -> np.ndarray:
        with Slide.open(path) as slide:
            return slide.read_thumbnail(8.0)

    with whole_levels_kept():  # a first run, read whole once for its overviews
        first = overview()
        assert np.array_equal(overview(), first)
    assert kept_levels() is None  # nothing held after it
    _single_level_tiff(path, new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size  # alike in path, size and modification time
    for run in (overview, lambda: _in_a_run(overview)):
        second = run()
        assert not np.array_equal(second, first)  # the old pixels were served
        assert abs(int(second[19, 25, 0]) - 90) <= 2, second[19, 25]


def _in_a_run(read):
    from weakstil.whole_level import whole_levels_kept

    with whole_levels_kept():
        return read()


def test_a_retyped_cross_validation_or_cohort_in_model_json_is_refused_when_the_model_is_opened(tmp_path):
    """``training.cross_validation`` as "5" (h43d checked only the 'folds' inside it) was 'unexpected
    AttributeError' from 'weakstil report'; ``training.cohort`` as a number a TypeError in the in-sample check."""
    from test_h43d_fixes import _model_json
    from weakstil.errors import WeakSTILError
    from weakstil.mil.store import load_model
    from weakstil.modeldir import ModelDir

    assert ModelDir(_model_json(tmp_path / "none", **{"training.cross_validation": None})).read_meta()  # no CV
    cases = {"training.cross_validation": ("5", "'training.cross_validation' is \"5\", not a JSON object or null"),
             "training.cohort": (5, "'training.cohort' is 5, not a non-empty text")}
    for n, (key, (value, said)) in enumerate(cases.items()):
        folder = _model_json(tmp_path / f"m{n}", **{key: value})
        for open_it in (ModelDir(folder).read_meta, lambda: load_model(folder)):
            with pytest.raises(WeakSTILError) as err:
                open_it()
            assert said in err.value.one_line(), err.value.one_line()
