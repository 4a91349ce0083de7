"""Hunt 24 (lead): the heatmap's sTIL panel paints a tile as strongly as it holds stroma.

A tile's score is the TIL share of its stroma and the slide's sTIL% weights it by its stroma, so a
tile of fat or tumour (stroma weight ~0.1) painted at full strength read as TIL-rich (~55 %, salmon)
beside the tiles that made the number (hunt 24e)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from weakstil.outputs import FAINT_SHARE, FULL_STROMA_WEIGHT, HEAT_ALPHA, write_heatmap_png


def test_a_tile_with_little_stroma_is_painted_faint_and_the_key_says_why(tmp_path):
    thumb = np.full((40, 80, 3), 200, np.uint8)  # grey tissue, 1 thumbnail px per level-0 px
    coords = np.array([[0, 0], [40, 0]])
    scores = np.array([50.0, 50.0])  # the same score: only the stroma differs
    weights = np.array([1.0, 0.05])
    png = write_heatmap_png(tmp_path / "h.png", thumb, 1.0, 1.0, coords, 40.0, scores,
                            tumorbed_mask=np.ones((40, 80), bool), stroma_weights=weights,
                            key="cyan outline: the 2 of 2 tiles that made the sTIL%")
    img = np.asarray(Image.open(png).convert("RGB"), np.float64)
    # the panels' rows: the thumbnail's 40 rows, where each row holds both panels' 80 px of tiles
    not_white = ~(img == 255).all(axis=2)
    rows = np.nonzero(not_white.sum(axis=1) >= 160)[0]
    row = int(rows[0]) + 20  # the tiles' middle row, clear of the cyan outline
    left = int(np.nonzero(not_white[row])[0][0])  # the first panel's left edge
    strong, faint = img[row, left + 20], img[row, left + 60]
    grey = np.array([200.0, 200.0, 200.0])
    d_strong, d_faint = np.abs(strong - grey).sum(), np.abs(faint - grey).sum()
    assert d_faint > 0, "a tile with little stroma is still shown"
    expected = FAINT_SHARE + (1 - FAINT_SHARE) * 0.05 / FULL_STROMA_WEIGHT  # the strong tile: full strength
    assert abs(d_faint / d_strong - expected) < 0.05, (d_faint, d_strong, expected)
    # the second panel (stroma weights) is painted at full strength for both tiles
    assert HEAT_ALPHA == 0.6
    width = Image.open(png).width
    assert width > 160  # two panels and their colour bars


def test_the_key_explains_the_faint_tiles(tmp_path, monkeypatch):
    seen = {}
    from PIL import ImageDraw

    real = ImageDraw.ImageDraw.text

    def spy(self, xy, text, *a, **k):
        seen.setdefault("texts", []).append(text)
        return real(self, xy, text, *a, **k)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", spy)
    thumb = np.full((40, 80, 3), 200, np.uint8)
    write_heatmap_png(tmp_path / "h.png", thumb, 1.0, 1.0, np.array([[0, 0], [40, 0]]), 40.0, np.array([50.0, 50.0]),
                      tumorbed_mask=np.ones((40, 80), bool), stroma_weights=np.array([1.0, 0.05]), key="cyan outline")
    assert any("faint tiles: little stroma" in t for t in seen["texts"])
    seen.clear()
    write_heatmap_png(tmp_path / "g.png", thumb, 1.0, 1.0, np.array([[0, 0], [40, 0]]), 40.0, np.array([50.0, 50.0]),
                      tumorbed_mask=np.ones((40, 80), bool), key="cyan outline")
    assert not any("faint" in t for t in seen["texts"]), "without stroma weights every tile is painted alike"


def test_the_tile_overlay_has_a_key_for_its_two_colours(cmu, tmp_path):
    """`weakstil tile`'s overlay drew a green tissue outline and blue tiles with nothing saying which
    was which (hunt 24e): a key strip under the slide names both, with the number of tiles kept."""
    import h5py

    from conftest import run_cli

    proc = run_cli("tile", cmu, "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    img = np.asarray(Image.open(tmp_path / "out" / "CMU-1-Small-Region_tiles.png").convert("RGB")).astype(int)
    with h5py.File(tmp_path / "out" / "CMU-1-Small-Region.h5") as f:
        n_tiles = len(f["coords"])
    strip = img[-22:]
    green = (np.abs(strip - (0, 200, 0)).sum(axis=2) < 30).sum()
    blue = (np.abs(strip - (30, 80, 255)).sum(axis=2) < 30).sum()
    dark_text = (strip.max(axis=2) < 90).sum()
    assert green >= 20 and blue >= 20, (green, blue)  # the two swatches
    assert dark_text >= 50  # their words
    above = img[-40:-22]
    assert (above.max(axis=2) < 250).any(), "the slide's own pixels end where the strip begins"
    assert n_tiles > 0
