"""The trained tumour-bed detector: tumour evidence per tile -> seeds -> bed by geometry (and the
dense infiltrate that touches it), with a plausibility check and a documented fallback.

Files (``weakstil tumorbed train --out DIR``): ``DIR/model.safetensors`` (the evidence
classifier: ``weight``, ``bias``, ``mean``, ``std``) and ``DIR/model.json`` (``kind``
``weakstil-tumorbed``, ``format_version`` 2, ``algorithm``, the geometry ``shape`` in µm, the
``plausibility`` rule, the ``tumour_cell_gate``, ``lymphoid_veto`` and ``ink_veto`` rules
(weakstil.tumorbed.cellgate, .veto, .ink; absent in detectors written before them: off), context radii, encoder
identity, training slides, seed, the cross-validated Dice per slide and the settings search, versions).

A detector written by WeakSTIL before format 2 (a tile classifier followed by smoothing and a
closing, whose beds came out empty on TIL-rich slides) is refused with a message to retrain.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from weakstil.code_version import version as code_version
from weakstil.bed_geometry import BEFORE_LYMPHOID_VETO, BedShape, Plausibility, bed_from_evidence, check_bed
from weakstil.errors import UsageError, WeakSTILError
from weakstil.modeldir import META_FILE, TUMORBED_DIR, WEIGHTS_FILE, ModelDir, folder_of_file_fix, meta_format_version
from weakstil.tumorbed.aggregates import AggregateRule
from weakstil.tumorbed.bed import SlideGeometry, TumorBed, TumorBedSource
from weakstil.tumorbed.cellgate import (NO_TUMOUR_CELLS, TumourCellGate, apply_cell_gate, gate_applied,
                                        seed_tiles_with_tumour_cells, seeds_without_tumour_cells,
                                        tumour_cells_left_out, tumour_on_other_pieces, OTHER_PIECE_TILES)
from weakstil.tumorbed.evidence import LogisticEvidence, context_inputs, stats_inputs
from weakstil.tumorbed.front import FrontRefine
from weakstil.tumorbed.lobules import LobuleRule
from weakstil.tumorbed.mucin import MucinRule
from weakstil.tumorbed.nests import NestRule, apply_nest_rule, nest_rule_said
from weakstil.tumorbed.ink import InkVeto, apply_ink_veto
from weakstil.tumorbed.veto import LymphoidVeto, apply_veto, cap_said, dark_nuclei_area, veto_fragments, vetoed_tiles

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.files import FeaturesFile

log = logging.getLogger(__name__)
#: Said in a bed's ``seed_vetoes`` when the lymphoid veto left no plausible bed and was not used.
VETO_SET_ASIDE = "lymphoid veto set aside"

#: The SHA-256 of model.safetensors in a detector's model.json (``weights_sha256`` there is the encoder's).
DETECTOR_SHA256 = "detector_weights_sha256"
#: ``kind`` in a detector's model.json.
DETECTOR_KIND = "weakstil-tumorbed"
FORMAT_VERSION = 2
ALGORITHM = "tumour-evidence seeds + geometry (bridge, enclosure, invasive-front margin)"


@dataclass
class TumorBedDetector:
    """Tumour evidence (a tile classifier) + the geometry that turns it into a bed."""

    evidence: LogisticEvidence
    shape: BedShape = field(default_factory=BedShape)
    plausibility: Plausibility = field(default_factory=Plausibility)
    context_radii: tuple[int, ...] = ()
    meta: dict = field(default_factory=dict)
    #: tile-statistics columns appended to the embedding (empty: embedding only)
    stats_columns: tuple[str, ...] = ()
    #: lymphoid tiles cannot seed the bed (off unless set: ``train_detector`` sets it)
    veto: LymphoidVeto = field(default_factory=lambda: LymphoidVeto(enabled=False))
    #: tiles under marker ink cannot seed the bed (off unless set: ``train_detector`` sets it)
    ink_veto: InkVeto = field(default_factory=lambda: InkVeto(enabled=False))
    #: tiles with no tumour cells in or beside them cannot seed the bed (off unless set)
    cell_gate: TumourCellGate = field(default_factory=lambda: TumourCellGate(enabled=False))
    #: half-stride tumour evidence at the bed's front (weakstil.tumorbed.front; off unless training chose it)
    front: FrontRefine = field(default_factory=FrontRefine)
    #: compact lymphoid aggregates read off the slide kept out of the bed (weakstil.tumorbed.aggregates; off unless chosen)
    aggregates: AggregateRule = field(default_factory=AggregateRule)
    #: normal lobules read off the slide kept out of the bed, their tiles no seeds (weakstil.tumorbed.lobules; hunt 47d)
    lobules: LobuleRule = field(default_factory=LobuleRule)
    mucin: MucinRule = field(default_factory=MucinRule)  #: mucin pools with clusters seed the bed (hunt 47f)
    nests: NestRule = field(default_factory=NestRule)  #: a lone seed tile is no nest region, no seed (hunt 48a)
    #: the features' encoders the front refinement built (or why not), once per encoder and weights
    _front_encoders: dict = field(default_factory=dict, repr=False, compare=False)
    #: an encoder its caller already holds (``score``'s), used for the front when it is the features' own
    offered_encoder: Callable | None = field(default=None, repr=False, compare=False)

    @property
    def model_id(self) -> str:
        return str(self.meta.get("model_id", "tumorbed-detector"))

    @property
    def encoder_key(self) -> tuple[str | None, str | None]:
        return self.meta.get("encoder"), self.meta.get("weights_sha256")

    @property
    def reads_tile_stats(self) -> bool:
        """Whether its beds follow the tiles' measured statistics (tumour-nuclei inputs, the lymphoid
        veto, contiguous infiltrate), which follow how the slide's stain was estimated."""
        return (bool(self.stats_columns) or self.veto.enabled or self.cell_gate.enabled
                or self.shape.infiltrate_um > 0)

    def tumour_evidence(self, features: np.ndarray, geom: SlideGeometry, tile_stats: np.ndarray | None = None,
                        stats_columns: list[str] | None = None) -> np.ndarray:
        """P(tile holds invasive tumour) for every tile. ``tile_stats`` (N, K) with its column
        names: needed when the detector was trained with tile statistics."""
        if len(geom.coords) == 0:
            return np.zeros(0, np.float32)
        x = context_inputs(features, geom.coords, geom.tile_size_level0, self.context_radii,
                           bool(self.meta.get("per_slide_standardised", False)))
        if self.stats_columns:
            x = np.concatenate([x, stats_inputs(tile_stats, stats_columns, self.stats_columns)], axis=1)
        return self.evidence.predict(x)

    def seed_evidence(self, features: np.ndarray, geom: SlideGeometry, tile_stats: np.ndarray | None = None,
                      stats_columns: list[str] | None = None, ink_share: np.ndarray | None = None) -> np.ndarray:
        """The tumour evidence that may seed the bed: :meth:`tumour_evidence`, with lymphoid
        tiles away from tumour cells (the lymphoid veto, when the feature file has tile
        statistics) and tiles under marker ink (the ink veto, when ``ink_share`` per tile is
        given) set to 0."""
        return self._seed_evidence(features, geom, tile_stats, stats_columns, ink_share)[0]

    def _seed_evidence(self, features, geom, tile_stats, stats_columns,
                       ink_share, lobule_tiles: np.ndarray | None = None) -> tuple[np.ndarray, str, np.ndarray, str]:
        """:meth:`seed_evidence`, what each veto did (for the bed's provenance), the tumour evidence
        before the lymphoid and ink vetoes (after the tumour-cell gate), and what the gate did ("" when off)."""
        tumour = self.tumour_evidence(features, geom, tile_stats, stats_columns)
        fragments = veto_fragments(geom, self.veto)
        # the tiles the lymphoid veto takes have no tumour nest the gate's measure could miss (hunt 20)
        lymphoid = (vetoed_tiles(tumour, tile_stats, stats_columns, geom.coords, geom.tile_size_level0, self.veto,
                                 fragments) if self.cell_gate.enabled else None)
        raw, gated = apply_cell_gate(tumour, tile_stats, stats_columns, geom.coords, geom.tile_size_level0,
                                     self.cell_gate, lymphoid)
        capped: dict = {}  # what the veto's cap on the evidence it takes did (h48f), said below (review r48f)
        evidence, n_lymphoid = apply_veto(raw, tile_stats, stats_columns, geom.coords, geom.tile_size_level0,
                                          self.veto, fragments, capped)
        evidence, n_ink = apply_ink_veto(evidence, ink_share, self.ink_veto, geom.coords, geom.tile_size_level0)
        if lobule_tiles is not None:  # a normal lobule's tile is no seed (hunt 47d; said by detect_file)
            evidence = np.where(lobule_tiles, 0.0, evidence)
        # after every veto: a seed tile alone among its neighbours is no nest region (hunt 48a)
        evidence, lone_said = nest_rule_said(evidence, geom, self.shape.seed_threshold, self.nests)

        def said(name: str, enabled: bool, n: int | None, missing: str) -> str:
            return f"{name}: " + ("off" if not enabled else f"{n} tiles" if n is not None else missing)
        said_all = [said("lymphoid", self.veto.enabled, n_lymphoid, "no tile statistics")
                    + cap_said(capped, self.veto.max_evidence_share),
                    said("ink", self.ink_veto.enabled, n_ink, "slide not read")] + (
                        [lone_said] if self.nests.enabled else [])  # older beds keep their wording
        if self.cell_gate.enabled:  # said only by detectors that have it: older beds keep their wording
            said_all.insert(0, f"tumour cells: {gated}")
        return evidence, "; ".join(said_all), raw, gated if self.cell_gate.enabled else ""

    def detect_file(self, features: FeaturesFile, slide_path: str | Path | None = None,
                    front: bool = True) -> TumorBed:
        """The bed of a slide from its feature file (read with its tissue mask): the embeddings,
        the tile statistics for the lymphoid veto and, for the ink veto and the front refinement
        (``front``: when the detector has it), the slide (``slide_path`` where it is now, else the
        one the file names)."""
        from weakstil.mil.identity import refuse_non_finite
        from weakstil.tumorbed.evidence import stats_column_names
        from weakstil.tumorbed.ink import SlideRead, slide_ink_share

        # a damaged feature file is refused, not given a bed: its NaN evidence read as an empty bed, and
        # 'tumorbed apply' wrote a whole-tissue fallback bed "of nan tiles" for it (score warned so, then refused it)
        refuse_non_finite([(features.path or Path(features.slide_id), features.features)])
        geom = SlideGeometry.from_file(features)
        test: dict = {}  # which ink test the slide had (weakstil.ink_plane.ink_and_stain), recorded with its bed
        read = SlideRead(features.attrs, slide_path)  # one read of the slide for the ink veto and the aggregates
        ink = (slide_ink_share(features.attrs, geom.coords, geom.tile_size_level0, self.ink_veto.over_tissue,
                               slide_path, test, read) if self.ink_veto.enabled else None)
        columns = stats_column_names(features.attr("tile_stats_columns"))
        kept_out, agg = "", None
        if self.aggregates.enabled:  # aggregates beside the tumour are no tissue of its bed (hunt 46d)
            from weakstil.tumorbed.aggregates import AGGREGATE_MPP, kept_out_said, slide_aggregates

            agg, _ = slide_aggregates(features.attrs, geom.tissue_mask.shape, geom.mask_mpp, self.aggregates,
                                      slide_path, read)
            kept_out = kept_out_said(agg, geom.tissue_mask, geom.mask_mpp)  # what left the tissue (review r46d)
            if agg is not None and read.mpp() > AGGREGATE_MPP * 1.01:  # a large slide's read, coarser: said (h47c)
                kept_out = f"{kept_out[:-1]}, candidates from a {read.mpp():.1f} µm/px read)"
            if agg is not None and agg.any():
                geom.tissue_mask = geom.tissue_mask & ~agg
        del read  # its thumbnail is not kept while the bed is drawn
        from weakstil.tumorbed.mucin import structure_steps  # lobules out (hunt 47d), mucin pools in (47f)

        lobule_tiles, said = structure_steps(self, features.attrs, geom, slide_path, agg)
        kept_out = "; ".join(x for x in (kept_out, said) if x)
        bed = self.detect(np.asarray(features.features), geom, features.tile_stats, columns, ink, lobule_tiles)
        if kept_out:
            bed.seed_vetoes = f"{bed.seed_vetoes}; {kept_out}"
        if front and self.front.enabled and bed.source is TumorBedSource.MODEL:
            from weakstil.tumorbed.front import (FRONT_NO_ENCODER, FRONT_NOT_READ, NO_ENCODER, NOT_READ, FrontUnread,
                                                  front_embedder)

            embed, why = front_embedder(features.attrs, slide_path, self._front_encoders, self.offered_encoder)
            try:
                if embed is not None:
                    bed = self.refine_front(bed, np.asarray(features.features), geom, features.tile_stats, columns,
                                            ink, embed, lobule_tiles)
            except FrontUnread as exc:
                why = str(exc)
            if why:  # the tile-level bed, said in the bed file's seed_vetoes (and score's result file)
                log.warning("%s: the bed's front not refined (%s)%s", features.slide_id, why,
                            f": the slide {features.attrs.get('slide_path')} is not there (give its path in a cohort "
                            "CSV)" if why == NOT_READ else "")
                bed.seed_vetoes = f"{bed.seed_vetoes}; {why}"
                bed.front = FRONT_NO_ENCODER if why.startswith(NO_ENCODER) else FRONT_NOT_READ
        if ink is not None:
            bed.ink_test, bed.ink_plane_rule = str(test.get("ink_test", "")), test.get("ink_plane_rule")
        if bed.source is TumorBedSource.MODEL:  # a bed it drew on a look it was never checked on: said (hunt 35e)
            from weakstil.stain import SlideStain
            from weakstil.tumorbed.look import unlike_detector

            bed.unlike_detector = unlike_detector(SlideStain.from_attr(features.attrs.get("stain")),
                                                  self.meta.get("stain_reference"))
        return bed

    def front_now(self, bed: TumorBed, attrs: dict, slide_path: str | Path | None = None) -> bool:
        """Whether ``bed`` (an earlier one of this detector, kept by 'tumorbed apply' or 'score') was drawn without
        its front as the features' encoder could not be built, and the front can be read now (the weights are back):
        such a bed is drawn again, not kept on every rerun (helper h45i)."""
        from weakstil.tumorbed.front import FRONT_NO_ENCODER, NO_ENCODER, front_embedder

        if not self.front.enabled or bed.source is not TumorBedSource.MODEL or not (
                bed.front == FRONT_NO_ENCODER or NO_ENCODER in bed.seed_vetoes):  # (a bed file before h45i: its words)
            return False
        return front_embedder(attrs, slide_path, self._front_encoders, self.offered_encoder)[0] is not None

    def refine_front(self, bed: TumorBed, features: np.ndarray, geom: SlideGeometry, tile_stats: np.ndarray | None,
                     stats_columns: list[str] | None, ink_share: np.ndarray | None, embed, lobule_tiles=None) -> TumorBed:
        """``bed`` (this detector's, source model) drawn again with half-stride evidence at its front
        (:mod:`weakstil.tumorbed.front`; ``embed(xy)``: the slide's tiles at level-0 ``xy``, embedded as its features
        were); the bed as it was when the redrawn one fails the plausibility check (``lobule_tiles``: as for detect)."""
        from weakstil.tumorbed.front import (FRONT_IMPLAUSIBLE, FRONT_LOST, FRONT_REFINED, lost_beyond_front,
                                             refined_mask)

        _, _, raw, _ = self._seed_evidence(features, geom, tile_stats, stats_columns, ink_share)
        evidence = bed.evidence if bed.evidence is not None else raw
        infiltrate = dark_nuclei_area(tile_stats, stats_columns) if self.shape.infiltrate_um > 0 else None

        def predict(x: np.ndarray) -> np.ndarray:
            return self.evidence.predict(x)

        mask, n = refined_mask(bed.mask, evidence, raw, features, geom, self.shape, predict,
                               bool(self.meta.get("per_slide_standardised", False)), embed, self.front.band_tiles,
                               infiltrate, self.front.grow_tiles)
        lost = lost_beyond_front(bed.mask, mask, geom.tissue_mask, geom.mask_mpp,
                                 geom.tile_size_level0 * geom.slide_mpp)
        if lost:  # its seeds lost, not its front placed (nests smaller than a tile): the tiles' bed, said
            bed.seed_vetoes, bed.front = f"{bed.seed_vetoes}; front: {n} shifted tiles, {lost}", FRONT_LOST
            return bed
        fraction = geom.tile_fractions(mask, geom.mask_mpp)
        unvetoed = self._unvetoed(raw, ink_share, geom, lobule_tiles)  # as detect weighed the tiles' bed (r48a)
        mass = unvetoed if self.plausibility.evidence == BEFORE_LYMPHOID_VETO else evidence
        redrawn = TumorBed(mask, geom.mask_mpp, fraction, TumorBedSource.MODEL, bed.detail, evidence=bed.evidence,
                           seed_vetoes=f"{bed.seed_vetoes}; front: {n} shifted tiles", incomplete=bed.incomplete,
                           unlike_detector=bed.unlike_detector, front=FRONT_REFINED)
        if not check_bed(redrawn.tile_flags, mass, self.plausibility).ok:
            bed.seed_vetoes = f"{bed.seed_vetoes}; front: {n} shifted tiles, redrawn bed implausible, not used"
            bed.front = FRONT_IMPLAUSIBLE
            return bed
        return redrawn

    def detect(self, features: np.ndarray, geom: SlideGeometry, tile_stats: np.ndarray | None = None,
               stats_columns: list[str] | None = None, ink_share: np.ndarray | None = None,
               lobule_tiles: np.ndarray | None = None) -> TumorBed:
        """The slide's bed; the whole tissue, as source ``tissue-fallback`` with the reason in
        ``detail``, when the detected bed is empty or implausibly small next to the evidence."""
        evidence, vetoes, raw, gated = self._seed_evidence(features, geom, tile_stats, stats_columns, ink_share,
                                                           lobule_tiles)
        infiltrate = None
        if self.shape.infiltrate_um > 0:
            infiltrate = dark_nuclei_area(tile_stats, stats_columns)
            if infiltrate is None and len(evidence):
                log.warning("tumour bed: contiguous infiltrate not taken in: the feature file has no tile "
                            "statistics (embed the slide again with this WeakSTIL)")
        # the bed is weighed against the tumour evidence before the lymphoid veto (Plausibility.evidence)
        unvetoed = self._unvetoed(raw, ink_share, geom, lobule_tiles)
        mass = unvetoed if self.plausibility.evidence == BEFORE_LYMPHOID_VETO else evidence
        no_cells = NO_TUMOUR_CELLS in gated  # the gate stood on tissue too poor in nuclei for a tumour nest
        lacking = seeds_without_tumour_cells(raw, tile_stats, stats_columns, self.shape.seed_threshold,
                                             gate_applied(gated), geom.coords, geom.tile_size_level0)
        # the seed share judged per tissue piece where the gate shows tumour cells (hunt 40e); the pieces
        # (0.5 s on a 20-million-pixel mask) are labelled once, when asked for
        pieces = _Pieces(geom) if gate_applied(gated) else None
        bed, verdict = self._bed(evidence, geom, vetoes, infiltrate, mass, tile_stats, stats_columns, pieces)

        def checked(bed: TumorBed, seeds: np.ndarray) -> TumorBed:
            # tumour cells joined to the bed's tumour left outside it: a qc flag, the bed as drawn (hunt 20)
            if gate_applied(gated):
                bed.incomplete = tumour_cells_left_out(seeds, tile_stats, stats_columns, geom.coords,
                                                       geom.tile_size_level0, self.shape.seed_threshold, bed.tile_flags)
                # a second core or section whose tumour focus the seed-share rule dropped (hunt 39b)
                bed.incomplete = bed.incomplete or tumour_on_other_pieces(
                    seeds, tile_stats, stats_columns, geom.coords, geom.tile_size_level0, geom.slide_mpp,
                    geom.tissue_mask, geom.mask_mpp, self.shape.seed_threshold, bed.tile_flags, pieces)
            return bed

        if verdict.ok and not lacking:
            return checked(bed, evidence)
        if self.veto.enabled and not lacking:
            # The lymphoid veto is for aggregates away from tumour. When it leaves no plausible bed
            # while the tumour evidence alone makes one, it has taken a TIL-rich bed (an infiltrate
            # over the whole bed) for an aggregate: the bed without it, never the whole tissue.
            if unvetoed.sum() > evidence.sum():
                again, verdict_again = self._bed(unvetoed, geom, f"{vetoes}; {VETO_SET_ASIDE} (with it: "
                                                 f"{verdict.reason}; a TIL-rich bed?)", infiltrate, unvetoed,
                                                 tile_stats, stats_columns, pieces)
                if verdict_again.ok:
                    return checked(again, unvetoed)
        tissue = geom.tissue_mask.astype(bool)
        why = lacking or verdict.reason + ("; the tumour-cell gate found no tumour cells under most of the evidence "
                                           "(no invasive tumour on this slide?)" if no_cells else "")
        return TumorBed(tissue, geom.mask_mpp, geom.tile_fractions(tissue, geom.mask_mpp),
                        TumorBedSource.TISSUE_FALLBACK, f"{why}; whole tissue used ({self.model_id})",
                        evidence=evidence, seed_vetoes=vetoes)

    def _unvetoed(self, raw: np.ndarray, ink_share, geom: SlideGeometry, lobule_tiles=None) -> np.ndarray:
        """What a bed is weighed against (before the lymphoid veto) and drawn from when that veto is set aside: ``raw``
        ink-vetoed, with the lobule tiles and lone seeds taken when the detector has the lone-seed rule (review r48a)."""
        unvetoed, _ = apply_ink_veto(raw, ink_share, self.ink_veto, geom.coords, geom.tile_size_level0)
        return unvetoed if not self.nests.enabled else apply_nest_rule(
            unvetoed if lobule_tiles is None else np.where(lobule_tiles, 0.0, unvetoed), geom, self.shape.seed_threshold,
            self.nests)[0]

    def _bed(self, evidence: np.ndarray, geom: SlideGeometry, vetoes: str, infiltrate: np.ndarray | None,
             mass: np.ndarray, tile_stats: np.ndarray | None = None, stats_columns: list[str] | None = None,
             pieces: _Pieces | None = None):
        """The bed drawn from ``evidence``, and the verdict on it next to the evidence ``mass``; with
        ``pieces``, the seed share judged per tissue piece (:class:`weakstil.bed_geometry.PieceSeeds`)."""
        cells = (seed_tiles_with_tumour_cells(evidence, tile_stats, stats_columns, self.shape.seed_threshold)
                 if pieces is not None else None)
        mask, _ = bed_from_evidence(evidence, geom.coords, geom.tile_size_level0, geom.slide_mpp,
                                    geom.tissue_mask, geom.mask_mpp, self.shape, infiltrate,
                                    pieces if cells is not None else None, cells, OTHER_PIECE_TILES, geom.seed_pixels)
        bed = TumorBed(mask, geom.mask_mpp, geom.tile_fractions(mask, geom.mask_mpp), TumorBedSource.MODEL,
                       self.model_id, evidence=evidence, seed_vetoes=vetoes)
        return bed, check_bed(bed.tile_flags, mass, self.plausibility)

    # --- files ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """``model.safetensors`` + ``model.json`` in ``directory`` (each written atomically)."""
        from safetensors.numpy import save_file

        from weakstil.atomic import atomic_path, write_json
        from weakstil.runtime import installed_versions, sha256_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(self.evidence.tensors(), str(tmp))
            digest = sha256_file(tmp)
        meta = {**self.meta, DETECTOR_SHA256: digest, "kind": DETECTOR_KIND, "format_version": FORMAT_VERSION,
                "algorithm": ALGORITHM,
                "shape": self.shape.to_dict(), "plausibility": self.plausibility.to_dict(),
                "context_radius": [int(r) for r in self.context_radii], "weakstil_version": code_version(),
                "tile_stats_columns": list(self.stats_columns), "lymphoid_veto": self.veto.to_dict(),
                "ink_veto": self.ink_veto.to_dict(), "tumour_cell_gate": self.cell_gate.to_dict(),
                **({"front": self.front.to_dict()} if self.front.enabled else {}),
                **({"aggregates": self.aggregates.to_dict()} if self.aggregates.enabled else {}),
                **({"lobules": self.lobules.to_dict()} if self.lobules.enabled else {}),
                **({"mucin": self.mucin.to_dict()} if self.mucin.enabled else {}),
                **({"nests": self.nests.to_dict()} if self.nests.enabled else {}),
                # the numerics it was trained with, as a MIL model records them (its own are numpy's)
                "versions": self.meta.get("versions") or {"weakstil": code_version(),
                                                           **installed_versions(("numpy", "scipy", "scikit-image"))},
                "created": self.meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        write_json(directory / META_FILE, meta, indent=2, sort_keys=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> TumorBedDetector:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        directory = Path(directory)
        meta_path, weights_path = directory / META_FILE, directory / WEIGHTS_FILE
        if not directory.exists():
            raise WeakSTILError("tumour-bed detector folder not found", path=directory,
                                fix="check the path, or train one with 'weakstil tumorbed train'")
        if directory.is_file():  # MODEL/tumorbed/model.json, say: a usage mistake (exit 2), as for --model
            raise UsageError("is a file, not a tumour-bed detector folder", path=directory,
                             fix=folder_of_file_fix(directory, "--tumorbed")
                             or "pass the --out folder of 'weakstil tumorbed train'")
        missing = [p.name for p in (meta_path, weights_path) if not p.is_file()]
        if missing:
            bundled = directory.name == TUMORBED_DIR and ModelDir(directory.parent).is_model()
            raise WeakSTILError(f"not a tumour-bed detector ({' and '.join(missing)} missing: a detector folder holds "
                                f"{META_FILE} and {WEIGHTS_FILE})", path=directory,
                                fix="copy the whole model folder again, or train the model again" if bundled else
                                "pass the complete --out folder of 'weakstil tumorbed train', or train one with it")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WeakSTILError(f"model.json is not valid JSON ({exc})", path=meta_path,
                                fix="train the detector again with 'weakstil tumorbed train'") from None
        if isinstance(meta, dict) and meta.get("format") == "weakstil-mil":  # an sTIL model's folder
            bundled = directory / "tumorbed"
            raise WeakSTILError("is an sTIL model (from 'weakstil train'), not a tumour-bed detector", path=directory,
                                fix=f"pass its bundled detector {bundled}" if (bundled / META_FILE).is_file() else
                                "pass the --out folder of 'weakstil tumorbed train'")
        if not isinstance(meta, dict) or meta.get("kind") != DETECTOR_KIND:
            kind = meta.get("kind") if isinstance(meta, dict) else None
            raise WeakSTILError(f"model.json says kind '{kind}', not a tumour-bed detector",
                                path=directory, fix="pass the directory written by 'weakstil tumorbed train'")
        version = meta_format_version(meta, meta_path, 1, "train the detector again with 'weakstil tumorbed train'")
        if version < FORMAT_VERSION:
            raise WeakSTILError(
                f"tumour-bed detector of format {version} (WeakSTIL {meta.get('weakstil_version', '?')}: a tile "
                "classifier with smoothing, whose beds can drop TIL-rich tumour); this WeakSTIL reads format "
                f"{FORMAT_VERSION}", path=directory,
                fix="retrain it on the same annotated slides with 'weakstil tumorbed train'")
        if version > FORMAT_VERSION:
            raise WeakSTILError(f"tumour-bed detector of format {version} is newer than this WeakSTIL "
                                f"(format {FORMAT_VERSION})", path=directory, fix="upgrade WeakSTIL")
        _check_meta_types(meta, meta_path)
        try:
            tensors = load_file(str(weights_path))
        except (SafetensorError, OSError) as exc:
            from weakstil.mil.store import LFS_FIX
            from weakstil.runtime import lfs_pointer_note

            if pointer := lfs_pointer_note(weights_path):  # a clone without git-lfs: no detector to retrain
                raise WeakSTILError(pointer, path=weights_path, fix=LFS_FIX) from None
            bundled = directory.name == TUMORBED_DIR and ModelDir(directory.parent).is_model()
            raise WeakSTILError(f"cannot read the weights ({exc})", path=weights_path,
                                fix=f"copy the whole model folder {directory.parent} again (its bundled detector was "
                                "damaged in a copy)" if bundled else
                                "copy the detector folder again, or train it again with 'weakstil tumorbed train'") from None
        from weakstil.runtime import sha256_file

        if meta.get(DETECTOR_SHA256) and sha256_file(weights_path) != meta[DETECTOR_SHA256]:
            # a damaged file can still load and then draws another bed, silently changing the sTIL%
            raise WeakSTILError("weights do not match model.json (SHA-256 differs: the file was damaged or "
                                "replaced)", path=weights_path,
                                fix="copy the detector folder again (for a model: the whole model folder), or "
                                    "retrain it with 'weakstil tumorbed train'")
        expected = {"weight", "bias", "mean", "std"}
        if set(tensors) != expected:
            raise WeakSTILError(f"weights have keys {sorted(tensors)}, expected {sorted(expected)}",
                                path=weights_path, fix="retrain the tumour-bed detector")
        evidence = LogisticEvidence.from_tensors(tensors)
        try:  # a value of the wrong type edited into model.json: one line, not a TypeError's "bug in weakstil"
            radii = tuple(int(r) for r in meta.get("context_radius", []))
        except (TypeError, ValueError) as exc:
            raise WeakSTILError(f"model.json's context_radius is not a list of whole numbers ({exc})",
                                path=meta_path, fix=_META_FIX) from None
        width = len(evidence.weight)
        if not (len(evidence.mean) == len(evidence.std) == width):
            raise WeakSTILError("weights have inconsistent sizes", path=weights_path,
                                fix="retrain the tumour-bed detector")
        try:
            detector = cls(evidence, BedShape.from_dict(meta.get("shape", {})),
                           Plausibility.from_dict(meta.get("plausibility", {})), radii, meta,
                           tuple(str(c) for c in meta.get("tile_stats_columns", [])),
                           LymphoidVeto.from_dict(meta.get("lymphoid_veto")), InkVeto.from_dict(meta.get("ink_veto")),
                           TumourCellGate.from_dict(meta.get("tumour_cell_gate")), FrontRefine.from_dict(meta.get("front")),
                           aggregates=AggregateRule.from_dict(meta.get("aggregates")),
                           lobules=LobuleRule.from_dict(meta.get("lobules")), mucin=MucinRule.from_dict(meta.get("mucin")),
                           nests=NestRule.from_dict(meta.get("nests")))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise WeakSTILError(f"model.json holds a value of the wrong type ({exc})", path=meta_path,
                                fix=_META_FIX) from None
        # chosen under another ink test: told, not silently (helper h45d); a model's bundled one, as such (h45e)
        bundled = Path(directory).name == "tumorbed" and (Path(directory).parent / "model.json").is_file()
        if said := detector.ink_veto.other_rule(directory, bundled):
            log.warning("%s", said)
        return detector


class _Pieces:
    """The slide's tissue pieces (:func:`weakstil.qc.pieces.piece_labels`), labelled on the first call."""

    def __init__(self, geom: SlideGeometry):
        self._geom, self._labels = geom, None

    def __call__(self) -> np.ndarray:
        if self._labels is None:
            from weakstil.qc.pieces import piece_labels

            self._labels = piece_labels(np.asarray(self._geom.tissue_mask, bool), self._geom.mask_mpp)[0]
        return self._labels


_META_FIX = ("copy the detector folder again (for a model: the whole model folder), or retrain it with "
             "'weakstil tumorbed train'")


def _check_meta_types(meta: dict, meta_path: Path) -> None:
    """The sections every use of a detector reads are JSON objects, its tiling numbers: a 'tiling' edited
    into a string passed loading and was a TypeError ("this is a bug in weakstil") when a batch began
    (outside corruption sweep, hunt 37n)."""
    for key in ("tiling", "features", "shape", "plausibility", "lymphoid_veto", "ink_veto", "tumour_cell_gate", "front",
                "aggregates", "lobules", "mucin", "nests"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise WeakSTILError(f"model.json's '{key}' is not a JSON object", path=meta_path, fix=_META_FIX)
    for key in ("mpp", "tile_px"):
        value = (meta.get("tiling") or {}).get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise WeakSTILError(f"model.json's tiling {key} {value!r} is not a number", path=meta_path, fix=_META_FIX)
