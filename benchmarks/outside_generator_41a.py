"""A third outside tester's slide generator (hunt 41a): breast H&E at 40x with exact sTIL% and beds.

    .venv/bin/python benchmarks/outside_generator_41a.py --out C --slides 36 --seed 41

Written without reading ``weakstil.synth`` or the 40c / 40i generators. Each slide is a small
section (1.4 x 1.4 mm by default) rendered at 0.25 µm/px from a map of regions at 1 µm/px, then
written by ``tifffile`` as a tiled, JPEG-compressed pyramidal TIFF (one page per level, the µm/px
in the resolution tags); every fourth slide is the 20x variant (0.5 µm/px, the render halved).
Morphologies, one main pattern per slide in turn: invasive lobular carcinoma (small discohesive
tumour cells in single files through the stroma), solid nests with comedo necrosis, mucinous pools
with floating clusters, and nests with retraction clefts; on top of any: a fat-rich breast (1/3),
normal lobules outside the bed with their own lymphocytes, and a tertiary lymphoid structure
(lymphocyte aggregate with a pale germinal centre) 60-300 µm outside the bed. Stains in turn:
a strong dark haematoxylin, a purple-pink one, a yellowed old slide.

Outputs in ``--out``: ``slides/<id>.tiff``, ``annotations/<id>.geojson`` (QuPath, class ``Tumor``,
level-0 px of that slide), ``cohort.csv`` (slide_id, path, stil), ``meta.csv`` (look, pattern,
mpp, bed area), ``beds_exact/<id>.h5`` (``tumorbed_mask`` uint8 at ``mpp`` 8 µm/px from the
level-0 corner, as ``weakstil tumorbed apply`` writes its mask; attribute ``slide_mpp``).
Truth (TILs WG): lymphocyte area / stromal area inside the bed, at 0.25 µm/px pixels; stroma is
the bed's fibrous tissue (not tumour cells, nests, necrosis, mucin, clefts, fat or lobules);
lymphocytes inside nests and outside the bed are rendered but not counted. Targets are drawn from
the TCGA-BRCA labels (../shared/data/labels) with the tail over 40 % filled in.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

FULL = 0.25          # µm/px of the render
COARSE = 1.0         # µm/px of the region map
F = int(COARSE / FULL)
ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT.parent / "shared" / "data" / "labels" / "tcga_bc_tils.csv"
# region classes of the map
GLASS, STROMA, FAT, MUCIN, NECROSIS, LOBULE, NEST, CLEFT, LUMEN = range(9)
PATTERNS = ("lobular", "comedo", "mucinous", "clefts")
LOOKS = {  # optical density per unit stain (R, G, B), and a yellow absorber (old slide)
    "dark": dict(h=(0.62, 0.74, 0.26), hs=1.45, e=(0.08, 0.95, 0.20), es=0.85, y=0.0, glass=(0.015, 0.02, 0.03)),
    "purple": dict(h=(0.50, 0.80, 0.33), hs=1.05, e=(0.18, 0.86, 0.42), es=0.95, y=0.0, glass=(0.01, 0.012, 0.012)),
    "yellow": dict(h=(0.52, 0.64, 0.56), hs=0.85, e=(0.06, 0.62, 0.72), es=0.75, y=0.32, glass=(0.01, 0.03, 0.16)),
}
YELLOW = np.array([0.02, 0.10, 0.80])


def smooth_noise(rng, shape, sigma):
    """Gaussian-filtered white noise scaled to unit standard deviation (drawn coarser for a wide sigma)."""
    import cv2
    k = max(1, int(sigma // 4))
    small = (-(-shape[0] // k), -(-shape[1] // k))
    n = cv2.GaussianBlur(rng.standard_normal(small).astype(np.float32), (0, 0), sigma / k)
    if k > 1:
        n = cv2.resize(n, (small[1] * k, small[0] * k), interpolation=cv2.INTER_LINEAR)[:shape[0], :shape[1]]
    return n / (n.std() + 1e-9)


def radial_shape(rng, n, cy, cx, r, wobble, k=5):
    """A smooth closed polygon (x, y) around (cx, cy): a radius with a few random harmonics."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = np.ones_like(t)
    for h in range(2, 2 + k):
        rad += wobble / h * rng.standard_normal() * np.cos(h * t + rng.uniform(0, 2 * np.pi))
    rad = r * np.clip(rad, 0.45, 1.6)
    return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], 1)


def fill_polygon(poly_xy, shape, scale=1.0):
    import cv2
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(poly_xy * scale * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(bool)


def blob_mask(rng, shape, cy, cx, ry, rx, wobble=0.25):
    """An irregular ellipse on the coarse map."""
    y0, y1 = int(max(cy - 2 * ry, 0)), int(min(cy + 2 * ry + 1, shape[0]))
    x0, x1 = int(max(cx - 2 * rx, 0)), int(min(cx + 2 * rx + 1, shape[1]))
    m = np.zeros(shape, bool)
    if y1 <= y0 or x1 <= x0:
        return m
    yy, xx = np.mgrid[y0:y1, x0:x1]
    a = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u, v = dx * np.cos(a) + dy * np.sin(a), -dx * np.sin(a) + dy * np.cos(a)
    ang = np.arctan2(v, u)
    rr = 1 + wobble * (np.sin(3 * ang + rng.uniform(0, 6)) * rng.uniform(0, 1) + np.cos(5 * ang + rng.uniform(0, 6)) * rng.uniform(0, .6))
    m[y0:y1, x0:x1] = (u / rx) ** 2 + (v / ry) ** 2 <= rr ** 2
    return m


class Canvas:
    """Haematoxylin / eosin concentrations at 0.25 µm/px, and the lymphocyte pixels."""

    def __init__(self, n):
        self.h = np.zeros((n, n), np.float32)
        self.e = np.zeros((n, n), np.float32)
        self.lymph = np.zeros((n, n), bool)
        self.n = n
        self._discs = {}

    def disc(self, r, ry=None, angle=0.0):
        key = (round(r, 1), None if ry is None else round(ry, 1), round(angle, 1))
        if key not in self._discs:
            R = int(math.ceil(max(r, ry or 0))) + 1
            yy, xx = np.mgrid[-R:R + 1, -R:R + 1].astype(np.float32)
            u, v = xx * math.cos(angle) + yy * math.sin(angle), -xx * math.sin(angle) + yy * math.cos(angle)
            ry_ = ry or r
            d = np.sqrt((u / r) ** 2 + (v / ry_) ** 2)
            self._discs[key] = (R, d <= 1.0, np.clip(1.2 - d * 0.35, 0.6, 1.2).astype(np.float32))
        return self._discs[key]

    def stamp(self, cy, cx, r, hval, eval_=None, ry=None, angle=0.0, lymph=False, texture=None, rng=None):
        R, m, shade = self.disc(r, ry, angle)
        y0, x0 = int(cy) - R, int(cx) - R
        if y0 < 0 or x0 < 0 or y0 + 2 * R + 1 > self.n or x0 + 2 * R + 1 > self.n:
            return
        sl = (slice(y0, y0 + 2 * R + 1), slice(x0, x0 + 2 * R + 1))
        val = hval * shade
        if texture is not None:  # vesicular chromatin: speckles and a rim
            val = val * (1 - texture + 2 * texture * rng.random(m.shape, dtype=np.float32))
        self.h[sl][m] = val[m]
        if eval_ is not None:
            self.e[sl][m] = eval_
        if lymph:
            self.lymph[sl] |= m


def sample_targets(rng, n):
    """sTIL% targets like TCGA-BRCA's (1-90 %), with the tail over 40 % filled in."""
    if LABELS.exists():
        with open(LABELS) as fh:
            tcga = np.array([float(r["tils_score"]) for r in csv.DictReader(fh)])
    else:
        tcga = np.exp(rng.normal(2.5, 1.0, 342)).clip(1, 90)
    t = rng.choice(tcga, n)
    k = max(2, n // 5)
    t[rng.choice(n, k, replace=False)] = rng.uniform(40, 90, k)
    return np.clip(t + rng.normal(0, 1.0, n), 1, 90)


def make_slide(seed, target, pattern, look, size_mm=1.4, fat_rich=False):
    """Render one slide. Returns rgb (0.25 µm/px), bed polygon (µm), truth sTIL%, info."""
    rng = np.random.default_rng(seed)
    nc = int(round(size_mm * 1000 / COARSE))
    shape = (nc, nc)
    yy, xx = np.mgrid[0:nc, 0:nc]
    # tissue: a wobbly ellipse cut by low-frequency noise at its rim
    tissue_poly = radial_shape(rng, 180, nc / 2, nc / 2, nc * 0.44, 0.18)
    tissue = fill_polygon(tissue_poly, shape) & (smooth_noise(rng, shape, nc / 12) > -1.8)
    dist_in = ndi.distance_transform_edt(tissue)
    # the bed: a smooth polygon well inside the tissue
    c = rng.uniform(0.42, 0.58, 2) * nc
    bed_poly = radial_shape(rng, 120, c[0], c[1], nc * rng.uniform(0.2, 0.27), 0.22)
    bed = fill_polygon(bed_poly, shape) & (dist_in > 30)
    cls = np.where(tissue, STROMA, GLASS).astype(np.uint8)
    if fat_rich or rng.random() < 0.5:  # fat lobules: Voronoi adipocytes in smooth patches
        fat = (smooth_noise(rng, shape, 60) > (0.0 if fat_rich else 1.0)) & tissue & ~ndi.binary_dilation(bed, iterations=15)
        if fat_rich:
            fat |= (smooth_noise(rng, shape, 35) > 1.3) & bed
        cls[fat] = FAT
    # lobules outside the bed: clusters of acini with intralobular stroma
    lob_centres = []
    dbed = ndi.distance_transform_edt(~bed)
    for _ in range(rng.integers(1, 4)):
        for _try in range(40):
            p = rng.uniform(0.1, 0.9, 2) * nc
            if tissue[int(p[0]), int(p[1])] and dbed[int(p[0]), int(p[1])] > 200:
                lob_centres.append(p)
                break
    for p in lob_centres:
        r = rng.uniform(70, 120)
        lob = blob_mask(rng, shape, p[0], p[1], r, r * rng.uniform(0.7, 1.2)) & tissue & ~bed
        for _ in range(int(r * r / 500)):
            q = p + rng.normal(0, r / 2.2, 2)
            a = blob_mask(rng, shape, q[0], q[1], rng.uniform(10, 16), rng.uniform(10, 16), 0.1) & lob
            cls[a] = LOBULE
            cls[ndi.binary_erosion(a, iterations=5)] = LUMEN
    # tumour in the bed
    share = rng.uniform(0.25, 0.45)
    area_bed = bed.sum()
    nests = np.zeros(shape, bool)
    if pattern in ("comedo", "clefts", "mucinous"):
        tries = 0
        while nests.sum() < share * area_bed and tries < 400:
            tries += 1
            i = rng.integers(area_bed)
            py, px = np.argwhere(bed)[i]
            big = pattern == "comedo" and rng.random() < 0.6
            ry = rng.uniform(35, 80) if big else rng.uniform(12, 40)
            b = blob_mask(rng, shape, py, px, ry, ry * rng.uniform(0.5, 1.3)) & bed
            if pattern == "mucinous":  # a mucin pool with a floating cluster or two
                cls[b] = MUCIN
                for _ in range(rng.integers(1, 3)):
                    q = np.array([py, px]) + rng.normal(0, ry / 3, 2)
                    cl = blob_mask(rng, shape, q[0], q[1], ry * 0.25, ry * 0.3) & b
                    cls[cl] = NEST
                nests |= b
                continue
            nests |= b
            if pattern == "clefts":  # a white cleft between the nest and its stroma
                ring = ndi.binary_dilation(b, iterations=int(rng.integers(2, 6))) & ~b & bed
                cls[ring & (cls == STROMA)] = CLEFT
            cls[b] = NEST
            if big:
                core = ndi.binary_erosion(b, iterations=int(ry * 0.45))
                cls[core] = NECROSIS
    stroma_c = (cls == STROMA) & bed
    dist_nest = ndi.distance_transform_edt(~nests) if nests.any() else np.full(shape, 50.0)
    # ---- full-resolution render
    n = nc * F
    cv = Canvas(n)
    clsf = np.repeat(np.repeat(cls, F, 0), F, 1)
    fibre = smooth_noise(rng, (nc, nc * 4), 1.5)[:, ::4]  # streaky collagen at 1 µm, stretched along x
    fibre = ndi.rotate(fibre, rng.uniform(0, 180), reshape=False, mode="reflect")
    base_e = np.zeros(shape, np.float32)
    base_h = np.zeros(shape, np.float32)
    base_e[cls == STROMA] = 0.55
    base_h[cls == STROMA] = 0.04
    base_e[cls == NEST] = 0.34
    base_h[cls == NEST] = 0.10
    base_e[cls == NECROSIS] = 0.48
    base_h[cls == NECROSIS] = 0.12
    base_e[cls == MUCIN] = 0.07
    base_h[cls == MUCIN] = 0.13
    base_e[cls == LOBULE] = 0.30
    base_h[cls == LOBULE] = 0.08
    base_e += np.where(cls == STROMA, 0.22 * fibre, 0.05 * fibre) * (cls != GLASS)
    base_h += np.where(cls == MUCIN, 0.05 * smooth_noise(rng, shape, 3), 0) + np.where(cls == NECROSIS, 0.1 * smooth_noise(rng, shape, 1), 0)
    cv.e[:] = np.repeat(np.repeat(np.clip(base_e, 0, None), F, 0), F, 1)
    cv.h[:] = np.repeat(np.repeat(np.clip(base_h, 0, None), F, 0), F, 1)
    if (cls == FAT).any():  # adipocyte membranes: edges of a Voronoi tessellation
        from scipy.spatial import cKDTree
        seeds = rng.uniform(0, nc, (int(nc * nc / 60 ** 2), 2))
        fat = cls == FAT
        idx = np.argwhere(fat)
        lab = np.zeros(shape, np.int32)
        lab[idx[:, 0], idx[:, 1]] = cKDTree(seeds).query(idx)[1] + 1
        edge = fat & ((lab != np.roll(lab, 1, 0)) | (lab != np.roll(lab, 1, 1)))
        edgef = np.repeat(np.repeat(edge, F, 0), F, 1)
        cv.e[edgef] = 0.55
        cv.h[edgef] = 0.05
    bedf = np.repeat(np.repeat(bed, F, 0), F, 1)  # the bed: the polygon at 1 µm, within the tissue
    stromaf = np.repeat(np.repeat(stroma_c, F, 0), F, 1)
    # fibroblasts and endothelium in all stroma
    st_idx = np.argwhere(cls == STROMA)
    for i in rng.choice(len(st_idx), min(len(st_idx), int(len(st_idx) / 450)), replace=False):
        y, x = (st_idx[i] + rng.random(2)) * F
        cv.stamp(y, x, rng.uniform(5, 8) * F / 4, rng.uniform(0.55, 0.8), ry=rng.uniform(1.0, 1.6) * F / 4, angle=rng.uniform(0, 3.1))
    # tumour cells
    def tumour_cell(y, x, small):
        rc = (rng.uniform(4.5, 6) if small else rng.uniform(6, 8.5)) * F
        cv.stamp(y, x, rc, 0.07, 0.30 + 0.05 * rng.random())
        if small and rng.random() < 0.15:  # an intracytoplasmic vacuole
            cv.stamp(y + rc * 0.3, x, rc * 0.4, 0.0, 0.05)
        rn = (rng.uniform(2.8, 3.6) if small else rng.uniform(4, 6.5)) * F
        cv.stamp(y, x, rn, rng.uniform(0.55, 0.8) if small else rng.uniform(0.45, 0.75), ry=rn * rng.uniform(0.75, 1.0),
                 angle=rng.uniform(0, 3.1), texture=0.2 if small else 0.45, rng=rng)
        if not small and rng.random() < 0.6:
            cv.stamp(y + rng.normal(0, 2), x + rng.normal(0, 2), 1.0 * F, 1.1)
    tum_mask = np.zeros((n, n), bool)
    if pattern == "lobular":  # single files: random walks through the bed's stroma
        st_bed = np.argwhere(stroma_c)
        n_cells, goal = 0, int(share * 0.55 * area_bed / 90)
        while n_cells < goal:
            y, x = st_bed[rng.integers(len(st_bed))].astype(float)
            ang = rng.uniform(0, 2 * np.pi)
            for _ in range(rng.integers(4, 18)):
                if not (0 <= y < nc and 0 <= x < nc) or not bed[int(y), int(x)]:
                    break
                tumour_cell(y * F, x * F, True)
                R = int(5.5 * F)
                tum_mask[int(y * F) - R:int(y * F) + R, int(x * F) - R:int(x * F) + R] = True
                n_cells += 1
                ang += rng.normal(0, 0.25)
                step = rng.uniform(10, 14)
                y, x = y + step * math.sin(ang), x + step * math.cos(ang)
    nest_idx = np.argwhere(cls == NEST)
    for i in rng.choice(len(nest_idx), int(len(nest_idx) / 150), replace=False) if len(nest_idx) else []:
        y, x = (nest_idx[i] + rng.random(2)) * F
        tumour_cell(y, x, False)
    tum_mask |= clsf == NEST
    # necrotic debris
    for i in np.argwhere(cls == NECROSIS)[::60]:
        y, x = (i + rng.random(2)) * F
        cv.stamp(y, x, rng.uniform(0.6, 2.0) * F, rng.uniform(0.7, 1.1))
    # lobules: two-layer epithelium round each lumen, lymphocytes in the lobule
    lob_edge = (cls == LOBULE)
    for i in np.argwhere(lob_edge)[::30]:
        y, x = (i + rng.random(2)) * F
        cv.stamp(y, x, 2.6 * F, rng.uniform(0.6, 0.85), ry=1.8 * F, angle=rng.uniform(0, 3.1))
    for p in lob_centres:
        for _ in range(rng.integers(40, 160)):
            q = p + rng.normal(0, 45, 2)
            if 0 <= q[0] < nc and 0 <= q[1] < nc and tissue[int(q[0]), int(q[1])] and not bed[int(q[0]), int(q[1])]:
                cv.stamp(q[0] * F, q[1] * F, rng.uniform(3.0, 3.7) * F, rng.uniform(1.0, 1.3))
    # a tertiary lymphoid structure 60-300 µm outside the bed
    tls = None
    r_tls = rng.uniform(80, 130)
    ring = (dbed > 60 + r_tls) & (dbed < 300 + r_tls) & (dist_in > r_tls + 10) & (cls == STROMA)
    if rng.random() < 0.85 and ring.any():
        cy, cx = np.argwhere(ring)[rng.integers(ring.sum())]
        tls = (float(cy), float(cx), r_tls, float(dbed[cy, cx] - r_tls))
        for _ in range(int(2.2 * r_tls * r_tls / 12)):
            rr, a = r_tls * math.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            y, x = (cy + rr * math.sin(a)) * F, (cx + rr * math.cos(a)) * F
            if rr < 0.45 * r_tls:  # germinal centre: larger, paler nuclei
                cv.stamp(y, x, rng.uniform(4, 5.5) * F, rng.uniform(0.35, 0.55), texture=0.4, rng=rng)
            else:
                cv.stamp(y, x, rng.uniform(3.0, 3.6) * F, rng.uniform(1.0, 1.3))
    # scattered lymphocytes outside the bed, a few inside nests (not counted)
    out = np.argwhere((cls == STROMA) & ~bed)
    for i in rng.choice(len(out), min(len(out), int(len(out) / 2500)), replace=False):
        y, x = (out[i] + rng.random(2)) * F
        cv.stamp(y, x, rng.uniform(3.0, 3.6) * F, rng.uniform(1.0, 1.3))
    for i in rng.choice(len(nest_idx), int(len(nest_idx) / 3000), replace=False) if len(nest_idx) else []:
        y, x = (nest_idx[i] + rng.random(2)) * F
        cv.stamp(y, x, rng.uniform(3.0, 3.6) * F, rng.uniform(1.0, 1.3))
    # stromal TILs in the bed up to the target: clustered, denser near tumour
    stroma_full = stromaf & ~tum_mask
    denom = stroma_full.sum()
    w = np.exp(1.2 * smooth_noise(rng, shape, 25)) * np.exp(-dist_nest / 80.0 + 0.0)
    w = w ** max(0.2, 1 - target / 70.0)
    cand = np.argwhere(stroma_c)
    p = w[stroma_c].astype(np.float64)
    p /= p.sum()
    area = math.pi * (3.3 * F) ** 2
    for _ in range(60):
        cov = (cv.lymph & stroma_full).sum() / denom * 100
        if cov >= target - 0.25:
            break
        k = max(20, int((target - cov) / 100 * denom / area * (1.0 + cov / 60)))
        for i in rng.choice(len(cand), k, p=p):
            y, x = (cand[i] + rng.random(2)) * F
            cv.stamp(y, x, rng.uniform(3.0, 3.7) * F, rng.uniform(0.95, 1.3), 0.1, lymph=True)
    truth = float((cv.lymph & stroma_full).sum() / denom * 100)
    # clefts and lumens stay empty; grain; mild optical blur
    empty = (clsf == CLEFT) | (clsf == LUMEN) | (clsf == GLASS)
    cv.h[empty & ~cv.lymph] *= 0.05
    cv.e[empty & ~cv.lymph] *= 0.05
    tis = clsf != GLASS
    grain = rng.standard_normal((n, n), dtype=np.float32)
    cv.h += grain * np.float32(0.03) * tis
    cv.e += np.roll(grain, 7, 1) * np.float32(0.04) * tis
    import cv2
    cv.h = cv2.GaussianBlur(cv.h, (0, 0), 0.8)
    cv.e = cv2.GaussianBlur(cv.e, (0, 0), 0.8)
    rgb = to_rgb(cv.h, cv.e, tis, LOOKS[look], rng)
    info = dict(bed_mm2=float(bed.sum() * COARSE ** 2 / 1e6), stroma_mm2=float(denom * FULL ** 2 / 1e6),
                tls=None if tls is None else dict(y_um=tls[0] * COARSE, x_um=tls[1] * COARSE, r_um=tls[2], gap_um=tls[3]),
                fat_share=float((cls == FAT).sum() / max(tissue.sum(), 1)))
    return rgb, bed_poly * COARSE, bedf, truth, info


def to_rgb(h, e, tis, look, rng):
    hv = np.array(look["h"]) / np.linalg.norm(look["h"]) * look["hs"]
    ev = np.array(look["e"]) / np.linalg.norm(look["e"]) * look["es"]
    import cv2
    rgb = np.empty(h.shape + (3,), np.uint8)
    np.clip(h, 0, None, out=h)
    np.clip(e, 0, None, out=e)
    for ch in range(3):
        od = h * np.float32(hv[ch]) + e * np.float32(ev[ch])
        od += np.float32(look["glass"][ch]) + np.float32(look["y"] * YELLOW[ch]) * tis
        rgb[..., ch] = cv2.exp(-od) * np.float32(245)
    return rgb


def write_tiff(path, rgb, mpp, quality):
    import tifffile
    res = 1e4 / mpp
    with tifffile.TiffWriter(path) as tw:
        level = rgb
        first = True
        while True:
            tw.write(level, tile=(256, 256), photometric="rgb", compression="jpeg", compressionargs={"level": quality},
                     resolution=(res, res), resolutionunit="CENTIMETER", subfiletype=0 if first else 1,
                     description=f"outside generator 41a; mpp={mpp}" if first else None, metadata=None)
            first = False
            res /= 2
            if min(level.shape[:2]) < 1024:
                break
            h2, w2 = level.shape[0] // 2 * 2, level.shape[1] // 2 * 2
            level = level[:h2, :w2].reshape(h2 // 2, 2, w2 // 2, 2, 3).mean((1, 3)).astype(np.uint8)


def write_geojson(path, poly_um, mpp):
    ring = [[float(x / mpp), float(y / mpp)] for x, y in poly_um]
    ring.append(ring[0])
    feat = {"type": "Feature", "id": "bed", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}}
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feat]}))


def write_bed_h5(path, bedf, slide_mpp):
    """The exact bed as ``tumorbed_mask`` at 8 µm/px from the level-0 corner (area share >= 0.5)."""
    import h5py
    b = int(8 / FULL)
    n = bedf.shape[0] // b * b
    m = bedf[:n, :n].reshape(n // b, b, n // b, b).mean((1, 3)) >= 0.5
    with h5py.File(path, "w") as f:
        d = f.create_dataset("tumorbed_mask", data=m.astype(np.uint8))
        d.attrs["mpp"] = 8.0
        f.attrs["slide_mpp"] = slide_mpp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--slides", type=int, default=36)
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--size-mm", type=float, default=1.4)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    targets = sample_targets(rng, a.slides)
    for sub in ("slides", "annotations", "beds_exact"):
        (a.out / sub).mkdir(parents=True, exist_ok=True)
    rows, meta = [], []
    t0 = time.time()
    for i in range(a.slides):
        sid = f"og41a_{i:03d}"
        pattern, look = PATTERNS[i % 4], list(LOOKS)[(i // 4) % 3]
        fat_rich = i % 3 == 2
        mpp = 0.5 if i % 4 == 3 else FULL
        rgb, poly_um, bedf, truth, info = make_slide(a.seed * 1000 + i, float(targets[i]), pattern, look, a.size_mm, fat_rich)
        if mpp != FULL:
            h2 = rgb.shape[0] // 2 * 2
            rgb = rgb[:h2, :h2].reshape(h2 // 2, 2, h2 // 2, 2, 3).mean((1, 3)).astype(np.uint8)
        write_tiff(a.out / "slides" / f"{sid}.tiff", rgb, mpp, int(rng.integers(75, 93)))
        write_geojson(a.out / "annotations" / f"{sid}.geojson", poly_um, mpp)
        write_bed_h5(a.out / "beds_exact" / f"{sid}.h5", bedf, mpp)
        rows.append((sid, f"slides/{sid}.tiff", f"{truth:.3f}"))
        meta.append(dict(slide_id=sid, stil=round(truth, 3), target=round(float(targets[i]), 2), pattern=pattern, look=look,
                         fat_rich=int(fat_rich), mpp=mpp, bed_mm2=round(info["bed_mm2"], 4), stroma_mm2=round(info["stroma_mm2"], 4),
                         tls_gap_um=None if info["tls"] is None else round(info["tls"]["gap_um"], 1),
                         tls=json.dumps(info["tls"]), fat_share=round(info["fat_share"], 3)))
        print(f"{sid} {pattern:9s} {look:6s} mpp {mpp} target {targets[i]:5.1f} truth {truth:5.1f}  {time.time() - t0:.0f} s", flush=True)
    with open(a.out / "cohort.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(("slide_id", "path", "stil"))
        w.writerows(rows)
    with open(a.out / "meta.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(meta[0]))
        w.writeheader()
        w.writerows(meta)


if __name__ == "__main__":
    main()
