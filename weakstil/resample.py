"""How tiles are read at a µm/px other than the scan's: the resize of a tile's pixels.

Whole blocks of level pixels are averaged first (box), and only the fraction left is resized, with
one filter on every reader (``Slide.read_region``, the JPEG tiles' reader, the GPU path).
"""

from __future__ import annotations

#: Pillow's ``reducing_gap`` for every downscale of slide pixels: 1.0 averages whole blocks of level
#: pixels first (box: a 40x scan read at 0.5 µm/px is the mean of its 2 x 2 pixels, as a 20x sensor
#: pixel, a scanner's own x2 level and libjpeg's DCT scaling are), and READ_FILTER resizes only the
#: fraction left. With 2.0 the bilinear filter, whose triangle spans two target pixels, did all of a
#: reduction under 4x: the same tissue read blurrier from a 40x file without a x2 level than from one
#: with it, and scored 2-3 sTIL points lower.
REDUCING_GAP = 1.0
#: A scan whose µm/px is within this share of the target's, or of a whole fraction of it (1/2, 1/4: a 40x
#: scan read at 0.5), is read pixel for pixel (or by whole k x k blocks), its tiles 2 % larger or smaller
#: at most: the bilinear resize of a ratio such as 1.002 (Aperio 20x, 0.499 µm/px) samples the middle of
#: each tile half-way between pixels, a two-pixel mean (the tiles' mean gradient 10 % lower), and each of
#: 6 synthetic slides written as 0.499 and 0.5025 µm/px scans of the same pixels scored 0.16-1.85 sTIL
#: points lower than at 0.5 (hunt 30a). Real scanners at 0.2497-0.2527, 0.499-0.505 µm/px fall within it.
READ_WHOLE_RATIO = 0.02
#: The filter for the fraction of a tile's reduction left after whole blocks: antialiased bicubic (a = -0.5,
#: Pillow's and PyTorch's alike, so CPU and GPU paths agree). Bilinear read the same tissue scanned at
#: 0.2425 / 0.263 / 0.46 µm/px with a 9-12 % lower mean gradient, and 6 synthetic slides scored 0.14-1.8
#: sTIL points lower (hunt 31b, docs/slides.md). Whole ratios (READ_WHOLE_RATIO) are never resized; an upsampled
#: scan (--allow-upsample) is interpolated with it too (10x: 3.3 -> 2.2 points below on average).
READ_FILTER = "bicubic"
#: How tiles are reduced, recorded in the features' ``decode``: a cache without it, or read at a ratio
#: that is not whole with another, is embedded again (weakstil.feature_cache).
READ_REDUCE = f"box, then {READ_FILTER}; pixel for pixel within 2 % of a whole ratio"
#: Records whose whole-ratio reads (pixel for pixel, whole blocks) are this one's (hunt 30a's and now).
READ_REDUCE_WHOLE_SAME = ("box, then bilinear; pixel for pixel within 2 % of a whole ratio", READ_REDUCE)


def resize_tile(im, size: tuple[int, int], box: tuple[float, float, float, float] | None = None):
    """``im`` (PIL) resized to ``size`` as tiles are read: whole blocks averaged (box), then READ_FILTER."""
    from PIL import Image

    return im.resize(size, Image.Resampling.BICUBIC, box=box, reducing_gap=REDUCING_GAP)


def read_scale(slide_mpp: float, mpp: float) -> float:
    """Level-0 pixels per output pixel that tiles at ``mpp`` are read with: ``mpp / slide_mpp``, or the
    whole number within :data:`READ_WHOLE_RATIO` of it."""
    ratio = float(mpp) / float(slide_mpp)
    whole = round(ratio)
    return float(whole) if whole >= 1 and abs(ratio - whole) <= READ_WHOLE_RATIO * ratio else ratio
