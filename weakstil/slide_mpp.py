"""A slide's resolution (µm/px): from its metadata or ``--slide-mpp``, checked, and what is said when it
is missing, implausible, non-square or in a slipped unit. Apart from :mod:`weakstil.slide` (its reader)."""

from __future__ import annotations

import logging
import math
import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from weakstil import settings
from weakstil.errors import NoMppError, SlideError

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.slide_backend import SlideBackend

log = logging.getLogger("weakstil.slide")  # (its lines were the reader's: named so still)
MPP_RANGE = settings.MPP_RANGE


class MppSource(str, Enum):
    """Where a slide's microns-per-pixel came from."""

    METADATA = "metadata"
    OVERRIDE = "override"


def objective_note(backend: SlideBackend) -> str:
    """What the metadata says of the objective when it gives no µm/px ("it says 40x"), or ""."""
    try:
        power = float(backend.properties.get("openslide.objective-power", ""))
    except (TypeError, ValueError):
        return ""
    return f"it says {power:g}x objective" if math.isfinite(power) and power > 0 else ""


def unitless_note(backend: SlideBackend) -> str:
    """What a TIFF's resolution tags say when they have no unit (ResolutionUnit 'none': pixels per
    unknown length, so no µm/px), or ""."""
    props = backend.properties
    if props.get("tiff.ResolutionUnit") != "none" or not props.get("tiff.XResolution"):
        return ""
    return f"its TIFF resolution tags give {props['tiff.XResolution']} px per unit, with ResolutionUnit none"


#: A resolution written as free text in a TIFF's ImageDescription by a scanner or converter OpenSlide
#: does not know ("MPP = 0.25", "mpp=0.5", "microns per pixel: 0.46", "0.5 um/px" is not matched), with a
#: word before it or an axis after it ("ScanMPP=0.25", "mpp_x=0.25", JSON's '"mpp": 0.25'): those two were
#: not matched until helper h42b, and the error said only "pass --slide-mpp".
_DESCRIBED_MPP = re.compile(r"(?<![A-Za-z])(?:[A-Za-z]*mpp|microns?[ _-]?per[ _-]?pixel|[uµ]m[ _]?per[ _]?px|"
                            r"[uµ]m/px)(?:[ _.-]?[xy])?[\"']?\s*[=:]\s*[\"']?([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)",
                            re.IGNORECASE)


def described_mpp(backend: SlideBackend) -> float | None:
    """A µm/px a TIFF's ImageDescription states as free text that OpenSlide does not read (a generic
    TIFF's 'Custom scanner|MPP = 0.5'), when plausible; None otherwise. Said, never used: a text field
    of an unknown writer is the user's to confirm (hunt 41b)."""
    m = _DESCRIBED_MPP.search(str(backend.properties.get("tiff.ImageDescription", ""))[:4096])
    try:
        value = float(m.group(1)) if m else math.nan
    except ValueError:
        return None
    return value if MPP_RANGE[0] <= value <= MPP_RANGE[1] else None


def reduced_image_mpp(backend: SlideBackend) -> float | None:
    """The full-resolution µm/px a TIFF pyramid's reduced images (SubIFDs) state when its first image does not
    (:func:`weakstil.tiff_layout.subifd_mpp`), when plausible; None otherwise. Said, never used."""
    from weakstil.tiff_layout import subifd_mpp

    path = getattr(backend, "path", None)
    value = subifd_mpp(path) if path is not None and str(path).lower().endswith((".tif", ".tiff")) else None
    return value if value is not None and MPP_RANGE[0] <= value <= MPP_RANGE[1] else None


def _missing_mpp_notes(backend: SlideBackend) -> str:
    described, reduced = described_mpp(backend), reduced_image_mpp(backend)
    return "; ".join(n for n in (objective_note(backend), unitless_note(backend),
                                 f"its TIFF ImageDescription says {described:g} µm/px as text, which OpenSlide does "
                                 "not read" if described is not None else "",
                                 f"its reduced images (SubIFDs) state {reduced:.4g} µm/px at full resolution, its "
                                 "full-resolution image none" if reduced is not None else "") if n)


#: Scanners record x and y resolutions that differ by rounding only (e.g. 0.2497 vs 0.2499 µm/px):
#: pixels whose x and y differ by more than this share are not square.
NON_SQUARE_TOLERANCE = 0.02


def _resolve_mpp(backend: SlideBackend, path: Path, override: float | None) -> tuple[float, MppSource]:
    if override is not None:
        if not (MPP_RANGE[0] <= override <= MPP_RANGE[1]):
            raise SlideError(
                f"--slide-mpp {override} is outside the plausible range {MPP_RANGE[0]}–{MPP_RANGE[1]} µm/px",
                path=path,
                fix="give the scan resolution in micrometres per pixel (about 0.25 at 40x, 0.5 at 20x)",
            )
        meta = backend.mpp
        mpp_x, mpp_y = getattr(backend, "mpp_xy", (None, None))
        key = ("slide-mpp", str(Path(path).resolve()), override)  # once per file, however it was named
        if mpp_x is not None and mpp_y is not None and abs(mpp_x - mpp_y) / min(mpp_x, mpp_y) > NON_SQUARE_TOLERANCE:
            from weakstil.runtime import warn_once

            # both axes: the warning quoted x alone ("overrides the metadata value 0.25" of a 0.25 x 0.5 scan,
            # nothing at all for --slide-mpp 0.25, though y was overridden twofold; hunt 36l)
            warn_once(log, key, "%s: --slide-mpp %.4g overrides the metadata values %.4g µm/px along x and %.4g "
                      "along y (non-square pixels: both axes are read at %.4g)", path, override, mpp_x, mpp_y, override)
        elif meta is not None and abs(meta - override) / meta > 0.05:
            from weakstil.runtime import warn_once

            warn_once(log, key, "%s: --slide-mpp %.4g overrides the metadata value %.4g µm/px", path, override, meta)
        return float(override), MppSource.OVERRIDE
    mpp_x, mpp_y = getattr(backend, "mpp_xy", (None, None))
    if mpp_x is not None and mpp_y is not None and abs(mpp_x - mpp_y) / min(mpp_x, mpp_y) > NON_SQUARE_TOLERANCE:
        # tiles, tissue and bed are read at one µm/px for both axes: the tissue would be squashed
        # along one of them and scored with the wrong number of tiles, silently
        raise SlideError(f"has non-square pixels ({mpp_x:.4g} µm/px along x, {mpp_y:.4g} along y); WeakSTIL reads "
                         "both axes at one resolution and would squash the tissue",
                         path=path, fix="resample the slide to square pixels, or, when the metadata is wrong and the "
                                        "pixels are square, give the resolution with --slide-mpp")
    meta = backend.mpp
    if meta is None:
        said = objective_note(backend)
        notes = _missing_mpp_notes(backend)
        described = described_mpp(backend) or reduced_image_mpp(backend)
        raise NoMppError(
            "has no microns-per-pixel in its metadata" + (f" ({notes})" if notes else ""),
            path=path,
            fix=(f"if {described:g} is the scan's µm/px, pass --slide-mpp {described:g}" if described is not None else
                 "pass the scan resolution with --slide-mpp") + " (about 0.25 for 40x, 0.5 for 20x scans"
                + (": the scanner's own figure, the objective alone does not give it)" if said else ")")
                + "; in a batch, in an mpp column of a --slides CSV (--slide-mpp reads every slide given at it)",
        )
    if not (MPP_RANGE[0] <= meta <= MPP_RANGE[1]):
        raise SlideError(
            f"metadata says {meta:.4g} µm/px, which is implausible",
            path=path,
            fix="pass the real scan resolution with --slide-mpp",
        )
    from weakstil.tiff_layout import unit_slip

    if (slip := unit_slip(meta, backend.properties)) is not None:  # read without a word before (hunt 36c)
        from weakstil.runtime import warn_once

        warn_once(log, ("unit-slip", str(Path(path).resolve())), "%s: %s; if it is a %g µm/px scan, pass "
                  "--slide-mpp %g", path, slip[0], slip[1], slip[1])
    return meta, MppSource.METADATA
