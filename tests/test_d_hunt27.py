"""Hunt 27 d: the per-slide stain estimate leaves out tiles near marker strokes, not near specks.

A marker stroke is a broad, connected, strongly coloured band 60 µm and more across; a few
"ink" pixels on their own are dust, pigment, a dense nucleus or a pale tissue edge the colour rule
misreads. Stain estimate 5 left out every tile touching any ink pixel: on the real CMU slide 19 of
its 49 tiles (137 lone pixels, no stroke), which moved its haematoxylin strength by +10.6 %; and
it took groups of thin pieces (a real DICOM section's pale rim, the alt look's stroma fibres) for
strokes. Stain estimate 6 leaves out tiles near strokes holding ink at least
``INK_STROKE_MIN_WIDTH_UM`` across, and tiles holding ``INK_STROKE_UM2`` or more of coloured ink hits
outside strokes (a stroke over tissue, seen in fragments), not tiles with a speck or two.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from conftest import CMU


@pytest.fixture(scope="module")
def clean_slide(tmp_path_factory):
    """A small default-look synthetic slide without marker ink, its tiles (and overview)."""
    from weakstil.slide import Slide
    from weakstil.synth.generator import generate_slide, slide_seed
    from weakstil.tiles import find_tiles

    root = tmp_path_factory.mktemp("h27d")
    res = generate_slide(root / "synth_0000.tiff", root, "synth_0000", slide_seed(2, 0), size_mm=(1.2, 1.2),
                         group="centre_0", preview=False)
    with Slide.open(res.path) as slide:
        tiles = find_tiles(slide)
    from weakstil.tissue import ink_pixels

    assert not ink_pixels(tiles.thumbnail).any()  # really clean
    return res.path, tiles


def _tissue_points(tiles, n: int, spacing: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` thumbnail pixels on tissue, at least ``spacing`` pixels apart."""
    ys, xs = np.nonzero(tiles.tissue_mask)
    rng = np.random.default_rng(seed)
    picked: list[tuple[int, int]] = []
    for i in rng.permutation(len(ys)):
        if all(abs(ys[i] - y) + abs(xs[i] - x) >= spacing for y, x in picked):
            picked.append((ys[i], xs[i]))
        if len(picked) == n:
            break
    return np.array([p[0] for p in picked]), np.array([p[1] for p in picked])


def test_d_lone_ink_specks_on_tissue_leave_no_tile_out_of_the_stain_estimate(clean_slide):
    # 12 lone dark-blue or near-black pixels sprinkled over the tissue of the overview (8 µm each):
    # stain estimate 5 left out every tile they touch (12 of the slide's tiles), now none
    from weakstil.slide import Slide
    from weakstil.stain import estimate_slide_stain, estimate_tiles
    from weakstil.tissue import ink_pixels

    path, tiles = clean_slide
    thumb = tiles.thumbnail.copy()
    ys, xs = _tissue_points(tiles, 12, spacing=20)
    thumb[ys, xs] = np.where((np.arange(len(ys)) % 2)[:, None] == 0, [[40, 60, 200]], [[20, 20, 25]])
    assert ink_pixels(thumb).sum() == 12
    specked = dataclasses.replace(tiles, thumbnail=thumb)
    with Slide.open(path) as slide:
        assert np.array_equal(estimate_tiles(slide, specked), estimate_tiles(slide, tiles))
        assert np.allclose(estimate_slide_stain(slide, specked).max_c, estimate_slide_stain(slide, tiles).max_c)


def test_d_a_stroke_over_tissue_seen_in_fragments_still_leaves_its_tile_out(clean_slide):
    # blue marker over tissue reads like haematoxylin and the colour rule sees it in fragments (tens
    # of hits a tile, no broad part): 8 blue hits (512 µm² at 8 µm/px) scattered in one tile leave
    # that tile out, as before; one or two (a speck) do not
    from weakstil.slide import Slide
    from weakstil.stain import estimate_tiles
    from weakstil.tiling import mask_fractions

    path, tiles = clean_slide
    mpp = tiles.mask_mpp
    with Slide.open(path) as slide:
        full = mask_fractions(np.asarray(tiles.coords), tiles.tile_size_level0, tiles.tissue_mask, mpp,
                              float(slide.mpp))
        tile = int(np.argmax(full))
        x0, y0 = (int(round(v * float(slide.mpp) / mpp)) for v in tiles.coords[tile])
        side = int(round(tiles.tile_size_level0 * float(slide.mpp) / mpp))
        spots = [(y0 + 1 + 3 * (i // 4), x0 + 1 + 3 * (i % 4)) for i in range(8)]
        assert all(y < y0 + side - 1 and x < x0 + side - 1 for y, x in spots)
        for n, left_out in ((8, True), (2, False)):
            thumb = tiles.thumbnail.copy()
            for y, x in spots[:n]:
                thumb[y, x] = (40, 60, 200)
            picked = estimate_tiles(slide, dataclasses.replace(tiles, thumbnail=thumb))
            assert (tile not in picked) == left_out, n


def _draw_band(thumb: np.ndarray, row: int, width_px: int, colour) -> np.ndarray:
    out = thumb.copy()
    out[row:row + width_px] = colour
    return out


def test_d_a_marker_stroke_still_leaves_its_tiles_out(clean_slide):
    # a green marker band 64 µm wide (8 pixels at 8 µm/px) across the slide: every tile it touches,
    # and those within the margin and guard of it, stay out of the estimate (as in version 5)
    from weakstil.slide import Slide
    from weakstil.stain import INK_MARGIN_UM, INK_TILE_GUARD_UM, estimate_tiles
    from weakstil.tiling import mask_fractions

    path, tiles = clean_slide
    mpp = tiles.mask_mpp
    row = tiles.thumbnail.shape[0] // 2
    inked = dataclasses.replace(tiles, thumbnail=_draw_band(tiles.thumbnail, row, int(64 / mpp), (60, 170, 90)))
    with Slide.open(path) as slide:
        picked = estimate_tiles(slide, inked)
        band = np.zeros(tiles.thumbnail.shape[:2], bool)
        reach = int(round((INK_MARGIN_UM + INK_TILE_GUARD_UM) / mpp))
        band[row - reach:row + int(64 / mpp) + reach] = True
        near = mask_fractions(np.asarray(tiles.coords), tiles.tile_size_level0, band, mpp, float(slide.mpp)) > 0
    assert near.sum() >= 5 and len(picked) == (~near).sum() < len(tiles.coords)
    assert not near[picked].any()


def test_d_a_thin_pale_line_is_no_stroke(clean_slide):
    # a pale lilac line one pixel (8 µm) wide across the tissue, as the rim of a real DICOM section's
    # tissue reads to the grey-ink rule (209, 205, 213): version 5 grouped it into a "stroke" and left
    # out every tile within 56 µm of it; a marker is 60 µm and more across, so now none
    from weakstil.slide import Slide
    from weakstil.stain import estimate_tiles, ink_strokes
    from weakstil.tissue import ink_pixels

    path, tiles = clean_slide
    row = tiles.thumbnail.shape[0] // 2
    lined = _draw_band(tiles.thumbnail, row, 1, (209, 205, 213))
    assert ink_pixels(lined)[row].sum() > 50
    with Slide.open(path) as slide:
        assert np.array_equal(estimate_tiles(slide, dataclasses.replace(tiles, thumbnail=lined)),
                              estimate_tiles(slide, tiles))
    assert np.array_equal(ink_strokes(lined, tiles.mask_mpp), ink_pixels(lined))  # no margin: no stroke


def test_d_the_real_cmu_slide_reads_all_its_tiles_for_its_stain():
    # CMU-1-Small-Region: 137 "ink" pixels, all lone (pale lilac or dark specks), no stroke; version 5
    # read 30 of its 49 tiles and its haematoxylin strength was 2.536, now all 49 and 2.29 (the pooled 99th
    # percentile of the fit; since stain estimate 11 (first landed as 10) the slide's strength is a quantile over its tiles, 2.53 here)
    from weakstil.decode.readers import plan_reader
    from weakstil.decode.workers import iter_batches_inline
    from weakstil.slide import Slide
    from weakstil.stain import block_mean, estimate_slide_stain, estimate_stain, estimate_tiles
    from weakstil.tiles import find_tiles

    with Slide.open(CMU) as slide:
        tiles = find_tiles(slide)
        pick = estimate_tiles(slide, tiles)
        assert len(pick) == len(tiles.coords) == 49
        stain = estimate_slide_stain(slide, tiles)
        spec = plan_reader(slide, tiles.params.mpp, tiles.params.tile_px)
        blocks = np.concatenate([block_mean(b, 8) for _, b in iter_batches_inline(spec, np.asarray(tiles.coords)[pick], 16)])
    plain = estimate_stain(blocks, white=stain.white)
    assert stain.source == plain.source == "macenko" and 2.2 < plain.max_c[0] < 2.4
    assert np.allclose(stain.he, plain.he)


def test_d_qc_counts_marker_strokes_as_ink_not_lone_specks(clean_slide):
    # the slide QC's ink share (pen_or_folds): lone specks read as "ink" (CMU-1-Small-Region: 1.0 % of
    # its tissue, all lone pixels); now only ink in strokes counts, and a marker band still does
    from weakstil.qc.image import thumbnail_stats

    _, tiles = clean_slide
    thumb, mpp = tiles.thumbnail, tiles.mask_mpp
    specked = thumb.copy()
    ys, xs = _tissue_points(tiles, 12, spacing=20)
    specked[ys, xs] = (20, 20, 25)
    assert thumbnail_stats(specked, mpp)["pen_share"] == 0.0
    band = _draw_band(thumb, thumb.shape[0] // 2, int(64 / mpp), (60, 170, 90))
    assert thumbnail_stats(band, mpp)["pen_share"] > 0.02


def test_d_qc_reads_no_ink_on_the_real_cmu_slide():
    from weakstil.qc.image import thumbnail_stats
    from weakstil.slide import Slide

    with Slide.open(CMU) as slide:
        thumb = slide.read_thumbnail(4.0)
    assert thumbnail_stats(thumb, 4.0)["pen_share"] < 0.001


def test_d_qc_counts_a_thin_marker_line_across_the_tissue(clean_slide):
    # hunt 37e: three 30 µm lines of green ink across a default-look slide read "ink 0.0 %" (a stroke had
    # to hold ink 40 µm across, 44 µm on the 4 µm/px overview) and moved its sTIL% 8.4 -> 33.1 (truth 6.9)
    # with no flag but near_threshold; the QC now counts strokes from 24 µm: a 32 µm green line across
    # the overview is ink, a 16 µm one (a rim's width) still is not
    from weakstil.qc.image import thumbnail_stats
    from weakstil.slide import Slide

    path, _ = clean_slide
    with Slide.open(path) as slide:
        thumb = slide.read_thumbnail(4.0)
    row = thumb.shape[0] // 2
    assert thumbnail_stats(thumb, 4.0)["pen_share"] == 0.0
    assert thumbnail_stats(_draw_band(thumb, row, 8, (60, 170, 90)), 4.0)["pen_share"] > 0.02
    assert thumbnail_stats(_draw_band(thumb, row, 4, (60, 170, 90)), 4.0)["pen_share"] == 0.0
