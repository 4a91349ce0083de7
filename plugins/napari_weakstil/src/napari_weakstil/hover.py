"""Which layer a result's tiles answer the pointer from: napari's status bar gives the value under the pointer of
the active layer only, and napari makes the last layer added active: a result opened (File > Open, or shown after
Score slide) left its ``tumour bed`` outline active, so hovering a tile read "[392, 503]: [, ]" in the status bar,
no score, until the pathologist found and selected the heatmap in the layer list (or ``stroma weight``'s 0-1
weight, read as a score, where no outline is drawn at once)."""

from __future__ import annotations

from typing import Any

from napari_weakstil.result_layers import HEATMAP, TISSUE_FRACTION

MAIN_ROLES = (HEATMAP, TISSUE_FRACTION)  # a scored result's heatmap, else a tiles file's tissue fraction


def activate_main_layer_later(viewer: Any, inserted: Any) -> None:
    """Once napari has made ``inserted`` (a result's layer, just added) active, make its result's heatmap active
    instead, so the status bar shows the tile score under the pointer. A layer the user selects is left alone."""
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, lambda: activate_main_layer(viewer, inserted))  # napari activates it after the insert


def activate_main_layer(viewer: Any, inserted: Any) -> None:
    layers = viewer.layers
    active = layers.selection.active  # by id: the widget's viewer hands out proxies, never the layer itself
    if getattr(active, "unique_id", None) != inserted.unique_id or inserted.metadata.get("role") in MAIN_ROLES:
        return  # the selection moved on since (the user, Edit bed, a later result), or it is the heatmap
    path = inserted.metadata.get("result_path")
    for role in MAIN_ROLES:
        main = next((ly for ly in reversed(list(layers)) if ly.metadata.get("weakstil_kind") == "result" and
                     ly.metadata.get("role") == role and ly.metadata.get("result_path") == path), None)
        if main is not None:
            layers.selection.active = main
            return
