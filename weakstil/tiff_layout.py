"""Pixel layouts of a generic TIFF that OpenSlide opens but reads wrongly or not at all.

OpenSlide reads a generic TIFF's pixels through libtiff's RGBA interface, which

* applies an alpha channel (an extra sample, also one marked "unspecified") to every pixel: a
  writer that stores an unused alpha channel as 0 (an RGBA array from a script) gives a slide
  whose every pixel is transparent, which WeakSTIL read as blank glass ("no tissue found: check the
  slide is not blank");
* keeps the top 8 bits of 16-bit samples: a camera's 12- or 14-bit values stored in 16 bits read
  as a black image ("mostly dark image (fluorescence or darkfield?)");
* reads a palette-colour image (a colour map of at most 256 colours, a posterized copy of a scan)
  as if it were a scan: its sTIL% moved by 3-16 points from the RGB original's (hunt 41b);
* refuses 32-bit samples ("Sorry, can not handle images with 32-bit samples"), which WeakSTIL
  called damaged pixel data ("copy or export the slide again", which cannot help);
* reads the top-level images only: an OME-TIFF pyramid's reduced levels, SubIFDs of the first
  image, are not levels for it (:func:`subifd_levels`, named by the slow-overview warning): the overviews
  read them here instead (:func:`subifd_overview`; OpenSlide read level 0 whole for each, minutes a slide).

:func:`layout_problem` says which, as ``(reason, fix)``, from tifffile's reading of the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

#: The smallest image is read whole (to look at its alpha or sample range) up to this many pixels.
MAX_CHECK_PIXELS = 16_000_000
#: A brightfield scan's glass is near white: 16-bit samples whose largest value is under this share
#: of 65535 leave the top bits unused (a 12- or 14-bit camera), and their top 8 bits read dark.
LOW_BITS_SHARE = 0.5

_CONVERT = "'vips tiffsave IN OUT.tif --tile --pyramid --compression jpeg'"


def layout_problem(path: str | Path, handle) -> tuple[str, str] | None:
    """``(reason, fix)`` when OpenSlide (``handle``, a generic TIFF) reads ``path``'s pixels
    wrongly: all transparent, or 16-bit samples using only their low bits; else None."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            page = tif.pages.first
            spp, bits = int(page.samplesperpixel), int(page.bitspersample)
            extra = len(page.extrasamples or ())
            if int(page.photometric) == 3:  # PALETTE: one 8-bit (or 4-bit) index a pixel into a colour map
                n = 1 << min(bits, 16)
                return (f"is a palette-colour image (at most {n} colours for the whole slide, a posterized copy of a "
                        "scan, not a scanner's RGB): its sTIL% moved by 3 to 16 points from the RGB scan's in our "
                        "measurements",
                        "score the original RGB scan (or export the slide again in RGB from it); converting this "
                        "file to RGB will not bring back the colours it lost")
            if (pages := _channel_pages(tif)):
                return (f"holds its colour as {pages} greyscale images of the same size, one channel a page (R, G, "
                        "B, as an image stack is exported), and OpenSlide reads the first page alone: a greyscale "
                        "image without the colours of H&E",
                        "merge the pages into one RGB image (ImageJ: Image > Color > Stack to RGB; vips: 'vips "
                        "bandjoin \"IN[page=0] IN[page=1] IN[page=2]\" T.v' then "
                        f"{_CONVERT.replace('IN', 'T.v')}); copying it again will not help")
            if bits == 16 and spp >= 3:
                small = min(tif.pages, key=lambda p: int(p.imagewidth) * int(p.imagelength))
                if int(small.imagewidth) * int(small.imagelength) <= MAX_CHECK_PIXELS:
                    top = int(np.asarray(small.asarray())[..., :3].max())
                    if top < LOW_BITS_SHARE * 65535:
                        used = max(1, top.bit_length())
                        return (f"has 16-bit samples that use only their low {used} bits (largest value {top} of "
                                "65535, e.g. a 12-bit camera's): OpenSlide reads the top 8 bits of each, so the "
                                "scan reads almost black",
                                f"convert it to 8-bit RGB with the values scaled to 0-255 (e.g. 'vips linear IN "
                                f"T.v {256 / 2 ** used:.6g} 0 --uchar' then {_CONVERT.replace('IN', 'T.v')}); "
                                "copying it again will not help")
    except Exception:  # what OpenSlide opened, tifffile may not: nothing to say
        return None
    if extra and spp > 3 and _all_transparent(handle):
        return ("has an alpha channel (a 4th sample) that is 0 everywhere, so every pixel is transparent and "
                "OpenSlide reads a blank slide",
                "export it without the alpha channel (e.g. 'vips extract_band IN T.v 0 --n 3' then "
                f"{_CONVERT.replace('IN', 'T.v')}); copying it again will not help")
    return None


def _all_transparent(handle) -> bool:
    """Whether the smallest level that OpenSlide reads is transparent throughout."""
    level = int(handle.level_count) - 1
    w, h = handle.level_dimensions[level]
    ds = handle.level_downsamples[level]
    if w * h > MAX_CHECK_PIXELS:  # a single large level: its centre
        side = int(MAX_CHECK_PIXELS ** 0.5)
        x0, y0 = max(0, (w - side) // 2), max(0, (h - side) // 2)
        w, h = min(w, side), min(h, side)
    else:
        x0 = y0 = 0
    try:
        rgba = handle.read_region((int(x0 * ds), int(y0 * ds)), level, (w, h))
    except Exception:  # unreadable pixels are the probe's to report
        return False
    return rgba.getextrema()[3][1] == 0


#: libtiff's "Sorry, can not handle images with 32-bit samples" (and the like) from the RGBA reader.
_CANNOT_HANDLE = re.compile(r"can ?not handle (images? with [^.;)]+|[^.;)]*?(?:samples|bits)[^.;)]*)",
                            re.IGNORECASE)


def unreadable_layout(message: str) -> tuple[str, str] | None:
    """``(reason, fix)`` when an OpenSlide read error says libtiff cannot handle the pixel layout
    (32-bit or floating-point samples...), which no copy of the file mends; else None."""
    found = _CANNOT_HANDLE.search(message)
    if found is None:
        return None
    return (f"its pixels are stored in a layout OpenSlide does not read ({found.group(1).strip()})",
            f"convert it to 8-bit RGB with the values scaled to 0-255 (e.g. 'vips linear IN T.v 255 0 --uchar' for "
            f"floats from 0 to 1, then {_CONVERT.replace('IN', 'T.v')}); copying it again will not help")


def subifd_levels(path: str | Path) -> int:
    """How many reduced images the first image of the TIFF ``path`` holds as SubIFDs (an OME-TIFF
    pyramid: OpenSlide reads the top-level images only, so such a slide has one level for it)."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            return len(tif.pages.first.subifds or ())
    except Exception:  # not a TIFF tifffile reads
        return 0


#: A reduced image (SubIFD) is read whole for an overview up to this many pixels (300 MB of RGB).
MAX_SUBIFD_OVERVIEW_PIXELS = 100_000_000


def subifd_sizes(path: str | Path) -> list[tuple[int, int]]:
    """Width and height of each RGB 8-bit reduced image (SubIFD) of the TIFF ``path``'s first image, finest
    first (an OME-TIFF pyramid's levels, which OpenSlide does not read); [] when it has none."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            levels = _subifd_levels(tif)
            return [(int(level.shape[1]), int(level.shape[0])) for level in levels]
    except Exception:  # not a TIFF tifffile reads
        return []


def _subifd_levels(tif) -> list:
    """tifffile's levels of the first image's SubIFDs, when all are RGB uint8 (what OpenSlide would read)."""
    first = tif.pages.first
    series = tif.series[0] if first.subifds and tif.series else None
    if series is None or series.levels[0].keyframe.offset != first.offset:
        return []
    levels = list(series.levels[1:])
    for level in levels:
        if len(level.shape) != 3 or level.shape[-1] != 3 or level.dtype != np.uint8 or \
                level.keyframe.photometric not in (2, 6):
            return []
    return levels


def subifd_overview(path: str | Path, width: int, mpp: float, slide_mpp: float) -> np.ndarray | None:
    """The coarsest reduced image (SubIFD) of the TIFF ``path``'s first image (``width`` px across at
    ``slide_mpp`` µm/px) still at least as fine as ``mpp`` (1 % slack, as for pyramid levels), as RGB
    uint8; None when it has none that fits (or no RGB one, or tifffile cannot read it)."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            pick = None
            for level in _subifd_levels(tif):  # finest first
                if slide_mpp * width / level.shape[1] <= mpp * 1.01:
                    pick = level
            if pick is None or pick.shape[0] * pick.shape[1] > MAX_SUBIFD_OVERVIEW_PIXELS:
                return None
            return np.ascontiguousarray(pick.asarray())
    except Exception:  # a SubIFD tifffile cannot read: OpenSlide's full-resolution read, as before
        return None


#: ResolutionUnit values beyond baseline TIFF (DNG's, which tifffile writes as 'MILLIMETER' and
#: 'MICROMETER'): micrometres per unit. OpenSlide knows only inch and centimetre.
_EXTRA_UNITS_UM = {4: 1000.0, 5: 1.0}


def extra_unit_mpp_xy(path: str | Path) -> tuple[float | None, float | None]:
    """µm/px along x and y of a TIFF whose first image states its resolution in millimetres or
    micrometres (ResolutionUnit 4 or 5); ``(None, None)`` otherwise."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            tags = tif.pages.first.tags
            unit = int(tags.valueof(296, default=2))
            if unit not in _EXTRA_UNITS_UM:
                return None, None
            out = []
            for code in (282, 283):
                value = tags.valueof(code)
                ppu = value[0] / value[1] if isinstance(value, tuple) and value[1] else float(value or 0)
                out.append(_EXTRA_UNITS_UM[unit] / ppu if ppu > 0 else None)
            return out[0], out[1]
    except Exception:  # not a TIFF tifffile reads, odd tag values
        return None, None


#: TIFF ResolutionUnit -> micrometres per unit, the inch and centimetre with the millimetre and micrometre.
_UNITS_UM = {2: 25400.0, 3: 10000.0, **_EXTRA_UNITS_UM}


def subifd_mpp(path: str | Path) -> float | None:
    """The full-resolution µm/px that the first reduced image (SubIFD) of the TIFF ``path``'s first image states in its
    resolution tags, scaled by its size to the first image's: a pyramid whose writer put the resolution on its reduced
    images only (helper h44d; OpenSlide reads the first image's tags, here a writer's default '1 px per unit'). None
    without one, or when x and y differ; said when the slide has no µm/px, never used (the user confirms it)."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            first = tif.pages.first
            if not first.subifds:
                return None
            tif.filehandle.seek(first.subifds[0])  # a SubIFD is read where the file handle stands
            sub = tifffile.TiffPage(tif, index=(0, 0))
            unit = int(sub.tags.valueof(296, default=2))
            values = []
            for code in (282, 283):
                value = sub.tags.valueof(code)
                ppu = value[0] / value[1] if isinstance(value, tuple) and value[1] else float(value or 0)
                values.append(_UNITS_UM[unit] / ppu * sub.imagewidth / first.imagewidth if ppu > 0 and unit in _UNITS_UM
                              else None)
    except Exception:  # not a TIFF tifffile reads, odd tag values
        return None
    x, y = values
    return x if x is not None and y is not None and abs(x - y) <= 0.02 * min(x, y) else None


def unordered_levels(path: str | Path) -> tuple[int, tuple[int, int], tuple[int, int]] | None:
    """``(page, its (w, h), the (w, h) of the tiled image before it)`` for the first tiled top-level
    image of the TIFF ``path`` that is not smaller than the one before it in both width and height:
    OpenSlide's generic-TIFF reader takes every tiled image for a pyramid level and refuses the file
    ("Downsampled images not correctly ordered") when one is not (a label or macro image stored
    tiled after the pyramid). None when the tiled images shrink in order."""
    try:
        import tifffile

        with tifffile.TiffFile(str(path)) as tif:
            tiled = [(i, (int(p.imagewidth), int(p.imagelength))) for i, p in enumerate(tif.pages) if p.is_tiled]
    except Exception:  # not a TIFF tifffile reads
        return None
    for (_, before), (i, size) in zip(tiled, tiled[1:]):
        if size[0] > before[0] or size[1] > before[1]:
            return i, size, before
    return None


def _channel_pages(tif) -> int:
    """How many single-sample (greyscale) images of the first image's size the open TIFF
    ``tif`` starts with, when there are 3 or 4: colour channels stored one a page (an ImageJ stack
    of an RGB image's red, green and blue, a microscope camera's export), which OpenSlide reads as
    one grey page (the slide was refused as having no tissue, or as a greyscale scan to be scanned
    again in colour). 0 otherwise: a grey scan's pyramid shrinks from page to page."""
    first = tif.pages.first
    size = (int(first.imagewidth), int(first.imagelength))
    n = 0
    for page in tif.pages[:4]:
        if int(page.samplesperpixel) != 1 or (int(page.imagewidth), int(page.imagelength)) != size:
            break
        n += 1
    return n if n >= 3 else 0


#: Common scan resolutions (µm/px, 40x and 20x): a TIFF whose resolution tags give one of them times or
#: divided by 2.54 most likely holds a px/cm figure under ResolutionUnit inch, or px/inch under centimetre.
COMMON_SCAN_MPP = (0.25, 0.5)
UNIT_SLIP_TOLERANCE = 0.02


def unit_slip(mpp: float, properties) -> tuple[str, float] | None:
    """``(why, likely µm/px)`` when a TIFF's µm/px (from its resolution tags: ``properties`` are
    OpenSlide's) is a common scan resolution times 2.54 under ResolutionUnit inch, or divided by 2.54
    under centimetre: a writer that stored px/cm as px/inch or the reverse. A 0.5 µm/px scan read as
    0.197 was scored at 2.54x too coarse a magnification (nuclei a third of their size: sTIL% 49.8
    against 30.7 on a synthetic slide, flagged only as out of distribution); read as 1.27 it was
    refused as a coarse scan with --allow-upsample as the fix. None otherwise (and for any file but a
    plain TIFF: the vendors' formats state µm/px in their own metadata)."""
    unit = str(properties.get("tiff.ResolutionUnit", "")).lower()
    factor = {"inch": 2.54, "centimeter": 1 / 2.54}.get(unit)
    if factor is None or "openslide.mpp-x" not in properties or properties.get("openslide.vendor") != "generic-tiff":
        return None
    for common in COMMON_SCAN_MPP:
        if abs(mpp / (common * factor) - 1) <= UNIT_SLIP_TOLERANCE:
            op = "times" if unit == "inch" else "divided by"
            other = "centimetre" if unit == "inch" else "inch"
            return (f"its {mpp:.4g} µm/px is {common:g} µm/px {op} 2.54: the TIFF's resolution tags may hold px per "
                    f"{other} under ResolutionUnit {unit}", common)
    return None
