"""Geometry constants shared by the synthetic-cohort modules."""

from __future__ import annotations

from typing import Final

#: level-0 resolution of every synthetic slide (µm per pixel).
SLIDE_MPP: Final[float] = 0.5
#: the truth masks live on a grid ``MASK_FACTOR`` times coarser than level 0.
MASK_FACTOR: Final[int] = 8
#: resolution of the truth masks (µm per pixel).
MASK_MPP: Final[float] = SLIDE_MPP * MASK_FACTOR
#: WeakSTIL default tile grid (224 px at 0.5 µm/px, no overlap, origin (0, 0)).
TRUTH_TILE_SIZE: Final[int] = 224
#: TIFF tile size and pyramid step.
TIFF_TILE: Final[int] = 256
PYRAMID_STEP: Final[int] = 4
#: lower pyramid levels are written while their smaller side is >= this.
MIN_LEVEL_SIZE: Final[int] = 256
#: level-0 rendering block (rows of TIFF tiles are produced strip by strip).
BLOCK: Final[int] = 2048
#: extra border rendered around each block (level-0 px, multiple of MASK_FACTOR).
BLOCK_MARGIN: Final[int] = 32

# region codes of the label map (uint8, one value per mask pixel)
BACKGROUND: Final[int] = 0
STROMA: Final[int] = 1
TUMOR: Final[int] = 2
FAT: Final[int] = 3
DUCT: Final[int] = 4
LUMEN: Final[int] = 5
REGION_NAMES: Final[dict[int, str]] = {
    BACKGROUND: "background",
    STROMA: "stroma",
    TUMOR: "tumor",
    FAT: "fat",
    DUCT: "duct_epithelium",
    LUMEN: "duct_lumen",
}
# region codes that only the hard confounders draw (``weakstil synth --hard``); the default
# output's legend (REGION_NAMES) is unchanged
NECROSIS: Final[int] = 6
DCIS: Final[int] = 7
REGION_NAMES_HARD: Final[dict[int, str]] = {**REGION_NAMES, NECROSIS: "necrosis", DCIS: "dcis_epithelium"}

STIL_FORMULA: Final[str] = (
    "stil = 100 * sum(lymphocyte[tumorbed & stroma]) / count(tumorbed & stroma), "
    "computed on the mask grid (mask_mpp); lymphocyte is the per-mask-pixel coverage "
    "fraction of lymphocyte pixels drawn at level 0 (regions are constant per mask "
    "pixel, so this equals the level-0 pixel-count ratio exactly)"
)
