"""Synthetic H&E cohort with exact stromal-TIL truth.

Public API::

    generate_cohort(out_dir, n_slides, seed, *, size_mm=(2.5, 2.5), n_groups=4, progress=True,
                    hard=False, look="default", confounders=None) -> DataFrame
    generate_slide(path, truth_dir, slide_id, seed, *, size_mm=(2.5, 2.5), target_stil=None,
                   group="centre_0", style=None, preview=True, hard=False, look="default",
                   confounders=None) -> SlideTruth
    plan_slide(seed, ...) -> SlidePlan          # everything but the pixels (used by tests)
    sample_target_stil(rng, size)               # TCGA-BRCA-like target distribution

Cohort layout (``generate_cohort``)::

    OUT/labels.csv                       slide_id,path,stil,group (paths relative to the CSV)
    OUT/cohort.json                      version, seed, size, per-slide seeds and groups, library versions
    OUT/slides/<id>.tiff                 pyramidal JPEG TIFF, 0.5 µm/px, levels x4
    OUT/truth/<id>.h5                    masks on the 4 µm/px grid + tiles/ (224 px grid)
    OUT/truth/<id>_tumorbed.geojson      QuPath-style tumour-bed annotation (level-0 px)
    OUT/truth/<id>_preview.png           thumbnail with truth outlines | region map

Truth: region labels live on the 4 µm/px mask grid and level 0 is their exact x8
nearest upsampling; lymphocytes are drawn at level 0 and the h5 ``lymphocyte``
dataset is the fraction of each 8x8 block covered by drawn lymphocyte pixels.
Hence ``stil = 100 * sum(lymphocyte[tumorbed & stroma]) / count(tumorbed & stroma)``
on the saved masks equals the level-0 pixel ratio exactly.

Hard cohorts and looks (``hard=True``, ``look="alt"``): ``hard`` (confounder strengths, their
effect on structure and stain), ``hard_layout`` (necrosis, lymphoid structures, DCIS),
``hard_cells`` (plasma cells, dark tumour nuclei, dark fibroblasts, apoptotic bodies...),
``artefacts`` (folds, focus, pen, the look's optics at render time), ``looks`` (appearance
families), ``sprites_extra`` (their sprite banks). The ``lymphocyte`` coverage is then TIL
coverage (lymphocytes, plasma cells, germinal-centre cells) and the label formula is unchanged;
the default output draws nothing from these modules and stays byte-identical.

Modules: ``constants`` (geometry, region codes), ``distribution`` (target sTIL),
``style`` (stain/appearance and structure parameters), ``fields`` (smooth noise,
block-consistent resampling), ``layout`` (region map), ``orientation`` (collagen
direction), ``sprites`` (nucleus banks), ``textures`` (periodic texture banks),
``cells`` (nucleus placement, lymphocyte calibration), ``render`` (Beer–Lambert
block renderer), ``pyramid`` (streaming TIFF writer), ``truth`` (label, tile
truth, HDF5, GeoJSON, preview), ``generator`` (slide/cohort entry points).
"""

from __future__ import annotations

from .constants import MASK_MPP, SLIDE_MPP, STIL_FORMULA, TRUTH_TILE_SIZE
from .hard import CONFOUNDERS, Confounders, sample_confounders
from .looks import LOOKS, Look
from .distribution import sample_target_stil, stil_quantile
from .generator import SlidePlan, SlideTruth, generate_cohort, generate_slide, plan_slide, slide_seed, slide_shape
from .style import LayoutParams, SlideStyle, sample_style
from .truth import TruthMasks, compute_stil, read_truth, tile_truth

__all__ = [
    "CONFOUNDERS",
    "LOOKS",
    "Confounders",
    "Look",
    "MASK_MPP",
    "SLIDE_MPP",
    "STIL_FORMULA",
    "TRUTH_TILE_SIZE",
    "LayoutParams",
    "SlidePlan",
    "SlideStyle",
    "SlideTruth",
    "TruthMasks",
    "compute_stil",
    "generate_cohort",
    "generate_slide",
    "plan_slide",
    "read_truth",
    "sample_confounders",
    "sample_style",
    "sample_target_stil",
    "slide_seed",
    "slide_shape",
    "stil_quantile",
    "tile_truth",
]
