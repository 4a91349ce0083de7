"""Small shims across napari versions."""

from __future__ import annotations

from typing import Any


def camera(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera
