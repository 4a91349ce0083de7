"""Tissue detection against exact synthetic truth, and robustness to pen, debris and noise."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from skimage.transform import resize

from conftest import write_tiff_slide
from weakstil.slide import Slide
from weakstil.synth import generate_cohort
from weakstil.tissue import detect_tissue, dice


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("tissue_cohort")
    generate_cohort(out, 3, seed=5, size_mm=(1.6, 1.6), progress=False)
    return out


def test_dice_against_synthetic_truth(cohort):
    scores = []
    for slide_path in sorted((cohort / "slides").glob("*.tiff")):
        with h5py.File(cohort / "truth" / f"{slide_path.stem}.h5") as f:
            truth = f["tissue"][:].astype(bool)
        with Slide.open(slide_path) as s:
            mask = detect_tissue(s.read_thumbnail(8.0), 8.0)
        truth8 = resize(truth.astype(np.float32), mask.shape, order=1, anti_aliasing=True) > 0.5
        scores.append(dice(mask, truth8))
    assert min(scores) >= 0.95, scores


def test_pen_marks_debris_and_noise_are_not_tissue(cohort):
    slide_path = sorted((cohort / "slides").glob("*.tiff"))[0]
    with Slide.open(slide_path) as s:
        thumb = s.read_thumbnail(8.0)
        clean = detect_tissue(thumb, 8.0)
    rng = np.random.default_rng(0)
    dirty = thumb.astype(np.int16)
    dirty += rng.normal(0, 3, dirty.shape).astype(np.int16)  # scanner noise
    h, w = clean.shape
    from scipy import ndimage as ndi

    # glass at least 64 µm from tissue: debris touching tissue cannot be told apart from it
    glass = np.argwhere(ndi.distance_transform_edt(~clean) > 8)
    # a green pen stroke across glass, and dark debris specks of 16-24 µm
    y0 = glass[len(glass) // 3][0]
    band = np.zeros_like(clean)
    band[y0:y0 + 3, :] = True
    band &= ~clean
    dirty[band] = (40, 140, 60)
    specks = np.zeros_like(clean)
    for y, x in glass[rng.choice(len(glass), 15, replace=False)]:
        specks[y:y + 3, x:x + 2] = True
    specks &= ~clean
    dirty[specks] = (90, 60, 110)
    got = detect_tissue(np.clip(dirty, 0, 255).astype(np.uint8), 8.0)
    assert not (got & band).any()
    assert not (got & specks).any()
    assert dice(got, clean) > 0.97


def test_blank_glass_has_no_tissue(tmp_path):
    rng = np.random.default_rng(1)
    rgb = np.clip(rng.normal(244, 2, (1024, 1024, 3)), 0, 255).astype(np.uint8)
    path = write_tiff_slide(tmp_path / "glass.tiff", rgb)
    with Slide.open(path) as s:
        assert not detect_tissue(s.read_thumbnail(8.0), 8.0).any()


def test_ink_is_darker_than_the_glass_around_it_on_an_unevenly_lit_scan():
    """A dim scanner's glass (220 at one edge, 195 at the other; an outside tester's cohort) was
    read as dark-grey ink: the ink veto took the tumour tiles of whole slides and the QC flagged
    pen. Ink is now weighed against the glass near it; strokes up to ~0.8 mm wide still count."""
    from weakstil.tissue import darker_than_glass, glass_level, ink_pixels

    mpp = 4.0
    h, w = 400, 800  # 1.6 x 3.2 mm
    ramp = (222 - 28 * np.linspace(0, 1, w) ** 3)[None, :, None]  # the lamp's fall-off to one edge: grey glass
    rgb = np.repeat(np.repeat(ramp, h, axis=0), 3, axis=2)
    rgb[150:250, 100:300] = (226, 170, 205)  # a pale pink piece of tissue
    narrow = (slice(20, 380), slice(400, 420))  # a grey marker stroke, 80 µm wide
    wide = (slice(20, 380), slice(560, 760))  # ... and one 0.8 mm wide, on the dimmest glass
    for stroke in (narrow, wide):
        rgb[stroke] = 120
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    glass, _ = glass_level(rgb.astype(np.float32).mean(axis=-1).ravel())
    ink = ink_pixels(rgb) & darker_than_glass(rgb, glass, mpp)
    truth = np.zeros((h, w), bool)
    for stroke in (narrow, wide):
        truth[stroke] = True
    assert ink[truth].all() and not ink[~truth].any()
    # weighed against the slide's one glass level, the dim half of the glass was ink
    one_level = ink_pixels(rgb) & (rgb.astype(np.int16).sum(-1) < 3 * (glass - 15))
    assert one_level[~truth].mean() > 0.05  # the dimmest tenth of the glass


def test_tissue_running_out_of_the_image_keeps_its_edge(cohort):
    """The closing took the outside of the image for glass and cut a band of its radius (24 µm) off
    tissue that runs out of the image, as in a cropped region."""
    slide_path = sorted((cohort / "slides").glob("*.tiff"))[0]
    with Slide.open(slide_path) as s:
        thumb = s.read_thumbnail(8.0)
    whole = detect_tissue(thumb, 8.0)
    ys, xs = np.nonzero(whole)
    cy, cx = int(ys.mean()), int(xs.mean())
    crop = (slice(cy - 40, cy + 40), slice(cx - 40, cx + 40))  # 640 µm around the tissue's centre
    cropped = detect_tissue(np.ascontiguousarray(thumb[crop]), 8.0)
    inside = whole[crop]
    assert inside[:, 0].mean() > 0.5 and inside[0, :].mean() > 0.5  # the tissue does run out of the crop
    for edge in (cropped[:, 0], cropped[:, -1], cropped[0, :], cropped[-1, :]):
        assert edge.mean() >= 0.8 * inside.mean(), (edge.mean(), inside.mean())
    assert dice(cropped, inside) > 0.95


def test_an_image_of_a_single_tile_of_tissue_is_tissue(tmp_path):
    """A 112 µm image all of stroma (a real Kather tile) was 'no tissue': smaller than the debris
    size (0.02 mm²), and the closing ate its edges."""
    from PIL import Image

    from conftest import shared_file
    from weakstil.tiles import TilingParams, find_tiles

    tile = sorted(shared_file("tiles/kather_crc_val_he_7k_sample/images").glob("STR-*.png"))[0]
    rgb = np.asarray(Image.open(tile).convert("RGB"))  # 224 px at 0.5 µm/px
    path = write_tiff_slide(tmp_path / "one_tile.tiff", rgb, levels=1)
    with Slide.open(path) as s:
        tiles = find_tiles(s, TilingParams())
    assert tiles.tissue_mask.mean() > 0.9
    assert len(tiles.coords) == 1


def test_tissue_between_marker_strokes_is_kept(cohort):
    """Green strokes drawn across the tissue every 100 µm cut it into strips that were then dropped
    as debris (and a 16 µm band around each stroke went too): 11 tiles of 52 on a hunter's slide."""
    from scipy import ndimage as ndi

    slide_path = sorted((cohort / "slides").glob("*.tiff"))[1]
    with Slide.open(slide_path) as s:
        thumb = s.read_thumbnail(8.0)
    clean = detect_tissue(thumb, 8.0)
    inked = thumb.copy()
    strokes = np.zeros(clean.shape, bool)
    for y in range(6, clean.shape[0], 12):
        strokes[y:y + 2, :] = True
    inked[strokes] = (40, 140, 60)
    got = detect_tissue(inked, 8.0)
    assert not (got & strokes).any()
    away = clean & (ndi.distance_transform_edt(~strokes) > 2)  # tissue clear of the strokes' blurred edges
    assert got[away].mean() > 0.95, got[away].mean()
