"""The editable tumour bed: a napari Shapes layer in level-0 pixels over the slide.

Shapes hold level-0 ``(y, x)`` vertices and are scaled by the slide's µm/px like the slide and
heatmap layers, so a vertex lands on the pixel it names: level-0 pixel ``x`` is centred at world
``x·mpp`` (see :mod:`napari_weakstil.result_layers`), and a polygon coordinate (pixel edges, as in
annotation files) at ``(x - ½)·mpp``, hence the translate of ``-½·mpp``.

Each shape is a part of the bed or a hole in it (the ``part`` feature; new shapes are bed). The
bed is drawn shape by shape in the layer's order (the order they were drawn): a bed shape adds its
area, a hole cuts its area out of what is drawn before it, so a bed drawn inside a hole is bed
(:func:`weakstil.bed_edit.ordered_bed_shape`); rescoring and saving are :mod:`weakstil.bed_edit`'s.
Pure conversion here, tested without a viewer.
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


def layer_kwargs(slide_id: str, slide_mpp: float, parts: list[str], edge_width: float,
                 result_path: str | None = None) -> dict[str, Any]:
    """``add_shapes`` keyword arguments for a bed of ``len(parts)`` shapes (of the result file ``result_path``)."""
    import pandas as pd

    return {"name": f"{slide_id} {BED_EDIT}", "shape_type": "polygon", "scale": (slide_mpp, slide_mpp),
            "translate": (-0.5 * slide_mpp, -0.5 * slide_mpp), "units": ("um", "um"),
            # (object-typed: a bed of no shape, a slide with no tumour bed, would make napari's empty column
            # float and refuse the 'bed' default of every shape drawn on it, until hunt 41f)
            "features": {"part": pd.Series(list(parts), dtype=object)}, "feature_defaults": {"part": BED},
            "face_color": [BED_FACE if p == BED else HOLE_FACE for p in parts] or BED_FACE,
            "edge_color": [BED_EDGE if p == BED else HOLE_EDGE for p in parts] or BED_EDGE,
            "edge_width": edge_width, "opacity": 1.0,
            "metadata": {"weakstil_kind": BED_EDIT_KIND, "slide_id": slide_id, "slide_mpp": slide_mpp,
                         **({"result_path": result_path} if result_path else {})}}


def set_drawing(layer: Any, part: str) -> None:
    """Shapes drawn from now on are ``part`` (bed or hole), coloured as such."""
    layer.feature_defaults = {"part": part}
    selected = set(layer.selected_data)
    layer.selected_data = set()  # napari recolours the selected shapes with the current colours
    layer.current_face_color = BED_FACE if part == BED else HOLE_FACE
    layer.current_edge_color = BED_EDGE if part == BED else HOLE_EDGE
    layer.selected_data = selected


def level0_data(layer: Any) -> list[np.ndarray]:
    """The shapes' vertices in level-0 ``(y, x)`` where the layer shows them: through its whole
    transform, not its data alone (napari's transform mode drags, turns or scales the layer's
    affine, leaving its data as drawn). A layer at its own placement gives its data unchanged."""
    data = [np.asarray(d, float)[:, -2:] for d in layer.data]
    mpp = float(layer.metadata["slide_mpp"])
    to_world = layer._data_to_world  # napari's data -> world transform (scale, translate, rotate, shear, affine)
    probe = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    if np.allclose(np.asarray(to_world(probe)), probe * mpp - 0.5 * mpp, rtol=0.0, atol=1e-9 * mpp):
        return data
    return [(np.asarray(to_world(d), float) + 0.5 * mpp) / mpp for d in data]


def rings_to_shapes(polygons: list[np.ndarray], holes: list[np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """Level-0 ``[x, y]`` rings -> Shapes data (``[y, x]``) and each shape's part."""
    return parts_to_shapes([*polygons, *holes], [BED] * len(polygons) + [HOLE] * len(holes))


def parts_to_shapes(rings: list[np.ndarray], parts: list[str]) -> tuple[list[np.ndarray], list[str]]:
    """Level-0 ``[x, y]`` rings in drawing order with their parts -> Shapes data (``[y, x]``) and parts."""
    return [np.asarray(r, float)[:, ::-1] for r in rings], list(parts)


def shapes_to_parts(data: list[np.ndarray], shape_types: list[str],
                    parts: list[str] | None) -> tuple[list[np.ndarray], list[str]]:
    """Shapes data (level-0 ``[y, x]``) -> rings (level-0 ``[x, y]``) in the layer's order and each
    one's part (bed or hole). Ellipses become polygons; lines and paths enclose nothing and are left out."""
    parts = list(parts) if parts is not None and len(parts) == len(data) else [BED] * len(data)
    rings: list[np.ndarray] = []
    kept: list[str] = []
    for vertices, kind, part in zip(data, shape_types, parts):
        yx = np.asarray(vertices, float)[:, -2:]
        if kind == "ellipse":
            yx = _ellipse(yx)
        elif kind not in ("polygon", "rectangle"):
            continue
        if len(yx) >= 3:
            rings.append(yx[:, ::-1])
            kept.append(HOLE if part == HOLE else BED)
    return rings, kept


def shapes_to_rings(data: list[np.ndarray], shape_types: list[str],
                    parts: list[str] | None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Shapes data -> bed and hole rings, order dropped (all beds, then all holes cut out: a bed
    drawn inside a hole is lost; :func:`shapes_to_parts` keeps the order)."""
    rings, kinds = shapes_to_parts(data, shape_types, parts)
    return [r for r, k in zip(rings, kinds) if k == BED], [r for r, k in zip(rings, kinds) if k == HOLE]


def _ellipse(corners: np.ndarray) -> np.ndarray:
    """napari stores an ellipse as the 4 corners of its bounding box (possibly rotated)."""
    centre = corners.mean(0)
    a = (corners[1] - corners[0]) / 2.0  # half of one side
    b = (corners[3] - corners[0]) / 2.0  # half of the other
    t = np.linspace(0, 2 * np.pi, ELLIPSE_VERTICES, endpoint=False)[:, None]
    return centre + np.cos(t) * a + np.sin(t) * b


#: Vertices of a bed above which napari's pure-Python triangulation keeps the viewer busy for a minute or more
#: (about 1 ms a vertex on 2 busy cores: 1,000 small outlines of 29,000 vertices took 26 s, a 100,000-tile
#: slide's fragmented bed of 545,000 vertices over a quarter of an hour; napari's compiled backend, bermuda: 15 s).
SLOW_VERTICES = 30_000


def compiled_triangulation() -> bool:
    """Whether napari triangulates polygons with a compiled backend (bermuda, PartSegCore or triangle), not in
    pure Python (napari picks the fastest one installed unless its settings name another)."""
    import sys

    try:
        from napari.layers.shapes._shapes_models import shape
        from napari.utils.triangulation_backend import TriangulationBackend as T
    except ImportError:  # another napari: nothing to tell
        return True
    backend = getattr(shape, "TRIANGULATION_BACKEND", None)
    if backend is None:
        return True
    fastest = backend == T.fastest_available
    return bool((getattr(shape, "bermuda", None) is not None and (fastest or backend == T.bermuda))
                or (getattr(shape, "partsegcore_triangulate", None) is not None and (fastest or backend == T.partsegcore))
                or ("triangle" in sys.modules and (fastest or backend == T.triangle)))
