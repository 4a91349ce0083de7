"""Slide backends: the few operations WeakSTIL needs from a whole-slide image library.

:class:`SlideBackend` is the protocol (after dlup's ``AbstractSlideBackend``): pyramid geometry,
the metadata's µm/px, vendor properties, reading a region of a level, closing. Every stage
reads slides through :class:`weakstil.slide.Slide`, which talks only to this protocol, so
another reader (e.g. tifffile or a DICOM library) is added here without touching the stages.
Today there is one backend, :class:`OpenSlideBackend`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from weakstil.errors import SlideError
from weakstil.errors import short_reason as _short

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

log = logging.getLogger(__name__)
# tifffile logs a damaged file's details as warnings ('<tifffile.TiffPages @8> invalid page offset'): the
# commands set its level, but where WeakSTIL runs as a library (the Snakefile's preflight, a notebook) with no
# logging set up, Python's last-resort handler printed that bare line before our error (hunt 44c). A handler
# that drops them stops only that; an application's own logging still receives them.
logging.getLogger("tifffile").addHandler(logging.NullHandler())


@runtime_checkable
class SlideBackend(Protocol):
    """An open whole-slide image. Locations are level-0 pixels ``(x, y)``; sizes are ``(w, h)``."""

    path: Path

    @property
    def dimensions(self) -> tuple[int, int]: ...

    @property
    def level_count(self) -> int: ...

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]: ...

    @property
    def level_downsamples(self) -> tuple[float, ...]: ...

    @property
    def mpp(self) -> float | None:
        """Level-0 µm/px from the file's metadata, ``None`` when it records none."""

    @property
    def mpp_xy(self) -> tuple[float | None, float | None]:
        """Level-0 µm/px along x and y from the metadata (pixels may be recorded as not square)."""

    @property
    def vendor(self) -> str: ...

    @property
    def properties(self) -> Mapping[str, str]: ...

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        """RGBA image of ``size`` level pixels whose top-left is ``location`` (level-0 px);
        transparent where the slide has no pixels."""

    def close(self) -> None: ...


class OpenSlideBackend:
    """OpenSlide (SVS, NDPI, MRXS, SCN, BIF, DICOM, tiled TIFF...)."""

    def __init__(self, path: Path, handle):
        self.path = path
        self._handle = handle

    @classmethod
    def open(cls, path: str | Path) -> OpenSlideBackend:
        """Open ``path``; a file OpenSlide cannot read is one :class:`SlideError` saying why."""
        import openslide

        path = Path(path)
        try:  # OpenSlide calls a file it may not read "an unsupported format" (hunt 35c: 'convert it')
            with open(path, "rb"):
                pass
        except PermissionError:
            raise SlideError("cannot be read: permission denied (this user may not read the file)", path=path,
                             fix=f"make it readable (chmod a+r {path}), or ask its owner to") from None
        except OSError:  # a folder, a missing file...: OpenSlide's own error, as before
            pass
        try:
            handle = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError:
            kind = _sniff_container(path)
            if kind == "big-endian TIFF":  # valid, but OpenSlide reads little-endian TIFF only
                raise SlideError(
                    "is a big-endian TIFF (byte order 'MM'), which OpenSlide does not read",
                    path=path,
                    fix="convert it to a little-endian pyramidal TIFF (e.g. 'vips tiffsave IN OUT.tif --tile "
                        "--pyramid --compression jpeg'); copying it again will not help",
                ) from None
            tiled = _tiled_after_strips(path) if kind == "TIFF" else None
            if tiled is not None:  # a small image in strips first (a thumbnail), the tiled slide after it
                page, (w, h), (fw, fh) = tiled
                raise SlideError(
                    f"is a TIFF whose first image ({fw}x{fh} px, a thumbnail?) is stored in strips, and OpenSlide reads "
                    f"a generic TIFF only when its first image is tiled; its tiled image {page} ({w}x{h} px) is the slide",
                    path=path,
                    # vips reads a file's first image unless told: the conversion of a bare IN was the thumbnail's
                    fix=f"export that image as a pyramid (e.g. 'vips tiffsave \"IN[page={page}]\" OUT.tif --tile --pyramid "
                        "--compression jpeg'); copying it again will not help",
                ) from None
            if kind == "TIFF" and _stored_in_strips(path):  # valid, but OpenSlide reads tiled TIFF only
                raise SlideError(
                    "is a TIFF stored in strips, not tiles, which OpenSlide does not read",
                    path=path,
                    fix="convert it to a tiled pyramidal TIFF (e.g. 'vips tiffsave IN OUT.tif --tile --pyramid "
                        "--compression jpeg'); copying it again will not help",
                ) from None
            from weakstil.tiff_layout import unordered_levels

            extra = unordered_levels(path) if kind == "TIFF" else None
            if extra is not None:  # valid, but an extra tiled image breaks OpenSlide's generic-TIFF pyramid
                page, (w, h), (bw, bh) = extra
                raise SlideError(
                    f"is a TIFF whose tiled images do not shrink in order (image {page}, {w}x{h} px, follows one "
                    f"of {bw}x{bh} px: a label or macro image stored in tiles?), which OpenSlide does not read as "
                    "a pyramid",
                    path=path,
                    fix="export the slide's pyramid alone (e.g. 'vips tiffsave IN OUT.tif --tile --pyramid "
                        "--compression jpeg', which writes the first image's pyramid); copying it again will not help",
                ) from None
            if kind is not None:
                raise SlideError(
                    f"looks like a {kind} file but OpenSlide cannot read it: it may be truncated, damaged "
                    "or an unsupported variant",
                    path=path,
                    fix="copy or export the slide again, or convert it to a pyramidal TIFF",
                ) from None
            other = _not_a_slide(path)
            if other is not None:  # a cohort CSV or a plain image given where the slides go
                raise SlideError(other[0], path=path, fix=other[1]) from None
            listed = _listed_slides(path)
            if listed:  # a lab's slide list given where the slides go
                raise SlideError(
                    f"is a text file listing {listed} slide(s), not a slide",
                    path=path,
                    fix=f"pass the slides themselves, or the list itself: --slides {path} (every command that takes "
                        "slides reads it, paths with spaces whole)",
                ) from None
            raise SlideError(
                "not a slide format OpenSlide can read",
                path=path,
                fix="check the file is a whole-slide image (SVS, NDPI, MRXS, DICOM, tiled TIFF...) "
                "or convert it to a pyramidal TIFF",
            ) from None
        except openslide.OpenSlideError as exc:
            codec = _unsupported_compression(str(exc))
            if codec is not None:  # valid, but tiles OpenSlide's TIFF reader cannot decode
                raise SlideError(f"its tiles are compressed with {codec}, which OpenSlide does not read in this "
                                 "kind of TIFF", path=path,
                                 fix="convert it to a pyramidal TIFF with JPEG (or LZW/Deflate) tiles, e.g. 'vips "
                                     "tiffsave IN OUT.tif --tile --pyramid --compression jpeg'; copying it again "
                                     "will not help") from None
            raise SlideError(
                f"OpenSlide cannot open it ({_short(exc)})",
                path=path,
                fix="the file may be damaged or an unsupported variant; re-export or convert it",
            ) from None
        except Exception as exc:  # e.g. OSError from the library on odd files
            raise SlideError(f"cannot open it ({_short(exc)})", path=path, fix="check the file") from None
        if handle.properties.get("openslide.vendor") == "generic-tiff":
            first = tuple(handle.dimensions)
            larger = _larger_image_than(path, first)
            if larger is not None:
                handle.close()
                page, w, h = larger
                # vips, like OpenSlide, reads a file's first image unless told: a bare IN exported the small one
                raise SlideError(f"holds a larger image (image {page}, {w}x{h} px) than the one OpenSlide reads as "
                                 f"full resolution ({first[0]}x{first[1]} px): a pyramid written smallest level "
                                 "first, or a label or thumbnail image before the slide", path=path,
                                 fix=f"export the larger image as a pyramid (e.g. 'vips tiffsave \"IN[page={page}]\" "
                                     "OUT.tif --tile --pyramid --compression jpeg')")
            from weakstil.tiff_layout import layout_problem

            wrong = layout_problem(path, handle)
            if wrong is not None:  # read, but not as the scan's pixels (all transparent, 16-bit low bits)
                handle.close()
                raise SlideError(wrong[0], path=path, fix=wrong[1])
        return cls(path, handle)

    @staticmethod
    def can_open(path: str | Path) -> bool:
        """Whether OpenSlide recognises the file (cheap: reads its header)."""
        try:
            import openslide

            return openslide.OpenSlide.detect_format(str(path)) is not None
        except Exception:  # an unreadable file
            return False

    @property
    def dimensions(self) -> tuple[int, int]:
        return tuple(self._handle.dimensions)  # type: ignore[return-value]

    @property
    def level_count(self) -> int:
        return int(self._handle.level_count)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple(tuple(d) for d in self._handle.level_dimensions)  # type: ignore[misc]

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(self._handle.level_downsamples)

    @property
    def properties(self) -> Mapping[str, str]:
        return self._handle.properties

    @property
    def vendor(self) -> str:
        return self._handle.properties.get("openslide.vendor", "unknown")

    @property
    def mpp_xy(self) -> tuple[float | None, float | None]:
        """Level-0 µm per pixel along x and along y from the metadata (None where absent or not a
        positive number)."""
        props = self._handle.properties
        if self.vendor == "generic-tiff":
            # an OME-TIFF's resolution is its OME-XML's PhysicalSizeX/Y; its TIFF resolution tags are
            # no part of OME and often a writer's default (vips: 10 px/cm, i.e. 1000 µm/px; 72 dpi),
            # which OpenSlide reports and which refused the slide as implausible
            ome = ome_mpp_xy(props.get("tiff.ImageDescription", ""))
            if ome != (None, None):
                return ome
            if "openslide.mpp-x" not in props and props.get("tiff.ResolutionUnit") == "unknown":
                # millimetres or micrometres (DNG's units, tifffile's resolutionunit='MICROMETER'),
                # which OpenSlide reports as 'unknown' and reads no µm/px from
                from weakstil.tiff_layout import extra_unit_mpp_xy

                extra = extra_unit_mpp_xy(self.path)
                if extra != (None, None):
                    return extra
        values: list[float | None] = []
        for key in ("openslide.mpp-x", "openslide.mpp-y"):
            try:
                value = float(props[key])
            except (KeyError, ValueError):
                value = None
            values.append(value if value is not None and value > 0 and math.isfinite(value) else None)
        return values[0], values[1]

    @property
    def mpp(self) -> float | None:
        x, y = self.mpp_xy
        return x if x is not None else y

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> Image.Image:
        return self._handle.read_region(location, level, size)

    def close(self) -> None:
        try:
            self._handle.close()
        except Exception:  # already closed or unusable after an error
            pass


#: Backends tried in order when a slide is opened.
BACKENDS: tuple[type[OpenSlideBackend], ...] = (OpenSlideBackend,)


def open_backend(path: str | Path) -> SlideBackend:
    """``path`` opened by the first backend (today: OpenSlide); :class:`SlideError` when none can."""
    return BACKENDS[0].open(path)


def can_open(path: str | Path) -> bool:
    """Whether a backend recognises ``path`` as a slide."""
    return any(b.can_open(path) for b in BACKENDS)


#: OME length units -> micrometres.
_OME_UNIT_UM = {"µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4,
                "\u212b": 1e-4, "pm": 1e-6}


def ome_mpp_xy(description: str) -> tuple[float | None, float | None]:
    """µm/px along x and y from an OME-XML image description (the first ``Pixels`` element's
    ``PhysicalSizeX/Y`` in their ``...Unit``, µm by default); ``(None, None)`` when it has none."""
    import re

    if "<OME" not in description[:2000]:
        return None, None
    pixels = re.search(r"<(?:\w+:)?Pixels\b([^>]*)>", description)
    if pixels is None:
        return None, None
    import html

    # values unescaped as an XML parser would (an ASCII writer spells µm '&#181;m'), in either quotes
    found = re.findall(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')""", pixels.group(1))
    attrs = {name: html.unescape(double or single) for name, double, single in found}
    out: list[float | None] = []
    for axis in ("X", "Y"):
        try:
            value = float(attrs[f"PhysicalSize{axis}"]) * _OME_UNIT_UM[attrs.get(f"PhysicalSize{axis}Unit", "µm")]
        except (KeyError, ValueError):
            value = None
        out.append(value if value is not None and value > 0 and math.isfinite(value) else None)
    return out[0], out[1]


def _larger_image_than(path: Path, size: tuple[int, int]) -> tuple[int, int, int] | None:
    """``(page, width, height)`` of the largest image in the TIFF ``path`` when it is larger than ``size``
    (OpenSlide's level 0, the first image of a generic TIFF), or None."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            dims = [(int(p.imagewidth), int(p.imagelength), i) for i, p in enumerate(tif.pages)]
    except Exception:  # what OpenSlide opened, tifffile may not: nothing to compare
        return None
    big = max(dims, key=lambda d: d[0] * d[1], default=None)
    return (big[2], big[0], big[1]) if big is not None and big[0] > size[0] and big[1] > size[1] else None


def _stored_in_strips(path: Path) -> bool:
    """Whether ``path`` is a readable TIFF whose first image is stored in strips (not tiles)."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return not page.is_tiled and bool(page.dataoffsets) and page.shape is not None
    except Exception:  # not readable by tifffile either: the generic message
        return False


def _tiled_after_strips(path: Path) -> tuple[int, tuple[int, int], tuple[int, int]] | None:
    """``(page, (w, h), (first w, first h))`` when ``path``'s first image is stored in strips and a later,
    larger one in tiles (a thumbnail written before the slide): the largest such page; else None."""
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            first = tif.pages.first
            if first.is_tiled:
                return None
            size = (int(first.imagewidth), int(first.imagelength))
            tiled = [(int(p.imagewidth), int(p.imagelength), i) for i, p in enumerate(tif.pages)
                     if i and p.is_tiled and p.imagewidth > size[0] and p.imagelength > size[1]]
    except Exception:  # not readable by tifffile either: the generic message
        return None
    if not tiled:
        return None
    w, h, page = max(tiled)
    return page, (w, h), size


#: TIFF compression codes a writer may use that libtiff (OpenSlide's generic TIFF reader) does not decode.
_COMPRESSIONS = {34712: "JPEG 2000", 33003: "JPEG 2000 (Aperio YCbCr)", 33005: "JPEG 2000 (Aperio RGB)",
                 50000: "Zstandard", 50001: "WebP", 34925: "LZMA", 50002: "JPEG XL", 52546: "JPEG XL",
                 34887: "LERC"}


def _unsupported_compression(message: str) -> str | None:
    """The codec named by OpenSlide's "Unsupported TIFF compression: N", or None for other errors."""
    import re

    found = re.search(r"Unsupported TIFF compression: (\d+)", message)
    if found is None:
        return None
    code = int(found.group(1))
    return f"{_COMPRESSIONS[code]} (TIFF compression {code})" if code in _COMPRESSIONS else f"TIFF compression {code}"


def _sniff_container(path: Path) -> str | None:
    """'TIFF', 'big-endian TIFF' or 'DICOM' when the file's magic bytes say so, else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return None
    if head[:4] in (b"MM\x00*", b"MM\x00+"):
        return "big-endian TIFF"
    if head[:4] in (b"II*\x00", b"II+\x00"):
        return "TIFF"
    if head[128:132] == b"DICM":
        return "DICOM"
    return None


#: Magic bytes of plain images: a snapshot or tile export named like a slide is no pyramid.
_IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"BM", "BMP"), (b"GIF8", "GIF"))


def _not_a_slide(path: Path) -> tuple[str, str] | None:
    """(message, fix) for a file that is plainly something else than a slide: a cohort CSV (header
    with slide_id and path), or a plain JPEG/PNG image (a snapshot renamed .svs). Both were 'not a
    slide format OpenSlide can read', which says nothing of what to pass instead."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    for magic, kind in _IMAGE_MAGIC:
        if head.startswith(magic) and (kind != "BMP" or len(head) > 14):
            return (f"is a plain {kind} image, not a whole-slide image (no pyramid, no microns-per-pixel)",
                    "pass the scanner's slide file; to score such an image, convert it to a pyramidal TIFF (e.g. "
                    "'vips tiffsave IN OUT.tif --tile --pyramid --compression jpeg') and give its resolution with "
                    "--slide-mpp")
    first = head.decode("utf-8-sig", errors="replace").splitlines()[0] if head else ""
    columns = {c.strip().strip('"').casefold() for c in re.split(r"[,;\t]", first)}
    if {"slide_id", "path"} <= columns:
        # Every command that takes slides reads a cohort CSV as a slide list (--slides), so the fix is one
        # flag; it had said to pass the slides it lists, or to give the CSV to train/evaluate.
        return ("is a cohort CSV (slide_id, path, ...), not a slide: this command takes slide files",
                f"give it as a slide list: --slides {path} (its path column, relative to the CSV), or give the CSV "
                "to a command that takes a cohort (train, evaluate; tumorbed train/apply --cohort)")
    return None


def _listed_slides(path: Path) -> int:
    """How many lines of a small text file name existing files (paths relative to the working folder
    or to the list's own folder; blank and ``#`` lines skipped): a slide list given as a slide. 0 when
    the file is no such list (binary, large, or a line that names no file)."""
    try:
        if path.stat().st_size > 1_000_000:
            return 0
        lines = path.read_bytes().decode("utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError):
        return 0
    names = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    found = [n for n in names if Path(n).expanduser().is_file() or (path.parent / n).is_file()]
    return len(found) if found and len(found) == len(names) else 0


def slide_properties(slide_path: str) -> dict[str, str]:
    """OpenSlide's properties of the slide at ``slide_path`` (a file made before a property was recorded),
    ``{}`` when it is not there or not an OpenSlide file (moved, or replaced since: nothing is known)."""
    if not slide_path or not Path(slide_path).is_file():
        return {}
    try:
        import openslide

        with openslide.OpenSlide(slide_path) as handle:
            return dict(handle.properties)
    except Exception:
        return {}
