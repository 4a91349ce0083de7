"""The editable tumour bed: a napari Shapes layer in level-0 pixels over the slide.

Shapes hold level-0 ``(y, x)`` vertices and are scaled by the slide's µm/px like the slide and
heatmap layers, so a vertex lands on the pixel it names: level-0 pixel ``x`` is centred at world
``x·mpp`` (see :mod:`napari_weakstil.result_layers`), and a polygon coordinate (pixel edges, as in
annotation files) at ``(x - ½)·mpp``, hence the translate of ``-½·mpp``.

Each shape is a part of the bed or a hole in it (the ``part`` feature; new shapes are bed). The
bed is the union of the bed shapes minus the holes; rescoring and saving are
:mod:`weakstil.bed_edit`'s. Pure conversion here, tested without a viewer.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Name suffix and metadata kind of the editable bed layer.
BED_EDIT = "tumour bed (edit)"
BED_EDIT_KIND = "bed_edit"
BED, HOLE = "bed", "hole"
BED_FACE = "#ffd40040"  #: translucent yellow: apart from the scored bed's cyan outline
HOLE_FACE = "#ff3b3b40"
BED_EDGE = "#ffd400"
HOLE_EDGE = "#ff3b3b"
#: Vertices of an ellipse drawn with napari's ellipse tool, once made a polygon.
ELLIPSE_VERTICES = 64


def layer_kwargs(slide_id: str, slide_mpp: float, parts: list[str], edge_width: float) -> dict[str, Any]:
    """``add_shapes`` keyword arguments for a bed of ``len(parts)`` shapes."""
    return {"name": f"{slide_id} {BED_EDIT}", "shape_type": "polygon", "scale": (slide_mpp, slide_mpp),
            "translate": (-0.5 * slide_mpp, -0.5 * slide_mpp), "units": ("um", "um"),
            "features": {"part": list(parts)}, "feature_defaults": {"part": BED},
            "face_color": [BED_FACE if p == BED else HOLE_FACE for p in parts] or BED_FACE,
            "edge_color": [BED_EDGE if p == BED else HOLE_EDGE for p in parts] or BED_EDGE,
            "edge_width": edge_width, "opacity": 1.0,
            "metadata": {"weakstil_kind": BED_EDIT_KIND, "slide_id": slide_id, "slide_mpp": slide_mpp}}


def set_drawing(layer: Any, part: str) -> None:
    """Shapes drawn from now on are ``part`` (bed or hole), coloured as such."""
    layer.feature_defaults = {"part": part}
    selected = set(layer.selected_data)
    layer.selected_data = set()  # napari recolours the selected shapes with the current colours
    layer.current_face_color = BED_FACE if part == BED else HOLE_FACE
    layer.current_edge_color = BED_EDGE if part == BED else HOLE_EDGE
    layer.selected_data = selected


def rings_to_shapes(polygons: list[np.ndarray], holes: list[np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """Level-0 ``[x, y]`` rings -> Shapes data (``[y, x]``) and each shape's part."""
    data = [np.asarray(r, float)[:, ::-1] for r in [*polygons, *holes]]
    return data, [BED] * len(polygons) + [HOLE] * len(holes)


def shapes_to_rings(data: list[np.ndarray], shape_types: list[str],
                    parts: list[str] | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Shapes data (level-0 ``[y, x]``) -> bed and hole rings (level-0 ``[x, y]``). Ellipses become
    polygons; lines and paths enclose nothing and are left out."""
    parts = list(parts) if parts is not None and len(parts) == len(data) else [BED] * len(data)
    polygons: list[np.ndarray] = []
    holes: list[np.ndarray] = []
    for vertices, kind, part in zip(data, shape_types, parts):
        yx = np.asarray(vertices, float)[:, -2:]
        if kind == "ellipse":
            yx = _ellipse(yx)
        elif kind not in ("polygon", "rectangle"):
            continue
        if len(yx) >= 3:
            (holes if part == HOLE else polygons).append(yx[:, ::-1])
    return polygons, holes


def _ellipse(corners: np.ndarray) -> np.ndarray:
    """napari stores an ellipse as the 4 corners of its bounding box (possibly rotated)."""
    centre = corners.mean(0)
    a = (corners[1] - corners[0]) / 2.0  # half of one side
    b = (corners[3] - corners[0]) / 2.0  # half of the other
    t = np.linspace(0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)[:, None]
    return centre + np.cos(t) * a + np.sin(t) * b
