"""How far a slide lies from the training cohort: the **shift** that widens its sTIL% interval.

A model's errors grow on slides unlike those it learnt from (another lab's stain, scanner or
tissue). Four measures, all already made for the qc flags, say how unlike:

* the **embedding distance**: the mean k-NN distance of the slide's tile embeddings to the
  training tiles' (:mod:`weakstil.qc.embedding`);
* the **stain distance**: per stain statistic (Macenko H/E vector angles, H/E strengths, mean
  optical density; :func:`weakstil.qc.flags.stain_distances`) the distance from the training
  slides' median stain;
* the **unfamiliar share** (version 2): the share of the slide's tiles farther from every
  training tile than 99 % of the training tiles are (:func:`weakstil.qc.embedding.unfamiliar_reference`).
  Tissue the training slides lack (necrosis, DCIS, plasma-cell sheets) moves the mean distance
  little, and it is what a model gets wrong: on our hard look scored by a default-look model,
  the intervals covered 73 % of slides without this part and 90 % with it, while the ordinary
  and the alt look stayed at 95 % (widths +0.3 and +1.8 points; ``benchmarks/confidence.py``);
* the **blurry share** (version 3): the share of the slide's sampled tissue tiles out of focus (as
  for the ``blurry`` flag, :mod:`weakstil.qc.image`). Blur moves a tile's embedding less than it
  moves its score: a held-out slide blurred by a 3 px Gaussian scored 9.9 % (in focus 16.5 %,
  truth 17.9 %) with an interval (3.6-16.3) as narrow as in focus, its embedding shift 0.3;
* the **tile-measurement ratio** (version 4): how far the slide's mean tile measurements
  (nuclear morphometry, :mod:`weakstil.qc.morphometry`) lie from the training slides' median, over
  the distance that raises ``out_of_distribution`` (its largest over the measurements):
  ``max(0, (r - m_r) / (1 - m_r))``, 0 at the training slides' median leave-group-out ratio, 1
  where it flags the slide. Tumour nuclei as small and dark as lymphocytes moved the embedding
  distance little while the model read them as TILs (hunt 25).

Each is put relative to a typical *new-centre* slide: for every training slide it is measured
**leave-group-out** — against the training tiles and the stain median of the *other* centres
only, just as the cross-validation (leave-centre-out) predicted it from the other centres. The
slide's shift is

``s = max(0, d_emb / m_emb − 1) + max(0, max_k d_k / (m_k + floor_k) − 1) + max(0, (u − m_u) / (t_u − m_u))
+ max(0, (b − m_b) / (t_b − m_b))``

with ``m`` the training slides' median leave-group-out distances (and unfamiliar share ``m_u``),
``floor_k`` the stain flag's floor (:data:`weakstil.qc.flags.STAIN_FLOORS`: a difference too small
to matter), ``t_u`` the unfamiliar share that raises ``out_of_distribution``, ``b`` the blurry
share, ``m_b`` the training slides' median and ``t_b`` the share that raises ``blurry`` (a slide's
focus is its own: no leave-group-out). So a
slide as close to the training cohort as a typical held-out centre has ``s = 0`` and a slide
twice as far has ``s ≈ 1``. The interval's scale is multiplied by ``1 + β·s``
(:mod:`weakstil.confidence`; ``β`` fitted on the out-of-fold slides, whose shifts are these
leave-group-out ones). Nothing here is fitted to a look: only medians of the training slides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil.qc.flags import BLURRY_SHARE, STAIN_FLOORS, stain_centre, stain_distances

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.qc.embedding import EmbeddingReference
    from weakstil.qc.image import ImageStats

#: Bumped when the definition of the shift changes.
SHIFT_VERSION = 4  # 2: the unfamiliar share; 3: the blurry share; 4: the tile measurements (morphometry)


def leave_group_out_distances(ref: EmbeddingReference, slides: Sequence[np.ndarray], groups: Sequence,
                              seed: int = 0, tile_threshold: float | None = None,
                              leave_slide_out: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """Each training slide's embedding distance to the reference tiles of the other groups only;
    with ``tile_threshold``, ``(distances, unfamiliar shares)``: the share of its tiles farther
    than that from the other groups' tiles. ``leave_slide_out``: each slide's leave-slide-out tile
    distances already found with the same ``seed`` (:func:`weakstil.qc.embedding.fit_reference_and_neighbours`),
    used for a slide alone in its group (the same search) rather than searched again."""
    groups = np.asarray([str(g) for g in groups])
    out, shares = [], []
    for i, feats in enumerate(slides):
        same = np.flatnonzero(groups == groups[i])
        if leave_slide_out is not None and len(same) == 1:
            d = leave_slide_out[i]
        else:
            d = ref.tile_distances(feats, exclude_slide=same, seed=seed + i)
        out.append(float(d.mean()) if len(d) else math.nan)
        shares.append(float((d > tile_threshold).mean()) if len(d) and tile_threshold is not None else math.nan)
    if tile_threshold is not None:
        return np.asarray(out, np.float64), np.asarray(shares, np.float64)
    return np.asarray(out, np.float64)


def leave_group_out_stain(stats: Sequence[ImageStats | None], groups: Sequence) -> list[dict[str, float]]:
    """Each training slide's stain distances from the median stain of the other groups' slides
    (empty for a slide without statistics, or when no other group has any)."""
    groups = np.asarray([str(g) for g in groups])
    out: list[dict[str, float]] = []
    for i, s in enumerate(stats):
        others = [t for j, t in enumerate(stats) if t is not None and groups[j] != groups[i]]
        out.append(stain_distances(s, stain_centre(others)) if (s is not None and others) else {})
    return out


def _median(values: list[float]) -> float | None:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.median(v)) if v else None


def shift_reference(embedding_lgo: np.ndarray | None, stain_lgo: list[dict[str, float]] | None,
                    unfamiliar_lgo: np.ndarray | None = None, unfamiliar_flag: float | None = None,
                    blurry_shares: Sequence[float] | None = None,
                    morphometry_lgo: Sequence[float] | None = None) -> dict[str, Any]:
    """What a slide's shift is measured against: the training slides' median leave-group-out
    embedding distance, per stain statistic median distance plus the flag's floor, their
    median leave-group-out unfamiliar share with the share that flags a slide, and their median
    blurry share with the share that flags a slide ``blurry``, and their median leave-group-out
    tile-measurement ratio (:mod:`weakstil.qc.morphometry`; 1 flags a slide)."""
    ref: dict[str, Any] = {"version": SHIFT_VERSION}
    if morphometry_lgo is not None:
        m = _median([float(r) for r in morphometry_lgo])
        if m is not None and m < 1.0:
            ref["morphometry"] = {"median": m, "scale": 1.0 - m}
    if unfamiliar_lgo is not None and unfamiliar_flag is not None:
        m = _median(list(np.asarray(unfamiliar_lgo, np.float64))) or 0.0
        if unfamiliar_flag > m:
            ref["unfamiliar"] = {"median": m, "scale": float(unfamiliar_flag) - m}
    if blurry_shares is not None:
        m = _median([float(b) for b in blurry_shares if b is not None])
        if m is not None and BLURRY_SHARE > m:
            ref["blurry"] = {"median": m, "scale": BLURRY_SHARE - m}
    if embedding_lgo is not None:
        m = _median(list(np.asarray(embedding_lgo, np.float64)))
        if m is not None and m > 0:
            ref["embedding_distance"] = m
    if stain_lgo:
        scales = {}
        for name, floor in STAIN_FLOORS.items():
            m = _median([d.get(name) for d in stain_lgo if name in d])
            if m is not None:
                scales[name] = m + floor
        if scales:
            ref["stain_scale"] = scales
    return ref


def slide_shift(reference: dict[str, Any], *, embedding_distance: float | None = None,
                stain: dict[str, float] | None = None, unfamiliar_share: float | None = None,
                blurry_share: float | None = None, morphometry_ratio: float | None = None) -> float:
    """The shift ``s >= 0`` of one slide from its embedding distance (same units as the
    reference's), its stain distances (:func:`weakstil.qc.flags.stain_distances`), its
    unfamiliar share, its blurry share and its tile-measurement ratio; a part that was not measured (or a reference without
    it: a model trained before it) counts 0. A non-finite distance (e.g. no stain estimate)
    counts as twice the typical one."""
    s = 0.0
    unfamiliar = reference.get("unfamiliar")
    if unfamiliar and unfamiliar_share is not None and math.isfinite(unfamiliar_share):
        s += max(0.0, (float(unfamiliar_share) - unfamiliar["median"]) / unfamiliar["scale"])
    blurry = reference.get("blurry")
    if blurry and blurry_share is not None and math.isfinite(blurry_share):
        s += max(0.0, (float(blurry_share) - blurry["median"]) / blurry["scale"])
    morph = reference.get("morphometry")
    if morph and morphometry_ratio is not None and math.isfinite(morphometry_ratio):
        s += max(0.0, (float(morphometry_ratio) - morph["median"]) / morph["scale"])
    m = reference.get("embedding_distance")
    if m and embedding_distance is not None:
        d = float(embedding_distance)
        s += max(0.0, (d if math.isfinite(d) else 2.0 * m) / m - 1.0)
    scales = reference.get("stain_scale") or {}
    if stain and scales:
        ratios = [(stain[k] if math.isfinite(stain[k]) else 2.0 * v) / v for k, v in scales.items() if k in stain]
        if ratios:
            s += max(0.0, max(ratios) - 1.0)
    return s


def slide_shift_from_stats(reference: dict[str, Any], embedding_distance: float | None, image: ImageStats | None,
                           stain_ref: dict[str, Any] | None, unfamiliar_share: float | None = None,
                           morphometry_ratio: float | None = None) -> float:
    """:func:`slide_shift` of a scored slide: its stain measured against the training centre."""
    stain = stain_distances(image, stain_ref["centre"]) if (image is not None and stain_ref) else None
    return slide_shift(reference, embedding_distance=embedding_distance, stain=stain,
                       unfamiliar_share=unfamiliar_share, blurry_share=slide_blurry_share(image),
                       morphometry_ratio=morphometry_ratio)


def slide_blurry_share(image: ImageStats | None) -> float | None:
    """The share of a slide's focus tiles that are blurry (``None``: not measured)."""
    return float(image.blurry_share) if image is not None and image.focus_tiles else None
