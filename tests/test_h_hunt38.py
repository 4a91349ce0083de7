"""Hunt 38d: the qc flag of an incomplete scan, and the cohort report's heatmaps.

1. **No flag for an incomplete scan.** A slide whose scan stopped part-way (its right third blank white, as a
   scanner that stopped leaves it in the file) scored with status ok and no flag that said so: a 2 mm synthetic
   slide so got ``out_of_distribution;blurry`` with the demo's model, CMU-1 none of the image flags. Now
   ``scan_incomplete`` (:mod:`weakstil.qc.scan_gap`): a straight-edged region of one exact colour with tissue
   along 500 µm or more of its edge, or a lost tile inside the tissue. 36 normal slides (32 synthetic of three
   looks, the 4 real ones) measure 0-324 µm, none flagged; blanked thirds 936-1916 µm, lost tiles found (docs/scoring.md).
2. **Heatmap titles showed the flags' codes** ("qc: pen_or_folds, near_threshold"), which the picture's reader
   cannot look up; now their words (:data:`weakstil.qc.flags.LABEL`), a few a line.
3. **Each report heatmap was a full-RGB PNG of ~570 KB** (300 slides: 171 MB): the thumbnail's texture does not
   compress. Now a 256-colour palette PNG with the colour maps' steps held exactly and Floyd-Steinberg dithering:
   3 synthetic slides' report heatmaps 654/538/371 KB -> 232/187/105 KB, 8 x 8 px blocks within 3 grey levels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tiff_slide


@pytest.fixture(scope="module")
def cmu_pixels() -> np.ndarray:
    import tifffile

    from conftest import CMU

    return tifffile.TiffFile(CMU).pages[0].asarray()


def _flags(path: Path) -> tuple[list[str], dict, object]:
    """The slide's flags from its image statistics alone (no focus tiles: the scan-gap rule reads the thumbnail)."""
    from weakstil.qc.flags import slide_flags
    from weakstil.qc.image import slide_image_stats
    from weakstil.slide import Slide

    with Slide.open(path) as slide:
        stats = slide_image_stats(slide, np.zeros((0, 2)), None, 224, 0.5)
    flags, why = slide_flags(ood_score=None, ood_threshold=None, n_bed_tiles=100, low=None, high=None, threshold=30.0,
                             image=stats, image_ref=None)
    return flags, why, stats


def test_a_scan_blank_over_its_right_third_or_with_a_lost_tile_is_flagged_scan_incomplete(cmu, cmu_pixels, tmp_path):
    flags, _, stats = _flags(cmu)
    assert "scan_incomplete" not in flags, stats

    third = cmu_pixels.copy()
    third[:, 2 * third.shape[1] // 3:] = 255  # the scanner stopped: the rest of the slide is white fill
    flags, why, stats = _flags(write_tiff_slide(tmp_path / "third.tiff", third, mpp=0.499, levels=2))
    assert "scan_incomplete" in flags, f"a blank right third got only {flags}"
    assert stats.scan_cut_um >= 900 and "incomplete scan" in why["scan_incomplete"]

    lost = cmu_pixels.copy()
    lost[2000:2256, 1000:1256] = 0  # one 256 px tile lost inside the tissue, read as black
    flags, why, stats = _flags(write_tiff_slide(tmp_path / "lost.tiff", lost, mpp=0.499, levels=2))
    assert "scan_incomplete" in flags and stats.scan_lost_tiles == 1, (flags, stats)
    # advice only, in words in the report's legend
    from weakstil.qc.flags import MEANING

    assert "scanned" in MEANING["scan_incomplete"]


def test_heatmap_titles_say_the_flags_in_words_not_codes():
    from weakstil.outputs import heatmap_title

    title = heatmap_title("S1", 35.0, True, 30.0, {"stil_lower_90": 25.0, "stil_upper_90": 40.0,
                                                   "qc": "pen_or_folds;near_threshold;out_of_distribution"})
    assert "pen_or_folds" not in title and "near_threshold" not in title, title
    assert "marker ink or folds" in title and "high/low call uncertain" in title
    assert all(len(line) <= 64 for line in title.splitlines()[1:])  # several flags wrap, not widen the figure


def _tile_scores(path: Path, width: int, height: int, mpp: float) -> Path:
    """Tile scores over a slide's whole area, as ``weakstil train``'s out-of-fold files hold them."""
    from weakstil.files import TileScoresFile

    side = 224
    ys, xs = np.mgrid[0:height - side:side, 0:width - side:side]
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)
    n = len(coords)
    rng = np.random.default_rng(0)
    TileScoresFile(coords=coords, tile_scores=rng.uniform(0, 100, n).astype(np.float32),
                   weights=np.full(n, 1 / n, np.float32), tumorbed=np.arange(n) % 3 > 0,
                   stroma_weight=rng.uniform(0, 1, n).astype(np.float32),
                   attrs={"slide_id": "cmu", "slide_mpp": mpp, "slide_width": width, "slide_height": height,
                          "tile_size_level0": float(side), "stil_pred": 40.0, "aggregator": "stroma"}).write(path)
    return path


def test_the_reports_heatmap_is_a_palette_png_a_third_of_the_rgb_size(cmu, tmp_path):
    from PIL import Image

    from weakstil.report_images import write_heatmap

    scores = _tile_scores(tmp_path / "cmu.h5", 2220, 2967, 0.499)
    write_heatmap(cmu, scores, tmp_path / "h.png", "cmu: true 40.0%, predicted 41.0%", None)
    with Image.open(tmp_path / "h.png") as im:
        mode, rgb = im.mode, im.convert("RGB")
    as_rgb = io.BytesIO()
    rgb.save(as_rgb, format="PNG", compress_level=1)  # the same picture as the report wrote it until hunt 38d
    size = (tmp_path / "h.png").stat().st_size
    assert mode == "P" and size < 0.5 * as_rgb.tell(), (mode, size, as_rgb.tell())


def test_a_palette_heatmap_keeps_the_tiles_colours_and_the_colour_bars_steps(tmp_path):
    from matplotlib import colormaps
    from PIL import Image

    from weakstil.outputs import PALETTE_MAP_STEPS, write_heatmap_png

    rng = np.random.default_rng(1)
    # tissue-like texture (what makes the full-RGB PNG large) under 8 x 8 tiles of scores and stroma weights
    thumb = np.clip(rng.normal((200, 140, 180), 25, (240, 240, 3)), 0, 255).astype(np.uint8)
    coords = np.stack(np.meshgrid(np.arange(0, 1792, 224), np.arange(0, 1792, 224)), -1).reshape(-1, 2)
    scores, weights = rng.uniform(0, 100, len(coords)), rng.uniform(0, 1, len(coords))
    images = []
    for palette in (False, True):
        path = write_heatmap_png(tmp_path / f"{palette}.png", thumb, 8.0, 1.0, coords, 224.0, scores,
                                 stroma_weights=weights, title="S1: sTIL 40 %", palette=palette)
        with Image.open(path) as im:
            images.append((im.mode, np.asarray(im.convert("RGB")).astype(np.float64), path.stat().st_size))
    (_, full, full_size), (mode, pal, pal_size) = images
    assert mode == "P" and pal_size < 0.6 * full_size
    h, w = (s // 8 * 8 for s in full.shape[:2])

    def blocks(a):  # what a reader sees of a tile's colour: 8 x 8 px means
        return a[:h, :w].reshape(h // 8, 8, w // 8, 8, 3).mean(axis=(1, 3))

    assert np.percentile(np.abs(blocks(pal) - blocks(full)).max(axis=-1), 99) <= 4.0
    # the colour bars' steps are in the picture exactly (a palette fitted to the picture alone left ~10 bands)
    colours = {tuple(c) for c in pal.reshape(-1, 3).astype(int)}
    for name in ("inferno", "viridis"):
        steps = (colormaps[name](np.linspace(0, 1, PALETTE_MAP_STEPS))[:, :3] * 255).round().astype(int)
        assert sum(tuple(c) in colours for c in steps) >= 0.9 * PALETTE_MAP_STEPS, name
