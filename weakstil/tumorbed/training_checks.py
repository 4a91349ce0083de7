"""What ``weakstil tumorbed train`` says about annotations drawn unlike a tumour bed (hunt 38l).

A detector learns whatever the annotations show: beds drawn as the tumour nests alone, beds that
are the whole tissue, one outline pasted onto every slide, a focus left unannotated or two slides'
files swapped all trained without a word (held-out Dice against the exact beds 0.53, -, 0.74, 0.82,
0.84 instead of 0.94; docs/tumorbed-quality.md, 2026-12-06). Before the fit
(:func:`check_annotations`) the annotations are checked on their own; after the leave-one-slide-out
search (:func:`check_held_out`) each slide whose held-out bed disagrees with its annotation is named
with the likelier cause, and a detector that reproduces its annotations poorly is said to be so.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from weakstil.errors import WeakSTILError

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.bed_geometry import BedShape

log = logging.getLogger("weakstil.tumorbed.training")

# The slides are weakstil.tumorbed.training.AnnotatedSlide (not imported: that module imports this one).

#: An annotation covering at least this share of its slide's tissue tiles on every slide: the detector
#: has (almost) no tissue outside a bed to learn from and would learn "all tissue".
ALL_TISSUE_SHARE = 0.95
#: The gaps an annotation's closing by this radius (µm) fills are tissue between its parts ...
GAP_RADIUS_UM = 100.0
#: ... and more of it than this share of the annotation's own area means the nests were outlined, not
#: the bed (tumour nests alone: 0.29-0.58 on the synthetic slides; exact beds 0.00-0.02, a bed with a
#: 200 µm necrosis hole 0.01-0.05).
GAP_SHARE = 0.2
#: A slide whose held-out Dice against its own annotation is under this is named with the likelier cause
#: (exact beds: 0.88-0.98 on 1.5 mm synthetic slides; a half-annotated bed 0.2-0.7, a swapped file 0.3-0.5).
LOW_SLIDE_DICE = 0.6
#: ... or more than this under the median of the other slides (at least 3): one slide's annotation drawn
#: otherwise (exact beds on the other slides 0.91-0.97, the odd one's 0.61-0.62 when it is all tissue, half
#: the bed or another slide's outline; no exact slide lies 0.1 under the others').
OUTLIER_DROP = 0.25
#: An annotation of fewer tiles than this is named as too small rather than by the tiles around it.
FEW_TILES = 16
#: A detector whose mean held-out Dice is under this reproduces its annotations poorly: said as a warning.
LOW_MEAN_DICE = 0.5


def _names(ids: list[str], n: int = 5) -> str:
    return ", ".join(ids[:n]) + (" ..." if len(ids) > n else "")


def _tissue_tiles(s) -> np.ndarray:
    return s.geom.tile_fractions(s.geom.tissue_mask.astype(bool), s.geom.mask_mpp) > 0


def _gap_share(s) -> float:
    """The tissue between the annotation's parts (filled by a closing of :data:`GAP_RADIUS_UM`) as a share
    of the annotation's area on tissue."""
    from weakstil.morphology import close_disk

    tissue = s.geom.tissue_mask.astype(bool)
    bed = np.asarray(s.bed_mask, bool) & tissue
    if not bed.any():
        return 0.0
    r = max(1, int(round(GAP_RADIUS_UM / s.geom.mask_mpp)))
    closed = close_disk(bed, r)  # scipy's binary_closing by a disc of r, nothing outside the mask
    return float((closed & tissue & ~bed).sum() / bed.sum())


def check_annotations(slides: list) -> None:
    """Refuse annotations that leave no tissue outside the bed on any slide; warn of annotations that
    cover (nearly) all tissue on every slide, of one outline given to several slides, and of outlines
    of the tumour nests without the stroma between them."""
    shares = {}
    for s in slides:
        tissue = _tissue_tiles(s)
        shares[s.slide_id] = float((s.bed_fraction[tissue] >= 0.5).mean()) if tissue.any() else 0.0
    if slides and min(shares.values()) >= ALL_TISSUE_SHARE:
        low, high = min(shares.values()), max(shares.values())
        span = f"{100 * low:.0f}%" if round(100 * low) == round(100 * high) else f"{100 * low:.0f}-{100 * high:.0f}%"
        message = (f"the annotations cover {span} of the tissue on every one of the {len(slides)} slides: a detector "
                   "trained on them would learn 'all tissue', not the tumour bed")
        fix = ("outline the invasive tumour and the stroma between its nests only, or annotate a slide with tissue "
               "outside its bed (a bed of the whole tissue needs no detector: score without --tumorbed)")
        from weakstil.tumorbed.evidence import NEGATIVE_FRACTION, training_labels

        if not any((training_labels(s.bed_fraction)[1] & ~training_labels(s.bed_fraction)[0]).any() for s in slides):
            outside = f"{100 * (1 - NEGATIVE_FRACTION):.0f}%"
            raise WeakSTILError(f"{message} (no tissue tile lies {outside} or more outside them)", fix=fix)
        log.warning("%s. Fix: %s", message, fix)
    copies: dict[bytes, list[str]] = {}
    for s in slides:
        mask = np.asarray(s.bed_mask, bool)
        if mask.any():
            copies.setdefault(np.packbits(mask).tobytes() + repr(mask.shape).encode(), []).append(s.slide_id)
    for ids in (ids for ids in copies.values() if len(ids) > 1):
        log.warning("%d slides have the same annotation outline, to the pixel: %s (one file copied for the others?); "
                    "the detector learns each slide's tumour from it. Fix: give each slide its own outline, or "
                    "leave the copies out", len(ids), _names(ids))
    nests = {s.slide_id: share for s in slides if (share := _gap_share(s)) >= GAP_SHARE}
    if nests:
        worst = max(nests, key=nests.get)
        log.warning("%d of %d annotations leave out much tissue between their parts (%s: %.0f%% of its area would "
                    "join it within %g µm): outlines of the tumour nests, not the bed? The tumour bed is the invasive "
                    "tumour with the stroma between its nests, and the detector learns that stroma as 'outside'. "
                    "Fix: outline the bed around the nests (in QuPath: one 'Tumor' area; a 'Stroma' class is not "
                    "read as bed): %s", len(nests), len(slides), worst, 100 * nests[worst], GAP_RADIUS_UM,
                    _names(sorted(nests)))


def check_held_out(slides: list, evidence: list[np.ndarray], shape: BedShape,
                   dice: np.ndarray, cv: str) -> dict[str, str]:
    """Name each slide whose held-out bed (drawn from ``evidence``, which a classifier that never saw the
    slide gave) agrees poorly with its annotation, with the likelier cause: tumour found well outside
    the annotation (a focus left unannotated, or another slide's outline) or an annotation much larger
    than the tumour found (drawn around more than the bed). Returns slide id -> what was said (for
    model.json); warns when the mean Dice says the detector is of little use."""
    from weakstil.bed_geometry import bed_from_evidence
    from weakstil.tumorbed.veto import dark_nuclei_area

    # with fewer than 3 slides the evidence is in-sample (held_out_evidence): no slide was held out
    trained = "trained on the other slides" if len(slides) >= 3 else "trained on all the slides, this one included,"
    said: dict[str, str] = {}
    for i, (s, ev, d) in enumerate(zip(slides, evidence, dice)):
        others = np.delete(np.asarray(dice, float), i)
        if d >= LOW_SLIDE_DICE and (len(others) < 3 or d >= float(np.median(others)) - OUTLIER_DROP):
            continue
        g = s.geom
        mask, _ = bed_from_evidence(ev, g.coords, g.tile_size_level0, g.slide_mpp, g.tissue_mask, g.mask_mpp, shape,
                                    dark_nuclei_area(s.tile_stats, s.stats_columns))
        found = g.tile_fractions(mask, g.mask_mpp) >= 0.5
        drawn = s.bed_fraction >= 0.5
        extra, missed = int((found & ~drawn).sum()), int((drawn & ~found).sum())
        if extra > missed:
            said[s.slide_id] = (f"the detector {trained} finds tumour in {extra} tiles outside its "
                                f"annotation ({int(drawn.sum())} tiles; Dice {d:.2f}): a tumour focus left "
                                "unannotated (it is learnt as 'outside'), or another slide's outline?")
        elif drawn.sum() < FEW_TILES:
            said[s.slide_id] = (f"its annotation covers only {int(drawn.sum())} tile(s) (Dice {d:.2f}): an outline "
                                "drawn well inside the tumour, or around a few nests? The tumour around it is learnt "
                                "as 'outside'")
        else:
            said[s.slide_id] = (f"{missed} of its annotation's {int(drawn.sum())} tiles hold no tumour the detector "
                                f"{trained} finds (Dice {d:.2f}): an outline drawn around more than "
                                "the tumour bed, or another slide's?")
    for sid, why in said.items():
        log.warning("%s: %s Fix: outline every invasive focus and only the bed, or leave the slide out", sid, why)
    if len(dice) and float(np.mean(dice)) < LOW_MEAN_DICE:
        log.warning("the detector reproduces its annotations poorly (%s Dice mean %.2f, min %.2f): its beds would be "
                    "little better than the whole tissue. Fix: check the annotations%s, then train again",
                    cv, float(np.mean(dice)), float(np.min(dice)), f" of {_names(sorted(said))}" if said else "")
    return said
