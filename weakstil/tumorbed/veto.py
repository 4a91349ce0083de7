"""Lymphoid veto: a tile made of lymphocytes is no evidence of tumour, however the classifier reads it.

The TILs Working Group's tumour bed is the invasive tumour and the stroma between and around
it; its seeds must be *tumour cells*: large, pale (vesicular), pleomorphic nuclei in cohesive
nests. A linear read-out of an encoder that has not seen a look can fire on lymphoid tissue
(aggregates, tertiary lymphoid structures, a lymph node) as readily as on tumour, and the
bed then grows over them. From the tile measurements stored beside the embeddings
(:mod:`weakstil.tilestats`: colour deconvolution with the slide's own stain vectors, darkness
relative to the slide's own strongest haematoxylin) a tile is **lymphoid** when

* dark nuclei (small, medium or large: crowded lymphocytes merge into large *dark* blobs)
  cover at least ``min_dark_area`` of it (0.4: a sheet of lymphocytes), and
* tumour nuclei (75 µm² and up: medium or large *pale* ones, open chromatin, and hyperchromatic
  ones shaped like a single nucleus, :func:`tumour_nuclei_area`) cover less than
  ``max_tumour_nuclei_area`` of it (0.01 of a 112 µm tile: about one tumour nucleus).

A lymphoid tile loses its tumour evidence (it cannot seed the bed), unless its connected
group of lymphoid tiles touches (8-neighbourhood on the tile grid) a tile that is tumour by
both readings: classifier evidence at least ``restore_evidence`` and tumour nuclei over at least
``restore_tumour_nuclei_area`` of it (0.03: three or four tumour nuclei).
The tumour tiles that restore must reach past the group's own one-tile rim: an aggregate's rim
(half aggregate, half stroma) can read as tumour on a look the classifier has not seen, and
restored the aggregate it rings. And they must lie on the group's own piece of tissue
(``restore_same_fragment``; pieces: the 8-connected components of the tissue mask): the tile grid
makes the tiles of two pieces neighbours across the glass between them, and a lymph node on a
fragment of its own, whose edge tile sat diagonally next to a tumour tile of another piece, was
restored whole (a 6 % hard-look slide, Dice 0.617 -> 0.727 without it). So a dense infiltrate
*at* the tumour keeps its evidence, and a lymphoid aggregate away from it does not. Either way the veto only removes seeds: the geometry (bridging, enclosure,
invasive-front margin in :mod:`weakstil.bed_geometry`) still puts lymphocyte-dense stroma
between or around tumour nests in the bed.

The thresholds follow the definition and the physical scale of the nuclei; they were not
fitted to a test look. ``weakstil tumorbed train`` applies the veto to the held-out evidence
before it chooses the geometry, and records the rule in model.json (``lymphoid_veto``). It also
tries the restore rule with the classifier's reading alone (``restore_tumour_nuclei_area = 0``):
solid sheets of hyperchromatic tumour have dark, lymphocyte-sized nuclei and no pale ones, so the
strict rule vetoes them as lymphoid; the rule with the higher leave-one-slide-out Dice is kept
(ties: the strict one), so the annotations decide which error the cohort's look makes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

#: tile-statistics columns of dark nuclei (every size above debris, in stroma and in nests)
DARK_NUCLEI_COLUMNS: tuple[str, ...] = tuple(
    f"{size}_dark_{ctx}" for size in ("small", "medium", "large") for ctx in ("stroma", "nest"))
#: ... and of tumour-like nuclei: medium and large pale ones
TUMOUR_NUCLEI_COLUMNS: tuple[str, ...] = tuple(
    f"{size}_pale_{ctx}" for size in ("medium", "large") for ctx in ("stroma", "nest"))


@dataclass(frozen=True)
class LymphoidVeto:
    """When a tile is lymphoid and cannot seed the bed (area shares of the tile)."""

    enabled: bool = True
    min_dark_area: float = 0.4
    max_tumour_nuclei_area: float = 0.01
    restore_evidence: float = 0.5
    restore_tumour_nuclei_area: float = 0.03
    #: the tumour that restores a group must reach past the group's own rim (one tile round it)
    restore_beyond_rim: bool = True
    #: ... and lie on the group's own piece of tissue (:func:`tile_fragments`)
    restore_same_fragment: bool = True
    #: the most of a slide's tumour evidence (summed) the veto may take before the lymphoid groups
    #: touching the rest of the evidence are given back (:func:`_capped`); 1: no cap
    max_evidence_share: float = 0.5

    def to_dict(self) -> dict[str, float | bool]:
        return {k: (bool(v) if k in _FLAGS else float(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict | None) -> LymphoidVeto:
        """From model.json; a detector written without one (before the veto) has it off, one
        written before ``restore_beyond_rim`` keeps the rule it was chosen with (off). One written
        before ``max_evidence_share`` gets the cap (0.5): it guards against a failure (a TIL-rich bed
        vetoed), it was not a setting its training chose."""
        if not values:
            return cls(enabled=False)
        from weakstil.tumorbed.flags import json_flag, json_number

        # read strictly, as the other rules (flags.rule_from_json): float() took "0.5", true and NaN as a
        # setting, and a misspelt key was dropped, its default used without a word (review r48f)
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"'lymphoid_veto' holds unknown settings {unknown}")
        rule = cls(**{"restore_beyond_rim": False, "restore_same_fragment": False, "max_evidence_share": 0.5,
                      **{k: (json_flag(v, f"lymphoid_veto {k}") if k in _FLAGS else json_number(v, f"lymphoid_veto {k}"))
                         for k, v in values.items()}})
        if not 0 < rule.max_evidence_share <= 1:
            raise ValueError(f"'lymphoid_veto max_evidence_share' is {rule.max_evidence_share}, not in (0, 1] "
                             "(1: no cap)")
        return rule


_FLAGS = ("enabled", "restore_beyond_rim", "restore_same_fragment")


def _area(tile_stats: np.ndarray, columns: list[str] | tuple[str, ...], wanted: tuple[str, ...]) -> np.ndarray | None:
    index = {c: i for i, c in enumerate(columns)}
    if any(c not in index for c in wanted):
        return None
    return np.asarray(tile_stats, np.float32)[:, [index[c] for c in wanted]].sum(axis=1)


#: ... and of hyperchromatic tumour nuclei (dark, shaped like one nucleus of tumour size; feature
#: files from tile statistics version 4 on, :data:`weakstil.tilestats.DARK_TUMOUR_COLUMN`)
DARK_TUMOUR_NUCLEI_COLUMN = "dark_tumour_nuclei"
#: Hyperchromatic tumour nuclei count only where they cover at least this share of the tile (about
#: three nuclei): alone, a dark blob of tumour size and shape is less telling than a vesicular one
#: (two luminal cells of a normal duct, or two lymphocytes, merged into one pass the shape test).
#: Tiles without tumour, four synthetic looks and shifts (hunt 24): 7-15 % reach 0.005, 0.3-2.7 % 0.02;
#: tumour tiles of hyperchromatic-nucleus cohorts: 51-91 % reach 0.02.
DARK_TUMOUR_MIN_AREA = 0.02


def tumour_nuclei_area(tile_stats: np.ndarray, columns: list[str] | tuple[str, ...]) -> np.ndarray | None:
    """Each tile's share covered by tumour nuclei: medium and large pale ones, plus the
    hyperchromatic ones where the feature file measured them (version 4 on). Tumour nuclei are
    larger than a lymphocyte's, open *or* hyperchromatic; with the pale ones alone, nests of dark
    tumour nuclei (a morphology-shifted cohort: every tumour nucleus hyperchromatic) had no tumour
    cells: the veto took 41 % of their tiles as lymphoid, the gate saw tumour on 18 % of them, and
    two of eight slides fell back to the whole tissue (hunt 24). Dark ones count where they cover
    :data:`DARK_TUMOUR_MIN_AREA` of the tile. ``None`` without the pale columns."""
    pale = _area(tile_stats, columns, TUMOUR_NUCLEI_COLUMNS)
    dark = _area(tile_stats, columns, (DARK_TUMOUR_NUCLEI_COLUMN,))
    return pale if pale is None or dark is None else pale + np.where(dark >= DARK_TUMOUR_MIN_AREA, dark, 0.0)


def lymphocyte_dark_area(tile_stats: np.ndarray, columns: list[str] | tuple[str, ...]) -> np.ndarray | None:
    """Each tile's share covered by dark nuclei other than hyperchromatic tumour nuclei (where the
    feature file measured them): how lymphoid the tile is. A nest of hyperchromatic tumour cells
    is covered by dark nuclei as a lymphocyte sheet is, but by tumour nuclei (hunt 24)."""
    dark = _area(tile_stats, columns, DARK_NUCLEI_COLUMNS)
    tumour = _area(tile_stats, columns, (DARK_TUMOUR_NUCLEI_COLUMN,))
    return dark if dark is None or tumour is None else np.maximum(dark - tumour, 0.0)


def dark_nuclei_area(tile_stats: np.ndarray | None, columns: list[str] | tuple[str, ...] | None) -> np.ndarray | None:
    """Each tile's share covered by dark nuclei (lymphocytes, crowded or not), or ``None`` when
    the feature file has no such tile statistics."""
    if tile_stats is None or columns is None:
        return None
    return _area(tile_stats, columns, DARK_NUCLEI_COLUMNS)


def vetoed_tiles(evidence: np.ndarray, tile_stats: np.ndarray | None, columns: list[str] | tuple[str, ...] | None,
                 coords: np.ndarray, tile_size_level0: float, rule: LymphoidVeto,
                 fragments: np.ndarray | None = None, said: dict | None = None) -> np.ndarray | None:
    """Which tiles lose their tumour evidence (boolean per tile), or ``None`` when the veto is
    off or the slide's feature file has no tile statistics to decide it. ``said`` (a dict), when
    the cap (``max_evidence_share``) acted: ``said["given_back"]``, the lymphoid tiles it gave back.

    ``fragments`` (each tile's piece of tissue, :func:`tile_fragments`): a lymphoid group is
    restored only by tumour on its own piece of tissue; tiles of two pieces are neighbours on the
    tile grid across the glass between them, but a lymph node or an aggregate on a fragment of its
    own is no infiltrate *at* the tumour of another fragment."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import padded_grids

    evidence = np.asarray(evidence, np.float32)
    if not rule.enabled or tile_stats is None or columns is None or len(evidence) == 0:
        return None
    dark = _area(tile_stats, columns, DARK_NUCLEI_COLUMNS)
    tumour = tumour_nuclei_area(tile_stats, columns)
    if dark is None or tumour is None or len(dark) != len(evidence):
        return None
    lymphoid = (dark >= rule.min_dark_area) & (tumour < rule.max_tumour_nuclei_area)
    if not lymphoid.any():
        return lymphoid
    tumour_cells = ~lymphoid & (evidence >= rule.restore_evidence) & (tumour >= rule.restore_tumour_nuclei_area)
    rows, cols, (grid_l, grid_t) = padded_grids(coords, tile_size_level0, lymphoid, tumour_cells)
    shape = grid_l.shape
    eight = np.ones((3, 3), bool)
    labels, _ = ndi.label(grid_l, eight)
    if rule.restore_beyond_rim:
        grid_t = _beyond_rim(grid_l, grid_t, eight)
    if fragments is None:
        touching = np.unique(labels[ndi.binary_dilation(grid_t, eight) & grid_l])
    else:  # groups and the tumour touching them, one piece of tissue at a time
        grid_f = np.zeros(shape, np.int64)
        grid_f[rows, cols] = np.asarray(fragments, np.int64) + 1
        labels = np.where(grid_l, np.unique(labels * (grid_f.max() + 1) + grid_f, return_inverse=True)[1]
                          .reshape(shape), 0)
        touched = np.zeros(shape, bool)
        for f in np.unique(grid_f[grid_l]):
            on = grid_f == f
            touched |= ndi.binary_dilation(grid_t & on, eight) & grid_l & on
        touching = np.unique(labels[touched])
    at_tumour = np.isin(labels, touching[touching > 0])
    veto = lymphoid & ~at_tumour[rows, cols]
    if rule.max_evidence_share < 1 and evidence[veto].sum() > rule.max_evidence_share * evidence.sum():
        capped = _capped(veto, evidence, labels[rows, cols], rows, cols, shape, fragments, rule)
        if said is not None:  # for the bed's provenance (review r48f: the cap acted without a word in the bed file)
            said["given_back"] = int((veto & ~capped).sum())
        veto = capped
    return veto


def _capped(veto: np.ndarray, evidence: np.ndarray, group: np.ndarray, rows: np.ndarray, cols: np.ndarray,
            shape: tuple[int, int], fragments: np.ndarray | None, rule: LymphoidVeto) -> np.ndarray:
    """The veto, when it would take more than ``rule.max_evidence_share`` of the slide's tumour
    evidence, without the lymphoid groups that touch (8-neighbourhood, same piece of tissue) the
    evidence it leaves (tiles of at least ``restore_evidence``). The veto is for lymphoid tissue
    *away from* tumour; when it would take most of a slide's evidence, the lymphoid tissue among
    the rest of the evidence is the bed's own stroma: in a TIL-rich bed every tumour nest lies
    within a tile of dense lymphocytes, so no nest reaches past an infiltrate's rim to restore it
    (an outside generator's 72 % sTIL slide: 68 % of its evidence vetoed, its bed 0.21 x the truth,
    Dice 0.09). Groups away from that evidence stay vetoed (an aggregate in the stroma, a lymph node
    on a piece of tissue of its own); where nothing else is left, the detector's set-aside decides
    (:data:`weakstil.tumorbed.detector.VETO_SET_ASIDE`)."""
    from scipy import ndimage as ndi

    frag = np.zeros(len(veto), np.int64) if fragments is None else np.asarray(fragments, np.int64)
    other = ~veto & (evidence >= rule.restore_evidence)
    touched = np.zeros(len(veto), bool)
    eight = np.ones((3, 3), bool)
    for f in np.unique(frag[veto]):
        on = frag == f
        grid = np.zeros(shape, bool)
        grid[rows[other & on], cols[other & on]] = True
        touched |= on & ndi.binary_dilation(grid, eight)[rows, cols]
    given_back = np.isin(group, np.unique(group[veto & touched]))
    log.info("lymphoid veto over %.0f%% of the slide's tumour evidence: %d lymphoid tiles touching the rest of "
             "the evidence kept (a TIL-rich bed?)", 100 * rule.max_evidence_share, int((veto & given_back).sum()))
    return veto & ~given_back


def _beyond_rim(grid_l: np.ndarray, grid_t: np.ndarray, eight: np.ndarray) -> np.ndarray:
    """The tumour tiles that may restore a lymphoid group: those of tumour components with a tile
    beyond the one-tile rim of the lymphoid tissue. A lymphoid aggregate's own rim (tiles half
    aggregate, half stroma) can read as tumour on a look the classifier has not seen, and
    restored the aggregate it rings (an outside generator's og2_021; our alt-hard look scored by a
    default-look detector: aggregates far from the bed taken in with evidence 1.0). Tumour at a
    TIL-rich front extends beyond the infiltrate's edge into nests. (One rim for all lymphoid
    groups, not one per group: a few array operations per slide, as the detector's settings
    search calls this thousands of times.)"""
    from scipy import ndimage as ndi

    comps, n = ndi.label(grid_t, eight)
    if n == 0:
        return grid_t
    beyond = grid_t & ~ndi.binary_dilation(grid_l, eight)
    keep = np.zeros(n + 1, bool)
    keep[np.unique(comps[beyond])] = True
    keep[0] = False
    return keep[comps] & grid_t


def apply_veto(evidence: np.ndarray, tile_stats: np.ndarray | None, columns: list[str] | tuple[str, ...] | None,
               coords: np.ndarray, tile_size_level0: float, rule: LymphoidVeto,
               fragments: np.ndarray | None = None, said: dict | None = None) -> tuple[np.ndarray, int | None]:
    """The evidence with vetoed tiles set to 0, and how many were vetoed (``None``: not applied);
    ``said``: as :func:`vetoed_tiles`."""
    veto = vetoed_tiles(evidence, tile_stats, columns, coords, tile_size_level0, rule, fragments, said)
    evidence = np.asarray(evidence, np.float32)
    if veto is None:
        if rule.enabled and len(evidence):
            log.warning("lymphoid veto not applied: the feature file has no tile statistics "
                        "(embed the slide again with this WeakSTIL)")
        return evidence, None
    return np.where(veto, np.float32(0.0), evidence).astype(np.float32), int(veto.sum())


def tile_fragments(coords: np.ndarray, tile_size_level0: float, tissue: np.ndarray, mask_mpp: float,
                   slide_mpp: float, *, labels: np.ndarray | None = None) -> np.ndarray:
    """Each tile's piece of tissue: the label (8-connected components of the tissue mask, 1..n; 0
    where none of its sample points is tissue) found most often at a 3 x 3 grid of points across
    the tile. ``labels``: the mask's pieces when the caller has them, used instead of its 8-connected
    components (labelling a 30-million-pixel mask again took 0.2-0.4 s;
    :func:`weakstil.qc.pieces.piece_labels` joins parts cut by marker ink)."""
    from scipy import ndimage as ndi

    coords = np.asarray(coords, np.float64).reshape(-1, 2)
    if labels is None:
        labels, _ = ndi.label(np.asarray(tissue, bool), np.ones((3, 3), bool))
    if len(coords) == 0:
        return np.zeros(0, np.int64)
    f = slide_mpp / mask_mpp  # mask px per level-0 px
    offsets = (np.arange(3) + 0.5) / 3 * tile_size_level0
    h, w = labels.shape
    xs = np.clip(((coords[:, :1] + offsets[None, :]) * f).astype(np.int64), 0, w - 1)
    ys = np.clip(((coords[:, 1:] + offsets[None, :]) * f).astype(np.int64), 0, h - 1)
    samples = labels[ys[:, :, None], xs[:, None, :]].reshape(len(coords), -1)
    counts = (samples[:, :, None] == samples[:, None, :]).sum(axis=2)  # how often each sample's label occurs
    counts[samples == 0] = -1
    return samples[np.arange(len(samples)), counts.argmax(axis=1)].astype(np.int64)


def veto_fragments(geom, rule: LymphoidVeto) -> np.ndarray | None:
    """:func:`tile_fragments` of a :class:`weakstil.tumorbed.bed.SlideGeometry` when ``rule``
    asks for them (``restore_same_fragment``), else ``None``."""
    if not (rule.enabled and rule.restore_same_fragment):
        return None
    return tile_fragments(geom.coords, geom.tile_size_level0, geom.tissue_mask, geom.mask_mpp, geom.slide_mpp)


def cap_said(capped: dict, share: float) -> str:
    """Said in the bed's ``seed_vetoes`` after the lymphoid veto's tile count when its cap on the evidence it may take
    acted (``capped``: :func:`apply_veto`'s record, empty when it did not; h48f, review r48f)."""
    return (f" (capped at {100 * share:.0f}% of the evidence: {capped['given_back']} lymphoid tiles beside the rest of it "
            "given back)" if capped else "")
