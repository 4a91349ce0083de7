"""Fault hunt 17 (a): marker ink drawn over tissue is no tumour evidence for the tumour bed.

On the hard look a grey marker ring over stroma and DCIS, or a blue stroke over stroma, was read
as tumour by the bed detector, and the ink veto saw the stroke only where it crossed the glass:
over tissue the stain mixes in, so the ink is no longer grey (or blue) by colour. By absorbance
it still is: the ink's optical density adds to the stains', out of the plane of H&E.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import CMU

#: marker inks' optical density per unit (R, G, B): a black / grey marker and a blue one
BLACK = (0.70, 0.68, 0.62)
BLUE = (0.85, 0.50, 0.08)


@pytest.fixture(scope="module")
def cmu_thumb():
    """The real CMU-1-Small-Region slide (skin H&E) at 4 µm/px, its Macenko stain and tissue."""
    from weakstil.slide import Slide
    from weakstil.stain import estimate_stain

    with Slide.open(CMU) as slide:
        thumb = slide.read_thumbnail(4.0)[..., :3].copy()
        width, mpp = slide.dimensions[0], float(slide.mpp)
    od = -np.log10((thumb.astype(np.float64) + 1.0) / 256.0)
    tissue = od.sum(axis=-1) > 0.3
    return thumb, estimate_stain(thumb, tissue).he, tissue, width, mpp


def _stroke(thumb: np.ndarray, ink: tuple[float, float, float], density: float, width_px: int = 20):
    """``thumb`` with a marker stroke (a diagonal band ``width_px`` wide) whose optical density adds
    to what lies under it (Beer-Lambert), and the band's mask."""
    h, w = thumb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    band = np.abs((yy - h / 2) - 0.6 * (xx - w / 2)) < width_px / 2
    out = thumb.astype(np.float64)
    for c in range(3):
        out[..., c] = np.where(band, out[..., c] * 10.0 ** (-density * ink[c]), out[..., c])
    return np.clip(np.round(out), 0, 255).astype(np.uint8), band


@pytest.mark.parametrize("ink,density,share", [(BLACK, 0.4, 0.85), (BLUE, 0.5, 0.7)], ids=["black", "blue"])
def test_marker_stroke_over_real_tissue_is_ink(cmu_thumb, ink, density, share):
    """A marker stroke painted over the real slide's tissue: the colour rules see little of it
    over tissue; the absorbance out of the stains' plane sees most of it, and next to nothing of
    the tissue beside it. (A blue marker's absorbance lies nearer the plane of H&E than a black
    one's: less of a faint blue stroke is found.)"""
    from scipy import ndimage as ndi

    from weakstil.tissue import darker_than_glass, glass_level, ink_pixels
    from weakstil.tumorbed.ink import ink_over_tissue

    thumb, he, tissue, _, _ = cmu_thumb
    inked, band = _stroke(thumb, ink, density)
    core = ndi.binary_erosion(band, iterations=3) & tissue  # the stroke over tissue, off its soft edges
    beside = tissue & ~ndi.binary_dilation(band, iterations=6)
    glass, _ = glass_level(inked[::2, ::2].astype(np.float32).mean(axis=-1).ravel())
    by_colour = ink_pixels(inked) & darker_than_glass(inked, glass, 4.0)
    found = ink_over_tissue(inked, he, 4.0)
    assert core.sum() > 500 and beside.sum() > 20_000
    assert by_colour[core].mean() < 0.5  # what the veto saw before
    assert found[core].mean() > share, found[core].mean()
    assert found[beside].mean() < 0.01, found[beside].mean()


def test_clean_real_tissue_is_not_ink(cmu_thumb):
    """Without a stroke, the real slide's tissue is not ink (its darkest, densest parts included)."""
    from weakstil.tumorbed.ink import ink_over_tissue

    thumb, he, tissue, _, _ = cmu_thumb
    assert ink_over_tissue(thumb, he, 4.0)[tissue].mean() < 0.005


def test_tile_ink_share_counts_ink_over_tissue(cmu_thumb):
    """The veto's per-tile share: with the slide's stain the tiles under the stroke over tissue
    reach the veto's 10 %; without it (the colour rules alone) not all did."""
    from scipy import ndimage as ndi

    from weakstil.tiling import mask_fractions
    from weakstil.tumorbed.ink import InkVeto, tile_ink_share

    thumb, he, tissue, width, mpp = cmu_thumb
    inked, band = _stroke(thumb, BLACK, 0.4, width_px=30)  # 120 µm, a broad marker
    tile = 224.0
    f = 4.0 / mpp  # level-0 px per thumbnail px
    ys, xs = np.mgrid[0:int(thumb.shape[0] * f - tile):int(tile), 0:int(thumb.shape[1] * f - tile):int(tile)]
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1)
    inked_tissue = mask_fractions(coords, tile, band & tissue, 4.0, mpp)  # the stroke over tissue
    under = inked_tissue > 0.2
    near = ndi.binary_dilation(band, iterations=int(tile / f))  # a tile's width round the stroke
    away = (mask_fractions(coords, tile, near, 4.0, mpp) == 0) & (mask_fractions(coords, tile, tissue, 4.0, mpp) > 0.5)
    rule = InkVeto().min_ink_area
    old = tile_ink_share(inked, width, mpp, coords, tile) >= rule
    new = tile_ink_share(inked, width, mpp, coords, tile, stain_he=he) >= rule
    assert under.sum() >= 5 and away.sum() >= 20, (under.sum(), away.sum())
    assert new[under].all() and not new[away].any()
    assert not old[under].all()  # the colour rules alone missed some


def test_old_detector_keeps_its_ink_rule():
    """A detector written before the over-tissue rule keeps the colour rules it was chosen with;
    a new one records the rule."""
    from weakstil.tumorbed.ink import InkVeto

    old = InkVeto.from_dict({"enabled": True, "min_ink_area": 0.1})
    assert old.over_tissue is False and old.from_neighbours is False
    assert InkVeto().to_dict()["over_tissue"] is True
    assert InkVeto.from_dict(InkVeto().to_dict()) == InkVeto()


def test_inked_tile_keeps_no_more_evidence_than_its_clean_neighbours():
    """Ink says nothing of the tissue under it: an inked tile inside the tumour keeps its reading,
    one over stroma (misread as tumour) loses it, one with no clean neighbour has none."""
    from weakstil.tumorbed.ink import InkVeto, apply_ink_veto

    tile = 224.0
    # a 3 x 6 grid: tumour in the left three columns, stroma right; ink down column 1 and 4
    rows, cols = np.mgrid[0:3, 0:6]
    coords = np.stack([cols.ravel() * tile, rows.ravel() * tile], axis=1)
    ev = np.where(cols.ravel() < 3, 0.9, 0.05).astype(np.float32)
    inked = np.isin(cols.ravel(), (1, 4))
    ev[inked & (cols.ravel() == 4)] = 0.8  # the ink over stroma reads as tumour
    share = inked.astype(np.float32)
    out, n = apply_ink_veto(ev, share, InkVeto(), coords, tile)
    assert n == 6
    assert np.allclose(out[cols.ravel() == 1], 0.9)  # inside the tumour: its neighbours' reading
    assert np.allclose(out[cols.ravel() == 4], 0.05)  # over stroma: no more than the stroma beside it
    assert np.allclose(out[~inked], ev[~inked])
    zeroed, _ = apply_ink_veto(ev, share, InkVeto(from_neighbours=False), coords, tile)
    assert not zeroed[inked].any()
    alone, _ = apply_ink_veto(np.array([0.9], np.float32), np.array([1.0]), InkVeto(), coords[:1], tile)
    assert alone[0] == 0.0


def test_unevenly_lit_tissue_is_not_ink(cmu_thumb):
    """A lamp's fall-off (glass 20 % dimmer at one side, as an outside tester's scanner) is a
    neutral optical density, out of the plane of the stains like grey ink: the glass is taken
    locally, so the dim side's tissue is not ink."""
    from weakstil.tumorbed.ink import ink_over_tissue

    thumb, he, tissue, _, _ = cmu_thumb
    ramp = np.linspace(1.0, 0.8, thumb.shape[1])[None, :, None]
    dim = np.clip(np.round(thumb * ramp), 0, 255).astype(np.uint8)
    assert ink_over_tissue(dim, he, 4.0)[tissue].mean() < 0.005
