"""WeakSTIL result files as napari layers placed in slide micrometres.

Geometry first (pure numpy, tested without a viewer): tiles lie on a regular grid, so a
per-tile value becomes a small image with one pixel per grid cell, scaled and translated
so that each pixel covers its tile on the slide. One image pixel per tile keeps a 100,000-tile
heatmap a 400 KB array that napari draws as a texture, and a click maps back to a tile by
rounding. Overlapping tiles are larger than their grid cells: each cell shows its own tile (the
nearest centre) and border tiles reach past the outer cells, so such a grid is drawn with a few
pixels per cell and a ring of pixels around it, out to the tiles' outer edges.

Placement convention (napari's): pixel ``j`` of an image with scale ``s`` and translate ``t``
is centred at world ``t + j·s``. A slide shown with scale ``mpp`` puts level-0 pixel ``x`` at
``x·mpp``, so a tile with top-left ``x`` and side ``S`` (level-0 px) covers world
``[(x - ½)·mpp, (x + S - ½)·mpp]``; its heatmap pixel is centred at ``(x + S/2 - ½)·mpp``.
A mask pixel ``k`` at ``m`` µm/px covers level-0 ``[k·m/mpp, (k+1)·m/mpp)``, so the mask is
shown with scale ``m`` and translate ``(m - mpp)/2``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from napari_weakstil.slide_finding import find_slide, slide_candidates  # noqa: F401 (slide_candidates: re-exported)

log = logging.getLogger(__name__)

#: Colour maps: inferno for sTIL scores (as in the PNG heatmaps), viridis for attention.
SCORE_COLORMAP = "inferno"
ATTENTION_COLORMAP = "viridis"
TUMORBED_COLOR = "#00e5ff"
#: Names of the layers made from a result file (the widget finds them by these).
HEATMAP = "sTIL score"
ATTENTION = "attention"
#: Stroma-aggregator models: each tile's stroma weight (0-1); the slide sTIL% is the
#: stroma-weighted mean of the heatmap over the tumour bed.
STROMA_WEIGHT = "stroma weight"
STROMA_COLORMAP = "viridis"
TUMORBED = "tumour bed"
TISSUE = "tissue"
TISSUE_FRACTION = "tissue fraction"


class ResultKind(str, Enum):
    """What a WeakSTIL HDF5 file holds."""

    SCORES = "scores"  #: `weakstil score` output: tile scores, tumour bed, masks
    TILE_SCORES = "tile scores"  #: `weakstil train` cv/tiles or `weakstil evaluate` tiles
    FEATURES = "features"  #: `weakstil embed` cache
    TILES = "tiles"  #: `weakstil tile` output
    TUMORBED = "tumour bed"  #: `weakstil tumorbed apply` output


#: The per-slide file kinds (weakstil.files) and what the viewer calls them.
FILE_KINDS = {"slide_scores": ResultKind.SCORES, "tile_scores": ResultKind.TILE_SCORES,
              "features": ResultKind.FEATURES, "tiles": ResultKind.TILES, "tumorbed": ResultKind.TUMORBED}


# -- geometry ------------------------------------------------------------------------------
#: Most raster pixels per grid step: overlapping tiles reach past the outer grid cells by a
#: fraction of a step, drawn with finer pixels (a 50 % overlap needs 2).
MAX_SUBDIVISION = 16
#: Most pixels of a subdivided raster (32 MB as float32) and of its side (GPU texture limits).
MAX_RASTER_PIXELS = 8_000_000
MAX_RASTER_SIDE = 8192


@dataclass(frozen=True)
class TileRaster:
    """Where each tile sits on a regular grid: one raster pixel per grid cell, or ``sub`` x ``sub``
    pixels per cell plus a ring of ``pad`` pixels when tiles overlap, so that border tiles are
    drawn to their outer edges (an overlapping grid's cells are smaller than its tiles)."""

    origin: tuple[float, float]  #: level-0 (x, y) of the grid's first tile's top-left
    stride: float  #: level-0 px between neighbouring tiles
    tile_size: float  #: level-0 px of a tile's side
    rows: np.ndarray  #: grid row of every tile
    cols: np.ndarray  #: grid column of every tile
    shape: tuple[int, int]  #: of the painted image
    centres: np.ndarray | None = None  #: level-0 (x, y) centre of every tile
    sub: int = 1  #: raster pixels per grid step
    pad: int = 0  #: raster pixels past the outer grid cells (how far border tiles reach)

    @classmethod
    def from_coords(cls, coords: np.ndarray, tile_size: float, stride: float | None = None) -> TileRaster:
        coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
        stride = float(stride or infer_stride(coords, tile_size))
        if len(coords) == 0:
            return cls((0.0, 0.0), stride, float(tile_size), np.zeros(0, int), np.zeros(0, int), (0, 0))
        x0, y0 = coords[:, 0].min(), coords[:, 1].min()
        # tile corners are rounded to whole level-0 pixels while the stride may be fractional
        cols = np.rint((coords[:, 0] - x0) / stride).astype(np.int64)
        rows = np.rint((coords[:, 1] - y0) / stride).astype(np.int64)
        grid = (int(rows.max()) + 1, int(cols.max()) + 1)
        sub, pad = _subdivision(stride, float(tile_size), grid)
        # a tile covers level-0 [x - ½, x + S - ½] (pixel x is centred at x)
        return cls((float(x0), float(y0)), stride, float(tile_size), rows, cols,
                   (grid[0] * sub + 2 * pad, grid[1] * sub + 2 * pad), coords + (tile_size / 2.0 - 0.5), sub, pad)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return ((self.shape[0] - 2 * self.pad) // self.sub, (self.shape[1] - 2 * self.pad) // self.sub)

    def paint(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """A float32 image with each tile's value where it is the nearest tile and ``fill`` elsewhere."""
        index = self.index_image()
        img = np.full(self.shape, fill, np.float32)
        where = index >= 0
        img[where] = np.asarray(values, np.float32)[index[where]]
        return img

    def index_image(self) -> np.ndarray:
        """int32 image of tile indices (-1 where there is no tile): a click's lookup table (read-only)."""
        return self._index

    @cached_property
    def _index(self) -> np.ndarray:
        img = np.full(self.shape, -1, np.int32)
        grid = self._grid_index
        if grid.size:
            gh, gw = grid.shape
            p, n = self.pad, self.sub
            img[p:p + gh * n, p:p + gw * n] = np.repeat(np.repeat(grid, n, axis=0), n, axis=1)
        if self.pad:
            # where no grid cell has a tile: the outer margins of border tiles (and of tiles around holes)
            yy, xx = np.nonzero(img < 0)
            first = self._first_pixel_centre()
            q = self.stride / self.sub
            img[yy, xx] = self._nearest_containing(first[0] + xx * q, first[1] + yy * q)
        img.flags.writeable = False
        return img

    @cached_property
    def _grid_index(self) -> np.ndarray:
        img = np.full(self.grid_shape, -1, np.int32)
        img[self.rows, self.cols] = np.arange(len(self.rows), dtype=np.int32)
        return img

    def _first_pixel_centre(self) -> tuple[float, float]:
        """Level-0 (x, y) of raster pixel (0, 0)'s centre."""
        q = self.stride / self.sub
        shift = self.tile_size / 2.0 - 0.5 - self.stride / 2.0 - self.pad * q + q / 2.0
        return (self.origin[0] + shift, self.origin[1] + shift)

    def _nearest_containing(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """For level-0 points, the tile containing each whose centre is nearest (-1 where none does)."""
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        best = np.full(x.shape, -1, np.int32)
        if self.centres is None or not len(self.centres):
            return best
        grid = self._grid_index
        c0 = self.origin[0] + self.tile_size / 2.0 - 0.5
        r0 = self.origin[1] + self.tile_size / 2.0 - 0.5
        gc = np.floor((x - c0) / self.stride + 0.5).astype(np.int64)
        gr = np.floor((y - r0) / self.stride + 0.5).astype(np.int64)
        # a tile reaches half a tile (and half a pixel of corner rounding) past its centre
        reach = int(np.floor((self.stride + self.tile_size + 1.0) / (2.0 * self.stride)))
        half = self.tile_size / 2.0
        best_d = np.full(x.shape, np.inf)
        for dr in range(-reach, reach + 1):
            for dc in range(-reach, reach + 1):
                r, c = gr + dr, gc + dc
                ok = (r >= 0) & (r < grid.shape[0]) & (c >= 0) & (c < grid.shape[1])
                cand = np.full(x.shape, -1, np.int32)
                cand[ok] = grid[r[ok], c[ok]]
                cx, cy = self.centres[cand, 0], self.centres[cand, 1]  # cand -1: ignored below
                d = (x - cx) ** 2 + (y - cy) ** 2
                better = (cand >= 0) & (np.abs(x - cx) <= half) & (np.abs(y - cy) <= half) & (d < best_d)
                best[better], best_d[better] = cand[better], d[better]
        return best

    def placement(self, slide_mpp: float) -> dict[str, tuple[float, float]]:
        """napari ``scale`` and ``translate`` (y, x) in µm for :meth:`paint` images."""
        s = self.stride / self.sub * slide_mpp
        fx, fy = self._first_pixel_centre()
        return {"scale": (s, s), "translate": (fy * slide_mpp, fx * slide_mpp)}

    def tile_at(self, world_yx: tuple[float, float], slide_mpp: float, index: np.ndarray) -> int | None:
        """The tile under a world point (µm): the nearest-centred tile containing the point, else (a gap
        of corner rounding between tiles) the one painted there; or None. Not the painted pixel first:
        a raster pixel spans many level-0 pixels, over which overlapping tiles' nearest centre changes."""
        i = int(self._nearest_containing(world_yx[1] / slide_mpp, world_yx[0] / slide_mpp)[0])
        if i >= 0:
            return i
        place = self.placement(slide_mpp)
        r = int(np.floor((world_yx[0] - place["translate"][0]) / place["scale"][0] + 0.5))
        c = int(np.floor((world_yx[1] - place["translate"][1]) / place["scale"][1] + 0.5))
        if 0 <= r < self.shape[0] and 0 <= c < self.shape[1] and index[r, c] >= 0:
            return int(index[r, c])
        return None


def _subdivision(stride: float, tile_size: float, grid: tuple[int, int]) -> tuple[int, int]:
    """Raster pixels per grid step and of the border ring: the fewest that put the border tiles'
    outer edges within half a level-0 pixel, else the closest the pixel limits allow."""
    margin = (tile_size - stride) / 2.0  # level-0 px a border tile reaches past its grid cell
    if margin < 0.5:
        return 1, 0
    best = (np.inf, 1, 0)
    for n in range(1, MAX_SUBDIVISION + 1):
        pad = int(round(n * margin / stride))
        h, w = grid[0] * n + 2 * pad, grid[1] * n + 2 * pad
        if n > 1 and (h * w > MAX_RASTER_PIXELS or max(h, w) > MAX_RASTER_SIDE):
            break
        error = abs(n * margin / stride - pad) * stride / n
        if error < best[0] - 1e-9:
            best = (error, n, pad)
        if error <= 0.5:
            break
    return best[1], best[2]


def infer_stride(coords: np.ndarray, tile_size: float) -> float:
    """The grid spacing when the file does not record the overlap (at most one tile): the common
    step between neighbouring tile corners, refined over the whole span of the grid. Corners are
    whole level-0 pixels while the stride is not (226.72 px at 0.494 µm/px): the steps alternate
    226 / 227, and either one put tiles a cell off past a few hundred of them."""
    steps = []
    for axis in (0, 1):
        u = np.unique(np.asarray(coords)[:, axis])
        d = np.diff(u)
        d = d[d > 0.5]
        if len(d):
            # the mean of the single steps, not their median: at 0.499 µm/px (224.45 px) the median is 224, which
            # counted 317 steps across 316 and drew the heatmap up to half a tile off on a 100,000-tile slide
            step = float(np.mean(d[d <= np.min(d) * 1.5]))
            n = round((u[-1] - u[0]) / step)  # grid steps across the span
            steps.append((n, float(u[-1] - u[0]) / n if n > 0 else step))
    # the axis with the most steps measures it best (a rounding pixel over a longer span)
    return min(max(steps)[1], float(tile_size)) if steps else float(tile_size)


def mask_placement(mask_mpp: float, slide_mpp: float) -> dict[str, tuple[float, float]]:
    """napari ``scale`` and ``translate`` for a mask at ``mask_mpp`` over a slide at ``slide_mpp``."""
    t = (mask_mpp - slide_mpp) / 2.0
    return {"scale": (mask_mpp, mask_mpp), "translate": (t, t)}


def mask_outline_paths(mask: np.ndarray, mask_mpp: float, slide_mpp: float, tolerance_px: float = 0.3) -> list[np.ndarray]:
    """Outlines of a binary mask as (n, 2) world (y, x) µm paths, simplified to ``tolerance_px``."""
    import shapely
    from skimage.measure import find_contours

    if not np.any(mask):
        return []
    padded = np.pad(np.asarray(mask, bool), 1).astype(np.float32)
    place = mask_placement(mask_mpp, slide_mpp)
    contours = [c - 1.0 for c in find_contours(padded, 0.5) if len(c) >= 3]  # undo the padding
    # shapely's (GEOS) simplification: 10x faster than skimage's on a 100,000-tile slide's bed
    simplified = shapely.simplify([shapely.LineString(c) for c in contours], tolerance_px)
    offset = np.asarray(place["translate"])
    return [shapely.get_coordinates(g) * mask_mpp + offset for g in simplified if shapely.get_num_coordinates(g) >= 3]


# -- result files --------------------------------------------------------------------------
@dataclass
class ResultFile:
    """A WeakSTIL HDF5 result read into memory (coordinates in level-0 px)."""

    path: Path
    kind: ResultKind
    slide_id: str
    coords: np.ndarray
    tile_size: float
    stride: float | None
    slide_mpp: float | None
    slide_path: Path | None
    tile_scores: np.ndarray | None = None
    attention: np.ndarray | None = None
    stroma_weight: np.ndarray | None = None  #: stroma-aggregator models: each tile's stroma weight
    tumorbed: np.ndarray | None = None  #: per-tile flags
    tissue_fraction: np.ndarray | None = None
    tissue_mask: np.ndarray | None = None
    tissue_mask_mpp: float | None = None
    tumorbed_mask: np.ndarray | None = None
    tumorbed_mask_mpp: float | None = None
    attrs: dict[str, Any] | None = None
    #: the file's own tile scores while ``tile_scores`` holds an edited bed's (the bed editor's Rescore)
    file_tile_scores: np.ndarray | None = None
    bed_rescore: Any = None  #: the last Rescore of this result's edited bed (a weakstil.bed_edit.BedScore)
    bed_note: str = ""  #: the bed editor's line about this result's edit
    #: the file's identity when it was read (:func:`file_identity`): a file written again since is not what is shown
    file_key: tuple | None = None
    scored_tiles: Any = None  #: the bed editor's tiles of this very file (a weakstil.bed_edit.ScoredTiles), read once
    #: the bed editor's line on the bed saved for the slide: ((bed file, mtime, size), line), kept while the file is
    saved_bed_view: tuple | None = None

    @property
    def stil(self) -> float | None:
        value = (self.attrs or {}).get("stil", (self.attrs or {}).get("stil_pred"))
        return None if value is None or value != value else float(value)

    def raster(self) -> TileRaster:
        return TileRaster.from_coords(self.coords, self.tile_size, self.stride)


def read_result(path: str | Path) -> ResultFile:
    """Read any WeakSTIL per-slide HDF5 file (by its kind); raises WeakSTILError naming the file otherwise."""
    from weakstil.files import read_any

    path = Path(path)
    key = file_identity(path)  # before reading: a file written again meanwhile is then told apart
    f = read_any(path, skip=("features",))  # embeddings are not shown: a big slide's are hundreds of MB
    attrs = dict(f.attrs)
    tile_size = f.tile_size_level0
    res = ResultFile(path=path, kind=FILE_KINDS[f.KIND], slide_id=str(attrs.get("slide_id", path.stem)),
                     coords=np.asarray(f.coords), tile_size=tile_size, stride=_recorded_stride(attrs, tile_size),
                     slide_mpp=_float(attrs.get("slide_mpp")), slide_path=None, attrs=attrs, file_key=key)
    # each kind holds some of these per-tile values and masks; a kind without one leaves it None
    res.tile_scores = _as(getattr(f, "tile_scores", None), np.float32)
    res.attention = _as(getattr(f, "attention", None), np.float32)
    res.stroma_weight = _as(getattr(f, "stroma_weight", None), np.float32)
    res.tumorbed = _as(getattr(f, "tumorbed", None), bool)
    res.tissue_fraction = _as(getattr(f, "tissue_fraction", None), np.float32)
    res.tissue_mask = _as(getattr(f, "tissue_mask", None), np.uint8)
    res.tissue_mask_mpp = _float(getattr(f, "tissue_mask_mpp", None))
    res.tumorbed_mask = _as(getattr(f, "tumorbed_mask", None), np.uint8)
    res.tumorbed_mask_mpp = _float(getattr(f, "tumorbed_mask_mpp", None))
    res.slide_path = find_slide(res)
    return res


def file_identity(path: Path) -> tuple:
    """A file's identity: the same file keeps it, a file written again at the same path (or gone) does not."""
    try:
        st = path.stat()
    except OSError:  # gone: reading it says why
        return (str(path),)
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def _as(values: np.ndarray | None, dtype) -> np.ndarray | None:
    return None if values is None else np.asarray(values).astype(dtype)


def _recorded_stride(attrs: dict[str, Any], tile_size: float) -> float | None:
    overlap, tile_px = attrs.get("overlap_px"), attrs.get("tile_px")
    key = attrs.get("tiling_key")
    if overlap is None and isinstance(key, str):
        try:
            k = json.loads(key)
            overlap, tile_px = k.get("overlap_px"), k.get("tile_px", tile_px)
        except ValueError:
            pass
    if overlap is None or not tile_px:
        return None
    return tile_size * (float(tile_px) - float(overlap)) / float(tile_px)


def _float(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


# -- layers --------------------------------------------------------------------------------
def result_layers(res: ResultFile, slide_mpp: float | None = None,
                  outline: bool = True) -> list[tuple[Any, dict[str, Any], str]]:
    """napari layer data for a result, placed in µm over its slide (bottom to top: tissue,
    tissue fraction or heatmap, attention, tumour-bed outline, the tissue pieces' own sTIL%).

    ``slide_mpp``: world µm per level-0 pixel of the slide layer shown (default: the µm/px the
    result was scored with). A slide shown at another scale than it was scored at keeps its
    level-0 pixels, so tiles and masks are placed by level-0 pixel, not by the scored µm. ``outline``: False
    leaves the tumour-bed outline out (:func:`outline_layer`; a big one is built off the GUI thread)."""
    from weakstil.errors import WeakSTILError

    mpp = slide_mpp or res.slide_mpp
    if mpp is None:
        raise WeakSTILError("does not record the slide's µm/px, so its tiles cannot be placed", path=res.path,
                            fix="open the slide first (its µm/px is then used) or re-run 'weakstil score'")
    # the masks' µm/px are scored µm: a mask pixel spans mask_mpp / res.slide_mpp level-0 pixels
    to_shown = mpp / res.slide_mpp if res.slide_mpp else 1.0
    raster = res.raster()
    index = raster.index_image()
    # each layer's "role" (HEATMAP, TISSUE, ...) finds it: napari renames a second layer of one name "... [1]"
    base_meta = {"weakstil_kind": "result", "result_path": str(res.path), "slide_id": res.slide_id,
                 "slide_mpp": mpp, "kind": res.kind.value}
    tile_meta = {**base_meta, "raster": raster, "tile_index": index, "result": res}
    units = ("um", "um")
    layers: list[tuple[Any, dict[str, Any], str]] = []
    prefix = f"{res.slide_id} "
    if res.tissue_mask is not None and res.tissue_mask_mpp:
        layers.append((res.tissue_mask, {"name": prefix + TISSUE, "opacity": 0.35, "visible": False, "units": units,
                                         "metadata": {**base_meta, "role": TISSUE},
                                         **mask_placement(res.tissue_mask_mpp * to_shown, mpp)},
                       "labels"))
    if res.tile_scores is not None:
        layers.append((raster.paint(res.tile_scores), {
            "name": prefix + HEATMAP, "colormap": SCORE_COLORMAP, "contrast_limits": (0.0, 100.0), "opacity": 0.6,
            "interpolation2d": "nearest", "blending": "translucent", "units": units,
            "metadata": {**tile_meta, "role": HEATMAP},
            **raster.placement(mpp)}, "image"))
        if res.attention is not None:
            att = raster.paint(res.attention)
            hi = float(np.nanmax(att)) if np.isfinite(att).any() else 1.0
            layers.append((att, {"name": prefix + ATTENTION, "colormap": ATTENTION_COLORMAP,
                                 "contrast_limits": (0.0, hi or 1.0), "opacity": 0.6, "visible": False,
                                 "interpolation2d": "nearest", "blending": "translucent", "units": units,
                                 "metadata": {**tile_meta, "role": ATTENTION}, **raster.placement(mpp)}, "image"))
        if res.stroma_weight is not None:
            layers.append((raster.paint(res.stroma_weight), {
                "name": prefix + STROMA_WEIGHT, "colormap": STROMA_COLORMAP, "contrast_limits": (0.0, 1.0),
                "opacity": 0.6, "visible": False, "interpolation2d": "nearest", "blending": "translucent",
                "units": units, "metadata": {**tile_meta, "role": STROMA_WEIGHT}, **raster.placement(mpp)}, "image"))
    elif res.tissue_fraction is not None:
        layers.append((raster.paint(res.tissue_fraction), {
            "name": prefix + TISSUE_FRACTION, "colormap": "viridis", "contrast_limits": (0.0, 1.0), "opacity": 0.5,
            "interpolation2d": "nearest", "blending": "translucent", "units": units,
            "metadata": {**tile_meta, "role": TISSUE_FRACTION},
            **raster.placement(mpp)}, "image"))
    bed = outline_layer(res, mpp, raster) if outline else None
    from napari_weakstil.piece_labels import layer_data

    pieces = layer_data(res, mpp)  # each tissue piece's own sTIL% written at its centre, on top
    return layers + [ly for ly in (bed, pieces) if ly is not None]


def outline_layer(res: ResultFile, mpp: float, raster: TileRaster | None = None) -> tuple[Any, dict[str, Any], str] | None:
    """The tumour-bed outline's layer data (a Shapes layer of paths; None when there is no outline), for the
    slide shown at ``mpp`` world µm per level-0 pixel (see :func:`result_layers`)."""
    raster = raster if raster is not None else res.raster()
    to_shown = mpp / res.slide_mpp if res.slide_mpp else 1.0
    outline = _tumorbed_outline(res, raster, mpp, to_shown)
    if not outline:
        return None
    width = 2.0 * ((res.tumorbed_mask_mpp or 0.0) * to_shown or raster.stride * mpp / 4)
    meta = {"weakstil_kind": "result", "result_path": str(res.path), "slide_id": res.slide_id,
            "slide_mpp": mpp, "kind": res.kind.value, "role": TUMORBED}
    return (outline, {"name": f"{res.slide_id} {TUMORBED}", "shape_type": "path", "edge_color": TUMORBED_COLOR,
                      "edge_width": width, "face_color": "transparent", "units": ("um", "um"), "metadata": meta},
            "shapes")


def _tumorbed_outline(res: ResultFile, raster: TileRaster, mpp: float, to_shown: float) -> list[np.ndarray]:
    if res.tumorbed_mask is not None and res.tumorbed_mask_mpp:
        return mask_outline_paths(res.tumorbed_mask, res.tumorbed_mask_mpp * to_shown, mpp)
    if res.tumorbed is not None and res.tumorbed.any() and not res.tumorbed.all():
        # no pixel mask: outline the tumour-bed tiles on the grid (cells of stride·mpp µm)
        cells = raster.paint(res.tumorbed.astype(np.float32), fill=0.0) > 0.5
        place = raster.placement(mpp)
        cell = place["scale"][0]
        # with mask µm/px = slide µm/px the outline comes back in cell units centred on cell k at k·cell
        return [p + np.asarray(place["translate"]) for p in mask_outline_paths(cells, cell, cell)]
    return []


def tile_info(res: ResultFile, i: int) -> dict[str, Any]:
    """What the widget shows for a clicked tile."""
    x, y = (int(v) for v in res.coords[i])
    info: dict[str, Any] = {"index": i, "x": x, "y": y, "size_level0": res.tile_size}
    if res.tile_scores is not None:
        info["score"] = float(res.tile_scores[i])
    if res.attention is not None:
        info["attention"] = float(res.attention[i])
    if res.stroma_weight is not None:
        info["stroma_weight"] = float(res.stroma_weight[i])
    edited = getattr(res.bed_rescore, "tile_flags", None)  # after Rescore: the edited bed, as the heatmap shows
    if edited is not None:
        info["tumorbed"], info["edited_bed"] = bool(edited[i]), True
    elif res.tumorbed is not None:
        info["tumorbed"] = bool(res.tumorbed[i])
    if res.tissue_fraction is not None:
        info["tissue_fraction"] = float(res.tissue_fraction[i])
    return info


def show_legend(viewer: Any, heat: Any | None) -> None:
    """The shown heatmap's colour bar (its colours' sTIL %, at the colour range set) and the µm scale
    bar on the canvas, so the view and its PNG export say what the colours and the distances are:
    both were off, and an exported view was colours without a scale. One colour bar: the shown result's."""
    from napari_weakstil._compat import scale_bar

    for layer in viewer.layers:
        if layer.metadata.get("weakstil_kind") == "result" and layer.name.endswith(HEATMAP) and \
                hasattr(layer, "colorbar"):
            layer.colorbar.visible = layer is heat
    if heat is not None:
        scale_bar(viewer).visible = True
