"""Hunt 32a: a scanner's sharpening is undone before the encoder.

An unsharp mask ``s = f + a (f - G_σ * f)`` (a scanner's "enhanced" setting) scored held-out slides
+6 (amount 1) to +17 (amount 2.5) sTIL points high, through the encoder's embeddings (hunt 31a). Its
exact inverse is a mixture of Gaussians with non-negative weights (an optical blur), applied to the tiles
of a slide whose edge halo is above the ``sharpened`` flag's limit, with the amount read from the
slide's own tiles before embedding; every other slide's tiles reach the encoder unchanged.
"""

from __future__ import annotations

import json
import math

import cv2
import h5py
import numpy as np
import pytest
import tifffile
from conftest import TEST_DATA, write_tiff_slide
from PIL import Image

from weakstil.qc.flags import slide_flags
from weakstil.qc.image import SHARPENED_HALO, ImageStats, tile_halo
from weakstil.slide import Slide
from weakstil.unsharp import Sharpening, corrected_batches, estimate_sharpening, inverse_weights, unsharpen

KATHER = TEST_DATA / "kather"


def _sharpen(img: np.ndarray, amount: float, sigma: float = 1.5, clip: bool = True) -> np.ndarray:
    """An unsharp mask of ``amount`` at ``sigma`` px, as benchmarks/appearance_sweep.py."""
    f = img.astype(np.float32)
    out = f + amount * (f - cv2.GaussianBlur(f, (0, 0), sigma))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8) if clip else out


def _kather() -> list[np.ndarray]:
    """The 32 real Kather tiles (CRC-VAL-HE-7K, 224 px at 0.5 µm/px) committed in tests/data."""
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(KATHER.glob("*.png"))]


def test_the_inverse_is_an_optical_blur_that_undoes_the_mask():
    """The inverse's weights are non-negative and sum to 1 (a point-spread function); on a real tile
    sharpened with amount 1 and 2.5 it gives the tile back (exactly before 8-bit clipping; within 1 and
    3.5 grey levels on average after it, away from the tile's border), where a plain Gaussian of the
    mask's width does not."""
    for a in (0.5, 1.0, 2.5, 4.0):
        w = inverse_weights(a)
        assert (w >= 0).all() and abs(w.sum() - 1) < 1e-9
    tile = _kather()[20]  # a lymphocyte tile
    inner = (slice(16, -16), slice(16, -16))
    for a, clipped_error in ((1.0, 1.0), (2.5, 3.5)):
        exact = unsharpen_float(_sharpen(tile, a, clip=False), a)
        assert np.abs(exact - tile)[inner].mean() < 0.1  # the series itself is exact
        sharp = _sharpen(tile, a)  # 8 bits, clipped, as a scanner writes it (2.5: 9 % of the values clipped)
        err = np.abs(unsharpen(sharp, a, 1.5).astype(np.float32) - tile)[inner].mean()
        plain = np.abs(cv2.GaussianBlur(sharp.astype(np.float32), (0, 0), 1.5) - tile)[inner].mean()
        assert err < clipped_error and plain > 2 * err, (a, err, plain)


def unsharpen_float(img: np.ndarray, a: float, sigma: float = 1.5) -> np.ndarray:
    """:func:`unsharpen`'s series on a float image (no 8-bit rounding or clipping)."""
    w = inverse_weights(a)
    return sum(w[k] * (img if k == 0 else cv2.GaussianBlur(img, (0, 0), sigma * math.sqrt(k), borderType=cv2.BORDER_REFLECT))
               for k in range(len(w)))


def test_real_scans_are_not_touched():
    """The 32 Kather tiles (a real scanner's own mild sharpening: halo 0.08) read under the limit: no
    correction, and the batch reaches the encoder as the very same array."""
    tiles = _kather()
    s = estimate_sharpening(tiles, 0.5)
    assert not s.corrected and s.amount == 0 and 0 < s.halo < SHARPENED_HALO
    batch = np.stack(tiles)
    (start, out), = list(corrected_batches(iter([(0, batch)]), s, 0.5))
    assert out is batch


def test_the_amount_is_read_from_the_tiles_and_undoes_the_halo():
    """16 Kather tiles through an unsharp mask of amount 2.5 (sigma 0.75 µm, clipped to 8 bits as a
    scanner writes it): corrected, with an amount below the one applied but most of it (the reading stops
    where the halo is gone, and an optical edge reads a little below none: it does not over-correct), and
    the halo back to none."""
    tiles = [_sharpen(t, 2.5) for t in _kather()[::2]]  # 16 tiles, 2 of each class
    s = estimate_sharpening(tiles, 0.5)
    assert s.corrected and 1.25 <= s.amount <= 2.6, s  # 1.56
    assert s.halo > SHARPENED_HALO and s.halo_after <= 0.0, s
    back = Sharpening.from_json(s.to_json())
    assert back == s
    fixed = unsharpen(np.stack(tiles), s.amount, s.sigma_um / 0.5)
    assert float(np.nanmedian(tile_halo(list(fixed), 0.5))) <= 0.0


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """One synthetic slide as scanned and through an unsharp mask of amount 2.5, embedded by a seeded
    random small CNN: ``{name: (features, attrs)}``."""
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.synth import generate_slide

    root = tmp_path_factory.mktemp("unsharp32a")
    res = generate_slide(root / "s.tiff", root / "truth", "s", 3, size_mm=(0.8, 0.8), target_stil=25.0,
                         group="centre_0", preview=False)
    img = tifffile.imread(res.path, key=0)
    encoder = create_encoder("small-cnn", weights="random")
    out = {}
    for name, pixels in (("scanned", img), ("sharpened", _sharpen(img, 2.5))):
        path = write_tiff_slide(root / f"{name}.tiff", pixels)
        result = embed_slide(path, encoder, out_dir=root / "features", workers=0, stats_processes=0)
        with h5py.File(result.path) as f:
            coords = [tuple(c) for c in f["coords"][:]]
            out[name] = (dict(zip(coords, f["features"][:])), dict(f.attrs))
        out[f"{name}_files"] = (path, result.path)
    out["encoder"] = encoder
    return out


def test_a_sharpened_slide_is_embedded_as_if_scanned_without_it(embedded):
    """The sharpened slide's features file records the correction, and its tiles' features land near
    the unsharpened slide's (relative distance under half of what the sharpening alone moves them)."""
    scanned, attrs = embedded["scanned"]  # 0.8 x 0.8 mm, sTIL 25 %
    sharp, sharp_attrs = embedded["sharpened"]
    rec = Sharpening.from_json(sharp_attrs["sharpening"])
    assert rec.corrected and 1.5 <= rec.amount <= 2.6 and rec.halo > SHARPENED_HALO, rec  # 2.03
    none = Sharpening.from_json(attrs["sharpening"])
    assert not none.corrected and none.halo < SHARPENED_HALO / 3, none
    both = sorted(set(scanned) & set(sharp))  # the tiles both slides hold (tissue detection may differ)
    assert len(both) >= 10
    a, b = np.stack([scanned[c] for c in both]), np.stack([sharp[c] for c in both])
    moved = np.linalg.norm(b - a, axis=1).mean() / np.linalg.norm(a - a.mean(0), axis=1).mean()
    assert moved < 0.25, moved  # 0.12; uncorrected the mask moved them by 0.50 of their spread
    assert json.loads(sharp_attrs["sharpening"])["version"] == 1


def test_the_flag_says_the_slide_was_corrected():
    base = dict(stain_h=[0.6, 0.7, 0.3], stain_e=[0.2, 0.9, 0.4], stain_max_c=[1.9, 0.8], stain_source="macenko",
                od_mean=[0.3, 0.4, 0.2], tissue_fraction=0.5, pen_share=0.0, fold_share=0.0, blur_median=0.2,
                blurry_share=0.0, focus_tiles=48, halo=0.4)

    def why(sharpening):
        return slide_flags(ood_score=None, ood_threshold=None, n_bed_tiles=100, low=None, high=None, threshold=30,
                           image=ImageStats(**base), image_ref=None, sharpening=sharpening)[1]["sharpened"]

    assert "undone before the encoder" in why(Sharpening(0.4, 2.2, halo_after=-0.01, tiles=48))
    assert "amount 2.20" in why(Sharpening(0.4, 2.2, halo_after=-0.01, tiles=48))
    assert "scores run high" in why(None) and "scores run high" in why(Sharpening(0.4, 0.0))


def test_a_cache_made_before_the_correction_is_remade_only_for_a_sharpened_slide(embedded, tmp_path):
    """A feature cache without the ``sharpening`` record (made before hunt 32): kept for a slide that reads
    unsharpened (its features are what this version makes), remade for one that reads sharpened."""
    import shutil

    from weakstil.embed import embed_slide
    from weakstil.unsharp import sharpened_before

    for name, expect_stale in (("scanned", False), ("sharpened", True)):
        slide_path, cache = embedded[f"{name}_files"]
        old = tmp_path / name / cache.name
        old.parent.mkdir()
        shutil.copy(cache, old)
        with h5py.File(old, "a") as f:
            del f.attrs["sharpening"]
            attrs = dict(f.attrs)
        with Slide.open(slide_path) as slide:
            why = sharpened_before(old, attrs, slide)
        assert (why is not None) == expect_stale, (name, why)
        if not expect_stale:
            assert embed_slide(slide_path, embedded["encoder"], out_dir=old.parent, workers=0, stats_processes=0).skipped
    assert "sharpening" in why


def test_a_decoded_tensor_batch_is_corrected_as_an_array_is():
    """GPU-decoded batches are torch tensors (…, 3) uint8: corrected on a host copy, back on their device,
    the same pixels as an array batch."""
    import torch

    tiles = np.stack([_sharpen(t, 2.5) for t in _kather()[:4]])
    s = Sharpening(0.5, 2.0, halo_after=0.0, tiles=4)
    (_, as_array), = list(corrected_batches(iter([(0, tiles)]), s, 0.5))
    (_, as_tensor), = list(corrected_batches(iter([(0, torch.from_numpy(tiles.copy()))]), s, 0.5))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.uint8
    assert np.array_equal(as_tensor.numpy(), as_array) and not np.array_equal(as_array, tiles)
