"""Geometry of the tumour bed, apart from any file or model: from a map of tumour evidence to
the bed (dlup-style pure functions on arrays, all sizes in µm).

The International TILs Working Group's tumour bed is the region of invasive tumour: the
tumour nests *and the stroma between and around them up to the invasive front*. So the bed
is built from where the tumour is, not from what the stroma looks like:

1. **seeds**: tumour evidence (a per-tile probability that the tile holds invasive tumour,
   interpolated to the mask grid) at or above ``seed_threshold``;
2. **bridging**: seeds within ``2 x bridge_um`` of each other are joined (a closing by a disc
   of radius ``bridge_um``: dilate, then erode back), which takes in the stroma between nests
   and bridges concave gaps;
3. **enclosure**: whatever the grown tumour region encloses is filled in;
4. **invasive-front margin**: the bed reaches ``margin_um`` beyond the outermost tumour;
5. the result is cut to the tissue; a component holding less than ``min_seed_mm2`` of seed
   area, or less than ``min_seed_share`` of the seed area of the slide's largest component, is
   dropped (a lone false tile, or a small lymphoid or ductal look-alike far from the tumour, is
   not a bed; with ``min_seed_share`` 0 every focus of enough size is kept). Given the slide's tissue
   pieces (:class:`PieceSeeds`: cores, sections), the share is judged on each piece: a piece's
   largest component is kept when it passes the slide's rule or holds enough seed tiles with tumour
   cells, and the piece's smaller ones against it (a second core's smaller tumour is its bed);
6. **contiguous infiltrate** (``infiltrate_um`` > 0, when the tiles' dark-nuclei area is known):
   dense lymphocytic infiltrate (tiles with dark nuclei over at least ``infiltrate_dark_area``)
   that touches the bed is taken in up to ``infiltrate_um`` beyond it, and what that encloses
   is filled. A TIL-rich tumour has its densest infiltrate at and around the nests, where the
   evidence of tumour cells is thinnest; an aggregate that does not touch the bed stays out.

Stroma dense with lymphocytes therefore enters the bed when tumour is near it or around it
and stays out when it is far from any tumour (a lymphoid aggregate), whatever its look:
nothing here treats non-tumour tissue as evidence against the bed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np


@dataclass(frozen=True)
class BedShape:
    """How tumour evidence becomes a bed (chosen by cross-validation; sizes in µm / mm²)."""

    seed_threshold: float = 0.5  #: tumour evidence that makes a seed
    smooth_um: float = 0.0  #: Gaussian sigma on the tile-evidence grid before thresholding
    bridge_um: float = 150.0  #: closing radius: seeds up to twice this apart are joined
    margin_um: float = 50.0  #: the invasive front: how far the bed reaches past the outermost tumour
    min_seed_mm2: float = 0.0  #: bed components with less seed area than this are dropped
    min_seed_share: float = 0.0  #: ... or with less than this share of the largest component's seed area
    infiltrate_um: float = 0.0  #: dense infiltrate touching the bed is taken in up to this far beyond it (0: off)
    infiltrate_dark_area: float = 0.3  #: a tile with dark nuclei over this share of it is dense infiltrate

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> BedShape:
        return cls(**{k: float(values[k]) for k in cls.__dataclass_fields__ if k in values})


def grid_stride(coords: np.ndarray, tile_size_level0: float) -> float:
    """The tile grid's stride in level-0 px.

    Positions are ``floor(k * stride)`` (:meth:`weakstil.tiling.TileGrid.coords`), and the stride is
    seldom a whole number of pixels (224.45 px at 0.499 µm/px, 226.72 at 0.494). The smallest step
    between positions, taken for it before, is the stride rounded down: grid cells counted with it
    drifted by one from the 157th column of a 0.494 µm/px slide on (17.6 mm), two tiles shared a
    cell, and the bed's mask from the tile grid was shifted by up to a tile at the far side. Now: the
    tile's side when the positions are its multiples (no overlap), else a least-squares fit of the
    positions to their tile indices."""
    values = [np.unique(np.asarray(coords, np.float64)[:, axis]) for axis in (0, 1)]
    values = [v for v in values if len(v) > 1]
    if not values:
        return float(tile_size_level0)
    steps = min(float(np.diff(v).min()) for v in values)
    u = np.concatenate(values)
    u = u[u > 0]

    def fits(stride: float) -> bool:
        return bool(np.array_equal(np.floor(np.round(u / stride) * stride + 1e-9), u))

    side = float(tile_size_level0)
    if side > 0 and fits(side):
        return side
    if fits(steps):  # a whole number of pixels (an overlap on a 0.5 µm/px scan)
        return steps
    stride = steps
    # the step is the stride rounded down (< 1 px off): tile indices from it hold for positions under
    # about steps / 2 strides; fit on those, then on all
    for limit in (0.5 * steps * steps, np.inf):
        near = u[u <= limit]
        if not len(near):
            continue
        k = np.round(near / stride)
        stride = float((k * (near + 0.5)).sum() / max(float((k * k).sum()), 1e-9))  # floor: 0.5 px short on average
    return stride if fits(stride) or abs(stride - steps) < 1.0 else steps


def grid_cells(coords: np.ndarray, tile_size_level0: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Each tile's (row, column) on the tile grid, and the grid stride in level-0 px."""
    stride = grid_stride(coords, tile_size_level0)
    coords = np.asarray(coords, np.float64)
    return (np.round(coords[:, 1] / stride).astype(int), np.round(coords[:, 0] / stride).astype(int), stride)


def padded_grids(coords: np.ndarray, tile_size_level0: float, *per_tile: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Per-tile boolean arrays laid on the tile grid with one empty cell all round (so a dilation or
    an 8-neighbour label never wraps): the tiles' (row, column) in those grids, and one grid per array."""
    rows, cols, _ = grid_cells(coords, tile_size_level0)
    rows, cols = rows + 1, cols + 1
    grids = []
    for values in per_tile:
        grid = np.zeros((rows.max() + 2, cols.max() + 2), bool)
        grid[rows, cols] = values
        grids.append(grid)
    return rows, cols, grids


def tiles_to_mask(values: np.ndarray, coords: np.ndarray, tile_size_level0: float, slide_mpp: float,
                  mask_shape: tuple[int, int], mask_mpp: float, smooth_um: float = 0.0) -> np.ndarray:
    """Per-tile values as a smooth map on a mask grid (``mask_mpp`` µm/px).

    Bilinear between tile centres, normalised by the tiles present, so a value is never pulled
    towards zero by a missing (non-tissue) neighbour; mask pixels more than a tile away from any
    tile get 0. ``smooth_um`` first blurs the tile grid (Gaussian, normalised the same way)."""
    from scipy import ndimage as ndi

    h, w = mask_shape
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return np.zeros((h, w), np.float32)
    rows, cols, stride = grid_cells(coords, tile_size_level0)
    # one empty cell all round, so every mask pixel interpolates between cells of the array
    grid_v = np.zeros((rows.max() + 3, cols.max() + 3), np.float64)
    grid_w = np.zeros_like(grid_v)
    grid_v[rows + 1, cols + 1] = values
    grid_w[rows + 1, cols + 1] = 1.0
    sigma = smooth_um / (stride * slide_mpp)
    if sigma > 0:
        grid_v = ndi.gaussian_filter(grid_v, sigma, mode="constant")
        grid_w_s = ndi.gaussian_filter(grid_w, sigma, mode="constant")
        grid_v = np.where(grid_w > 0, grid_v / np.maximum(grid_w_s, 1e-9), 0.0)
    # mask pixel centres in grid units (tile i's centre sits at i * stride + tile / 2)
    f = mask_mpp / slide_mpp  # level-0 px per mask px
    yy = ((np.arange(h) + 0.5) * f - tile_size_level0 / 2) / stride + 1
    xx = ((np.arange(w) + 0.5) * f - tile_size_level0 / 2) / stride + 1
    gy, gx = np.meshgrid(yy, xx, indexing="ij")
    num = ndi.map_coordinates(grid_v * grid_w, [gy, gx], order=1, mode="constant", cval=0.0)
    den = ndi.map_coordinates(grid_w, [gy, gx], order=1, mode="constant", cval=0.0)
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)


@dataclass(frozen=True)
class PieceSeeds:
    """The seed-share rule judged per tissue piece (hunt 40e). The share (``min_seed_share``) drops a
    focus much smaller than the slide's largest as a look-alike (DCIS, a duct, a germinal centre); on a
    slide of several core biopsies or sections it dropped all of a second core's genuine tumour (three
    1 mm cores: the second core's bed of 65 tiles, sTIL 24.1 % alone, left out; the slide read the
    first core's 5.5 %). Per piece, its largest component is kept when the slide's rule keeps it or
    at least ``min_cells`` seed tiles showing tumour cells lie in it (the tumour-cell evidence of
    :func:`weakstil.tumorbed.cellgate.seed_tiles_with_tumour_cells`); the piece's other components
    are judged by the share against it. On a slide of one piece nothing changes."""

    #: the tissue pieces on the mask grid (labels 1..n, 0 off tissue), asked for only when the share drops a focus
    pieces: Callable[[], np.ndarray]
    #: (k, 2) mask-grid (row, column) of a seed pixel in each seed tile showing tumour cells
    cell_points: np.ndarray
    min_cells: int


def grow_bed(seeds: np.ndarray, tissue: np.ndarray, mpp: float, shape: BedShape,
             per_piece: PieceSeeds | None = None) -> np.ndarray:
    """The bed around tumour ``seeds`` (boolean mask at ``mpp`` µm/px), cut to ``tissue``.

    Closing by ``bridge_um`` with the holes of the grown region filled before it shrinks back,
    then ``margin_um`` of invasive front; components with too little seed area are dropped (the share
    judged per tissue piece given ``per_piece``)."""
    from scipy import ndimage as ndi

    seeds = np.asarray(seeds, bool)
    tissue = np.asarray(tissue, bool)
    if not seeds.any():
        return np.zeros(seeds.shape, bool)
    bridge = max(0.0, shape.bridge_um) / mpp
    margin = shape.margin_um / mpp
    grown = ndi.distance_transform_edt(~seeds) <= bridge if bridge > 0 else seeds.copy()
    grown = ndi.binary_fill_holes(grown)
    shrink = bridge - margin  # closing = grow by bridge, shrink by bridge; the margin is left over
    if shrink > 0:
        bed = ndi.distance_transform_edt(grown) > shrink
    elif shrink < 0:
        bed = ndi.distance_transform_edt(~grown) <= -shrink
    else:
        bed = grown
    bed |= seeds
    bed &= tissue
    if (shape.min_seed_mm2 > 0 or shape.min_seed_share > 0) and bed.any():
        labels, n = ndi.label(bed)
        seed_mm2 = np.bincount(labels[seeds & bed], minlength=n + 1) * (mpp * mpp) / 1e6
        keep = _kept_labels(seed_mm2, shape.min_seed_mm2, shape.min_seed_share)
        if per_piece is not None and shape.min_seed_share > 0 and n > 1:
            keep = _kept_per_piece(labels, n, seed_mm2, keep, bed, per_piece, shape)
        bed = keep[labels]
    return bed


def _kept_per_piece(labels: np.ndarray, n: int, seed_mm2: np.ndarray, keep: np.ndarray, bed: np.ndarray,
                    per_piece: PieceSeeds, shape: BedShape) -> np.ndarray:
    """``keep`` (per label 0..n) with the share judged per tissue piece (:class:`PieceSeeds`)."""
    size = seed_mm2.copy()
    size[0] = 0.0
    size[size < shape.min_seed_mm2] = 0.0
    if not (size[~keep] > 0).any():
        return keep  # the share dropped nothing: the pieces are not needed
    pieces = per_piece.pieces()
    piece_of = np.zeros(n + 1, np.int64)
    piece_of[labels[bed]] = pieces[bed]  # a component lies on one piece (it is cut to the tissue)
    pts = np.asarray(per_piece.cell_points, np.int64).reshape(-1, 2)
    cells = np.bincount(labels[pts[:, 0], pts[:, 1]], minlength=n + 1)
    keep = keep.copy()
    for p in np.unique(piece_of[size > 0]).tolist():
        on = (piece_of == p) & (size > 0)
        if p == 0 or keep[on].all():
            continue
        lead = int(np.flatnonzero(on)[size[on].argmax()])
        if keep[lead] or cells[lead] >= per_piece.min_cells:
            keep |= on & (size >= shape.min_seed_share * size[lead])
    return keep


def _kept_labels(seed_mm2: np.ndarray, min_mm2: float, min_share: float) -> np.ndarray:
    """Per label (0..n), whether its component's seed area (``seed_mm2[label]``) passes both rules."""
    seed_mm2 = seed_mm2.copy()
    seed_mm2[0] = 0.0
    keep = (seed_mm2 >= min_mm2) & (seed_mm2 >= min_share * seed_mm2.max()) & (seed_mm2 > 0)
    keep[0] = False
    return keep


def _keep_components(labels: np.ndarray, seed_mm2: np.ndarray, min_mm2: float, min_share: float) -> np.ndarray:
    """The components (``labels`` 1..n) whose seed area (``seed_mm2[label]``) passes both rules."""
    return _kept_labels(seed_mm2, min_mm2, min_share)[labels]


def take_in_infiltrate(bed: np.ndarray, infiltrate_map: np.ndarray, tissue: np.ndarray, mpp: float,
                       shape: BedShape) -> np.ndarray:
    """The bed with the dense infiltrate that touches it (step 6 of the module), on one mask grid.

    ``infiltrate_map``: each mask pixel's dark-nuclei area share (per-tile values through
    :func:`tiles_to_mask`). Only components of dense infiltrate that touch the bed (8-neighbours)
    are taken, and of them only what lies within ``infiltrate_um`` of the bed."""
    from scipy import ndimage as ndi

    bed = np.asarray(bed, bool)
    tissue = np.asarray(tissue, bool)
    if shape.infiltrate_um <= 0 or not bed.any():
        return bed
    dense = (np.asarray(infiltrate_map) >= shape.infiltrate_dark_area) & tissue & ~bed
    if not dense.any():
        return bed
    eight = np.ones((3, 3), bool)
    labels, _ = ndi.label(dense, eight)
    touching = np.unique(labels[ndi.binary_dilation(bed, eight) & dense])
    near = ndi.distance_transform_edt(~bed) * mpp <= shape.infiltrate_um
    taken = np.isin(labels, touching[touching > 0]) & near
    if not taken.any():
        return bed
    return ndi.binary_fill_holes(bed | taken) & tissue


def bed_from_evidence(evidence: np.ndarray, coords: np.ndarray, tile_size_level0: float, slide_mpp: float,
                      tissue: np.ndarray, mask_mpp: float, shape: BedShape,
                      infiltrate: np.ndarray | None = None, pieces: Callable[[], np.ndarray] | None = None,
                      cells: np.ndarray | None = None, min_cells: int = 0,
                      extra_seeds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The bed mask (on the tissue mask's grid) and the seed mask from per-tile tumour evidence.

    ``infiltrate``: each tile's dark-nuclei area share, for ``shape.infiltrate_um`` (without it
    that step is skipped). ``pieces`` (the tissue pieces' labels on the mask grid, asked for when
    needed) and ``cells`` (per tile: a seed showing tumour cells): the seed share judged per piece
    (:class:`PieceSeeds`, ``min_cells`` such tiles keep a piece's largest focus). ``extra_seeds``: mask-grid
    pixels that seed whatever the evidence (mucin pools with floating clusters: weakstil.tumorbed.mucin)."""
    tissue = np.asarray(tissue, bool)
    up = tiles_to_mask(evidence, coords, tile_size_level0, slide_mpp, tissue.shape, mask_mpp, shape.smooth_um)
    seeds = (up >= shape.seed_threshold) & tissue
    if extra_seeds is not None:
        seeds |= np.asarray(extra_seeds, bool) & tissue
    per_piece = None
    if pieces is not None and cells is not None:
        per_piece = PieceSeeds(pieces, _seed_points(np.asarray(cells, bool), coords, tile_size_level0,
                                                    slide_mpp / mask_mpp, seeds), int(min_cells))
    bed = grow_bed(seeds, tissue, mask_mpp, shape, per_piece)
    if shape.infiltrate_um > 0 and infiltrate is not None:
        dark = tiles_to_mask(infiltrate, coords, tile_size_level0, slide_mpp, tissue.shape, mask_mpp)
        bed = take_in_infiltrate(bed, dark, tissue, mask_mpp, shape)
    return bed, seeds


def _seed_points(cells: np.ndarray, coords: np.ndarray, tile_size_level0: float, f: float,
                 seeds: np.ndarray) -> np.ndarray:
    """(k, 2) mask-grid (row, column) of a seed pixel in each tile of ``cells``: its centre (a seed tile's
    own evidence there), or for a tile whose centre is off the tissue (at its edge) the first seed pixel under
    it; a tile with none is left out. ``f``: mask px per level-0 px."""
    xy = np.asarray(coords, np.float64).reshape(-1, 2)[cells]
    h, w = seeds.shape
    cy = np.clip(((xy[:, 1] + tile_size_level0 / 2) * f).astype(np.int64), 0, h - 1)
    cx = np.clip(((xy[:, 0] + tile_size_level0 / 2) * f).astype(np.int64), 0, w - 1)
    pts = np.stack([cy, cx], axis=1)
    ok = seeds[cy, cx]
    for i in np.flatnonzero(~ok):
        x, y = xy[i]
        y0, x0 = int(y * f), int(x * f)
        block = seeds[y0:int(np.ceil((y + tile_size_level0) * f)), x0:int(np.ceil((x + tile_size_level0) * f))]
        if block.any():
            dy, dx = np.argwhere(block)[0]
            pts[i], ok[i] = (y0 + dy, x0 + dx), True
    return pts[ok]


def coarsen(mask: np.ndarray, factor: int) -> np.ndarray:
    """A boolean mask ``factor`` times coarser: a coarse pixel is set when most of its block is."""
    mask = np.asarray(mask, bool)
    if factor <= 1:
        return mask
    padded = np.zeros(((mask.shape[0] + factor - 1) // factor * factor,
                       (mask.shape[1] + factor - 1) // factor * factor), np.float32)
    padded[:mask.shape[0], :mask.shape[1]] = mask
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return blocks.mean(axis=(1, 3)) >= 0.5


# --- is a detected bed believable? ------------------------------------------------------------
#: What a bed's tile count is weighed against (``Plausibility.evidence``).
BEFORE_LYMPHOID_VETO = "before_lymphoid_veto"
VETOED = "vetoed"


@dataclass(frozen=True)
class Plausibility:
    """When a detected bed is too small to trust next to the slide's tumour evidence."""

    min_bed_tiles: int = 2  #: fewer tiles in the bed than this: nothing was found
    min_evidence_ratio: float = 0.0  #: bed tiles / Σ tumour evidence over tiles below this: too small
    #: Which evidence the ratio weighs the bed against: ``before_lymphoid_veto`` (the classifier's
    #: tumour evidence, ink vetoed): a veto that strips a TIL-rich bed's evidence must not also shrink
    #: what the bed is checked against (a 52 % slide's bed of 3 tiles passed against the 3 tiles of
    #: evidence the veto had left); ``vetoed``: detectors written before (their ratio was set that way).
    evidence: str = BEFORE_LYMPHOID_VETO

    def to_dict(self) -> dict[str, float | str]:
        return {k: (v if isinstance(v, str) else float(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> Plausibility:
        return cls(int(values.get("min_bed_tiles", 2)), float(values.get("min_evidence_ratio", 0.0)),
                   str(values.get("evidence", VETOED)))


@dataclass(frozen=True)
class BedCheck:
    """The verdict on one detected bed: ``ok``, or why it cannot be used."""

    ok: bool
    bed_tiles: int
    evidence_tiles: float  #: Σ tumour evidence over the slide's tiles (expected tumour-tile count)
    reason: str = ""


def check_bed(bed_flags: np.ndarray, evidence: np.ndarray, rule: Plausibility) -> BedCheck:
    """``ok`` unless the bed is (nearly) empty, or implausibly small next to the tumour
    evidence: fewer bed tiles than ``min_evidence_ratio`` x the evidence mass."""
    n_bed = int(np.count_nonzero(bed_flags))
    mass = float(np.sum(np.clip(np.asarray(evidence, np.float64), 0.0, 1.0)))
    if n_bed < rule.min_bed_tiles:
        why = "empty" if n_bed == 0 else f"{n_bed} tile{'s' if n_bed != 1 else ''}"
        return BedCheck(False, n_bed, mass, f"detected tumour bed is {why} (tumour evidence of {mass:.1f} tiles)")
    if rule.min_evidence_ratio > 0 and n_bed < rule.min_evidence_ratio * mass:
        return BedCheck(False, n_bed, mass, f"detected tumour bed has {n_bed} tiles, implausibly few next to the "
                                            f"tumour evidence of {mass:.1f} tiles (rule: >= "
                                            f"{rule.min_evidence_ratio:g} x evidence)")
    return BedCheck(True, n_bed, mass)
