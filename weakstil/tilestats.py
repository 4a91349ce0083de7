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

Everything is numpy and OpenCV on uint8 tiles (single-threaded), a batch at a time: about 1.1-1.6 ms
per 224 px tile on one core, 2.6-2.7x less than before version 3 (``benchmarks/tilestats_compare.py``).
``weakstil embed`` measures in worker processes beside the encoder
(:mod:`weakstil.tilestats_pool`), with the same numbers bit for bit.

Version 5 adds each tile's crush-artefact share (:func:`_crush`, :data:`CRUSH_COLUMN`; a tile mostly crush leaves the
scored bed, :mod:`weakstil.crush`); the other columns are bit for bit version 4's, at about 0.85x the tiles/s.
Version 4 lets hyperchromatic tumour nuclei mark epithelium (:func:`_epithelial`); before, only pale
ones did, and nests of dark tumour nuclei read as stroma. Version 3 counts the context boxes exactly (integers, thresholds as fractions); version 2 divided
float box means, so a place exactly at :data:`STROMA_CONTEXT` fell on either side by rounding. That
is the only change: on 2,400 tiles (four synthetic looks, a textured SVS, CMU-1) the stroma estimate
moved by at most 0.00066 and 7 debris blobs changed context; every other column is bit for bit the
same.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

from weakstil.imageops import ImageOps, image_ops
from weakstil.stain import SlideStain, od_table

#: Bumped when a measurement changes (part of the embedding cache key).
TILESTATS_VERSION = 5
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
#: Share of the context box that must be nucleus-free tissue for the place to have a context at all.
FREE_MIN = 0.05
#: Context share of eosin-dominant, nucleus-free tissue above which a place is stroma.
STROMA_CONTEXT = 0.8
#: Local area share (about 20 µm around) of tumour-sized nuclei (:func:`_epithelial`) above which a
#: place is epithelium.
EPITHELIAL_MAX = 0.08
#: A *dark* blob marks epithelium only when it is one nucleus of tumour size: at most this area (µm²;
#: a 20 x 16 µm nucleus, the upper end of grade-3 carcinoma nuclei) ...
EPITHELIAL_DARK_MAX_UM2 = 250.0
#: ... roundness (minor / major axis) at least this (two lymphocytes merged end to end: about 0.45) ...
EPITHELIAL_DARK_ROUND = 0.5
#: ... and filling at least this share of its moment ellipse (an ellipse fills it: 1.0; three or
#: four lymphocytes merged into one blob: 0.8-0.82, two: about 0.89).
EPITHELIAL_DARK_FILL = 0.9
#: Minimum roundness (minor/major axis) of a "round" blob.
ROUND = 0.6

STROMA_COLUMN = "stroma_estimate"
#: Area share of hyperchromatic tumour nuclei: dark blobs shaped like one nucleus of tumour size
#: (:func:`_epithelial`; version 4) among other tumour nuclei (not in stroma context: tumour cells are
#: cohesive; a lone plump dark nucleus in collagen is a reactive fibroblast or the like, and counted
#: it ungated stroma on a hard-look slide). With the medium and large pale ones, the tile's tumour nuclei.
DARK_TUMOUR_COLUMN = "dark_tumour_nuclei"
#: Share of the tile that is crush artefact (version 5, :func:`_crush`): leaves the scored area when the
#: tile is mostly crush (:data:`CRUSH_TILE_MAX`, :mod:`weakstil.crush`).
CRUSH_COLUMN = "crush_share"
#: The tile statistics version that measures :data:`CRUSH_COLUMN`: a model whose training features are of this version
#: or later was trained on beds without crush (:mod:`weakstil.crush`), one of older (or no) tile statistics on beds
#: with it (:func:`weakstil.mil.identity.crush_problem`).
CRUSH_VERSION = 5
#: Crush artefact (version 5): crushed cells smear their chromatin into dense haematoxylin streaks with no
#: nuclear outline left. A place is crush when, in its stroma-context box (about 20 µm), nuclear
#: (:data:`NUCLEUS_H`) pixels cover at least this share (lymphocyte sheets leave pale gaps, a stroma or a
#: nest far more) ...
CRUSH_DENSE = 0.6
#: ... the haematoxylin's edges run one way (structure-tensor coherence at least this: streamed chromatin, 0.6-0.7 on og42a;
#: round nuclei, alone or packed, give edges of every direction, about 0.0-0.15) ...
CRUSH_COHERENCE = 0.4
#: ... and it has texture: a haematoxylin gradient of at least this per µm (relative units) ...
CRUSH_TEXTURE_PER_UM = 0.08
#: ... over at least this share of the box: the edges of many streaks, not one edge (a marker stroke's, a
#: fold's, a nest's) crossing it, nor a smooth smear (out of focus).
CRUSH_EDGES = 0.25
#: Relative haematoxylin is quantised in steps of 1 / this (clipped at :data:`CRUSH_H_CLIP`) for the
#: structure tensor: integer gradients and exact box sums, the same on every backend.
CRUSH_QUANT = 32
CRUSH_H_CLIP = 2.0
#: Crush is measured on a grid of blocks about this wide (µm; 2 x 2 pixels at 0.5 µm/px).
CRUSH_GRID_UM = 1.0


def column_names() -> list[str]:
    names = [STROMA_COLUMN, "tissue", "eosin_dominant", "nuclear", "mean_h", "mean_e", "h_p90"]
    for a in AREA_NAMES:
        for dark in ("dark", "pale"):
            for ctx in ("stroma", "nest"):
                names.append(f"{a}_{dark}_{ctx}")
    names += ["small_dark_round_stroma", "elongated_stroma", "nuclei_per_100um2", "mean_roundness",
              "small_dark_round_count", DARK_TUMOUR_COLUMN, CRUSH_COLUMN]
    return names


COLUMNS = tuple(column_names())
_CRUSH_INDEX = COLUMNS.index(CRUSH_COLUMN)


@functools.lru_cache(maxsize=8)
def _ratio(x: float) -> tuple[int, int]:
    """``x`` as a small fraction (numerator, denominator): thresholds on box counts compare integers,
    so a count exactly at a threshold is never decided by rounding."""
    f = Fraction(x).limit_denominator(1000)
    return f.numerator, f.denominator


def context_size(mpp: float) -> int:
    """Side (px, odd) of the stroma-context box: about 2 x :data:`CONTEXT_UM` across."""
    return max(3, int(round(2 * CONTEXT_UM / mpp)) | 1)


def tile_stats(tile: np.ndarray, stain: SlideStain, mpp: float) -> np.ndarray:
    """The :data:`COLUMNS` measurements of one uint8 RGB tile at ``mpp`` µm/px."""
    return batch_stats(tile[None], stain, mpp)[0]


def batch_stats(tiles: np.ndarray, stain: SlideStain, mpp: float, backend: str = "auto") -> np.ndarray:
    """(B, len(COLUMNS)) float32 for a uint8 batch (B, H, W, 3).

    Pixels tile by tile (a tile's arrays stay in the CPU cache): stain concentrations by table
    lookup and one matrix product, nuclei by connected components, the stroma context from exact
    integer box counts (OpenCV, mirrored edges as ``scipy.ndimage.uniform_filter(mode="reflect")``);
    then the statistics of every nucleus of the batch at once (``np.bincount``). ``backend``: of the
    image primitives (:func:`weakstil.imageops.image_ops`; the same numbers either way)."""
    out = np.zeros((len(tiles), len(COLUMNS)), np.float32)
    if not len(tiles):
        return out
    ops = image_ops(backend)
    ut = np.ascontiguousarray(stain.unmixing().astype(np.float32).T)
    bias = stain.bias().astype(np.float32)[:, None] if stain.white is not None else None
    size = context_size(mpp)
    parts = [_tile_pixels(ops, np.ascontiguousarray(t, dtype=np.uint8), ut, size, mpp, out[i], bias)
             for i, t in enumerate(tiles)]
    blobs = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    blobs["tile"] = np.repeat(np.arange(len(tiles)), [len(p["area"]) for p in parts])
    if len(blobs["area"]):
        _blob_columns(out, blobs, tiles.shape[1] * tiles.shape[2], mpp * mpp)
    return out


def _tile_pixels(ops: ImageOps, tile: np.ndarray, ut: np.ndarray, size: int, mpp: float, row: np.ndarray,
                 bias: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Fill the pixel columns of ``row`` (0-6) for one tile; return its nuclei's per-blob sums.
    ``bias``: (2, 1) of the slide's white point (:meth:`weakstil.stain.SlideStain.bias`), if any."""
    hgt, wid = tile.shape[:2]
    n_px = hgt * wid
    od = ops.lut(tile, od_table()).reshape(-1, 3)
    he = ut @ od.T  # = concentrations(tile, stain), bit for bit, as two contiguous rows
    if bias is not None:
        he += bias
    h, e = he
    h_pos = np.maximum(h, 0)
    tissue = (h_pos + np.maximum(e, 0)) > TISSUE_MIN
    nuclear = tissue & (h > NUCLEUS_H)
    free = tissue & ~nuclear
    eos = free & (e > EOSIN_OVER_H * h_pos)

    # nuclei: 4-connected haematoxylin blobs, sums over their pixels (raster order)
    n, labels = ops.label4(nuclear.view(np.uint8).reshape(hgt, wid))
    flat = np.flatnonzero(nuclear)
    lab = labels.ravel()[flat] - 1
    ys_of, xs_of = _coordinates(hgt, wid)
    ys, xs = ys_of[flat], xs_of[flat]

    def per_blob(weights=None):
        return np.bincount(lab, weights=weights, minlength=n)

    area = per_blob().astype(np.float64)
    blobs = {"area": area, "h": per_blob(h[flat]), "y": per_blob(ys), "x": per_blob(xs), "yy": per_blob(ys * ys),
             "xx": per_blob(xs * xs), "xy": per_blob(xs * ys)}
    epithelial = _epithelial(blobs, mpp * mpp)
    blobs["dark_tumour"] = (epithelial & (blobs["h"] / np.maximum(area, 1) > DARK_H)).astype(np.float64)

    # stroma context: eosin-dominant nucleus-free tissue around the pixel (more than 5 % of the box
    # free, more than STROMA_CONTEXT of that eosin-dominant), and few large pale (epithelial) nuclei:
    # tumour cytoplasm can be as pink as collagen, its nuclei give it away
    fa, fb = _ratio(FREE_MIN)
    sa, sb = _ratio(STROMA_CONTEXT)
    limit = size * size * max(sa, sb)  # the products below stay exact in the counts' type
    free_n = _box_count(ops, free, size, hgt, wid, limit)
    eos_n = _box_count(ops, eos, size, hgt, wid, limit)
    has_free = free_n > (fa * size * size) // fb  # free_n / size² > FREE_MIN, in integers
    stroma = tissue & has_free & (eos_n * sb > sa * free_n)
    ctx = np.where(has_free[flat], eos_n[flat] / np.maximum(free_n[flat], 1), 0.0)
    if epithelial.any():
        big = 2 * size + 1
        epi = np.zeros(n_px, np.uint8)
        epi[flat[epithelial[lab]]] = 1
        ea, eb = _ratio(EPITHELIAL_MAX)
        near_epi = _box_count(ops, epi, big, hgt, wid) > (ea * big * big) // eb
        stroma &= ~near_epi
        ctx[near_epi[flat]] = 0.0
    blobs["ctx"] = per_blob(ctx)

    row[_CRUSH_INDEX] = _crush(ops, h, tissue, nuclear, mpp, hgt, wid)
    for j, mask in enumerate((stroma, tissue, eos, nuclear)):  # exact counts over n_px
        row[j] = np.count_nonzero(mask) / n_px
    t = np.count_nonzero(tissue)
    blobs["t"] = np.full(n, t, np.int64)
    if t:
        h_tissue, e_tissue = h[tissue], e[tissue]
        row[4] = float(h_tissue.mean())
        row[5] = float(e_tissue.mean())
        row[6] = _percentile90(h_tissue)
    return blobs


def _crush(ops: ImageOps, h: np.ndarray, tissue: np.ndarray, nuclear: np.ndarray, mpp: float, hgt: int,
           wid: int) -> float:
    """The share of the tile that is crush artefact: tissue whose box of about 20 µm is haematoxylin-dense
    (:data:`CRUSH_DENSE`), streamed (:data:`CRUSH_COHERENCE`) and textured (:data:`CRUSH_TEXTURE_PER_UM`,
    :data:`CRUSH_EDGES`). Measured on a grid of about :data:`CRUSH_GRID_UM` (blocks of pixels summed: a
    quarter of the work at 0.5 µm/px, and the block mean takes out pixel noise and JPEG speckle, whose
    edges of every direction hid the streaks'); the structure tensor is summed over the box from integer
    central differences of the quantised haematoxylin, so every comparison is between exact integers,
    the same on every backend."""
    f = max(1, int(round(CRUSH_GRID_UM / mpp)))
    hb, wb = hgt // f, wid // f
    if hb < 3 or wb < 3:
        return 0.0

    def blocks(a, dtype=np.int32):  # (hb, wb) sums over f x f blocks (the last rows / columns past them left out)
        a = a.reshape(hgt, wid)
        out = np.zeros((hb, wb), dtype)
        for i in range(f):  # strided adds: several times faster than a 4-d reshape's sum
            for j in range(f):
                out += a[i:hb * f:f, j:wb * f:f]
        return out

    size = max(3, int(round(2 * CONTEXT_UM / (mpp * f))) | 1)
    area = size * size * f * f
    da, db = _ratio(CRUSH_DENSE)
    dense = (blocks(tissue) * 2 >= f * f) & (ops.box_count(blocks(nuclear), size, area * max(da, db)) * db >= da * area)
    if not dense.any():  # stroma, fat, most nests and lymphocyte sheets: no tensor needed
        return 0.0
    big = 2 ** 31 - 1  # the sums stay int32 (|gx| <= 2 * CRUSH_QUANT * CRUSH_H_CLIP: 128, squared x size²)
    hq = np.rint(np.clip(blocks(h, np.float32) / (f * f), 0.0, CRUSH_H_CLIP) * CRUSH_QUANT).astype(np.int32)
    gx = np.zeros_like(hq)
    gy = np.zeros_like(hq)
    gx[:, 1:-1] = hq[:, 2:] - hq[:, :-2]
    gy[1:-1] = hq[2:] - hq[:-2]
    dense = dense.ravel()

    def box(img, limit=big):
        return ops.box_count(img, size, limit).ravel()[dense].astype(np.int64)

    gxx, gyy = gx * gx, gy * gy
    jxx, jyy, jxy = box(gxx), box(gyy), box(gx * gy)
    energy = jxx + jyy
    ka, kb = _ratio(CRUSH_COHERENCE)
    coherent = kb * kb * ((jxx - jyy) ** 2 + 4 * jxy * jxy) >= ka * ka * energy * energy
    # textured: edges over much of the box, not one edge (a marker stroke's, a fold's) crossing it; a central
    # difference spans 2 blocks: CRUSH_TEXTURE_PER_UM in quantised units per difference, squared
    step = CRUSH_TEXTURE_PER_UM * 2 * f * mpp * CRUSH_QUANT
    ta, tb = _ratio(CRUSH_EDGES)
    edges = box((gxx + gyy >= step * step).view(np.uint8), size * size * max(ta, tb))
    return int(np.count_nonzero(coherent & (edges * tb >= ta * size * size))) * f * f / (hgt * wid)


def _epithelial(blobs: dict[str, np.ndarray], px_um2: float) -> np.ndarray:
    """Per blob, whether it is a tumour nucleus that marks epithelium (see :data:`EPITHELIAL_MAX`).

    Tumour nuclei are larger than a lymphocyte's (75 µm² and up against 28-64), open (pale) or
    hyperchromatic (dark) alike: a medium or large pale blob counts, and so does a dark one shaped
    like a single nucleus (:data:`EPITHELIAL_DARK_MAX_UM2`, :data:`EPITHELIAL_DARK_ROUND`,
    :data:`EPITHELIAL_DARK_FILL`), not touching lymphocytes merged into one large dark blob. Before
    version 4 only pale ones counted: a nest of hyperchromatic tumour cells (a common grade-3
    carcinoma) read as stroma and its nuclei as stromal lymphocytes (the stroma estimate of nest
    tiles 0.91 for a truth of 0.19, a quick demo model's sTIL error 3.8 -> 11.4 points, hunt 24)."""
    area = blobs["area"]
    a = np.maximum(area, 1)
    um2 = area * px_um2
    dark = blobs["h"] / a > DARK_H
    big = um2 >= AREA_BINS_UM2[2]
    one = big & dark & (um2 <= EPITHELIAL_DARK_MAX_UM2)
    if one.any():
        roundness, det = _shape(blobs, a, min_det=1e-9)
        fill = area / (4 * np.pi * np.sqrt(det))
        one &= (roundness >= EPITHELIAL_DARK_ROUND) & (fill >= EPITHELIAL_DARK_FILL)
    return (big & ~dark) | one


def _shape(blobs: dict[str, np.ndarray], area: np.ndarray,
           min_det: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per blob, from its pixel moment sums over ``area``: its roundness (minor / major axis of its
    moment ellipse) and that ellipse's covariance determinant (clipped below at ``min_det``)."""
    my, mx = blobs["y"] / area, blobs["x"] / area
    vyy = blobs["yy"] / area - my * my + 1 / 12
    vxx = blobs["xx"] / area - mx * mx + 1 / 12
    vxy = blobs["xy"] / area - mx * my
    tr, det = vxx + vyy, vxx * vyy - vxy * vxy
    if min_det is not None:
        det = np.maximum(det, min_det)
    disc = np.sqrt(np.maximum(tr * tr / 4 - det, 0.0))
    return np.sqrt(np.maximum(tr / 2 - disc, 1e-9) / np.maximum(tr / 2 + disc, 1e-9)), det


@functools.lru_cache(maxsize=4)
def _coordinates(hgt: int, wid: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column (float64) of every flat pixel index of an ``hgt`` x ``wid`` tile."""
    ys, xs = np.divmod(np.arange(hgt * wid), wid)
    return ys.astype(np.float64), xs.astype(np.float64)


def _box_count(ops: ImageOps, mask: np.ndarray, size: int, hgt: int, wid: int,
               limit: int | None = None) -> np.ndarray:
    """(H * W,): pixels of ``mask`` in the ``size`` x ``size`` box around each pixel, edges mirrored
    (uint16 or int32: :meth:`weakstil.imageops.ImageOps.box_count`)."""
    m = mask.view(np.uint8).reshape(hgt, wid)
    return ops.box_count(m, size, limit).ravel()


def _percentile90(x: np.ndarray) -> float:
    """``np.percentile(x, 90)`` bit for bit (float32 ``x``), without partitioning all of ``x``: the two
    order statistics it interpolates are found among the values above the 86th percentile of a
    1-in-16 sample (all of ``x`` if that leaves too few)."""
    n = len(x)
    pos = (n - 1) * 0.9  # numpy's "linear" virtual index
    lo = int(pos)
    top, below = x, 0
    if n >= 2048:
        sample = x[::16]
        j = int(0.86 * (len(sample) - 1))
        above = x[x >= np.partition(sample, j)[j]]
        if n - len(above) <= lo:
            top, below = above, n - len(above)
    k = lo - below
    part = np.partition(top, k)
    a = part[k]
    if lo + 1 >= n:
        return float(a)
    b = part[k + 1:].min()
    g = pos - lo
    # numpy's _lerp in float32 (the weight rounded to float32), from the nearer end
    return float(a + (b - a) * np.float32(g) if g < 0.5 else b - (b - a) * np.float32(1 - g))


def _blob_columns(out: np.ndarray, blobs: dict[str, np.ndarray], n_px: int, px_um2: float) -> None:
    """The nuclear-morphometry columns of ``out`` (from column 7) from the per-blob sums of every tile."""
    b = len(out)
    area, tile, t = blobs["area"], blobs["tile"], blobs["t"]
    dark = blobs["h"] / area > DARK_H
    roundness, _ = _shape(blobs, area)
    in_str = blobs["ctx"] / area > STROMA_CONTEXT
    bin_idx = np.digitize(area * px_um2, AREA_BINS_UM2[1:-1])
    frac = area / n_px

    def per_tile(weights=None, sel=None):
        if sel is None:
            return np.bincount(tile, weights=weights, minlength=b)
        return np.bincount(tile[sel], weights=None if weights is None else weights[sel], minlength=b)

    k = 7
    category = bin_idx * 4 + (~dark) * 2 + (~in_str)  # area bin, dark/pale, in stroma/in a nest
    n_cat = len(AREA_NAMES) * 4
    out[:, k:k + n_cat] = np.bincount(tile * n_cat + category, weights=frac, minlength=b * n_cat).reshape(b, n_cat)
    k += n_cat
    lymph_like = (bin_idx == 1) & dark & (roundness > ROUND) & in_str
    out[:, k] = per_tile(frac, lymph_like)
    out[:, k + 1] = per_tile(frac, (roundness < 0.45) & in_str & (bin_idx >= 1))
    n = per_tile()
    tiss = np.zeros(b)
    tiss[tile] = t
    has = n > 0
    out[:, k + 2] = np.where(has & (tiss > 0), n / np.maximum(tiss * px_um2 / 100.0, 1e-6), 0.0)
    out[has, k + 3] = per_tile(roundness * area)[has] / per_tile(area)[has]
    out[:, k + 4] = per_tile(sel=lymph_like) / (n_px * px_um2 / 1e4)  # per 100x100 µm
    out[:, k + 5] = per_tile(frac, (blobs["dark_tumour"] > 0) & ~in_str)
