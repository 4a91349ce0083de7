"""The error of an unusable annotation file, and the checks every annotation reader shares (used by
:mod:`weakstil.annotations` and :mod:`weakstil.annotation_geojson`)."""

from __future__ import annotations

import math
from pathlib import Path

from weakstil.annotation_classes import only_not_bed_classes
from weakstil.errors import WeakSTILError


class AnnotationError(WeakSTILError):
    """A malformed or unusable annotation file."""


class EmptyAnnotationError(AnnotationError):
    """An annotation file with nothing drawn in it (0 bytes, blank, a GeoJSON with no features, an ImageScope or
    ASAP XML with no regions: ``<Annotations/>``, hunt 39e): a slide
    exported before its outline was drawn. 'tumorbed train' leaves such a slide out with a warning where a
    malformed file refuses the training (a file cut short may be a bed lost, an empty one says nothing)."""


#: The fix of an :class:`EmptyAnnotationError`.
EMPTY_FIX = "export the outline again after drawing it, or remove the file"


def all_finite(coords) -> bool:
    """Whether every number in nested coordinate lists is finite (JSON's NaN and Infinity are not)."""
    if isinstance(coords, float):
        return math.isfinite(coords)
    if isinstance(coords, list):
        return all(all_finite(c) for c in coords)
    return True  # ints, and anything else: shapely judges it


def not_bed(named: list, path: Path, kind: str = "class", fmt: str = "GeoJSON") -> AnnotationError:
    message, fix = only_not_bed_classes(named, kind, fmt)
    return AnnotationError(message, path=path, fix=fix)


def not_finite(path: Path) -> AnnotationError:
    return AnnotationError("a polygon has coordinates that are not finite numbers (NaN or infinity)", path=path,
                           fix="export the annotation again in level-0 pixel coordinates")
