"""Hunt 36 c: odd slide geometry and resolution, from outside (info, tile, score on made-up TIFFs).

What was wrong (old code, 7c026f5), and what is right now:

- A slide smaller than one tile was refused with its size in whole µm only: a 224 x 223 px slide at
  0.5 µm/px was 'is 112 x 112 µm, smaller than one tile (112 µm ...)', a 1 px wide one '0 x 300 µm'.
  The line now gives pixels and µm to 0.01: 'is 224 x 223 px (112 x 111.5 µm)', 'is 1 x 600 px (0.5 x 300 µm)'.
- ``weakstil info`` described a 2 µm/px scan (the real DICOM in ../shared/data reads 2.004) and a
  100 x 80 px slide as any other, though tile, embed and score refuse both: its line now says so, as it
  already did for a slide without µm/px.
- A TIFF whose resolution tags hold px/cm under ResolutionUnit inch (or px/inch under centimetre) was
  read at 1.27 µm/px (refused as a coarse scan, the fix offered: --allow-upsample) or 0.197 µm/px
  (scored with tiles at 2.54x too low a magnification: sTIL% 49.8 against 30.7 for the same pixels at
  0.5 µm/px, flagged only as out of distribution). Both are now named as a likely unit slip with the
  --slide-mpp that fixes them: a warning on opening, in the coarse refusal itself, and a qc flag
  ``mpp_unit_slip`` in score's results.csv.

Measured alongside (no fix needed): a 4000 px synthetic slide (truth 30.7 %) scored 32.50, its 90°
rotation 32.29 and its mirror 32.81; the same tissue at 0.125 µm/px 34.19 against 34.76 at 0.5; inch
and centimetre units gave the same score.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import run_cli


def _write(path, rgb, res, unit="CENTIMETER"):
    import tifffile

    with tifffile.TiffWriter(path) as tw:
        tw.write(rgb, tile=(256, 256), compression="jpeg", photometric="rgb", resolution=(res, res),
                 resolutionunit=unit)
    return path


def _tissue(h, w):
    rgb = np.full((h, w, 3), 235, np.uint8)
    rgb[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = (200, 120, 170)
    return rgb


def test_smaller_than_a_tile_says_its_pixels_and_exact_um(tmp_path):
    slides = [_write(tmp_path / "t223.tiff", _tissue(223, 224), 2e4), _write(tmp_path / "line.tiff", _tissue(600, 1), 2e4)]
    done = run_cli("tile", *slides, "-o", tmp_path / "out")
    assert done.returncode == 1
    # old: 'is 112 x 112 µm, smaller than one tile (112 µm' and 'is 0 x 300 µm'
    assert "is 224 x 223 px (112 x 111.5 µm), smaller than one tile (112 µm" in done.stderr, done.stderr
    assert "is 1 x 600 px (0.5 x 300 µm), smaller than one tile" in done.stderr, done.stderr
    assert not list((tmp_path / "out").glob("*.h5"))


def test_info_says_what_tile_and_score_will_refuse(tmp_path):
    tiny = _write(tmp_path / "tiny.tiff", _tissue(80, 100), 2e4)
    fine = _write(tmp_path / "fine.tiff", _tissue(300, 300), 2e4)
    coarse = _write(tmp_path / "coarse.tiff", _tissue(300, 300), 5e3)  # 2 µm/px, as the DICOM in ../shared/data
    done = run_cli("info", tiny, fine, coarse)
    assert done.returncode == 0, done.stderr
    lines = {line.split(":")[0]: line for line in done.stdout.splitlines()}
    assert "smaller than one 224 px tile at 0.5 µm/px" in lines[str(tiny)]
    assert "coarser than the 0.5 µm/px tiles are read at" in lines[str(coarse)]
    assert "without --allow-upsample (which upsamples it 4.0x)" in lines[str(coarse)]
    assert "refuse" not in lines[str(fine)]


@pytest.mark.parametrize("res, unit, read, said", [
    (2e4, "INCH", 1.27, "times 2.54"),  # px/cm under inch
    (50800, "CENTIMETER", 0.1969, "divided by 2.54"),  # px/inch under centimetre
])
def test_a_resolution_unit_slip_is_named_with_its_fix(tmp_path, caplog, res, unit, read, said):
    from weakstil.errors import SlideError
    from weakstil.slide import Slide

    path = _write(tmp_path / f"slip_{unit}.tiff", _tissue(256, 256), res, unit)
    with caplog.at_level(logging.WARNING, logger="weakstil"), Slide.open(path) as s:
        assert s.mpp == pytest.approx(read, rel=1e-3)
        if read > 1:  # refused as coarse: the refusal itself names the slip and leads with --slide-mpp
            with pytest.raises(SlideError) as exc:
                s.check_target_mpp(0.5)
            assert "0.5 µm/px " + said in str(exc.value) and "pass --slide-mpp 0.5; else" in str(exc.value)
    # old: not a word (0.197 µm/px was read and scored as it stood)
    assert any(said in r.getMessage() and "--slide-mpp 0.5" in r.getMessage() for r in caplog.records), caplog.text


def test_no_unit_slip_is_claimed_for_a_plain_tiff(tmp_path, caplog):
    from weakstil.slide import Slide

    for name, res, unit in (("cm.tiff", 2e4, "CENTIMETER"), ("inch.tiff", 50800, "INCH"), ("q.tiff", 4e4, "CENTIMETER")):
        with caplog.at_level(logging.WARNING, logger="weakstil"), Slide.open(_write(tmp_path / name, _tissue(256, 256),
                                                                                     res, unit)) as s:
            s.check_target_mpp(0.5)
    assert "2.54" not in caplog.text


def test_a_unit_slip_is_a_qc_flag_naming_the_slide_mpp():
    from weakstil.qc.flags import slide_flags

    inputs = dict(ood_score=None, ood_threshold=None, n_bed_tiles=100, low=None, high=None, threshold=30.0,
                  image=None, image_ref=None)
    why_slip = ("its 0.1969 µm/px is 0.5 µm/px divided by 2.54: the TIFF's resolution tags may hold px per inch "
                "under ResolutionUnit centimeter", 0.5)
    flags, why = slide_flags(**inputs, unit_slip=why_slip)  # old: no such flag (a TypeError)
    assert flags == ["mpp_unit_slip"] and "--slide-mpp 0.5" in why["mpp_unit_slip"]
    assert slide_flags(**inputs, unit_slip=None)[0] == []
