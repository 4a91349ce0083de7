"""Slide reading at a physical resolution, on real slides."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CMU, run_cli, shared_file, write_tiff_slide
from weakstil.errors import SlideError
from weakstil.slide import MppSource, Slide, brightfield_warning, slide_id_from_path


def test_cmu_opens_with_metadata_mpp(cmu):
    with Slide.open(cmu) as s:
        assert s.mpp == pytest.approx(0.499)
        assert s.mpp_source is MppSource.METADATA
        assert s.dimensions == (2220, 2967)
        assert s.slide_id == "CMU-1-Small-Region"
        thumb = s.read_thumbnail(8.0)
        # 2220 px * 0.499 / 8 = 138.5 -> 138 or 139
        assert thumb.shape[2] == 3 and abs(thumb.shape[1] - 138.5) <= 1 and abs(thumb.shape[0] - 185) <= 1
        assert brightfield_warning(thumb) is None


def test_read_region_returns_requested_size_and_pixels(cmu):
    with Slide.open(cmu) as s:
        tile = s.read_region(1000, 2000, 224, 0.5)
        assert tile.shape == (224, 224, 3) and tile.dtype == np.uint8
        # the centre of this small region is tissue: darker than glass
        assert tile.mean() < 200
        coarse = s.read_region(1000, 2000, 112, 1.0)
        assert coarse.shape == (112, 112, 3)
        # the same area at half resolution has about the same colour
        assert abs(float(coarse.mean()) - float(tile.mean())) < 6
        # past the slide edge is white, not black
        edge = s.read_region(2100, 2900, 224, 0.5)
        assert edge[-10:, -10:].min() >= 250


def test_level_choice_on_40x_ndpi_never_reads_level0_for_thumbnails():
    path = shared_file("slides/test3-TRITC_2_560_fluorescence.ndpi")
    with Slide.open(path) as s:
        assert s.mpp == pytest.approx(0.228, abs=1e-3)
        assert s.best_level_for_mpp(0.5) == 1  # 0.456 µm/px
        assert s.best_level_for_mpp(8.0) == 5  # 7.3 µm/px
        assert s.level_mpp(s.best_level_for_mpp(8.0)) <= 8.0
        thumb = s.read_thumbnail(8.0)
        assert thumb.shape[:2] == (round(4864 * s.mpp / 8), round(3968 * s.mpp / 8))
        assert "brightfield" in (brightfield_warning(thumb) or "")


def test_missing_mpp_refused_then_accepted_with_override():
    path = shared_file("slides/tcga-cr-7395-01a-01-ts1_jp2k.svs")
    with pytest.raises(SlideError, match="microns-per-pixel.*--slide-mpp"):
        Slide.open(path)
    with Slide.open(path, slide_mpp=0.5) as s:
        assert s.mpp == 0.5 and s.mpp_source is MppSource.OVERRIDE
    # 'weakstil info' still describes it (what is known), exit 0
    proc = run_cli("info", path)
    assert proc.returncode == 0 and "4443x3567 px, µm/px unknown" in proc.stdout and "--slide-mpp" in proc.stdout


def test_coarse_slide_refused_unless_upsampling_allowed(caplog):
    path = shared_file("slides/slidetool_test_dicom.dcm")
    with Slide.open(path) as s:
        assert s.mpp == pytest.approx(2.0, abs=0.01)
        with pytest.raises(SlideError, match="coarser than the target"):
            s.check_target_mpp(0.5)
        with caplog.at_level("WARNING"):
            s.check_target_mpp(0.5, allow_upsample=True)
        assert "read upsampled 4.0x to 0.5 µm/px" in caplog.text
        caplog.clear()
        s.check_target_mpp(2.0)
        assert "upsampled" not in caplog.text


def test_generic_tiff_pyramid(tmp_path):
    rgb = np.full((1024, 1536, 3), 240, np.uint8)
    rgb[200:600, 300:900] = (180, 90, 160)
    path = write_tiff_slide(tmp_path / "s.tiff", rgb, mpp=0.5)
    with Slide.open(path) as s:
        assert s.mpp == pytest.approx(0.5)
        assert s.level_count == 3
        thumb = s.read_thumbnail(4.0)
        assert thumb.shape[:2] == (128, 192)
        # the purple rectangle is where it was drawn
        assert thumb[50, 75, 1] < 130 and thumb[5, 5, 1] > 220


def test_implausible_override_is_refused(cmu):
    with pytest.raises(SlideError, match="plausible"):
        Slide.open(cmu, slide_mpp=500)


def test_slide_id_is_the_name_without_extension_and_a_pattern_keeps_its_name():
    assert slide_id_from_path("a/b/S1.svs") == "S1"
    assert slide_id_from_path("a/b/S1.ome.tiff") == "S1"
    # an unmatched glob keeps its name, so the error row in results.csv says which pattern it was
    assert slide_id_from_path("/data/batch7/*.svs") == "*.svs"


def test_a_big_endian_tiff_is_named_as_such_not_as_damaged(tmp_path):
    """OpenSlide reads little-endian TIFF only; a valid big-endian one must not be called
    truncated or damaged (copying it again would not help)."""
    import tifffile

    path = tmp_path / "be.tiff"
    tifffile.imwrite(path, np.full((512, 512, 3), 200, np.uint8), byteorder=">", tile=(256, 256),
                     photometric="rgb", resolution=(20000, 20000), resolutionunit="CENTIMETER")
    with pytest.raises(SlideError) as err:
        Slide.open(path)
    text = str(err.value)
    assert "big-endian TIFF" in text and "little-endian" in text and "damaged" not in text


def test_an_overview_read_from_a_far_finer_level_is_said_once(tmp_path, monkeypatch, caplog):
    """A large slide without a pyramid takes minutes to overview; the user is told why, once."""
    import weakstil.slide as slide_module

    path = write_tiff_slide(tmp_path / "flat.tiff", np.full((2048, 2048, 3), 200, np.uint8), levels=1)
    monkeypatch.setattr(slide_module, "SLOW_OVERVIEW_PIXELS", 1e6)  # this 4 Mpx slide stands for a 3,600 Mpx one
    with caplog.at_level("WARNING", logger="weakstil.slide"), Slide.open(path) as slide:
        slide.read_thumbnail(8.0)
        slide.read_thumbnail(4.0)
    said = [r.getMessage() for r in caplog.records if "no pyramid level" in r.getMessage()]
    assert len(said) == 1 and "full-resolution image of 4 Mpx" in said[0], said
    caplog.clear()
    pyramid = write_tiff_slide(tmp_path / "pyramid.tiff", np.full((2048, 2048, 3), 200, np.uint8), levels=3)
    with caplog.at_level("WARNING", logger="weakstil.slide"), Slide.open(pyramid) as slide:
        slide.read_thumbnail(8.0)
    assert not [r for r in caplog.records if "no pyramid level" in r.getMessage()]


def test_non_square_pixels_are_refused_not_read_squashed(tmp_path):
    """A scan recorded at 0.5 µm/px along x and 1 µm/px along y was read at 0.5 µm/px both ways:
    the tissue squashed to half its height, scored from half the tiles, exit 0 (fault hunt 3)."""
    import tifffile

    rgb = np.full((512, 1024, 3), 200, np.uint8)
    path = tmp_path / "aniso.tif"
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", resolution=(1e4 / 0.5, 1e4 / 1.0),
                     resolutionunit="CENTIMETER")
    proc = run_cli("info", path)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {path}: has non-square pixels (0.5 µm/px along x, 1 along y)")
    assert "--slide-mpp" in proc.stderr and proc.stderr.count("\n") == 1
    # scanners' rounding (0.2497 vs 0.2499) is square; an explicit --slide-mpp says the pixels are square
    square = tmp_path / "square.tif"
    tifffile.imwrite(square, rgb, tile=(256, 256), photometric="rgb", resolution=(1e4 / 0.2497, 1e4 / 0.2499),
                     resolutionunit="CENTIMETER")
    assert run_cli("info", square).returncode == 0
    assert run_cli("info", path, "--slide-mpp", "0.5").returncode == 0


def test_a_tiff_in_strips_is_named_as_such_not_as_damaged(tmp_path):
    """A valid TIFF stored in strips was called 'truncated, damaged or an unsupported variant'
    (fault hunt 3): OpenSlide reads tiled TIFFs only, and copying the file again does not help."""
    import tifffile

    path = tmp_path / "stripped.tif"
    tifffile.imwrite(path, np.full((600, 800, 3), 200, np.uint8), photometric="rgb", resolution=(2e4, 2e4),
                     resolutionunit="CENTIMETER")
    proc = run_cli("info", path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {path}: is a TIFF stored in strips, not tiles")
    assert "--tile --pyramid" in proc.stderr and "damaged" not in proc.stderr
    # a damaged tiled TIFF is still called damaged
    tiled = write_tiff_slide(tmp_path / "tiled.tif", np.full((600, 800, 3), 200, np.uint8))
    cut = tmp_path / "cut.tif"
    cut.write_bytes(tiled.read_bytes()[:400])
    assert "may be truncated, damaged" in run_cli("info", cut).stderr


def test_a_greyscale_image_is_refused_not_scored(tmp_path):
    """A greyscale scan got an sTIL% (exit 0, a warning about its colours; fault hunt 3): without
    colour the stains cannot be told apart. The CMU slide (faint, pale H&E) is still tiled."""
    rng = np.random.default_rng(0)
    grey = np.full((1024, 1024), 240, np.uint8)
    grey[200:800, 200:800] = rng.integers(90, 200, (600, 600))  # textured tissue, no colour
    path = write_tiff_slide(tmp_path / "grey.tif", np.repeat(grey[..., None], 3, axis=2))
    proc = run_cli("tile", path, "--out", tmp_path / "out")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {path}: is a greyscale image (its tissue has no colour")
    assert "colour (RGB) brightfield H&E" in proc.stderr
    assert not (tmp_path / "out" / "grey.h5").exists()
    assert run_cli("tile", CMU, "--out", tmp_path / "cmu").returncode == 0


@pytest.mark.parametrize(("size", "unit", "mpp"), [(0.5, "µm", 0.5), (250.0, "nm", 0.25)])
def test_an_ome_tiff_resolution_is_read_from_its_ome_xml(tmp_path, size, unit, mpp):
    """OpenSlide reads no resolution from OME-TIFF (QuPath, bfconvert exports): 'has no
    microns-per-pixel in its metadata' although the OME-XML holds PhysicalSizeX/Y (fault hunt 3)."""
    import tifffile

    from weakstil.slide_backend import ome_mpp_xy

    path = tmp_path / "slide.ome.tif"
    tifffile.imwrite(path, np.full((512, 512, 3), 200, np.uint8), tile=(256, 256), photometric="rgb", ome=True,
                     metadata={"axes": "YXS", "PhysicalSizeX": size, "PhysicalSizeXUnit": unit,
                               "PhysicalSizeY": size, "PhysicalSizeYUnit": unit})
    with Slide.open(path) as slide:
        assert slide.mpp == pytest.approx(mpp) and slide.mpp_source is MppSource.METADATA
    assert ome_mpp_xy('<OME><Image><Pixels SizeX="4" PhysicalSizeX="0.5" PhysicalSizeY="1"/></Image></OME>') == (0.5, 1.0)
    assert ome_mpp_xy('<OME><Pixels SizeX="4"/></OME>') == (None, None)
    assert ome_mpp_xy("Aperio Image Library |AppMag = 20|MPP = 0.5") == (None, None)


def test_a_pyramid_written_smallest_level_first_is_refused(tmp_path):
    """OpenSlide takes a generic TIFF's first image as full resolution: a pyramid written smallest
    first was read at its thumbnail's 2 µm/px, and score asked for --allow-upsample (fault hunt 3)."""
    import tifffile

    rgb = np.full((1024, 1024, 3), 200, np.uint8)
    path = tmp_path / "small_first.tif"
    with tifffile.TiffWriter(path) as tw:
        for f in (4, 2, 1):
            tw.write(rgb[::f, ::f].copy(), tile=(256, 256), photometric="rgb", resolution=(2e4 / f, 2e4 / f),
                     resolutionunit="CENTIMETER")
    proc = run_cli("info", path)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {path}: holds a larger image (image 2, 1024x1024 px) than the one OpenSlide reads "
                                  "as full resolution (256x256 px)")
    assert run_cli("info", write_tiff_slide(tmp_path / "ok.tif", rgb)).returncode == 0
