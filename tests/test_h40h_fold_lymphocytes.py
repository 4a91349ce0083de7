"""Hunt 40c (an outside tester's generator, benchmarks/outside_generator_40c.py): the ``pen_or_folds`` flag
fired on og40_013 (true sTIL 77.9 %) with "folds 10.8 %", though the slide has no fold: its sheets of
densely packed lymphocytes are darker than 2 x the 75th percentile of its stained tissue, the whole fold
rule then. A TIL-rich slide is one that decides sTIL-high, and a false "folds" tells a pathologist to
distrust it. A fold doubles both stains, so it holds eosin like the tissue under it; a lymphocyte sheet
is dark with haematoxylin alone. Now a fold-like pixel must also hold at least half the median eosin of
the slide's stained tissue: og40_013 reads 1.7 %, the 40 og40 slides at most 1.7 % (before 0.4-10.8 %),
while a doubled-thickness band is found as before.

``tests/data/og40_013_thumb4um.png``: og40_013's 4 µm/px thumbnail (the QC's), lossless: a JPEG's
chroma rounding smears eosin into the dark sheets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parent / "data"


def test_a_lymphocyte_sheet_is_no_fold_and_a_doubled_band_still_is():
    from weakstil.qc.image import fold_pixels, thumbnail_stats
    from weakstil.stain import estimate_stain, optical_density, stain_pixels
    from weakstil.tissue import TissueParams, detect_tissue, ink_pixels

    thumb = np.asarray(Image.open(DATA / "og40_013_thumb4um.png").convert("RGB"))
    stats = thumbnail_stats(thumb, 4.0)
    # before: 0.108, over the pen_or_folds limit of 0.08 on a slide with no fold and no ink
    assert stats["fold_share"] < 0.03 and stats["pen_share"] < 0.01, stats["fold_share"]

    # a doubled-thickness band (both stains' optical density x 2) across the tissue, the bed included
    tissue = detect_tissue(thumb, 4.0, TissueParams())
    h = thumb.shape[0]
    rows = slice(h // 2 - 12, h // 2 + 12)
    band = thumb.copy()
    band[rows] = np.clip(240 * np.exp(-2 * optical_density(thumb[rows])) - 1, 0, 255).astype(np.uint8)
    in_band = np.zeros_like(tissue)
    in_band[rows] = tissue[rows]
    ink = ink_pixels(band)
    stain = estimate_stain(band, stain_pixels(band, 4.0, tissue, ink))
    found = fold_pixels(band, tissue, ink, stain)
    sheet = fold_pixels(thumb, tissue, ink_pixels(thumb), stain) | _dense(thumb, tissue)
    # the band over the tissue that is no lymphocyte sheet is found as the old rule found it (0.19 of its
    # pixels: thin folds are rarely caught); over the sheet it is doubled haematoxylin, no longer counted
    kept, before = found[in_band & ~sheet].mean(), _dense(band, tissue)[in_band & ~sheet].mean()
    assert kept > 0.15 and kept >= 0.97 * before, (kept, before)
    assert found[~in_band].mean() < 0.02


def _dense(thumb, tissue):
    """The old rule's fold-like pixels: denser than 2 x the stained tissue's 75th percentile."""
    from scipy import ndimage as ndi

    from weakstil.stain import optical_density

    density = ndi.uniform_filter(optical_density(thumb).sum(axis=-1), size=3)
    ref = tissue & (density >= 0.15)
    return tissue & (density > 2 * np.percentile(density[ref], 75))
