"""The sprite bank of any nucleus kind and look: the default kinds in the default look come
from :mod:`~weakstil.synth.sprites`, the hard confounders' kinds and the other looks from
:mod:`~weakstil.synth.sprites_extra` (which builds on the first's helpers)."""

from __future__ import annotations

from functools import lru_cache

from .sprites import EXTRA_KINDS, SpriteBank, default_bank
from .sprites_extra import alt_bank, extra_bank

__all__ = ["bank"]


@lru_cache(maxsize=None)
def bank(kind: str, look: str = "default") -> SpriteBank:
    """The sprite bank of one kind of nucleus in one look (deterministic, cached)."""
    if kind in EXTRA_KINDS:
        return extra_bank(kind, look)
    if look != "default":
        return alt_bank(kind, look)
    return default_bank(kind)
