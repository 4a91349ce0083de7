"""Per-slide appearance (stain vectors, brightness, blur...) and structure parameters.

Appearance is drawn hierarchically: every group ("centre") has a systematic stain
shift derived only from its name (so ``centre_1`` looks the same in every cohort),
and every slide adds a smaller perturbation on top.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LayoutParams", "SlideStyle", "sample_layout_params", "sample_style"]

# Ruifrok & Johnston haematoxylin; a pink (magenta-leaning) eosin.
_H_REF = np.array([0.650, 0.704, 0.286])
_E_REF = np.array([0.10, 0.86, 0.45])


def _unit(v: np.ndarray) -> tuple[float, float, float]:
    v = np.clip(v, 0.02, None)
    v = v / np.linalg.norm(v)
    return (float(v[0]), float(v[1]), float(v[2]))


@dataclass(frozen=True)
class SlideStyle:
    """Appearance of one slide (all optical densities are natural-log units)."""

    h_vec: tuple[float, float, float]
    e_vec: tuple[float, float, float]
    h_scale: float  # multiplies every haematoxylin optical density
    e_scale: float  # multiplies every eosin optical density
    brightness: float  # illuminant, fraction of 255
    blur_sigma: float  # level-0 px, 0 = sharp
    noise_sigma: float  # per-pixel optical-density noise
    stroma_eosin: float  # base eosin density of collagen
    fibre_contrast: float  # amplitude of the fibrous texture
    nucleus_darkness: float  # multiplies nuclear haematoxylin
    jpeg_quality: int

    def attrs(self, prefix: str = "style_") -> dict[str, Any]:
        """Flat dict for HDF5 attributes / JSON."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[prefix + f.name] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class LayoutParams:
    """Structure of one slide (fractions are of areas on the mask grid)."""

    tissue_fraction: float  # of the slide
    n_tissue_blobs: int
    bed_fraction: float  # of the tissue
    nest_fraction: float  # of the tumour bed
    nest_scale_um: float  # correlation length of the nest field
    tumor_spacing_um: float  # centre spacing of tumour nuclei
    fat_fraction_outside: float  # of tissue outside the bed
    fat_fraction_bed: float  # of the tumour bed
    adipocyte_um: float  # mean adipocyte diameter
    duct_per_mm2: float  # normal ducts / lobules per mm² of non-bed stroma
    fibroblast_per_mm2: float
    lymph_aggregate_share: float  # share of bed lymphocytes drawn in aggregates
    lymph_heterogeneity: float  # 0 = uniform over bed stroma, 1 = patchy
    lymph_peritumoral: float  # extra intensity close to tumour nests
    lymph_outside_coverage: float  # lymphocyte coverage of stroma outside the bed
    intratumoral_coverage: float  # lymphocyte coverage of tumour nests

    def attrs(self, prefix: str = "layout_") -> dict[str, Any]:
        return {prefix + f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _group_rng(group: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(zlib.crc32(group.encode("utf-8"))))


def sample_style(rng: np.random.Generator, group: str = "centre_0") -> SlideStyle:
    """Draw a slide style: group ("centre") shift plus a per-slide perturbation."""
    g = _group_rng(group)
    g_h = g.normal(0.0, 0.035, 3)
    g_e = g.normal(0.0, 0.035, 3)
    g_hs = g.uniform(0.85, 1.15)
    g_es = g.uniform(0.80, 1.20)
    g_bright = g.uniform(-0.02, 0.015)
    g_quality = int(g.integers(85, 91))
    g_blur = g.uniform(0.0, 0.6)
    return SlideStyle(
        h_vec=_unit(_H_REF + g_h + rng.normal(0.0, 0.02, 3)),
        e_vec=_unit(_E_REF + g_e + rng.normal(0.0, 0.02, 3)),
        h_scale=float(g_hs * rng.normal(1.0, 0.05)),
        e_scale=float(g_es * rng.normal(1.0, 0.06)),
        brightness=float(np.clip(0.962 + g_bright + rng.normal(0.0, 0.006), 0.93, 0.985)),
        blur_sigma=float(np.clip(g_blur + rng.uniform(0.0, 0.6), 0.0, 1.2)),
        noise_sigma=float(rng.uniform(0.012, 0.03)),
        stroma_eosin=float(rng.uniform(0.38, 0.62)),
        fibre_contrast=float(rng.uniform(0.55, 0.9)),
        nucleus_darkness=float(rng.uniform(0.9, 1.1)),
        jpeg_quality=g_quality,
    )


def sample_layout_params(rng: np.random.Generator, target_stil: float) -> LayoutParams:
    """Draw the structure of a slide; lymphocyte pattern depends on the target."""
    t = float(np.clip(target_stil / 100.0, 0.0, 1.0))
    return LayoutParams(
        tissue_fraction=float(rng.uniform(0.50, 0.75)),
        n_tissue_blobs=int(rng.integers(1, 3)),
        bed_fraction=float(rng.uniform(0.30, 0.60)),
        nest_fraction=float(rng.uniform(0.30, 0.55)),
        nest_scale_um=float(rng.uniform(35.0, 80.0)),
        tumor_spacing_um=float(rng.uniform(12.5, 16.0)),
        fat_fraction_outside=float(rng.uniform(0.15, 0.50)),
        fat_fraction_bed=float(rng.uniform(0.0, 0.08)),
        adipocyte_um=float(rng.uniform(55.0, 95.0)),
        duct_per_mm2=float(rng.uniform(0.6, 2.0)),
        fibroblast_per_mm2=float(rng.uniform(500.0, 1100.0)),
        lymph_aggregate_share=float(rng.uniform(0.2, 0.6)),
        lymph_heterogeneity=float(rng.uniform(0.3, 0.9) * (1.0 - 0.7 * t)),
        lymph_peritumoral=float(rng.uniform(0.0, 2.0)),
        lymph_outside_coverage=float(rng.uniform(0.003, 0.03) + 0.08 * t * rng.random()),
        intratumoral_coverage=float(0.002 + 0.04 * t * rng.random()),
    )
