"""Tile encoders: cards (YAML), the factory that builds them, and their transforms.

>>> from weakstil.encoders import create_encoder
>>> enc = create_encoder("small-cnn", weights="random")      # or a card name + weights file,
>>> feats = enc.embed(tiles_uint8_nhwc)                        # or a 'weakstil pretrain' dir

Heavy libraries (torch, timm) are imported by the submodules, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from weakstil.encoders.cards import CardError, EncoderCard, builtin_card_names, list_cards, load_card

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.encoders.factory import Encoder, EncoderError, create_encoder, sha256_file

__all__ = ["CardError", "Encoder", "EncoderCard", "EncoderError", "builtin_card_names", "create_encoder",
           "list_cards", "load_card", "sha256_file"]


def __getattr__(name: str) -> Any:
    if name in ("Encoder", "EncoderError", "create_encoder", "sha256_file"):
        from weakstil.encoders import factory

        return getattr(factory, name)
    raise AttributeError(name)
