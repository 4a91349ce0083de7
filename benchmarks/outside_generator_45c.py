"""A sixth outside generator (hunt 45c): desmoplastic stroma, plasma cells, neutrophils, necrosis, mucin, scan artefacts.

Written without ``weakstil.synth`` or the other outside generators. Each slide is 2.0-2.3 mm of breast tissue with one
invasive bed of solid sheets and trabeculae. What is new against the earlier outside cohorts:

- **cellular, desmoplastic stroma**: fibroblasts with elongated dark nuclei (10-18 um x 2-3 um) along a flow field,
  2-14 % of the bed stroma by area, drawn independently of the sTIL target (they are stroma, not TILs);
- **plasma cells** (eccentric clock-face nucleus, amphophilic cytoplasm) among the lymphocytes, 5-40 % of the TIL
  area (they count as TILs, TILs WG) and scattered **neutrophils** (lobed nuclei, pale cytoplasm; not TILs),
  denser at necrosis;
- **geographic necrosis** inside the bed (45 % of slides) with karyorrhectic debris and a viable tumour rim, and
  **mucin pools** with floating tumour clusters (30 %); both are excluded from the stroma;
- **scan artefacts**: an out-of-focus band (50 %) and a tissue fold (35 %), either may cross the bed;
- two new looks: ``hama`` (bluish, high contrast, 0.23 um/px like a Hamamatsu 40x scan, JPEG 60-75) and ``warm``
  (eosin-heavy, weak haematoxylin, 0.5 um/px, strong JPEG 50-65); both are tiled pyramidal JPEG TIFFs with the
  resolution in the TIFF tags (cm). 0.23 um/px slides are rendered at 0.5 um/px and resized (a file-path test, not
  40x optics).

Truth (TILs WG): sTIL% = area of lymphocytes and plasma cells (whole cells) / stromal area inside the bed polygon,
where stroma is bed tissue that is not tumour epithelium, necrosis or mucin (fibroblasts, neutrophils and TILs lie on
stroma). Counted on the 0.5 um label maps with the bed rasterised from the polygon written to ``beds_exact``.

    python benchmarks/outside_generator_45c.py --out DIR --slides 30 --seed 45 [--jobs 2]

Outputs: ``slides/<id>.tiff``, ``beds_exact/<id>.geojson`` (QuPath ``Tumor`` polygon, level-0 px),
``masks/<id>.npz`` (4 um maps: tissue, bed, tumour, necrosis, mucin, fat, fold, blur; ``coarse_um``),
``truth.csv`` and ``cohort.csv`` (slide_id, path, stil).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import tifffile
from scipy import ndimage as ndi

RENDER_UM = 0.5  # label maps and rendering
COARSE_UM = 4.0  # masks written to masks/*.npz
LABELS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "labels" / "tcga_bc_tils.csv"
BG, STROMA, FAT, TUMOUR, NECROSIS, MUCIN = 0, 1, 2, 3, 4, 5
LOOKS = {
    # stain OD vectors (R, G, B), scale of H and E, contrast, background RGB, mpp, JPEG quality range
    "hama": dict(h=(0.74, 0.62, 0.26), e=(0.10, 0.95, 0.30), hs=1.05, es=0.9, contrast=1.3,
                 bg=(236, 242, 252), mpp=0.23, q=(60, 75)),
    "warm": dict(h=(0.58, 0.72, 0.38), e=(0.04, 0.80, 0.60), hs=0.72, es=1.25, contrast=0.95,
                 bg=(250, 244, 238), mpp=0.5, q=(50, 65)),
}


def px(um: float) -> float:
    return um / RENDER_UM


def smooth_noise(rng, shape, scale_px, stretch=(1.0, 1.0)):
    """Zero-mean unit-variance noise with features about scale_px wide (stretch: per-axis factors)."""
    h, w = shape
    sh = (max(2, int(h / (scale_px * stretch[0])) + 2), max(2, int(w / (scale_px * stretch[1])) + 2))
    z = rng.standard_normal(sh).astype(np.float32)
    z = cv2.GaussianBlur(z, (0, 0), 0.5)
    z = (z - z.mean()) / (z.std() + 1e-6)
    return cv2.resize(z, (w, h), interpolation=cv2.INTER_CUBIC)


def polar_blob(rng, cx, cy, r0, n=160, rough=0.18):
    """A smooth closed polygon (int px) around (cx, cy) of mean radius r0."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 7):
        r += rng.uniform(0, rough / k ** 0.6) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    return np.stack([cx + r0 * r * np.cos(t), cy + r0 * r * np.sin(t)], 1).round().astype(np.int32)


def fill(shape, poly):
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [poly], 1)
    return m.astype(bool)


def dist_in(mask):
    """Distance (px) of each mask pixel to the nearest pixel outside it (0 outside)."""
    return cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)


def disk(shape, cx, cy, r):
    m = np.zeros(shape, np.uint8)
    cv2.circle(m, (int(cx), int(cy)), int(r), 1, -1)
    return m.astype(bool)


def sample_in(rng, mask, n, weight=None):
    """n pixel centres (x, y) drawn from mask, optionally weighted."""
    idx = np.flatnonzero(mask)
    if idx.size == 0 or n <= 0:
        return np.zeros((0, 2), int)
    if weight is None:
        pick = idx[rng.integers(0, idx.size, n)]
    else:
        c = np.cumsum(weight.ravel()[idx].astype(np.float64))
        pick = idx[np.minimum(np.searchsorted(c, rng.uniform(0, c[-1], n)), idx.size - 1)]
    y, x = np.divmod(pick, mask.shape[1])
    return np.stack([x, y], 1)


class Canvas:
    """Class map and haematoxylin / eosin concentration maps at RENDER_UM."""

    def __init__(self, h, w):
        self.cls = np.zeros((h, w), np.uint8)
        self.H = np.zeros((h, w), np.float32)
        self.E = np.zeros((h, w), np.float32)
        self.shape = (h, w)

    def paint(self, mask, h, e):
        self.H[mask], self.E[mask] = h if np.isscalar(h) else h[mask], e if np.isscalar(e) else e[mask]


def draw_fibroblasts(rng, cv, stroma, n, angle):
    buf = np.zeros(cv.shape, np.uint8)
    for x, y in sample_in(rng, stroma, n):
        a = float(np.degrees(angle[y, x]) + rng.normal(0, 12))
        ax = (int(round(px(rng.uniform(5, 9)))), int(round(px(rng.uniform(1.0, 1.6)))))
        cv2.ellipse(buf, (int(x), int(y)), ax, a, 0, 360, 1, -1)
    m = (buf > 0) & stroma
    cv.paint(m, rng.uniform(0.8, 1.0), 0.25)
    return m


def draw_neutrophils(rng, cv, stroma, centres):
    cyto, nuc = np.zeros(cv.shape, np.uint8), np.zeros(cv.shape, np.uint8)
    for x, y in centres:
        cv2.circle(cyto, (int(x), int(y)), int(px(rng.uniform(5, 6))), 1, -1)
        for k in range(rng.integers(3, 5)):
            t = rng.uniform(0, 2 * np.pi)
            d = px(rng.uniform(1.3, 2.6))
            cv2.circle(nuc, (int(x + d * np.cos(t)), int(y + d * np.sin(t))), int(px(rng.uniform(1.2, 1.7))), 1, -1)
    cm, nm = (cyto > 0) & stroma, (nuc > 0) & stroma
    cv.paint(cm, 0.12, 0.38)
    cv.paint(nm, 1.05, 0.15)
    return cm | nm


def draw_tils(rng, cv, cand, weight, target_px, plasma_share):
    """Lymphocytes and plasma cells on cand pixels until their union covers target_px of cand."""
    lym, pcy, pnu = (np.zeros(cv.shape, np.uint8) for _ in range(3))
    w = weight.astype(np.float32).copy()
    covered, n_l, n_p = 0, 0, 0
    for _ in range(80):
        deficit = target_px - covered
        if deficit <= 60:
            break
        n = int(deficit / 150 * 0.8) + 10
        for x, y in sample_in(rng, cand, n, w):
            if rng.random() < plasma_share:
                ang = rng.uniform(0, 180)
                a, b = px(rng.uniform(4.5, 5.5)), px(rng.uniform(3.4, 4.0))
                cv2.ellipse(pcy, (int(x), int(y)), (int(a), int(b)), ang, 0, 360, 1, -1)
                off = a - px(2.8)
                nx, ny = x + off * np.cos(np.radians(ang)), y + off * np.sin(np.radians(ang))
                cv2.circle(pnu, (int(nx), int(ny)), int(px(rng.uniform(2.4, 2.9))), 1, -1)
                n_p += 1
            else:
                cv2.circle(lym, (int(x), int(y)), int(round(px(rng.uniform(3.0, 3.8)))), 1, -1)
                n_l += 1
        til = ((lym > 0) | (pcy > 0) | (pnu > 0)) & cand
        covered = int(til.sum())
        w[til] *= 0.05
    pc = (pcy > 0) & cand & ~(lym > 0)
    cv.paint(pc, 0.42, 0.38)
    pn = (pnu > 0) & cand & ~(lym > 0)
    cv.paint(pn, 0.85, 0.12)
    dots = pn & (smooth_noise(rng, cv.shape, 1.2) > 1.0)
    cv.paint(dots, 1.35, 0.12)
    lm = (lym > 0) & cand
    cv.paint(lm, rng.uniform(1.05, 1.3), 0.1)
    return lm | pc | pn, n_l, n_p


def build_slide(sid, target, look, seed, fold_on=True):
    rng = np.random.default_rng(seed)
    t0 = time.time()
    w_um, h_um = rng.uniform(2000, 2300), rng.uniform(2000, 2300)
    h, w = int(px(h_um)) // 16 * 16, int(px(w_um)) // 16 * 16
    cv = Canvas(h, w)
    tissue = fill((h, w), polar_blob(rng, w / 2, h / 2, 0.43 * min(h, w), rough=0.22))
    r0 = rng.uniform(0.25, 0.31) * min(h, w)
    d_tis = dist_in(tissue)
    for _ in range(20):
        poly = polar_blob(rng, w / 2 + rng.uniform(-0.05, 0.05) * w, h / 2 + rng.uniform(-0.05, 0.05) * h, r0, 120)
        bed = fill((h, w), poly)
        if not (bed & (d_tis <= px(60))).any():
            break
        r0 *= 0.93
    cv.cls[tissue] = STROMA
    # outside the bed: dense collagen, fat lobules
    outside = tissue & ~bed
    fat = outside & (smooth_noise(rng, (h, w), px(220)) > rng.uniform(0.1, 0.7))
    fat &= dist_in(~bed) > px(40)
    cv.cls[fat] = FAT
    # inside the bed: solid sheets and trabeculae
    st = (1.0, rng.uniform(2.5, 4.0)) if rng.random() < 0.5 else (rng.uniform(2.5, 4.0), 1.0)
    nz = smooth_noise(rng, (h, w), px(rng.uniform(25, 45)), st) + 0.6 * smooth_noise(rng, (h, w), px(90))
    tum_frac = rng.uniform(0.25, 0.5)
    tumour = bed & (nz > np.quantile(nz[bed], 1 - tum_frac))
    cv.cls[tumour] = TUMOUR
    d_bed = dist_in(bed)
    necrosis = np.zeros((h, w), bool)
    if rng.random() < 0.45:
        for _ in range(rng.integers(1, 3)):
            ys, xs = np.nonzero(d_bed > px(150))
            if ys.size == 0:
                break
            k = rng.integers(ys.size)
            blob = fill((h, w), polar_blob(rng, xs[k], ys[k], px(rng.uniform(90, 220)), 60, 0.35))
            blob &= d_bed > px(30)
            rim = (dist_in(~blob) <= px(rng.uniform(18, 35))) & bed & ~blob
            cv.cls[rim] = TUMOUR
            necrosis |= blob
        cv.cls[necrosis] = NECROSIS
    mucin = np.zeros((h, w), bool)
    if rng.random() < 0.3:
        for _ in range(rng.integers(1, 4)):
            x, y = sample_in(rng, d_bed > px(100), 1)[0]
            pool = fill((h, w), polar_blob(rng, x, y, px(rng.uniform(70, 170)), 60, 0.3)) & bed & ~necrosis
            mucin |= pool
        cv.cls[mucin] = MUCIN
        for x, y in sample_in(rng, mucin, int(mucin.sum() * (RENDER_UM ** 2) / 9000) + 2):
            cl = disk((h, w), x, y, px(rng.uniform(10, 25))) & mucin
            cv.cls[cl] = TUMOUR
    tumour = cv.cls == TUMOUR
    stroma = cv.cls == STROMA
    bstroma = stroma & bed
    # base stains
    tex = smooth_noise(rng, (h, w), px(3))
    fib = np.abs(smooth_noise(rng, (h, w), px(4), (1.0, 5.0)))
    cv.paint(stroma & ~bed, 0.06, (0.6 + 0.15 * fib).astype(np.float32))
    loose = rng.uniform(0.3, 0.5)
    cv.paint(bstroma, (0.07 + 0.05 * np.clip(tex, 0, None)).astype(np.float32), (loose + 0.12 * fib).astype(np.float32))
    cv.paint(fat, 0.0, 0.0)
    cv.paint(tumour, 0.24, (0.3 + 0.05 * tex).astype(np.float32))
    cv.paint(mucin, (0.13 + 0.05 * fib).astype(np.float32), 0.07)
    cv.paint(necrosis, (0.18 + 0.08 * tex).astype(np.float32), (0.85 + 0.1 * tex).astype(np.float32))
    # fat membranes (Voronoi edges at 2 um)
    if fat.any():
        sm = (h // 4, w // 4)
        seeds = np.ones(sm, bool)
        pts = rng.integers(0, [sm[0], sm[1]], (int(sm[0] * sm[1] / 250), 2))
        seeds[pts[:, 0], pts[:, 1]] = False
        _, (iy, ix) = ndi.distance_transform_edt(seeds, return_indices=True)
        lab = iy * sm[1] + ix
        edge = (np.diff(lab, axis=0, prepend=lab[:1]) != 0) | (np.diff(lab, axis=1, prepend=lab[:, :1]) != 0)
        edge = cv2.resize(edge.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        cv.paint(fat & edge, 0.03, 0.5)
    # tumour nuclei, necrotic debris (drawn in a buffer, kept inside their compartment)
    nuc = np.zeros((h, w), np.float32)
    for x, y in sample_in(rng, tumour, int(tumour.sum() * RENDER_UM ** 2 / 80)):
        ax = (int(px(rng.uniform(4, 6.5))), int(px(rng.uniform(3.5, 5.5))))
        cv2.ellipse(nuc, (int(x), int(y)), ax, rng.uniform(0, 180), 0, 360, float(rng.uniform(0.5, 0.75)), -1)
        cv2.circle(nuc, (int(x), int(y)), 2, float(rng.uniform(0.9, 1.1)), -1)
    for x, y in sample_in(rng, necrosis, int(necrosis.sum() * RENDER_UM ** 2 / 60)):
        cv2.circle(nuc, (int(x), int(y)), int(rng.integers(1, 4)), float(rng.uniform(0.7, 1.2)), -1)
    m = (nuc > 0) & (tumour | necrosis)
    cv.H[m] = nuc[m]
    del nuc
    # stroma cells: fibroblasts (stroma, not TILs), neutrophils (not TILs), then TILs last
    angle = np.pi * smooth_noise(rng, (h, w), px(120)).astype(np.float32)
    fibro_frac = rng.uniform(0.02, 0.14)
    n_fib_bed = int(bstroma.sum() * fibro_frac / (np.pi * px(7) * px(1.3)))
    fibro = draw_fibroblasts(rng, cv, bstroma, n_fib_bed, angle)
    draw_fibroblasts(rng, cv, stroma & ~bed, int((stroma & ~bed).sum() * 0.02 / (np.pi * px(7) * px(1.3))), angle)
    neut_density = rng.uniform(0, 400)  # per mm^2 of bed stroma
    n_neut = int(neut_density * bstroma.sum() * (RENDER_UM / 1000) ** 2)
    near_nec = bstroma & (dist_in(~necrosis) <= px(60)) if necrosis.any() else bstroma & False
    cen = np.concatenate([sample_in(rng, bstroma, n_neut), sample_in(rng, near_nec, int(rng.uniform(100, 500)))])
    cen = np.concatenate([cen, sample_in(rng, necrosis, int(necrosis.sum() * RENDER_UM ** 2 / 4000))])
    draw_neutrophils(rng, cv, stroma | necrosis, cen)
    plasma_share = rng.uniform(0.05, 0.4)
    d_tum = dist_in(~tumour) * RENDER_UM
    wgt = np.exp(1.2 * smooth_noise(rng, (h, w), px(60))) * (1 + 2 * np.exp(-d_tum / 30))
    til, n_l, n_p = draw_tils(rng, cv, bstroma, wgt, target / 100 * bstroma.sum(), plasma_share)
    n_out = int(rng.uniform(50, 500) * (stroma & ~bed).sum() * (RENDER_UM / 1000) ** 2)
    draw_tils(rng, cv, stroma & ~bed, np.ones((h, w), np.float32), n_out * 150 * 0.5, plasma_share)
    stil = 100 * float((til & bstroma).sum()) / float(bstroma.sum())
    # artefacts: a tissue fold (double layer) and an out-of-focus band
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fold = np.zeros((h, w), bool)
    if rng.random() < 0.35:
        t = rng.uniform(0, np.pi)
        d = (xx - rng.uniform(0.3, 0.7) * w) * np.cos(t) + (yy - rng.uniform(0.3, 0.7) * h) * np.sin(t)
        d += px(30) * smooth_noise(rng, (h, w), px(300))
        fold = (np.abs(d) < px(rng.uniform(20, 60))) & tissue
        if fold_on:
            cv.H[fold] *= 2.0
            cv.E[fold] = cv.E[fold] * 2.0 + 0.15
        # else: the same slide without its fold (an A/B copy; the truth maps keep where it was)
    blur = np.zeros((h, w), np.float32)
    if rng.random() < 0.5:
        t = rng.uniform(0, np.pi)
        d = (xx - rng.uniform(0.3, 0.7) * w) * np.cos(t) + (yy - rng.uniform(0.3, 0.7) * h) * np.sin(t)
        half = px(rng.uniform(80, 200))
        blur = np.clip((half - np.abs(d)) / px(40), 0, 1).astype(np.float32)
    del xx, yy
    rgb = render(rng, cv, tissue, look, blur)
    stats = dict(
        slide_id=sid, stil=round(stil, 3), target=round(target, 2), look=look, mpp=LOOKS[look]["mpp"],
        bed_mm2=round(bed.sum() * (RENDER_UM / 1000) ** 2, 4), bed_stroma_mm2=round(bstroma.sum() * (RENDER_UM / 1000) ** 2, 4),
        tumour_frac=round(float((tumour & bed).sum() / bed.sum()), 3), necrosis_frac=round(float(necrosis.sum() / bed.sum()), 3),
        mucin_frac=round(float(mucin.sum() / bed.sum()), 3), fibro_area_frac=round(float(fibro.sum() / bstroma.sum()), 3),
        plasma_share=round(plasma_share, 2), n_lymph=n_l, n_plasma=n_p, neut_per_mm2=round(neut_density, 1),
        fold_in_bed=round(float((fold & bed).sum() / bed.sum()), 3), blur_in_bed=round(float((blur > 0.5)[bed].mean()), 3),
    )
    maps = dict(tissue=tissue, bed=bed, tumour=tumour, necrosis=necrosis, mucin=mucin, fat=fat, fold=fold, blur=blur > 0.5)
    return rgb, poly, maps, stats, time.time() - t0


def render(rng, cv, tissue, look, blur):
    lk = LOOKS[look]
    vh, ve = (np.array(v, np.float32) / np.linalg.norm(v) for v in (lk["h"], lk["e"]))
    grain = 1 + 0.06 * rng.standard_normal(cv.shape, dtype=np.float32)
    Hc = cv.H * (lk["hs"] * lk["contrast"]) * grain
    Ec = cv.E * (lk["es"] * lk["contrast"]) * grain + 0.02 * tissue
    bg = np.array(lk["bg"], np.float32)
    rgb = np.empty(cv.shape + (3,), np.float32)
    for c in range(3):
        rgb[..., c] = bg[c] * np.exp(-(Hc * vh[c] + Ec * ve[c]))
    del Hc, Ec, grain
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.6)
    if blur.any():
        soft = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(2.0, 3.5))
        rgb = rgb * (1 - blur[..., None]) + soft * blur[..., None]
    rgb += 2.0 * rng.standard_normal(rgb.shape, dtype=np.float32)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def write_tiff(path, rgb, mpp, quality):
    levels = [rgb]
    while min(levels[-1].shape[:2]) > 1024:
        a = levels[-1]
        levels.append(cv2.resize(a, (a.shape[1] // 4, a.shape[0] // 4), interpolation=cv2.INTER_AREA))
    tmp = path.with_suffix(".tmp")
    with tifffile.TiffWriter(tmp) as tw:
        for i, lev in enumerate(levels):
            res = 1e4 / (mpp * rgb.shape[1] / lev.shape[1])
            tw.write(lev, tile=(256, 256), photometric="rgb", compression="jpeg", compressionargs={"level": quality},
                     resolution=(res, res), resolutionunit="CENTIMETER", subfiletype=0 if i == 0 else 1,
                     metadata=None, description="outside generator 45c" if i == 0 else None)
    tmp.replace(path)


def coarse(m):
    f = int(COARSE_UM / RENDER_UM)
    h, w = m.shape[0] // f, m.shape[1] // f
    return m[: h * f, : w * f].reshape(h, f, w, f).mean(axis=(1, 3)) >= 0.5


def make_one(args):
    out, sid, target, look, seed, fold_on = args
    rgb, poly, maps, stats, sec = build_slide(sid, target, look, seed, fold_on)
    lk = LOOKS[look]
    rs = np.random.default_rng(seed + 1)
    scale = RENDER_UM / lk["mpp"]
    if scale != 1:
        rgb = cv2.resize(rgb, (int(round(rgb.shape[1] * scale)), int(round(rgb.shape[0] * scale))),
                         interpolation=cv2.INTER_CUBIC)
    q = int(rs.integers(lk["q"][0], lk["q"][1] + 1))
    path = out / "slides" / f"{sid}.tiff"
    write_tiff(path, rgb, lk["mpp"], q)
    ring = (poly.astype(float) * scale).tolist()
    gj = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Polygon",
          "coordinates": [ring + [ring[0]]]}, "properties": {"objectType": "annotation",
          "classification": {"name": "Tumor", "color": [200, 0, 0]}}}]}
    (out / "beds_exact" / f"{sid}.geojson").write_text(json.dumps(gj))
    np.savez_compressed(out / "masks" / f"{sid}.npz", coarse_um=np.float32(COARSE_UM),
                        **{k: coarse(v) for k, v in maps.items()})
    stats.update(fmt="tiff", jpeg_q=q, path=str(path.resolve()), seconds=round(sec, 1))
    return stats


def targets(n, rng):
    v = np.array([float(r["tils_score"]) for r in csv.DictReader(open(LABELS))])
    q = np.quantile(v, (np.arange(n) + 0.5) / n)
    return np.clip(q * np.exp(rng.uniform(-0.15, 0.15, n)), 0.5, 90.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--slides", type=int, default=30)
    ap.add_argument("--seed", type=int, default=45)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--only", nargs="*", help="slide ids to (re)make, e.g. og45c_003")
    ap.add_argument("--no-fold", action="store_true", help="leave the tissue fold out (same slide otherwise)")
    a = ap.parse_args(argv)
    for d in ("slides", "beds_exact", "masks"):
        (a.out / d).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    tg = targets(a.slides, rng)
    looks = rng.permutation(["hama", "warm"] * ((a.slides + 1) // 2))[: a.slides]
    seeds = rng.integers(0, 2 ** 31, a.slides)
    jobs = [(a.out, f"og45c_{i:03d}", float(tg[i]), str(looks[i]), int(seeds[i]), not a.no_fold) for i in range(a.slides)]
    if a.only:
        jobs = [j for j in jobs if j[1] in set(a.only)]
    with ProcessPoolExecutor(a.jobs) as ex:
        rows = []
        for r in ex.map(make_one, jobs):
            print(f"{r['slide_id']} stil {r['stil']:.2f} (target {r['target']}) {r['look']} {r['seconds']} s", flush=True)
            rows.append(r)
    if a.only:
        return
    keys = [k for k in rows[0] if k != "path"]
    with open(a.out / "truth.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        wr.writeheader()
        wr.writerows(rows)
    with open(a.out / "cohort.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["slide_id", "path", "stil"])
        wr.writerows([[r["slide_id"], r["path"], r["stil"]] for r in rows])


if __name__ == "__main__":
    main()
