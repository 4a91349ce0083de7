"""Slides of several tissue pieces (hunt 39g): each piece's own sTIL%, and TMA-like slides flagged.

Hunt 39b measured a TMA-like slide (9 round cores of 0.6 mm, true sTIL 1-33 %): ``score`` gave one number,
13.1 %, status ok, no flag; its cores' own numbers (4.4-49.4 % over the 7 with a bed, now) were nowhere. On a
slide of core biopsies the number is rightly pooled over all bed stroma (TILs WG), but a core that differs
from the others was not visible either. Now the score file records, for a slide of two or more tissue pieces
(not debris), each piece's own sTIL% (the slide's aggregation over that piece's bed tiles) and bed tile count
(attribute ``tissue_pieces``, JSON; also in the GeoJSON's provenance and the heatmap title), and a slide of 6 or
more round pieces of similar size is flagged ``tma_like``. Strips of a core biopsy (elongated) are not.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli, write_tiff_slide
from shared_cohorts import one_epoch_model_copy

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")


def _slide(path, shape, masks, seed):
    """Pink tissue with dark nuclei where ``masks`` (bool arrays of ``shape``) are, on glass; 0.5 µm/px."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(240 + rng.integers(-3, 4, shape + (1,)), 0, 255).astype(np.uint8).repeat(3, axis=2)
    for k, m in enumerate(masks):
        rgb[m] = (205, 120, 180)
        rgb[m & (rng.random(shape) < 0.04 + 0.03 * k)] = (80, 40, 120)  # pieces of other lymphocyte densities
    return write_tiff_slide(path, rgb, levels=2)


#: the TMA's spots: 3 x 3, 0.26 mm across (0.053 mm², over the 0.02 mm² debris size), centres 0.425 mm apart
SPOT_R, PITCH, FIRST = 260, 850, 400


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A TMA of 9 round spots scored with the shared one-epoch model (no detector: the bed is the whole
    tissue, every spot holds bed tiles)."""
    root = tmp_path_factory.mktemp("h39g")
    model, _, _, _ = one_epoch_model_copy(tmp_path_factory, root)
    yy, xx = np.mgrid[:2500, :2500]
    spots = [(yy - FIRST - PITCH * r) ** 2 + (xx - FIRST - PITCH * q) ** 2 < SPOT_R ** 2 for r in range(3)
             for q in range(3)]
    tma = _slide(root / "tma.tiff", (2500, 2500), spots, 0)
    out = root / "out"
    run_cli("score", tma, "--model", model, "--out", out, check=True)
    from weakstil.files import SlideScoresFile, slide_file

    return SlideScoresFile.read(slide_file(out, "tma")), pd.read_csv(out / "results.csv").set_index("slide_id")


def test_a_tma_like_slide_is_flagged_and_each_spot_scored(scored):
    scores, rows = scored
    assert "tma_like" in str(rows.loc["tma", "qc"]), rows.loc["tma"].to_dict()
    assert "9 separate round tissue pieces" in rows.loc["tma", "qc_reasons"]
    pieces = json.loads(scores.attrs["tissue_pieces"])
    assert [p["piece"] for p in pieces] == list(range(1, 10))
    assert sum(p["n_tumorbed_tiles"] for p in pieces) == int(scores.tumorbed.sum())
    # the spots recompose the slide's number: the same (stroma-weighted) aggregation, restricted to each spot;
    # a tile's spot: the one nearest its centre
    xy = np.asarray(scores.coords, np.float64) + float(scores.attrs["tile_size_level0"]) / 2
    centres = np.array([[FIRST + PITCH * q, FIRST + PITCH * r] for r in range(3) for q in range(3)], np.float64)
    spot = np.linalg.norm(xy[:, None, :] - centres[None], axis=2).argmin(axis=1)
    w = np.ones(len(xy)) if scores.stroma_weight is None else np.asarray(scores.stroma_weight, np.float64)
    by_centre = {tuple(p["centre"]): p["stil"] for p in pieces}
    stil = [by_centre[min(by_centre, key=lambda c: np.hypot(c[0] - cx, c[1] - cy))] for cx, cy in centres]
    pooled = sum(w[spot == k].sum() * stil[k] for k in range(9)) / w.sum()
    assert abs(pooled - float(scores.attrs["stil"])) < 0.05, (pooled, scores.attrs["stil"], pieces)
    from weakstil.outputs import heatmap_title

    assert "9 tissue pieces with a bed, each" in heatmap_title("tma", 10.0, False, 30.0, scores.attrs)


def _mask(shape, boxes=(), discs=()):
    m = np.zeros(shape, bool)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for y0, x0, y1, x1 in boxes:
        m[y0:y1, x0:x1] = True
    for cy, cx, r in discs:
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
    return m


def _pieces(mask, mask_mpp=8.0):
    """Each piece's own number on a mask at ``mask_mpp`` of a 0.5 µm/px slide tiled in 224 px tiles."""
    from weakstil.qc.pieces import piece_stils, slide_pieces, tma_like

    h, w = mask.shape
    f = mask_mpp / 0.5
    coords = np.array([(x, y) for y in range(0, int(h * f), 224) for x in range(0, int(w * f), 224)], np.int64)
    tile_piece, pieces = slide_pieces(coords, 224.0, mask, mask_mpp, 0.5)
    per_piece = piece_stils(pieces, tile_piece, np.full(len(coords), 20.0), tile_piece > 0, "mean")
    return pieces, per_piece, tma_like(pieces, per_piece)


def test_core_biopsy_strips_levels_and_unequal_pieces_are_not_tma_like():
    # 3 levels of 3 needle cores (1 x 12 mm strips): 9 pieces of one size, elongated
    strips = _mask((1700, 1300), boxes=[(50 + 560 * lv, 50 + 140 * k, 50 + 560 * lv + 500, 50 + 140 * k + 125)
                                        for lv in range(3) for k in range(3)])
    pieces, per_piece, why = _pieces(strips)
    assert len(pieces) == 9 and len(per_piece) == 9 and why == "", (len(pieces), why)
    # round pieces of very unequal size (a section's fragments): not spots of one punch
    unequal = _mask((400, 1200), discs=[(200, 60 + 130 * k, 6 + 8 * k) for k in range(9)])
    assert _pieces(unequal)[2] == ""
    # and the same as a TMA's spots: flagged; one piece of tissue: nothing per piece
    assert "9 separate round tissue pieces" in _pieces(_mask((400, 1200), discs=[(200, 60 + 130 * k, 40) for k in range(9)]))[2]
    assert _pieces(_mask((300, 300), discs=[(150, 150, 100)]))[1] == []


def test_a_section_cut_by_marker_ink_is_one_piece():
    """Hunt 39l: the saved tissue mask has marker ink cut out (the detector joins a section's strips under the
    ink only while it detects), and pieces were its 8-connected parts: on a 1 x 1 mm section one 48 µm stroke
    made 2 pieces with their own sTIL%, three strokes 6 pieces of 0.15 mm² flagged ``tma_like``. Parts less than
    100 µm apart are now one piece; specimens 120 µm apart (the strips above) and TMA spots stay apart."""
    section = _mask((160, 160), boxes=[(15, 15, 140, 140)])  # 1 x 1 mm at 8 µm/px
    one = section.copy()
    one[:, 78:84] = False  # a 48 µm stroke, as the detector leaves it (stroke + 8 µm each side)
    pieces, per_piece, why = _pieces(one)
    assert len(pieces) == 1 and per_piece == [], [p["area_mm2"] for p in pieces]
    grid = one.copy()
    grid[55:61] = grid[100:106] = False
    pieces, per_piece, why = _pieces(grid)
    assert (len(pieces), why) == (1, ""), ([p["area_mm2"] for p in pieces], why)
    assert pieces[0]["area_mm2"] == pytest.approx(float(grid.sum()) * 64e-6, abs=1e-3)  # tissue, not ink
    # two sections 120 µm apart (15 px) are two; a TMA of spots 0.3 mm apart is still flagged
    two = _mask((160, 300), boxes=[(15, 15, 140, 140), (15, 155, 140, 280)])
    assert len(_pieces(two)[0]) == 2
    spots = _mask((300, 300), discs=[(50 + 100 * r, 50 + 100 * q, 31) for r in range(3) for q in range(3)])
    assert "9 separate round tissue pieces" in _pieces(spots)[2]


def test_a_piece_without_its_bed_tile_count_is_listed_in_napari():
    """Hunt 39k: a ``tissue_pieces`` entry without ``n_tumorbed_tiles`` (a hand-edited file; napari's reader
    asks only for piece, stil, centre) raised KeyError in the detail line."""
    from napari_weakstil.piece_labels import detail_text

    text = detail_text([{"piece": 1, "stil": 13.37, "centre": [5, 5]},
                        {"piece": 2, "stil": 12.6, "centre": [9, 5], "n_tumorbed_tiles": 1243}])
    assert text.endswith("1: 13.4 %, 2: 12.6 % (1,243 bed tiles)"), text


def test_piece_moments_in_row_blocks_match_the_pixel_covariance():
    """Hunt 39j made a piece's second moments row sums over blocks (np.nonzero of a 30-million-pixel piece
    held 0.9 GB and took 1-3 s): each piece's area, centre and axes ratio are still those of its pixels'
    covariance, on rotated ellipses and strips of several blocks; the labels passed to tile_fragments give
    the tiles the same pieces as its own labelling."""
    from scipy import ndimage as ndi

    from weakstil.qc.pieces import slide_pieces
    from weakstil.tumorbed.veto import tile_fragments

    h, w = 700, 900
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), bool)
    for cy, cx, a, b, t in [(350, 200, 300, 40, 0.6), (150, 600, 60, 55, 0.0), (500, 650, 120, 30, 2.2)]:
        u, v = (xx - cx) * np.cos(t) + (yy - cy) * np.sin(t), -(xx - cx) * np.sin(t) + (yy - cy) * np.cos(t)
        mask |= (u / a) ** 2 + (v / b) ** 2 <= 1
    coords = np.array([(x, y) for y in range(0, h * 16, 224) for x in range(0, w * 16, 224)], np.int64)
    tile_piece, pieces = slide_pieces(coords, 224.0, mask, 8.0, 0.5)
    labels, _ = ndi.label(mask, np.ones((3, 3), bool))
    assert len(pieces) == 3
    for p in pieces:
        ys, xs = np.nonzero(labels == p["label"])
        ev = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(np.float64)))
        assert p["area_mm2"] == round(len(ys) * 64 / 1e6, 4)
        assert p["axes"] == round(float(np.sqrt(ev[0] / ev[1])), 3)
        assert p["centre"] == [round((xs.mean() + 0.5) * 16), round((ys.mean() + 0.5) * 16)]
    assert np.array_equal(tile_fragments(coords, 224.0, mask, 8.0, 0.5, labels=labels),
                          tile_fragments(coords, 224.0, mask, 8.0, 0.5))
