"""Crush artefact leaves the scored area (International TILs Working Group: crush artefacts, like
necrosis, are not part of the stromal area scored).

A core needle biopsy's end is often crushed: the cells' chromatin is smeared into dense, streamed
haematoxylin with no nuclear outline left, which a tile model reads as a sheet of lymphocytes (hunt 42a:
two TIL-poor biopsies read about 8 points high where the detected bed ran into crush). Each tile's
crush share is measured with the other tile statistics (:data:`weakstil.tilestats.CRUSH_COLUMN`,
version 5: dense, streamed, textured haematoxylin); a tile at least :data:`CRUSH_TILE_MAX` crush
leaves the bed's scored tiles whatever the bed's source (annotation, detector, whole tissue), in
``train`` and ``score`` alike (:func:`exclude_crush`, called by the bed resolver). Features from
before version 5 have no such column: nothing is left out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.bed import TumorBed

log = logging.getLogger(__name__)

#: A tile whose crush share is at least this leaves the scored area (crush tiles of hunt 42a's biopsies:
#: 0.74-1.0; every tile of the other looks, Kather's 32 real tiles and TIL-rich beds: at most 0.06).
CRUSH_TILE_MAX = 0.5


def crush_tiles(features: FeaturesFile) -> np.ndarray | None:
    """(N,) bool: the feature file's tiles that are mostly crush; None when its tiles were measured
    before version 5 of the tile statistics (or not at all)."""
    from weakstil.tilestats import CRUSH_COLUMN
    from weakstil.tumorbed.evidence import stats_column_names

    stats = features.tile_stats
    columns = stats_column_names(features.attrs.get("tile_stats_columns"))
    if stats is None or not columns or CRUSH_COLUMN not in columns:
        return None
    return np.asarray(stats)[:, columns.index(CRUSH_COLUMN)] >= CRUSH_TILE_MAX


def exclude_crush(bed: TumorBed, features: FeaturesFile, slide_id: str = "") -> TumorBed:
    """``bed`` with its crush tiles (:func:`crush_tiles`) left out of its scored tiles (``excluded``)."""
    crush = crush_tiles(features)
    if crush is None or len(crush) != len(bed.tile_fraction):
        return bed
    n_bed = int((bed.tile_flags & crush).sum())
    bed.excluded, bed.excluded_at = crush, CRUSH_TILE_MAX
    if n_bed:
        log.info("%s: %d tile%s of crush artefact left out of the scored bed", slide_id or "slide", n_bed,
                 "s" if n_bed > 1 else "")
    return bed


#: Attribute of a slide's scores HDF5 holding its crush tiles (:func:`packed`), so that a bed edited in napari is
#: rescored without them as ``score`` scored it (:class:`weakstil.bed_edit.ScoredTiles`).
PACKED_ATTR = "crush_tiles_packed"


def packed(excluded: np.ndarray) -> str:
    """``excluded`` (N,) bool as text: base64 of its bits (a 100,000-tile slide: 17 kB)."""
    import base64

    return base64.b64encode(np.packbits(np.asarray(excluded, bool)).tobytes()).decode("ascii")


def unpacked(value: object, n: int) -> np.ndarray | None:
    """The (``n``,) bool tiles of a :func:`packed` attribute, or None (no attribute, or not ``n`` tiles' worth)."""
    import base64
    import binascii

    if not isinstance(value, (str, bytes)) or not value:
        return None
    try:
        bits = np.unpackbits(np.frombuffer(base64.b64decode(value, validate=True), np.uint8))
    except (binascii.Error, ValueError):
        return None
    return bits[:n].astype(bool) if len(bits) >= n and not bits[n:].any() else None
