"""A seed is a tile of a tumour nest's region, not a lone tile (issue 14, hunt 48a).

The International TILs Working Group's bed is the region of *invasive tumour*: cohesive nests of tumour cells and the
stroma between and around them. Its seeds are tiles of that tumour. A tile classifier on 112 µm tiles also fires on
single tiles of plain stroma or fat; the 150 µm bridge then joins such a tile, and the stroma round it, to the bed.
On 41a's ten held-out slides (detector ``det41_v3``) 21 seed tiles lay wholly over 50 µm outside the true bed, 14 of
them reaching the bed; not one showed a tumour nucleus to the tile measurements (tumour-nuclei area 0 on all 21), but
neither did most of 41a's true seeds on its lobular, mucinous and yellow-look slides (5-47 % of them), so the
tumour-cell gate (:mod:`weakstil.tumorbed.cellgate`) cost the annotated slides 0.05 of Dice and training left it off.
What the false seeds share is being alone: 11 of the 21 had no other seed among their eight neighbours and 3 more only
one, while a true nest region is several tiles wide (1 of 380 true seed tiles on the 20 slides had none).

So a seed tile keeps its evidence only when at least ``min_neighbours`` of its eight neighbours show tumour too
(evidence at the seed threshold, or at ``neighbour_evidence`` 0.5 when the threshold is higher): for 1 a lone tile,
for 2 also a pair, is no nest region. When no seed at all would be left,
the rule stands aside (a slide whose whole tumour is one or two tiles keeps them). Like the other vetoes it only
removes seeds: a true nest of one tile (two, at level 2) a tile or more from the rest of the tumour is lost, with the
stroma the bridge joined to it (review r48a), unless the annotated slides' choice turns the rule off; mucin pools with
floating clusters (:mod:`weakstil.tumorbed.mucin`) seed by their own pixels whatever this rule does.
``tumorbed train`` chooses ``min_neighbours`` (:data:`NEIGHBOURS`, or off) by the annotated slides' held-out Dice:
the level with the best mean, kept only when it costs less than :data:`NEST_MAX_LOSS` against off. model.json records
it (``nests``); a detector written before it has none and draws the same beds.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

#: the held-out Dice on the annotated slides the rule may cost before training leaves it off (as the lobule step)
NEST_MAX_LOSS = 0.005
#: the levels training tries: seed neighbours (of 8) a seed tile needs
NEIGHBOURS = (1, 2)


@dataclass(frozen=True)
class NestRule:
    """How many of its eight neighbours must show tumour for a seed tile to keep its evidence."""

    enabled: bool = False
    min_neighbours: int = 2
    #: a neighbour shows tumour at this evidence (more likely tumour than not) or at the seed threshold when lower: a
    #: detector that seeds only at 0.95 (42a's) has a true nest's tiles round its seeds at 0.5-0.95
    neighbour_evidence: float = 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> NestRule:
        """From model.json (``nests``), read strictly (:func:`weakstil.tumorbed.flags.rule_from_json`)."""
        from weakstil.tumorbed.flags import rule_from_json

        rule = rule_from_json(cls, values, "nests")
        if not 1 <= rule.min_neighbours <= 8:
            raise ValueError(f"'nests min_neighbours' is {rule.min_neighbours}, not 1 to 8")
        if not 0 < rule.neighbour_evidence <= 1:  # at 0 or below every tile is a neighbour showing tumour: no rule
            raise ValueError(f"'nests neighbour_evidence' is {rule.neighbour_evidence}, not over 0 and at most 1")
        return rule


def lone_seeds(evidence: np.ndarray, coords: np.ndarray, tile_size_level0: float, seed_threshold: float,
               min_neighbours: int, neighbour_evidence: float = 0.5) -> np.ndarray:
    """Per tile, a seed (``evidence`` >= ``seed_threshold``) with fewer than ``min_neighbours`` tiles showing tumour
    (evidence >= the lower of ``neighbour_evidence`` and ``seed_threshold``) among its eight neighbours on the tile
    grid; none when every seed is such (the rule stands aside)."""
    lone, seeds = _alone(evidence, coords, tile_size_level0, seed_threshold, min_neighbours, neighbour_evidence)
    return lone if (seeds & ~lone).any() else np.zeros(len(lone), bool)


def _alone(evidence: np.ndarray, coords: np.ndarray, tile_size_level0: float, seed_threshold: float,
           min_neighbours: int, neighbour_evidence: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`lone_seeds` before the rule stands aside, and the seeds."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import grid_cells

    evidence = np.asarray(evidence, np.float32)
    seeds = evidence >= seed_threshold
    if not seeds.any():
        return np.zeros(len(evidence), bool), seeds
    rows, cols, _ = grid_cells(coords, tile_size_level0)
    grid = np.zeros((rows.max() + 1, cols.max() + 1), np.int32)
    shows = evidence >= min(float(neighbour_evidence), float(seed_threshold))
    grid[rows, cols] = shows
    around = ndi.convolve(grid, np.ones((3, 3), np.int32), mode="constant")[rows, cols] - shows
    return seeds & (around < int(min_neighbours)), seeds


def apply_nest_rule(evidence: np.ndarray, geom, seed_threshold: float, rule: NestRule) -> tuple[np.ndarray, int]:
    """``evidence`` with the lone seed tiles (:func:`lone_seeds`) of ``geom``'s tiles set to 0, and how many there
    were (0 when off). Mucin pools with floating clusters (``geom.seed_pixels``) still seed by their own pixels: a
    tile beside them is judged by its tiles' evidence alone (counting a pool's tiles as neighbours kept 41a's false
    seeds beside its mucinous beds: held-out og41a_002 0.864 -> 0.810, og41a_030 0.878 -> 0.826)."""
    return _applied(evidence, geom, seed_threshold, rule)[:2]


def nest_rule_said(evidence: np.ndarray, geom, seed_threshold: float, rule: NestRule) -> tuple[np.ndarray, str]:
    """:func:`apply_nest_rule`'s evidence and the words for the bed's ``seed_vetoes``: ``lone seeds: N tiles``, or,
    where every seed tile was alone and the rule stood aside, that it did and how many lone seeds the bed kept (a
    biopsy whose whole tumour is one or two tiles, or a slide of false seeds only: said, not "0 tiles"; review r48a)."""
    evidence, n, kept = _applied(evidence, geom, seed_threshold, rule)
    return evidence, (f"lone seeds: {n} tiles" if not kept else
                      f"lone seeds: stood aside, every seed tile alone ({kept} kept)")


def _applied(evidence: np.ndarray, geom, seed_threshold: float, rule: NestRule) -> tuple[np.ndarray, int, int]:
    """:func:`apply_nest_rule`, and how many lone seeds were kept as every seed was alone (0: the rule did not stand
    aside)."""
    if not rule.enabled or not len(evidence):
        return evidence, 0, 0
    lone, seeds = _alone(evidence, geom.coords, geom.tile_size_level0, seed_threshold, rule.min_neighbours,
                         rule.neighbour_evidence)
    kept = int(lone.sum()) if lone.any() and not (seeds & ~lone).any() else 0
    lone = lone if not kept else np.zeros(len(lone), bool)
    return np.where(lone, np.float32(0.0), evidence).astype(np.float32), int(lone.sum()), kept


def choose_nests(slides, evidence: list[np.ndarray], shape, prepare=None) -> tuple[NestRule, dict]:
    """The rule training keeps, and its record for model.json: each annotated slide's bed from its held-out
    ``evidence`` (after the vetoes) with ``shape``, drawn as is and with each level of :data:`NEIGHBOURS`, scored by
    Dice against its annotation; the level with the best mean Dice, unless it costs :data:`NEST_MAX_LOSS` against off
    (ties: the milder level). ``prepare(slide, evidence) -> (geom, evidence)`` (:func:`weakstil.tumorbed.mucin.
    chosen_structure`, ``None`` when no step was chosen): the aggregate, lobule and mucin steps training chose, applied
    as the detector applies them before this rule (review r48a: the lobule tiles' evidence taken, the aggregates and
    lobules out of the tissue; the choice was made on the evidence with the mucin pools only). The pools seed both
    beds: a mucinous tumour's tile evidence is weak and scattered, its pools seed it (41a's og41a_022 lost 0.22 of Dice
    to the rule judged without them)."""
    from weakstil.bed_geometry import bed_from_evidence
    from weakstil.tissue import dice
    from weakstil.tumorbed.veto import dark_nuclei_area

    per_level: dict[int, list[float]] = {0: [], **{n: [] for n in NEIGHBOURS}}
    per_slide: dict[str, dict] = {}
    for s, ev in zip(slides, evidence):
        g, ev = prepare(s, ev) if prepare is not None else (s.geom, ev)
        infiltrate = dark_nuclei_area(s.tile_stats, s.stats_columns) if shape.infiltrate_um > 0 else None
        truth = np.asarray(s.bed_mask, bool)
        row: dict = {}
        for n in per_level:
            e, lone = (ev, 0) if n == 0 else apply_nest_rule(ev, g, shape.seed_threshold, NestRule(True, n))
            bed = bed_from_evidence(e, g.coords, g.tile_size_level0, g.slide_mpp, g.tissue_mask, g.mask_mpp, shape,
                                    infiltrate, extra_seeds=g.seed_pixels)[0]
            per_level[n].append(dice(bed, truth))
            row[str(n) if n else "off"] = round(per_level[n][-1], 4)
            if n:
                row[f"lone_{n}"] = lone
        per_slide[s.slide_id] = row
    means = {n: float(np.mean(v)) if v else 0.0 for n, v in per_level.items()}
    record: dict = {"max_loss": NEST_MAX_LOSS, "levels": list(NEIGHBOURS), "per_slide": per_slide,
                    "dice_mean": {str(n) if n else "off": round(m, 4) for n, m in means.items()}}
    best = max(NEIGHBOURS, key=lambda n: (round(means[n], 6), -n))
    from weakstil.tumorbed.flags import gate_chosen  # the other steps' gate: the record says what it cost (r48a)

    rule = NestRule()
    if gate_chosen(record, per_level[0], per_level[best], NEST_MAX_LOSS, f"lone seed tiles ({best} seed neighbours)"):
        record["chosen"], rule = f"on: {best} seed neighbours", NestRule(True, best)
    log.info("lone seed tiles: %s (held-out Dice off %.4f, %s)", record["chosen"], means[0],
             ", ".join(f"{n} neighbours {means[n]:.4f}" for n in NEIGHBOURS))
    return rule, record


def remembered(pools_of):
    """``pools_of(slide_id, geom)`` (training's mucin-pool or lobule reader, or ``None``) answering each slide once:
    the steps' choices, :func:`choose_nests` and the front's choice read the slide once."""
    if pools_of is None:
        return None
    seen: dict = {}

    def once(slide_id, geom):
        if slide_id not in seen:
            seen[slide_id] = pools_of(slide_id, geom)
        return seen[slide_id]
    return once


def with_nest_rule(prepare, rule: NestRule, seed_threshold: float):
    """``prepare(slide, evidence) -> (geom, evidence)`` (:func:`weakstil.tumorbed.mucin.chosen_structure`, or ``None``)
    followed by the lone-seed rule, as a detector applies it after the other steps: the front is chosen on the beds the
    chosen rules draw (lead, merging hunts 48a and 48b)."""
    if not rule.enabled:
        return prepare

    def with_rule(s, ev):
        g, ev = prepare(s, ev) if prepare is not None else (s.geom, ev)
        return g, apply_nest_rule(ev, g, seed_threshold, rule)[0]
    return with_rule
