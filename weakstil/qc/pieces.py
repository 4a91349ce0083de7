"""A slide's separate tissue pieces (cores, sections, TMA spots): each piece's own sTIL% and the ``tma_like`` flag.

The slide's sTIL% is pooled over all its bed stroma, as the TILs Working Group scores core biopsies; but a
pathologist reading a slide of several cores wants to see a core that differs from the others, and a slide of
many small round cores (a tissue microarray: different patients) has no one number (hunt 39g: 9 cores of
0.6 mm, true sTIL 1-33 %, scored one 13.1 %, status ok, no flag). So a score file records, for a slide of two
or more pieces, each piece's own sTIL% (:func:`piece_stils`: the slide's aggregation over that piece's bed tiles
alone) and bed tile count, and a slide of :data:`TMA_PIECES` or more round pieces of similar size is flagged
``tma_like`` (:func:`tma_like`).

Pieces are the 8-connected parts of the tissue mask with parts closer than :data:`JOIN_UM` joined
(:func:`piece_labels`; :func:`weakstil.tumorbed.veto.tile_fragments` gives each tile its piece); a piece under
the tissue detector's debris size (:attr:`weakstil.tissue.TissueParams.min_object_um2`) is not reported.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Pieces smaller than this (µm²) are debris: not reported (the tissue detector's default debris size).
DEBRIS_UM2 = 20_000.0
#: Parts of the tissue mask less than this far apart (µm) are one piece. The saved mask has marker ink cut
#: out (the detector joins a section's strips under the ink only while it detects; the ink is not saved),
#: and a stroke leaves a gap of its width + 16 µm (:data:`weakstil.tissue.PEN_EDGE_UM` each side): one 40 µm
#: stroke across a 1 x 1 mm section made 2 pieces with their own sTIL%, three strokes 6 pieces flagged
#: ``tma_like`` (hunt 39l). Glass between specimens is wider: measured 400 µm between a TMA's 0.6 mm cores,
#: 440 µm between levels, 104-584 µm between a biopsy's fragments and cores (a torn TMA core's parts: 64 and
#: 79 µm, now one piece). Strokes wider than about 80 µm still part a section (the limit).
JOIN_UM = 100.0
#: A piece is round (a TMA spot, a punch) when its minor axis is at least this share of its major axis
#: (second moments of its mask): needle-core strips read 0.08-0.37, synthetic 0.6 mm spots 0.92-0.95.
ROUND_AXES = 0.5
#: ``tma_like``: at least this many round pieces ...
TMA_PIECES = 6
#: ... whose areas lie within this factor of their median (TMA spots are punched with one needle).
TMA_SIZE_FACTOR = 2.0


def slide_pieces(coords: np.ndarray, tile_size_level0: float, tissue: np.ndarray, mask_mpp: float,
                 slide_mpp: float) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """``(each tile's piece, the pieces)``: the piece label of each tile (0: on none, or on debris) and, per
    piece not under :data:`DEBRIS_UM2` holding tiles, its ``label``, ``area_mm2``, ``axes`` (minor/major axis
    ratio), ``centre`` (level-0 px, x y) and ``n_tiles``; in reading order (left to right, by the centre's x)."""
    from scipy import ndimage as ndi

    from weakstil.tumorbed.veto import tile_fragments

    mask = np.asarray(tissue, bool)
    labels, n = piece_labels(mask, mask_mpp)
    tile_piece = tile_fragments(coords, tile_size_level0, mask, mask_mpp, slide_mpp, labels=labels)
    if n == 0 or not len(tile_piece):
        return tile_piece, []
    n_tiles = np.bincount(tile_piece, minlength=n + 1)
    boxes = ndi.find_objects(labels)
    f = float(mask_mpp) / float(slide_mpp)  # level-0 px per mask px
    pieces = []
    # only pieces holding tiles, their areas from their boxes (a bincount of the whole label image took 0.6 s
    # on a 30-million-pixel mask)
    for k in (np.flatnonzero(n_tiles[1:]) + 1).tolist():
        box = boxes[k - 1]
        count, (cy, cx), ev = _axes_moments(labels[box], k)
        area = count * float(mask_mpp) ** 2
        if area < DEBRIS_UM2:
            continue
        pieces.append({"label": k, "area_mm2": round(float(area) / 1e6, 4),
                       "axes": round(math.sqrt(max(ev[0], 1e-9) / max(ev[1], 1e-9)), 3),
                       "centre": [round((box[1].start + cx + 0.5) * f), round((box[0].start + cy + 0.5) * f)],
                       "n_tiles": int(n_tiles[k])})
    tile_piece = np.where(np.isin(tile_piece, [p["label"] for p in pieces]), tile_piece, 0)  # debris: none
    return tile_piece, sorted(pieces, key=lambda p: (p["centre"][0], p["centre"][1]))


def piece_labels(mask: np.ndarray, mask_mpp: float) -> tuple[np.ndarray, int]:
    """``(labels, n)``: the tissue pieces of ``mask`` (bool, ``mask_mpp`` µm/px), 1..n (0 off tissue): its
    8-connected parts, those less than :data:`JOIN_UM` apart joined (the parts' labels of the mask grown by a
    disc of half that: 0.5 s on a 20-million-pixel mask)."""
    from scipy import ndimage as ndi

    from weakstil.morphology import dilate_disk

    radius = int(JOIN_UM / (2.0 * float(mask_mpp)))  # two discs of this radius touch across a gap of JOIN_UM
    labels, n = ndi.label(dilate_disk(mask, radius), np.ones((3, 3), bool))
    labels[~mask] = 0  # each grown part holds tissue: labels 1..n all remain
    return labels, n


def _axes_moments(labels: np.ndarray, k: int, rows: int = 256) -> tuple[float, tuple[float, float], np.ndarray]:
    """``(pixels, (mean y, mean x), eigenvalues of the pixel covariance)`` of the pixels labelled ``k`` (box
    coordinates), from row sums over ``rows``-row blocks. ``np.cov`` took 9.8 s on one 20-million-pixel piece
    of a 100,000-tile slide's mask; the pixel coordinates' dot products after it (``np.nonzero``: two int64
    and two float64 arrays of the piece) still took 1-3 s and 0.9 GB on a 30-million-pixel piece (hunt 39j);
    these sums 0.2 s and a few MB."""
    h, w = labels.shape
    x = np.arange(w, dtype=np.float64) - (w - 1) / 2  # centred: the sums of squares keep their precision
    xx = x * x
    n = sy = syy = sx = sxx = sxy = 0.0
    for r0 in range(0, h, rows):
        block = (labels[r0:r0 + rows] == k).astype(np.float64)
        y = np.arange(r0, r0 + len(block), dtype=np.float64) - (h - 1) / 2
        count, xsum, xxsum = block.sum(axis=1), block @ x, block @ xx
        n += count.sum()
        sy += y @ count
        syy += (y * y) @ count
        sx += xsum.sum()
        sxx += xxsum.sum()
        sxy += y @ xsum
    my, mx = sy / n, sx / n
    centre = (my + (h - 1) / 2, mx + (w - 1) / 2)
    if n <= 2:
        return n, centre, np.ones(2)
    cyy, cxx, cyx = syy - n * my * my, sxx - n * mx * mx, sxy - n * my * mx
    return n, centre, np.linalg.eigvalsh(np.array([[cyy, cyx], [cyx, cxx]]) / (n - 1))


def piece_stils(pieces: list[dict[str, Any]], tile_piece: np.ndarray, tile_scores: np.ndarray, bed: np.ndarray,
                aggregator: str, stroma: np.ndarray | None = None, logits: np.ndarray | None = None
                ) -> list[dict[str, Any]]:
    """Each piece holding bed tiles, numbered in reading order (``piece`` 1, 2, ...): its ``stil`` (the
    slide's aggregation, :func:`weakstil.mil.aggregate.slide_score`, of the model's tile scores over the
    piece's bed tiles alone: weighted by the same stroma or attention), ``n_tumorbed_tiles`` and the piece's
    ``n_tiles``, ``area_mm2``, ``centre``. Empty for a slide of one piece (its number is the slide's)."""
    from weakstil.mil.aggregate import slide_score

    bed = np.asarray(bed, bool)
    if len(pieces) < 2:
        return []
    out = []
    for number, p in enumerate(pieces, start=1):
        own = bed & (tile_piece == p["label"])
        if not own.any():
            continue
        stil, _ = slide_score(tile_scores, stroma, own, aggregator, logits)
        out.append({"piece": number, "stil": round(float(stil), 4), "n_tumorbed_tiles": int(own.sum()),
                    "n_tiles": p["n_tiles"], "area_mm2": p["area_mm2"], "centre": p["centre"]})
    return out


def tma_like(pieces: list[dict[str, Any]], per_piece: list[dict[str, Any]]) -> str:
    """Why the slide looks like a tissue microarray or several specimens ("" when it does not):
    :data:`TMA_PIECES` or more round pieces (:data:`ROUND_AXES`) with areas within :data:`TMA_SIZE_FACTOR`
    of their median. Core-biopsy strips (elongated) and levels of one section (2-3 pieces) are not."""
    areas = np.array([p["area_mm2"] for p in pieces if p["axes"] >= ROUND_AXES], np.float64)
    if len(areas) < TMA_PIECES:
        return ""
    mid = float(np.median(areas))
    alike = areas[(areas >= mid / TMA_SIZE_FACTOR) & (areas <= mid * TMA_SIZE_FACTOR)]
    if len(alike) < TMA_PIECES:
        return ""
    stils = [p["stil"] for p in per_piece if math.isfinite(p["stil"])]
    spread = (f"; its pieces' own sTIL {min(stils):.1f}-{max(stils):.1f} % over {len(stils)} with a bed"
              if stils else "")
    return (f"{len(alike)} separate round tissue pieces of similar size ({alike.min():.2f}-{alike.max():.2f} mm²): a "
            f"tissue microarray or several specimens? The sTIL% is pooled over all of them{spread} (the score "
            "file's tissue_pieces); score each specimen as a slide of its own")


def of_scored_slide(features, scores, bed: np.ndarray, aggregator: str, slide_id: str = ""
                    ) -> tuple[list[dict[str, Any]], str]:
    """``(each piece's own score, why tma_like)`` of a scored slide (``features``: its
    :class:`weakstil.files.FeaturesFile`, ``scores`` its :class:`weakstil.mil.model.SlideScores`, ``bed`` the
    tiles in its score; none: no bed, nothing per piece)."""
    if features.tissue_mask is None or features.tissue_mask_mpp is None or "slide_mpp" not in features.attrs:
        return [], ""
    tile_piece, pieces = slide_pieces(features.coords, features.tile_size_level0, features.tissue_mask,
                                      float(features.tissue_mask_mpp), float(features.attrs["slide_mpp"]))
    bed = np.asarray(bed, bool)
    per_piece = piece_stils(pieces, tile_piece, scores.tile_scores, bed, aggregator, scores.stroma,
                            scores.attention) if bed.any() else []
    if per_piece:
        log.info("%s: %d tissue pieces, %d with a bed: %s", slide_id, len(pieces), len(per_piece), ", ".join(
            f"piece {p['piece']} {p['stil']:.1f} % ({p['n_tumorbed_tiles']} bed tiles)" for p in per_piece))
    return per_piece, tma_like(pieces, per_piece)


def of_bed(tiles, bed: np.ndarray) -> list[dict[str, Any]]:
    """Each piece's own score (:func:`piece_stils`) for another bed ``bed`` of a scored slide (``tiles``: its
    :class:`weakstil.bed_edit.ScoredTiles`, whose model tile scores, stroma weights and attention logits are the
    ones ``score`` aggregated): a bed edited in napari and rescored gets its pieces' numbers by the rule of the
    score file's ``tissue_pieces``, which belong to the scored bed. The pieces are found once per ``tiles``."""
    g = tiles.geometry
    if tiles.piece_layout is None:  # a file with no tissue mask has an empty grid: no pieces
        tiles.piece_layout = slide_pieces(g.coords, g.tile_size_level0, g.tissue_mask, g.mask_mpp, g.slide_mpp)
    tile_piece, pieces = tiles.piece_layout
    bed = np.asarray(bed, bool)
    return piece_stils(pieces, tile_piece, tiles.tile_scores, bed, tiles.aggregator, tiles.stroma,
                       tiles.logits) if bed.any() else []


#: A heatmap title lists each piece's sTIL% up to this many pieces with a bed (more: their range).
TITLE_PIECES = 4


def title_line(recorded: object) -> str:
    """The heatmap title's line of each piece's own sTIL% (a score file's ``tissue_pieces``; "" for a slide
    of one piece with a bed): "pieces (left to right): 13.4 % (342 bed tiles), 12.6 % (243)"."""
    import json

    try:
        per_piece = json.loads(recorded) if isinstance(recorded, (str, bytes)) else []
    except ValueError:
        return ""
    if not isinstance(per_piece, list) or len(per_piece) < 2:
        return ""
    if len(per_piece) > TITLE_PIECES:
        stils = [float(p["stil"]) for p in per_piece]
        return f"{len(per_piece)} tissue pieces with a bed, each {min(stils):.1f}-{max(stils):.1f} %"
    return "pieces (left to right): " + ", ".join(
        f"{float(p['stil']):.1f} % ({int(p['n_tumorbed_tiles'])}{' bed tiles' if i == 0 else ''})"
        for i, p in enumerate(per_piece))
