"""Hunt 31a: a scanner's sharpening is flagged ``sharpened``.

An unsharp mask (a scanner's "enhanced" setting) scores slides too high (amount 1 at sigma 0.75 µm:
+6 points on 16 default-look slides; 2.5: +17), through the encoder's embeddings (the tile measurements
of the unsharpened slides swapped in left +5.8). An optical blur cannot brighten the light side of an
edge above the light tissue further out; an unsharp mask does: :func:`weakstil.qc.image.edge_halo`
measures that halo and the flag fires above a fixed limit that real scanners' own mild sharpening
stays under (CMU-1 0.08-0.11 against 0.15).
"""

from __future__ import annotations

import math

import cv2
import h5py
import numpy as np
import pytest
import tifffile
from conftest import write_tiff_slide

from weakstil.qc.flags import slide_flags
from weakstil.qc.image import (
    SHARPENED_HALO,
    ImageStats,
    edge_halo,
    slide_image_stats,
    tile_halo,
)
from weakstil.slide import Slide


def _sharpen(img: np.ndarray, amount: float) -> np.ndarray:
    """An unsharp mask of ``amount``, sigma 1.5 px (0.75 µm at 0.5 µm/px), as benchmarks/appearance_sweep.py."""
    f = img.astype(np.float32)
    return np.clip(np.rint(f + amount * (f - cv2.GaussianBlur(f, (0, 0), 1.5))), 0, 255).astype(np.uint8)


def _noise(img: np.ndarray, sd: float) -> np.ndarray:
    f = img.astype(np.float32) + np.random.default_rng(0).normal(0, sd, img.shape).astype(np.float32)
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def looks(tmp_path_factory):
    """One synthetic slide (sTIL 25 %) as scanned, sharpened (amount 1 and 2.5) and noisy (sd 14 grey
    levels), each written as a slide of its own: the median edge halo of its tissue tiles."""
    from weakstil.synth import generate_slide

    root = tmp_path_factory.mktemp("looks31a")
    res = generate_slide(root / "s.tiff", root / "truth", "s", 3, size_mm=(1.0, 1.0), target_stil=25.0,
                         group="centre_0", preview=False)
    with h5py.File(res.truth_path) as f:
        coords = f["tiles"]["coords"][:][f["tiles"]["tissue_fraction"][:] > 0.5]
    img = tifffile.imread(res.path, key=0)
    out = {}
    for name, pixels in (("scanned", img), ("sharpened", _sharpen(img, 1.0)), ("noisy", _noise(img, 14.0)),
                         ("sharpened_strongly", _sharpen(img, 2.5))):
        path = write_tiff_slide(root / f"{name}.tiff", pixels)
        with Slide.open(path) as slide:
            tiles = [slide.read_region(int(x), int(y), 224, 0.5) for x, y in coords]
        out[name] = float(np.nanmedian(tile_halo(tiles, 0.5)))
    assert len(coords) >= 20
    return out


def test_the_halo_measures_sharpening_not_noise(looks):
    """The edge halo of the same slide: as scanned and with noise (no halo an optical blur could make)
    under the flag's limit with room, sharpened above the scanned slide, sharpened strongly above the limit."""
    halo = looks
    assert halo["scanned"] < SHARPENED_HALO / 3 and halo["noisy"] < SHARPENED_HALO / 3, halo
    assert halo["sharpened"] > halo["scanned"] + 0.05, halo
    assert halo["sharpened_strongly"] > SHARPENED_HALO, halo


def test_a_blurred_edge_has_no_halo_and_a_sharpened_one_has():
    """A dark disc 7 µm across (a lymphocyte's nucleus) blurred as optics do reads no halo; the same
    disc through an unsharp mask of amount 1 and 2.5 reads one, growing with the amount."""
    yy, xx = np.mgrid[:96, :96]
    img = np.full((96, 96), 225.0, np.float32)
    for cy, cx in ((24, 24), (24, 70), (70, 30), (68, 72)):
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 7 ** 2] = 70.0
    blurred = cv2.GaussianBlur(img, (0, 0), 0.6)  # in focus: edges about a micrometre wide
    halos = [edge_halo(blurred + a * (blurred - cv2.GaussianBlur(blurred, (0, 0), 1.5)), 0.5) for a in (0.0, 1.0, 2.5)]
    assert halos[0] <= 0 < halos[1] < halos[2], halos
    assert halos[2] > SHARPENED_HALO


def test_the_real_slide_is_not_flagged_sharpened(cmu):
    """CMU-1 (an Aperio scan, JPEG; the scanner's own mild sharpening: 0.08 on its fullest tissue tiles) stays under the limit."""
    with Slide.open(cmu) as slide:
        coords = np.array([[x, y] for y in range(0, 2700, 224) for x in range(0, 2000, 224)])
        # its tissue tiles as the focus measure draws them (tissue share: grey under 200)
        tissue = np.array([(slide.read_region(int(x), int(y), 224, 0.5).mean(-1) < 200).mean() for x, y in coords])
        stats = slide_image_stats(slide, coords, tissue, 224, 0.5)
    assert stats.focus_tiles == 48 and math.isfinite(stats.halo)
    assert stats.halo < SHARPENED_HALO * 0.9, stats.halo
    assert ImageStats.from_dict(stats.to_dict()).halo == stats.halo


def test_the_flag_fires_above_the_limit_only():
    base = dict(stain_h=[0.6, 0.7, 0.3], stain_e=[0.2, 0.9, 0.4], stain_max_c=[1.9, 0.8], stain_source="macenko",
                od_mean=[0.3, 0.4, 0.2], tissue_fraction=0.5, pen_share=0.0, fold_share=0.0, blur_median=0.2,
                blurry_share=0.0, focus_tiles=48)

    def flags(**extra):
        return slide_flags(ood_score=None, ood_threshold=None, n_bed_tiles=100, low=None, high=None, threshold=30,
                           image=ImageStats(**base, **extra), image_ref=None)

    assert flags(halo=0.02)[0] == [] and flags()[0] == []  # a record from before hunt 31 has none: no flag
    found, why = flags(halo=0.3)
    assert found == ["sharpened"] and "0.30" in why["sharpened"] and "sharpening off" in why["sharpened"]
    # records written before hunt 31 (no halo) load as not measured
    assert math.isnan(ImageStats.from_dict({k: v for k, v in ImageStats(**base).to_dict().items() if k != "halo"}).halo)
