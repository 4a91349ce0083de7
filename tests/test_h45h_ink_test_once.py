"""Helper h45h: the orientation-free ink test (helper h45d) at its old speed, and made once per slide in ``score``.

Review h45e measured the ink test 2.9-3.4 s -> 3.8-4.3 s on a 6 MP thumbnail of odd sides: ``absorbance`` laid
the 16-px glass blocks from each of the four corners, spread each grid's levels over the whole image and took the
four pixel by pixel. Now the grids' levels are taken per cell of the grids' edges and spread once, the block
percentile comes from a radix sort, the stroke opening from OpenCV and the plane sample and smoothed tissue are
made once. The answer must be bit for bit the one before (asserted here against the ed0ebf7 algorithm, written out
below); the speed is measured in ``benchmarks/ink_test_speed.py``, not here.

And ``score`` made each slide's ink test twice, for the bed's ink veto and for the QC's ink measure, on the same
thumbnail: now once (:func:`weakstil.ink_plane.ink_tests_kept`), the QC reading the thumbnail's pixel size as the
bed does.
"""

import json

import numpy as np
import pytest
from conftest import write_tiff_slide
from test_h44j_ink_plane_ill_set import E, H
from test_h45d_ink_orientation_free import MPP, _dihedral, _lamp_slide


def _reference_absorbance(plane, mpp):
    """``weakstil.ink_plane.absorbance`` as merged at ed0ebf7 (helper h45d)."""
    from scipy import ndimage as ndi

    from weakstil.tissue import GLASS_BLOCK_PX, GLASS_REACH_UM

    def block_glass(p, glass):
        b = GLASS_BLOCK_PX
        h, w = p.shape
        hb, wb = -(-h // b), -(-w // b)
        padded = np.zeros((hb * b, wb * b), np.uint8)
        padded[:h, :w] = p
        blocks = np.percentile(padded.reshape(hb, b, wb, b).transpose(0, 2, 1, 3).reshape(hb, wb, b * b), 90, axis=-1)
        reach = max(1, int(round(GLASS_REACH_UM / (mpp * b))))
        local = np.minimum(ndi.maximum_filter(blocks, size=2 * reach + 1, mode="nearest"), glass)
        return np.repeat(np.repeat(np.maximum(local, 1.0).astype(np.float32), b, axis=0), b, axis=1)[:h, :w]

    plane = np.asarray(plane)
    glass = max(float(np.percentile(plane, 99)), 1.0)
    level = None
    cols = [slice(None)] + ([slice(None, None, -1)] if plane.shape[1] % GLASS_BLOCK_PX else [])
    rows = [slice(None)] + ([slice(None, None, -1)] if plane.shape[0] % GLASS_BLOCK_PX else [])
    for flip in [(r, c) for r in rows for c in cols]:
        here = block_glass(plane[flip], glass)[flip]
        level = here if level is None else np.maximum(level, here)
    return np.maximum(np.log10(level / np.maximum(plane, 1).astype(np.float32)), 0.0).astype(np.float32)


def _slide(h, w):
    """:func:`_lamp_slide` grown (mirrored) or cut to ``h`` x ``w``."""
    rgb = _lamp_slide()
    return np.ascontiguousarray(np.pad(rgb, ((0, max(0, h - 203)), (0, max(0, w - 157)), (0, 0)), mode="symmetric")[:h, :w])


@pytest.mark.parametrize("shape", [(203, 157), (160, 157), (203, 144), (17, 33), (9, 5)])
@pytest.mark.parametrize("mpp", [MPP, 1.0])
def test_absorbance_is_bit_for_bit_the_merged_one(shape, mpp):
    from weakstil.ink_plane import absorbance

    for im, _ in _dihedral(_slide(*shape)):
        for c in range(3):
            new, old = absorbance(im[..., c], mpp), _reference_absorbance(im[..., c], mpp)
            assert new.dtype == old.dtype == np.float32 and np.array_equal(new.view(np.uint32), old.view(np.uint32))


def test_block_percentile_is_numpys():
    from weakstil.ink_plane import _block_percentile_90

    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 256, (40, 30, 256)).astype(np.uint8)
    blocks[0, :, :100] = 0  # a block padded with empty pixels
    blocks[1] = 255
    blocks[2, :, 200:] = rng.integers(0, 3, (30, 56))
    assert np.array_equal(_block_percentile_90(blocks), np.percentile(blocks, 90, axis=-1))


def test_subsample_draws_the_merged_rows():
    from weakstil.ink_plane import subsample

    rng = np.random.default_rng(5)
    od = (rng.random((60_000, 3)) * [0.5, 0.8, 0.3]).astype(np.float32)
    od[:500] = od[500:1000]  # rows alike: one key
    bits = od.view(np.uint32).astype(np.uint64)  # the merged (h45d) key
    key = (bits[:, 0] * 0x9E3779B1 ^ bits[:, 1] * 0x85EBCA77 ^ bits[:, 2] * 0xC2B2AE3D) % np.uint64(0xFFFFFFFB)
    chosen = np.argpartition(key, 6999)[:7000]
    assert np.array_equal(subsample(od, 7000), od[chosen[np.argsort(key[chosen], kind="stable")]])


@pytest.mark.parametrize("radius", [1, 3, 6])
def test_open_disk_is_scipys_binary_opening(radius):
    from scipy import ndimage as ndi

    from weakstil.morphology import disk, open_disk

    rng = np.random.default_rng(radius)
    mask = ndi.binary_dilation(rng.random((97, 61)) > 0.97, iterations=radius + 1)
    mask[:, :radius + 2] = True  # strokes at the edge: the outside is empty for the erosion
    mask[-3:] = True
    want = ndi.binary_opening(mask, structure=disk(radius).astype(bool))
    assert np.array_equal(open_disk(mask, radius), want)
    assert np.array_equal(open_disk(mask, radius, use_cv2=False), want)


def test_the_ink_test_decides_as_the_merged_one_in_all_eight_orientations(monkeypatch):
    """Same ink, same stain mask, same own-plane switch as with the merged absorbance and scipy's opening."""
    import weakstil.ink_plane as ip
    import weakstil.morphology as morphology

    he = np.stack([H, E], axis=1)
    scipy_open = morphology.open_disk
    for shape in [(203, 157), (211, 170)]:
        for im, _ in _dihedral(_slide(*shape)):
            said_new, said_old = {}, {}
            new = ip.ink_and_stain(im, he, MPP, test=said_new)
            with monkeypatch.context() as m:
                m.setattr(ip, "absorbance", _reference_absorbance)
                m.setattr(morphology, "open_disk", lambda mask, r: scipy_open(mask, r, use_cv2=False))
                old = ip.ink_and_stain(im, he, MPP, test=said_old)
            assert said_new == said_old
            assert np.array_equal(new[0], old[0]) and np.array_equal(new[1], old[1])
            assert new[0].any()  # the stroke is found


def _counting(monkeypatch):
    import weakstil.ink_plane as ip

    made = []
    inner = ip._ink_and_stain

    def count(rgb, he, mpp, name, told):
        made.append((name, rgb.shape, mpp))
        return inner(rgb, he, mpp, name, told)

    monkeypatch.setattr(ip, "_ink_and_stain", count)
    return made


def test_made_once_inside_the_block_and_given_again(monkeypatch):
    from weakstil.ink_plane import OWN_PLANE, STAIN_PLANE, ink_and_stain, ink_tests_kept

    made = _counting(monkeypatch)
    rgb, he = _slide(203, 157), np.stack([H, E], axis=1)
    alone = ink_and_stain(rgb, he, MPP, "s1")
    assert len(made) == 1
    with ink_tests_kept():
        said1, said2 = {}, {"ink_test": "colour rules"}
        first = ink_and_stain(rgb, he, MPP, "s1", said1)
        again = ink_and_stain(rgb.copy(), he, MPP, "s1", said2)
        assert len(made) == 2  # the second caller (another copy of the same thumbnail) got the first's test
        assert said2 == said1 and said1["ink_test"] in (STAIN_PLANE, OWN_PLANE)
        for a, b, c in zip(alone, first, again):
            assert np.array_equal(a, b) and np.array_equal(a, c) and not c.flags.writeable
        ink_and_stain(rgb, he, MPP * 1.001, "s1")  # another resolution, stain, thumbnail or slide: made again
        ink_and_stain(rgb, he * 1.01, MPP, "s1")
        ink_and_stain(rgb[:-1], he, MPP, "s1")
        ink_and_stain(rgb, he, MPP, "s2")
        assert len(made) == 6
    ink_and_stain(rgb, he, MPP, "s2")  # outside the block: nothing kept
    assert len(made) == 7 and ink_and_stain(rgb, he, MPP, "s2")[0].flags.writeable


def test_the_bed_and_the_qc_share_one_ink_test(tmp_path, monkeypatch):
    """As ``score`` reads a slide: the bed's ink veto, then the QC's statistics, on a slide whose width is no whole
    number of thumbnail pixels (1259 px at 0.5 µm/px: 157.4 at 4 µm/px; the bed reads the thumbnail at 4.0096
    µm/px, the QC said 4.0 to its ink test, so the two could not share it)."""
    from weakstil.qc.image import slide_image_stats
    from weakstil.slide import Slide
    from weakstil.stain import SlideStain
    from weakstil.tumorbed.ink import slide_ink_share

    big = np.repeat(np.repeat(_slide(203, 160), 8, axis=0), 8, axis=1)[:1622, :1259]
    path = write_tiff_slide(tmp_path / "s.tiff", np.ascontiguousarray(big), mpp=0.5)
    recorded = json.dumps(SlideStain(he=np.stack([H, E], axis=1), max_c=np.array([1.0, 1.0])).to_dict())
    stain = SlideStain.from_attr(recorded)  # as score gives it to the QC, from the feature file
    attrs = {"slide_path": str(path), "slide_mpp": 0.5, "slide_width": 1259, "slide_id": "s", "stain": recorded}
    coords = np.array([[x, y] for y in range(0, 1400, 224) for x in range(0, 1100, 224)])

    def both():
        test: dict = {}
        shares = slide_ink_share(attrs, coords, 224.0, True, path, test)
        with Slide.open(path, slide_mpp=0.5) as slide:
            stats = slide_image_stats(slide, coords, None, 224, 0.5, stain=stain, name="s")
        return shares, test, stats.pen_share

    made = _counting(monkeypatch)
    apart = both()
    assert len(made) == 2 and made[0] == made[1]  # the same thumbnail, stain and pixel size: one test would do
    from weakstil.ink_plane import ink_tests_kept

    with ink_tests_kept():
        shared = both()
    assert len(made) == 3
    assert np.array_equal(shared[0], apart[0]) and shared[1] == apart[1] and shared[2] == apart[2]
