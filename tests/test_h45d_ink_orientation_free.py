"""Helper h45d: the ink test gives the same answer whichever way the slide lies (a quarter turn, a mirror image).

Old: ``ink_plane.absorbance`` measured the glass in 16-px blocks laid from the top-left corner and its 99th
percentile on every second pixel, and the plane fits subsampled the stained pixels by place (raster order): a turned
copy of a slide had other optical densities (og44b_018: 8 % of its pixels moved by up to 0.098 OD) and its ink test's
own-plane switch was taken in 4 of its 8 orientations (helper h44n). Now the blocks are laid from all four corners
(the brightest level kept), the percentile is of every pixel, and the subsample is chosen by value.
"""

import numpy as np

MPP = 4.0


def _dihedral(img):
    """The 8 turned and mirrored copies of ``img``, each with the function that turns a result back."""
    for k in range(4):
        for flip in (False, True):
            im = np.rot90(img, k)
            im = im[:, ::-1] if flip else im

            def back(a, k=k, flip=flip):
                return np.rot90(a[:, ::-1] if flip else a, -k)

            yield np.ascontiguousarray(im), back


def _lamp_slide():
    """A 203 x 157 px thumbnail (not whole blocks either way) under a lamp falling off to one side and one end
    (240 -> 220 glass), tissue of the og44b purple look (tests/test_h44j_ink_plane_ill_set.py) in a disc, a
    green marker stroke across it."""
    from test_h44j_ink_plane_ill_set import E, H

    rng = np.random.default_rng(0)
    h, w = 203, 157
    yy, xx = np.mgrid[0:h, 0:w]
    lamp = 240.0 - 12.0 * (xx / w) ** 2 - 8.0 * (yy / h)
    tissue = (yy - 100) ** 2 + (xx - 80) ** 2 < 62 ** 2
    nuc = rng.random((h, w))
    od = (0.05 + 0.3 * nuc)[..., None] * H + (0.15 + 0.05 * rng.random((h, w)))[..., None] * E
    od = od * tissue[..., None] + ((np.abs(xx - yy * 0.6 - 20) < 5) & tissue)[..., None] * np.array([0.6, 0.15, 0.5])
    return np.clip(np.round(lamp[..., None] * 10.0 ** -od), 0, 255).astype(np.uint8)


def test_absorbance_turns_with_the_slide():
    from weakstil.ink_plane import absorbance

    plane = _lamp_slide()[..., 1]
    ref = absorbance(plane, MPP)
    worst = max(float(np.abs(back(absorbance(im, MPP)) - ref).max()) for im, back in _dihedral(plane))
    assert worst == 0.0, worst  # was 0.03 OD: the block grid from the top-left corner


def test_the_ink_test_decides_the_same_in_all_eight_orientations():
    from test_h44j_ink_plane_ill_set import E, H

    from weakstil.ink_plane import ink_and_stain

    rgb = _lamp_slide()
    tests, inks, stains = [], [], []
    for im, back in _dihedral(rgb):
        said = {}
        ink, stain = ink_and_stain(im, np.stack([H, E], axis=1), MPP, test=said)
        tests.append(said["ink_test"])
        inks.append(back(ink))
        stains.append(back(stain))
    assert len(set(tests)) == 1, tests
    assert inks[0].mean() > 0.03  # the stroke is found (5.8 % of the image)
    assert all(np.array_equal(i, inks[0]) for i in inks) and all(np.array_equal(s, stains[0]) for s in stains)


def test_the_plane_fits_subsample_by_value_not_place():
    from weakstil.ink_plane import refit_normal, subsample

    rng = np.random.default_rng(3)
    od = (rng.random((5000, 3)) * [0.5, 0.8, 0.3]).astype(np.float32)
    shuffled = od[rng.permutation(len(od))]  # the same pixels in another order: a turned slide's raster
    assert np.array_equal(subsample(od, 700), subsample(shuffled, 700))
    assert len(subsample(od, 700)) == 700 and len(np.unique(subsample(od, 700), axis=0)) == 700
    assert np.array_equal(refit_normal(od, None, max_pixels=700), refit_normal(shuffled, None, max_pixels=700))
