"""An outside tester's generator (hunt 42a): core needle biopsies, the commonest sTIL specimen.

    .venv/bin/python benchmarks/outside_generator_42a.py --out C --slides 24 --seed 42

Own code (numpy / scipy / scikit-image / tifffile); neither ``weakstil.synth`` nor another tester's
generator was read. Each slide holds 2-5 thin cores (1.0-1.4 mm wide, 3-4.5 mm long), slightly curved,
at their own angles, some broken into fragments with glass between; tumour (nests with stroma between,
lymphocytes in that stroma) in some cores / fragments only, benign stroma and fat elsewhere; a crush
artefact (smeared dark nuclei) at a core end on most slides, tissue folds on benign tissue. Scanned at
0.5 µm/px (20x) as a tiled JPEG pyramidal TIFF with resolution tags.

Truth, per slide: the sTIL% as the TILs WG counts it, lymphocyte area / stromal area inside the tumour
bed (stroma: tissue not tumour nest, fat or crush), computed on the 0.5 µm/px render from the bed
polygons themselves; the bed as QuPath GeoJSON (``Tumor``, one polygon per tumour-bearing fragment,
level-0 px; crush cut out). Outputs: ``slides/<id>.tiff``, ``beds_exact/<id>.geojson``,
``masks/<id>.npz`` (4 µm/px maps: tissue, fragment label, crush, fold, nests), ``truth.csv``,
``cohort.csv`` (``slide_id,path,stil``).
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
from scipy.spatial import cKDTree

MPP = 0.5  # µm per level-0 px
C = 8  # level-0 px per coarse px (4 µm)
STRIP = 1024
LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "labels" / "tcga_bc_tils.csv"


def targets(n: int, rng: np.random.Generator, labels: Path) -> np.ndarray:
    """sTIL% targets drawn from the TCGA pathologist scores, ~30 % of them at or over 30 %."""
    if labels.is_file():
        with labels.open() as f:
            vals = np.array([float(r["tils_score"]) for r in csv.DictReader(f)])
    else:  # the shape of that file (median 12.5, 27 % >= 30) when it is not beside the checkout
        vals = np.concatenate([rng.gamma(1.2, 8.0, 250).clip(1, 29), rng.uniform(30, 90, 92)])
    hi = round(0.3 * n)
    out = np.concatenate([rng.choice(vals[vals >= 30], hi), rng.choice(vals[vals < 30], n - hi)])
    return rng.permutation(out)


def smooth_noise(shape: tuple[int, int], scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean unit-variance Gaussian-filtered noise with correlation length ``scale_px``."""
    a = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), scale_px, mode="wrap")
    return (a - a.mean()) / (a.std() + 1e-9)


def upsample(a: np.ndarray, y0: int, y1: int, xa: int, xb: int) -> np.ndarray:
    """Bilinear values of coarse map ``a`` at level-0 rows y0..y1, columns xa..xb (centres aligned, as cv2)."""
    import cv2

    r0, r1 = max(0, y0 // C - 1), min(a.shape[0], -(-y1 // C) + 1)
    c0, c1 = max(0, xa // C - 1), min(a.shape[1], -(-xb // C) + 1)
    up = cv2.resize(np.ascontiguousarray(a[r0:r1, c0:c1], np.float32), ((c1 - c0) * C, (r1 - r0) * C),
                    interpolation=cv2.INTER_LINEAR)
    return up[y0 - r0 * C:y1 - r0 * C, xa - c0 * C:xb - c0 * C]


def disc(r: float) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[-math.ceil(r):math.ceil(r) + 1, -math.ceil(r):math.ceil(r) + 1]
    keep = yy ** 2 + xx ** 2 <= r * r
    return yy[keep], xx[keep]


def ellipse(a: float, b: float, ang: float) -> tuple[np.ndarray, np.ndarray]:
    R = math.ceil(max(a, b))
    yy, xx = np.mgrid[-R:R + 1, -R:R + 1]
    u = xx * math.cos(ang) + yy * math.sin(ang)
    v = -xx * math.sin(ang) + yy * math.cos(ang)
    keep = (u / a) ** 2 + (v / b) ** 2 <= 1
    return yy[keep], xx[keep]


def stamp(m: np.ndarray, y0: int, pts: np.ndarray, vals: np.ndarray, shape: tuple[np.ndarray, np.ndarray],
          x0: int = 0) -> None:
    """Write ``vals`` into map ``m`` (rows y0.., columns x0..) over a stamp at each level-0 point (y, x)."""
    oy, ox = shape
    r = int(np.abs(oy).max()) + 1
    sel = (pts[:, 0] >= y0 - r) & (pts[:, 0] < y0 + m.shape[0] + r)
    if not sel.any():
        return
    iy = (pts[sel, 0, None] + oy[None]).astype(np.int64) - y0
    ix = (pts[sel, 1, None] + ox[None]).astype(np.int64) - x0
    v = np.broadcast_to(vals[sel, None], iy.shape)
    ok = (iy >= 0) & (iy < m.shape[0]) & (ix >= 0) & (ix < m.shape[1])
    m[iy[ok], ix[ok]] = v[ok]


def points_in(mask: np.ndarray, n: int, rng: np.random.Generator, weight: np.ndarray | None = None) -> np.ndarray:
    """``n`` level-0 points (y, x) uniformly inside coarse ``mask`` (optionally weighted)."""
    idx = np.flatnonzero(mask)
    if n <= 0 or idx.size == 0:
        return np.zeros((0, 2), np.int64)
    p = None if weight is None else weight.ravel()[idx] / weight.ravel()[idx].sum()
    pick = rng.choice(idx, int(n), p=p)
    yy, xx = np.unravel_index(pick, mask.shape)
    return np.stack([yy * C + rng.integers(0, C, len(pick)), xx * C + rng.integers(0, C, len(pick))], 1)


def layout(rng: np.random.Generator):
    """Cores as curved centrelines (coarse px), their fragments and the canvas size (coarse px)."""
    n = int(rng.choice([2, 3, 4, 5], p=[0.35, 0.4, 0.2, 0.05]))
    lens = rng.uniform(3000, 4500, n)
    lens *= min(1.0, 10000 / lens.sum())  # at most ~10 mm of core a slide (embedding time)
    cores, x = [], 400.0
    for k in range(n):
        w = rng.uniform(1000, 1400)
        ang = rng.normal(0, 0.25)
        bow = rng.uniform(-0.25, 0.25) * 1000 / (lens[k] / 2) ** 2  # sag up to 250 µm over the core
        s = np.arange(0, lens[k], 4.0)
        lx, ly = bow * (s - lens[k] / 2) ** 2, s - lens[k] / 2
        cx, cy = lx * math.cos(ang) - ly * math.sin(ang), lx * math.sin(ang) + ly * math.cos(ang)
        half = 0.5 * (abs(lens[k] * math.sin(ang)) + w)
        x += half
        cores.append(dict(s=s, x=cx + x, y=cy + rng.uniform(-300, 300), w=w, L=lens[k], ang=ang))
        x += half + rng.uniform(300, 600)
    ys = np.concatenate([c["y"] for c in cores])
    off = -ys.min() + 500
    for c in cores:
        c["y"] = c["y"] + off
    H, W = ys.max() - ys.min() + 1000, x + 500 - rng.uniform(300, 600)
    for c in cores:  # fragments: 0-2 breaks with a glass gap each
        cuts = np.sort(rng.uniform(0.2, 0.8, int(rng.choice([0, 1, 2], p=[0.35, 0.45, 0.2])))) * c["L"]
        edges, frags = [0.0, *cuts, c["L"]], []
        for a, b in zip(edges[:-1], edges[1:]):
            frags.append((a + (rng.uniform(80, 250) if a > 0 else 0), b))
        c["frags"] = [f for f in frags if f[1] - f[0] > 600] or [(0.0, c["L"])]
    to = lambda v: int(math.ceil(v / MPP / 256) * 256) // C  # noqa: E731 - coarse px, canvas a multiple of 256 px
    return cores, to(H), to(W)


def coarse_maps(cores, hc, wc, rng):
    """Per coarse px: core id, position along the core (µm), signed distance to the tissue edge (µm)."""
    yy, xx = np.mgrid[0:hc, 0:wc]
    P = np.stack([(yy.ravel() + 0.5) * C * MPP, (xx.ravel() + 0.5) * C * MPP], 1)
    best = np.full(hc * wc, -1e9, np.float32)
    cid, along = np.full(hc * wc, -1, np.int16), np.zeros(hc * wc, np.float32)
    frag = np.zeros(hc * wc, np.int16)
    nf = 0
    for k, c in enumerate(cores):
        for a, b in c["frags"]:  # one tree a fragment: past its end the nearest point is the end (rounded)
            nf += 1
            on = (c["s"] >= a) & (c["s"] <= b)
            box = ((P[:, 0] > c["y"][on].min() - c["w"]) & (P[:, 0] < c["y"][on].max() + c["w"])
                   & (P[:, 1] > c["x"][on].min() - c["w"]) & (P[:, 1] < c["x"][on].max() + c["w"]))
            d = np.full(len(P), np.inf)
            i = np.zeros(len(P), np.int64)
            d[box], i[box] = cKDTree(np.stack([c["y"][on], c["x"][on]], 1)).query(P[box], distance_upper_bound=c["w"])
            ok = np.isfinite(d)
            s = c["s"][on][np.minimum(i, on.sum() - 1)]
            wob = 1 + 0.04 * np.sin(s / 370 + k) + 0.03 * np.sin(s / 130 + 2 * k)
            edge = c["w"] / 2 * wob - np.where(ok, d, 0)
            cy_, cx_ = c["y"][on], c["x"][on]
            for e, n2 in ((0, 1), (on.sum() - 1, on.sum() - 2)):  # square-ish cut ends, not w/2 caps
                at = ok & (i == e)
                ty, tx = cy_[e] - cy_[n2], cx_[e] - cx_[n2]
                tn = math.hypot(ty, tx)
                vy, vx = P[at, 0] - cy_[e], P[at, 1] - cx_[e]
                over = (vy * ty + vx * tx) / tn
                perp = np.abs(vy * tx - vx * ty) / tn
                edge[at] = np.minimum(c["w"] / 2 * wob[at] - perp, 40 - over)
            edge = np.where(ok, edge, -1e9).astype(np.float32)
            take = edge > best
            best, cid = np.where(take, edge, best), np.where(take, k, cid)
            along, frag = np.where(take, s, along), np.where(take, nf, frag)
    field = best.reshape(hc, wc) + 12 * smooth_noise((hc, wc), 6, rng)  # ragged edge, ± ~12 µm
    return (field.astype(np.float32), cid.reshape(hc, wc), along.reshape(hc, wc).astype(np.float32),
            frag.reshape(hc, wc), nf)


def plan_slide(rng: np.random.Generator, target: float):
    cores, hc, wc = layout(rng)
    field, cid, along, frag, nf = coarse_maps(cores, hc, wc, rng)
    tissue = field > 0
    frag = np.where(tissue, frag, 0)
    ntum = max(1, int(rng.binomial(len(cores), 0.45)))
    tum_cores = set(rng.choice(len(cores), ntum, replace=False).tolist())
    zone = np.zeros_like(tissue)
    for k in tum_cores:  # the tumour occupies a stretch of the core, over one or more fragments
        L = cores[k]["L"]
        a = rng.uniform(0, 0.35) * L
        b = a + rng.uniform(0.4, 0.9) * L
        zone |= (cid == k) & (along >= a) & (along <= min(b, L))
    nest_field = smooth_noise(tissue.shape, rng.uniform(12, 25), rng) + 0.5 * smooth_noise(tissue.shape, 4, rng)
    thr = np.quantile(nest_field[zone & tissue], 1 - rng.uniform(0.35, 0.6)) if (zone & tissue).any() else 9
    nest = (nest_field - thr).astype(np.float32)  # > 0: nest (inside the zone)
    nest[~ndi.binary_erosion(zone & tissue, iterations=4)] = -1
    # crush at one end of one core (often a tumour core: the biopsy gun's end), kept off the nests
    crush = np.zeros_like(tissue)
    if rng.random() < 0.8:
        k = int(rng.choice(sorted(tum_cores))) if rng.random() < 0.6 else int(rng.integers(len(cores)))
        a, b = cores[k]["frags"][0][0], cores[k]["frags"][-1][1]
        depth = rng.uniform(300, 700)
        crush = (cid == k) & tissue & ((along < a + depth) if rng.random() < 0.5 else (along > b - depth))
        nest[crush] = -1
    fatf = smooth_noise(tissue.shape, 30, rng)
    fat = tissue & ~zone & (fatf > np.quantile(fatf, 1 - rng.uniform(0.1, 0.4))) & ~crush
    # beds: per fragment, the stretch holding nests (+30 µm), the fragment's tissue, crush cut out
    beds, bedmask = [], np.zeros_like(tissue)
    nestm = nest > 0
    for f in range(1, nf + 1):
        nf_ = nestm & (frag == f)
        if nf_.sum() < 40:  # under ~0.6 mm² of nest area is not a tumour-bearing fragment here
            nest[nf_] = -1
            continue
        s = along[nf_]
        m = ndi.binary_dilation(frag == f, iterations=2) & (along >= s.min() - 30) & (along <= s.max() + 30)
        m &= ~ndi.binary_dilation(crush, iterations=2)
        lab, n = ndi.label(m)
        if n > 1:
            m = lab == 1 + np.argmax(ndi.sum(m, lab, range(1, n + 1)))
        beds.append(m)
        bedmask |= m
    nest[~bedmask] = -1
    fold = np.zeros_like(tissue)
    for _ in range(int(rng.integers(0, 3))):  # folds on benign tissue: a doubled band across a core
        cand = tissue & ~bedmask & ~crush
        if not cand.any():
            break
        y, x = np.unravel_index(rng.choice(np.flatnonzero(cand)), cand.shape)
        th, half = rng.uniform(0, math.pi), rng.uniform(6, 20)
        yy, xx = np.mgrid[0:tissue.shape[0], 0:tissue.shape[1]]
        band = np.abs((yy - y) * math.cos(th) - (xx - x) * math.sin(th)) < half
        band &= np.hypot(yy - y, xx - x) < rng.uniform(80, 250)
        fold |= band & cand
    return dict(cores=cores, field=field, cid=cid, along=along, frag=frag, nest=nest, crush=crush, fat=fat,
                beds=beds, bed=bedmask, fold=fold, zone=zone, target=target)


def polygons(beds) -> list[np.ndarray]:
    """One outline a bed (level-0 px, x/y), from its coarse mask."""
    from skimage.measure import approximate_polygon, find_contours

    out = []
    for m in beds:
        cs = find_contours(np.pad(m, 1).astype(np.float32), 0.5)
        c = max(cs, key=len) - 1
        c = approximate_polygon(c, 0.5)
        out.append(np.stack([(c[:, 1] + 0.5) * C, (c[:, 0] + 0.5) * C], 1))
    return out


def render(plan, rng, path: Path, q: int):
    """Render strip by strip at 0.5 µm/px, write the pyramidal TIFF; the truth counts on the way."""
    import tifffile
    import cv2
    from PIL import Image, ImageDraw

    field, nest = plan["field"], plan["nest"]
    H, W = field.shape[0] * C, field.shape[1] * C
    tissue_c = field > 0
    stroma_c = tissue_c & (nest <= 0) & ~plan["fat"] & ~plan["crush"]
    # cells, as level-0 points
    bed_stroma = plan["bed"] & stroma_c
    near = ndi.gaussian_filter((nest > 0).astype(np.float32), 8) + 0.15
    a_l = math.pi * 3.3 ** 2 / MPP ** 2
    t = min(plan["target"], 92) / 100
    n_l = -math.log(1 - t) * bed_stroma.sum() * C * C / a_l * 1.04
    lym = points_in(bed_stroma, n_l, rng, near)
    benign = stroma_c & ~plan["bed"]
    lym = np.concatenate([lym, points_in(benign, benign.sum() * C * C / a_l * rng.uniform(0.01, 0.08), rng)])
    fib = points_in(stroma_c, stroma_c.sum() * C * C / 4000, rng)
    tum = points_in(nest > 0.15, (nest > 0.15).sum() * C * C / 420, rng)
    cru = points_in(plan["crush"], plan["crush"].sum() * C * C / 90, rng)
    fat_seeds = points_in(plan["fat"], plan["fat"].sum() * C * C / 9000, rng)
    fat_tree = cKDTree(fat_seeds) if len(fat_seeds) > 1 else None
    lym_shapes = [disc(6.0), disc(6.8), disc(7.4)]
    tum_shapes = [ellipse(10, 8, a) for a in (0, 0.8, 1.6, 2.4)]
    fib_shapes = [ellipse(9, 2.2, a) for a in np.linspace(0, math.pi, 6, endpoint=False)]
    k0 = plan["cores"][0]["ang"]
    cru_shapes = [ellipse(rng.uniform(14, 30), rng.uniform(2.5, 4.5), math.pi / 2 + k0 + rng.normal(0, 0.25))
                  for _ in range(4)]
    # stain: H and E optical-density vectors, jittered per slide
    Hv = np.array([0.62, 0.72, 0.30]) + rng.normal(0, 0.04, 3)
    Ev = np.array([0.10, 0.95, 0.18]) + rng.normal(0, 0.04, 3)
    Hv, Ev = (Hv / np.linalg.norm(Hv)).astype(np.float32), (Ev / np.linalg.norm(Ev)).astype(np.float32)
    hs, es = np.float32(rng.uniform(0.8, 1.25)), np.float32(rng.uniform(0.75, 1.25))
    grain = rng.standard_normal((STRIP + 8, W + 8), np.float32)  # pixel noise, reused strip to strip
    fibre = smooth_noise(field.shape, 1.2, rng) + 0.6 * smooth_noise(field.shape, 5, rng)
    polys = polygons(plan["beds"])
    L_cnt = S_cnt = 0
    lvl1 = np.zeros((H // 4, W // 4, 3), np.uint8)

    glass = np.uint8(round(255 * math.exp(-0.035))) + np.zeros(3, np.uint8)

    def strips():
        nonlocal L_cnt, S_cnt
        for y0 in range(0, H, STRIP):
            y1 = min(H, y0 + STRIP)
            h = y1 - y0
            cols = np.flatnonzero(tissue_c[max(0, y0 // C - 2):y1 // C + 2].any(0))
            rgb = np.broadcast_to(glass, (h, W, 3)).copy()
            if cols.size == 0:
                lvl1[y0 // 4:y1 // 4] = glass
                yield from tiles(rgb, h)
                continue
            xa, xb = max(0, (cols[0] - 2) * C // 256 * 256), min(W, -(-(cols[-1] + 3) * C // 256) * 256)
            Wc = xb - xa
            tis = upsample(field, y0, y1, xa, xb) > 0
            nst = (upsample(nest, y0, y1, xa, xb) > 0) & tis
            cr = upsample(plan["crush"].astype(np.float32), y0, y1, xa, xb) > 0.5
            fa = (upsample(plan["fat"].astype(np.float32), y0, y1, xa, xb) > 0.5) & tis & ~nst
            fo = (upsample(plan["fold"].astype(np.float32), y0, y1, xa, xb) > 0.5) & tis
            fb = upsample(fibre, y0, y1, xa, xb)
            Hm = np.where(tis, 0.06, 0.0).astype(np.float32)
            Em = np.where(tis, 0.42 + 0.12 * fb + 0.05 * grain[:h, :Wc], 0).astype(np.float32)
            Em[nst] = 0.30
            Hm[nst] = 0.16
            # fat: empty vacuoles with pink membranes
            if fat_tree is not None and fa.any():
                yy, xx = np.nonzero(fa)
                d, i = fat_tree.query(np.stack([yy + y0, xx + xa], 1), k=2)
                mem = (d[:, 1] - d[:, 0]) < 3.0
                Em[yy, xx] = np.where(mem, 0.45, 0.02)
                Hm[yy, xx] = np.where(mem, 0.05, 0.0)
            T = np.zeros((h, Wc), np.float32)  # tumour nuclei (vesicular: darker rim)
            for j, sh in enumerate(tum_shapes):
                stamp(T, y0, tum[j::4], rng.uniform(0.45, 0.7, len(tum[j::4])).astype(np.float32), sh, xa)
            T[~nst] = 0
            Hm = np.where(T > 0, T, Hm)
            F = np.zeros((h, Wc), np.float32)
            for j, sh in enumerate(fib_shapes):
                stamp(F, y0, fib[j::6], rng.uniform(0.55, 0.85, len(fib[j::6])).astype(np.float32), sh, xa)
            F[~tis | nst | fa] = 0
            Hm = np.maximum(Hm, F)
            Lm = np.zeros((h, Wc), np.float32)
            for j, sh in enumerate(lym_shapes):
                stamp(Lm, y0, lym[j::3], rng.uniform(1.1, 1.6, len(lym[j::3])).astype(np.float32), sh, xa)
            Lm[~tis | nst | fa | cr] = 0
            Hm = np.where(Lm > 0, Lm, Hm)
            Em = np.where(Lm > 0, 0.08, Em)
            if cr.any():  # crush: smeared, streaked dark chromatin over a blue haze
                Cm = np.zeros((h, Wc), np.float32)
                for j, sh in enumerate(cru_shapes):
                    stamp(Cm, y0, cru[j::4], rng.uniform(0.8, 1.5, len(cru[j::4])).astype(np.float32), sh, xa)
                Hm = np.where(cr & tis, np.maximum(0.45 + 0.1 * fb, Cm), Hm)
                Em = np.where(cr & tis, 0.25, Em)
            # truth inside the bed polygons
            im = Image.new("1", (Wc, h))
            for p in polys:
                ImageDraw.Draw(im).polygon([(float(x) - xa, float(y) - y0) for x, y in p], fill=1)
            bedm = np.asarray(im, bool)
            strom = bedm & tis & ~nst & ~fa & ~cr
            S_cnt += int(strom.sum())
            L_cnt += int((strom & (Lm > 0)).sum())
            od = (hs * Hm[..., None] * Hv + es * Em[..., None] * Ev) * np.where(fo, np.float32(1.8), np.float32(1))[..., None]
            od += 0.035 + 0.01 * grain[(y0 // STRIP) % 7:h + (y0 // STRIP) % 7, 3:Wc + 3, None]
            rgb[:, xa:xb] = np.clip(255 * np.exp(-od), 0, 255).astype(np.uint8)
            lvl1[y0 // 4:y1 // 4] = cv2.resize(rgb, (W // 4, h // 4), interpolation=cv2.INTER_AREA)
            yield from tiles(rgb, h)

    def tiles(rgb, h):
        for ty in range(0, h, 256):
            for tx in range(0, W, 256):
                yield rgb[ty:ty + 256, tx:tx + 256]

    res = dict(resolution=(1e4 / MPP, 1e4 / MPP), resolutionunit="CENTIMETER")
    tmp = path.with_suffix(".tmp.tiff")
    with tifffile.TiffWriter(tmp, bigtiff=False) as tw:
        tw.write(strips(), shape=(H, W, 3), dtype=np.uint8, tile=(256, 256), photometric="rgb",
                 compression="jpeg", compressionargs={"level": q}, **res)
        lvl = lvl1
        f = 4
        while True:
            tw.write(lvl, tile=(256, 256), photometric="rgb", compression="jpeg", compressionargs={"level": q}, subfiletype=1,
                     resolution=(1e4 / (MPP * f), 1e4 / (MPP * f)), resolutionunit="CENTIMETER")
            if min(lvl.shape[:2]) < 1024:
                break
            hh, ww = lvl.shape[0] // 4 * 4, lvl.shape[1] // 4 * 4
            lvl = cv2.resize(lvl[:hh, :ww], (ww // 4, hh // 4), interpolation=cv2.INTER_AREA)
            f *= 4
    tmp.replace(path)
    return 100.0 * L_cnt / max(S_cnt, 1), S_cnt * MPP * MPP / 1e6, polys


def geojson(polys) -> dict:
    feats = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
        [[round(float(x), 1), round(float(y), 1)] for x, y in [*p, p[0]]]]},
        "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}}
        for p in polys]
    return {"type": "FeatureCollection", "features": feats}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--slides", type=int, default=24, help="number of slides (default 24)")
    ap.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    ap.add_argument("--quality", type=int, default=85, help="JPEG quality of the TIFF tiles (default 85)")
    ap.add_argument("--labels", type=Path, default=LABELS, help="TCGA sTIL label CSV (tils_score column)")
    ap.add_argument("--only", type=int, nargs="*", help="render only these slide numbers (debugging)")
    a = ap.parse_args(argv)
    for d in ("slides", "beds_exact", "masks"):
        (a.out / d).mkdir(parents=True, exist_ok=True)
    tg = targets(a.slides, np.random.default_rng(a.seed), a.labels)
    rows = []
    for i in range(a.slides):
        if a.only and i not in a.only:
            continue
        t0 = time.time()
        sid = f"og42a_{i:03d}"
        rng = np.random.default_rng([a.seed, i])
        plan = plan_slide(rng, float(tg[i]))
        stil, area, polys = render(plan, rng, a.out / "slides" / f"{sid}.tiff", a.quality)
        (a.out / "beds_exact" / f"{sid}.geojson").write_text(json.dumps(geojson(polys)))
        np.savez_compressed(a.out / "masks" / f"{sid}.npz", tissue=plan["field"] > 0, frag=plan["frag"],
                            crush=plan["crush"], fold=plan["fold"], nest=plan["nest"] > 0, bed=plan["bed"],
                            coarse_um=np.float32(C * MPP))
        tum_frags = len(polys)
        rows.append(dict(slide_id=sid, stil=round(stil, 3), target=round(float(tg[i]), 2),
                         n_cores=len(plan["cores"]), n_fragments=int(plan["frag"].max()), n_bed_fragments=tum_frags,
                         bed_stroma_mm2=round(area, 4), crush=int(plan["crush"].any()),
                         folds=int(plan["fold"].any()), seconds=round(time.time() - t0, 1)))
        (a.out / "masks" / f"{sid}.json").write_text(json.dumps(rows[-1]))
        print(json.dumps(rows[-1]), flush=True)
    rows = [json.loads(p.read_text()) for p in sorted((a.out / "masks").glob("og42a_*.json"))]
    with (a.out / "truth.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with (a.out / "cohort.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["slide_id", "path", "stil"])
        for r in rows:
            w.writerow([r["slide_id"], str((a.out / "slides" / f"{r['slide_id']}.tiff").resolve()), r["stil"]])


if __name__ == "__main__":
    main()
