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

Over tissue those colour rules see little of a stroke: the stain under it mixes in, so a grey
ring is no longer grey nor a blue stroke blue (on the hard look a blue stroke over stroma was
read as tumour with no tile vetoed, a grey ring over stroma and DCIS likewise). Absorbance adds
(Beer-Lambert): under ink a pixel's optical density is the stains' plus the ink's, and the stains'
lies in the plane of the slide's two stain vectors (recorded in the feature file), while no marker
ink's does (grey, black, blue, green or red: 0.2-0.4 of its density points out of the plane of
H&E). So ``over_tissue`` also counts as ink the tissue whose optical density, smoothed over
:data:`OFF_PLANE_SIGMA_UM`, lies :data:`OFF_PLANE_OD` or more out of that plane (the plane refitted
on the slide's own thumbnail, starting from the stain vectors and leaving out what lies off it, as
in :func:`weakstil.stain.in_stain_plane`), in strokes at least :data:`OFF_PLANE_MIN_WIDTH_UM` wide.
Stained tissue stays within about 0.01 of the plane (smoothed, 99th percentile: default and hard
synthetic looks; 0.03 on the alt look's stroma and on real slides: CMU-1-Small-Region, a TCGA
section, where only a dark fold's edge reaches past it). The same plane overrules the colour rules: a
pixel they call ink whose optical density lies in it (:data:`IN_PLANE_SHARE`) is stain of a look whose
haematoxylin is green or whose H+E mix is grey (the alt look), not ink.

Ink hides the tissue under it; it says nothing of what that tissue is. So (``from_neighbours``) an
inked tile keeps no more tumour evidence than its clean neighbours show (the largest among its
eight neighbours not under ink; none: 0), rather than none at all: a ring drawn over stroma
loses its misread seeds, while a ring drawn across the tumour (pathologists circle it, and the
ring crosses nests) keeps those inside the tumour. Setting every inked tile to 0 took a hard-look
ring's stretch over tumour out of the bed (a 71 % slide, Dice 0.807 -> 0.734).

The slide is read from the ``slide_path`` its feature file records; where it is not there
(features moved to another machine) the veto is skipped and the log says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weakstil.ink_plane import (IN_PLANE_SHARE, INK_PLANE_RULE, OFF_PLANE_FIT_SINE,  # noqa: F401
                                OFF_PLANE_MAX_SHARE, OFF_PLANE_MIN_DENSITY, OFF_PLANE_MIN_WIDTH_UM, OFF_PLANE_OD,
                                OFF_PLANE_SIGMA_UM, ink_and_stain)

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
    #: ink over tissue too, by its absorbance out of the plane of the slide's stains
    over_tissue: bool = True
    #: an inked tile keeps up to the evidence of its clean neighbours (else: none)
    from_neighbours: bool = True
    #: the ink-plane rule (:data:`weakstil.ink_plane.INK_PLANE_RULE`) it was chosen under; 0: not recorded (chosen
    #: before helper h45d, under rule 1 or 2: :func:`weakstil.ink_plane.rule_said`)
    plane_rule: int = INK_PLANE_RULE

    def to_dict(self) -> dict[str, float | bool]:
        return {"enabled": bool(self.enabled), "min_ink_area": float(self.min_ink_area),
                "over_tissue": bool(self.over_tissue), "from_neighbours": bool(self.from_neighbours),
                "plane_rule": int(self.plane_rule)}

    def other_rule(self, where: object, bundled: bool = False) -> str:
        """Why this veto's ink tiles differ from those it was chosen with (it measures ink over tissue under
        another ink-plane rule than this WeakSTIL's), naming ``where`` (its detector; ``bundled``: a model's
        ``MODEL/tumorbed``, which is not trained again in place: the model was trained on its beds); "" when
        they do not."""
        if not (self.enabled and self.over_tissue) or self.plane_rule == INK_PLANE_RULE:
            return ""
        from weakstil.ink_plane import rule_said

        return (f"{where}: its ink veto was chosen under {rule_said(self.plane_rule)}, this WeakSTIL measures ink "
                f"over tissue under rule {INK_PLANE_RULE} (the slide's own stain plane where it holds the tissue "
                "better; weakstil.ink_plane.INK_PLANE_RULE): on some slides other tiles are vetoed as ink than on "
                "the slides it was chosen on; " + ("it is the detector bundled in the sTIL model around it: train "
                "a detector with 'weakstil tumorbed train' and the model with it ('weakstil train --tumorbed'; "
                "retrained in place, the model's beds would no longer be those it was trained on)" if bundled else
                "retrain it with 'weakstil tumorbed train'") + " to choose the veto under this rule")

    @classmethod
    def from_dict(cls, values: dict | None) -> InkVeto:
        """From model.json; a detector written without one (before the veto) has it off, one written
        before ``over_tissue`` keeps the colour rules and the zeroed evidence it was chosen with."""
        if not values:
            return cls(enabled=False)
        from weakstil.tumorbed.flags import json_flag

        return cls(json_flag(values.get("enabled", True), "enabled"), float(values.get("min_ink_area", cls.min_ink_area)),
                   json_flag(values.get("over_tissue", False), "over_tissue"),
                   json_flag(values.get("from_neighbours", False), "from_neighbours"),
                   int(values.get("plane_rule", 0)))


def tile_ink_share(thumbnail: np.ndarray, slide_width: int, slide_mpp: float, coords: np.ndarray,
                   tile_size_level0: float, stain_he: np.ndarray | None = None, name: object = None,
                   test: dict | None = None) -> np.ndarray:
    """Each tile's share of ink pixels, from an RGB thumbnail of the whole slide. Ink is darker
    than the slide's glass (as in the slide QC): a dim scanner's grey glass, in the holes and at
    the edges of the tissue, read as dark-grey ink vetoed the tumour tiles of whole slides.
    ``stain_he`` (3, 2: the slide's H and E optical-density vectors): ink over tissue too
    (:func:`ink_over_tissue`). ``test``: told which ink test was used (:func:`weakstil.ink_plane.ink_and_stain`;
    ``colour rules`` only without ``stain_he``)."""
    from weakstil.tiling import mask_fractions
    from weakstil.tissue import darker_than_glass, glass_level, ink_pixels

    rgb = thumbnail[..., :3]
    thumb_mpp = slide_width * slide_mpp / thumbnail.shape[1]
    glass, _ = glass_level(rgb[::2, ::2].astype(np.float32).mean(axis=-1).ravel())
    ink = ink_pixels(rgb) & darker_than_glass(rgb, glass, thumb_mpp)
    if test is not None:
        test.update(ink_test="colour rules", ink_plane_rule=INK_PLANE_RULE)
    if stain_he is not None:
        over, stain_like = ink_and_stain(rgb, stain_he, thumb_mpp, name, test)
        ink = (ink & ~stain_like) | over
    return mask_fractions(coords, tile_size_level0, ink, thumb_mpp, slide_mpp)


def ink_over_tissue(rgb: np.ndarray, stain_he: np.ndarray, mpp: float) -> np.ndarray:
    """Pixels of an RGB uint8 image (``mpp`` µm/px) whose optical density lies out of the plane of
    the stains (``stain_he``, refitted on the image): marker ink over tissue (module docstring).
    Where that would make more than :data:`OFF_PLANE_MAX_SHARE` of the stained tissue ink, the plane
    is not the stains' (a marker is drawn round or across the tumour, not over most of the section):
    the image's own plane is fitted instead (:func:`weakstil.stain.stain_plane_normal`), and where
    that too calls most of it ink, no ink over tissue is counted."""
    return ink_and_stain(rgb, stain_he, mpp)[0]


def features_slide(attrs: dict, slide_path: str | Path | None = None) -> Path | None:
    """The slide file a feature file (``attrs``) was made from: ``slide_path`` (where the command
    was told the slide is: the file ``score`` scores, a cohort CSV's path) when it is that scan (its
    content fingerprint, when the features record one), else the path the features record, when
    there. A slide moved since it was embedded (its cache is reused: the key holds no path) is found
    where it is now; its recorded path used to be read alone, and the ink veto then fell silently
    away (hunt 24: a moved slide folder scored 14.6 -> 18.4 % sTIL)."""
    from weakstil.fingerprint import recorded, slide_fingerprint

    if slide_path is not None and Path(slide_path).is_file():
        made_from = recorded(attrs)
        if made_from is None or slide_fingerprint(slide_path) in (None, made_from):
            return Path(slide_path)
        log.warning("%s is not the scan its features were made from (its content fingerprint differs); the ink "
                    "veto reads the recorded slide %s, when there", slide_path, attrs.get("slide_path"))
    path = Path(str(attrs.get("slide_path", "")))
    return path if str(attrs.get("slide_path", "")) and path.is_file() else None


class SlideRead:
    """The slide of a feature file (``attrs``; ``slide_path``: where it is now, :func:`features_slide`) read once at
    :data:`INK_MPP` µm/px, coarser where that would pass :data:`INK_MAX_PIXELS` (a 30 x 20 mm section: about 10 µm/px),
    with a black unscanned area turned to glass where the features record it so (``background == "record"``), for
    every step of the bed that looks at the slide: the ink veto (:func:`slide_ink_share`) and the lymphoid aggregates
    (:func:`weakstil.tumorbed.aggregates.slide_aggregates`). They each read it before helper h47c, the aggregates
    uncapped (37 MP and a few hundred MB of float maps on such a section) and with the black area raw. Read at the
    first :meth:`thumbnail`; ``rgb`` ``None`` and ``error`` said when the slide is not there or cannot be read."""

    def __init__(self, attrs: dict, slide_path: str | Path | None = None):
        self.attrs, self.slide_path = attrs, slide_path
        self.path: Path | None = None
        self.rgb: np.ndarray | None = None
        self.error = ""  #: "" (read, or not yet tried), "not there", or the reader's exception
        self._tried = False

    def thumbnail(self) -> np.ndarray | None:
        """The slide's RGB thumbnail (uint8, h x w x 3+), ``None`` when it cannot be read (:attr:`error` says why)."""
        if self._tried:
            return self.rgb
        self._tried = True
        from weakstil.slide import Slide
        from weakstil.unscanned import RECORD, as_glass

        self.path = features_slide(self.attrs, self.slide_path)
        if self.path is None:
            self.error = "not there"
            return None
        try:
            with Slide.open(self.path, slide_mpp=float(self.attrs["slide_mpp"])) as slide:
                w, h = slide.dimensions
                mpp = max(INK_MPP, float(slide.mpp) * math.sqrt(w * h / INK_MAX_PIXELS))
                thumb = slide.read_thumbnail(mpp)
        except Exception as exc:  # an unreadable slide only loses the steps that read it; the bed is still drawn
            self.error = str(exc) or type(exc).__name__
            return None
        if self.attrs.get("background") == RECORD:
            # a black unscanned area is glass, as the tiles and features read it (hunt 24): raw, it was ink, and its
            # out-of-plane density tilted the refitted stain plane so whole tiles of tissue were ink too (hunt 35d);
            # and dense haematoxylin, compact and apart: a lymphoid aggregate
            thumb = as_glass(thumb)
        self.rgb = thumb
        return thumb

    def mpp(self) -> float:
        """µm per thumbnail pixel (from the slide's recorded width, as the tiles' grid)."""
        return float(self.attrs["slide_width"]) * float(self.attrs["slide_mpp"]) / self.rgb.shape[1]


def slide_ink_share(attrs: dict, coords: np.ndarray, tile_size_level0: float,
                    over_tissue: bool = True, slide_path: str | Path | None = None,
                    test: dict | None = None, read: SlideRead | None = None) -> np.ndarray | None:
    """Each tile's ink share, reading the slide of the feature file (``attrs``: the file's
    attributes; ``slide_path``: where the slide is now, see :func:`features_slide`), or ``None``
    when that slide is not there or cannot be read. ``over_tissue``: ink over tissue too, against
    the plane of the stain the file records (none recorded: glass only). ``test``: told which ink test was used
    (:func:`tile_ink_share`). ``read``: the slide's read shared with the bed's other steps (:class:`SlideRead`)."""
    from weakstil.stain import SlideStain

    read = SlideRead(attrs, slide_path) if read is None else read
    thumb = read.thumbnail()
    if read.error == "not there":
        # said louder when the command was given the slide's file (and it is not there, nor the recorded one)
        log.log(logging.INFO if slide_path is None else logging.WARNING, "ink veto not applied: the slide %s is not "
                "there (moved since it was embedded? give its path in a cohort CSV)", attrs.get("slide_path"))
        return None
    if thumb is None:
        log.warning("ink veto not applied: %s could not be read (%s)", read.path, read.error)
        return None
    stain = SlideStain.from_attr(attrs.get("stain")) if over_tissue else None
    return tile_ink_share(thumb, int(attrs["slide_width"]), float(attrs["slide_mpp"]), coords, tile_size_level0,
                          None if stain is None else stain.he, attrs.get("slide_id") or read.path.name, test)


def apply_ink_veto(evidence: np.ndarray, ink_share: np.ndarray | None, rule: InkVeto,
                   coords: np.ndarray | None = None, tile_size_level0: float | None = None) -> tuple[np.ndarray, int | None]:
    """The evidence of inked tiles capped at their clean neighbours' (``rule.from_neighbours`` and
    the tiles' ``coords`` given) or set to 0, and how many tiles are inked (``None``: not applied)."""
    evidence = np.asarray(evidence, np.float32)
    if not rule.enabled or ink_share is None or len(ink_share) != len(evidence):
        return evidence, None
    inked = np.asarray(ink_share) >= rule.min_ink_area
    cap = np.zeros(len(evidence), np.float32)
    if rule.from_neighbours and coords is not None and tile_size_level0 is not None and inked.any():
        cap = _clean_neighbour_max(evidence, inked, coords, tile_size_level0)
    return np.where(inked, np.minimum(evidence, cap), evidence).astype(np.float32), int(inked.sum())


def _clean_neighbour_max(evidence: np.ndarray, inked: np.ndarray, coords: np.ndarray, tile_size_level0: float) -> np.ndarray:
    """Each tile's largest evidence among its eight grid neighbours that are not inked (0: none)."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import grid_cells

    rows, cols, _ = grid_cells(coords, tile_size_level0)
    grid = np.zeros((rows.max() + 3, cols.max() + 3), np.float32)  # an empty cell all round
    grid[rows + 1, cols + 1] = np.where(inked, np.float32(0.0), evidence)
    ring = np.ones((3, 3), bool)
    ring[1, 1] = False
    return ndi.maximum_filter(grid, footprint=ring, mode="constant")[rows + 1, cols + 1]

