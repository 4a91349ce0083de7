"""Looks: whole appearance families of the generator (stain palette, background, nucleus
sprites, collagen and noise textures, scanner optics).

``default`` is the original look (its output is byte-identical to the generator before looks
existed). ``alt`` is a deliberately different "other lab, other scanner": navy haematoxylin and
orange-red eosin, a bluish-grey background, larger/vesicular nucleus sprites with coarser
chromatin, thin wavy fibroblasts, lamellar collagen with clefts, paler stroma, correlated
(demosaicked) sensor noise and an unsharp-mask sharpening on top of a softer lens. Per-centre
(group) appearance shifts are kept in every look: they are derived from the group name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import Enum

import numpy as np

from .constants import BACKGROUND, DCIS, DUCT, FAT, LUMEN, NECROSIS, STROMA, TUMOR
from .style import SlideStyle, _unit

__all__ = ["LOOKS", "Look", "LookRender", "check_look", "look_render", "sample_look_style"]


class Look(str, Enum):
    """Appearance family of a synthetic cohort."""

    default = "default"
    alt = "alt"


LOOKS: tuple[str, ...] = tuple(v.value for v in Look)

# alt look: a navy haematoxylin (absorbs more red) and an orange-red eosin (absorbs more blue)
_H_ALT = np.array([0.80, 0.56, 0.26])
_E_ALT = np.array([0.05, 0.76, 0.66])


def check_look(look: str | Look) -> str:
    value = look.value if isinstance(look, Look) else str(look)
    if value not in LOOKS:
        raise ValueError(f"unknown look {value!r}; choose one of {', '.join(LOOKS)}")
    return value


@dataclass(frozen=True)
class LookRender:
    """Render parameters of a slide beyond ``SlideStyle`` (only for non-default output)."""

    look: str
    illuminant: tuple[float, float, float]  # per-channel gain on style.brightness (background tint)
    sharpen: float  # unsharp-mask amount (scanner sharpening), 0 = none
    sharpen_sigma: float  # level-0 px
    lut_h: tuple[float, ...]  # base haematoxylin density per region code (before style scales)
    lut_e: tuple[float, ...]  # base eosin density per region code; stroma uses style.stroma_eosin

    def attrs(self, prefix: str = "look_") -> dict[str, object]:
        return {prefix + "illuminant": list(self.illuminant), prefix + "sharpen": self.sharpen,
                prefix + "sharpen_sigma": self.sharpen_sigma}


def _group_rng(group: str, salt: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(zlib.crc32(f"{group}/{salt}".encode("utf-8"))))


def sample_look_style(rng: np.random.Generator, group: str, look: str) -> SlideStyle:
    """Per-slide style in a non-default look (a per-centre shift plus a per-slide one)."""
    if look != "alt":
        raise ValueError(f"no style sampler for look {look!r}")
    g = _group_rng(group, "alt")
    g_h, g_e = g.normal(0.0, 0.04, 3), g.normal(0.0, 0.04, 3)
    g_hs, g_es = g.uniform(0.85, 1.2), g.uniform(0.78, 1.15)
    g_bright = g.uniform(-0.015, 0.01)
    g_quality = int(g.integers(78, 89))
    g_blur = g.uniform(0.35, 0.7)
    return SlideStyle(
        h_vec=_unit(_H_ALT + g_h + rng.normal(0.0, 0.02, 3)),
        e_vec=_unit(_E_ALT + g_e + rng.normal(0.0, 0.02, 3)),
        h_scale=float(g_hs * rng.normal(1.0, 0.05)),
        e_scale=float(g_es * rng.normal(1.0, 0.06)),
        brightness=float(np.clip(0.95 + g_bright + rng.normal(0.0, 0.005), 0.92, 0.975)),
        blur_sigma=float(np.clip(g_blur + rng.uniform(0.0, 0.25), 0.0, 0.9)),
        noise_sigma=float(rng.uniform(0.02, 0.04)),
        stroma_eosin=float(rng.uniform(0.30, 0.50)),
        fibre_contrast=float(rng.uniform(0.8, 1.15)),
        nucleus_darkness=float(rng.uniform(0.95, 1.2)),
        jpeg_quality=g_quality,
    )


def _lut(pairs: dict[int, tuple[float, float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    h, e = [0.0] * 8, [0.0] * 8
    for code, (hv, ev) in pairs.items():
        h[code], e[code] = hv, ev
    return tuple(h), tuple(e)


def look_render(look: str, group: str) -> LookRender:
    """Render parameters of ``look`` for a centre (deterministic in the group name)."""
    # NaN marks "use style.stroma_eosin" for the stroma eosin base
    if look == "default":
        h, e = _lut({BACKGROUND: (0.0, 0.0), STROMA: (0.045, np.nan), TUMOR: (0.22, 0.36), FAT: (0.0, 0.0),
                     DUCT: (0.22, 0.50), LUMEN: (0.02, 0.10), NECROSIS: (0.12, 0.62), DCIS: (0.24, 0.38)})
        return LookRender(look, (1.0, 1.0, 1.0), 0.0, 1.0, h, e)
    if look == "alt":
        g = _group_rng(group, "alt-optics")
        tint = (float(0.965 + g.uniform(-0.01, 0.01)), float(0.975 + g.uniform(-0.01, 0.01)), 1.0)
        h, e = _lut({BACKGROUND: (0.0, 0.0), STROMA: (0.07, np.nan), TUMOR: (0.16, 0.44), FAT: (0.0, 0.0),
                     DUCT: (0.18, 0.50), LUMEN: (0.03, 0.12), NECROSIS: (0.14, 0.60), DCIS: (0.18, 0.44)})
        return LookRender(look, tint, float(g.uniform(0.4, 0.8)), 0.8, h, e)
    raise ValueError(f"unknown look {look!r}")
