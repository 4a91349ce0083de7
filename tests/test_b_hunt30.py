"""Hunt 30 (b): accuracy on looks nobody tuned on (``benchmarks/appearance_sweep.py``).

A held-out synthetic cohort re-rendered by appearance transforms (hue, stain balance, exposure,
saturation, casts, focus, noise, JPEG, sharpening, native resolution) and scored by the demo model.
The faded (desaturated) look was where the product went wrong without saying why: all the tissue of
5 of 16 slides was dropped as grey marker ink, and the refusal sent the user to lower the tissue
threshold of a slide whose tissue is plain to see."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from conftest import run_cli, write_tiff_slide

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Beer-Lambert stain vectors (optical density per unit, R G B): a haematoxylin and an eosin
H = np.array([0.65, 0.70, 0.29])
E = np.array([0.07, 0.99, 0.11])


def _he_disc(n: int = 2048, seed: int = 0) -> np.ndarray:
    """A 1 mm disc of H&E tissue (eosin stroma, haematoxylin nuclei) on glass of 240, 0.5 µm/px."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    disc = (yy - n / 2) ** 2 + (xx - n / 2) ** 2 < (0.4 * n) ** 2
    nuc = ndi.gaussian_filter((rng.random((n, n)) < 0.004).astype(np.float32), 3)
    nuc = np.clip(nuc / nuc.max() * 3, 0, 1)
    e = disc * (0.25 + 0.1 * ndi.gaussian_filter(rng.random((n, n)), 8))
    h = disc * (0.08 + 0.9 * nuc)
    od = h[..., None] * H + e[..., None] * E
    return np.clip(240 * np.exp(-od * np.log(10)) + rng.normal(0, 2, (n, n, 3)), 0, 255).astype(np.uint8)


def _desaturate(rgb: np.ndarray, s: float) -> np.ndarray:
    """Saturation x ``s`` towards each pixel's luminance (a faded stain, a washed-out colour scan)."""
    f = rgb.astype(np.float32)
    y = f @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(np.rint(y[..., None] + s * (f - y[..., None])), 0, 255).astype(np.uint8)


def test_b_faded_tissue_dropped_as_ink_is_refused_for_what_it_is(tmp_path):
    """At 0.2 x its saturation the disc's tissue (0.53 mm²) absorbs like grey marker ink, and the
    ink rules drop all of it. The refusal said "no tissue found (0 tiles)" and sent the user to
    lower the tissue threshold (which changes nothing); it now says that everything absorbing
    light looks like marker ink, faded or washed-out tissue, and what to do. The same disc at its
    own saturation is tiled."""
    from weakstil.slide import Slide
    from weakstil.tiles import find_tiles

    rgb = _he_disc()
    with Slide.open(write_tiff_slide(tmp_path / "he.tiff", rgb)) as s:
        assert len(find_tiles(s).coords) > 30
    path = write_tiff_slide(tmp_path / "faded.tiff", _desaturate(rgb, 0.2))
    proc = run_cli("tile", path, "--out", tmp_path / "out")
    assert proc.returncode == 1
    err = proc.stderr
    assert "no tissue found (0 tiles)" in err and "looks like marker ink" in err and "faded" in err, err
    assert "--tissue-threshold" not in err, err
    assert not (tmp_path / "out" / "faded.h5").exists()


def _stain_and_stroma(path):
    """The slide's stain estimate and the mean stroma estimate of its tiles (tile statistics)."""
    from weakstil.decode.readers import plan_reader
    from weakstil.decode.workers import iter_batches_inline
    from weakstil.slide import Slide
    from weakstil.stain import estimate_slide_stain
    from weakstil.tiles import find_tiles
    from weakstil.tilestats import COLUMNS, batch_stats

    with Slide.open(path) as s:
        tiles = find_tiles(s)
        stain = estimate_slide_stain(s, tiles)
        spec = plan_reader(s, tiles.params.mpp, tiles.params.tile_px)
        rows = np.concatenate([batch_stats(b, stain, tiles.params.mpp)
                               for _, b in iter_batches_inline(spec, np.asarray(tiles.coords), 16)])
    return stain, rows[:, list(COLUMNS).index("stroma_estimate")].mean()


def test_b_a_dim_scan_is_unmixed_against_its_own_glass(tmp_path):
    """The same H&E disc scanned at 0.85 x exposure (glass 204 instead of 240): optical densities were
    taken against a fixed 240, so the glass and every pixel carried a grey density of 0.16, the
    Macenko strengths rose (eosin +15 %, haematoxylin +6 %; eosin vector 6.4° off), the stroma estimate
    fell 0.955 -> 0.938, and the demo model
    scored the cohort's low-sTIL slides up to 10 points high (slide MAE 1.96 -> 3.55 at 0.88 x). The
    densities are now against the slide's own glass (``white``), and the dim scan's stain and
    stroma estimate are the bright scan's."""
    from weakstil.stain import SlideStain

    rgb = _he_disc(1536)
    bright = write_tiff_slide(tmp_path / "bright.tiff", rgb)
    dim = write_tiff_slide(tmp_path / "dim.tiff", np.clip(np.rint(rgb * 0.85), 0, 255).astype(np.uint8))
    (s0, stroma0), (s1, stroma1) = _stain_and_stroma(bright), _stain_and_stroma(dim)
    cos = (s1.he * s0.he).sum(0) / np.linalg.norm(s1.he, axis=0) / np.linalg.norm(s0.he, axis=0)
    np.testing.assert_allclose(s1.max_c, s0.max_c, rtol=0.03)  # was +6 % (H), +15 % (E)
    assert abs(stroma1 - stroma0) < 0.005, (stroma0, stroma1)  # was 0.955 -> 0.938
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 4.0  # eosin was 6.4° off
    assert s0.white is None
    assert s1.white is not None and all(200 <= w <= 208 for w in s1.white), s1.white
    # the white point travels with the recorded stain (feature files, the tile-statistics workers)
    assert SlideStain.from_attr(s1.to_dict()).white == s1.white
