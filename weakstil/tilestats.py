"""Per-tile stain and nuclear-morphometry measurements, stored beside the embeddings.

What a pathologist looks at to call stromal TILs, measured on every tile from its pixels,
after unmixing haematoxylin and eosin with the slide's own stain vectors
(:mod:`weakstil.stain`; concentrations relative to the slide's strongest staining, so the
numbers mean the same on every centre's slides):

* **stroma estimate**: the share of the tile whose surroundings are collagen — pixels whose
  neighbourhood (about 10 µm) is dominated by eosin-rich, nucleus-free tissue; lymphocytes
  lying in stroma count as stroma (as in the sTIL definition), tumour nests (nuclei in
  haematoxylin-tinged cytoplasm), fat and glass do not. The stroma aggregator can use it as
  the tile's weight (``weakstil train --stroma-weight estimate``).
* **nuclear morphometry**: haematoxylin blobs by size (debris, lymphocyte-sized, larger),
  darkness and context (in stroma or among other nuclei), as area fractions of the tile, plus
  roundness and density summaries. Lymphocytes are small, round, dark nuclei with scant
  cytoplasm lying in stroma; hyperchromatic tumour nuclei can be as dark and small but sit in
  nests, fibroblast nuclei are elongated, apoptotic debris is smaller.

The MIL regressor concatenates these numbers to the encoder's embedding (``FeatureBank``) so
the learned tile score can use them; they are standardised with the rest.

Everything is numpy/scipy on uint8 tiles; about 3.4 ms per 224 px tile on one core. ``weakstil
embed`` measures in worker processes beside the encoder (:mod:`weakstil.tilestats_pool`), with
the same numbers bit for bit.
"""

from __future__ import annotations

import functools

import numpy as np

from weakstil.stain import SlideStain, optical_density

#: Bumped when a measurement changes (part of the embedding cache key).
TILESTATS_VERSION = 2
#: Nuclear blob area bins in µm² (lymphocytes are 6-9 µm across: about 28-64 µm²).
AREA_BINS_UM2 = (0.0, 12.0, 75.0, 160.0, np.inf)
AREA_NAMES = ("debris", "small", "medium", "large")
#: Relative haematoxylin (1 = slide's 99th percentile) above which a pixel is nuclear / dark.
NUCLEUS_H = 0.35
DARK_H = 0.62
#: A pixel is eosin-dominant when its relative eosin exceeds its relative haematoxylin by this factor.
EOSIN_OVER_H = 1.2
#: Relative stain sum below which a pixel is glass or fat lumen.
TISSUE_MIN = 0.12
#: Radius (µm) of the neighbourhood that decides stroma context.
CONTEXT_UM = 10.0
#: Context share of eosin-dominant, nucleus-free tissue above which a place is stroma.
STROMA_CONTEXT = 0.8
#: Local area share (about 20 µm around) of large pale nuclei above which a place is epithelium.
EPITHELIAL_MAX = 0.08
#: Minimum roundness (minor/major axis) of a "round" blob.
ROUND = 0.6

STROMA_COLUMN = "stroma_estimate"


def column_names() -> list[str]:
    names = [STROMA_COLUMN, "tissue", "eosin_dominant", "nuclear", "mean_h", "mean_e", "h_p90"]
    for a in AREA_NAMES:
        for dark in ("dark", "pale"):
            for ctx in ("stroma", "nest"):
                names.append(f"{a}_{dark}_{ctx}")
    names += ["small_dark_round_stroma", "elongated_stroma", "nuclei_per_100um2", "mean_roundness",
              "small_dark_round_count"]
    return names


COLUMNS = tuple(column_names())


def _box_mean(x: np.ndarray, size: int) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.uniform_filter(x.astype(np.float32), size=size, mode="reflect")


@functools.lru_cache(maxsize=1)
def _od_table() -> np.ndarray:
    """:func:`weakstil.stain.optical_density` of every uint8 value (float32, elementwise: looking a
    tile up in it gives the same numbers bit for bit, without a logarithm per pixel)."""
    return optical_density(np.arange(256, dtype=np.uint8))


def tile_stats(tile: np.ndarray, stain: SlideStain, mpp: float, unmixing: np.ndarray | None = None) -> np.ndarray:
    """The :data:`COLUMNS` measurements of one uint8 RGB tile at ``mpp`` µm/px (``unmixing``:
    ``stain.unmixing()`` as float32, computed once per batch by :func:`batch_stats`)."""
    from scipy import ndimage as ndi

    u = stain.unmixing().astype(np.float32) if unmixing is None else unmixing
    c = _od_table()[tile] @ u  # = concentrations(tile, stain), bit for bit
    h, e = c[..., 0], c[..., 1]
    n_px = h.size
    px_um2 = mpp * mpp
    h_pos = h.clip(min=0)
    tissue = (h_pos + e.clip(min=0)) > TISSUE_MIN
    nuclear = tissue & (h > NUCLEUS_H)
    eos = tissue & ~nuclear & (e > EOSIN_OVER_H * h_pos)
    labels, n = ndi.label(nuclear)
    blobs = _blobs(labels, n, h, mpp)
    size = max(3, int(round(2 * CONTEXT_UM / mpp)) | 1)
    # stroma context: eosin-dominant nucleus-free tissue around the pixel, and few large pale
    # (epithelial) nuclei: tumour cytoplasm can be as pink as collagen, its nuclei give it away
    free = _box_mean(tissue & ~nuclear, size)
    context = np.where(free > 0.05, _box_mean(eos, size) / np.maximum(free, 1e-6), 0.0)
    if n:
        epithelial = np.concatenate([[False], (blobs["area_um2"] >= AREA_BINS_UM2[2]) & ~blobs["dark"]])[labels]
        context = np.where(_box_mean(epithelial, 2 * size + 1) > EPITHELIAL_MAX, 0.0, context)
    stroma = tissue & (context > STROMA_CONTEXT)

    out = np.zeros(len(COLUMNS), np.float32)
    for j, mask in enumerate((stroma, tissue, eos, nuclear)):  # = mask.mean(): an exact count over n_px
        out[j] = np.count_nonzero(mask) / n_px
    t = tissue.sum()
    if t:
        h_tissue = h[tissue]
        out[4] = float(h_tissue.mean())
        out[5] = float(e[tissue].mean())
        out[6] = float(np.percentile(h_tissue, 90))
    k = 7
    if n:
        flat = blobs["flat"]
        area = blobs["area"]
        ctx = np.bincount(blobs["lab"], weights=context.ravel()[flat], minlength=n) / area
        bin_idx = np.digitize(blobs["area_um2"], AREA_BINS_UM2[1:-1])
        dark, roundness = blobs["dark"], blobs["roundness"]
        in_str = ctx > STROMA_CONTEXT
        frac = area / n_px
        for a in range(len(AREA_NAMES)):
            for di, dsel in enumerate((dark, ~dark)):
                for ci, csel in enumerate((in_str, ~in_str)):
                    out[k + a * 4 + di * 2 + ci] = frac[(bin_idx == a) & dsel & csel].sum()
        k += len(AREA_NAMES) * 4
        lymph_like = (bin_idx == 1) & dark & (roundness > ROUND)
        out[k] = frac[lymph_like & in_str].sum()
        out[k + 1] = frac[(roundness < 0.45) & in_str & (bin_idx >= 1)].sum()
        out[k + 2] = n / max(t * px_um2 / 100.0, 1e-6) if t else 0.0
        out[k + 3] = float(np.average(roundness, weights=area))
        out[k + 4] = float((lymph_like & in_str).sum()) / (n_px * px_um2 / 1e4)  # per 100x100 µm
    return out


def _blobs(labels: np.ndarray, n: int, h: np.ndarray, mpp: float) -> dict[str, np.ndarray]:
    """Area, darkness and roundness (minor/major axis of the second moments) of labelled nuclei."""
    if not n:
        return {}
    flat = np.flatnonzero(labels.ravel())  # statistics over the nuclear pixels only
    lab = labels.ravel()[flat] - 1
    w = h.shape[1]
    ys, xs = (flat // w).astype(np.float64), (flat % w).astype(np.float64)

    def per_blob(weights=None):
        return np.bincount(lab, weights=weights, minlength=n)

    area = per_blob().astype(np.float64)
    hs = per_blob(h.ravel()[flat]) / area
    my, mx = per_blob(ys) / area, per_blob(xs) / area
    vyy = per_blob(ys * ys) / area - my * my + 1 / 12
    vxx = per_blob(xs * xs) / area - mx * mx + 1 / 12
    vxy = per_blob(xs * ys) / area - mx * my
    tr, det = vxx + vyy, vxx * vyy - vxy * vxy
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0.0))
    roundness = np.sqrt(np.maximum(tr / 2 - disc, 1e-9) / np.maximum(tr / 2 + disc, 1e-9))
    return {"flat": flat, "lab": lab, "area": area, "area_um2": area * mpp * mpp, "dark": hs > DARK_H,
            "roundness": roundness}


def batch_stats(tiles: np.ndarray, stain: SlideStain, mpp: float) -> np.ndarray:
    """(B, len(COLUMNS)) float32 for a uint8 batch (B, H, W, 3)."""
    if not len(tiles):
        return np.zeros((0, len(COLUMNS)), np.float32)
    u = stain.unmixing().astype(np.float32)
    return np.stack([tile_stats(t, stain, mpp, u) for t in tiles])
