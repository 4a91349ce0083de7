"""Pre-rendered nucleus sprites (alpha, haematoxylin and eosin density).

Each bank is drawn once per process from a fixed seed, so slides only choose
sprite indices and stay reproducible.  ``footprint`` (alpha >= 0.5) is what
counts as "drawn" pixels of a lymphocyte for the truth.  The shapes are drawn by
``sprite_shapes``; the hard confounders' kinds and the alt look by ``sprites_extra``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .sprite_shapes import N_ANGLES, SpriteBank, _debris, _round_nuclei, _spindles, _tumor_nuclei
from .sprites_extra import alt_bank, extra_bank

__all__ = ["SpriteBank", "bank", "BANK_KINDS", "EXTRA_KINDS", "ORIENTED_KINDS", "TIL_KINDS", "N_ANGLES"]

ORIENTED_KINDS = ("fibroblast", "myoepithelial", "fibroblast_dark")
BANK_KINDS = ("lymphocyte", "tumor", "fibroblast", "luminal", "myoepithelial", "debris")
#: kinds of the hard confounders and the lymphoid structures (built in ``sprites_extra``)
EXTRA_KINDS = ("plasma", "tumor_dark", "fibroblast_dark", "apoptotic", "centroblast", "ghost")
#: kinds whose drawn footprint is TIL area (mononuclear inflammatory cells: TILs Working Group)
TIL_KINDS = ("lymphocyte", "plasma", "centroblast")


@lru_cache(maxsize=None)
def bank(kind: str, look: str = "default") -> SpriteBank:
    """The sprite bank of one kind of nucleus in one look (deterministic, cached)."""
    if kind in EXTRA_KINDS:
        alt = look != "default"
        return extra_bank(kind, alt, np.random.Generator(np.random.PCG64((7000 if alt else 5000)
                                                                         + EXTRA_KINDS.index(kind))))
    if look != "default":
        if look != "alt":
            raise ValueError(f"unknown look {look!r}")
        return alt_bank(kind, np.random.Generator(np.random.PCG64(3000 + BANK_KINDS.index(kind))))
    seed = 1000 + BANK_KINDS.index(kind)
    rng = np.random.Generator(np.random.PCG64(seed))
    if kind == "lymphocyte":
        # 6-8 um round/slightly oval, dense; footprint diameter 12-16 px
        return _round_nuclei(rng, 64, 19, (6.0, 8.0), (1.0, 1.15), (1.45, 1.8), 0.10, 0.10)
    if kind == "tumor":
        return _tumor_nuclei(rng, 96)
    if kind == "fibroblast":
        return _spindles(rng, 4, 49, (10.0, 20.0), (1.6, 2.6), (0.95, 1.3))
    if kind == "luminal":
        return _round_nuclei(rng, 32, 21, (5.5, 8.0), (1.0, 1.35), (1.0, 1.3), 0.12, 0.14)
    if kind == "myoepithelial":
        return _spindles(rng, 2, 25, (6.0, 9.0), (1.8, 2.6), (0.95, 1.25))
    if kind == "debris":
        return _debris(rng, 16)
    raise ValueError(f"unknown sprite kind {kind!r}")
