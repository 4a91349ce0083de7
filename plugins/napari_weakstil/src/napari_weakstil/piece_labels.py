"""Each tissue piece's own sTIL% in the viewer: a slide of several cores, levels or TMA spots.

A score file of a slide of two or more tissue pieces records each piece's own sTIL% of the scored bed
(``tissue_pieces``, :mod:`weakstil.qc.pieces`); the widget showed none of them, so a core that differed from
the others, or a TMA's spots (one pooled 13.1 % over spots of 1-33 %), could not be read in napari. Now a
Points layer ``<slide_id> tissue pieces`` writes "2: 12.6 %" at each piece's centre, and the detail line
lists them with their bed tile counts. After Rescore both are the edited bed's
(:attr:`weakstil.bed_edit.BedScore.tissue_pieces`, by the rule of the file's), not the scored bed's left
standing beside the edited number; back on the scored bed (Edit bed again, the edited layer closed), the
file's again. Text only apart from :func:`follow`, which changes a layer (no Qt here).
"""

from __future__ import annotations

import json
from typing import Any

#: The role (and name suffix) of the layer of piece labels.
PIECES = "tissue pieces"
#: Readable over H&E and over the inferno heatmap's dark and bright ends alike.
TEXT_COLOR = "#39ff14"


def recorded(res: Any) -> list[dict[str, Any]]:
    """The result file's ``tissue_pieces`` (the scored bed's; [] when it records none or they are unreadable)."""
    raw = (res.attrs or {}).get("tissue_pieces")
    try:
        per_piece = json.loads(raw) if isinstance(raw, (str, bytes)) else []
    except ValueError:
        return []
    return [p for p in per_piece if isinstance(p, dict) and {"piece", "stil", "centre"} <= set(p)] \
        if isinstance(per_piece, list) else []


def current(res: Any) -> list[dict[str, Any]]:
    """The pieces of the bed shown: after Rescore the edited bed's, else the file's."""
    if res.bed_rescore is not None:
        return list(getattr(res.bed_rescore, "tissue_pieces", []))
    return recorded(res)


def detail_text(per_piece: list[dict[str, Any]], edited: bool = False) -> str:
    """The detail line's list: "tissue pieces' own sTIL% (numbered left to right, as labelled on the canvas):
    1: 13.4 % (342 bed tiles), 2: 12.6 % (243)" ("" for none)."""
    if not per_piece:
        return ""
    # :func:`recorded` asks only for what the labels need: a hand-edited entry without its bed tile count
    # raised KeyError here (hunt 39k); it is listed without one
    counted = [i for i, p in enumerate(per_piece) if p.get("n_tumorbed_tiles") is not None]
    items = ", ".join(f"{int(p['piece'])}: {float(p['stil']):.1f} %" + (
        f" ({int(p['n_tumorbed_tiles']):,}{' bed tiles' if i == counted[0] else ''})" if i in counted else "")
        for i, p in enumerate(per_piece))
    return (f"{'Edited bed: t' if edited else 'T'}issue pieces' own sTIL% (numbered left to right, labelled on the "
            f"canvas): {items}")


def _points(per_piece: list[dict[str, Any]], mpp: float) -> tuple[list[list[float]], list[str]]:
    # a piece's centre is in level-0 px; level-0 pixel x is shown at world x·mpp (result_layers' convention)
    data = [[(float(p["centre"][1]) - 0.5) * mpp, (float(p["centre"][0]) - 0.5) * mpp] for p in per_piece]
    return data, [f"{int(p['piece'])}: {float(p['stil']):.1f} %" for p in per_piece]


def layer_data(res: Any, mpp: float, per_piece: list[dict[str, Any]] | None = None
               ) -> tuple[Any, dict[str, Any], str] | None:
    """The labels' layer data for a result shown at ``mpp`` world µm per level-0 px, of ``per_piece`` (default:
    the file's; None: it records no pieces)."""
    import numpy as np

    per_piece = recorded(res) if per_piece is None else per_piece
    if not per_piece:
        return None
    data, labels = _points(per_piece, mpp)
    meta = {"weakstil_kind": "result", "result_path": str(res.path), "slide_id": res.slide_id, "slide_mpp": mpp,
            "kind": res.kind.value, "role": PIECES}
    return (np.asarray(data, np.float64).reshape(-1, 2),
            {"name": f"{res.slide_id} {PIECES}", "features": {"label": labels}, "size": 1.0,
             "face_color": "transparent", "border_width": 0, "units": ("um", "um"), "metadata": meta,
             "text": {"string": "{label}", "color": TEXT_COLOR, "size": 14, "anchor": "center"}}, "points")


def follow(viewer: Any, res: Any) -> None:
    """``res``'s labels on the canvas show :func:`current`'s pieces (after Rescore, or back on the scored bed)."""
    import numpy as np
    import pandas as pd

    mine = [ly for ly in viewer.layers if ly.metadata.get("result_path") == str(res.path)]
    for layer in mine:
        meta = layer.metadata
        if meta.get("role") != PIECES:
            continue
        data, labels = _points(current(res), float(meta["slide_mpp"]))
        layer.data = np.asarray(data, np.float64).reshape(-1, 2)
        layer.features = pd.DataFrame({"label": labels})
        layer.refresh_text()
        return
    # no labels yet: a file that records no pieces (scored before pieces were, or its bed on one piece alone)
    # whose edited bed has some; the detail line said "labelled on the canvas" over none (hunt 39k)
    placed = next((ly.metadata["slide_mpp"] for ly in mine if ly.metadata.get("slide_mpp")), None)
    made = layer_data(res, float(placed), current(res)) if placed and current(res) else None
    if made is not None:
        viewer.add_points(made[0], **made[1])
