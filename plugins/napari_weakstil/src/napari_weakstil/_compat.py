"""Small shims across napari versions."""

from __future__ import annotations

from typing import Any


def camera(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def scale_bar(viewer: Any) -> Any:
    """The viewer's scale bar: ``viewer.canvas.overlays.scale_bar`` since napari 0.9 (``viewer.scale_bar``
    warns there), ``viewer.scale_bar`` before."""
    overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
    bar = getattr(overlays, "scale_bar", None) if overlays is not None else None
    return bar if bar is not None else viewer.scale_bar
