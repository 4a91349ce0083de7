"""How far a slide lies from the training cohort: the **shift** that widens its sTIL% interval.

A model's errors grow on slides unlike those it learnt from (another lab's stain, scanner or
tissue). Two distances, both already measured for the qc flags, say how unlike:

* the **embedding distance**: the mean k-NN distance of the slide's tile embeddings to the
  training tiles' (:mod:`weakstil.qc.embedding`);
* the **stain distance**: per stain statistic (Macenko H/E vector angles, H/E strengths, mean
  optical density; :func:`weakstil.qc.flags.stain_distances`) the distance from the training
  slides' median stain.

Each is put relative to a typical *new-centre* slide: for every training slide it is measured
**leave-group-out** — against the training tiles and the stain median of the *other* centres
only, just as the cross-validation (leave-centre-out) predicted it from the other centres. The
slide's shift is

``s = max(0, d_emb / m_emb − 1) + max(0, max_k d_k / (m_k + floor_k) − 1)``

with ``m`` the training slides' median leave-group-out distances and ``floor_k`` the stain
flag's floor (:data:`weakstil.qc.flags.STAIN_FLOORS`: a difference too small to matter). So a
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

from weakstil.qc.flags import STAIN_FLOORS, stain_centre, stain_distances

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.qc.embedding import EmbeddingReference
    from weakstil.qc.image import ImageStats

#: Bumped when the definition of the shift changes.
SHIFT_VERSION = 1


def leave_group_out_distances(ref: EmbeddingReference, slides: Sequence[np.ndarray], groups: Sequence,
                              seed: int = 0) -> np.ndarray:
    """Each training slide's embedding distance to the reference tiles of the other groups only."""
    groups = np.asarray([str(g) for g in groups])
    out = []
    for i, feats in enumerate(slides):
        same = np.flatnonzero(groups == groups[i])
        out.append(ref.distance(feats, exclude_slide=same, seed=seed + i))
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


def shift_reference(embedding_lgo: np.ndarray | None, stain_lgo: list[dict[str, float]] | None) -> dict[str, Any]:
    """What a slide's shift is measured against: the training slides' median leave-group-out
    embedding distance and, per stain statistic, median distance plus the flag's floor."""
    ref: dict[str, Any] = {"version": SHIFT_VERSION}
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
                stain: dict[str, float] | None = None) -> float:
    """The shift ``s >= 0`` of one slide from its embedding distance (same units as the
    reference's) and its stain distances (:func:`weakstil.qc.flags.stain_distances`); a part
    that was not measured counts 0. A non-finite distance (e.g. no stain estimate) counts as
    twice the typical one."""
    s = 0.0
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
                           stain_ref: dict[str, Any] | None) -> float:
    """:func:`slide_shift` of a scored slide: its stain measured against the training centre."""
    stain = stain_distances(image, stain_ref["centre"]) if (image is not None and stain_ref) else None
    return slide_shift(reference, embedding_distance=embedding_distance, stain=stain)
