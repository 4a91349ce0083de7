"""Tumour-cell gate: a tile seeds the bed only where tumour cells are seen, in it or beside it.

The bed's seeds are *invasive tumour*: cohesive nests of tumour cells, whose nuclei are large
(75 µm² and up) and pale (vesicular chromatin). The classifier's evidence is a linear read-out
of an encoder, and on a look it was not trained on it can fire on plain stroma or fat (an
encoder trained on the alt-hard look calls 379 tiles of default-look slides tumour, > 100 µm from
any bed, and 96 % of them hold no pale nucleus of tumour size; 9 % of its true seeds do not).
The tile measurements stored beside the embeddings (:mod:`weakstil.tilestats`, colour
deconvolution with the slide's own stain vectors) see those nuclei whatever the look, so:

* a tile keeps its tumour evidence only when tumour nuclei (medium or large *pale* ones, plus
  hyperchromatic ones of tumour size where the features measured them:
  :func:`weakstil.tumorbed.veto.tumour_nuclei_area`) cover at least
  ``min_tumour_nuclei_area`` of it or of a tile within ``neighbourhood`` tiles of it (0.005 of a
  112 µm tile: half a tumour nucleus; the neighbourhood keeps tiles inside a nest whose own
  nuclei came out dark, as hyperchromatic tumour cells do, or were cut by the tile edge);
* when that would take away more than ``max_removed_share`` of the slide's evidence, the gate is
  set aside for the slide and says so: the stain measure then does not see this slide's tumour
  nuclei (all hyperchromatic, or the stain estimate failed), and the classifier is trusted alone;
* unless the evidence it would take lies where the tissue holds too few nuclei of *any* size or
  shade to be a tumour nest (nuclei cover < 10 % of the tile and of each of its neighbours:
  ``CELLULAR_NUCLEAR_AREA``): then there are no tumour cells the measure could miss, the
  slide holds no invasive tumour there (a biopsy of benign or fibrous tissue), and the gate
  stands. Set aside on such a slide, the classifier's evidence, standardised over the slide's
  own tiles, grew a bed of plain stroma: 76 of 96 tiles on a 1.5 mm slide without tumour, scored
  as an ordinary slide (``ok``), instead of the documented ``bed fallback: tissue`` (hunt 19).

Like the lymphoid veto it only removes seeds: the geometry still puts the stroma between and
around the nests in the bed. ``weakstil tumorbed train`` keeps it unless it lowers the
leave-one-slide-out Dice of the annotated slides by more than
:data:`weakstil.tumorbed.training.CELL_GATE_MAX_LOSS` (the annotations may show a look whose
tumour the measure misses); model.json records the rule (``tumour_cell_gate``; detectors written
before it have it off).

With the gate applied, a detected bed is also checked against its own tumour
(:func:`tumour_cells_left_out`: tumour cells joined to its seeds left outside it are the
``tumorbed_incomplete`` qc flag; the bed itself is not changed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from weakstil.tumorbed.veto import TUMOUR_NUCLEI_COLUMNS, _area, lymphocyte_dark_area, tumour_nuclei_area  # noqa: F401

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TumourCellGate:
    """When a tile's tumour evidence counts (area shares of a tile; neighbourhood in tiles)."""

    enabled: bool = True
    min_tumour_nuclei_area: float = 0.005
    neighbourhood: int = 1
    max_removed_share: float = 0.75

    def to_dict(self) -> dict[str, float | bool | int]:
        d = asdict(self)
        return {k: (bool(v) if k == "enabled" else int(v) if k == "neighbourhood" else float(v)) for k, v in d.items()}

    @classmethod
    def from_dict(cls, values: dict | None) -> TumourCellGate:
        """From model.json; a detector written before the gate has it off."""
        if not values:
            return cls(enabled=False)
        from weakstil.tumorbed.flags import json_flag

        kinds = {"enabled": lambda v: json_flag(v, "enabled"), "neighbourhood": int}
        return cls(**{k: kinds.get(k, float)(values[k]) for k in cls.__dataclass_fields__ if k in values})


def tumour_cells_near(tile_stats: np.ndarray | None, columns: list[str] | tuple[str, ...] | None,
                      coords: np.ndarray, tile_size_level0: float, rule: TumourCellGate) -> np.ndarray | None:
    """Per tile, whether tumour nuclei are seen in it or within ``rule.neighbourhood`` tiles of
    it; ``None`` when the feature file has no tumour-nuclei statistics."""
    if tile_stats is None or columns is None:
        return None
    tumour = tumour_nuclei_area(tile_stats, columns)
    if tumour is None or len(tumour) != len(coords):
        return None
    return _near(tumour >= rule.min_tumour_nuclei_area, coords, tile_size_level0, rule)


def _near(seen: np.ndarray, coords: np.ndarray, tile_size_level0: float, rule: TumourCellGate) -> np.ndarray:
    """Per tile, whether ``seen`` holds for it or a tile within ``rule.neighbourhood`` tiles of it."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import grid_cells

    r = int(rule.neighbourhood)
    if r <= 0 or not len(seen):
        return seen
    rows, cols, _ = grid_cells(coords, tile_size_level0)
    grid = np.zeros((rows.max() + 1, cols.max() + 1), bool)
    grid[rows, cols] = seen
    return ndi.binary_dilation(grid, np.ones((2 * r + 1, 2 * r + 1), bool))[rows, cols]


#: Share of a tile covered by nuclei of any size and shade (the tile measurements' ``nuclear``)
#: from which it is cellular enough to hold a tumour nest: nests cover 0.12-0.6 of a tile on our
#: four looks (dark or pale nuclei alike), plain or fibrous stroma and fat 0-0.09.
CELLULAR_NUCLEAR_AREA = 0.1
#: tile-statistics column of the share covered by nuclei (any size, any shade)
NUCLEAR_COLUMN = ("nuclear",)


def no_tumour_cells_share(evidence: np.ndarray, tile_stats: np.ndarray, columns: list[str] | tuple[str, ...],
                          coords: np.ndarray, tile_size_level0: float, rule: TumourCellGate,
                          lymphoid: np.ndarray | None = None) -> float | None:
    """The share of the (positive) evidence on tiles that hold too few nuclei of any size or
    shade to be tumour, nor does a tile within ``rule.neighbourhood`` of them (nuclei cover
    < :data:`CELLULAR_NUCLEAR_AREA` of each); ``None`` when the statistics cannot say (no such
    column, or no nucleus measured anywhere on the slide: the measure, not the tissue, saw nothing).

    ``lymphoid`` (per tile, optional): the tiles the lymphoid veto takes. Their evidence counts as
    on tissue without tumour cells, and their nuclei make no neighbour cellular: a lymph node is
    full of nuclei but holds no tumour nest the measure could miss, and the veto takes its
    evidence whatever the gate does (hunt 20: on a slide of stroma and a lymph node without tumour,
    93 % of the evidence lay off tumour nuclei, split between fat and the node; the gate was set
    aside and the evidence on the fat grew a bed of 12 tiles, status ok)."""
    nuclear = _area(tile_stats, columns, NUCLEAR_COLUMN)
    if nuclear is None or len(nuclear) != len(coords) or not (nuclear > 0).any():
        return None
    lymphoid = np.zeros(len(coords), bool) if lymphoid is None else np.asarray(lymphoid, bool)
    near = _near((nuclear >= CELLULAR_NUCLEAR_AREA) & ~lymphoid, coords, tile_size_level0, rule)
    positive = np.clip(evidence, 0, None)
    total = float(positive.sum())
    return float(positive[~near | lymphoid].sum()) / total if total > 0 else None


def apply_cell_gate(evidence: np.ndarray, tile_stats: np.ndarray | None, columns: list[str] | tuple[str, ...] | None,
                    coords: np.ndarray, tile_size_level0: float, rule: TumourCellGate,
                    lymphoid: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The evidence with tiles that show no tumour cells nearby set to 0, and what the gate did
    (for the bed's provenance: ``off``, ``N tiles``, ``set aside ...`` or ``no tile statistics``);
    ``lymphoid``: the tiles the lymphoid veto takes (:func:`no_tumour_cells_share`)."""
    evidence = np.asarray(evidence, np.float32)
    if not rule.enabled:
        return evidence, "off"
    seen = tumour_cells_near(tile_stats, columns, coords, tile_size_level0, rule) if len(evidence) else None
    if seen is None:
        if len(evidence):
            log.warning("tumour-cell gate not applied: the feature file has no tile statistics "
                        "(embed the slide again with this WeakSTIL)")
        return evidence, "no tile statistics"
    total = float(np.clip(evidence, 0, None).sum())
    removed = float(np.clip(evidence[~seen], 0, None).sum()) / total if total > 0 else 0.0
    none = ""
    if removed > rule.max_removed_share:
        no_cells = no_tumour_cells_share(evidence, tile_stats, columns, coords, tile_size_level0, rule, lymphoid)
        if no_cells is None or no_cells <= rule.max_removed_share:
            return evidence, (f"set aside (it would remove {100 * removed:.0f}% of the evidence: "
                              "tumour nuclei not seen by the stain measure)")
        # nuclei of any size or shade too few for a nest where the evidence lies: no tumour to miss
        none = (f" ({NO_TUMOUR_CELLS}: {100 * no_cells:.0f}% of the evidence lies on tissue too poor in nuclei for a "
                f"tumour nest{' or on lymphoid tissue' if lymphoid is not None and lymphoid.any() else ''})")
    return (np.where(seen, evidence, np.float32(0.0)).astype(np.float32),
            f"{int((~seen & (evidence > 0)).sum())} tiles{none}")


#: Said in a bed's ``seed_vetoes`` when the gate stands although it takes most of the evidence.
NO_TUMOUR_CELLS = "no tumour cells"


def gate_applied(said: str) -> bool:
    """Whether :func:`apply_cell_gate` applied the gate, from what it said: a count of tiles
    ("12 tiles"), not "set aside (...)", "no tile statistics" or "" (off)."""
    return said.split(" ")[0].isdigit()


#: Share of a tile covered by tumour nuclei (:func:`tumour_nuclei_area`) that shows tumour cells in it (a few tumour
#: nuclei: the lymphoid veto's ``restore_tumour_nuclei_area``). Every slide with invasive tumour of our
#: four looks, dark-nucleus tumours and 40x / odd-mpp scans included, has a seed tile at >= 0.064
#: (56 slides, a default-look and a hard-look detector); slides without tumour 0-0.04.
SEED_TUMOUR_NUCLEI_AREA = 0.03
#: A tile with dark nuclei (other than hyperchromatic tumour nuclei: :func:`lymphocyte_dark_area`) over
#: this share of it is lymphoid (the lymphoid veto's ``min_dark_area``):
#: the large pale nuclei in it are germinal-centre cells (centroblasts) among lymphocytes, not
#: tumour cells (hunt 20), and join nothing to the tumour.
LYMPHOID_DARK_AREA = 0.4


def seeds_without_tumour_cells(evidence: np.ndarray, tile_stats: np.ndarray | None,
                               columns: list[str] | tuple[str, ...] | None, seed_threshold: float,
                               applied: bool, coords: np.ndarray | None = None,
                               tile_size_level0: float | None = None) -> str:
    """Why the bed's seeds show no tumour cells ("" when they do, or when it cannot be told).

    The evidence is standardised over the slide's own tiles, so on a slide without invasive tumour
    its most tumour-like stroma still passes the seed threshold; the gate removes the seeds with no
    pale tumour-sized nucleus near them, but a few tiles beside a stray pale nucleus (0.7 % of a
    tile on an alt-look slide of stroma and fat) kept theirs and grew a bed of 34 tiles, scored as
    an ordinary slide. A bed is the region of invasive tumour: when not one seed tile (``evidence``
    after the gate, before the lymphoid and ink vetoes) has tumour nuclei over
    :data:`SEED_TUMOUR_NUCLEI_AREA` of it, there is no tumour to draw a bed around. Only where the
    gate was ``applied`` (:func:`gate_applied`): set aside, the measure does not see this slide's
    tumour nuclei; off or without statistics, it cannot say.

    A lymphoid seed tile (dark nuclei over :data:`LYMPHOID_DARK_AREA` of it) does not count: the
    large pale nuclei of a lymph node's germinal centre are centroblasts, not tumour cells, and one
    such tile (6.6 % pale nuclei, 42 % dark) seeded a bed of 3-7 tiles on a slide of stroma and a
    lymph node without tumour (hunt 20; on the 330 test slides of the tumour-bed benchmark every
    slide keeps a non-lymphoid seed tile at >= 4.6 %).

    Lymphoid seed tiles *at* tumour cells do show the tumour (given the tiles' ``coords`` and
    ``tile_size_level0``): a sheet of lymphoid tiles holding seeds (8-connected on the tile grid)
    that touches a tile with tumour cells (tumour-sized nuclei over :data:`SEED_TUMOUR_NUCLEI_AREA`,
    not lymphoid) is the infiltrate of a TIL-rich bed, whose tumour nests lie among and beside it,
    the lymphoid veto's own reading (a lymphoid group touching tumour keeps its evidence). An outside
    tester's slide of 66.8 % sTIL (hunt 40i, og40i_024) fell back to the whole tissue with "no tumour
    cells in the bed's 36 seed tiles, 33 of them lymphoid" while a tile with tumour cells lay against
    the seeds' sheet inside the true bed (hunt 42d). A lymph node or an aggregate away from any tumour
    cell (hunt 20's) still has none: its seeds are still said to show no tumour cells."""

    if tile_stats is None or columns is None or not applied:
        return ""
    pale = tumour_nuclei_area(tile_stats, columns)
    dark = lymphocyte_dark_area(tile_stats, columns)
    seeds = np.asarray(evidence) >= seed_threshold
    if pale is None or len(pale) != len(seeds) or not seeds.any():
        return ""  # no seed at all: the bed is empty and the plausibility check says so
    lymphoid = np.zeros(len(seeds), bool) if dark is None else dark >= LYMPHOID_DARK_AREA
    most = float(pale[seeds & ~lymphoid].max()) if (seeds & ~lymphoid).any() else 0.0
    if most >= SEED_TUMOUR_NUCLEI_AREA:
        return ""
    if coords is not None and tile_size_level0 is not None and len(coords) == len(seeds) and \
            _lymphoid_seeds_at_tumour(seeds, lymphoid, (pale >= SEED_TUMOUR_NUCLEI_AREA) & ~lymphoid, coords,
                                      tile_size_level0).any():
        return ""
    where = f", {int((seeds & lymphoid).sum())} of them lymphoid" if (seeds & lymphoid).any() else ""
    return (f"no tumour cells in the bed's {int(seeds.sum())} seed tiles{where} (tumour-sized nuclei cover at "
            f"most {100 * most:.1f}% of one outside lymphoid tissue, < {100 * SEED_TUMOUR_NUCLEI_AREA:g}%): "
            "no invasive tumour on this slide?")


def _lymphoid_seeds_at_tumour(seeds: np.ndarray, lymphoid: np.ndarray, cells: np.ndarray, coords: np.ndarray,
                              tile_size_level0: float) -> np.ndarray:
    """Per tile, a lymphoid seed whose group of lymphoid tiles (8-connected on the tile grid) touches a
    tile of ``cells`` (tumour cells, not lymphoid): the infiltrate of a TIL-rich bed at its tumour."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import padded_grids

    if not (seeds & lymphoid).any() or not cells.any():
        return np.zeros(len(seeds), bool)
    rows, cols, (grid_l, grid_c) = padded_grids(coords, tile_size_level0, lymphoid, cells)
    eight = np.ones((3, 3), bool)
    labels, _ = ndi.label(grid_l, eight)
    touching = np.unique(labels[ndi.binary_dilation(grid_c, eight) & grid_l])
    mine = labels[rows, cols]
    return seeds & lymphoid & np.isin(mine, touching[touching > 0])


#: Tiles of tumour cells joined to the bed's own tumour that lie outside it, as a share of the bed's
#: tiles, from which the bed is said to be incomplete (hunt 20, see :func:`tumour_cells_left_out`).
LEFT_OUT_SHARE = 1 / 3


def tumour_cells_left_out(evidence: np.ndarray, tile_stats: np.ndarray | None,
                          columns: list[str] | tuple[str, ...] | None, coords: np.ndarray, tile_size_level0: float,
                          seed_threshold: float, bed: np.ndarray) -> str:
    """Why the bed (``bed``: per tile) may be incomplete ("" when it holds its tumour, or cannot tell).

    The bed is the region of *all* the invasive tumour, but the classifier's evidence is standardised
    over the slide's own tiles: where tumour fills most of the tissue the slide's mean is tumour, and
    only its most tumour-like part passes the seed threshold (a 1.5 mm slide whose true bed is 97 % of
    the tissue: 38 seeds among 122 tiles with tumour cells, a bed of 40 % of the tissue, Dice 0.58,
    with a hard-look detector of 10 slides; standardised like an ordinary slide it has 125 seeds).
    Tumour joined to the bed's seeds through tiles that show tumour cells (tumour-sized nuclei
    over :data:`SEED_TUMOUR_NUCLEI_AREA` of the tile, not lymphoid) is the same tumour; when such
    tiles lying more than one tile outside the bed number :data:`LEFT_OUT_SHARE` of the bed's tiles
    or more, the bed is said to be incomplete. A focus that touches no seed through tumour cells (a
    duct, a lobule, DCIS) is not counted: on the 330 slides of ``benchmarks/tumorbed_quality.py``
    (nine detector/look pairs) the share is at most 0.22."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import grid_cells

    evidence, bed = np.asarray(evidence, np.float32), np.asarray(bed, bool)
    if tile_stats is None or columns is None or not len(evidence) or not bed.any():
        return ""
    pale = tumour_nuclei_area(tile_stats, columns)
    dark = lymphocyte_dark_area(tile_stats, columns)
    seeds = evidence >= seed_threshold
    if pale is None or dark is None or len(pale) != len(evidence) or not seeds.any():
        return ""
    cells = (pale >= SEED_TUMOUR_NUCLEI_AREA) & (dark < LYMPHOID_DARK_AREA)
    rows, cols, _ = grid_cells(coords, tile_size_level0)
    grid = np.zeros((rows.max() + 1, cols.max() + 1), bool)
    eight = np.ones((3, 3), bool)
    grid[rows, cols] = cells | seeds
    labels, _ = ndi.label(grid, eight)
    mine = labels[rows, cols]
    reached = np.unique(mine[seeds])
    joined = cells & ~seeds & np.isin(mine, reached[reached > 0])
    grid[:] = False
    grid[rows, cols] = bed
    near = ndi.binary_dilation(grid, eight)[rows, cols]
    n_out, n_bed = int((joined & ~near).sum()), int(bed.sum())
    if n_out < LEFT_OUT_SHARE * n_bed:
        return ""
    return (f"{n_out} tiles with tumour cells joined to the bed's tumour lie outside it (the bed has {n_bed} tiles; "
            f">= {LEFT_OUT_SHARE:.2g} of it): the bed may be incomplete")


def seed_tiles_with_tumour_cells(evidence: np.ndarray, tile_stats: np.ndarray | None,
                                 columns: list[str] | tuple[str, ...] | None, seed_threshold: float) -> np.ndarray | None:
    """Per tile, a seed (``evidence`` >= ``seed_threshold``) showing tumour cells: tumour-sized nuclei over
    :data:`SEED_TUMOUR_NUCLEI_AREA` of it, not lymphoid (dark nuclei under :data:`LYMPHOID_DARK_AREA`);
    ``None`` when the tile statistics cannot say."""
    if tile_stats is None or columns is None:
        return None
    pale = tumour_nuclei_area(tile_stats, columns)
    dark = lymphocyte_dark_area(tile_stats, columns)
    if pale is None or dark is None or len(pale) != len(evidence):
        return None
    return (np.asarray(evidence) >= seed_threshold) & (pale >= SEED_TUMOUR_NUCLEI_AREA) & (dark < LYMPHOID_DARK_AREA)


#: Seed tiles with tumour cells on a tissue piece the bed does not reach from which the bed is said to
#: leave out a focus of tumour (hunt 39b, :func:`tumour_on_other_pieces`): 4 tiles, 0.05 mm² at 112 µm.
OTHER_PIECE_TILES = 4


def tumour_on_other_pieces(evidence: np.ndarray, tile_stats: np.ndarray | None, columns: list[str] | tuple[str, ...] | None,
                           coords: np.ndarray, tile_size_level0: float, slide_mpp: float, tissue: np.ndarray,
                           mask_mpp: float, seed_threshold: float, bed: np.ndarray,
                           pieces: Callable[[], np.ndarray] | None = None) -> str:
    """Why the bed may leave out the tumour of another tissue piece ("" when it does not, or cannot tell).

    The detector keeps a focus of seeds only when it holds at least ``min_seed_share`` of the largest
    focus's seed area (look-alikes away from the tumour: DCIS, a germinal centre). On a slide of several
    core biopsies or sections, a core whose tumour is smaller than half the largest core's is such a
    focus: a slide of three 1 mm cores dropped all of a second core's tumour (scored alone: a bed of 65
    tiles, sTIL 24.1 %) and read 4.8 %, the first core's 5.5 %, with no flag (hunt 39b). Counted: seed
    tiles (``evidence`` >= ``seed_threshold``) showing tumour cells (tumour-sized nuclei over
    :data:`SEED_TUMOUR_NUCLEI_AREA`, not lymphoid) on tissue pieces (connected parts of ``tissue``, the
    tissue mask at ``mask_mpp``, parts less than :data:`weakstil.qc.pieces.JOIN_UM` apart joined; ``pieces``:
    giving their labels when the caller has them) that hold no bed tile; :data:`OTHER_PIECE_TILES` or more: incomplete.
    Since hunt 40e the detector judges the share per piece (:class:`weakstil.bed_geometry.PieceSeeds`), so a
    core's tumour focus with that many such tiles is in the bed; what is still said: tumour cells on a piece
    spread over foci too small for the bed (under ``min_seed_mm2``, or none with enough of them)."""
    from weakstil.qc.pieces import piece_labels

    evidence, bed = np.asarray(evidence, np.float32), np.asarray(bed, bool)
    if not len(evidence) or not bed.any():
        return ""
    cells = seed_tiles_with_tumour_cells(evidence, tile_stats, columns, seed_threshold)
    if cells is None or int(cells.sum()) < OTHER_PIECE_TILES:
        return ""
    # the pieces the score file reports: parts of a section cut by marker ink are one (hunt 39l)
    pieces = pieces() if pieces is not None else piece_labels(np.asarray(tissue, bool), mask_mpp)[0]
    if int(pieces.max()) < 2:
        return ""
    scale = float(slide_mpp) / float(mask_mpp)
    xy = np.asarray(coords, np.float64).reshape(-1, 2)
    # the piece under each tile's centre; a tile whose centre lies on glass (an edge tile): the piece most under it
    cy = np.clip(((xy[:, 1] + tile_size_level0 / 2) * scale).astype(np.int64), 0, pieces.shape[0] - 1)
    cx = np.clip(((xy[:, 0] + tile_size_level0 / 2) * scale).astype(np.int64), 0, pieces.shape[1] - 1)
    piece = pieces[cy, cx].astype(np.int64)
    for i in np.flatnonzero((piece == 0) & (cells | bed)):
        x, y = xy[i]
        block = pieces[int(y * scale):int(np.ceil((y + tile_size_level0) * scale)),
                       int(x * scale):int(np.ceil((x + tile_size_level0) * scale))]
        piece[i] = np.bincount(block[block > 0]).argmax() if (block > 0).any() else 0
    left = cells & (piece > 0) & ~np.isin(piece, np.unique(piece[bed]))
    if int(left.sum()) < OTHER_PIECE_TILES:
        return ""
    k = len(np.unique(piece[left]))
    return (f"{int(left.sum())} seed tiles with tumour cells on {k} tissue piece{'s' if k != 1 else ''} the bed does not "
            f"reach (another core or section?) are left out: their foci are too small or scattered for the bed")
