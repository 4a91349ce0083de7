"""Training a tumour-bed detector from a few annotated slides (``weakstil tumorbed train``).

1. Tumour evidence: a logistic tile classifier (weakstil.tumorbed.evidence) on tiles
   well inside vs well outside the annotated beds.
2. Leave-one-slide-out: each annotated slide gets the evidence of a classifier that never saw it.
3. The geometry (seed threshold, bridge and margin in µm, smallest seed area, smoothing) is the
   setting whose beds, from those held-out evidences, best match the annotations (mean Dice);
   the search table, the chosen setting and every slide's held-out Dice go into model.json.
   Lymphoid tiles away from tumour cells lose their evidence first (the lymphoid veto,
   weakstil.tumorbed.veto), as they will when the detector runs; the veto's restore rule
   (tumour next to a lymphoid group by evidence and pale nuclei, or by evidence alone) is
   chosen with the geometry, by the same Dice.
   Then dense lymphocytic infiltrate touching the bed is taken in up to a reach (0, 150 or 300
   µm) chosen by the same Dice from the best settings (weakstil.bed_geometry step 6).
4. The plausibility rule (when a detected bed is too small to trust) is set from the same
   held-out beds: a quarter of the smallest bed-to-evidence ratio any annotated slide showed.
5. The classifier is refitted on all slides, with one appearance-jittered copy of each slide's tiles
   where given (weakstil.tumorbed.augment): only this fit, so what 2-4 chose stays chosen on the
   slides as embedded.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

import numpy as np

from weakstil.bed_geometry import (BEFORE_LYMPHOID_VETO, VETOED, BedShape, Plausibility, coarsen, grow_bed,
                                   take_in_infiltrate, tiles_to_mask)
from weakstil.bed_sweep import grid_shapes, sweep_dice_table
from weakstil.errors import WeakSTILError
from weakstil.tumorbed.bed import SlideGeometry
from weakstil.tumorbed.cellgate import TumourCellGate, apply_cell_gate
from weakstil.tumorbed.detector import TumorBedDetector
from weakstil.tumorbed.evidence import (LogisticEvidence, context_inputs, fit_logistic,
                                        stats_inputs, training_labels)
from weakstil.tumorbed.ink import InkVeto, apply_ink_veto
from weakstil.tumorbed.training_checks import check_annotations, check_held_out
from weakstil.tumorbed.veto import LymphoidVeto, apply_veto, dark_nuclei_area, veto_fragments

log = logging.getLogger(__name__)

#: The settings searched by leave-one-slide-out cross-validation.
SEED_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
SMOOTHING_UM = (0.0, 60.0)
BRIDGES_UM = (0.0, 50.0, 100.0, 150.0, 200.0, 300.0)
MARGINS_UM = (0.0, 25.0, 50.0, 75.0, 100.0, 150.0)
MIN_SEEDS_MM2 = (0.0, 0.02, 0.05)
MIN_SEED_SHARES = (0.0, 0.1, 0.25, 0.5)
#: The search runs on masks at least this coarse (µm/px); the chosen sizes are in µm, so they
#: hold at the detector's own resolution.
SEARCH_MPP = 16.0
#: A detected bed under this share of the smallest bed-to-evidence ratio seen in
#: cross-validation is implausibly small.
PLAUSIBLE_SHARE = 0.25
#: Rounds of keeping only the most tumour-like inside tiles as positives, and that share.
REFINE_ROUNDS = 1
REFINE_KEEP = 0.5
#: How far past the bed dense infiltrate touching it may be taken in (µm; 0: not at all).
INFILTRATE_REACH_UM = (0.0, 150.0, 300.0)
#: The best settings of the geometry search that are tried again with each reach.
INFILTRATE_TOP = 10
#: A reach is taken only when it raises the mean held-out Dice by at least this much: a step that
#: makes beds larger earns its place on the annotated slides, not by a rounding error (on looks
#: without infiltrate past the tumour it gains ~0.0005, and a bed that wrongly reaches an
#: aggregate elsewhere would then take it in).
INFILTRATE_MIN_GAIN = 0.005
#: The lymphoid veto's restore rule searched beside the rule as given: a lymphoid group next to a
#: tile the classifier reads as tumour keeps its evidence whatever that tile's nuclei look like.
RESTORE_BY_EVIDENCE = 0.0
#: ... and taken only when it raises the mean held-out Dice by at least this much: it restores
#: aggregates next to any tile the classifier misreads as tumour, so on a look it has not seen
#: (default-look detector on the hard looks: aggregates taken in 0.36 / 0.50 by the looser rule,
#: 0.25 / 0.30 by the strict one) a gain of 0.0001 on the annotated slides is not worth it.
RESTORE_MIN_GAIN = 0.005
#: The tumour-cell gate (weakstil.tumorbed.cellgate) is kept unless it lowers the mean held-out
#: Dice of the annotated slides by more than this: it follows the definition of a seed, so it
#: earns no place by a gain on the annotated look (on our three looks it changes the within-look
#: Dice by < 0.003 and protects beds on looks the classifier has not seen), but annotations that
#: show a look whose tumour nuclei the stain measure misses switch it off.
CELL_GATE_MAX_LOSS = 0.005
#: Embeddings standardised over each slide's own tiles before the classifier (look-robust).
PER_SLIDE = True
#: Neighbourhoods (radius in tiles) whose mean embedding joins each tile's own (none by default:
#: the evidence is about the tile itself; geometry brings in its surroundings).
CONTEXT_RADII: tuple[int, ...] = ()


@dataclass
class AnnotatedSlide:
    """Features of one slide's tiles, its geometry and the annotated tumour-bed mask."""

    slide_id: str
    features: np.ndarray
    geom: SlideGeometry
    bed_mask: np.ndarray  #: on the geometry's tissue-mask grid
    tile_stats: np.ndarray | None = None  #: (N, K) weakstil.tilestats measurements, if the file has them
    stats_columns: list[str] | None = None
    ink_share: np.ndarray | None = None  #: (N,) share of each tile under marker ink, when the slide could be read

    @property
    def bed_fraction(self) -> np.ndarray:
        return self.geom.tile_fractions(self.bed_mask, self.geom.mask_mpp)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def fit_evidence(inputs: list[np.ndarray], labels: list[np.ndarray], used: list[np.ndarray], *, seed: int = 0,
                 refine: int = REFINE_ROUNDS, neutral_k: int = 0) -> LogisticEvidence:
    """The tumour-evidence classifier from some slides' tiles.

    First inside vs outside; then, ``refine`` times, only the inside tiles the classifier finds
    most tumour-like on their own slide (the top ``REFINE_KEEP`` of that slide's inside tiles)
    stay positive examples: the stroma of the bed, lymphocyte-rich or not, is not taught as
    tumour, and every slide (a TIL-rich one too) keeps its own tumour examples."""
    def fit(keep: list[np.ndarray], n_neutral: int = 0) -> LogisticEvidence:
        y = np.concatenate([lab[k] for lab, k in zip(labels, keep)])
        if len(np.unique(y)) < 2:
            raise WeakSTILError("the annotated slides have no tile well inside (or none well outside) a tumour bed",
                                fix="annotate slides that have both bed and other tissue")
        # tiles without tumour: outside the bed, and inside it where not kept as a tumour example
        neutral = np.concatenate([x[u & ~(lab & kk)] for x, lab, u, kk in zip(inputs, labels, used, keep)])
        return fit_logistic(np.concatenate([x[kk] for x, kk in zip(inputs, keep)]), y, seed=seed,
                            neutral_x=neutral, neutral_k=n_neutral)

    model = fit(used, 0 if refine else neutral_k)
    for _ in range(refine):
        keep = []
        for x, lab, u in zip(inputs, labels, used):
            k = u.copy()
            inside = np.flatnonzero(u & lab)
            if len(inside) >= 4:
                p = model.predict(x[inside])
                k[inside[p < np.quantile(p, 1.0 - REFINE_KEEP)]] = False
            keep.append(k)
        model = fit(keep, neutral_k)
    return model


def held_out_evidence(inputs: list[np.ndarray], labels: list[np.ndarray], used: list[np.ndarray], *,
                      seed: int = 0, refine: int = REFINE_ROUNDS, neutral_k: int = 0,
                      models: list | None = None) -> list[np.ndarray]:
    """Each slide's tumour evidence from a classifier fitted on the other slides (all slides
    when there are fewer than 3: then the search is optimistic, and model.json says so); each
    slide's classifier appended to ``models`` when given."""
    n = len(inputs)
    if n < 3:
        model = fit_evidence(inputs, labels, used, seed=seed, refine=refine, neutral_k=neutral_k)
        (models if models is not None else []).extend([model] * n)
        return [model.predict(x) for x in inputs]
    out = []
    for i in range(n):
        rest = [j for j in range(n) if j != i]
        model = fit_evidence([inputs[j] for j in rest], [labels[j] for j in rest], [used[j] for j in rest],
                             seed=seed, refine=refine, neutral_k=neutral_k)
        (models if models is not None else []).append(model)
        out.append(model.predict(inputs[i]))
    return out


def _search_grid(s: AnnotatedSlide) -> tuple[float, np.ndarray, np.ndarray]:
    """One annotated slide on the search's mask grid (:data:`SEARCH_MPP`): its µm/px, tissue, and
    annotated bed cut to the tissue (an outline may include glass; the bed never does)."""
    factor = max(1, int(round(SEARCH_MPP / s.geom.mask_mpp)))
    tissue = coarsen(s.geom.tissue_mask, factor)
    return s.geom.mask_mpp * factor, tissue, coarsen(s.bed_mask, factor) & tissue


def search_shape(slides: list[AnnotatedSlide], evidence: list[np.ndarray],
                 memo: dict | None = None) -> tuple[BedShape, list[dict], np.ndarray]:
    """The geometry whose beds best match the annotations (mean Dice over slides), the search
    table (one row per setting), and the chosen setting's Dice per slide.

    ``memo``: a dict kept across searches of the same ``slides`` (one training): what a search met
    before (a slide's grid, the counts of a seed mask) is not computed again."""
    grid = dict(seed_thresholds=SEED_THRESHOLDS, bridges_um=BRIDGES_UM, margins_um=MARGINS_UM,
                min_seeds_mm2=MIN_SEEDS_MM2, min_seed_shares=MIN_SEED_SHARES)
    shapes = [shape for smooth in SMOOTHING_UM for shape in grid_shapes(smooth, **grid)]
    columns = []
    memo = {} if memo is None else memo
    for i, (s, ev) in enumerate(zip(slides, evidence)):
        g = s.geom
        if i not in memo:
            memo[i] = (_search_grid(s), {})
        (mpp, tissue, target), seen = memo[i]
        columns.append(np.concatenate([
            sweep_dice_table(tiles_to_mask(ev, g.coords, g.tile_size_level0, g.slide_mpp, tissue.shape, mpp, smooth),
                             tissue, target, mpp, memo=seen, **grid).ravel() for smooth in SMOOTHING_UM]))
    per_slide = np.stack(columns, axis=1)  # one row per setting, one Dice per slide
    means, mins = per_slide.mean(axis=1).tolist(), per_slide.min(axis=1).tolist()
    table = [{**_shape_dict(shape), "dice_mean": m, "dice_min": n} for shape, m, n in zip(shapes, means, mins)]
    # best mean Dice; ties go to the better worst slide, then to the simpler (smaller) geometry, except that of
    # the focus shares (min_seed_share) the annotated slides cannot tell apart the *largest* is taken: the bed is
    # the region of the invasive tumour, and where the annotated slides hold no separate focus every share ties,
    # so the smallest (0, taken before) kept every look-alike the classifier fires on away from the tumour on a
    # look it was not trained on (DCIS, a lymph node's germinal centre, stroma) as a focus of its own. Where the
    # annotations show such a focus as bed, the smaller share wins on Dice and there is no tie. (Not so for
    # min_seed_mm2, an absolute area: a large one drops the whole bed of a slide with a small tumour.)
    best = max(range(len(shapes)), key=lambda i: (round(means[i], 4), round(mins[i], 4), -shapes[i].bridge_um,
                                                  -shapes[i].smooth_um, -shapes[i].min_seed_mm2,
                                                  shapes[i].min_seed_share, -shapes[i].margin_um))
    return shapes[best], table, per_slide[best].copy()


@lru_cache(maxsize=65536)
def _shape_dict(shape: BedShape) -> dict[str, float]:
    """``shape.to_dict()``, once per setting (the search table repeats each setting; callers copy it)."""
    return shape.to_dict()


def _search_infiltrate(slides: list[AnnotatedSlide], evidence: list[np.ndarray], shape: BedShape,
                       table: list[dict], dice: np.ndarray) -> tuple[BedShape, np.ndarray, list[dict]]:
    """The reach of contiguous infiltrate (:data:`INFILTRATE_REACH_UM`) tried on the chosen
    geometry and the next best ones (:data:`INFILTRATE_TOP`), by the same leave-one-slide-out Dice;
    taken when it gains at least :data:`INFILTRATE_MIN_GAIN` over the geometry without it.

    Returns the geometry (``infiltrate_um`` 0 when no reach does better, or when an annotated
    slide has no tile statistics to say where the infiltrate is), its Dice per slide, and the
    best mean Dice per reach for model.json."""
    darks = [dark_nuclei_area(s.tile_stats, s.stats_columns) for s in slides]
    if any(d is None for d in darks):
        return shape, dice, []
    candidates = list(dict.fromkeys([shape] + [BedShape.from_dict(r) for r in
                                               sorted(table, key=lambda r: (-r["dice_mean"], -r["dice_min"]))
                                               [:INFILTRATE_TOP]]))
    scores: dict[BedShape, list[float]] = {}
    for s, ev, dark in zip(slides, evidence, darks):
        g = s.geom
        mpp, tissue, target = _search_grid(s)
        dark_map = tiles_to_mask(dark, g.coords, g.tile_size_level0, g.slide_mpp, tissue.shape, mpp)
        emaps = {smooth: tiles_to_mask(ev, g.coords, g.tile_size_level0, g.slide_mpp, tissue.shape, mpp, smooth)
                 for smooth in {base.smooth_um for base in candidates}}
        for base in candidates:
            bed = grow_bed((emaps[base.smooth_um] >= base.seed_threshold) & tissue, tissue, mpp, base)
            for reach in INFILTRATE_REACH_UM:
                tried = replace(base, infiltrate_um=float(reach))
                scores.setdefault(tried, []).append(_dice(take_in_infiltrate(bed, dark_map, tissue, mpp, tried),
                                                          target))
    # best mean Dice; ties go to the better worst slide, then to no (or the shorter) reach, then the search's choice
    best = max(scores, key=lambda sh: (round(float(np.mean(scores[sh])), 4), round(float(np.min(scores[sh])), 4),
                                       -sh.infiltrate_um, sh == shape))
    if best.infiltrate_um > 0 and float(np.mean(scores[best])) < float(np.mean(dice)) + INFILTRATE_MIN_GAIN:
        best = shape
    per_reach = [{"infiltrate_um": float(reach), "dice_mean": round(max(
        float(np.mean(d)) for sh, d in scores.items() if sh.infiltrate_um == reach), 4)} for reach in INFILTRATE_REACH_UM]
    return best, np.asarray(scores[best]), per_reach


def _vetoed_evidence(slides: list[AnnotatedSlide], evidence: list[np.ndarray], veto: LymphoidVeto,
                     ink_rule: InkVeto) -> tuple[list[np.ndarray], list[int | None], list[int | None]]:
    """The held-out evidence with both vetoes applied, and the tiles each vetoed per slide."""
    out, vetoed, inked = [], [], []
    for s, ev in zip(slides, evidence):
        n_lymphoid = None
        if veto.enabled:
            ev, n_lymphoid = apply_veto(ev, s.tile_stats, s.stats_columns, s.geom.coords, s.geom.tile_size_level0, veto,
                                        veto_fragments(s.geom, veto))
        ev, n_ink = apply_ink_veto(ev, s.ink_share, ink_rule, s.geom.coords, s.geom.tile_size_level0)
        out.append(ev)
        vetoed.append(n_lymphoid)
        inked.append(n_ink)
    return out, vetoed, inked


def _search_veto(slides: list[AnnotatedSlide], evidence: list[np.ndarray], veto: LymphoidVeto, ink_rule: InkVeto,
                 memo: dict | None = None):
    """The lymphoid veto's restore rule chosen with the geometry, by leave-one-slide-out Dice.

    Candidates: the rule as given (a lymphoid group keeps its evidence when it touches a tile that
    is tumour by the classifier *and* by its pale tumour-sized nuclei), and the same rule with the
    classifier's reading alone (:data:`RESTORE_BY_EVIDENCE`). The first protects beds from
    lymphoid aggregates on looks the classifier has not learnt to tell from tumour; the second
    keeps solid sheets of hyperchromatic tumour cells (dark, lymphocyte-sized nuclei, no pale
    ones), which the first vetoes as lymphoid, where the annotated slides show them. The second
    is taken only when it gains at least :data:`RESTORE_MIN_GAIN` mean Dice. Returns the rule, the
    vetoed evidence with its counts, the geometry search and the comparison table for model.json."""
    candidates = [veto]
    if veto.enabled and veto.restore_tumour_nuclei_area > RESTORE_BY_EVIDENCE:
        candidates.append(replace(veto, restore_tumour_nuclei_area=RESTORE_BY_EVIDENCE))
    best, table, searched = None, [], []
    for rank, rule in enumerate(candidates):
        vetoed = _vetoed_evidence(slides, evidence, rule, ink_rule)
        # a rule that changes no slide's evidence gives the same search: not run again
        found = next((f for ev, f in searched if all(np.array_equal(a, b) for a, b in zip(ev, vetoed[0]))), None)
        if found is None:
            found = search_shape(slides, vetoed[0], memo)
            searched.append((vetoed[0], found))
        dice = found[2]
        table.append({"restore_tumour_nuclei_area": float(rule.restore_tumour_nuclei_area),
                      "dice_mean": round(float(dice.mean()), 4), "dice_min": round(float(dice.min()), 4)})
        key = (round(float(dice.mean()), 4) - (RESTORE_MIN_GAIN if rank else 0.0), round(float(dice.min()), 4), -rank)
        if best is None or key > best[0]:
            best = (key, rule, vetoed, found)
    _, rule, vetoed, found = best
    return rule, vetoed, found, table


def _choose_cell_gate(slides: list[AnnotatedSlide], evidence: list[np.ndarray], veto: LymphoidVeto,
                      ink_rule: InkVeto, rule: TumourCellGate | None, memo: dict | None = None):
    """The tumour-cell gate kept or not (:data:`CELL_GATE_MAX_LOSS`), the held-out evidence it
    leaves, the comparison for model.json, what it did per slide, and :func:`_search_veto` of the
    evidence left (``None`` when the gate was not tried)."""
    gate = TumourCellGate() if rule is None else rule
    if gate.enabled and any(s.tile_stats is None or s.stats_columns is None for s in slides):
        log.warning("tumour-cell gate off: some annotated slides have no tile statistics (embed them again)")
        gate = TumourCellGate(enabled=False)
    if not gate.enabled:
        return gate, evidence, [], [None] * len(slides), None
    done = [apply_cell_gate(ev, s.tile_stats, s.stats_columns, s.geom.coords, s.geom.tile_size_level0, gate)
            for s, ev in zip(slides, evidence)]
    gated = [ev for ev, _ in done]
    dice, found = {}, {}
    for on, ev in ((False, evidence), (True, gated)):
        found[on] = _search_veto(slides, ev, veto, ink_rule, memo)
        per_slide = found[on][2][2]
        dice[on] = (round(float(per_slide.mean()), 4), round(float(per_slide.min()), 4))
    search = [{"tumour_cell_gate": on, "dice_mean": m, "dice_min": n} for on, (m, n) in dice.items()]
    if dice[True][0] < dice[False][0] - CELL_GATE_MAX_LOSS:
        log.info("tumour-cell gate off: it lowers the held-out Dice of the annotated slides %.3f -> %.3f",
                 dice[False][0], dice[True][0])
        return TumourCellGate(enabled=False), evidence, search, [None] * len(slides), found[False]
    return gate, gated, search, [said for _, said in done], found[True]


def plausibility_rule(slides: list[AnnotatedSlide], evidence: list[np.ndarray], shape: BedShape,
                      mass_evidence: list[np.ndarray] | None = None) -> Plausibility:
    """How small a detected bed may be next to its evidence: a share of the smallest ratio
    (bed tiles / Σ evidence) among the held-out beds of the annotated slides. The beds are drawn
    from ``evidence`` (both vetoes applied); the mass is ``mass_evidence`` (before the lymphoid
    veto, as the detector checks a bed; ``None``: ``evidence``)."""
    from weakstil.bed_geometry import bed_from_evidence

    ratios = []
    for s, ev, ev_mass in zip(slides, evidence, mass_evidence or evidence):
        g = s.geom
        mask, _ = bed_from_evidence(ev, g.coords, g.tile_size_level0, g.slide_mpp, g.tissue_mask, g.mask_mpp, shape,
                                    dark_nuclei_area(s.tile_stats, s.stats_columns))
        n_bed = int((g.tile_fractions(mask, g.mask_mpp) >= 0.5).sum())
        mass = float(np.clip(ev_mass, 0, 1).sum())
        if n_bed > 0 and mass > 0:
            ratios.append(n_bed / mass)
    ratio = PLAUSIBLE_SHARE * min(ratios) if ratios else 0.0
    return Plausibility(min_bed_tiles=2, min_evidence_ratio=round(float(ratio), 4),
                        evidence=VETOED if mass_evidence is None else BEFORE_LYMPHOID_VETO)


def train_detector(slides: list[AnnotatedSlide], *, seed: int = 0, meta: dict | None = None,
                   context_radii: tuple[int, ...] = CONTEXT_RADII, refine: int = REFINE_ROUNDS,
                   per_slide: bool = PER_SLIDE, neutral_k: int = 0,
                   stats_columns: tuple[str, ...] = (),
                   lymphoid_veto: LymphoidVeto | None = None,
                   ink_veto: InkVeto | None = None, infiltrate: bool = True,
                   cell_gate: TumourCellGate | None = None,
                   copies: Callable[[], tuple[dict[str, np.ndarray], dict]] | None = None,
                   front: Callable[[str], Callable | None] | None = None,
                   aggregates: Callable | None = None, lobules: Callable | None = None,
                   mucin: Callable | None = None) -> TumorBedDetector:
    """Fit the evidence classifier and choose the geometry by leave-one-slide-out Dice.

    ``lymphoid_veto``: the rule applied to the evidence before the geometry (default: the
    :class:`LymphoidVeto` defaults; ``LymphoidVeto(enabled=False)`` for none). It is switched
    off, with a warning, when an annotated slide's feature file has no tile statistics.
    ``ink_veto``: likewise for tiles under marker ink (default on; applied to the slides whose
    ``ink_share`` is known). ``infiltrate``: search the reach of contiguous infiltrate
    (:data:`INFILTRATE_REACH_UM`); off: the bed never takes it in. ``cell_gate``: the tumour-cell
    gate (default on; kept unless it costs :data:`CELL_GATE_MAX_LOSS` held-out Dice; off, with a
    warning, without tile statistics). ``copies``: called after the checks and the search, gives
    ``{slide_id: features}`` of jittered copies of slides' tiles and their record for model.json
    (weakstil.tumorbed.augment.augmented_copies); each copy joins the final classifier's fit only,
    as a slide of its own with its original's labels. ``None``: no copies. ``front(slide_id)``: that slide's
    shifted-tile embedder (weakstil.tumorbed.front.slide_embedder), to choose the half-stride evidence at the
    bed's front (:func:`weakstil.tumorbed.front.choose_front`); ``None``: not searched, off. ``aggregates(slide_id,
    mask_shape, mask_mpp)``: its lymphoid aggregates, to choose keeping them out of the bed
    (:func:`weakstil.tumorbed.aggregates.choose_aggregates`); ``None``: off. ``lobules(slide_id, geom)``: its normal
    lobules and their tiles, to choose keeping them out (:func:`weakstil.tumorbed.lobules.choose_lobules`); ``None``: off.
    ``mucin(slide_id, geom)``: its mucin pools with floating clusters, to choose seeding the bed with them
    (:func:`weakstil.tumorbed.mucin.choose_mucin`); ``None``: off."""
    if not slides:
        raise WeakSTILError("no annotated slides to train the tumour-bed detector on",
                            fix="pass slides with annotations (--annotations DIR)")
    check_annotations(slides)  # beds of all tissue, one outline on every slide, nests without their stroma
    t0 = time.perf_counter()
    inputs = [context_inputs(s.features, s.geom.coords, s.geom.tile_size_level0, context_radii, per_slide)
              for s in slides]
    if stats_columns:  # tumour-cell morphometry beside the embedding
        inputs = [np.concatenate([x, stats_inputs(s.tile_stats, s.stats_columns, stats_columns)], axis=1)
                  for x, s in zip(inputs, slides)]
    labelled = [training_labels(s.bed_fraction) for s in slides]
    labels, used = [y for y, _ in labelled], [u for _, u in labelled]
    folds: list = []
    evidence = held_out_evidence(inputs, labels, used, seed=seed, refine=refine, neutral_k=neutral_k, models=folds)
    veto = LymphoidVeto() if lymphoid_veto is None else lymphoid_veto
    if veto.enabled and any(s.tile_stats is None or s.stats_columns is None for s in slides):
        log.warning("lymphoid veto off: some annotated slides have no tile statistics (embed them again)")
        veto = LymphoidVeto(enabled=False)
    # the cap guards slides the veto would empty, not the choices (in the CV: 41a, 44b held out -0.04, -0.11; lead)
    cap, veto = veto.max_evidence_share, replace(veto, max_evidence_share=1.0)
    ink_rule = InkVeto() if ink_veto is None else ink_veto
    memo: dict = {}  # what the searches below share (search_shape)
    gate, evidence, gate_search, gated, searched = _choose_cell_gate(slides, evidence, veto, ink_rule, cell_gate, memo)
    ink_only = _vetoed_evidence(slides, evidence, LymphoidVeto(enabled=False), ink_rule)[0]
    gated_raw = evidence  # the evidence before the vetoes: what a vetoed tile's shifted neighbours are capped by
    veto, (evidence, vetoed, inked), (shape, table, dice), veto_search = (
        searched or _search_veto(slides, evidence, veto, ink_rule, memo))
    infiltrate_search: list[dict] = []
    if infiltrate:
        shape, dice, infiltrate_search = _search_infiltrate(slides, evidence, shape, table, dice)
    plausibility = plausibility_rule(slides, evidence, shape, ink_only)
    from weakstil.tumorbed.aggregates import AggregateRule, choose_aggregates
    from weakstil.tumorbed.lobules import LobuleRule, choose_lobules
    from weakstil.tumorbed.mucin import MucinRule, choose_mucin, chosen_structure
    from weakstil.tumorbed.nests import choose_nests, remembered, with_nest_rule  # lone seed tiles (hunt 48a)

    agg_rule, agg_search = (choose_aggregates(slides, evidence, shape, aggregates) if aggregates is not None
                            else (AggregateRule(), {"chosen": "off: not searched"}))
    lobules, mucin = remembered(lobules), remembered(mucin)  # each slide read once for the choices below
    lob_rule, lob_search = (choose_lobules(slides, evidence, shape, lobules) if lobules is not None
                            else (LobuleRule(), {"chosen": "off: not searched"}))
    muc_rule, muc_search = (choose_mucin(slides, evidence, shape, mucin) if mucin is not None
                            else (MucinRule(), {"chosen": "off: not searched"}))
    structure = chosen_structure(aggregates if agg_rule.enabled else None, lobules if lob_rule.enabled else None,
                                 mucin if muc_rule.enabled else None)  # the beds the chosen steps draw (h48b, r48a)
    nest_rule, nest_search = choose_nests(slides, evidence, shape, structure)
    prepare = with_nest_rule(structure, nest_rule, shape.seed_threshold)  # the front chosen on them, the rule applied
    front_rule, front_search = _choose_front(slides, evidence, gated_raw, folds, shape, per_slide, front,
                                             bool(context_radii) or bool(stats_columns) or gate.enabled, prepare)
    cv = "leave-one-slide-out" if len(slides) >= 3 else "in-sample (fewer than 3 slides: optimistic)"
    disagreeing = check_held_out(slides, evidence, shape, dice, cv)  # a focus left out, a swapped file...
    made, augmentation = copies() if copies is not None else ({}, {"enabled": False})
    extra = [(i, made[s.slide_id]) for i, s in enumerate(slides) if s.slide_id in made]
    extra_inputs = [context_inputs(x, slides[i].geom.coords, slides[i].geom.tile_size_level0, context_radii, per_slide)
                    for i, x in extra]
    if stats_columns:  # the copy's tiles are the original's: their measurements too
        extra_inputs = [np.concatenate([x, stats_inputs(slides[i].tile_stats, slides[i].stats_columns, stats_columns)],
                                       axis=1) for x, (i, _) in zip(extra_inputs, extra)]
    final = fit_evidence(inputs + extra_inputs, labels + [labels[i] for i, _ in extra],
                         used + [used[i] for i, _ in extra], seed=seed, refine=refine, neutral_k=neutral_k)
    y_all = np.concatenate([y[u] for y, u in zip(labels, used)])
    meta = {**(meta or {}), "n_slides": len(slides), "slide_ids": [s.slide_id for s in slides],
            # no seed recorded without copies: it would claim a choice that changes nothing
            "deterministic": "no random step (a convex fit from zero weights, full-batch L-BFGS): the same "
                             "slides and annotations give the same detector whatever --seed" if not extra else
                             "the jittered copies are drawn from --seed (augmentation.seed); the fit has no random "
                             "step: the same slides, annotations and seed give the same detector",
            **({"final_fit_slides": len(slides) + len(extra)} if extra else {}),
            "train_tiles": int(len(y_all)), "train_positive_share": float(y_all.mean()),
            "cv": cv, "cv_dice": float(dice.mean()), "cv_dice_min": float(dice.min()),
            "cv_dice_median": float(np.median(dice)),
            "cv_dice_per_slide": {s.slide_id: round(float(d), 4) for s, d in zip(slides, dice)},
            "cv_disagreeing_slides": disagreeing,
            "search": {"seed_thresholds": list(SEED_THRESHOLDS), "smoothing_um": list(SMOOTHING_UM),
                       "bridges_um": list(BRIDGES_UM), "margins_um": list(MARGINS_UM),
                       "min_seeds_mm2": list(MIN_SEEDS_MM2), "min_seed_shares": list(MIN_SEED_SHARES),
                       "infiltrate_reach_um": list(INFILTRATE_REACH_UM) if infiltrate else [],
                       "objective": "mean Dice vs annotations",
                       "top": sorted(table, key=lambda r: -r["dice_mean"])[:20]},
            "train_seconds": round(time.perf_counter() - t0, 1)}
    per_slide_cv = {"lymphoid_vetoed_tiles_cv": vetoed, "inked_tiles_cv": inked, "tumour_cell_gated_cv": gated}
    meta.update(augmentation=augmentation, refine_rounds=int(refine), per_slide_standardised=bool(per_slide),
                neutral_components=int(neutral_k), lymphoid_veto_search=veto_search, infiltrate_search=infiltrate_search,
                tumour_cell_gate_search=gate_search, front_search=front_search, aggregates_search=agg_search,
                lobules_search=lob_search, mucin_search=muc_search, nests_search=nest_search,
                lymphoid_veto_cap="not in the CV: a guard at detection (lead, after h48f)",
                **{k: {s.slide_id: n for s, n in zip(slides, v)} for k, v in per_slide_cv.items()})
    detector = TumorBedDetector(final, shape, plausibility, tuple(int(r) for r in context_radii), meta,
                                tuple(stats_columns), replace(veto, max_evidence_share=cap), ink_rule, gate,
                                front_rule, aggregates=agg_rule, lobules=lob_rule, mucin=muc_rule, nests=nest_rule)
    log.info("tumour-bed detector: %d slides, %s Dice mean %.3f, min %.3f (seed threshold %g, bridge %g µm, margin "
             "%g µm, smoothing %g µm, smallest focus %g mm² of seeds and %g of the largest, %s%s%s)", len(slides), cv,
             dice.mean(), dice.min(), shape.seed_threshold, shape.bridge_um, shape.margin_um, shape.smooth_um,
             shape.min_seed_mm2, shape.min_seed_share,
             "contiguous infiltrate off (--no-infiltrate)" if not infiltrate else
             f"contiguous infiltrate up to {shape.infiltrate_um:g} µm" if shape.infiltrate_um > 0 else
             f"no contiguous infiltrate (no reach gained {INFILTRATE_MIN_GAIN:g} Dice)" if infiltrate_search else
             "no contiguous infiltrate (no tile statistics)",
             "; tumour-cell gate " + ("on" if gate.enabled else "off"),
             "" if not veto.enabled else "; lymphoid tiles next to tumour restored by " +
             ("evidence and pale nuclei" if veto.restore_tumour_nuclei_area > RESTORE_BY_EVIDENCE else "evidence alone"))
    return detector


def _choose_front(slides, evidence, raw, folds, shape, per_slide, front, other_inputs: bool, prepare=None):
    """The front refinement (weakstil.tumorbed.front) chosen on the held-out evidence, and its record."""
    from weakstil.tumorbed.front import FrontRefine, choose_front

    if front is None:
        return FrontRefine(), {"chosen": "off: not searched"}
    if other_inputs or len(slides) < 3:  # context, tile statistics or the cell gate: not read for a shifted tile
        return FrontRefine(), {"chosen": "off: needs tile-only evidence (no context, tile statistics, tumour-cell "
                                         "gate) and 3 or more slides"}
    return choose_front(slides, evidence, raw, [m.predict for m in folds], shape, per_slide, front, prepare=prepare)

