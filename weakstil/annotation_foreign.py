"""Files named for a slide that hold its outline in a form WeakSTIL does not read, told by what they
hold, not by their suffix alone (used by :func:`weakstil.annotation_wkt.unread_outline` and
:func:`weakstil.annotations.load_polygons`).

- A mask TIFF (``S1.tif``, ``S1_tumorbed.tiff``: one channel, a few values such as 0/1 or 0/255): as a
  PNG or ``.npy`` mask, not read, as its µm/px is not known for sure (TIFF resolution tags are often a
  writer's 72 dpi default). An annotation folder may be the slides' own, where ``S1.tif`` is the slide:
  an H&E slide has three channels (RGB), so it is left alone.
- napari's own Shapes layer CSV (``layer.save('S1.csv')``: ``index,shape-type,vertex-index,axis-0,axis-1``):
  it holds the layer's data coordinates without the layer's scale or translate, so their unit is not
  known (level-0 px only for our plugin's bed layer), and it drops which shapes are holes (our bed
  layer's ``part``): read as an outline, a hole would be bed.

Until helper h38a both went unused with an info line "no annotation": the slide got the detector's
bed or the whole tissue without a word about the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from weakstil.annotation_errors import AnnotationError

log = logging.getLogger("weakstil.annotations")

#: Mask images and arrays (another generator's exact beds): no µm/px of their own, so not read as outlines.
MASK_SUFFIXES = {".png": "a mask image (PNG)", ".npy": "a mask array (NumPy .npy)", ".npz": "a mask array (NumPy .npz)"}
MASK_FIX = ("trace the mask into polygons in level-0 pixels (mask px x its µm/px / the slide's µm/px) and save them "
            "as <slide_id>.geojson: docs/scoring.md, 'Annotations from other tools', has a script")
#: The header napari's Shapes writer (napari_builtins ``napari_write_shapes``) puts first.
NAPARI_SHAPES_HEADER = ("index", "shape-type", "vertex-index", "axis-0", "axis-1")
NAPARI_FIX = ("in napari, save the bed with the WeakSTIL plugin's Save bed (GeoJSON in level-0 px, holes kept), or "
              "export the outline from QuPath as GeoJSON")
#: A mask's values are read from a pyramid level of at most this many pixels (a bigger one is judged by its tags).
_MAX_READ_PX = 64_000_000
#: At most this many distinct values: a bed mask (0/1, 0/255) or a label mask, not a grayscale picture.
_MASK_VALUES = 16


def foreign_outline(path: Path, slide_id: str = "") -> AnnotationError | None:
    """The error of ``path`` when it is a mask (:data:`MASK_SUFFIXES`, a mask TIFF) or a napari Shapes CSV, else
    ``None``."""
    suffix = path.suffix.lower()
    named = f"is named for slide {slide_id} but " if slide_id else ""
    if (what := MASK_SUFFIXES.get(suffix)) or suffix in (".tif", ".tiff") and (what := mask_tiff(path)):
        return AnnotationError(f"{named}is {what}, which WeakSTIL does not read as an outline: the slide's outline "
                               "would go unused", path=path, fix=MASK_FIX)
    if suffix == ".csv" and is_napari_shapes_csv(path):
        return AnnotationError(f"{named}is a napari Shapes layer CSV, which records neither its coordinates' unit (the "
                               "layer's scale is not saved) nor which shapes are holes: the slide's outline would go "
                               "unused", path=path, fix=NAPARI_FIX)
    return None


def first_line(path: Path) -> str:
    """The first non-blank line of a file's first 4 KB as text ("" when unreadable): enough to tell what a
    text file holds, and a binary or huge one costs no more."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).decode("utf-8-sig", errors="replace")
    except OSError:
        return ""
    return next((ln for ln in head.splitlines() if ln.strip()), "")


def is_napari_shapes_csv(path: Path) -> bool:
    cells = tuple(c.strip().strip('"').lower() for c in first_line(path).split(","))
    return cells[: len(NAPARI_SHAPES_HEADER)] == NAPARI_SHAPES_HEADER


def mask_tiff(path: Path) -> str | None:
    """What a TIFF is when it is a mask (``"a mask image (TIFF, one channel, values 0 and 255)"``), else ``None``:
    one sample a pixel, and 1 bit, or integers of at most :data:`_MASK_VALUES` values. RGB (a slide) is not one."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if page.samplesperpixel != 1 or page.dtype is None or page.dtype.kind not in "biu":
                return None
            if page.bitspersample == 1:
                return "a mask image (TIFF, 1 bit a pixel)"
            levels = tif.series[0].levels if tif.series else [page]
            smallest = min(levels, key=lambda s: int(np.prod(s.shape)))
            if int(np.prod(smallest.shape)) > _MAX_READ_PX:
                log.debug("%s: a one-channel TIFF too big to tell a mask from a picture", path)
                return None
            values = np.unique(smallest.asarray())
    except Exception as exc:  # not a TIFF that tifffile reads (a slide format of its own): not ours to judge
        log.debug("%s: not read as a TIFF (%s)", path, exc)
        return None
    if len(values) > _MASK_VALUES:
        return None
    shown = " and ".join(str(v) for v in values[:4]) + (" ..." if len(values) > 4 else "")
    return f"a mask image (TIFF, one channel, values {shown})"
