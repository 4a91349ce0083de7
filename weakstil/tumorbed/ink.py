"""Marker ink is no tumour evidence: a tile under ink cannot seed the tumour bed.

Pathologists circle the tumour on the glass with a marker, and ink lying over tissue stays
tissue (weakstil.tissue keeps it; the tissue under it is real). To an encoder that has not
seen ink, a grey or coloured stroke over stroma can read as dense, dark tumour, and the bed then
follows the ring instead of the tumour. So, when the slide can be read, each tile's share of
ink pixels is measured on a thumbnail with the rule the slide QC uses
(:func:`weakstil.tissue.ink_pixels`: green, blue or near-black; plus dark grey: brightest channel
under :data:`weakstil.tissue.GREY_INK_MAX` and saturation under
:data:`weakstil.tissue.GREY_INK_SATURATION` per cent, which no H&E stain is), and a tile
with at least ``min_ink_area`` of ink loses its tumour evidence. Like the lymphoid veto this only
removes seeds: an inked tile inside the tumour is still in the bed by geometry.

The slide is read from the ``slide_path`` its feature file records; where it is not there
(features moved to another machine) the veto is skipped and the log says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: Thumbnail resolution for the ink measurement (µm/px; coarser for very large slides).
INK_MPP = 4.0
#: ... keeping the thumbnail under about this many pixels.
INK_MAX_PIXELS = 6_000_000


@dataclass(frozen=True)
class InkVeto:
    """A tile with at least ``min_ink_area`` of its area under marker ink cannot seed the bed."""

    enabled: bool = True
    min_ink_area: float = 0.1

    def to_dict(self) -> dict[str, float | bool]:
        return {"enabled": bool(self.enabled), "min_ink_area": float(self.min_ink_area)}

    @classmethod
    def from_dict(cls, values: dict | None) -> InkVeto:
        """From model.json; a detector written without one (before the veto) has it off."""
        if not values:
            return cls(enabled=False)
        return cls(bool(values.get("enabled", True)), float(values.get("min_ink_area", cls.min_ink_area)))


def tile_ink_share(thumbnail: np.ndarray, slide_width: int, slide_mpp: float, coords: np.ndarray,
                   tile_size_level0: float) -> np.ndarray:
    """Each tile's share of ink pixels, from an RGB thumbnail of the whole slide. Ink is darker
    than the slide's glass (as in the slide QC): a dim scanner's grey glass, in the holes and at
    the edges of the tissue, read as dark-grey ink vetoed the tumour tiles of whole slides."""
    from weakstil.tiling import mask_fractions
    from weakstil.tissue import darker_than_glass, glass_level, ink_pixels

    rgb = thumbnail[..., :3]
    thumb_mpp = slide_width * slide_mpp / thumbnail.shape[1]
    glass, _ = glass_level(rgb[::2, ::2].astype(np.float32).mean(axis=-1).ravel())
    ink = ink_pixels(rgb) & darker_than_glass(rgb, glass, thumb_mpp)
    return mask_fractions(coords, tile_size_level0, ink, thumb_mpp, slide_mpp)


def slide_ink_share(attrs: dict, coords: np.ndarray, tile_size_level0: float) -> np.ndarray | None:
    """Each tile's ink share, reading the slide its feature file names (``attrs``: the file's
    attributes), or ``None`` when that slide is not there or cannot be read."""
    from weakstil.slide import Slide

    path = Path(str(attrs.get("slide_path", "")))
    if not str(attrs.get("slide_path", "")) or not path.is_file():
        log.info("ink veto not applied: the slide %s is not there", path)
        return None
    try:
        with Slide.open(path, slide_mpp=float(attrs["slide_mpp"])) as slide:
            w, h = slide.dimensions
            mpp = max(INK_MPP, float(slide.mpp) * math.sqrt(w * h / INK_MAX_PIXELS))
            thumb = slide.read_thumbnail(mpp)
    except Exception as exc:  # an unreadable slide only loses this veto; the bed is still drawn
        log.warning("ink veto not applied: %s could not be read (%s)", path, exc)
        return None
    return tile_ink_share(thumb, int(attrs["slide_width"]), float(attrs["slide_mpp"]), coords, tile_size_level0)


def apply_ink_veto(evidence: np.ndarray, ink_share: np.ndarray | None, rule: InkVeto) -> tuple[np.ndarray, int | None]:
    """The evidence with inked tiles set to 0, and how many (``None``: not applied)."""
    evidence = np.asarray(evidence, np.float32)
    if not rule.enabled or ink_share is None or len(ink_share) != len(evidence):
        return evidence, None
    inked = np.asarray(ink_share) >= rule.min_ink_area
    return np.where(inked, np.float32(0.0), evidence).astype(np.float32), int(inked.sum())

