"""Stage-1 decoding and the feature cache (hunt 9): damaged JPEG tiles stop the slide, a changed
--slide-mpp is another tiling, the tile command's temp files, the embedding's warnings."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from conftest import shared_file, write_tiff_slide
from weakstil.decode import plan_reader
from weakstil.decode.jpeg_tiles import CorruptTileError, _decoder
from weakstil.decode.workers import DecodePool, iter_batches_inline
from weakstil.errors import WeakSTILError
from weakstil.slide import Slide

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- damaged JPEG tiles -----------------------------------------------------------------
@pytest.fixture(scope="module")
def damaged_tiff(tmp_path_factory):
    """A 768 px, 3x3-tile JPEG TIFF at 0.5 µm/px whose centre tile has its middle third of
    compressed bytes zeroed (a damaged copy): ``(path, level-0 x, y of that tile)``."""
    rng = np.random.default_rng(0)
    rgb = (rng.integers(120, 230, (96, 96, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1))
    path = write_tiff_slide(tmp_path_factory.mktemp("damaged") / "damaged.tiff", rgb, levels=1)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        off, n = page.dataoffsets[4], page.databytecounts[4]
    with open(path, "r+b") as fh:
        fh.seek(off + n // 3)
        fh.write(b"\0" * (n // 3))
    return path, 256, 256


def _assert_damaged_error(exc, path) -> None:
    text = str(exc)
    assert str(path) in text and "x=256, y=256" in text and "damaged" in text
    assert "Corrupt JPEG data" in text and "copy or export it again" in text


def test_a_damaged_jpeg_tile_stops_the_slide_as_openslide_does(damaged_tiff):
    path, x, y = damaged_tiff
    with Slide.open(path) as s, pytest.raises(Exception, match="Corrupt JPEG data"):
        s.read_region(x, y, 224, 0.5)  # OpenSlide refuses the tile (and its handle stays failed)
    with Slide.open(path) as s:
        spec = plan_reader(s, 0.5, 224)
    assert spec.jpeg is not None  # the default JPEG-tile path, not OpenSlide
    coords = np.array([[0, 0], [x, y]])
    with pytest.raises(CorruptTileError) as exc:  # used to decode flat blocks silently
        for _ in iter_batches_inline(spec, coords, 2):
            pass
    _assert_damaged_error(exc.value, path)
    # undamaged tiles of the same file still read
    assert next(iter_batches_inline(spec, coords[:1], 1))[1].shape == (1, 224, 224, 3)


def test_a_damaged_jpeg_tile_in_a_decode_worker_is_one_clear_error(damaged_tiff):
    path, x, y = damaged_tiff
    with Slide.open(path) as s:
        spec = plan_reader(s, 0.5, 224)
    with DecodePool(1) as pool, pytest.raises(WeakSTILError) as exc:
        for _ in pool.batches(spec, np.array([[0, 0], [x, y]]), batch_size=2):
            pass
    _assert_damaged_error(exc.value, path)
    assert "report it" not in str(exc.value)  # not a crash of ours


def test_padding_before_eoi_still_decodes():
    """Strict decoding refuses damaged data only: bytes between the last scan and EOI (padding
    some writers leave; a libjpeg warning, the pixels whole) decode as before."""
    import simplejpeg

    rgb = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    stream = simplejpeg.encode_jpeg(rgb, colorspace="RGB")
    padded = stream[:-2] + b"\x12\x34\x56" + stream[-2:]
    with pytest.raises(ValueError, match="extraneous bytes"):
        simplejpeg.decode_jpeg(padded, strict=True)
    decode, name = _decoder()
    assert name == "simplejpeg"
    np.testing.assert_array_equal(decode(padded, 1, 64, 64), simplejpeg.decode_jpeg(stream))


# -- the feature cache ------------------------------------------------------------------
@pytest.fixture(scope="module")
def pink_tiff(tmp_path_factory):
    """A 1024 px JPEG TIFF at 0.5 µm/px, all H&E-pink tissue (every tile is kept)."""
    rng = np.random.default_rng(2)
    base = np.array([200, 120, 170], np.int16)
    rgb = np.clip(base + rng.integers(-25, 25, (128, 128, 3)), 0, 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    return write_tiff_slide(tmp_path_factory.mktemp("pink") / "pink.tiff", rgb, levels=1)


@pytest.fixture(scope="module")
def encoder():
    from weakstil.encoders import create_encoder

    return create_encoder("small-cnn", weights="random", seed=3)


def test_another_slide_mpp_is_another_tiling_and_refused(pink_tiff, encoder, tmp_path):
    from weakstil.embed import embed_slide
    from weakstil.files import FeaturesFile

    out = tmp_path / "pink.h5"
    first = embed_slide(pink_tiff, encoder, out_path=out, slide_mpp=0.5, workers=0, tile_stats=False)
    assert first.n_tiles > 0 and not first.skipped
    # the metadata's own 0.5 µm/px: the same grid, the cache is current
    assert embed_slide(pink_tiff, encoder, out_path=out, workers=0, tile_stats=False).skipped
    with pytest.raises(WeakSTILError, match="another tiling.*slide at 0.5 µm/px.*slide at 0.25 µm/px"):
        embed_slide(pink_tiff, encoder, out_path=out, slide_mpp=0.25, workers=0, tile_stats=False)
    attrs, _ = FeaturesFile.read_header(out)  # kept, not replaced by the other grid
    assert attrs["n_tiles"] == first.n_tiles and attrs["slide_mpp"] == pytest.approx(0.5)
    again = embed_slide(pink_tiff, encoder, out_path=out, slide_mpp=0.25, workers=0, tile_stats=False,
                        overwrite=True)
    assert again.n_tiles != first.n_tiles


# -- weakstil tile ----------------------------------------------------------------------
def test_tile_removes_the_overlay_png_temp_of_a_killed_run(pink_tiff, tmp_path):
    import subprocess
    import sys

    from weakstil.atomic import _HOST
    from weakstil.tiles import tile_slide_to_dir

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f".pink_tiles.png.{_HOST}.{dead.pid}.deadbeef.tmp"  # killed while saving the PNG
    leftover.write_bytes(b"\0" * 1000)
    h5, _ = tile_slide_to_dir(pink_tiff, tmp_path)
    assert h5.exists() and (tmp_path / "pink_tiles.png").exists()
    assert not leftover.exists()


# -- non-finite features --------------------------------------------------------------------
def test_broken_weights_on_the_cpu_blame_the_weights_file_and_stop_at_once(pink_tiff, encoder, tmp_path):
    import torch

    from weakstil.embed import embed_slide
    from weakstil.encoders import create_encoder

    # finite but overflowing in fp32 (so a load-time NaN check cannot catch it first): inf, then NaN
    state = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    for k, v in state.items():
        if v.is_floating_point() and v.ndim > 1:  # the convolutions
            v.fill_(1e30)
    weights = tmp_path / "overflow.pt"
    torch.save(state, weights)
    broken = create_encoder("small-cnn", weights=str(weights))
    assert broken.precision == "fp32"
    seen = []
    with pytest.raises(WeakSTILError) as exc:
        embed_slide(pink_tiff, broken, out_dir=tmp_path / "out", workers=0, tile_stats=False, batch_size=4,
                    progress=lambda done, n: seen.append((done, n)))
    text = str(exc.value)
    assert text.startswith(str(weights.resolve())) and "fp32" in text and "weights" in text
    assert "--device cpu" not in text  # the run was fp32 on the CPU already
    assert seen == []  # the first batch stopped it: not every tile embedded before failing
    assert not (tmp_path / "out" / "pink.h5").exists()


# -- --allow-upsample ------------------------------------------------------------------------
def test_the_upsampling_warning_is_recorded_in_the_tiles_file(tmp_path):
    import json

    import h5py

    from weakstil.tiles import tile_slide_to_dir

    path = shared_file("slides/slidetool_test_dicom.dcm")  # a 2 µm/px scan, tiled at 0.5
    h5, tiles = tile_slide_to_dir(path, tmp_path, allow_upsample=True)
    with h5py.File(h5) as f:
        warned = json.loads(f.attrs["warnings"])
    assert any("upsampled 4.0x" in w and "--allow-upsample" in w for w in warned), warned
    assert tiles.warnings == []  # not a warning about the image's look (no-tissue errors read those)


def test_the_upsampling_warning_is_recorded_in_the_feature_cache(pink_tiff, encoder, tmp_path):
    import json

    from weakstil.embed import embed_slide
    from weakstil.files import FeaturesFile

    res = embed_slide(pink_tiff, encoder, out_dir=tmp_path, slide_mpp=0.6, allow_upsample=True, workers=0,
                      tile_stats=False)
    attrs, _ = FeaturesFile.read_header(res.path)
    assert any("upsampled 1.2x" in w for w in json.loads(attrs["warnings"]))


# -- DCT-reduced reads --------------------------------------------------------------------
def test_a_dct_reduced_tile_is_resized_from_its_true_extent():
    """CMU (0.499 µm/px) read at 1 µm/px decodes at DCT scale 1/2 (0.998 µm/px): the tile covers
    224.45 decoded pixels; resizing the ceil (225) stretched it by 0.25 %, half a pixel at its far
    edge, away from OpenSlide's pixels."""
    from conftest import CMU

    with Slide.open(CMU) as s:
        spec = plan_reader(s, 1.0, 224)
        osl = spec.fall_back("reference")
        assert spec.jpeg is not None and spec.jpeg.reduce == 2
        coords = np.array([[897, 448], [1346, 448], [897, 897], [1346, 897]])
        a = np.zeros((len(coords), 224, 224, 3), np.uint8)
        b = a.copy()
        spec.open().read_batch(coords, a)
        osl.open().read_batch(coords, b)
    assert np.abs(a.astype(int) - b).mean() < 4  # was 5.8 on these tiles, now 2.4
    assert spec.describe()["dct_resize"] == "true extent"  # recorded in the features' decode provenance


def test_a_cache_decoded_at_a_dct_scale_before_the_resize_fix_is_embedded_again(pink_tiff, encoder, tmp_path):
    """Features made by the DCT-reduced reader before its resize fix (hunt 9b #5) were reused: the
    reader's geometry is no setting, so the cache key did not change. The fixed reader records
    ``dct_resize``; a reduced-scale cache without it is made again."""
    import json

    import h5py

    from weakstil.embed import embed_slide
    from weakstil.files import FeaturesFile

    out = tmp_path / "pink.h5"
    first = embed_slide(pink_tiff, encoder, out_path=out, slide_mpp=0.25, workers=0, tile_stats=False)
    decode = json.loads(FeaturesFile.read_header(out)[0]["decode"])
    assert decode["dct_scale"] == "1/2" and decode["dct_resize"] == "true extent"
    assert embed_slide(pink_tiff, encoder, out_path=out, slide_mpp=0.25, workers=0, tile_stats=False).skipped
    with h5py.File(out, "r+") as f:  # as an earlier WeakSTIL wrote it
        f.attrs["decode"] = json.dumps({k: v for k, v in decode.items() if k != "dct_resize"})
    again = embed_slide(pink_tiff, encoder, out_path=out, slide_mpp=0.25, workers=0, tile_stats=False)
    assert not again.skipped and again.n_tiles == first.n_tiles
    assert json.loads(FeaturesFile.read_header(out)[0]["decode"])["dct_resize"] == "true extent"
