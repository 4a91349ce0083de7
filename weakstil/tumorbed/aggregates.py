"""Lymphoid aggregates beside the tumour bed, kept out of it (issue 14, hunt 46d).

The International TILs Working Group's bed is the tumour nests and the stroma between and around them up to the
invasive front; a lymphoid aggregate separated from the tumour (a tertiary lymphoid structure: a dense, round
mantle of lymphocytes, often round a paler germinal centre) is no part of it. Such an aggregate 60-180 µm from the
tumour shares the 112 µm tiles with the bed's edge, so neither the tile evidence nor the contiguous-infiltrate step
(:func:`weakstil.bed_geometry.take_in_infiltrate`) can see the gap between them.

Here the slide is read at :data:`AGGREGATE_MPP` µm/px (the ink veto's read, shared; on a large slide, which that read
takes coarser, the pieces that may be aggregates are read again round them at :data:`AGGREGATE_MPP`), its haematoxylin unmixed with the
stain its feature file records (:func:`weakstil.stain.concentrations`), and a piece of dense haematoxylin is an
aggregate when it is *compact* (its solidity, area over its convex hull's, at least ``min_solidity``: a round
aggregate, not the infiltrate that runs between nests and round them, which encloses them and so is far from convex),
of an aggregate's size (``min_mm2`` .. ``max_mm2``) and *set apart*: at least ``min_ring_poor`` of the tissue in the
ring ``ring_um`` round it is poor in nuclei (haematoxylin under ``poor_h``), the tumour-free, lymphocyte-poor stroma
between an aggregate and the tumour. A cluster of TILs inside the bed has tumour nests and TILs all round it (on the
in-house looks 15-18 % of its ring poor in nuclei, against 52-88 % round the aggregates and TLS of hunts 41a / 44b and
the in-house hard looks), so it stays. A piece that holds more than ``max_islands`` islands of cells that are not
lymphocytes (holes of a nest's size, cellular) holds tumour nests: a small circumscribed TIL-rich tumour focus, which by
the definition is bed, never a TLS (a TLS holds one or two germinal centres; hunt 46f). Its pixels leave the tissue the
bed is drawn on, so they are no seed, no infiltrate and no bed (nothing else changes).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from weakstil.tumorbed.ink import INK_MPP as AGGREGATE_MPP  # noqa: F401  µm/px the slide is read at (the ink veto's read)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AggregateRule:
    """Which dense lymphoid pieces are aggregates kept out of the bed (sizes in µm / mm²)."""

    enabled: bool = False
    dense_h: float = 0.5  #: haematoxylin (1.0 = the slide's 99th percentile) of a pixel of dense nuclei
    dense_share: float = 0.5  #: share of dense pixels within 12 µm that makes a pixel part of a dense piece
    min_mm2: float = 0.01  #: smallest aggregate (a disc of about 56 µm radius)
    max_mm2: float = 0.3  #: largest aggregate (about 310 µm radius); larger dense pieces are never kept out
    min_solidity: float = 0.9  #: area over convex-hull area, holes filled (a round aggregate ~0.95+)
    ring_um: float = 40.0  #: the ring round a piece that must be mostly stroma poor in nuclei
    poor_h: float = 0.1  #: haematoxylin under this: a pixel poor in nuclei (stroma, fat, mucin)
    min_ring_poor: float = 0.4  #: at least this share of the ring's tissue poor in nuclei
    #: a hole in the piece of at least this area (µm², a nest of ~25 µm) whose cells are not lymphocytes: an island
    island_um2: float = 500.0
    #: an island's mean haematoxylin is under this (paler cells: a nest, a germinal centre); a gap in a lymphocyte
    #: mantle, just short of dense, reads 0.41-0.47 (in-house hard look), tumour nests 0.24-0.31, 41a's GCs 0.20-0.36
    island_h: float = 0.4
    #: islands an aggregate may hold (its germinal centres); a piece with more holds tumour nests: bed (hunt 46f)
    max_islands: int = 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> AggregateRule:
        """From model.json (``aggregates``), read strictly (:func:`weakstil.tumorbed.flags.rule_from_json`)."""
        from weakstil.tumorbed.flags import rule_from_json

        return rule_from_json(cls, values, "aggregates")


def _disc(r: int) -> np.ndarray:
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    return x * x + y * y <= r * r


def aggregate_pieces(stains: np.ndarray, mpp: float, rule: AggregateRule,
                     labels_out: list | None = None) -> tuple[np.ndarray, list[dict]]:
    """The aggregates' mask on the stain map's grid (``stains``: (h, w, 2) haematoxylin and eosin,
    :func:`weakstil.stain.concentrations`; ``mpp`` µm/px) and each dense piece's measures (``mm2``, ``solidity``,
    ``ring_poor``, ``aggregate``). ``labels_out``: a list given is told the dense pieces' labels."""
    from scipy import ndimage as ndi
    from skimage.measure import regionprops

    stains = np.asarray(stains, np.float32)
    h = stains[..., 0]
    tissue = stains.sum(axis=-1) > 0.1
    dense = h >= rule.dense_h
    k = _disc(max(1, int(round(12.0 / mpp)))).astype(np.float32)
    share = ndi.convolve(dense.astype(np.float32), k / k.sum(), mode="constant")
    pieces = ndi.binary_opening(share >= rule.dense_share, _disc(max(1, int(round(8.0 / mpp)))))
    labels, _ = ndi.label(pieces)
    if labels_out is not None:
        labels_out.append(labels)
    ring_px = max(1, int(round(rule.ring_um / mpp)))
    out = np.zeros(h.shape, bool)
    measures = []
    px_mm2 = mpp * mpp / 1e6
    for i, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is None:
            continue
        pad = ring_px + 2
        y0, x0 = max(0, sl[0].start - pad), max(0, sl[1].start - pad)
        y1, x1 = min(h.shape[0], sl[0].stop + pad), min(h.shape[1], sl[1].stop + pad)
        filled = ndi.binary_fill_holes(labels[y0:y1, x0:x1] == i)
        mm2 = float(filled.sum() * px_mm2)
        if mm2 < rule.min_mm2:
            continue
        solidity = float(regionprops(filled.astype(np.uint8))[0].solidity)
        islands = _islands(filled & ~(labels[y0:y1, x0:x1] == i), h[y0:y1, x0:x1], rule, mpp)
        ring = ndi.binary_dilation(filled, _disc(ring_px)) & ~filled & tissue[y0:y1, x0:x1]
        ring_poor = float((h[y0:y1, x0:x1][ring] < rule.poor_h).mean()) if ring.any() else 1.0
        is_aggregate = (mm2 <= rule.max_mm2 and solidity >= rule.min_solidity and ring_poor >= rule.min_ring_poor
                        and islands <= rule.max_islands)
        measures.append(dict(mm2=round(mm2, 4), solidity=round(solidity, 3), ring_poor=round(ring_poor, 3),
                             islands=islands, aggregate=bool(is_aggregate)))
        if is_aggregate:
            out[y0:y1, x0:x1] |= filled
    return out, measures


def _islands(holes: np.ndarray, h: np.ndarray, rule: AggregateRule, mpp: float) -> int:
    """How many of a dense piece's holes are islands of cells that are not lymphocytes: at least ``island_um2``,
    cellular (mean haematoxylin at least ``poor_h``: not a vessel's lumen, fat or stroma) and paler than a lymphocyte
    mantle's gaps (under ``island_h``). A TLS's germinal centre is one (41a's TLS: one, plus slivers under
    0.0002 mm²); tumour nests in a dense TIL-rich focus are many."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(holes)
    if not n:
        return 0
    idx = np.arange(1, n + 1)
    area = ndi.sum_labels(np.ones(h.shape), lab, idx) * mpp * mpp
    mean_h = ndi.mean(h, lab, idx)
    return int(((area >= rule.island_um2) & (mean_h >= rule.poor_h) & (mean_h < rule.island_h)).sum())


def kept_out_said(agg: np.ndarray | None, tissue: np.ndarray, mask_mpp: float) -> str:
    """What the step did, said in the bed's ``seed_vetoes``: the aggregates that left the tissue on the mask grid
    (a piece found at 4 µm/px that vanished on the coarser grid removed nothing and is not counted; review r46d)."""
    from scipy import ndimage as ndi

    if agg is None:
        return "aggregates: slide not read"
    removed = np.asarray(agg, bool) & np.asarray(tissue, bool)
    n = int(ndi.label(removed)[1]) if removed.any() else 0
    return f"aggregates: {n} kept out ({removed.sum() * mask_mpp * mask_mpp / 1e6:.3f} mm²)"


def on_mask_grid(mask: np.ndarray, mpp: float, shape: tuple[int, int], mask_mpp: float) -> np.ndarray:
    """``mask`` (at ``mpp`` µm/px) on a grid of ``shape`` at ``mask_mpp``: a cell is in when half of it is."""
    from skimage.transform import resize

    if not mask.any():
        return np.zeros(shape, bool)
    # both grids start at the slide's corner; the map may be a pixel short of the mask's extent
    want = (int(round(shape[0] * mask_mpp / mpp)), int(round(shape[1] * mask_mpp / mpp)))
    m = np.zeros(want, np.float32)
    h, w = min(want[0], mask.shape[0]), min(want[1], mask.shape[1])
    m[:h, :w] = mask[:h, :w]
    return resize(m, shape, order=1, anti_aliasing=True) >= 0.5


#: On a read coarser than :data:`AGGREGATE_MPP` (a large slide's, under the ink veto's cap) a dense piece is a candidate,
#: read again round it at :data:`AGGREGATE_MPP` and decided there, when it passes the rule loosened so: its dense pixels
#: at this share of ``dense_h`` (a coarse pixel averages a mantle's nuclei with its gaps), its solidity and its ring's
#: share poor in nuclei at least these (a coarse pixel of stroma with scattered nuclei is no longer poor; an aggregate
#: of hunt 46d's in-house hard look read 0.34-0.53 at 8-10 µm/px, 0.47-0.72 at 4), any islands (a coarse read does
#: not see nests), half to twice its sizes. Every aggregate of the 4 µm/px read lay 93-99 % in one (helper h47c).
CANDIDATE_DENSE, CANDIDATE_SOLIDITY, CANDIDATE_RING_POOR = 0.8, 0.75, 0.15


def candidate_rule(rule: AggregateRule) -> AggregateRule:
    """:data:`CANDIDATE_DENSE`'s loosened ``rule``, for the pieces of a coarse read to read again; never stricter than
    ``rule`` (a model.json may set its solidity or ring share under these: the candidates were then stricter than
    the rule, and a large slide lost aggregates its 4 µm/px read keeps; review r47c)."""
    from dataclasses import replace

    return replace(rule, dense_h=rule.dense_h * CANDIDATE_DENSE, min_solidity=min(CANDIDATE_SOLIDITY, rule.min_solidity),
                   min_ring_poor=min(CANDIDATE_RING_POOR, rule.min_ring_poor), max_islands=10**9,
                   min_mm2=rule.min_mm2 / 2, max_mm2=rule.max_mm2 * 2)


def slide_aggregates(attrs: dict, tissue_shape: tuple[int, int], mask_mpp: float, rule: AggregateRule,
                     slide_path: str | Path | None = None, read=None) -> tuple[np.ndarray | None, str]:
    """The aggregates on the tissue mask's grid, and what was done (said in the bed's ``seed_vetoes``);
    ``None`` when the slide or its stain is not there (the bed is drawn as before). ``read``: the slide's read
    shared with the ink veto (:class:`weakstil.tumorbed.ink.SlideRead`: the same pixels, at :data:`AGGREGATE_MPP`
    µm/px or coarser on a large slide, its black unscanned area glass; helper h47c). Where it is coarser, its pieces
    that may be aggregates (:func:`candidate_rule`) are read again at :data:`AGGREGATE_MPP` round them and decided
    there (:func:`_decided_finely`): the ring test is not scale-free (a 10 µm pixel of stroma with scattered nuclei is
    no longer poor in nuclei), and on the coarse read alone 2 of 8 in-house hard-look aggregates were found."""
    from weakstil.stain import SlideStain, concentrations
    from weakstil.tumorbed.ink import SlideRead

    stain = SlideStain.from_attr(attrs.get("stain"))
    if stain is None:
        return None, "aggregates: slide not read"
    read = SlideRead(attrs, slide_path) if read is None else read
    thumb = read.thumbnail()
    if thumb is None:  # an unreadable slide only loses this step; the bed is still drawn
        if read.error != "not there":
            log.warning("%s: lymphoid aggregates not looked for: %s could not be read (%s)", attrs.get("slide_id"),
                        read.path, read.error)
        return None, "aggregates: slide not read"
    mpp = read.mpp()
    if mpp <= AGGREGATE_MPP * 1.01:
        agg, measures = aggregate_pieces(concentrations(thumb, stain), mpp, rule)
        found = [m for m in measures if m["aggregate"]]
        grid = on_mask_grid(agg, mpp, tissue_shape, mask_mpp)
        return grid, f"aggregates: {len(found)} found ({sum(m['mm2'] for m in found):.3f} mm²)"
    candidates, _ = aggregate_pieces(concentrations(thumb, stain), mpp, candidate_rule(rule))
    try:
        grid, found = _decided_finely(candidates, mpp, read, stain, rule, tissue_shape, mask_mpp)
    except Exception as exc:  # as an unreadable slide
        log.warning("%s: lymphoid aggregates not looked for: %s could not be read (%s)", attrs.get("slide_id"),
                    read.path, exc)
        return None, "aggregates: slide not read"
    return grid, f"aggregates: {len(found)} found ({sum(m['mm2'] for m in found):.3f} mm²; read at {mpp:.1f} µm/px)"


def _decided_finely(candidates: np.ndarray, mpp: float, read, stain, rule: AggregateRule,
                    tissue_shape: tuple[int, int], mask_mpp: float) -> tuple[np.ndarray, list[dict]]:
    """Each candidate piece (on the coarse read's grid, ``mpp``) read again in a window round it (its ring and a
    margin) of the slide's :data:`AGGREGATE_MPP` thumbnail, read as :meth:`weakstil.slide.Slide.read_thumbnail` reads
    it (:func:`_thumbnail_window`: OpenSlide's ``read_region`` resamples otherwise, and a piece of solidity 0.878 read
    0.914), :func:`aggregate_pieces` there; the aggregates that hold the candidate and lie clear of the window's
    edge, on the mask grid (a cell whose area they cover half of), and their measures."""
    from scipy import ndimage as ndi

    from weakstil.slide import Slide
    from weakstil.stain import concentrations
    from weakstil.unscanned import RECORD, as_glass

    labels, _ = ndi.label(candidates)
    boxes = ndi.find_objects(labels)
    attrs, found, kept_px, seen = read.attrs, [], [], set()
    with Slide.open(read.path, slide_mpp=float(attrs["slide_mpp"])) as slide:
        w, h = slide.dimensions
        out_w, out_h = max(1, round(w * slide.mpp / AGGREGATE_MPP)), max(1, round(h * slide.mpp / AGGREGATE_MPP))
        fine = float(attrs["slide_width"]) * float(attrs["slide_mpp"]) / out_w  # µm/px, as the fine read's
        pad = (2 * rule.ring_um + 40.0) / fine
        # a dense piece the candidate leads to, cut by its window, is read again in one grown by the largest
        # aggregate's diameter: a large aggregate whose coarse read fell in two candidates was cut by both windows
        # and lost (review r47c)
        grow = int(np.ceil(2 * math.sqrt(rule.max_mm2 / math.pi) * 1000.0 / fine))
        for i, sl in enumerate(boxes, 1):
            y0, x0 = max(0, int(sl[0].start * mpp / fine - pad)), max(0, int(sl[1].start * mpp / fine - pad))
            y1, x1 = min(out_h, int(np.ceil(sl[0].stop * mpp / fine + pad))), min(out_w, int(np.ceil(sl[1].stop * mpp / fine + pad)))
            ys, xs = np.nonzero(labels[sl] == i)  # the candidate's coarse pixels' centres on the window
            for again in (False, True):
                rgb = _thumbnail_window(slide, AGGREGATE_MPP, out_w, out_h, y0, y1, x0, x1)
                if attrs.get("background") == RECORD:
                    rgb = as_glass(rgb)
                dense: list = []
                window, _ = aggregate_pieces(concentrations(rgb, stain), fine, rule, dense)
                fy = np.clip(((ys + sl[0].start + 0.5) * mpp / fine - y0).astype(int), 0, window.shape[0] - 1)
                fx = np.clip(((xs + sl[1].start + 0.5) * mpp / fine - x0).astype(int), 0, window.shape[1] - 1)
                cut = _cut(dense[0], y0 > 0, y1 < out_h, x0 > 0, x1 < out_w)  # the slide's own edge cuts nothing
                if again or not (set(dense[0][fy, fx].tolist()) & cut):
                    break
                y0, x0, y1, x1 = max(0, y0 - grow), max(0, x0 - grow), min(out_h, y1 + grow), min(out_w, x1 + grow)
            pieces, n = ndi.label(window)
            for j in set(pieces[fy, fx].tolist()) - {0}:
                piece = pieces == j
                if _cut(piece, y0 > 0, y1 < out_h, x0 > 0, x1 < out_w):
                    continue  # cut by the window: not measured whole
                py, px = np.nonzero(piece)
                at = (py + y0).astype(np.int64) * out_w + px + x0
                if int(at.min()) in seen:
                    continue  # a piece another candidate held too: counted once (review r47c: twice, its area too)
                seen.add(int(at.min()))
                kept_px.append(at)
                found.append({"mm2": round(float(piece.sum()) * fine * fine / 1e6, 4)})
    grid = np.zeros(tissue_shape, bool)
    if kept_px:
        every = np.unique(np.concatenate(kept_px))  # a piece two candidates hold, once
        rows = ((every // out_w + 0.5) * fine / mask_mpp).astype(int)
        cols = ((every % out_w + 0.5) * fine / mask_mpp).astype(int)
        ok = (rows < tissue_shape[0]) & (cols < tissue_shape[1])
        count = np.zeros(tissue_shape, np.float32)
        np.add.at(count, (rows[ok], cols[ok]), 1.0)
        grid = count >= 0.5 * (mask_mpp / fine) ** 2
    return grid, found


def _cut(pieces: np.ndarray, top: bool, bottom: bool, left: bool, right: bool) -> set:
    """The labels of ``pieces`` (or ``{True}`` for a mask) on the window's edges that are not the slide's."""
    edges = [e for e, on in ((pieces[0], top), (pieces[-1], bottom), (pieces[:, 0], left), (pieces[:, -1], right))
             if on]
    return set(np.concatenate(edges).tolist()) - {0, False} if edges else set()


def _thumbnail_window(slide, mpp: float, out_w: int, out_h: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Rows ``y0:y1``, columns ``x0:x1`` of ``slide.read_thumbnail(mpp)`` (``out_w`` x ``out_h`` px), read as it reads
    its blocks: the level's pixels under them resized bilinearly with its reducing gap."""
    from PIL import Image

    from weakstil.slide import THUMBNAIL_REDUCING_GAP, rgba_to_rgb

    level = slide.best_level_for_mpp(mpp)
    lw, lh = slide.backend.level_dimensions[level]
    ds = slide.level_downsamples[level]
    fx, fy = lw / out_w, lh / out_h
    lx0, ly0 = math.floor(x0 * fx), math.floor(y0 * fy)
    lx1, ly1 = min(lw, math.ceil(x1 * fx)), min(lh, math.ceil(y1 * fy))
    rgba = slide.backend.read_region((int(lx0 * ds), int(ly0 * ds)), level, (max(1, lx1 - lx0), max(1, ly1 - ly0)))
    # the window's own extent on the level, not the whole level pixels under it: floor/ceil widened it by up to a
    # level pixel each side, so its pixels sat up to a level pixel off the thumbnail's (mean 3.3 grey levels off on a
    # 0.46 µm/px two-level TIFF, 1.7 on the TCGA JPEG 2000 slide; 0.0-1.0 within the box; review r47c)
    box = (x0 * fx - lx0, y0 * fy - ly0, min(x1 * fx, lw) - lx0, min(y1 * fy, lh) - ly0)
    rgba = rgba.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR, box=box, reducing_gap=THUMBNAIL_REDUCING_GAP)
    return rgba_to_rgb(np.asarray(rgba))


#: the held-out Dice on the annotated slides that keeping aggregates out may cost before training leaves it off
AGGREGATE_MAX_LOSS = 0.005


def choose_aggregates(slides, evidence: list[np.ndarray], shape, masks_of) -> tuple[AggregateRule, dict]:
    """Whether the detector keeps lymphoid aggregates out of its beds, and the record for model.json: each annotated
    slide's bed from its held-out ``evidence`` with ``shape``, drawn on its tissue and on its tissue without the
    aggregates (``masks_of(slide_id, mask_shape, mask_mpp)``: the aggregates on its mask grid, ``None`` when the slide
    is not read), scored by Dice against its annotation. The rule follows the TILs WG's bed, so it is kept unless it
    costs the annotated slides :data:`AGGREGATE_MAX_LOSS` of mean Dice (their annotators drew aggregates in)."""
    from weakstil.bed_geometry import bed_from_evidence
    from weakstil.tissue import dice
    from weakstil.tumorbed.veto import dark_nuclei_area

    off, on, per_slide, not_read, in_annotation = [], [], {}, [], 0
    for s, ev in zip(slides, evidence):
        g = s.geom
        agg = masks_of(s.slide_id, g.tissue_mask.shape, g.mask_mpp)
        if agg is None:
            not_read.append(s.slide_id)
            continue
        infiltrate = dark_nuclei_area(s.tile_stats, s.stats_columns) if shape.infiltrate_um > 0 else None
        truth = np.asarray(s.bed_mask, bool)
        beds = [bed_from_evidence(ev, g.coords, g.tile_size_level0, g.slide_mpp, tissue, g.mask_mpp, shape,
                                  infiltrate)[0] for tissue in (g.tissue_mask, g.tissue_mask & ~agg)]
        off.append(dice(beds[0], truth))
        on.append(dice(beds[1], truth))
        in_annotation += int((agg & truth).sum())
        per_slide[s.slide_id] = {"off": round(off[-1], 4), "on": round(on[-1], 4), "aggregate_px": int(agg.sum())}
    record = {"max_loss": AGGREGATE_MAX_LOSS, "per_slide": per_slide, "not_read": not_read,
              "aggregate_px_in_annotations": in_annotation}
    from weakstil.tumorbed.flags import gate_chosen

    return AggregateRule(enabled=gate_chosen(record, off, on, AGGREGATE_MAX_LOSS, "lymphoid aggregates kept out of the bed")), record
