"""Hunt 44b (h44f, h44j): the ink test's stain plane, set by an eosin estimate pulled towards haematoxylin.

Old: on an outside generator's purple look (heavy haematoxylin over pale eosin stroma with a haematoxylin tint: no
pixel is pure eosin) Macenko's eosin vector lay 14-25° off towards haematoxylin, 10-14° from it, so a few degrees
out of plane turned the plane through the two vectors 40-52°. Refitted from there, the plane locked onto the
haematoxylin-rich pixels and 25-49 % of the tissue of slides with no ink lay "off the plane": ink, just under the
50 % that calls the plane wrong. The tumour bed's ink veto marked 151-221 tiles on 4 of 36 slides, none inked.
Now the plane the slide's own stained pixels hold is taken where it holds clearly more of them and at most half as
much of the tissue lies off it (:func:`weakstil.ink_plane.own_plane`, :data:`weakstil.ink_plane.OWN_PLANE_INK_RATIO`):
a wrong plane leaves stain off it, the stains' plane only the ink, and a plane pulled to a wide marker trades the ink
for stain.

The image: a 4 µm/px thumbnail, glass around cellular tissue (haematoxylin, pale to dark) beside a stroma of pale
eosin with a haematoxylin tint; the stain given is og44b_016's recorded one, the generator's true vectors drawn.
"""

import numpy as np
import pytest

#: the 44b generator's haematoxylin and eosin optical-density vectors (og44b_016), and the slide's recorded estimate
H = np.array([0.481, 0.840, 0.251])
E = np.array([0.099, 0.941, 0.323])
RECORDED = np.array([[0.530, 0.425], [0.806, 0.891], [0.264, 0.162]])
N, MPP, SLIDE_MPP, TILE = 140, 4.0, 0.5, 224.0  # thumbnail side (px), its µm/px, the slide's, a tile (level-0 px)


def _image(haze: float, stroke_od: np.ndarray | None = None):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:N, 0:N]
    glass = (yy < 8) | (yy >= N - 8) | (xx < 8) | (xx >= N - 8)
    cell = (yy < 0.6 * N) & ~glass
    nuc = ndi.gaussian_filter(rng.random((N, N)), 0.7)
    nuc = (nuc - nuc.min()) / (nuc.max() - nuc.min())
    h = np.where(cell, 0.12 + 0.6 * nuc, 0.1)
    e = np.where(cell, 0.0, 0.14 + 0.06 * nuc)  # (with eosin in the cells' range the old refit found the plane)
    od = h[..., None] * H + e[..., None] * E + haze  # absorbance adds (Beer-Lambert); haze: a grey third one
    od[glass] = 0.0
    stroke = np.zeros((N, N), bool)
    if stroke_od is not None:  # a marker stroke 80 µm wide, down across cells, stroma and glass
        stroke[:, 60:80] = True
        od = od + stroke[..., None] * stroke_od
    rgb = np.clip(np.round(240.0 * 10.0 ** -od), 0, 255).astype(np.uint8)
    ys, xs = np.mgrid[0:N // 28, 0:N // 28]
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1) * TILE
    return rgb, ~glass & ~cell, stroke, coords


@pytest.mark.parametrize("haze", [0.0, 0.02])
def test_stroma_is_not_ink_when_the_eosin_estimate_leans_to_haematoxylin(haze):
    from weakstil.ink_plane import ink_and_stain
    from weakstil.tumorbed.ink import tile_ink_share

    rgb, stroma, _, coords = _image(haze)
    ink, _ = ink_and_stain(rgb, RECORDED, MPP)
    assert ink[stroma].mean() < 0.01, ink[stroma].mean()  # was 0.62 (no haze) and 0.995 (the purple look's 0.02)
    share = tile_ink_share(rgb, N * MPP / SLIDE_MPP, SLIDE_MPP, coords, TILE, RECORDED)
    assert share.max() < 0.1, share.max()  # the veto marks no tile (was: the stroma's 8 of 25)


@pytest.mark.parametrize("stroke_od", [np.full(3, 0.5), np.array([0.6, 0.15, 0.5])], ids=["black", "green"])
def test_marker_over_that_tissue_is_ink_with_the_stains_own_vectors(stroke_od):
    """The tissue's own plane holds the stroke out of it. (With the leaning estimate the stroke is found over the
    stroma only, as before: the plane refitted from it leaves 37 % of the tissue off, its own 22 %, the ink: not
    clearly less, so the refit stays.)"""
    from weakstil.ink_plane import ink_and_stain

    rgb, stroma, stroke, _ = _image(0.02, stroke_od)
    ink, _ = ink_and_stain(rgb, np.stack([H, E], axis=1), MPP)
    inner = stroke.copy()
    inner[:, 60:63] = inner[:, 77:80] = False  # the smoothing blurs the stroke's edges
    inner[:12] = inner[-12:] = False
    assert ink[inner].mean() > 0.9, ink[inner].mean()
    away = np.zeros_like(stroke)
    away[:, :50] = away[:, 90:] = True
    assert ink[away & stroma].mean() < 0.01, ink[away & stroma].mean()


def test_a_wide_black_marker_does_not_pull_the_plane_to_itself():
    """A black cross 80 µm wide over CMU-1-Small-Region's 4 µm/px thumbnail (a third of the stained tissue), the stain
    estimated on it: the image's own plane, fitted from no start, holds the ink and half the tissue, more pixels than
    the stains' plane (82 % against 71 %), but it trades the ink for stain (27 % of the tissue off it against 34 %):
    taken by the pixel count alone, 46 % of the ink was found and 19 % of the tissue away from it read as ink."""
    from scipy import ndimage as ndi

    from conftest import CMU
    from weakstil.ink_plane import ink_and_stain
    from weakstil.slide import Slide
    from weakstil.stain import estimate_stain, stain_pixels
    from weakstil.tissue import TissueParams, detect_tissue, ink_pixels

    with Slide.open(CMU) as slide:
        thumb = slide.read_thumbnail(4.0)[..., :3]
        mpp = slide.dimensions[0] * float(slide.mpp) / thumb.shape[1]
    h, w = thumb.shape[:2]
    cross = np.zeros((h, w), bool)
    cross[h // 3:h // 3 + 20] = True
    cross[:, w // 2:w // 2 + 20] = True
    od = -np.log10(np.maximum(thumb.astype(np.float32), 1) / 255.0) + cross[..., None] * np.float32(0.9)
    rgb = np.clip(np.round(255 * 10 ** -od), 0, 255).astype(np.uint8)
    tissue = detect_tissue(rgb, mpp, TissueParams())
    stain = estimate_stain(rgb, stain_pixels(rgb, mpp, tissue, ink_pixels(rgb)))
    ink, _ = ink_and_stain(rgb, stain.he, mpp)
    inner = ndi.binary_erosion(cross, iterations=3)
    away = ~ndi.binary_dilation(cross, iterations=10) & tissue
    assert ink[inner].mean() > 0.9, ink[inner].mean()
    assert ink[away].mean() < 0.03, ink[away].mean()
