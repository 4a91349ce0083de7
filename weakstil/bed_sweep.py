"""The tumour-bed detector's settings search over a grid of :class:`weakstil.bed_geometry.BedShape`
settings: every bed :func:`weakstil.bed_geometry.grow_bed` gives (:func:`sweep_shapes`) and its Dice
against an annotation (:func:`sweep_dice_table`, :func:`sweep_dice`), with the work shared between
settings.

``weakstil tumorbed train`` scores thousands of settings per annotated slide, several times (the
veto and tumour-cell gate candidates), so this is the detector training's hot loop. What is shared
(each the same arithmetic as :func:`grow_bed`, so the same beds to the pixel and the same Dice to
the bit):

- one distance transform per seed mask, and per bridge only the distance transforms a margin needs
  (none where the margin equals the bridge: the bed is then the grown region itself), each on the
  bounding box of the pixels it measures from and the farthest reach asked of it (the same
  distances there, as every pixel it measures from is in the box);
- enclosed holes filled by labelling the background once (the background components that do not
  reach the mask's edge, 4-connected: what ``scipy.ndimage.binary_fill_holes`` propagates to);
- a bed met before for the same seeds (margins or bridges that differ by less than a pixel) is
  counted once;
- the seed-area filters of one bed all at once, from per-component counts (pixels, pixels in the
  annotation, seed area), not a pass over the mask each.

Connected components come from OpenCV where it is installed (its labels are numbered otherwise than
scipy's, which changes no count: each filter keeps components by their own seed area, the largest's
included), else from ``scipy.ndimage.label``.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from weakstil.bed_geometry import BedShape, _keep_components
from weakstil.morphology import fill_holes, label4


def _box(mask: np.ndarray, pad: int) -> tuple[slice, slice]:
    """The bounding box of a non-empty mask's pixels, ``pad`` pixels larger on each side (cut to the mask)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (slice(max(int(rows[0]) - pad, 0), min(int(rows[-1]) + pad + 1, mask.shape[0])),
            slice(max(int(cols[0]) - pad, 0), min(int(cols[-1]) + pad + 1, mask.shape[1])))


def distance_to(mask: np.ndarray, reach: float) -> np.ndarray:
    """Each pixel's Euclidean distance to the nearest pixel of ``mask`` (non-empty), as
    ``scipy.ndimage.distance_transform_edt(~mask)`` gives it up to ``reach``; farther pixels get inf.
    The transform runs on the mask's bounding box and ``reach`` around it only (every mask pixel is
    in it, so the distances in it are the same numbers)."""
    from scipy import ndimage as ndi

    box = _box(mask, int(np.ceil(reach)) + 1)  # a pixel outside it lies more than ``reach`` from every mask pixel
    out = np.full(mask.shape, np.inf)
    out[box] = ndi.distance_transform_edt(~mask[box])
    return out


def depth_in(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.distance_transform_edt(mask)`` of a non-empty mask: each mask pixel's distance to
    the nearest pixel outside it (0 outside). Computed on the mask's bounding box with a frame of one
    outside pixel where the image has room: the nearest outside pixel of a pixel in the box is in it
    (one outside the box is no nearer than the frame pixel between them)."""
    from scipy import ndimage as ndi

    box = _box(mask, 1)
    out = np.zeros(mask.shape)
    out[box] = ndi.distance_transform_edt(mask[box])
    return out


def _beds_of(seeds: np.ndarray, tissue: np.ndarray, mpp: float, bridges_um, margins_um):
    """The beds before the seed-area filters of non-empty ``seeds`` for every bridge and margin, in that
    order: yields ``(bridge, margin, bed)``. The arithmetic of :func:`grow_bed`."""
    reach = max([bridge / mpp for bridge in bridges_um] + [0.0])
    d_seed = distance_to(seeds, reach) if reach > 0 else None
    for bridge in bridges_um:
        r = bridge / mpp
        grown = fill_holes(d_seed <= r if r > 0 else seeds)
        shrinks = [r - margin / mpp for margin in margins_um]
        d_in = depth_in(grown) if any(s > 0 for s in shrinks) else None
        d_out = distance_to(grown, -min(shrinks)) if any(s < 0 for s in shrinks) else None
        for margin, shrink in zip(margins_um, shrinks):
            # shrink 0: d_out <= 0 is the grown region itself (seeds make it non-empty)
            bed = (d_in > shrink) if shrink > 0 else (d_out <= -shrink) if shrink < 0 else grown.copy()
            bed |= seeds
            bed &= tissue
            yield bridge, margin, bed


def _component_counts(bed: np.ndarray, seed_index: np.ndarray, target_index: np.ndarray, mpp: float,
                      use_cv2: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per component of ``bed`` (label 0: outside it): pixels, pixels in the target, seed area (mm²).
    ``seed_index``/``target_index``: the flat indices of the seed and target pixels."""
    labels, n = label4(bed, use_cv2)
    flat = labels.ravel()
    size = np.bincount(flat, minlength=n)
    inside = np.bincount(flat[target_index], minlength=n)
    seed_mm2 = np.bincount(flat[seed_index], minlength=n) * (mpp * mpp) / 1e6
    return size, inside, seed_mm2


def sweep_counts(evidence_map: np.ndarray, tissue: np.ndarray, target: np.ndarray, mpp: float, *, seed_thresholds,
                 bridges_um, margins_um, min_seeds_mm2, min_seed_shares=(0.0,), use_cv2: bool = True,
                 memo: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(bed pixels, bed pixels in target)`` of every setting, each an int64 array of shape
    (thresholds, bridges, margins, min_seeds_mm2 x min_seed_shares) (the filters in the order
    ``(m, f) for m in min_seeds_mm2 for f in min_seed_shares``).

    ``memo``: a dict kept by the caller for one ``tissue``, ``target`` and ``mpp`` (one annotated slide)
    across calls: the counts of a seed mask met before (another threshold, smoothing or evidence that
    seeds the same pixels) are taken from it."""
    tissue = np.asarray(tissue, bool)
    target_index = np.flatnonzero(np.asarray(target, bool))
    filters = [(m, f) for m in min_seeds_mm2 for f in min_seed_shares]
    min_mm2 = np.array([m for m, _ in filters], np.float64)[:, None]
    share = np.array([f for _, f in filters], np.float64)[:, None]
    unfiltered = np.array([not (m > 0 or f > 0) for m, f in filters])
    shape = (len(seed_thresholds), len(bridges_um), len(margins_um), len(filters))
    n_bed, n_both = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    settings = (tuple(bridges_um), tuple(margins_um), tuple(filters), float(mpp), tissue.shape)
    for t, thr in enumerate(seed_thresholds):
        seeds = (evidence_map >= thr) & tissue
        if not seeds.any():
            continue  # an empty bed: no pixels
        # a digest, not the mask: the memo holds every seed mask of a training (64 a slide, 150 kB each on a 20 mm slide)
        key = (settings, hashlib.blake2b(np.packbits(seeds).tobytes(), digest_size=32).digest())
        if memo is not None and key in memo:
            n_bed[t], n_both[t] = memo[key]
            continue
        seed_index, known = np.flatnonzero(seeds), {}
        for at, (_, _, bed) in zip(np.ndindex(*shape[1:3]), _beds_of(seeds, tissue, mpp, bridges_um, margins_um)):
            bed_key = np.packbits(bed).tobytes()  # margins or bridges that differ by less than a pixel
            if bed_key not in known:
                size, inside, seed_mm2 = _component_counts(bed, seed_index, target_index, mpp, use_cv2)
                # per filter (row) and label, :func:`weakstil.bed_geometry._kept_labels`; no filter: every component
                area = seed_mm2.copy()
                area[0] = 0.0
                keep = (area >= min_mm2) & (area >= share * area.max()) & (area > 0)
                keep[unfiltered] = True
                keep[:, 0] = False
                known[bed_key] = ((keep * size).sum(axis=1), (keep * inside).sum(axis=1))
            n_bed[t][at], n_both[t][at] = known[bed_key]
        if memo is not None:
            memo[key] = (n_bed[t].copy(), n_both[t].copy())
    return n_bed, n_both


def sweep_dice_table(evidence_map: np.ndarray, tissue: np.ndarray, target: np.ndarray, mpp: float, **grid
                     ) -> np.ndarray:
    """The Dice against ``target`` of every setting of :func:`sweep_counts` (same shape, float64; its
    keywords): the same numbers as the Dice of the masks (1 where bed and target are both empty)."""
    n_bed, n_both = sweep_counts(evidence_map, tissue, target, mpp, **grid)
    total = n_bed + int(np.count_nonzero(target))
    return np.where(total == 0, 1.0, 2.0 * n_both.astype(np.float64) / np.maximum(total, 1).astype(np.float64))


def grid_shapes(smooth_um: float, *, seed_thresholds, bridges_um, margins_um, min_seeds_mm2, min_seed_shares=(0.0,)
                ) -> list[BedShape]:
    """The settings of :func:`sweep_dice_table`'s table, flattened in its order."""
    return [_bed_shape(thr, smooth_um, bridge, margin, m, f) for thr in seed_thresholds for bridge in bridges_um
            for margin in margins_um for m in min_seeds_mm2 for f in min_seed_shares]


def sweep_shapes(evidence_map: np.ndarray, tissue: np.ndarray, mpp: float, *, seed_thresholds, bridges_um,
                 margins_um, min_seeds_mm2, min_seed_shares=(0.0,), smooth_um: float = 0.0, use_cv2: bool = True):
    """Every bed :func:`weakstil.bed_geometry.grow_bed` gives for a grid of settings: yields ``(BedShape, bed)``.

    ``evidence_map`` is the evidence on the mask grid, already smoothed by ``smooth_um``."""
    tissue = np.asarray(tissue, bool)
    filters = [(m, f) for m in min_seeds_mm2 for f in min_seed_shares]
    for thr in seed_thresholds:
        seeds = (evidence_map >= thr) & tissue
        if not seeds.any():
            for bridge in bridges_um:
                for margin in margins_um:
                    for min_mm2, share in filters:
                        yield BedShape(thr, smooth_um, bridge, margin, min_mm2, share), np.zeros(tissue.shape, bool)
            continue
        for bridge, margin, bed in _beds_of(seeds, tissue, mpp, bridges_um, margins_um):
            labels, n = label4(bed, use_cv2)
            seed_mm2 = np.bincount(labels[seeds], minlength=n) * (mpp * mpp) / 1e6
            for min_mm2, share in filters:
                yield BedShape(thr, smooth_um, bridge, margin, min_mm2, share), (
                    _keep_components(labels, seed_mm2, min_mm2, share) if min_mm2 > 0 or share > 0 else labels > 0)


def sweep_dice(evidence_map: np.ndarray, tissue: np.ndarray, target: np.ndarray, mpp: float, *, seed_thresholds,
               bridges_um, margins_um, min_seeds_mm2, min_seed_shares=(0.0,), smooth_um: float = 0.0,
               use_cv2: bool = True):
    """The Dice against ``target`` of every bed :func:`sweep_shapes` gives, in its order: yields
    ``(BedShape, dice)`` (:func:`sweep_dice_table` one by one)."""
    grid = dict(seed_thresholds=seed_thresholds, bridges_um=bridges_um, margins_um=margins_um,
                min_seeds_mm2=min_seeds_mm2, min_seed_shares=min_seed_shares)
    dice = sweep_dice_table(evidence_map, tissue, target, mpp, use_cv2=use_cv2, **grid)
    yield from zip(grid_shapes(smooth_um, **grid), dice.ravel().tolist())


@lru_cache(maxsize=65536, typed=True)  # typed: a BedShape keeps the types it was given
def _bed_shape(*values: float) -> BedShape:
    """One (immutable, shared) :class:`BedShape` per setting: the search meets each once per slide."""
    return BedShape(*values)
