"""Outlines (the tumour bed, the edited bed, the clicked tile) keep their width on screen whatever the zoom.

napari draws an edge width in data units, so the widget sets every outline's width again when the zoom
changes. napari sets a Shapes layer's width shape by shape (about 0.1 ms a shape): a big slide's
fragmented bed of 5,000 outlines cost half a second a layer for each zoom event, and a wheel turn sends
one event per notch, so zooming over the scored and the edited bed stalled the viewer for seconds. A
layer of few shapes follows at once; a big one once the zoom has settled (:data:`SETTLE_MS`), and only
when its width is not the one wanted already.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QTimer

from napari_weakstil._compat import camera

#: An outline's width on screen (px).
OUTLINE_SCREEN_PX = 2.5
#: Shapes up to which a layer's width follows every zoom event at once.
FOLLOW_AT_ONCE = 500
#: How long the zoom must rest before a big layer's width is set (ms).
SETTLE_MS = 150


class OutlineWidths:
    """Keeps the ``owner``'s outline layers (its ``outline_layers()``) at :data:`OUTLINE_SCREEN_PX` on screen."""

    def __init__(self, owner: Any):  # the ScoringWidget
        self.owner = owner
        self.timer = QTimer(owner)
        self.timer.setSingleShot(True)
        self.timer.setInterval(SETTLE_MS)
        self.timer.timeout.connect(lambda: self.apply(big=True))

    def follow(self, zoomed: bool) -> None:
        """Small layers now; big ones now too unless the zoom is moving (``zoomed``: a zoom event), then once
        it rests."""
        self.apply(big=not zoomed)
        if zoomed:
            self.timer.start()  # restarted by every zoom event of a gesture: one update at its end

    def apply(self, big: bool = True) -> None:
        zoom = camera(self.owner.viewer).zoom  # screen px per world unit (µm)
        for layer in self.owner.outline_layers():
            n = len(layer.data)
            if not n or (n > FOLLOW_AT_ONCE and not big):
                continue
            width = OUTLINE_SCREEN_PX / zoom / float(layer.scale[-1])  # edge widths are in data units (level-0 px)
            now = np.asarray(layer.edge_width, float)
            if len(now) == n and np.allclose(now, width, rtol=1e-6, atol=0.0):
                continue  # already so: a layer added or removed elsewhere does not set every shape again
            layer.edge_width = width
