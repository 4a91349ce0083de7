"""Slides as other tools write them (hunt 24, area b): generic TIFFs whose pixel layout OpenSlide
opens but reads wrongly (an unused alpha channel of zeros, a camera's 12 bits in 16-bit samples) or
not at all (32-bit samples) are one error line naming the layout and the conversion, and the batch
goes on with the other slides."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import CMU, run_cli
from weakstil.errors import SlideError
from weakstil.slide import Slide

MPP = 0.5
TAGS = dict(tile=(256, 256), resolution=(1e4 / MPP, 1e4 / MPP), resolutionunit="CENTIMETER", metadata=None,
            photometric="rgb", compression="zlib")


@pytest.fixture(scope="module")
def cmu_rgb() -> np.ndarray:
    """512 x 512 px (0.26 mm) of the real CMU slide's tissue."""
    with Slide.open(CMU) as s:
        return np.asarray(s.backend.read_region((600, 1200), 0, (512, 512)).convert("RGB"))


def _write(path: Path, data: np.ndarray, **kw) -> Path:
    import tifffile

    tifffile.imwrite(path, data, **{**TAGS, **kw})
    return path


@pytest.mark.parametrize("extrasample", [0, 2])  # unspecified (libtiff applies it as alpha), unassociated alpha
def test_an_alpha_channel_of_zeros_is_named_not_called_a_blank_slide(tmp_path, cmu_rgb, extrasample):
    """A script's RGBA export with the alpha channel left at 0: OpenSlide reads every pixel as
    transparent, and tile said 'no tissue found (0 tiles). Fix: check the slide is not blank'."""
    rgba = np.dstack([cmu_rgb, np.zeros(cmu_rgb.shape[:2], np.uint8)])
    bad = _write(tmp_path / "rgba0.tif", rgba, extrasamples=[extrasample])
    good = _write(tmp_path / "rgba.tif", np.dstack([cmu_rgb, np.full(cmu_rgb.shape[:2], 255, np.uint8)]),
                  extrasamples=[2])
    proc = run_cli("tile", bad, good, "--out", tmp_path / "out")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and errors[0].startswith(f"error: {bad}: has an alpha channel (a 4th sample) that "
                                                          "is 0 everywhere"), proc.stderr
    assert "Fix: export it without the alpha channel (e.g. 'vips extract_band IN T.v 0 --n 3'" in errors[0]
    assert not (tmp_path / "out" / "rgba0.h5").exists()
    assert (tmp_path / "out" / "rgba.h5").exists()  # the batch goes on; an opaque alpha channel is read as usual


def test_twelve_bits_in_16_bit_samples_are_named_not_called_fluorescence(tmp_path, cmu_rgb):
    """A camera's 12-bit values in 16-bit samples: OpenSlide keeps the top 8 bits (0-15), and the
    slide was refused as 'mostly dark image (fluorescence or darkfield?) ... give the brightfield H&E
    scan'. A 16-bit scan that uses its range (glass near 65535) is read as before."""
    bad = _write(tmp_path / "cam12.tif", cmu_rgb.astype(np.uint16) * 16)
    with pytest.raises(SlideError) as err:
        Slide.open(bad)
    assert str(err.value).startswith(f"{bad}: has 16-bit samples that use only their low 12 bits (largest value")
    assert "'vips linear IN T.v 0.0625 0 --uchar'" in str(err.value)
    full = _write(tmp_path / "full16.tif", cmu_rgb.astype(np.uint16) * 257)
    with Slide.open(full) as s:
        assert np.array_equal(s.read_region(0, 0, 64, MPP), cmu_rgb[:64, :64])


def test_32_bit_samples_are_an_unreadable_layout_not_damaged_data(tmp_path, cmu_rgb):
    """Floating-point samples (libtiff: 'Sorry, can not handle images with 32-bit samples') were
    'pixel data is damaged or truncated ... Fix: copy or export the slide again'."""
    bad = _write(tmp_path / "float.tif", cmu_rgb.astype(np.float32) / 255)
    proc = run_cli("info", bad)
    assert proc.returncode != 0
    assert f"error: {bad}: its pixels are stored in a layout OpenSlide does not read (images with 32-bit samples)" \
        in proc.stderr, proc.stderr
    assert "damaged" not in proc.stderr and "vips linear IN T.v 255 0 --uchar" in proc.stderr


# -- tissue on a black background (an export that fills the unscanned area with black) ------------
@pytest.fixture(scope="module")
def on_black_and_white(tmp_path_factory) -> dict[str, Path]:
    """The CMU slide's tissue (1024 px, 0.5 mm) cut to a disc, outside it black or white glass, as
    JPEG (read tile by tile here) and Deflate (read through OpenSlide) TIFFs."""
    import tifffile

    root = tmp_path_factory.mktemp("black")
    with Slide.open(CMU) as s:
        rgb = np.asarray(s.backend.read_region((500, 1000), 0, (1024, 1024)).convert("RGB")).copy()
    yy, xx = np.mgrid[:1024, :1024]
    outside = (yy - 512) ** 2 + (xx - 512) ** 2 > 440 ** 2
    out = {}
    for fill in (0, 255):
        img = rgb.copy()
        img[outside] = fill
        for comp in ("jpeg", "zlib"):
            path = root / f"{comp}_{fill}.tif"
            tifffile.imwrite(path, img, **{**TAGS, "compression": comp})
            out[f"{comp}_{fill}"] = path
    return out


@pytest.mark.parametrize("comp", ["jpeg", "zlib"])
def test_the_black_outside_the_scan_is_read_as_white_glass(on_black_and_white, comp):
    """The tiles at the tissue's edge held the export's black: a 1 mm synthetic slide on black scored
    11.3 % sTIL with an out_of_distribution flag, on white 6.3 %. Now the tiles of a slide with a
    black unscanned area are read with that area white, by every reader; a slide without one is read
    as before, and so is the tissue inside."""
    from weakstil.decode.readers import plan_reader
    from weakstil.tiles import find_tiles

    tiles = {}
    with Slide.open(on_black_and_white[f"{comp}_255"]) as s:
        on_white = find_tiles(s)
        coords = np.asarray(on_white.coords)  # the same places on both
    with Slide.open(on_black_and_white[f"{comp}_0"]) as s:
        on_black = find_tiles(s)
    # the tissue: this disc holds no glass, and the detector took the palest tissue for glass (1684
    # overview pixels of tissue and 9 tiles on black, 2242 and 11 on white)
    assert on_black.tissue_mask.sum() == pytest.approx(on_white.tissue_mask.sum(), rel=0.05)
    assert abs(len(on_black.coords) - len(on_white.coords)) <= 1
    assert on_black.attrs()["background"] == "black outside the scan read as white glass"
    assert on_white.attrs()["background"] == "none"
    for fill in (255, 0):
        with Slide.open(on_black_and_white[f"{comp}_{fill}"]) as s:
            spec = plan_reader(s, MPP, 224)
            assert spec.whiten_black is (fill == 0) and ("background" in spec.describe()) is (fill == 0)
            assert spec.path.value == ("jpeg-tiles" if comp == "jpeg" else "openslide")
            reader = spec.open()
            try:
                tiles[fill] = np.empty((len(coords), 224, 224, 3), np.uint8)
                reader.read_batch(coords, tiles[fill])
            finally:
                reader.close()
    black, white = tiles[0].astype(int), tiles[255].astype(int)
    assert black.shape == white.shape and len(black) >= 4
    edge = (white.min(axis=-1) == 255).mean(axis=(1, 2)) > 0.05  # tiles with glass in them
    assert edge.any()
    assert np.abs(black - white)[edge].mean() < 3, np.abs(black - white)[edge].mean()  # was ~60 grey levels
    assert (black.max(axis=-1) <= 24).mean() < 0.002  # no black left but the JPEG rim


def test_a_feature_cache_that_read_the_black_as_pixels_is_embedded_again(on_black_and_white, tmp_path):
    import json

    import h5py

    from weakstil.embed import embed_slide
    from weakstil.encoders import create_encoder

    enc = create_encoder("small-cnn", weights="random", seed=3)
    out = tmp_path / "f.h5"
    first = embed_slide(on_black_and_white["jpeg_0"], enc, out_path=out, workers=0, tile_stats=False)
    with h5py.File(out, "r") as f:
        decode = json.loads(f.attrs["decode"])
    assert decode["background"] == "black outside the scan read as white glass"
    assert embed_slide(on_black_and_white["jpeg_0"], enc, out_path=out, workers=0, tile_stats=False).skipped
    del decode["background"]  # as an earlier WeakSTIL wrote it
    with h5py.File(out, "r+") as f:
        f.attrs["decode"] = json.dumps(decode)
        del f.attrs["background"]
    again = embed_slide(on_black_and_white["jpeg_0"], enc, out_path=out, workers=0, tile_stats=False)
    assert not again.skipped and again.n_tiles == first.n_tiles
    white = tmp_path / "w.h5"
    embed_slide(on_black_and_white["jpeg_255"], enc, out_path=white, workers=0, tile_stats=False)
    with h5py.File(white, "r+") as f:  # a slide without black: its cache is current either way
        assert "background" not in json.loads(f.attrs["decode"]) and f.attrs["background"] == "none"
    assert embed_slide(on_black_and_white["jpeg_255"], enc, out_path=white, workers=0, tile_stats=False).skipped


def test_a_tiles_file_of_a_slide_on_black_made_before_is_tiled_again(on_black_and_white, tmp_path):
    import h5py

    path = on_black_and_white["zlib_0"]
    assert run_cli("tile", path, "--out", tmp_path).returncode == 0
    assert "up to date" in run_cli("tile", path, "--out", tmp_path).stderr
    with h5py.File(tmp_path / "zlib_0.h5", "r+") as f:
        assert f.attrs["background"] == "black outside the scan read as white glass"
        del f.attrs["background"]  # as an earlier WeakSTIL wrote it
    proc = run_cli("tile", path, "--out", tmp_path)
    assert proc.returncode == 0 and "up to date" not in proc.stderr
    with h5py.File(tmp_path / "zlib_0.h5", "r") as f:
        assert "background" in f.attrs


def test_whitening_works_on_the_gpu_paths_tensors_and_is_idempotent():
    """The GPU path whitens its (b, px, px, 3) uint8 tensors on the device, a CPU fallback's batches
    again (already whitened by their reader): the same pixels either way."""
    import torch

    from weakstil.unscanned import whiten

    rng = np.random.default_rng(1)
    tiles = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    tiles[0, :8] = rng.integers(0, 20, (8, 16, 3))  # a black band
    expect = tiles.copy()
    expect[expect.max(axis=-1) <= 24] = 255
    t = torch.from_numpy(tiles.copy())
    whiten(t)
    assert np.array_equal(t.numpy(), expect)
    whiten(t)
    assert np.array_equal(t.numpy(), expect)
    n = tiles.copy()
    whiten(n)
    assert np.array_equal(n, expect) and (n[0, :8] == 255).all()


def test_the_slow_overview_warning_names_an_ome_pyramid_openslide_does_not_read(tmp_path, monkeypatch, caplog):
    """An OME-TIFF pyramid (QuPath, bfconvert) keeps its reduced levels in SubIFDs, which OpenSlide
    does not read: the slide has one level for it and every overview is read from full resolution.
    The warning told the user to make 'a pyramidal export', which the file already was. (Since hunt 35d
    the SubIFDs are read for the overviews, test_d_hunt35; the warning stays for SubIFDs too large to be
    read whole, as stands here.)"""
    import tifffile

    import weakstil.slide as slide_module
    import weakstil.tiff_layout as tiff_layout

    rgb = np.full((1024, 1024, 3), 200, np.uint8)
    path = tmp_path / "pyr.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(rgb, subifds=2, tile=(256, 256), photometric="rgb", compression="jpeg",
                 metadata={"axes": "YXS", "PhysicalSizeX": MPP, "PhysicalSizeY": MPP})
        for f in (4, 16):
            tw.write(rgb[::f, ::f].copy(), subfiletype=1, tile=(64, 64), photometric="rgb", compression="jpeg")
    monkeypatch.setattr(slide_module, "SLOW_OVERVIEW_PIXELS", 0.5e6)  # this 1 Mpx slide stands for a large one
    monkeypatch.setattr(tiff_layout, "MAX_SUBIFD_OVERVIEW_PIXELS", 0)  # ... whose SubIFDs are too large to read whole
    with caplog.at_level("WARNING", logger="weakstil.slide"), Slide.open(path) as slide:
        assert slide.level_count == 1 and slide.mpp == pytest.approx(MPP)
        slide.read_thumbnail(8.0)
    said = [r.getMessage() for r in caplog.records if "no pyramid level" in r.getMessage()]
    assert len(said) == 1 and "its 2 reduced level(s) are SubIFDs, as in an OME-TIFF pyramid" in said[0], said


def test_a_single_level_slide_is_read_whole_once_for_the_same_overview(tmp_path, monkeypatch, cmu_rgb):
    """Hunt 41b: score on a 30,000 px single-level TIFF read level 0 whole 4 times (tissue 8 µm/px,
    qc and ink veto 6.12 µm/px each with a Slide of its own, heatmap 9.38): 181 s for 31 tiles. The
    same overview of the same file is read once, the same pixels; another size, or the file changed, is read."""
    import weakstil.slide as slide_module
    from weakstil.whole_level import whole_levels_kept

    path = _write(tmp_path / "flat.tif", np.tile(cmu_rgb, (2, 2, 1)))  # 1 Mpx, one level
    monkeypatch.setattr(slide_module, "SLOW_OVERVIEW_PIXELS", 0.5e6)  # stands for a large one
    reads = []

    def counted(slide):
        real = slide.backend.read_region
        slide.backend.read_region = lambda *a: reads.append(a) or real(*a)
        return slide

    with Slide.open(path) as a:
        first = counted(a).read_thumbnail(8.0)
    n = len(reads)
    with Slide.open(path) as b:  # another Slide of the file (the ink veto's): nothing read
        again = counted(b).read_thumbnail(8.0)
        assert len(reads) == n and np.array_equal(first, again)
        again[:] = 0  # the caller's own copy
        assert np.array_equal(counted(b).read_thumbnail(8.0), first) and len(reads) == n
        b.read_thumbnail(6.0)  # another size outside a scoring run: read again (nothing is kept there, helper h43f)
        assert len(reads) > n
        with whole_levels_kept():  # as score holds it round a slide: the image read whole once for every size (h43d)
            m = len(reads)
            b.read_thumbnail(5.0)
            k = len(reads)
            b.read_thumbnail(7.0)
            assert k > m and len(reads) == k
    _write(path, np.tile(255 - cmu_rgb, (2, 2, 1)))  # the file replaced: read again
    with Slide.open(path) as c:
        assert not np.array_equal(counted(c).read_thumbnail(8.0), first)


# -- resolution units -------------------------------------------------------------------------------
@pytest.mark.parametrize(("unit", "per_unit", "mpp"), [("MICROMETER", 2.0, 0.5), ("MILLIMETER", 4000.0, 0.25)])
def test_a_resolution_in_micrometres_or_millimetres_is_read(tmp_path, cmu_rgb, unit, per_unit, mpp):
    """tifffile writes ResolutionUnit 'MICROMETER' (5) and 'MILLIMETER' (4), DNG's units, which
    OpenSlide reports as 'unknown': the slide was refused as having no microns-per-pixel."""
    path = _write(tmp_path / "s.tif", cmu_rgb, resolution=(per_unit, per_unit), resolutionunit=unit,
                  compression="jpeg")
    with Slide.open(path) as s:
        assert s.mpp == pytest.approx(mpp) and s.mpp_source.value == "metadata"
    proc = run_cli("info", path)
    assert proc.returncode == 0 and f"{mpp:.4g} µm/px (metadata)" in proc.stdout, proc.stdout + proc.stderr


def test_resolution_tags_without_a_unit_are_named_in_the_refusal(tmp_path, cmu_rgb):
    """ResolutionUnit NONE: pixels per unknown length, rightly no µm/px, but the refusal said only
    'has no microns-per-pixel in its metadata' to a user who sees a resolution in tiffinfo."""
    path = _write(tmp_path / "s.tif", cmu_rgb, resolutionunit="NONE")
    proc = run_cli("tile", path, "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert (f"error: {path}: has no microns-per-pixel in its metadata (its TIFF resolution tags give 20000 px per "
            "unit, with ResolutionUnit none). Fix: pass the scan resolution with --slide-mpp") in proc.stderr
    assert run_cli("tile", path, "--slide-mpp", "0.5", "--out", tmp_path / "out").returncode == 0


def test_a_resolution_written_as_text_in_the_description_is_named_in_the_refusal(tmp_path, cmu_rgb):
    """Hunt 41b: a converter's generic TIFF with 'MPP = 0.25' in its ImageDescription (no resolution
    tags): the refusal named only the writer's default tags (1 px per unit), not the figure the file
    states; it is named, and still not used without the user's --slide-mpp."""
    path = _write(tmp_path / "s.tif", cmu_rgb, resolution=None, resolutionunit=None,
                  description="Custom scanner v2|MPP = 0.25|AppMag = 40", metadata=None)
    proc = run_cli("tile", path, "--out", tmp_path / "out")
    assert proc.returncode == 1 and not (tmp_path / "out").exists(), proc.stderr
    assert "its TIFF ImageDescription says 0.25 µm/px as text, which OpenSlide does not read" in proc.stderr
    assert "Fix: if 0.25 is the scan's µm/px, pass --slide-mpp 0.25" in proc.stderr
    other = _write(tmp_path / "t.tif", cmu_rgb, resolution=None, resolutionunit=None, metadata=None,
                   description="Custom scanner v2|MPP = 50|mppx: none")  # implausible: not offered
    proc = run_cli("tile", other, "--out", tmp_path / "out2")
    assert proc.returncode == 1 and "ImageDescription" not in proc.stderr and "--slide-mpp 50" not in proc.stderr


def test_a_palette_colour_tiff_is_refused_not_scored_as_a_scan(tmp_path, cmu_rgb):
    """Hunt 41b: a palette-colour TIFF (a posterized copy of a scan: 64 or 256 colours) was tiled and
    scored as the scan, without a word; the CMU tissue's sTIL% moved 78.7 -> 62.9 (64 colours) and
    82.1 (256). It is refused with its reason, the batch goes on with the RGB slide."""
    from PIL import Image

    pal = Image.fromarray(cmu_rgb).quantize(64)
    colours = (pal.getpalette() + [0] * 768)[:768]
    colormap = (np.array(colours, np.uint16).reshape(256, 3).T * 257).astype(np.uint16)
    bad = _write(tmp_path / "pal.tif", np.asarray(pal), photometric="palette", colormap=colormap)
    good = _write(tmp_path / "rgb.tif", cmu_rgb)
    proc = run_cli("tile", bad, good, "--out", tmp_path / "out", "--tissue-threshold", "0.1")
    assert proc.returncode == 1, proc.stderr
    assert f"error: {bad}: is a palette-colour image (at most 256 colours for the whole slide" in proc.stderr
    assert "Fix: score the original RGB scan" in proc.stderr
    assert not (tmp_path / "out" / "pal.h5").exists() and (tmp_path / "out" / "rgb.h5").is_file()


def test_a_macro_image_stored_in_tiles_after_the_pyramid_is_named_not_called_damaged(tmp_path, cmu_rgb):
    """A converter that writes the label and macro images tiled after the pyramid: OpenSlide's
    generic-TIFF reader takes them for levels out of order and refuses the file; the line was 'looks
    like a TIFF file but OpenSlide cannot read it: it may be truncated, damaged ... copy or export the
    slide again'. The batch goes on."""
    import tifffile

    path = tmp_path / "with_macro.tif"
    kw = dict(tile=(128, 128), photometric="rgb", compression="jpeg", metadata=None)
    with tifffile.TiffWriter(path) as tw:
        tw.write(cmu_rgb, resolution=(2e4, 2e4), resolutionunit="CENTIMETER", **kw)
        tw.write(cmu_rgb[::4, ::4].copy(), subfiletype=1, **kw)
        tw.write(np.full((256, 640, 3), 40, np.uint8), subfiletype=1, description="macro", **kw)
    proc = run_cli("tile", path, CMU, "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert (f"error: {path}: is a TIFF whose tiled images do not shrink in order (image 2, 640x256 px, follows one "
            "of 128x128 px: a label or macro image stored in tiles?)") in proc.stderr, proc.stderr
    assert "damaged" not in proc.stderr and "copying it again will not help" in proc.stderr
    assert (tmp_path / "out" / "CMU-1-Small-Region.h5").exists()


@pytest.mark.parametrize("unit", ["&#181;m", "&#xB5;m", "&#956;m"])
def test_an_ome_unit_written_as_a_character_reference_is_read(tmp_path, cmu_rgb, unit):
    """An OME-XML written by an ASCII serialiser spells µm as a character reference, which any XML
    parser reads as µm; the unit was not recognised, so the slide fell back to its TIFF resolution
    tags (vips' 10 px/cm: 'metadata says 1000 µm/px, which is implausible')."""
    ome = ('<?xml version="1.0" encoding="ASCII"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06">'
           '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="512" SizeY="512" '
           f'SizeC="3" SizeZ="1" SizeT="1" PhysicalSizeX="0.5" PhysicalSizeXUnit="{unit}" PhysicalSizeY="0.5" '
           f'PhysicalSizeYUnit="{unit}"><TiffData/></Pixels></Image></OME>')
    path = _write(tmp_path / "s.ome.tif", cmu_rgb, description=ome, resolution=(10, 10), compression="jpeg")
    with Slide.open(path) as s:
        assert s.mpp == pytest.approx(0.5)
