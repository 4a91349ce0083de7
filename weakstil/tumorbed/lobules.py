"""Normal lobules beside the tumour bed, kept out of it (issue 14, hunt 47d).

The International TILs Working Group's bed is the region of invasive tumour: the nests and the stroma between and
around them up to the invasive front. Normal lobules (terminal duct-lobular units: clusters of small acini, each a
round lumen ringed by epithelium) are no part of it. A tile classifier on 112 µm tiles reads a lobule's epithelium
as tumour as readily as a nest (41a's held-out lobule tiles: evidence 0.3-1.0, its mucinous tumour tiles 0.2-0.5),
and the 150 µm bridge then joins the lobule and the stroma round it to the bed: 41a's TIL-poor beds were 1.8-2.0 x
their truth, most of the excess on and round lobules 130-270 µm beyond the front (hunt 47d).

Here the slide is read at :data:`LOBULE_MPP` µm/px (as the aggregate step reads it). A *lumen* is a hole in the tissue
as bright as the glass in green (optical density under ``empty_od`` against the slide's brightest pixels: no stain,
no mucin, whatever the look's yellowing), of an acinus's size (``lumen_min_um2`` .. ``lumen_max_um2``, smaller than
an adipocyte), compact, and ringed by cells (its ring's haematoxylin ``rim_h`` above the tissue's median). A *lobule*
is at least ``min_lumens`` lumens each within ``link_um`` of the next, their hull grown by ``pad_um`` (the acini's
epithelium), no larger than ``max_mm2``. Its pixels leave the tissue the bed is drawn on and the tiles lying
``tile_share`` or more on it lose their tumour evidence (a lobule's tile is no seed). ``tumorbed train`` keeps the
step only when it costs the annotated slides less than :data:`LOBULE_MAX_LOSS` of held-out Dice: a tumour whose
invasive tubules or mucin read as such lumens is then left as it was.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

LOBULE_MPP = 4.0  #: µm/px the slide is read at
#: the held-out Dice on the annotated slides that keeping lobules out may cost before training leaves it off
LOBULE_MAX_LOSS = 0.005
NOT_READ = "lobules: slide not read"
#: most pixels the slide is read into at LOBULE_MPP (a 30 x 20 mm section is 37.5 MP, about 1.6 GB of maps here);
#: a larger slide is not looked at rather than read coarser, where an acinus's lumen (15-1500 µm²) is lost (r47d)
LOBULE_MAX_PIXELS = 60_000_000


@dataclass(frozen=True)
class LobuleRule:
    """Which clusters of small lumens are normal lobules kept out of the bed (sizes in µm / mm²)."""

    enabled: bool = False
    empty_od: float = 0.055  #: green optical density (against the slide's brightest) under which a pixel is empty
    empty_share: float = 0.3  #: ... and under this share of the tissue's median green density
    lumen_min_um2: float = 15.0  #: smallest lumen (an acinus's: 5-11 µm radius)
    lumen_max_um2: float = 1500.0  #: largest lumen (an adipocyte is 2500+ µm²)
    rim_h: float = 0.12  #: the lumen's ring: mean haematoxylin at least this above the tissue's median (epithelium)
    link_um: float = 45.0  #: lumens this close join one lobule
    min_lumens: int = 4  #: lumens a lobule has at least
    pad_um: float = 20.0  #: the lobule: its lumens' hull grown by this (the acini's epithelium)
    max_mm2: float = 0.06  #: largest lobule; a larger cluster (mucin pools, a field of tubules) is never kept out
    tile_share: float = 0.1  #: a tile with this share of its area on a lobule loses its tumour evidence
    #: a lobule's acini lie in paler intralobular stroma: of its lumens' hull, the pixels over ``wall_um`` from any
    #: lumen (beyond the acini's epithelium) under this share cell-dense (haematoxylin ``rim_h`` above the median); a
    #: cluster whose lumens are punched in a solid sheet of cells is a cribriform tumour nest, not a lobule (r47d;
    #: 41a's lobules 0.12-0.88, drawn cribriform nests 1.0: a thin margin, not checked on real tissue)
    solid_max: float = 0.9
    wall_um: float = 12.0  #: the acini's epithelium round each lumen, left out of the between-lumen share

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> LobuleRule:
        """From model.json (``lobules``), read strictly (:func:`weakstil.tumorbed.flags.rule_from_json`)."""
        from weakstil.tumorbed.flags import rule_from_json

        return rule_from_json(cls, values, "lobules")


def lumens(rgb: np.ndarray, h: np.ndarray, mpp: float, rule: LobuleRule) -> list[tuple[float, float]]:
    """The lumens' centres (row, column on the map): ``rgb`` the slide at ``mpp`` µm/px, ``h`` its haematoxylin."""
    return _lumens(rgb, h, mpp, rule)[0]


def _lumens(rgb, h, mpp: float, rule: LobuleRule) -> tuple[list[tuple[float, float]], np.ndarray | None, np.ndarray]:
    """:func:`lumens`, the lumens' pixels and the haematoxylin less the tissue's median (``None``, ``h``: none)."""
    from scipy import ndimage as ndi

    # float32 maps and label counts by bincount: a 30 x 20 mm section is 37 MP here (r47d: float64 maps and
    # sum_labels' ones took 2.5 GB a slide)
    green = np.asarray(rgb)[..., 1].astype(np.float32)
    od = -np.log10(np.clip(green, 1, None) / np.float32(max(1.0, np.percentile(green, 99))))
    empty = od < rule.empty_od
    if empty.all():
        return [], None, h
    # a look whose stain is faint overall (a yellowed slide: stroma 0.14, mucin 0.05-0.08) puts mucin near the fixed
    # bound: empty is also under ``empty_share`` of the tissue's median density (lumens 0.2 of it, mucin 0.4+)
    empty &= od < rule.empty_share * float(np.median(od[~empty]))
    h = np.asarray(h, np.float32) - np.float32(np.median(h[~empty]))
    labels, n = ndi.label(empty & ndi.binary_fill_holes(~empty))  # empty and enclosed by tissue
    if not n:
        return [], None, h
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:] * mpp * mpp
    out, kept = [], np.zeros(n + 1, bool)
    for i, sl in enumerate(ndi.find_objects(labels), 1):
        if sl is None or not rule.lumen_min_um2 <= area[i - 1] <= rule.lumen_max_um2:
            continue
        m = labels[sl] == i
        if max(m.shape) > 3 * min(m.shape) or m.sum() < 0.4 * m.size:  # a cleft's arc, not an acinus
            continue
        y0, x0 = max(0, sl[0].start - 3), max(0, sl[1].start - 3)
        win = labels[y0:sl[0].stop + 3, x0:sl[1].stop + 3] == i
        ring = ndi.binary_dilation(win, iterations=2) & ~win
        if float(h[y0:sl[0].stop + 3, x0:sl[1].stop + 3][ring].mean()) < rule.rim_h:
            continue
        cy, cx = ndi.center_of_mass(m)
        out.append((sl[0].start + cy, sl[1].start + cx))
        kept[i] = True
    return out, kept[labels], h


def lobule_mask(rgb: np.ndarray, h: np.ndarray, mpp: float, rule: LobuleRule) -> tuple[np.ndarray, list[dict]]:
    """The lobules' mask on the map's grid and each cluster's measures (``lumens``, ``mm2``, ``lobule``)."""
    from scipy import ndimage as ndi
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import cdist
    from skimage.morphology import convex_hull_image

    shape = np.asarray(h).shape
    out = np.zeros(shape, bool)
    found, lumen_px, h_rel = _lumens(rgb, h, mpp, rule)
    pts = np.asarray(found, np.float64).reshape(-1, 2)
    if len(pts) < rule.min_lumens:
        return out, []
    wall = max(1, int(round(rule.wall_um / mpp)))
    solid = np.zeros(shape, bool)  # the clusters whose lumens are punched in a sheet of cells
    _, group = connected_components(cdist(pts, pts) * mpp <= rule.link_um)
    pad = max(1, int(round(rule.pad_um / mpp)))
    for c in np.unique(group):
        q = pts[group == c].astype(int)
        if len(q) < rule.min_lumens:
            continue
        y0, x0 = np.maximum(q.min(0) - pad - 1, 0)
        y1, x1 = np.minimum(q.max(0) + pad + 2, shape)
        m = np.zeros((y1 - y0, x1 - x0), bool)
        m[q[:, 0] - y0, q[:, 1] - x0] = True
        hull = convex_hull_image(m)
        # between and round the acini: the grown hull beyond each lumen's epithelium
        grown = ndi.binary_dilation(hull, iterations=pad)
        between = grown & ~ndi.binary_dilation(lumen_px[y0:y1, x0:x1], iterations=wall)
        share = float((h_rel[y0:y1, x0:x1][between] >= rule.rim_h).mean()) if between.any() else 0.0
        out[y0:y1, x0:x1] |= grown
        log.debug("a cluster of %d lumens: %.2f of it between them cell-dense", len(q), share)
        if share >= rule.solid_max:  # lumens punched in a sheet of cells: a cribriform nest of the tumour
            solid[y0:y1, x0:x1] |= grown
    # clusters whose grown hulls touch are one piece: a field of them larger than a lobule (a tumour's tubules, a
    # mucinous tumour's pools read as holes) is never kept out
    labels, n = ndi.label(out)
    mm2 = np.bincount(labels.ravel(), minlength=n + 1)[1:] * mpp * mpp / 1e6
    near = np.clip(pts.astype(int), 0, np.array(shape) - 1)
    count = np.bincount(labels[near[:, 0], near[:, 1]], minlength=n + 1)[1:]
    keep = np.zeros(n + 1, bool)
    # a piece holding a cluster in solid cells is the tumour's, whatever its size (review r47d)
    in_solid = ndi.maximum(solid, labels, np.arange(1, n + 1)).astype(bool) if n else np.zeros(0, bool)
    keep[1:] = (mm2 <= rule.max_mm2) & ~in_solid
    measures = [dict(lumens=int(k), mm2=round(float(a), 4), solid=bool(s), lobule=bool(a <= rule.max_mm2 and not s))
                for k, a, s in zip(count, mm2, in_solid)]
    return keep[labels], measures


def tile_shares(mask: np.ndarray, mpp: float, coords: np.ndarray, tile_size_level0: float,
                slide_mpp: float) -> np.ndarray:
    """Each tile's share of its area on ``mask`` (at ``mpp`` µm/px; ``coords`` level-0 tile corners)."""
    scale = slide_mpp / mpp
    size = max(1, int(round(tile_size_level0 * scale)))
    out = np.zeros(len(coords), np.float64)
    for k, (x, y) in enumerate(np.asarray(coords, np.float64).reshape(-1, 2)):
        y0, x0 = int(round(y * scale)), int(round(x * scale))
        out[k] = mask[y0:y0 + size, x0:x0 + size].sum() / (size * size)
    return out


def read_at_4um(attrs: dict, slide_path: str | Path | None, what: str, not_read: str):
    """The slide read at :data:`LOBULE_MPP` for the steps that look for small structures (normal lobules, mucin
    pools): ``(thumbnail, its µm/px, its haematoxylin / eosin concentrations)``, or what was said (``not_read``, with
    why) when the slide, its stain or its size rule the read out (``what``: the step, for the log)."""
    from weakstil.slide import Slide
    from weakstil.stain import SlideStain, concentrations
    from weakstil.tumorbed.ink import features_slide

    path = features_slide(attrs, slide_path)
    stain = SlideStain.from_attr(attrs.get("stain"))
    if path is None or stain is None:
        return not_read
    try:
        with Slide.open(path, slide_mpp=float(attrs["slide_mpp"])) as slide:
            w, h = slide.dimensions
            pixels = w * h * (float(slide.mpp) / LOBULE_MPP) ** 2
            if pixels > LOBULE_MAX_PIXELS:
                log.warning("%s: %s not looked for: %.0f MP at %g µm/px is over %d MP", attrs.get("slide_id"), what,
                            pixels / 1e6, LOBULE_MPP, LOBULE_MAX_PIXELS // 1_000_000)
                return f"{not_read} (over {LOBULE_MAX_PIXELS // 1_000_000} MP at {LOBULE_MPP:g} µm/px)"
            thumb = slide.read_thumbnail(LOBULE_MPP)
    except Exception as exc:  # an unreadable slide only loses this step; the bed is still drawn
        log.warning("%s: %s not looked for: %s could not be read (%s)", attrs.get("slide_id"), what, path, exc)
        return not_read
    mpp = float(attrs["slide_width"]) * float(attrs["slide_mpp"]) / thumb.shape[1]
    return thumb, mpp, concentrations(thumb, stain)


def slide_lobules(attrs: dict, tissue_shape: tuple[int, int], mask_mpp: float, coords: np.ndarray,
                  tile_size_level0: float, rule: LobuleRule, slide_path: str | Path | None = None, read=None
                  ) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The lobules on the tissue mask's grid, the tiles that lose their evidence, and what was done (said in the
    bed's ``seed_vetoes``); ``None, None`` when the slide or its stain is not there (the bed is drawn as before).
    ``read``: :func:`read_at_4um`'s answer when another step read the slide already."""
    from weakstil.tumorbed.aggregates import on_mask_grid

    read = read_at_4um(attrs, slide_path, "normal lobules", NOT_READ) if read is None else read
    if isinstance(read, str):
        return None, None, read.replace("mucin pools", "lobules")
    thumb, mpp, conc = read
    mask, measures = lobule_mask(thumb, conc[..., 0], mpp, rule)
    tiles = tile_shares(mask, mpp, coords, tile_size_level0, float(attrs["slide_mpp"])) >= rule.tile_share
    found = [m for m in measures if m["lobule"]]
    said = f"lobules: {len(found)} kept out ({sum(m['mm2'] for m in found):.3f} mm², {int(tiles.sum())} tiles)"
    return on_mask_grid(mask, mpp, tissue_shape, mask_mpp), tiles, said


def choose_lobules(slides, evidence: list[np.ndarray], shape, lobules_of) -> tuple[LobuleRule, dict]:
    """Whether the detector keeps normal lobules out of its beds, and the record for model.json: each annotated
    slide's bed from its held-out ``evidence`` with ``shape``, drawn as is and without its lobules
    (``lobules_of(slide_id, geom)``: the mask on its grid and the tiles that lose their evidence, ``(None, None)``
    when the slide is not read), scored by Dice against its annotation. Kept unless it costs the annotated slides
    :data:`LOBULE_MAX_LOSS` of mean Dice (their annotators drew such clusters in: tubules or mucin of the tumour)."""
    from weakstil.bed_geometry import bed_from_evidence
    from weakstil.tissue import dice
    from weakstil.tumorbed.veto import dark_nuclei_area

    off, on, per_slide, not_read, in_annotation = [], [], {}, [], 0
    for s, ev in zip(slides, evidence):
        g = s.geom
        mask, tiles = lobules_of(s.slide_id, g)
        if mask is None:
            not_read.append(s.slide_id)
            continue
        infiltrate = dark_nuclei_area(s.tile_stats, s.stats_columns) if shape.infiltrate_um > 0 else None
        truth = np.asarray(s.bed_mask, bool)
        beds = [bed_from_evidence(e, g.coords, g.tile_size_level0, g.slide_mpp, tissue, g.mask_mpp, shape,
                                  infiltrate)[0]
                for e, tissue in ((ev, g.tissue_mask), (np.where(tiles, 0.0, ev), g.tissue_mask & ~mask))]
        off.append(dice(beds[0], truth))
        on.append(dice(beds[1], truth))
        in_annotation += int((mask & truth).sum())
        per_slide[s.slide_id] = {"off": round(off[-1], 4), "on": round(on[-1], 4), "lobule_px": int(mask.sum())}
    record = {"max_loss": LOBULE_MAX_LOSS, "per_slide": per_slide, "not_read": not_read,
              "lobule_px_in_annotations": in_annotation}
    from weakstil.tumorbed.flags import gate_chosen

    return LobuleRule(enabled=gate_chosen(record, off, on, LOBULE_MAX_LOSS, "normal lobules kept out of the bed")), record
