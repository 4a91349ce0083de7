"""Tissue detection holds across H&E looks: a lab's tinted glass is not tissue, and dense
lymphocytes stained with a red-absorbing (bluer-looking) haematoxylin are tissue, not pen ink."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.transform import resize

from weakstil.slide import Slide
from weakstil.synth import generate_slide
from weakstil.tissue import detect_tissue, dice, pen_ink, white_balance

#: Beer-Lambert stain vectors (unit RGB optical density): Ruifrok's haematoxylin, a red-absorbing
#: haematoxylin (bluer on screen, as some labs stain), and a blue marker (passes blue light).
H_RUIFROK = (0.65, 0.70, 0.29)
H_RED_ABSORBING = (0.75, 0.61, 0.24)
BLUE_MARKER = (0.86, 0.51, 0.08)


def _pixels(vector, densities, glass=255.0):
    od = np.outer(densities, vector)
    return np.clip(np.round(glass * 10.0 ** -od), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def alt_til_rich(tmp_path_factory):
    """A 1.2 mm slide of the alt look (tinted glass, another lab's stain) with sTIL about 75 %."""
    out = tmp_path_factory.mktemp("alt_look")
    generate_slide(out / "s.tiff", out, "s", seed=19, size_mm=(1.2, 1.2), target_stil=75.0, preview=False,
                   look="alt")
    with h5py.File(out / "s.h5") as f:
        truth = {k: f[k][:] for k in ("tissue", "lymphocyte")}
        mask_mpp = float(f.attrs["mask_mpp"])
    with Slide.open(out / "s.tiff") as s:
        thumb = s.read_thumbnail(8.0)
    return thumb, truth, mask_mpp


def test_dense_lymphocytes_of_the_alt_look_are_tissue(alt_til_rich):
    thumb, truth, mask_mpp = alt_til_rich
    mask = detect_tissue(thumb, 8.0)
    shape = mask.shape
    tissue = resize(truth["tissue"].astype(np.float32), shape, order=1, anti_aliasing=True) > 0.5
    # lymphocyte-dense: >= 30 % of the area covered by lymphocytes within ~50 µm
    dense = ndi.gaussian_filter(truth["lymphocyte"].astype(np.float32), 25.0 / mask_mpp) >= 0.3
    dense = (resize(dense.astype(np.float32), shape, order=1) > 0.5) & tissue
    assert dense.sum() > 200  # the slide has a large dense infiltrate
    assert mask[dense].mean() > 0.97
    # and the tinted glass stays out
    assert (mask & ~tissue).sum() < 0.05 * tissue.sum()
    assert dice(mask, tissue) > 0.9


def test_tinted_glass_is_not_tissue():
    rng = np.random.default_rng(2)
    glass = np.clip(rng.normal((229.0, 232.0, 241.0), 2.0, (400, 400, 3)), 0, 255).astype(np.uint8)
    assert not detect_tissue(glass, 8.0).any()
    balanced = white_balance(glass).reshape(-1, 3).astype(float).mean(axis=0)
    assert np.ptp(balanced) < 2.0
    neutral = np.full((50, 50, 3), 240, np.uint8)
    assert white_balance(neutral) is neutral  # an untinted slide is left as it is


@pytest.mark.parametrize("haematoxylin", [H_RUIFROK, H_RED_ABSORBING])
def test_haematoxylin_is_not_blue_ink_but_a_blue_marker_is(haematoxylin):
    densities = np.linspace(0.1, 1.6, 16)
    stain = _pixels(haematoxylin, densities)
    ink = _pixels(BLUE_MARKER, densities)
    assert not pen_ink(*(stain[:, c] for c in range(3))).any()
    assert pen_ink(*(ink[:, c] for c in range(3))).all()


@pytest.mark.parametrize("bright, fall", [(224.0, 39.0), (200.0, 30.0)])
def test_dim_unevenly_lit_glass_is_not_tissue_but_fat_on_it_is(bright, fall):
    """A dim scanner whose lamp falls off towards one edge (glass 224 -> 185, or 200 -> 170,
    slightly blue): its dim glass is neither stained tissue nor the faint membranes of fat, while
    a stained region and a patch of fat (bright cells, faint one-pixel membranes) on the dim side are
    tissue. Before: 2.8x (and 4x) the tissue's area of glass was called tissue."""
    rng = np.random.default_rng(0)
    mpp, h, w = 8.0, 320, 320
    lamp = bright - fall * np.linspace(0.0, 1.0, w) ** 2
    rgb = np.stack([lamp, lamp, 0.96 * lamp], axis=-1)[None].repeat(h, axis=0) + rng.normal(0, 1.5, (h, w, 3))
    yy, xx = np.mgrid[:h, :w]
    stained = (yy - 100) ** 2 / 70**2 + (xx - 130) ** 2 / 60**2 < 1
    rgb[stained] = np.array([215.0, 150.0, 195.0]) * bright / 224.0 + rng.normal(0, 12, (stained.sum(), 3))
    fat = (yy >= 200) & (yy < 290) & (xx >= 200) & (xx < 290)  # 0.7 mm of fat on the dim side
    membrane = fat & ((yy % 7 == 0) | (xx % 7 == 0))  # cells of ~50 µm
    rgb[membrane] = rgb[membrane] * np.array([0.93, 0.86, 0.91])  # faintly stained (pink)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    mask = detect_tissue(rgb, mpp)
    tissue = stained | fat
    assert (mask & ~tissue).sum() < 0.1 * tissue.sum()
    assert mask[stained].mean() > 0.95
    assert mask[fat].mean() > 0.8
