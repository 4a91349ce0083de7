"""Small drawing pieces the PNGs WeakSTIL writes share (the heatmap, the tile overlay): their font
and their one-line keys. Pillow and numpy only, so any output module can use them."""

from __future__ import annotations

import numpy as np


def font(size: int):
    """Pillow's bundled font at ``size`` px: the same pixels on every machine."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


#: A key's swatch (px) and the gaps after it and between two of its items.
KEY_SWATCH, KEY_TEXT_GAP, KEY_ITEM_GAP = 14, 6, 14


def key_width(items: list[tuple[tuple[int, int, int], str]], font) -> int:
    """The width of a one-line key of ``(colour, text)`` items (:func:`draw_key`), 0 for none."""
    widths = [KEY_SWATCH + KEY_TEXT_GAP + int(np.ceil(font.getlength(text))) for _, text in items]
    return sum(widths) + KEY_ITEM_GAP * max(0, len(items) - 1)


def draw_key(draw, x: int, y_mid: int, items: list[tuple[tuple[int, int, int], str]], font) -> None:
    """A one-line key from ``x``, centred on ``y_mid``: each item an outlined swatch of its colour
    and its text (the heatmap's outline, the tile overlay's tissue and tiles)."""
    for colour, text in items:
        draw.rectangle((x, y_mid - KEY_SWATCH // 2, x + KEY_SWATCH - 1, y_mid + KEY_SWATCH // 2 - 1), outline=colour,
                       width=2)
        draw.text((x + KEY_SWATCH + KEY_TEXT_GAP, y_mid), text, fill="black", font=font, anchor="lm")
        x += KEY_SWATCH + KEY_TEXT_GAP + int(np.ceil(font.getlength(text))) + KEY_ITEM_GAP
