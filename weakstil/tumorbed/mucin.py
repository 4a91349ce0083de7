"""Mucin pools holding floating tumour-cell clusters, seeds of the tumour bed (issue 14, hunt 47f).

In a mucinous carcinoma the tumour is lakes of extracellular mucin with small clusters of tumour cells floating in
them; the International TILs Working Group's bed is the region of invasive tumour, so the pools and their clusters
are bed. A tile classifier on 112 µm tiles reads a pool as little tumour (41a's held-out mucin tiles: evidence
0.17-0.47, under the seed threshold), and a mucinous bed was missed in part (og41a_006: a quarter of its bed, a third
of that mucin; hunt 47d).

Here the slide is read at 4 µm/px (as the lobule step reads it, :func:`weakstil.tumorbed.lobules.read_at_4um`). A
*mucin pixel* is pale but not empty: its green optical density ``od_low`` .. ``od_high`` of the tissue's median (glass,
fat's clear vacuoles and clefts are under ``od_low``; stroma, cells and necrosis are near or over the median), with
little eosin (under ``eosin_max`` of the tissue's median: not pale oedematous collagen, which keeps its eosin) and not
less haematoxylin than the tissue's median less ``h_min`` (mucin is faintly basophilic; a rim of stroma thinned
against the glass is not). A *pool* is a connected piece of such pixels of at least ``pool_min_um2``, and it *holds
clusters* when dense islands (green density over ``island_od`` of the median, haematoxylin ``island_h`` above it:
cells) of at least ``island_min_um2`` lie enclosed in it. Only such pools count: an empty pool, far from tumour or
not, seeds nothing. The pool (filled, with its clusters) joins the tissue the bed is drawn on and its pixels are
seeds whatever the tiles' evidence (``SlideGeometry.seed_pixels``; pixels, not the 112 µm tiles on them, whose squares
reached past the bed's edge: 41a og41a_006 0.630 against 0.653). ``tumorbed train`` keeps the step only when it costs
the annotated slides less than :data:`MUCIN_MAX_LOSS` of held-out Dice (a cohort whose pale pools are not tumour
then leaves it off).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: the held-out Dice on the annotated slides that seeding mucin pools may cost before training leaves it off
MUCIN_MAX_LOSS = 0.005
NOT_READ = "mucin pools: slide not read"


@dataclass(frozen=True)
class MucinRule:
    """Which pale pools with floating cell clusters seed the bed (densities as shares of the tissue's median)."""

    enabled: bool = False
    od_low: float = 0.22  #: a mucin pixel's green optical density at least this share of the tissue's median ...
    od_high: float = 0.62  #: ... and at most this share (41a: mucin 0.28-0.62, stroma 0.85+, fat and glass < 0.1)
    eosin_max: float = 0.6  #: its eosin at most this share of the tissue's median (41a mucin 0.17-0.52)
    h_min: float = 0.01  #: its haematoxylin at least the tissue's median less this (mucin is faintly basophilic)
    pool_min_um2: float = 300.0  #: smallest pool
    #: a pool's median haematoxylin at least this above the tissue's median: faintly basophilic mucin, not pale
    #: stroma (oedema, a thin or torn edge), whose haematoxylin thins with its eosin (41a pools' medians 0.04-0.14)
    pool_h: float = 0.02
    #: a pool's colour: its optical density's spread over red, green and blue at least this share of its mean (a
    #: stained pool, not grey: 44b's fat read grey, 0.12, and passed every bound above; 41a's mucin 0.85-1.51)
    pool_chroma: float = 0.4
    #: ... and its green density at least this share of its red: haematoxylin (1.1) and eosin absorb green at least as
    #: much as red, green or blue marker ink absorbs red most (the in-house alt-hard look's green ink over fat, 0.23-0.58,
    #: passed every bound above; 41a's and 45c's mucin 1.6-2.2)
    pool_green_red: float = 0.8
    island_od: float = 0.62  #: a floating cluster's pixel: green density at least this share of the median ...
    island_h: float = 0.03  #: ... and haematoxylin at least this above the median (cells)
    island_min_um2: float = 32.0  #: the clusters enclosed in a pool cover at least this (two pixels at 4 µm/px)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> MucinRule:
        """From model.json (``mucin``), read strictly (:func:`weakstil.tumorbed.flags.rule_from_json`)."""
        from weakstil.tumorbed.flags import rule_from_json

        return rule_from_json(cls, values, "mucin")


def pool_mask(rgb: np.ndarray, conc: np.ndarray, mpp: float, rule: MucinRule) -> tuple[np.ndarray, list[dict]]:
    """The pools holding clusters (filled: the clusters are in) on the map's grid, and every pool's measures
    (``mm2``, ``islands_um2``, ``seed``): ``rgb`` the slide at ``mpp`` µm/px, ``conc`` its H / E concentrations."""
    from scipy import ndimage as ndi

    rgb = np.asarray(rgb)
    white = np.maximum(np.percentile(rgb.reshape(-1, rgb.shape[-1])[:, :3], 99, axis=0), 1.0).astype(np.float32)
    od = -np.log10(np.clip(rgb[..., 1].astype(np.float32), 1, None) / white[1])
    tissue = od >= 0.05
    out = np.zeros(od.shape, bool)
    if tissue.sum() < 16:
        return out, []
    od = od / np.float32(np.median(od[tissue]))
    h = np.asarray(conc[..., 0], np.float32)
    h = h - np.float32(np.median(h[tissue]))
    e = np.asarray(conc[..., 1], np.float32) / np.float32(max(1e-6, float(np.median(conc[..., 1][tissue]))))
    mucin = (od >= rule.od_low) & (od <= rule.od_high) & (e <= rule.eosin_max) & (h >= -rule.h_min)
    mucin = ndi.binary_opening(mucin)  # not a one-pixel rim where tissue thins into the glass
    labels, n = ndi.label(mucin)
    if not n:
        return out, []
    area = np.bincount(labels.ravel(), minlength=n + 1) * mpp * mpp
    dense = (od >= rule.island_od) & (h >= rule.island_h)
    measures = []
    for i, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is None or area[i] < rule.pool_min_um2:
            continue
        box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        pool = labels[box] == i
        chroma, green_red = _colour(rgb[box][pool], white)
        if float(np.median(h[box][pool])) < rule.pool_h or chroma < rule.pool_chroma or green_red < rule.pool_green_red:
            continue
        # a cluster floats in the pool: enclosed by it once the pool's ragged edge is closed
        filled = ndi.binary_fill_holes(ndi.binary_closing(pool, iterations=2) | pool)
        islands = float((filled & ~pool & dense[box]).sum() * mpp * mpp)
        seed = islands >= rule.island_min_um2
        measures.append(dict(mm2=round(float(area[i]) / 1e6, 4), islands_um2=round(islands, 1), seed=bool(seed)))
        if seed:
            out[box] |= filled
    return out, measures


def _colour(pixels: np.ndarray, white: np.ndarray) -> tuple[float, float]:
    """The pixels' optical density (against the slide's ``white``): its spread over the three channels as a share of
    its mean (0: grey), and its green over its red."""
    od = -np.log10(np.clip(pixels[:, :3].astype(np.float32), 1, None) / white)
    mean = od.mean(0)
    return (float(((od.max(1) - od.min(1)).mean()) / max(1e-3, float(od.mean()))),
            float(mean[1] / max(1e-3, float(mean[0]))))


def slide_mucin(attrs: dict, tissue_shape: tuple[int, int], mask_mpp: float, rule: MucinRule,
                slide_path: str | Path | None = None, read=None) -> tuple[np.ndarray | None, str]:
    """The pools with clusters on the tissue mask's grid (seeds of the bed) and what was done (said in the bed's
    ``seed_vetoes``); ``None`` when the slide or its stain is not there (the bed is drawn as before).
    ``read``: :func:`weakstil.tumorbed.lobules.read_at_4um`'s answer when another step read the slide already."""
    from weakstil.tumorbed.aggregates import on_mask_grid
    from weakstil.tumorbed.lobules import read_at_4um

    read = read_at_4um(attrs, slide_path, "mucin pools", NOT_READ) if read is None else read
    if isinstance(read, str):
        return None, read.replace("lobules", "mucin pools")
    thumb, mpp, conc = read
    mask, measures = pool_mask(thumb, conc, mpp, rule)
    found = [m for m in measures if m["seed"]]
    said = (f"mucin pools: {len(found)} with floating clusters seeded ({sum(m['mm2'] for m in found):.3f} mm²; "
            f"{len(measures) - len(found)} without)")
    return on_mask_grid(mask, mpp, tissue_shape, mask_mpp), said


def structure_steps(detector, attrs: dict, geom, slide_path, kept_out: np.ndarray | None = None
                    ) -> tuple[np.ndarray | None, str]:
    """The steps that read the slide at 4 µm/px for ``detector``'s bed (one read for both): normal lobules leave
    ``geom``'s tissue (hunt 47d), mucin pools with clusters join it as its ``seed_pixels``, except where a step kept
    tissue out of the bed (the lobules, ``kept_out``: the lymphoid aggregates; a lobule's acini in its pale loose
    stroma read as clusters in a pool: review r47f). The tiles that lose their evidence (lobules; ``None`` when that
    step is off or could not read the slide) and what was said."""
    from weakstil.tumorbed.lobules import NOT_READ as LOBULES_NOT_READ
    from weakstil.tumorbed.lobules import read_at_4um, slide_lobules

    lob_rule, muc_rule = detector.lobules, getattr(detector, "mucin", MucinRule())
    if not (lob_rule.enabled or muc_rule.enabled):
        return None, ""
    read = read_at_4um(attrs, slide_path, "normal lobules and mucin pools" if lob_rule.enabled and muc_rule.enabled
                       else "normal lobules" if lob_rule.enabled else "mucin pools",
                       LOBULES_NOT_READ if lob_rule.enabled else NOT_READ)
    said, lobule_tiles = [], None
    if lob_rule.enabled:  # normal lobules are no tissue of the bed (hunt 47d)
        lob, lobule_tiles, text = slide_lobules(attrs, geom.tissue_mask.shape, geom.mask_mpp, geom.coords,
                                                geom.tile_size_level0, lob_rule, slide_path, read)
        said.append(text)
        if lob is not None and lob.any():
            geom.tissue_mask = geom.tissue_mask & ~lob
            kept_out = lob if kept_out is None else (np.asarray(kept_out, bool) | lob)
    if muc_rule.enabled:  # mucin lakes with their floating clusters are the tumour (hunt 47f)
        pools, text = slide_mucin(attrs, geom.tissue_mask.shape, geom.mask_mpp, muc_rule, slide_path, read)
        said.append(text)
        if pools is not None and kept_out is not None:  # what another step kept out stays out (review r47f)
            pools = pools & ~np.asarray(kept_out, bool)
        if pools is not None and pools.any():
            geom.tissue_mask = geom.tissue_mask | pools
            geom.seed_pixels = pools
    return lobule_tiles, "; ".join(said)


def choose_mucin(slides, evidence: list[np.ndarray], shape, pools_of) -> tuple[MucinRule, dict]:
    """Whether the detector seeds its beds with mucin pools holding clusters, and the record for model.json: each
    annotated slide's bed from its held-out ``evidence`` with ``shape``, drawn as is and with its pools as seeds
    (``pools_of(slide_id, geom)``: the pools on its grid, ``None`` when the slide is not read), scored by Dice against its annotation. Kept unless it costs the annotated slides
    :data:`MUCIN_MAX_LOSS` of mean Dice (their annotators left such pools out of the bed)."""
    from weakstil.bed_geometry import bed_from_evidence
    from weakstil.tissue import dice
    from weakstil.tumorbed.veto import dark_nuclei_area

    off, on, per_slide, not_read, in_annotation = [], [], {}, [], 0
    for s, ev in zip(slides, evidence):
        g = s.geom
        mask = pools_of(s.slide_id, g)
        if mask is None:
            not_read.append(s.slide_id)
            continue
        infiltrate = dark_nuclei_area(s.tile_stats, s.stats_columns) if shape.infiltrate_um > 0 else None
        truth = np.asarray(s.bed_mask, bool)
        beds = [bed_from_evidence(ev, g.coords, g.tile_size_level0, g.slide_mpp, tissue, g.mask_mpp, shape,
                                  infiltrate, extra_seeds=seeds)[0]
                for tissue, seeds in ((g.tissue_mask, None), (g.tissue_mask | mask, mask))]
        off.append(dice(beds[0], truth))
        on.append(dice(beds[1], truth))
        in_annotation += int((mask & truth).sum())
        per_slide[s.slide_id] = {"off": round(off[-1], 4), "on": round(on[-1], 4), "pool_px": int(mask.sum())}
    record = {"max_loss": MUCIN_MAX_LOSS, "per_slide": per_slide, "not_read": not_read,
              "pool_px_in_annotations": in_annotation}
    from weakstil.tumorbed.flags import gate_chosen

    return MucinRule(enabled=gate_chosen(record, off, on, MUCIN_MAX_LOSS, "mucin pools with clusters seed the bed")), record


def chosen_structure(aggregates, lobules, pools_of):
    """``prepare(slide, evidence) -> (geom, evidence)``: an annotated slide's geometry and held-out evidence with the
    steps ``tumorbed train`` chose applied as :func:`structure_steps` applies them (``aggregates(slide_id, shape, mpp)``,
    ``lobules(slide_id, geom)``, ``pools_of(slide_id, geom)``: each step's masks, ``None`` when not chosen), for the
    front's choice (helper h48b: chosen on beds without their mucin pools, the front's growth stood in for the pools
    og41a_022's tile bed missed); ``None`` when no step was chosen."""
    import dataclasses

    if aggregates is None and lobules is None and pools_of is None:
        return None

    def prepare(s, ev):
        g = dataclasses.replace(s.geom)
        out = np.zeros(g.tissue_mask.shape, bool)
        if aggregates is not None and (agg := aggregates(s.slide_id, g.tissue_mask.shape, g.mask_mpp)) is not None:
            out |= np.asarray(agg, bool)
        if lobules is not None:
            lob, tiles = lobules(s.slide_id, g)
            if lob is not None:
                out |= np.asarray(lob, bool)
                ev = np.where(tiles, 0.0, ev) if tiles is not None else ev
        g.tissue_mask = np.asarray(g.tissue_mask, bool) & ~out
        if pools_of is not None and (pools := pools_of(s.slide_id, g)) is not None and (pools := pools & ~out).any():
            g.tissue_mask, g.seed_pixels = g.tissue_mask | pools, pools
        return g, ev
    return prepare
