"""Hunt 31 b: the same tissue scanned at a µm/px that is no whole multiple of the model's is read as sharp.

A scan at 0.2425, 0.263 or 0.46 µm/px (3DHistech, GT450, Hamamatsu, Ventana) is read at 0.5 µm/px by a
box average over whole blocks of pixels and a resize of the fraction left. That resize was bilinear,
whose triangle averages neighbouring pixels: the tiles' mean gradient 9-12 % below the 0.5 µm/px
pixels' and, on ``benchmarks/scan_variants.py``'s 6 slides, every slide scored 0.1-1.6 sTIL points
lower than the same tissue at 0.5. Now antialiased bicubic (Pillow's and PyTorch's, so the OpenSlide,
libjpeg-turbo and nvJPEG readers agree); whole ratios are never resized, so 0.5 and 0.25 µm/px scans
and every synthetic figure keep their tiles bit for bit.
"""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from planted import write_generic_tiff

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """A 0.8 mm synthetic slide at 0.5 µm/px and the same tissue as finer scans (Lanczos: no detail a
    finer sensor would add, so a faithful reader gives back the 0.5 µm/px pixels)."""
    import tifffile
    from PIL import Image

    from weakstil.synth.generator import generate_slide, slide_seed

    root = tmp_path_factory.mktemp("h31b")
    src = root / "s.tiff"
    generate_slide(src, root, "s", slide_seed(31, 0), size_mm=(0.8, 0.8), target_stil=8.0, preview=False)
    img = tifffile.imread(src, level=0)
    out = {0.5: (src, img)}
    h, w = img.shape[:2]
    for mpp in (0.46, 0.2425):
        f = 0.5 / mpp
        finer = np.asarray(Image.fromarray(img).resize((round(w * f), round(h * f)), Image.Resampling.LANCZOS))
        out[mpp] = (write_generic_tiff(root / f"s_{mpp}.tiff", finer, mpp), finer)
    return out


def _grad(a: np.ndarray) -> float:
    g = a.astype(np.float32).mean(-1)
    return float(np.abs(np.diff(g, axis=-1)).mean() + np.abs(np.diff(g, axis=-2)).mean()) / 2


def _aligned(mpp: float) -> tuple[np.ndarray, np.ndarray]:
    """Tile corners on the 0.5 µm/px pixels and the same places on the ``mpp`` scan, both whole pixels."""
    f = Fraction(0.5 / mpp).limit_denominator(1000)
    xs = [k * f.denominator for k in range(1, 20) if 150 <= k * f.denominator <= 1600 - 224 - 150][:3]
    at05 = np.array([[x, y] for x in xs for y in xs])
    return at05, at05 * f.numerator // f.denominator


def _readers(path, coords):
    """The same tiles through the three readers: OpenSlide, the JPEG tiles (libjpeg-turbo) and the
    GPU path's code (torchvision's decoder, on the CPU here)."""
    from weakstil.decode import plan_reader
    from weakstil.decode.gpu import GpuTileBatches
    from weakstil.slide import Slide

    with Slide.open(path) as s:
        openslide = np.stack([s.read_region(int(x), int(y), 224, 0.5) for x, y in coords])
        spec = plan_reader(s, 0.5, 224)
    assert spec.jpeg is not None
    jpeg = np.zeros_like(openslide)
    reader = spec.open()
    reader.read_batch(coords, jpeg)
    reader.close()
    gpu = GpuTileBatches(spec.jpeg, coords, 224, 9, "cpu")
    on_gpu = np.concatenate([b.numpy() for _, b in gpu])
    gpu.close()
    return {"openslide": openslide, "jpeg": jpeg, "gpu": on_gpu}


@pytest.mark.parametrize("mpp", [0.46, 0.2425])
def test_a_scan_at_another_ratio_is_read_as_sharp_as_the_tissue(scans, mpp):
    _, img = scans[0.5]
    at05, there = _aligned(mpp)
    want = np.stack([img[y:y + 224, x:x + 224] for x, y in at05])
    got = _readers(scans[mpp][0], there)
    for name, tiles in got.items():
        sharp = _grad(tiles) / _grad(want)
        off = np.abs(tiles.astype(int) - want).mean()
        # the tiles' mean gradient over the 0.5 µm/px pixels' (their JPEG noise, which the finer scan's
        # resampling and encoding smooth, included): bilinear 0.55 / 0.62 at 0.46 / 0.2425 µm/px,
        # bicubic 0.69 / 0.73, on all three readers
        assert sharp > {0.46: 0.64, 0.2425: 0.68}[mpp], (name, sharp, off)
    # the readers agree (nvJPEG, libjpeg-turbo and OpenSlide: one filter)
    assert np.abs(got["gpu"].astype(int) - got["openslide"]).mean() < 0.5
    assert np.abs(got["jpeg"].astype(int) - got["openslide"]).mean() < 1.5


def test_whole_ratios_keep_their_pixels(scans, tmp_path):
    """A 0.5 µm/px scan is read pixel for pixel and a 0.25 one by whole 2 x 2 means: no resize filter."""
    from weakstil.slide import Slide
    from weakstil.synth.pyramid import downsample_mean

    _, img = scans[0.5]
    with Slide.open(scans[0.5][0]) as s:
        level0 = np.asarray(s.backend.read_region((0, 0), 0, (1600, 1600)).convert("RGB"))
        got = s.read_region(300, 500, 224, 0.5)
    assert np.array_equal(got, level0[500:724, 300:524])
    x40 = write_generic_tiff(tmp_path / "x40.tiff", img.repeat(2, 0).repeat(2, 1), 0.25)
    with Slide.open(x40) as s:
        region = np.asarray(s.backend.read_region((600, 1000), 0, (448, 448)).convert("RGB"))
        got = s.read_region(600, 1000, 224, 0.5)
    assert np.array_equal(got, downsample_mean(region, 2))


def test_a_cache_resized_bilinearly_is_embedded_again():
    from weakstil.feature_cache import _decoded_before_resize_fix as stale
    from weakstil.slide import READ_REDUCE

    def attrs(slide_mpp, decode):
        return {"mpp": 0.5, "slide_mpp": slide_mpp, "decode": json.dumps(decode)}

    hunt30 = "box, then bilinear; pixel for pixel within 2 % of a whole ratio"
    for slide_mpp in (0.46, 0.263, 0.2425):
        why = stale(attrs(slide_mpp, {"path": "openslide", "reduce": hunt30}))
        assert why is not None and "bilinearly" in why and "bicubic" in why, slide_mpp
        assert stale(attrs(slide_mpp, {"path": "openslide", "reduce": READ_REDUCE})) is None
    # a DCT-scaled 0.2425 µm/px scan: 1/2 in the decoder, 1.03x left to the resize
    assert stale(attrs(0.2425, {"path": "jpeg", "dct_scale": "1/2", "dct_resize": "true extent",
                                "reduce": hunt30})) is not None
    # whole ratios read the same pixels as before: their caches are kept
    for slide_mpp in (0.5, 0.25, 0.499, 0.2525):
        assert stale(attrs(slide_mpp, {"path": "openslide", "reduce": hunt30})) is None, slide_mpp
    assert stale(attrs(0.25, {"path": "jpeg", "dct_scale": "1/2", "dct_resize": "true extent", "reduce": hunt30})) is None
