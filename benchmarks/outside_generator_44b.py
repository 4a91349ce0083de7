"""An outside tester's generator (hunt 44b): lobular carcinoma, DCIS and normal lobules beside the bed.

    .venv/bin/python benchmarks/outside_generator_44b.py --out C --slides 36 --seed 44

Own code (numpy / scipy / OpenCV / Pillow / tifffile); ``weakstil.synth`` is not used. Each slide is a
2.0-2.6 mm piece of breast tissue with one invasive tumour bed of either kind:

- ``lobular``: invasive lobular carcinoma, small discohesive tumour cells (nucleus 7-9 µm, pale rim
  of cytoplasm) in single files and loose two-cell cords through the stroma, no nests;
- ``ductal``: cohesive nests of large pleomorphic nuclei with stroma between.

Beside the bed, on some slides: DCIS (ducts filled with tumour cells, a myoepithelial rim of flat dark
nuclei, a pink basement membrane, comedo necrosis on some), most with a dense periductal lymphocyte
cuff; normal lobules (acini of two cell layers around a lumen, loose intralobular stroma) with
lymphocytes; fat. Per the International TILs Working Group, TILs around DCIS and normal lobules are not
counted and DCIS is not invasive bed: the bed polygon never contains a duct or a lobule.

Look of its own: heavy purple haematoxylin, pale pink eosin, a thick-section haze with lower contrast
and a slight blur on some slides; a third of the slides are written as Aperio-style JPEG SVS at
0.2525 µm/px (a 40x scanner; the tissue is rendered at 0.5 µm/px and resampled bicubically), the
others as JPEG pyramidal TIFF at 0.5 µm/px with resolution tags.

Truth, per slide: sTIL% = lymphocyte nucleus area / stromal area inside the bed polygon (stroma:
tissue that is not tumour cell, fat, duct or lobule epithelium), computed on the 0.5 µm/px label maps
with the bed rasterised from the polygon itself. Outputs: ``slides/<id>.{tiff,svs}``,
``beds_exact/<id>.geojson`` (QuPath ``Tumor`` polygon, level-0 px), ``masks/<id>.npz`` (4 µm/px:
tissue, bed, dcis, lobule, cuff, fat; ``coarse_um``), ``truth.csv``, ``cohort.csv``
(``slide_id,path,stil``).
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

MPP = 0.5  # render µm/px
C = 8  # render px per coarse px (4 µm)
LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "labels" / "tcga_bc_tils.csv"
STROMA, FAT, TUMOUR, DCIS, MYO, NORMAL, LUMEN, NECROSIS = 1, 2, 3, 4, 5, 6, 7, 8


def um(x: float) -> float:
    return x / MPP


def targets(n: int, rng: np.random.Generator, labels: Path) -> np.ndarray:
    """sTIL% targets at spread quantiles of the TCGA pathologist scores (their shape, 1-90 %)."""
    if labels.is_file():
        with labels.open() as f:
            vals = np.sort([float(r["tils_score"]) for r in csv.DictReader(f)])
    else:
        vals = np.sort(np.concatenate([rng.gamma(1.2, 8.0, 250).clip(1, 29), rng.uniform(30, 90, 92)]))
    q = (np.arange(n) + rng.uniform(0.1, 0.9, n)) / n
    out = np.quantile(vals, q, method="inverted_cdf")
    out[np.argmax(out)] = max(out.max(), 85.0)  # the cohort's top reaches the TCGA maximum
    return rng.permutation(np.clip(out, 1, 90))


def noise(shape, scale, rng) -> np.ndarray:
    a = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), scale, mode="wrap")
    return (a - a.mean()) / (a.std() + 1e-9)


def up(a: np.ndarray, H: int, W: int) -> np.ndarray:
    import cv2
    return cv2.resize(a.astype(np.float32), (W, H), interpolation=cv2.INTER_LINEAR)


def shapes(r_a: float, r_b: float, k: int, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` ellipse stamps (row, col offsets) with semi-axes around r_a x r_b render px, random angle."""
    out = []
    for _ in range(k):
        a, b = r_a * rng.uniform(0.85, 1.15), r_b * rng.uniform(0.85, 1.15)
        ang = rng.uniform(0, math.pi)
        R = math.ceil(max(a, b))
        yy, xx = np.mgrid[-R:R + 1, -R:R + 1]
        u = xx * math.cos(ang) + yy * math.sin(ang)
        v = -xx * math.sin(ang) + yy * math.cos(ang)
        keep = (u / a) ** 2 + (v / b) ** 2 <= 1
        out.append((yy[keep], xx[keep]))
    return out


def stamp(m: np.ndarray, pts: np.ndarray, val, shp, allowed: np.ndarray | None = None) -> None:
    """Write ``val`` (scalar or per point) into ``m`` over a stamp (cycled from ``shp``) at each (y, x)."""
    vals = np.broadcast_to(np.asarray(val, m.dtype), (len(pts),))
    for j, (oy, ox) in enumerate(shp):
        sel = np.arange(j, len(pts), len(shp))
        for s in range(0, len(sel), 20000):
            p = pts[sel[s:s + 20000]]
            iy = (p[:, 0, None] + oy[None]).ravel()
            ix = (p[:, 1, None] + ox[None]).ravel()
            v = np.repeat(vals[sel[s:s + 20000]], len(oy))
            ok = (iy >= 0) & (iy < m.shape[0]) & (ix >= 0) & (ix < m.shape[1])
            iy, ix, v = iy[ok], ix[ok], v[ok]
            if allowed is not None:
                a = allowed[iy, ix]
                iy, ix, v = iy[a], ix[a], v[a]
            m[iy, ix] = v


def pick(mask: np.ndarray, n: int, rng, weight: np.ndarray | None = None) -> np.ndarray:
    idx = np.flatnonzero(mask)
    if n <= 0 or idx.size == 0:
        return np.zeros((0, 2), np.int64)
    p = None
    if weight is not None:
        w = weight.ravel()[idx].astype(np.float64)
        p = w / w.sum()
    k = rng.choice(idx, int(n), p=p)
    return np.stack(np.unravel_index(k, mask.shape), 1).astype(np.int64)


def disc_mask(H, W, cy, cx, r) -> tuple[slice, slice, np.ndarray]:
    y0, y1 = max(0, int(cy - r - 2)), min(H, int(cy + r + 3))
    x0, x1 = max(0, int(cx - r - 2)), min(W, int(cx + r + 3))
    yy, xx = np.mgrid[y0:y1, x0:x1]
    return slice(y0, y1), slice(x0, x1), np.hypot(yy - cy, xx - cx)


def plan(rng, target: float, kind: str, has_dcis: bool, has_lob: bool) -> dict:
    """Coarse (4 µm) layout: tissue, bed polygon, fat, DCIS ducts and lobules (centres, radii in render px)."""
    from skimage import measure
    Wc, Hc = (int(rng.uniform(2.0, 2.6) * 1000 / (C * MPP)) for _ in range(2))
    yy, xx = np.mgrid[0:Hc, 0:Wc]
    d = np.hypot((yy - Hc / 2) / (0.46 * Hc), (xx - Wc / 2) / (0.46 * Wc))
    tissue = (d + 0.12 * noise((Hc, Wc), 25, rng)) < 1.0
    tissue = ndi.binary_fill_holes(ndi.binary_opening(tissue, iterations=3))
    inner = ndi.distance_transform_edt(tissue)
    # bed: a blob off centre, 30-50 % of the tissue, its edge wavier for lobular
    cy, cx = Hc / 2 + rng.uniform(-0.12, 0.12) * Hc, Wc / 2 + rng.uniform(-0.12, 0.12) * Wc
    rb = math.sqrt(rng.uniform(0.30, 0.50) * tissue.sum() / math.pi)
    db = np.hypot(yy - cy, xx - cx) / rb + (0.22 if kind == "lobular" else 0.12) * noise(
        (Hc, Wc), 8 if kind == "lobular" else 18, rng)
    bed = (db < 1.0) & (inner > 18)
    lab, n = ndi.label(bed)
    bed = lab == (1 + int(np.argmax(ndi.sum(bed, lab, range(1, n + 1)))))
    bed = ndi.binary_fill_holes(bed)
    cont = max(measure.find_contours(np.pad(bed, 1).astype(np.float32), 0.5), key=len) - 1
    poly = measure.approximate_polygon(cont, 0.7)[:, ::-1]  # (x, y) coarse
    poly = (poly + 0.5) * C  # render px
    from PIL import Image, ImageDraw
    im = Image.new("1", (Wc, Hc))
    ImageDraw.Draw(im).polygon([(float(x) / C - 0.5, float(y) / C - 0.5) for x, y in poly], fill=1)
    bed = np.asarray(im, bool)
    dist_out = ndi.distance_transform_edt(~bed)
    occupied = ndi.binary_dilation(bed, iterations=2)
    ducts, lobules = [], []
    if has_dcis:
        for _ in range(int(rng.integers(1, 5))):
            R = rng.uniform(15, 42)  # coarse px: 60-170 µm
            gap = rng.uniform(2, 30) if rng.random() < 0.7 else rng.uniform(30, 120)
            ok = (np.abs(dist_out - (R + gap)) < 2) & (inner > R + 6)
            ok &= ndi.distance_transform_edt(~occupied) > R + 2
            if not ok.any():
                continue
            y, x = pick(ok, 1, rng)[0]
            ducts.append((y * C + C / 2, x * C + C / 2, R * C, bool(rng.random() < 0.3), rng.uniform(0.4, 0.9)))
            occupied |= np.hypot(yy - y, xx - x) < R + 14
    if has_lob:
        for _ in range(int(rng.integers(1, 3))):
            R = rng.uniform(35, 60)  # 140-240 µm
            ok = (dist_out > R + rng.uniform(10, 60)) & (inner > R + 5)
            ok &= ndi.distance_transform_edt(~occupied) > R + 4
            if not ok.any():
                continue
            y, x = pick(ok, 1, rng)[0]
            lobules.append((y * C + C / 2, x * C + C / 2, R * C, rng.uniform(0.1, 0.5)))
            occupied |= np.hypot(yy - y, xx - x) < R + 8
    fat = tissue & ~ndi.binary_dilation(occupied, iterations=15) & (noise((Hc, Wc), 14, rng) > 1.1) & (inner > 6)
    return dict(Hc=Hc, Wc=Wc, tissue=tissue, bed_c=bed, poly=poly, ducts=ducts, lobules=lobules, fat=fat, kind=kind)


def place_lymph(L, region, stroma, cover, rng, cluster, shp, area, max_iter=8) -> None:
    """Stamp lymphocyte nuclei into ``L`` within ``region & stroma`` until they cover ``cover`` of it."""
    reg = region & stroma
    A = int(reg.sum())
    if A == 0 or cover <= 0:
        return
    Hh, Ww = reg.shape
    w = np.exp(cluster * up(noise((Hh // C, Ww // C), um(25) / C, rng), Hh, Ww)) if cluster > 0 else None
    for _ in range(max_iter):
        c = (L & reg).sum() / A
        if c >= cover - 0.003:
            break
        n = int(-math.log(max(1e-3, 1 - (cover - c) / (1 - c))) * A / area * 1.05) + 1
        stamp(L, pick(reg, n, rng, w), True, shp, allowed=stroma)
        if w is not None:
            w = np.sqrt(w)  # flatten the clusters as the cover rises


def render(p: dict, rng, target: float, look: dict) -> tuple[np.ndarray, dict, np.ndarray]:
    """Label maps, lymphocytes and RGB at 0.5 µm/px; returns (rgb, truth, coarse cuff mask)."""
    from PIL import Image, ImageDraw
    Hc, Wc = p["Hc"], p["Wc"]
    H, W = Hc * C, Wc * C
    lab = np.zeros((H, W), np.uint8)
    lab[up(p["tissue"], H, W) > 0.5] = STROMA
    lab[(up(p["fat"], H, W) > 0.5) & (lab == STROMA)] = FAT
    im = Image.new("1", (W, H))
    ImageDraw.Draw(im).polygon([(float(x), float(y)) for x, y in p["poly"]], fill=1)
    bed = np.asarray(im, bool) & (lab > 0)
    Hn = np.zeros((H, W), np.float32)  # haematoxylin of nuclei
    loose = np.zeros((H, W), bool)
    cuff = np.zeros((H, W), bool)
    tum_nuc, dc_nuc, myo_nuc, nrm_nuc = [], [], [], []
    # invasive tumour
    if p["kind"] == "ductal":
        f = rng.uniform(0.25, 0.5)
        fld = up(noise((Hc, Wc), 4, rng), H, W) + 0.35 * noise((H, W), um(6), rng)
        thr = np.quantile(fld[bed], 1 - f)
        nest = bed & (fld > thr) & (lab == STROMA)
        nest = ndi.binary_opening(nest, iterations=4)
        lab[nest] = TUMOUR
        tum_nuc.append(pick(nest, int(nest.sum() * 0.45 / (math.pi * um(5.5) * um(4.3))), rng))
    else:  # lobular: single files / two-cell cords of small cells
        cells = []
        bedc = bed & (lab == STROMA)
        frac = rng.uniform(0.12, 0.28)
        cell_area = math.pi * um(5.5) ** 2
        need = frac * bedc.sum() / cell_area
        bidx = np.flatnonzero(bedc)
        while len(cells) < need:
            y, x = (float(v) for v in np.unravel_index(bidx[rng.integers(0, bidx.size)], bedc.shape))
            th = rng.uniform(0, 2 * math.pi)
            pair = rng.random() < 0.3
            for _ in range(int(rng.integers(5, 30))):
                yi, xi = int(y), int(x)
                if not (0 <= yi < H and 0 <= xi < W and bedc[yi, xi]):
                    break
                cells.append((y + rng.normal(0, 1), x + rng.normal(0, 1)))
                if pair:
                    cells.append((y + um(10) * math.cos(th), x - um(10) * math.sin(th)))
                th += rng.normal(0, 0.25)
                step = um(rng.uniform(10, 13))
                y, x = y + step * math.sin(th), x + step * math.cos(th)
        cells = np.round(np.array(cells)).astype(np.int64)
        body = np.zeros((H, W), bool)
        stamp(body, cells, True, shapes(um(5.5), um(4.8), 6, rng), allowed=bedc)
        lab[body] = TUMOUR
        tum_nuc.append(cells + rng.integers(-2, 3, cells.shape))
    # DCIS ducts
    for (cy, cx, R, comedo, cuffc) in p["ducts"]:
        sy, sx, d = disc_mask(H, W, cy, cx, R + um(60))
        sub = lab[sy, sx]
        t = sub > 0
        sub[(d < R - um(6)) & t] = DCIS
        sub[(d >= R - um(6)) & (d < R) & t] = MYO
        if comedo:
            sub[(d < 0.45 * R) & t] = NECROSIS
        loose[sy, sx] |= (d >= R) & (d < R + um(2.5)) & t  # basement membrane (pinker, marked below)
        cuff[sy, sx] |= (d >= R + um(2.5)) & (d < R + um(rng.uniform(25, 55))) & t
        ep = (d < R - um(6)) & (d >= (0.45 * R if comedo else 0))
        pts = np.argwhere(ep)
        n = int(ep.sum() * 0.45 / (math.pi * um(5.2) * um(4.2)))
        dc_nuc.append(pts[rng.integers(0, len(pts), n)] + [sy.start, sx.start])
        ang = rng.uniform(0, 2 * math.pi, int(2 * math.pi * R / um(12)))
        rr = R - um(3)
        myo_nuc.append(np.stack([cy + rr * np.sin(ang), cx + rr * np.cos(ang)], 1).astype(np.int64))
    bm = loose.copy()
    loose[:] = False
    # normal lobules
    for (cy, cx, R, lymc) in p["lobules"]:
        sy, sx, d = disc_mask(H, W, cy, cx, R)
        t = lab[sy, sx] > 0
        loose[sy, sx] |= (d < R) & t
        k = 0
        for _ in range(200):
            if k >= 22:
                break
            ra = um(rng.uniform(16, 28))
            rr, a = math.sqrt(rng.random()) * (R - ra), rng.uniform(0, 2 * math.pi)
            ay, ax = cy + rr * math.sin(a), cx + rr * math.cos(a)
            ay_, ax_, da = disc_mask(H, W, ay, ax, ra)
            if (lab[ay_, ax_][da < ra + um(4)] != STROMA).any():
                continue
            sub = lab[ay_, ax_]
            sub[da < ra] = MYO
            sub[da < ra - um(3.5)] = NORMAL
            sub[da < 0.4 * ra] = LUMEN
            k += 1
            ang = rng.uniform(0, 2 * math.pi, int(2 * math.pi * ra / um(7)))
            r1 = 0.4 * ra + um(3.5)
            nrm_nuc.append(np.stack([ay + r1 * np.sin(ang), ax + r1 * np.cos(ang)], 1).astype(np.int64))
            ang = rng.uniform(0, 2 * math.pi, int(2 * math.pi * ra / um(14)))
            myo_nuc.append(np.stack([ay + (ra - um(1.8)) * np.sin(ang), ax + (ra - um(1.8)) * np.cos(ang)], 1).astype(np.int64))
    stroma = lab == STROMA
    # lymphocytes: bed (the target), cuffs, lobules, a sprinkle elsewhere
    L = np.zeros((H, W), bool)
    lshp = shapes(um(3.4), um(3.1), 6, rng)
    area = math.pi * um(3.4) * um(3.1)
    cl = float(np.interp(target, [1, 30, 90], [2.0, 1.2, 0.2]))
    place_lymph(L, bed, stroma, target / 100.0, rng, cl, lshp, area)
    for (cy, cx, R, comedo, cuffc) in p["ducts"]:
        sy, sx, d = disc_mask(H, W, cy, cx, R + um(60))
        m = np.zeros((H, W), bool)
        m[sy, sx] = cuff[sy, sx] & (d < R + um(60))
        place_lymph(L, m & ~bed, stroma, cuffc, rng, 0.5, lshp, area)
    for (cy, cx, R, lymc) in p["lobules"]:
        place_lymph(L, loose & ~bed, stroma, lymc, rng, 1.0, lshp, area)
    place_lymph(L, ~bed & ~loose & ~cuff, stroma, rng.uniform(0.005, 0.03 + 0.1 * target / 100), rng, 2.0, lshp, area)
    # truth
    sb = bed & stroma
    truth = dict(stil=100.0 * (L & sb).sum() / max(1, sb.sum()), bed_stroma_mm2=sb.sum() * MPP * MPP / 1e6,
                 bed_mm2=bed.sum() * MPP * MPP / 1e6,
                 tumour_frac=float((bed & (lab == TUMOUR)).sum() / max(1, bed.sum())),
                 cuff_lymph_frac=float((L & cuff & stroma).sum() / max(1, (cuff & stroma).sum())) if cuff.any() else None,
                 lobule_lymph_frac=float((L & loose & stroma).sum() / max(1, (loose & stroma).sum())) if loose.any() else None)
    # stains
    fib = noise((H // 4, W // 4), 3, rng)
    fib = up(ndi.gaussian_filter1d(fib, 6, axis=int(rng.integers(0, 2))), H, W)
    E = np.zeros((H, W), np.float32)
    E[lab == STROMA] = 0.42
    E *= 1 + 0.3 * fib
    E[loose & stroma] *= 0.55
    E[bm & stroma] = 0.7
    E[lab == TUMOUR] = 0.18 if p["kind"] == "lobular" else 0.26
    E[lab == DCIS] = 0.27
    E[lab == NORMAL] = 0.30
    E[lab == MYO] = 0.12
    E[lab == NECROSIS] = 0.45
    Hb = np.where(lab > 0, 0.05, 0).astype(np.float32)
    Hb[lab == NECROSIS] = 0.25
    Hb[lab == TUMOUR] = 0.08
    # fat: empty polygons with thin pink membranes
    fat = lab == FAT
    if fat.any():
        from scipy.spatial import cKDTree
        fy, fx = np.nonzero(fat)
        seeds = pick(fat, max(4, int(fat.sum() / um(45) ** 2)), rng)
        dd, _ = cKDTree(seeds).query(np.stack([fy, fx], 1), k=2)
        memb = (dd[:, 1] - dd[:, 0]) < 2.5
        E[fy, fx] = np.where(memb, 0.45, 0.0)
        Hb[fy, fx] = np.where(memb, 0.04, 0.0)
    # nuclei
    fibro = pick(stroma & ~bm, int(stroma.sum() * MPP * MPP / 1e6 * 900), rng)
    stamp(Hn, fibro, rng.uniform(0.5, 0.8, len(fibro)).astype(np.float32), shapes(um(5), um(1.3), 8, rng), allowed=stroma)
    if tum_nuc:
        t = np.concatenate(tum_nuc)
        big = p["kind"] == "ductal"
        sh = shapes(um(5.5), um(4.3), 8, rng) if big else shapes(um(4.0), um(3.6), 6, rng)
        stamp(Hn, t, rng.uniform(0.45, 0.75, len(t)).astype(np.float32), sh, allowed=lab == TUMOUR)
    if dc_nuc:
        t = np.concatenate(dc_nuc)
        stamp(Hn, t, rng.uniform(0.45, 0.7, len(t)).astype(np.float32), shapes(um(5.2), um(4.2), 8, rng), allowed=lab == DCIS)
    if nrm_nuc:
        t = np.concatenate(nrm_nuc)
        stamp(Hn, t, rng.uniform(0.6, 0.8, len(t)).astype(np.float32), shapes(um(3.0), um(2.6), 6, rng), allowed=lab == NORMAL)
    if myo_nuc:
        t = np.concatenate(myo_nuc)
        stamp(Hn, t, rng.uniform(0.9, 1.1, len(t)).astype(np.float32), shapes(um(4.5), um(1.5), 8, rng), allowed=lab == MYO)
    if (lab == NECROSIS).any():
        deb = pick(lab == NECROSIS, int((lab == NECROSIS).sum() / um(6) ** 2), rng)
        stamp(Hn, deb, np.float32(0.9), shapes(um(1.2), um(1.0), 4, rng), allowed=lab == NECROSIS)
    Hn[L] = rng.uniform(1.2, 1.6)
    Hn *= 1 + 0.15 * noise((H, W), 1.0, rng)
    Htot = np.maximum(Hb, Hn)
    E[L] = 0.08
    Hv, Ev = look["Hv"], look["Ev"]
    od = look["hs"] * Htot[..., None] * Hv + look["es"] * E[..., None] * Ev
    od += look["haze"] * (lab > 0)[..., None] + 0.03
    import cv2
    if look["blur"] > 0:
        od = cv2.GaussianBlur(od, (0, 0), look["blur"])
    rgb = np.clip(255 * np.exp(-od) + rng.normal(0, 2.0, od.shape), 0, 255).astype(np.uint8)
    cuff_c = cuff[C // 2::C, C // 2::C]
    return rgb, truth, cuff_c


def write_pyramid(path: Path, rgb: np.ndarray, mpp: float, svs: bool, q: int = 85) -> None:
    """JPEG tiled pyramid: Aperio SVS (description with MPP) or TIFF with resolution tags."""
    import cv2
    import tifffile
    H, W = rgb.shape[:2]
    tmp = path.with_name(path.name + ".tmp")
    with tifffile.TiffWriter(tmp, bigtiff=False) as tw:
        kw = dict(tile=(256, 256), photometric="rgb", compression="jpeg", compressionargs={"level": q}, metadata=None)
        if svs:
            desc = (f"Aperio Image Library v12.0.15\n{W}x{H} [0,0 {W}x{H}] (256x256) JPEG/RGB Q={q}"
                    f"|AppMag = 40|MPP = {mpp}|Filename = {path.stem}")
            tw.write(rgb, description=desc, **kw)
        else:
            tw.write(rgb, resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER", **kw)
        lvl, f = rgb, 1
        while min(lvl.shape[:2]) > 1024:
            lvl = cv2.resize(lvl, (lvl.shape[1] // 4, lvl.shape[0] // 4), interpolation=cv2.INTER_AREA)
            f *= 4
            if svs:
                tw.write(lvl, description=f"Aperio Image Library v12.0.15\n{W}x{H} -> {lvl.shape[1]}x{lvl.shape[0]}", **kw)
            else:
                tw.write(lvl, subfiletype=1, resolution=(1e4 / (mpp * f), 1e4 / (mpp * f)), resolutionunit="CENTIMETER", **kw)
    tmp.replace(path)


def make_look(rng, i: int) -> dict:
    """Heavy purple haematoxylin, pale pink eosin; every other slide a thick-section haze and blur."""
    Hv = np.array([0.50, 0.82, 0.28]) + rng.normal(0, 0.03, 3)
    Ev = np.array([0.05, 0.95, 0.30]) + rng.normal(0, 0.03, 3)
    thick = i % 2 == 1
    return dict(Hv=(Hv / np.linalg.norm(Hv)).astype(np.float32), Ev=(Ev / np.linalg.norm(Ev)).astype(np.float32),
                hs=float(rng.uniform(1.3, 1.6) * (0.8 if thick else 1.0)), es=float(rng.uniform(0.45, 0.6)),
                haze=float(rng.uniform(0.10, 0.18) if thick else 0.02), blur=float(1.1 if thick else 0.0), thick=thick)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--slides", type=int, default=36)
    ap.add_argument("--seed", type=int, default=44)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--only", type=int, nargs="*")
    a = ap.parse_args(argv)
    import cv2
    cv2.setNumThreads(1)
    for d in ("slides", "beds_exact", "masks"):
        (a.out / d).mkdir(parents=True, exist_ok=True)
    tg = targets(a.slides, np.random.default_rng(a.seed), a.labels)
    kinds = np.random.default_rng([a.seed, 999]).permutation(
        ["lobular"] * round(a.slides * 0.36) + ["ductal"] * (a.slides - round(a.slides * 0.36)))
    for i in range(a.slides):
        if a.only and i not in a.only:
            continue
        t0 = time.time()
        sid = f"og44b_{i:03d}"
        rng = np.random.default_rng([a.seed, i])
        has_dcis, has_lob = bool(rng.random() < 0.55), bool(rng.random() < 0.5)
        p = plan(rng, float(tg[i]), str(kinds[i]), has_dcis, has_lob)
        look = make_look(rng, i)
        rgb, truth, cuff_c = render(p, rng, float(tg[i]), look)
        svs = i % 3 == 2
        poly = p["poly"]
        if svs:
            import cv2
            f = MPP / 0.2525
            rgb = cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)), interpolation=cv2.INTER_CUBIC)
            poly = poly * f
        path = a.out / "slides" / f"{sid}.{'svs' if svs else 'tiff'}"
        write_pyramid(path, rgb, 0.2525 if svs else MPP, svs)
        feat = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[round(float(x), 1), round(float(y), 1)] for x, y in [*poly, poly[0]]]]},
            "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}}
        (a.out / "beds_exact" / f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [feat]}))
        Hc, Wc = p["Hc"], p["Wc"]
        dc = np.zeros((Hc, Wc), bool)
        lb = np.zeros((Hc, Wc), bool)
        yy, xx = np.mgrid[0:Hc, 0:Wc]
        for (cy, cx, R, *_r) in p["ducts"]:
            dc |= np.hypot(yy * C + C / 2 - cy, xx * C + C / 2 - cx) < R
        for (cy, cx, R, _l) in p["lobules"]:
            lb |= np.hypot(yy * C + C / 2 - cy, xx * C + C / 2 - cx) < R
        np.savez_compressed(a.out / "masks" / f"{sid}.npz", tissue=p["tissue"], bed=p["bed_c"], dcis=dc, lobule=lb,
                            cuff=cuff_c, fat=p["fat"], coarse_um=np.float32(C * MPP))
        row = dict(slide_id=sid, stil=round(truth["stil"], 3), target=round(float(tg[i]), 2), kind=p["kind"],
                   n_dcis=len(p["ducts"]), n_lobules=len(p["lobules"]), look="thick" if look["thick"] else "purple",
                   mpp=0.2525 if svs else MPP, fmt="svs" if svs else "tiff", bed_mm2=round(truth["bed_mm2"], 4),
                   bed_stroma_mm2=round(truth["bed_stroma_mm2"], 4), tumour_frac=round(truth["tumour_frac"], 3),
                   cuff_lymph=None if truth["cuff_lymph_frac"] is None else round(truth["cuff_lymph_frac"], 3),
                   lobule_lymph=None if truth["lobule_lymph_frac"] is None else round(truth["lobule_lymph_frac"], 3),
                   seconds=round(time.time() - t0, 1))
        (a.out / "masks" / f"{sid}.json").write_text(json.dumps(row))
        print(json.dumps(row), flush=True)
    rows = [json.loads(q.read_text()) for q in sorted((a.out / "masks").glob("og44b_*.json"))]
    with (a.out / "truth.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with (a.out / "cohort.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["slide_id", "path", "stil"])
        for r in rows:
            w.writerow([r["slide_id"], str((a.out / "slides" / f"{r['slide_id']}.{r['fmt']}").resolve()), r["stil"]])


if __name__ == "__main__":
    main()
