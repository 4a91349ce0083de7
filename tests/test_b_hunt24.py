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
