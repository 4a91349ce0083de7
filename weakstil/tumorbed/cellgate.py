"""Tumour-cell gate: a tile seeds the bed only where tumour cells are seen, in it or beside it.

The bed's seeds are *invasive tumour*: cohesive nests of tumour cells, whose nuclei are large
(75 µm² and up) and pale (vesicular chromatin). The classifier's evidence is a linear read-out
of an encoder, and on a look it was not trained on it can fire on plain stroma or fat (an
encoder trained on the alt-hard look calls 379 tiles of default-look slides tumour, > 100 µm from
any bed, and 96 % of them hold no pale nucleus of tumour size; 9 % of its true seeds do not).
The tile measurements stored beside the embeddings (:mod:`weakstil.tilestats`, colour
deconvolution with the slide's own stain vectors) see those nuclei whatever the look, so:

* a tile keeps its tumour evidence only when medium or large *pale* nuclei cover at least
  ``min_tumour_nuclei_area`` of it or of a tile within ``neighbourhood`` tiles of it (0.005 of a
  112 µm tile: half a tumour nucleus; the neighbourhood keeps tiles inside a nest whose own
  nuclei came out dark, as hyperchromatic tumour cells do, or were cut by the tile edge);
* when that would take away more than ``max_removed_share`` of the slide's evidence, the gate is
  set aside for the slide and says so: the stain measure then does not see this slide's tumour
  nuclei (all hyperchromatic, or the stain estimate failed), and the classifier is trusted alone.

Like the lymphoid veto it only removes seeds: the geometry still puts the stroma between and
around the nests in the bed. ``weakstil tumorbed train`` keeps it unless it lowers the
leave-one-slide-out Dice of the annotated slides by more than
:data:`weakstil.tumorbed.training.CELL_GATE_MAX_LOSS` (the annotations may show a look whose
tumour the measure misses); model.json records the rule (``tumour_cell_gate``; detectors written
before it have it off).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from weakstil.tumorbed.veto import TUMOUR_NUCLEI_COLUMNS, _area

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TumourCellGate:
    """When a tile's tumour evidence counts (area shares of a tile; neighbourhood in tiles)."""

    enabled: bool = True
    min_tumour_nuclei_area: float = 0.005
    neighbourhood: int = 1
    max_removed_share: float = 0.75

    def to_dict(self) -> dict[str, float | bool | int]:
        d = asdict(self)
        return {k: (bool(v) if k == "enabled" else int(v) if k == "neighbourhood" else float(v)) for k, v in d.items()}

    @classmethod
    def from_dict(cls, values: dict | None) -> TumourCellGate:
        """From model.json; a detector written before the gate has it off."""
        if not values:
            return cls(enabled=False)
        kinds = {"enabled": bool, "neighbourhood": int}
        return cls(**{k: kinds.get(k, float)(values[k]) for k in cls.__dataclass_fields__ if k in values})


def tumour_cells_near(tile_stats: np.ndarray | None, columns: list[str] | tuple[str, ...] | None,
                      coords: np.ndarray, tile_size_level0: float, rule: TumourCellGate) -> np.ndarray | None:
    """Per tile, whether tumour nuclei are seen in it or within ``rule.neighbourhood`` tiles of
    it; ``None`` when the feature file has no tumour-nuclei statistics."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import grid_cells

    if tile_stats is None or columns is None:
        return None
    tumour = _area(tile_stats, columns, TUMOUR_NUCLEI_COLUMNS)
    if tumour is None or len(tumour) != len(coords):
        return None
    seen = tumour >= rule.min_tumour_nuclei_area
    r = int(rule.neighbourhood)
    if r <= 0 or not len(seen):
        return seen
    rows, cols, _ = grid_cells(coords, tile_size_level0)
    grid = np.zeros((rows.max() + 1, cols.max() + 1), bool)
    grid[rows, cols] = seen
    return ndi.binary_dilation(grid, np.ones((2 * r + 1, 2 * r + 1), bool))[rows, cols]


def apply_cell_gate(evidence: np.ndarray, tile_stats: np.ndarray | None, columns: list[str] | tuple[str, ...] | None,
                    coords: np.ndarray, tile_size_level0: float, rule: TumourCellGate) -> tuple[np.ndarray, str]:
    """The evidence with tiles that show no tumour cells nearby set to 0, and what the gate did
    (for the bed's provenance: ``off``, ``N tiles``, ``set aside ...`` or ``no tile statistics``)."""
    evidence = np.asarray(evidence, np.float32)
    if not rule.enabled:
        return evidence, "off"
    seen = tumour_cells_near(tile_stats, columns, coords, tile_size_level0, rule) if len(evidence) else None
    if seen is None:
        if len(evidence):
            log.warning("tumour-cell gate not applied: the feature file has no tile statistics "
                        "(embed the slide again with this WeakSTIL)")
        return evidence, "no tile statistics"
    total = float(np.clip(evidence, 0, None).sum())
    removed = float(np.clip(evidence[~seen], 0, None).sum()) / total if total > 0 else 0.0
    if removed > rule.max_removed_share:
        return evidence, (f"set aside (it would remove {100 * removed:.0f}% of the evidence: "
                          "tumour nuclei not seen by the stain measure)")
    return np.where(seen, evidence, np.float32(0.0)).astype(np.float32), f"{int((~seen & (evidence > 0)).sum())} tiles"
