"""Real-tissue confounders of ``weakstil synth --hard``: per-slide strengths and their effect on
the slide's structure parameters and stain style.

Every confounder has a strength in [0, 1] drawn per slide: a slide *severity* (uniform) pulls
all biological confounders of the slide together, so some slides are mild throughout and some
severe; acquisition confounders follow the slide's *centre* (a per-group level derived from the
group name) plus a per-slide spread. The label stays exact under the TILs Working Group
definition whatever the strengths: every confounder is drawn with its own truth (see
``hard_layout``, ``hard_cells`` and ``artefacts``).

Biological confounders: ``tumor_dark`` (share of tumour nuclei as small and dark as
lymphocytes), ``solid_sheets`` (larger, confluent nests), ``intratumoral_lymphocytes``
(lymphocytes inside nests: not stromal, never counted), ``plasma_cells`` (share of the bed's TIL
area drawn as plasma cells: counted), ``fibroblast_dark`` (plump, dark fibroblast nuclei),
``apoptotic_debris`` (karyorrhectic bodies), ``necrosis`` (inside the bed, excluded from
stroma), ``lymphoid_outside`` (tertiary lymphoid structures and a lymph-node-like region
outside the bed: never counted), ``dense_infiltrate`` (dense lymphocyte aggregates inside the
bed, scaled by the slide's sTIL), ``lobules_dcis`` (normal lobules and DCIS ducts outside the
bed). Acquisition: ``stain_shift`` (hue and intensity in HED space, haematoxylin over-staining
of stroma), ``thickness`` (section thickness: all optical densities), ``focus`` (out-of-focus
patches), ``jpeg`` (compression quality), ``fold`` (tissue folds), ``pen`` (marker ink).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .style import LayoutParams, SlideStyle, _unit

__all__ = ["ACQUISITION", "BIOLOGICAL", "CONFOUNDERS", "Confounders", "hard_params", "hard_style",
           "sample_confounders"]

BIOLOGICAL: tuple[str, ...] = (
    "tumor_dark", "solid_sheets", "intratumoral_lymphocytes", "plasma_cells", "fibroblast_dark",
    "apoptotic_debris", "necrosis", "lymphoid_outside", "dense_infiltrate", "lobules_dcis",
)
ACQUISITION: tuple[str, ...] = ("stain_shift", "thickness", "focus", "jpeg", "fold", "pen")
CONFOUNDERS: tuple[str, ...] = BIOLOGICAL + ACQUISITION


@dataclass(frozen=True)
class Confounders:
    """Strength (0 = absent, 1 = severe) of every confounder of one slide."""

    strengths: Mapping[str, float]
    severity: float  # the slide's overall severity the biological strengths were drawn around

    def __getattr__(self, name: str) -> float:
        s = self.__dict__.get("strengths")
        if s is not None and name in s:
            return float(s[name])
        raise AttributeError(name)

    def attrs(self, prefix: str = "hard_") -> dict[str, Any]:
        out: dict[str, Any] = {prefix + "severity": float(self.severity)}
        out.update({prefix + k: float(self.strengths[k]) for k in CONFOUNDERS})
        return out

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(self.strengths[k]), 4) for k in CONFOUNDERS}


def centre_rng(group: str, salt: str = "hard") -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(zlib.crc32(f"{group}/{salt}".encode("utf-8"))))


def sample_confounders(rng: np.random.Generator, group: str,
                       overrides: Mapping[str, float] | None = None) -> Confounders:
    """Draw the slide's confounder strengths (``overrides`` fixes some of them)."""
    severity = float(rng.uniform())
    s: dict[str, float] = {}
    for name in BIOLOGICAL:
        s[name] = float(np.clip(0.6 * severity + 0.4 * rng.uniform(), 0.0, 1.0))
    g = centre_rng(group)
    for name in ACQUISITION:
        level = g.uniform(0.1, 0.9)
        s[name] = float(np.clip(level + rng.normal(0.0, 0.2), 0.0, 1.0))
    for k, v in (overrides or {}).items():
        if k not in CONFOUNDERS:
            raise ValueError(f"unknown confounder {k!r}; known: {', '.join(CONFOUNDERS)}")
        s[k] = float(np.clip(float(v), 0.0, 1.0))
    return Confounders(strengths=s, severity=severity)


def hard_params(p: LayoutParams, c: Confounders, target_stil: float) -> tuple[LayoutParams, float]:
    """Structure parameters with the confounders applied, and the aggregate size scale of the
    bed lymphocytes (``dense_infiltrate``: large dense aggregates on high-TIL slides)."""
    t = float(np.clip(target_stil / 100.0, 0.0, 1.0))
    solid = c.solid_sheets
    dense = c.dense_infiltrate * min(1.0, 2.0 * t)
    q = dataclasses.replace(
        p,
        nest_fraction=float(p.nest_fraction + (0.78 - p.nest_fraction) * 0.85 * solid),
        nest_scale_um=float(p.nest_scale_um * (1.0 + 1.6 * solid)),
        tumor_spacing_um=float(p.tumor_spacing_um * (1.0 - 0.12 * c.tumor_dark)),
        duct_per_mm2=float(p.duct_per_mm2 + 4.0 * c.lobules_dcis),
        fibroblast_per_mm2=float(p.fibroblast_per_mm2 * (1.0 + 0.6 * c.fibroblast_dark)),
        lymph_aggregate_share=float(p.lymph_aggregate_share + (0.85 - p.lymph_aggregate_share) * dense),
        lymph_peritumoral=float(p.lymph_peritumoral + 2.0 * dense),
        intratumoral_coverage=float(p.intratumoral_coverage + 0.16 * c.intratumoral_lymphocytes),
    )
    return q, float(1.0 + 1.8 * dense)


def hard_style(rng: np.random.Generator, style: SlideStyle, c: Confounders, group: str
               ) -> tuple[SlideStyle, dict[str, float]]:
    """Style with the acquisition confounders applied, and the numbers drawn (for the truth).

    Stain: the haematoxylin and eosin absorption vectors are rotated in optical-density space
    (a per-centre direction plus a per-slide one) and their intensities scaled; section
    thickness scales both densities; JPEG quality falls with ``jpeg``.
    """
    g = centre_rng(group, "hard-stain")
    dir_h, dir_e = g.normal(0.0, 1.0, 3), g.normal(0.0, 1.0, 3)
    dir_h /= np.linalg.norm(dir_h)
    dir_e /= np.linalg.norm(dir_e)
    thick_sign = 1.0 if g.random() < 0.5 else -1.0
    sh = c.stain_shift
    h_vec = _unit(np.asarray(style.h_vec) + 0.16 * sh * dir_h + rng.normal(0.0, 0.04 * sh, 3))
    e_vec = _unit(np.asarray(style.e_vec) + 0.16 * sh * dir_e + rng.normal(0.0, 0.04 * sh, 3))
    h_gain = float(np.exp(sh * (0.25 * g.normal() + 0.12 * rng.normal())))
    e_gain = float(np.exp(sh * (0.25 * g.normal() + 0.12 * rng.normal())))
    thickness = float(np.exp(0.4 * c.thickness * (thick_sign if rng.random() < 0.8 else -thick_sign)))
    quality = int(np.clip(round(91 - 38 * c.jpeg + rng.normal(0.0, 2.0)), 50, 92))
    stroma_h = float(0.10 * sh * rng.uniform(0.3, 1.0))  # haematoxylin over-staining of stroma
    out = dataclasses.replace(
        style,
        h_vec=h_vec,
        e_vec=e_vec,
        h_scale=float(style.h_scale * h_gain * thickness),
        e_scale=float(style.e_scale * e_gain * thickness),
        jpeg_quality=quality,
    )
    drawn = {"stain_h_gain": h_gain, "stain_e_gain": e_gain, "thickness": thickness,
             "stroma_h_extra": stroma_h, "jpeg_quality": float(quality)}
    return out, drawn
