"""Slide reading at a physical resolution (µm/px), on top of a slide backend (OpenSlide).

Every region and thumbnail is requested in micrometres per pixel, never in pyramid
levels: the reader picks the finest pyramid level that is not finer than needed and
resizes from there. Problems with a slide surface as one-line :class:`SlideError`.
"""

from __future__ import annotations

import glob
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from weakstil import settings
from weakstil.errors import SlideError
from weakstil.errors import short_reason as _short
from weakstil.resample import (  # noqa: F401  (their home was here: weakstil.slide.read_scale...)
    READ_FILTER, READ_REDUCE, READ_REDUCE_WHOLE_SAME, READ_WHOLE_RATIO, REDUCING_GAP, read_scale, resize_tile,
)

# how a slide's µm/px is found (metadata, --slide-mpp) and what is said when it is not: weakstil.slide_mpp
from weakstil.slide_mpp import (  # noqa: F401 (their home was here)
    NON_SQUARE_TOLERANCE, MppSource, _missing_mpp_notes, _resolve_mpp, objective_note, unitless_note,
)
from weakstil.whole_level import kept_levels

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.slide_backend import SlideBackend

log = logging.getLogger(__name__)
#: An overview read from a level this many times finer (in pixels) and this large is slow: said once.
SLOW_OVERVIEW_FACTOR = 64
SLOW_OVERVIEW_PIXELS = 400e6
#: The last overview read from such a level (a slide without a pyramid), for the next Slide of the same file
#: that asks for the same size: score's qc and ink veto each open their own (hunt 41b: a 900 Mpx single-level
#: TIFF was read whole 4 times, 2 of them for the same overview). One entry; the same pixels, read once.
_SLOW_OVERVIEW: dict[tuple, np.ndarray] = {}
#: A single-level slide's whole image (RGBA, as OpenSlide gives it) is kept, inside weakstil.whole_level's
#: whole_levels_kept() (a score run), for the overviews of other sizes that the same run reads next: score read such
#: a slide whole 3 times (tissue mask at 8 µm/px, qc statistics at 4, heatmap; helper h43d). The same pixels, decoded
#: once; kept only when it takes at most 1/LEVEL0_MEMORY_SHARE of the available memory (else read each time).
LEVEL0_MEMORY_SHARE = 8

#: A base resolution may be this much coarser than the target before we refuse.
COARSER_TOLERANCE = 0.10
#: A scan coarser than this (µm/px) that is to be read finer is no H&E whole-slide scan (1.25x is about 8,
#: 2.5x about 4): its resolution is more likely a magnification typed as µm/px ('--slide-mpp 20' for 20x).
MAGNIFICATION_LIKE_MPP = 5.0
#: Plausible range of microns per pixel for a brightfield scan.
MPP_RANGE = settings.MPP_RANGE
#: Largest block (level pixels per side) read in one OpenSlide call for thumbnails.
MAX_READ_BLOCK = 4096
#: ... and for the overviews (tissue detection at 8 µm/px, pictures), kept at 2.0: the tissue
#: detector's thresholds were set on such thumbnails (box-reduced ones moved its Dice with the truth
#: from 0.957 to 0.949 on a synthetic slide).
THUMBNAIL_REDUCING_GAP = 2.0
@dataclass
class Slide:
    """An open whole-slide image with a known base resolution.

    Use :meth:`Slide.open`; coordinates are level-0 pixels throughout.
    """

    path: Path
    backend: SlideBackend = field(repr=False)
    mpp: float
    mpp_source: MppSource
    _fingerprint: str | None = field(default=None, init=False, repr=False)
    _upsample_warned: bool = field(default=False, init=False, repr=False)  # once per open slide
    _slow_overview_warned: bool = field(default=False, init=False, repr=False)  # tissue, overlay, heatmap: once
    _black_background: bool | None = field(default=None, init=False, repr=False)  # weakstil.unscanned, once

    # -- opening -----------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, slide_mpp: float | None = None) -> Slide:
        """Open ``path`` with the slide backend (OpenSlide) and resolve its µm/px.

        ``slide_mpp`` overrides the metadata (needed when the file has none).
        Raises :class:`SlideError` with a one-line reason and fix.
        """
        path = Path(path)
        if not path.exists():
            if glob.has_magic(str(path)):
                from weakstil.errors import glob_miss_fix

                raise SlideError("no file matches this pattern", path=path, fix=glob_miss_fix(str(path)))
            if path.is_symlink():
                loop = _is_link_loop(path)
                raise SlideError(f"symbolic link to {os.readlink(path)} that leads back to itself (a loop)" if loop
                                 else f"broken symbolic link to {os.readlink(path)} (target not found)", path=path,
                                 fix="point the link at the slide, or pass the slide's own path")
            from weakstil.errors import name_problem

            if (unnamed := name_problem(str(path))) is not None:  # exists() is False for such a name
                raise SlideError(unnamed.reason, path=path, fix=unnamed.fix)
            raise SlideError("file not found", path=path, fix="check the path and spelling")
        if path.is_dir():
            try:  # a DICOM series is a folder of .dcm files: OpenSlide opens it from any one of them
                files = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
            except OSError:
                files = []
            dcm = min((p for p in files if p.suffix.lower() == ".dcm"), default=None)
            if dcm is not None and not any(p.suffix.lower() in settings.SLIDE_FILE_SUFFIXES and p.suffix.lower() != ".dcm"
                                           for p in files):  # a series folder may hold a DICOMDIR too
                raise SlideError("is a DICOM series folder, not a slide file", path=path,
                                 fix=f"pass one .dcm file of the series, e.g. {dcm} (OpenSlide opens the whole "
                                     "series from any one of its files)")
            # a folder of slides (a .dcm among them is no series: hunt 27a) is passed as a glob of its files
            from weakstil.errors import slides_in_subfolders

            deeper = None if any(p.suffix.lower() in settings.SLIDE_FILE_SUFFIXES for p in files) else \
                slides_in_subfolders(path)  # a folder of case folders: 'DIR/*' named the folders (hunt 30c)
            raise SlideError("is a directory, not a slide file", path=path,
                             fix=deeper or f"pass slide files, or a glob of the folder's (quoted): '{path / '*'}'")
        if path.stat().st_size == 0:
            raise SlideError("file is empty", path=path, fix="copy the slide again")

        from weakstil.slide_backend import open_backend

        backend = open_backend(path)
        try:
            mpp, source = _resolve_mpp(backend, path, slide_mpp)
        except SlideError:
            backend.close()
            raise
        slide = cls(path=path, backend=backend, mpp=mpp, mpp_source=source)
        slide._probe()
        return slide

    def _probe(self) -> None:
        """Decode a pixel at the far corner of every level, so damaged files fail now."""
        for level in range(self.level_count):
            w, h = self.backend.level_dimensions[level]
            ds = self.backend.level_downsamples[level]
            for lx, ly in ((0, 0), (w - 1, h - 1)):
                try:
                    self.backend.read_region((int(lx * ds), int(ly * ds)), level, (1, 1))
                except Exception as exc:
                    self.close()
                    from weakstil.tiff_layout import unreadable_layout

                    layout = unreadable_layout(str(exc))
                    if layout is not None:  # e.g. 32-bit samples: no copy of the file mends that
                        raise SlideError(layout[0], path=self.path, fix=layout[1]) from None
                    raise SlideError(
                        f"pixel data is damaged or truncated ({_short(exc)})",
                        path=self.path,
                        fix="copy or export the slide again",
                    ) from None

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- properties --------------------------------------------------------------
    @property
    def slide_id(self) -> str:
        return slide_id_from_path(self.path)

    @property
    def fingerprint(self) -> str:
        """The slide's identity from its content (:mod:`weakstil.fingerprint`), computed once."""
        if self._fingerprint is None:
            from weakstil.fingerprint import backend_fingerprint

            self._fingerprint = backend_fingerprint(self.backend)
        return self._fingerprint

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 (width, height) in pixels."""
        return self.backend.dimensions

    @property
    def level_count(self) -> int:
        return self.backend.level_count

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self.backend.level_downsamples)

    @property
    def vendor(self) -> str:
        return self.backend.vendor

    def level_mpp(self, level: int) -> float:
        return self.mpp * self.level_downsamples[level]

    def best_level_for_mpp(self, mpp: float) -> int:
        """The coarsest level whose resolution is still at least as fine as ``mpp``."""
        best = 0
        for level in range(self.level_count):
            # 1 % slack: pyramid downsamples are often 3.9998 instead of 4.
            if self.level_mpp(level) <= mpp * 1.01:
                best = level
        return best

    def check_target_mpp(self, mpp: float, allow_upsample: bool = False) -> None:
        """Refuse a target resolution finer than the scan by more than 10 % (with
        ``allow_upsample``: a warning that names the factor)."""
        if self.mpp <= mpp * (1 + COARSER_TOLERANCE):
            return
        if allow_upsample:
            if not self._upsample_warned:
                self._upsample_warned = True
                log.warning("%s: %s", self.path, self.upsample_note(mpp))
        elif self.mpp >= MAGNIFICATION_LIKE_MPP:  # '--slide-mpp 20' for a 20x scan: upsampling it is no fix
            raise SlideError(
                f"base resolution {self.mpp:.4g} µm/px is coarser than whole-slide scans of H&E are (a 20x scan is "
                "about 0.5 µm/px, 40x about 0.25): likely the objective's magnification typed as µm/px, or a wrong "
                "resolution in the file", path=self.path,
                fix="pass the scan's µm/px with --slide-mpp (0.5 for a 20x scan, 0.25 for 40x; the scanner's report "
                    "or the slide's properties in its viewer say it), not the magnification")
        else:
            from weakstil.tiff_layout import unit_slip

            slip = unit_slip(self.mpp, self.backend.properties) if self.mpp_source == MppSource.METADATA else None
            raise SlideError(
                f"base resolution {self.mpp:.4g} µm/px is coarser than the target {mpp:.4g} µm/px by more than 10 % "
                "(reading it would upsample)" + (f"; {slip[0]}" if slip else ""),
                path=self.path,
                fix=(f"if it is a {slip[1]:g} µm/px scan, pass --slide-mpp {slip[1]:g}; else " if slip else "")
                    + f"pass --allow-upsample to upsample anyway, or work at the scan's resolution (--mpp {self.mpp:.3g} "
                    "on tile, embed and pretrain; score reads at its model's µm/px); when the file's resolution is "
                    "wrong, give the real one with --slide-mpp",
            )

    def upsample_note(self, mpp: float) -> str | None:
        """What reading at ``mpp`` costs when it upsamples the scan (None when it does not): a
        warning for the log and for the outputs' ``warnings``."""
        if self.mpp <= mpp * (1 + COARSER_TOLERANCE):
            return None
        return (f"a {self.mpp:.3g} µm/px scan is read upsampled {self.mpp / mpp:.1f}x to {mpp:.3g} µm/px "
                f"(--allow-upsample): the tiles hold less detail than a {mpp:.3g} µm/px scan's")

    # -- reading -----------------------------------------------------------------
    def read_region(self, x: int, y: int, size_px: int | tuple[int, int], mpp: float) -> np.ndarray:
        """RGB uint8 array of ``size_px`` pixels at ``mpp`` µm/px, top-left at level-0 ``(x, y)``.

        Areas outside the slide or transparent in the file come back white.
        """
        out_w, out_h = (size_px, size_px) if isinstance(size_px, int) else size_px
        scale = read_scale(self.mpp, mpp)  # level-0 pixels per output pixel (a ratio near a whole one: that)
        level = self.best_level_for_mpp(mpp)
        ds = self.level_downsamples[level]
        w = max(1, math.ceil(out_w * scale / ds - 1e-6))
        h = max(1, math.ceil(out_h * scale / ds - 1e-6))
        try:
            rgba = self.backend.read_region((int(x), int(y)), level, (w, h))
        except Exception as exc:
            raise SlideError(f"cannot read pixels at ({x}, {y}) ({_short(exc)})", path=self.path,
                             fix="the file may be damaged; copy or export it again") from None
        if rgba.getextrema()[3][0] == 255:
            # Fully opaque (the usual case): drop alpha before resizing. Same pixels as the general
            # path (Pillow resizes RGBA premultiplied, a no-op at alpha 255), in about 60 % of the time.
            rgb = rgba.convert("RGB")
            if (w, h) != (out_w, out_h):
                rgb = resize_tile(rgb, (out_w, out_h))
            return np.array(rgb)
        if (w, h) != (out_w, out_h):
            rgba = resize_tile(rgba, (out_w, out_h))
        return rgba_to_rgb(np.asarray(rgba))

    def read_thumbnail(self, mpp: float, min_reduction: float = 1.0) -> np.ndarray:
        """The whole slide as RGB at (approximately) ``mpp`` µm/px.

        Reads from the best pyramid level in bounded blocks, so memory stays small even
        for single-level slides. The output size is ``round(level-0 size * slide_mpp / mpp)``.
        ``min_reduction``: read from a level at least this many times finer than ``mpp`` (where the
        slide has one), so that the thumbnail is this reader's reduction, not a stored level's.
        """
        from PIL import Image

        W, H = self.dimensions
        out_w = max(1, round(W * self.mpp / mpp))
        out_h = max(1, round(H * self.mpp / mpp))
        if self.vendor == "generic-tiff" and self.level_count == 1:
            from weakstil.tiff_layout import subifd_overview

            # OpenSlide reads no SubIFD (an OME-TIFF pyramid's levels): it read level 0 whole, minutes a slide
            stored = subifd_overview(self.path, W, mpp / min_reduction, self.mpp)
            if stored is not None:
                return np.asarray(Image.fromarray(stored).resize(
                    (out_w, out_h), Image.Resampling.BILINEAR, reducing_gap=THUMBNAIL_REDUCING_GAP))
        level = self.best_level_for_mpp(mpp / min_reduction)
        lw, lh = self.backend.level_dimensions[level]
        ds = self.level_downsamples[level]
        fx, fy = lw / out_w, lh / out_h  # level pixels per output pixel
        slow = fx * fy > SLOW_OVERVIEW_FACTOR and lw * lh > SLOW_OVERVIEW_PIXELS
        key = _overview_key(self.path, level, out_w, out_h) if slow else None
        if key is not None and key in _SLOW_OVERVIEW:
            return _SLOW_OVERVIEW[key].copy()
        read_before = level == 0 and _overview_key(self.path, 0, W, H) in (kept_levels() or {})  # (not slow now)
        if slow and not read_before and not self._slow_overview_warned:
            self._slow_overview_warned = True
            from weakstil.tiff_layout import subifd_levels

            hidden = subifd_levels(self.path) if self.vendor == "generic-tiff" else 0
            log.warning("%s: no pyramid level near %.3g µm/px; the overview is read from %s of %.0f Mpx (level %d), "
                        "which takes minutes for a large slide (%s)", self.path, mpp,
                        "the full-resolution image" if level == 0 else "a level", lw * lh / 1e6, level,
                        f"its {hidden} reduced level(s) are SubIFDs, as in an OME-TIFF pyramid, which OpenSlide does "
                        "not read: an export with the levels as top-level images, e.g. 'vips tiffsave IN OUT.tif "
                        "--tile --pyramid --compression jpeg', is read in seconds" if hidden else
                        "a pyramidal export, e.g. vips tiffsave --pyramid, is read in seconds")
        whole = self._whole_level(level)
        block = max(16, int(MAX_READ_BLOCK / max(fx, fy)))
        out = np.empty((out_h, out_w, 3), np.uint8)
        for ty in range(0, out_h, block):
            ty1 = min(out_h, ty + block)
            ly0, ly1 = math.floor(ty * fy), min(lh, math.ceil(ty1 * fy))
            for tx in range(0, out_w, block):
                tx1 = min(out_w, tx + block)
                lx0, lx1 = math.floor(tx * fx), min(lw, math.ceil(tx1 * fx))
                try:
                    rgba = self.backend.read_region(
                        (int(lx0 * ds), int(ly0 * ds)), level, (max(1, lx1 - lx0), max(1, ly1 - ly0))
                    ) if whole is None else Image.fromarray(whole[ly0:max(ly1, ly0 + 1), lx0:max(lx1, lx0 + 1)], "RGBA")
                except Exception as exc:
                    raise SlideError(f"cannot read pixels ({_short(exc)})", path=self.path,
                                     fix="the file may be damaged; copy or export it again") from None
                rgba = rgba.resize((tx1 - tx, ty1 - ty), Image.Resampling.BILINEAR, reducing_gap=THUMBNAIL_REDUCING_GAP)
                out[ty:ty1, tx:tx1] = rgba_to_rgb(np.asarray(rgba))
        if key is not None:
            _SLOW_OVERVIEW.clear()
            _SLOW_OVERVIEW[key] = out.copy()
        return out

    def _whole_level(self, level: int) -> np.ndarray | None:
        """The whole image of a single-level slide (``level`` 0 of 1) as RGBA, read once for the overviews of
        one run (:func:`weakstil.whole_level.whole_levels_kept`); None outside one, for a pyramid level, or where
        it would take much of the memory."""
        from weakstil.memory import available_memory

        kept = kept_levels()
        if kept is None or level != 0 or self.level_count != 1:
            return None
        W, H = self.dimensions
        key = _overview_key(self.path, 0, W, H)
        if key is None or (key not in kept and 4 * W * H > available_memory() // LEVEL0_MEMORY_SHARE):
            return None
        if key not in kept:
            kept.clear()  # (the last slide's first)
            whole = np.empty((H, W, 4), np.uint8)
            for y in range(0, H, MAX_READ_BLOCK):
                for x in range(0, W, MAX_READ_BLOCK):
                    w, h = min(MAX_READ_BLOCK, W - x), min(MAX_READ_BLOCK, H - y)
                    try:
                        whole[y:y + h, x:x + w] = np.asarray(self.backend.read_region((x, y), 0, (w, h)))
                    except Exception as exc:
                        raise SlideError(f"cannot read pixels ({_short(exc)})", path=self.path,
                                         fix="the file may be damaged; copy or export it again") from None
            kept[key] = whole
        return kept[key]

    def describe(self) -> str:
        """One line for people: size, resolution, vendor and pyramid (``weakstil info``)."""
        W, H = self.dimensions
        levels = levels_text(self.backend, self.path)
        return (f"{self.path}: {W}x{H} px, {self.mpp:.4g} µm/px ({self.mpp_source.value}), "
                f"{W * self.mpp / 1000:.2f}x{H * self.mpp / 1000:.2f} mm, vendor {self.vendor}, levels [{levels}]")

    def info(self) -> dict[str, object]:
        """Metadata worth recording with every output."""
        from weakstil.annotation_frame import bounds_origin
        from weakstil.annotation_ndpa import ndpi_offsets

        return {
            "slide_path": str(self.path.resolve()),  # absolute: viewers find the slide from any folder
            "slide_id": self.slide_id,
            "slide_mpp": float(self.mpp),
            "slide_mpp_source": self.mpp_source.value,
            "slide_width": int(self.dimensions[0]),
            "slide_height": int(self.dimensions[1]),
            "slide_vendor": self.vendor,
            "slide_levels": int(self.level_count),
            "slide_fingerprint": self.fingerprint,
            # the scanned area's corner (MIRAX), where QuPath's coordinates start: only on such a slide
            **bounds_origin(self.backend.properties),
            # an NDPI's image centre from the glass slide's centre (nm), where NDP.view's .ndpa coordinates start
            **ndpi_offsets(self.backend.properties),
        }


def _is_link_loop(path: Path) -> bool:
    """Whether following the symbolic link ``path`` comes back to it (``ln -s a b; ln -s b a``)."""
    import errno

    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def levels_text(backend: SlideBackend, path: str | Path) -> str:
    """The pyramid's downsamples, as ``weakstil info`` lists them: OpenSlide's levels, and an OME-TIFF's reduced
    images (SubIFDs), which OpenSlide does not read but the overviews do (hunt 35d), after them, so named
    (info listed such a slide's levels as [1], hunt 36b)."""
    levels = ", ".join(f"{d:g}" for d in backend.level_downsamples)
    if backend.vendor == "generic-tiff" and backend.level_count == 1:
        from weakstil.tiff_layout import subifd_sizes

        width = backend.dimensions[0]
        reduced = [f"{width / w:.4g}" for w, _ in subifd_sizes(path)]
        if reduced:
            levels += f", {', '.join(reduced)} (SubIFDs, read for overviews)"
    return levels


def describe_without_mpp(path: str | Path) -> str:
    """``weakstil info``'s line for a slide whose metadata has no µm/px (what is known, and the fix)."""
    from weakstil.slide_backend import open_backend

    backend = open_backend(Path(path))
    try:
        W, H = backend.dimensions
        levels = levels_text(backend, path)
        said = _missing_mpp_notes(backend)
        return (f"{path}: {W}x{H} px, µm/px unknown (none in the metadata{'; ' + said if said else ''}: tile, embed "
                f"and score need --slide-mpp), vendor {backend.vendor}, levels [{levels}]")
    finally:
        backend.close()


def slide_id_from_path(path: str | Path) -> str:
    """The file name without its (possibly double) extension: ``a/b/S1.ome.tiff`` -> ``S1``.

    A glob pattern that matched nothing keeps its whole name (``*.svs``, not ``*``), so its error
    row says which pattern it was; a file with ``[ ] * ?`` in its name is named as any other."""
    name = Path(path).name
    if glob.has_magic(name) and not os.path.lexists(path):
        return name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def slide_id_problem(slide_id: str) -> str | None:
    """Why ``slide_id`` cannot name a slide's outputs (``<out>/<slide_id>.h5``), or ``None``. One rule for a
    cohort CSV's slide_id (train, evaluate) and a slide file's own id (:func:`slide_id_from_path`: score, tile,
    embed), so a file one command takes the other takes too: ``score`` wrote ``.dot.tiff``'s outputs as hidden
    files (``.dot.h5``) that ``train`` then refused as a cohort slide id."""
    if slide_id == "":
        return "slide_id is empty"
    if any(ch in slide_id for ch in "/\\"):
        return f"slide_id {slide_id!r} contains a path separator"
    if slide_id.startswith("."):  # '..' or '.x': output files named '...h5' / '.x.h5' are hidden or look temporary
        return f"slide_id {slide_id!r} starts with '.' (its output files would be hidden)"
    return None


def rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """Composite OpenSlide's RGBA onto white (transparent = outside the scanned area)."""
    if rgba.ndim == 3 and rgba.shape[2] == 3:
        return np.ascontiguousarray(rgba)
    rgb = rgba[..., :3]
    alpha = rgba[..., 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgb)
    a = alpha[..., None].astype(np.float32) / 255.0
    return (rgb.astype(np.float32) * a + 255.0 * (1.0 - a)).round().astype(np.uint8)


def _overview_key(path: Path, level: int, out_w: int, out_h: int) -> tuple | None:
    """The file (its resolved path, size and modification time) and overview size a read is of; None
    when the file cannot be looked at (then nothing is kept)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, level, out_w, out_h)


# the checks that a thumbnail is brightfield H&E live in weakstil.image_checks (imported here by name for
# the callers that always found them here)
from weakstil.image_checks import (  # noqa: E402, F401
    DARK_IMAGE,
    brightfield_warning,
    greyscale_reason,
    underexposed_reason,
)
