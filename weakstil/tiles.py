"""Stage: slide -> tissue mask -> tile grid, written per slide as HDF5 plus an overlay PNG.

The HDF5 file ``<slide_id>.h5`` is a :class:`weakstil.files.TilesFile` (layout documented there).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from weakstil import settings
from weakstil.code_version import version as code_version
from weakstil.atomic import atomic_path, remove_stale_temps, replacing_together
from weakstil.errors import INK_ONLY, NoTissueError, SlideError, UsageError, WeakSTILError, no_tissue
from weakstil.runtime import library_versions
from weakstil.slide import Slide, brightfield_warning, greyscale_reason, underexposed_reason
from weakstil.tiling import TileGrid, TileMode, grid_bytes, select_tiles
from weakstil.tissue import TISSUE_MASK_MPP, TISSUE_VERSION, TissueParams, detect_tissue

log = logging.getLogger(__name__)

#: Longest side of the overlay PNG, in pixels.
OVERLAY_MAX_SIDE = 1600
#: The tissue overview is read from a pyramid level at least this many times finer than the mask
#: (our reduction, on which the detector's thresholds were set): a level stored at the mask's own
#: resolution carries its writer's filter and JPEG artefacts (halos that doubled the glass noise and
#: chroma that raised the saturation cut), and one slide stored as six pyramids gave 81-114 tiles.
MASK_MIN_REDUCTION = 2.0
#: ... and from the finest level that costs little more to read: at most this many pixels more than the
#: level of the mask's own resolution. The finest level is the scan itself, averaged over the mask's
#: pixels: the same overview whatever the scan's µm/px and pyramid (a stored level is JPEG-compressed
#: once more, at a resolution that follows the scan's: a 20x scan's 2 µm level, a 40x one's 1 or 4 µm
#: level; the same slide gave 90 tiles at 0.5 µm/px and 108 at 0.25). A 20x slide's level at 2 µm/px
#: has 16 times the pixels of its level at 8 µm/px (a 6 x 6 mm slide: 1.25 s instead of 0.08 s; a
#: 20 x 15 mm one about 10 s, which would dwarf the rest of a GPU embedding); larger slides read the
#: finest level within this budget, or the stored level as before.
MASK_FINER_MAX_EXTRA_PIXELS = 16_000_000


def mask_overview_reduction(slide: Slide, mask_mpp: float) -> float:
    """The ``min_reduction`` of the tissue overview's read: that of the finest level at least
    :data:`MASK_MIN_REDUCTION` times finer than the mask within :data:`MASK_FINER_MAX_EXTRA_PIXELS`, else 1."""
    dims = list(slide.backend.level_dimensions)
    mpps = [slide.level_mpp(level) for level in range(len(dims))]
    if slide.vendor == "generic-tiff" and len(dims) == 1:  # an OME-TIFF pyramid's SubIFDs, read by read_thumbnail
        from weakstil.tiff_layout import subifd_sizes

        dims += subifd_sizes(slide.path)
        mpps += [slide.mpp * dims[0][0] / w for w, _ in dims[1:]]

    def best(mpp: float) -> int:  # as Slide.best_level_for_mpp
        return max((level for level, m in enumerate(mpps) if m <= mpp * 1.01), default=0)

    stored = best(mask_mpp)
    for level in range(best(mask_mpp / MASK_MIN_REDUCTION) + 1):  # finest first
        extra = dims[level][0] * dims[level][1] - dims[stored][0] * dims[stored][1]
        if extra <= MASK_FINER_MAX_EXTRA_PIXELS:
            return max(MASK_MIN_REDUCTION, mask_mpp / mpps[level])
    return 1.0
#: The score heatmap shows tiles (over 100 µm) on the tissue's architecture: 2 µm/px is plenty, and
#: a small slide's heatmap at its full resolution was 5-7 MB (a 1 mm slide's 0.7-1.3 MB); napari
#: shows the tiles over the slide itself at any zoom.
HEATMAP_MIN_MPP = 2.0


@dataclass(frozen=True)
class TilingParams:
    """Everything that decides which tiles a slide gets; recorded with every output."""

    mpp: float = settings.MPP
    tile_px: int = settings.TILE_PX
    overlap_px: int = settings.OVERLAP_PX
    tissue_threshold: float = settings.TISSUE_THRESHOLD
    mode: TileMode = TileMode.SKIP
    mask_mpp: float = TISSUE_MASK_MPP
    tissue: TissueParams = field(default_factory=TissueParams)

    def __post_init__(self) -> None:
        """The ranges of weakstil.settings (the CLI checks each option; this catches library
        callers and the one rule between two options)."""
        import math

        lo, hi = settings.MPP_RANGE
        if not (math.isfinite(self.mpp) and lo <= self.mpp <= hi):
            raise UsageError(f"--mpp {self.mpp} is out of range: must be from {lo:g} to {hi:g} µm/px",
                             fix="pass the µm/px to read tiles at (0.5 for 20x)")
        lo, hi = settings.TILE_PX_RANGE
        if not lo <= self.tile_px <= hi:
            raise UsageError(f"--tile-size {self.tile_px} is out of range: must be from {lo} to {hi} px",
                             fix="pass a tile side in px (224 by default)")
        if not 0 <= self.overlap_px < self.tile_px:
            raise UsageError(f"--overlap {self.overlap_px} is out of range: must be >= 0 and less than --tile-size "
                             f"({self.tile_px} px)", fix=f"pass --overlap from 0 to {self.tile_px - 1}")
        if not (math.isfinite(self.tissue_threshold) and 0.0 <= self.tissue_threshold <= 1.0):
            raise UsageError(f"--tissue-threshold {self.tissue_threshold} is out of range: must be from 0 to 1",
                             fix="pass a fraction of the tile (0.5 by default)")

    def dense_warning(self) -> str | None:
        """A warning when the overlap multiplies the tiles more than 16-fold (a stride under a quarter
        tile): legal, but tiling, embedding and scoring take that many times longer (``--overlap 223``
        at 224 px, a 1 px stride, is 50,176 times the tiles, minutes for a 2 mm² region), and a typo is likelier."""
        stride = self.tile_px - self.overlap_px
        factor = (self.tile_px / stride) ** 2
        if factor <= 16:
            return None
        return (f"--overlap {self.overlap_px} at --tile-size {self.tile_px} moves each tile by {stride} px: about "
                f"{factor:,.0f} times the tiles of no overlap, and tiling, embedding and scoring take that many times "
                f"longer; an overlap of at most half the tile size ({self.tile_px // 2} px) is usual")

    def key(self) -> dict[str, object]:
        """The settings that change tile coordinates (used as a cache key downstream)."""
        d = asdict(self)
        d["mode"] = self.mode.value
        d["tissue"] = self.tissue.to_dict()
        return d


@dataclass
class SlideTiles:
    """The tiles of one slide and how they were found."""

    slide_info: dict[str, object]
    params: TilingParams
    grid: TileGrid
    coords: np.ndarray
    tissue_fraction: np.ndarray
    tissue_mask: np.ndarray
    mask_mpp: float
    warnings: list[str] = field(default_factory=list)  #: why the image may not be brightfield H&E
    thumbnail: np.ndarray | None = field(default=None, repr=False)  #: RGB at mask_mpp (not saved)
    read_warnings: list[str] = field(default_factory=list)  #: how it is read (an upsampled scan)

    @property
    def recorded_warnings(self) -> list[str]:
        """Every warning, for the outputs' ``warnings`` attribute."""
        return self.warnings + self.read_warnings

    @property
    def tissue_mm2(self) -> float:
        """The area of the tissue mask in mm²."""
        return float(np.count_nonzero(self.tissue_mask)) * self.mask_mpp ** 2 / 1e6

    def no_tissue_error(self, path: str | Path) -> NoTissueError:
        """The error of these tiles when there are none: why the slide may not be H&E, or how much
        tissue was found that fills no tile to the threshold."""
        return no_tissue(path, self.warnings, self.tissue_mm2, self.params.tissue_threshold,
                         debris_pieces(self.thumbnail, self.mask_mpp, self.params.tissue)
                         if self.tissue_mm2 <= 0 and not self.warnings else None)

    @property
    def tile_size_level0(self) -> float:
        return self.grid.tile_size_level0

    def attrs(self) -> dict[str, object]:
        return {
            **self.slide_info,
            "mpp": float(self.params.mpp),
            "tile_px": int(self.params.tile_px),
            "tile_um": float(self.grid.tile_um),
            "tile_size_level0": float(self.grid.tile_size_level0),
            "overlap_px": int(self.params.overlap_px),
            "tissue_threshold": float(self.params.tissue_threshold),
            "tile_mode": self.params.mode.value,
            "mask_mpp": float(self.mask_mpp),
            "tissue_params": json.dumps(self.params.tissue.to_dict()),
            "tissue_version": TISSUE_VERSION,
            "tiling_key": json.dumps(self.params.key(), sort_keys=True),
            "n_tiles": int(len(self.coords)),
            "weakstil_version": code_version(),
            # the reader's and image code's releases: an OpenSlide or decoder release changes the pixels
            "library_versions": json.dumps(library_versions(), sort_keys=True),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def find_tiles(slide: Slide, params: TilingParams | None = None, allow_upsample: bool = False) -> SlideTiles:
    """Detect tissue on a low-resolution thumbnail and keep the grid tiles on it."""
    params = params or TilingParams()
    slide.check_target_mpp(params.mpp, allow_upsample=allow_upsample)
    mask_mpp = max(params.mask_mpp, slide.mpp)
    thumb = slide.read_thumbnail(mask_mpp, min_reduction=mask_overview_reduction(slide, mask_mpp))
    from weakstil.unscanned import as_glass, remember_overview

    black = remember_overview(slide, thumb)  # its tiles' readers whiten a black unscanned area (one read, not two)
    dark = underexposed_reason(thumb)  # the scan's own glass, before any white is put in
    if dark:  # every pixel would be dense "tissue": tiles on glass, an sTIL% of nothing
        raise SlideError(dark, path=slide.path, fix="scan the slide again with the scanner's white calibration "
                                                    "(glass near 240 grey levels), or correct its exposure")
    if black:  # the unscanned area as the transparent area it stands for: white glass (weakstil.unscanned)
        thumb = as_glass(thumb)
    # the colours judged are the detected tissue's (a blank slide's black border, marker ring, dust or
    # bubble rim is no tissue: it was judged "a greyscale image" or "not pink/purple")
    mask = detect_tissue(thumb, mask_mpp, params.tissue)
    grey = greyscale_reason(thumb, mask)
    unpenned = None
    if not grey and not mask.any() and params.tissue.remove_pen:
        # a greyscale scan's tissue is neutral, as grey marker ink is, so the detector drops all of it as
        # ink (hunt 16 c): without the ink rules its colourless tissue shows, and the refusal says why
        unpenned = detect_tissue(thumb, mask_mpp, replace(params.tissue, remove_pen=False))
        grey = greyscale_reason(thumb, unpenned)
    if grey:
        raise SlideError(grey, path=slide.path, fix="WeakSTIL scores colour (RGB) brightfield H&E scans; scan or export "
                                                    "the slide in colour", warnings=[grey])
    warnings = []
    reason = brightfield_warning(thumb, mask) or all_ink_reason(unpenned, mask_mpp, params.tissue.min_object_um2)
    if reason:
        warnings.append(reason)
        log.warning("%s: %s", slide.path, reason)
    W, H = slide.dimensions
    grid = TileGrid(W, H, slide.mpp, params.mpp, params.tile_px, params.overlap_px, params.mode)
    if len(grid) == 0:  # not a tissue problem: say what is
        # in pixels and to 0.01 µm: a 224 x 223 px slide was 'is 112 x 112 µm, smaller than one tile (112 µm...)',
        # a 1 px wide one '0 x 300 µm' (hunt 36c)
        um = [f"{v:.2f}".rstrip("0").rstrip(".") for v in (W * slide.mpp, H * slide.mpp, grid.tile_um)]
        raise SlideError(f"is {W} x {H} px ({um[0]} x {um[1]} µm), smaller than one tile "
                         f"({um[2]} µm: {params.tile_px} px at {params.mpp:g} µm/px)", path=slide.path,
                         fix="choose a smaller --tile-size or --mpp (tile, embed, pretrain); score reads its model's "
                             "tiles, so a slide smaller than one cannot be scored with that model")
    check_grid_memory(grid, params, float(mask.mean()) if mask.size else 0.0, slide.path)
    coords, fractions = select_tiles(grid, mask, mask_mpp, params.tissue_threshold)
    upsampled = slide.upsample_note(params.mpp)  # allowed (checked above): recorded, not only logged
    from weakstil.unscanned import RECORD

    # in the tiles' and the features' attributes ("none" too: a file without it was made before)
    info = {**slide.info(), "background": RECORD if black else "none"}
    return SlideTiles(info, params, grid, coords, fractions, mask, mask_mpp, warnings, thumb,
                      [upsampled] if upsampled else [])


class GridTooLarge(UsageError):
    """:func:`check_grid_memory`'s refusal (exit 2: the tiling options). ``weakstil score`` has no
    tiling options (its model's): there it is that slide's error, :meth:`for_model`, in words of no option."""

    def __init__(self, message: str, *, path: str | Path, fix: str, model_message: str, model_fix: str):
        self.model_message, self.model_fix = model_message, model_fix
        super().__init__(message, path=path, fix=fix)

    def for_model(self) -> WeakSTILError:
        return WeakSTILError(self.model_message, path=self.path, fix=self.model_fix)


#: Stained area (µm², all pieces together) from which the pieces dropped as debris are named in the
#: no-tissue error: a few cells' worth of stain (a 70 µm square); less is dust or a speck.
DEBRIS_NAMED_UM2 = 5_000.0


def debris_pieces(thumb: np.ndarray | None, mask_mpp: float,
                  params: TissueParams) -> tuple[int, float, float, float] | None:
    """``(pieces, mm² in all, largest mm², debris size mm²)`` of the stained pieces the tissue detector drops
    as debris on a slide where it found no tissue (``None``: none worth naming, or no thumbnail). Measured
    without the fat step, as the detector judges (it adds fat only beside a debris-sized stained piece)."""
    if thumb is None or params.min_object_um2 <= 0:
        return None
    from scipy import ndimage as ndi

    small = detect_tissue(thumb, mask_mpp, replace(params, min_object_um2=0.0, fat_window_um=0.0))
    labels, n = ndi.label(small)
    if n == 0:
        return None
    areas = np.bincount(labels.ravel())[1:] * mask_mpp ** 2
    if areas.sum() < DEBRIS_NAMED_UM2:
        return None
    return n, float(areas.sum()) / 1e6, float(areas.max()) / 1e6, params.min_object_um2 / 1e6


def all_ink_reason(unpenned: np.ndarray | None, mask_mpp: float, min_um2: float) -> str | None:
    """Why a slide whose every absorbing piece the ink rules dropped has no tissue, when the detector
    without them (``unpenned``) finds at least a debris piece's area: the pieces look like marker ink
    (grey, black or navy), which is ink on blank glass, or tissue whose stain has faded or whose scan's
    colours are washed out (an H&E slide at 0.3 x its saturation: all of it, 2 mm², was dropped and the
    refusal sent the user to lower the tissue threshold, hunt 30b)."""
    if unpenned is None:
        return None
    um2 = float(np.count_nonzero(unpenned)) * mask_mpp ** 2
    if um2 < min_um2:
        return None
    return (f"all {um2 / 1e6:.2f} mm² that absorbs light {INK_ONLY} (grey, black or navy), not H&E "
            "stain: ink on blank glass, or tissue whose stain has faded or whose scan's colours are washed out")


def check_grid_memory(grid: TileGrid, params: TilingParams, tissue_share: float, path: Path) -> None:
    """Refuse (a UsageError, exit 2) a grid whose arrays would not fit in memory, before they are made:
    ``--overlap 223`` at 224 px (a 1 px stride) lays 50,176 times the tiles of no overlap, 2.5 million
    on a 1.5 mm² region and hundreds of GB on a whole slide (hunt 29a). The fix names an overlap whose
    grid fits, and no more than half the tile: the largest that fits memory (221 px at 224) would still
    take thousands of times the embedding time of no overlap (hunt 30c)."""
    from weakstil.resources import available_memory, memory_shortfall

    need = grid_bytes(len(grid), tissue_share)
    have = available_memory()
    budget = settings.MEMORY_SHARE * have
    if need <= budget:
        return
    fits = next((o for o in range(params.overlap_px - 1, -1, -1)
                 if grid_bytes(len(replace(grid, overlap_px=o)), tissue_share) <= budget), None)
    half = params.tile_px // 2
    if fits is not None:
        ok = min(fits, half)
        fix = (f"pass --overlap {ok} or less ({len(replace(grid, overlap_px=ok)):,} grid tiles, "
               f"{(params.tile_px / (params.tile_px - ok)) ** 2:,.0f} times those of no overlap and as many times "
               f"the time; {half} px, half the tile, is usual)")
    else:
        fix = "pass a larger --mpp or --tile-size, or use a machine with more memory"
    needs = f"tiles and {memory_shortfall(need, have)}"
    model_fix = "score this slide on a machine with more memory" + (
        f", or with a model trained on features embedded at a smaller overlap ('weakstil embed --overlap {half}', "
        "then 'weakstil train')" if params.overlap_px > half else "")
    raise GridTooLarge(f"--overlap {params.overlap_px} at --tile-size {params.tile_px} lays {len(grid):,} {needs}",
                       path=path, fix=fix, model_fix=model_fix,
                       model_message=f"the model's tiling ({params.tile_px} px tiles overlapping by {params.overlap_px} "
                                     f"px) lays {len(grid):,} {needs}")


def write_tiles_h5(tiles: SlideTiles, path: Path) -> Path:
    """Write ``tiles`` to ``path`` atomically (a :class:`weakstil.files.TilesFile`)."""
    from weakstil.files import TilesFile

    return TilesFile(coords=tiles.coords, tissue_fraction=tiles.tissue_fraction, tissue_mask=tiles.tissue_mask,
                     tissue_mask_mpp=float(tiles.mask_mpp),
                     attrs={**tiles.attrs(), "warnings": json.dumps(tiles.recorded_warnings)}).write(path)


def overlay_mpp(slide: Slide) -> float:
    """A resolution for the overlay picture: long side about OVERLAY_MAX_SIDE px."""
    W, H = slide.dimensions
    return max(slide.mpp, max(W, H) * slide.mpp / OVERLAY_MAX_SIDE)


def heatmap_mpp(slide: Slide) -> float:
    """A resolution for the score heatmap: the overlay's, never finer than HEATMAP_MIN_MPP."""
    return max(overlay_mpp(slide), HEATMAP_MIN_MPP)


def overview(slide: Slide, mpp: float, tiles: SlideTiles | None = None) -> np.ndarray:
    """The slide at ``mpp``; reuses the tissue thumbnail when that is fine enough."""
    if tiles is not None and tiles.thumbnail is not None and mpp >= tiles.mask_mpp:
        from PIL import Image

        W, H = slide.dimensions
        size = (max(1, round(W * slide.mpp / mpp)), max(1, round(H * slide.mpp / mpp)))
        return np.asarray(Image.fromarray(tiles.thumbnail).resize(size, Image.Resampling.BILINEAR))
    return slide.read_thumbnail(mpp)


def draw_tile_overlay(thumb: np.ndarray, thumb_mpp: float, tiles: SlideTiles):
    """Thumbnail with the tissue outline (green) and kept tiles (blue squares) drawn on it, above a key
    saying so."""
    from PIL import Image, ImageDraw
    from skimage.transform import resize

    img = Image.fromarray(thumb).convert("RGB")
    h, w = thumb.shape[:2]
    mask = resize(tiles.tissue_mask.astype(np.float32), (h, w), order=0, anti_aliasing=False) > 0.5
    # Outline = mask minus its erosion, widened for visibility.
    from scipy import ndimage as ndi

    edge = mask & ~ndi.binary_erosion(mask, iterations=2)
    arr = np.asarray(img).copy()
    arr[edge] = (0, 200, 0)
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img, "RGBA")
    f = tiles.slide_info["slide_mpp"] / thumb_mpp  # thumbnail px per level-0 px
    side = tiles.tile_size_level0 * f
    for x, y in tiles.coords:
        x0, y0 = x * f, y * f
        draw.rectangle([x0, y0, x0 + side - 1, y0 + side - 1], outline=(30, 80, 255, 200), fill=(30, 80, 255, 40))
    return _with_key(img, len(tiles.coords))


def _with_key(img, n_tiles: int):
    """``img`` above a white strip saying what its colours are (the picture had no key, hunt 24e)."""
    from PIL import Image, ImageDraw

    from weakstil import drawing

    font, pad = drawing.font(12), 6
    items = [((0, 200, 0), "tissue outline"), ((30, 80, 255), f"{n_tiles} tile{'s' if n_tiles != 1 else ''} kept")]
    key_w = drawing.key_width(items, font)
    out = Image.new("RGB", (max(img.width, key_w + 2 * pad), img.height + 22), "white")
    out.paste(img, (0, 0))
    drawing.draw_key(ImageDraw.Draw(out), (out.width - key_w) // 2, img.height + 11, items, font)
    return out


def tiles_up_to_date(slide: Slide, out_dir: str | Path, params: TilingParams) -> int | None:
    """The tile count of ``out_dir/<slide_id>.h5`` when it is complete, made from this scan at this
    µm/px with these tiling settings and this tissue detector, and its overlay PNG is there (``weakstil
    tile`` keeps it: a rerun does only the slides not done); ``None`` when the slide is to be tiled."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import TilesFile

    out_dir = Path(out_dir)
    h5_path = out_dir / f"{slide.slide_id}.h5"
    if not (h5_path.is_file() and (out_dir / f"{slide.slide_id}_tiles.png").is_file()):
        return None
    try:
        attrs, shapes = TilesFile.read_header(h5_path)
    except (WeakSTILError, OSError, KeyError):
        return None  # another kind of file, damaged or incomplete: check_replaceable and the rewrite decide
    try:
        same = (attrs.get("slide_fingerprint") == slide.fingerprint
                and attrs.get("tiling_key") == json.dumps(params.key(), sort_keys=True)
                and int(attrs.get("tissue_version", -1)) == TISSUE_VERSION
                and float(attrs.get("slide_mpp", float("nan"))) == float(slide.mpp))
    except (TypeError, ValueError):
        return None
    if same:
        from weakstil.unscanned import read_as_tissue_before

        same = read_as_tissue_before(attrs, slide) is None  # made before a black unscanned area was glass
    return int(shapes["coords"][0]) if same and "coords" in shapes else None


def tile_slide_to_dir(slide_path: str | Path, out_dir: str | Path, params: TilingParams | None = None, *,
                      slide_mpp: float | None = None, allow_upsample: bool = False) -> tuple[Path, SlideTiles]:
    """``weakstil tile`` for one slide: writes ``<id>.h5`` and ``<id>_tiles.png`` into ``out_dir``.

    Raises a :class:`~weakstil.errors.WeakSTILError` (and writes nothing) for a bad slide
    or one without tissue. Holds the slide's lock (:mod:`weakstil.locks`) while it writes.
    """
    from weakstil.files import TilesFile
    from weakstil.locks import OutputLock
    from weakstil.outputdir import check_replaceable

    out_dir = Path(out_dir)
    with Slide.open(slide_path, slide_mpp=slide_mpp) as slide, OutputLock(out_dir / f"{slide.slide_id}.h5"):
        check_replaceable(out_dir / f"{slide.slide_id}.h5", TilesFile)
        remove_stale_temps(out_dir / f"{slide.slide_id}_tiles.png")  # a killed run's (the .h5's: on writing)
        tiles = find_tiles(slide, params, allow_upsample=allow_upsample)
        if len(tiles.coords) == 0:
            raise tiles.no_tissue_error(slide.path)
        omp = overlay_mpp(slide)
        overlay = draw_tile_overlay(overview(slide, omp, tiles), omp, tiles)
        h5_path = out_dir / f"{slide.slide_id}.h5"
        png_path = out_dir / f"{slide.slide_id}_tiles.png"
        # both files or neither, and a failed rewrite (a full disk, Ctrl-C) puts the earlier pair back:
        # a picture without its tiles, or tiles without their picture, would mislead
        with replacing_together([h5_path, png_path]):
            with atomic_path(png_path) as tmp:  # what made the picture, as a heatmap's (no path or time)
                overlay.save(tmp, format="PNG", compress_level=1, pnginfo=_overlay_text(tiles))
            write_tiles_h5(tiles, h5_path)
    return h5_path, tiles


def _overlay_text(tiles: SlideTiles):
    """The overlay PNG's text chunks: ``Software`` and a JSON ``Comment`` naming the slide (id,
    fingerprint), the tiling settings, the tissue detector and the tile count."""
    from PIL.PngImagePlugin import PngInfo

    a = tiles.attrs()
    info = PngInfo()
    info.add_text("Software", f"WeakSTIL {code_version()}")
    info.add_text("Comment", json.dumps({k: a.get(k) for k in ("slide_id", "slide_fingerprint", "tissue_version",
                                                                 "n_tiles", "weakstil_version")}
                                        | {"tiling_key": json.loads(str(a["tiling_key"]))}, default=str))
    return info


def scoring_tiling(meta: dict, path: Path):
    """The :class:`TilingParams` the model's features were made with (from
    :func:`weakstil.modeldir.check_scoring_meta`'d ``meta``): its tiling key, or its µm/px and tile size for a model
    written before the key was recorded. A key edited into one no tiling has is one error line."""
    from weakstil.modeldir import META_FILE

    tiling = meta["tiling"]
    key = tiling.get("key")
    try:
        if isinstance(key, str):
            key = json.loads(key)
        if not key:
            return TilingParams(mpp=float(tiling["mpp"]), tile_px=int(tiling["tile_px"]))
        return TilingParams(mpp=key["mpp"], tile_px=key["tile_px"], overlap_px=key["overlap_px"],
                            tissue_threshold=key["tissue_threshold"], mode=TileMode(key["mode"]),
                            mask_mpp=key["mask_mpp"], tissue=TissueParams(**key["tissue"]))
    except (KeyError, TypeError, ValueError, AttributeError, WeakSTILError) as exc:
        said = exc.message if isinstance(exc, WeakSTILError) else f"it has no {json.dumps(exc.args[0])}" \
            if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise WeakSTILError(f"{META_FILE} 'tiling' key is not a tiling 'weakstil train' writes ({said})", path=path,
                            fix=f"copy {META_FILE} again from the folder 'weakstil train' wrote, or train the model "
                                "again") from None
