"""weakstil.morphology: OpenCV's binary morphology gives exactly the masks of scipy / scikit-image
(the tissue mask must not change with the library that computes it)."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import morphology as skm

from weakstil import morphology as morph


def _masks():
    rng = np.random.default_rng(0)
    for shape, p, blur in (((97, 131), 0.5, 0), ((160, 120), 0.45, 2), ((64, 64), 0.2, 1), ((5, 7), 0.6, 0)):
        noise = rng.random(shape)
        if blur:
            noise = ndi.gaussian_filter(noise, blur)
            p = float(np.quantile(noise, 1 - p))
            yield noise > p
        else:
            yield noise < p
    edge = np.zeros((50, 60), bool)
    edge[:, :20] = True  # tissue running out of the image
    edge[10:15, 30:33] = True
    yield edge
    yield np.zeros((30, 30), bool)
    yield np.ones((30, 30), bool)


@pytest.mark.parametrize("radius", [0, 1, 2, 5, 8])
def test_disk_is_scikit_images(radius):
    assert np.array_equal(morph.disk(radius), skm.disk(radius).astype(np.uint8))


@pytest.mark.parametrize("use_cv2", [True, False])
@pytest.mark.parametrize("radius", [1, 3, 6])
def test_square_dilation_and_erosion_equal_scipy(use_cv2, radius):
    for m in _masks():
        u8 = m.view(np.uint8)
        assert np.array_equal(morph.dilate_square(m, radius, use_cv2),
                              ndi.maximum_filter(u8, size=2 * radius + 1).astype(bool))
        assert np.array_equal(morph.erode_square(m, radius, use_cv2),
                              ndi.minimum_filter(u8, size=2 * radius + 1).astype(bool))


@pytest.mark.parametrize("use_cv2", [True, False])
@pytest.mark.parametrize("radius", [1, 4, 9])
def test_edge_padded_disk_closing_equals_scipy(use_cv2, radius):
    for m in _masks():
        padded = np.pad(m, radius + 1, mode="edge")
        want = ndi.binary_closing(padded, structure=skm.disk(radius))[radius + 1:-radius - 1, radius + 1:-radius - 1]
        got = morph.close_disk_edge(m, radius, use_cv2)
        assert np.array_equal(got, want)
    # the band along an edge that tissue runs out of is kept
    m = np.zeros((40, 40), bool)
    m[:, :10] = True
    assert morph.close_disk_edge(m, 6, use_cv2)[:, :10].all()


@pytest.mark.parametrize("use_cv2", [True, False])
@pytest.mark.parametrize("radius", [1, 4, 9])
def test_zero_padded_disk_closing_equals_scipy(use_cv2, radius):
    """The closing that measures the tissue between an annotation's parts (tumorbed training_checks)."""
    for m in _masks():
        disk = np.add.outer(np.arange(-radius, radius + 1) ** 2, np.arange(-radius, radius + 1) ** 2) <= radius ** 2
        want = ndi.binary_closing(np.pad(m, radius), structure=disk)[radius:-radius, radius:-radius]
        assert np.array_equal(morph.close_disk(m, radius, use_cv2), want)


@pytest.mark.parametrize("use_cv2", [True, False])
@pytest.mark.parametrize("size", [1, 3, 12, 200])
def test_small_objects_and_holes_equal_scikit_image(use_cv2, size):
    for m in _masks():
        assert np.array_equal(morph.remove_small_objects(m, size, use_cv2), skm.remove_small_objects(m, max_size=size))
        assert np.array_equal(morph.remove_small_holes(m, size, use_cv2), skm.remove_small_holes(m, max_size=size))


def test_row_percentiles_are_numpys_nanpercentile_bit_for_bit():
    from weakstil.tissue import _row_percentiles

    rng = np.random.default_rng(0)
    for _ in range(20):
        rows = (rng.integers(150, 256, (300, 256)) / np.float32(3.0)).astype(np.float32)
        rows[rng.random(rows.shape) < rng.random() * 0.5] = np.nan
        rows = rows[np.isfinite(rows).sum(-1) >= 2]
        assert np.array_equal(_row_percentiles(rows, (25.0, 50.0, 75.0)), np.nanpercentile(rows, [25, 50, 75], axis=-1))
