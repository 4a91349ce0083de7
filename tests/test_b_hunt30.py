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
