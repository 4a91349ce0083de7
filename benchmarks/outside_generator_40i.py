"""A second outside tester's breast H&E generator (hunt 40i), independent of weakstil.synth and of 40c's.

What differs from both: scanned at 0.25 µm/px (40x); glandular tumour (tubules with lumens, cribriform
nests with holes), lobular single-file cords and solid nests, elliptic overlapping tumour nuclei of
varying size; stroma with collagen fibres, many spindle fibroblasts, plasma cells and eosinophils;
a strongly blue haematoxylin with orange eosin, or a faded washed-out stain; blur on some slides; JPEG.

Truth (TILs Working Group: mononuclear cells, lymphocytes and plasma cells, in the bed's stroma):
sTIL% = area of lymphocytes + plasma cells in the bed's stroma / the bed's stromal area.
Eosinophils and fibroblasts are stroma; intratumoural lymphocytes and the tumour (cords included) are not.

    .venv/bin/python benchmarks/outside_generator_40i.py --out DIR --slides 30 --seed 401 \
        [--extra 34,41,47,55]   # the cohort of docs/tumorbed-quality.md, "A second outside look, hunt 40i":
    # the 30 TCGA-like draws, then 4 slides for the 30-60 % band the draw left empty (labels_extra.csv)
Writes DIR/<id>.tif (tiled JPEG pyramid, 0.25 µm/px in the resolution tags), DIR/beds/<id>.geojson
(QuPath "Tumor" polygon, level-0 px, pixel_size_um 0.25), DIR/labels.csv (slide_id, path, stil, group, look, blur).
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import tifffile

MPP = 0.25
U = 1 / MPP  # px per µm
LOOKS = {  # OD vectors (R, G, B) of haematoxylin / eosin, gains, glass colour
    "blue_orange": ([0.78, 0.57, 0.25], [0.05, 0.45, 0.89], 1.25, 1.0, (244, 243, 240)),
    "faded": ([0.60, 0.66, 0.45], [0.15, 0.78, 0.60], 0.45, 0.42, (246, 241, 228)),
    "slate": ([0.70, 0.62, 0.35], [0.10, 0.62, 0.78], 0.9, 0.7, (238, 238, 238)),
}


def blob(rng, cx, cy, r, rough=0.2, n=120):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rr = np.ones(n)
    for k in range(2, 7):
        rr += rng.normal(0, rough / k) * np.cos(k * t + rng.uniform(0, 6.3))
    rr = np.clip(rr, 0.5, 1.5) * r
    return np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], 1)


def fill(mask, poly, v=1):
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], v)


def noise(rng, S, scale):
    k = max(2, int(S / scale))
    return cv2.resize(rng.standard_normal((k, k)).astype(np.float32), (S, S), interpolation=cv2.INTER_CUBIC)


def sample(rng, mask, n, weight=None, step=8):
    """n pixel positions inside mask, optionally weighted (weight at 1/step resolution)."""
    small = mask[::step, ::step] > 0
    ys, xs = np.nonzero(small)
    if len(ys) == 0:
        return np.zeros((0, 2))
    p = None
    if weight is not None:
        w = weight[ys, xs].astype(np.float64)
        p = w / w.sum()
    i = rng.choice(len(ys), n, p=p)
    return np.stack([xs[i] * step + rng.uniform(0, step, n), ys[i] * step + rng.uniform(0, step, n)], 1)


def tumour(rng, S, bed, frac, mix, u):
    """Tumour, lumen and nucleus-centre lists inside the bed: solid, tubular, cribriform, lobular cords."""
    tum = np.zeros((S, S), np.uint8)
    lum = np.zeros((S, S), np.uint8)
    inner = cv2.erode(bed, np.ones((int(60 * u), int(60 * u)), np.uint8))
    target = frac * bed.sum()
    kinds = list(mix)
    p = np.array([mix[k] for k in kinds])
    for _ in range(400):
        if tum.sum() >= target:
            break
        kind = rng.choice(kinds, p=p / p.sum())
        cx, cy = sample(rng, inner, 1, step=2)[0]
        new = np.zeros_like(tum)
        if kind == "cords":
            pts, a = [(cx, cy)], rng.uniform(0, 6.3)
            for _ in range(int(rng.uniform(15, 45))):
                a += rng.normal(0, 0.25)
                pts.append((pts[-1][0] + 9 * u * np.cos(a), pts[-1][1] + 9 * u * np.sin(a)))
            for x, y in pts:
                if 0 <= x < S and 0 <= y < S and bed[int(y), int(x)]:
                    cv2.circle(new, (int(x), int(y)), int(5.5 * u), 1, -1)
        else:
            r = {"solid": rng.uniform(40, 120), "tubule": rng.uniform(22, 55), "cribriform": rng.uniform(70, 140)}[kind] * u
            fill(new, blob(rng, cx, cy, r, 0.25 if kind == "solid" else 0.12))
            if kind == "tubule":
                fill(lum, blob(rng, cx, cy, r * rng.uniform(0.4, 0.6), 0.1))
            if kind == "cribriform":
                for x, y in sample(rng, cv2.erode(new, np.ones((int(25 * u),) * 2, np.uint8)), int(rng.integers(4, 11)), step=2):
                    cv2.circle(lum, (int(x), int(y)), int(rng.uniform(8, 18) * u), 1, -1)
        new &= bed
        if (new & cv2.dilate(tum, np.ones((int(12 * u),) * 2, np.uint8))).any():
            continue
        tum |= new
    lum &= tum
    return tum, lum


def stain_layers(rng, S, m, target):
    """H and E optical-density maps and the exact truth."""
    tissue, bed, tum, lum, fat, duct = m["tissue"], m["bed"], m["tum"], m["lum"], m["fat"], m["duct"]
    stroma = tissue & (1 - tum) & (1 - fat) & (1 - duct) & (1 - lum)
    epi = (tum | duct) & (1 - lum)
    H = np.zeros((S, S), np.float32)
    E = np.zeros((S, S), np.float32)
    # collagen: fibres along a smooth orientation field, wavy, with gaps
    ang = noise(rng, S // 2, 150 * U / 2) * 1.2
    fibres = np.zeros((S // 2, S // 2), np.float32)
    for x, y in sample(rng, stroma[::2, ::2], int(stroma.sum() / (300 * U * U)), step=4):
        pts = [(x, y)]
        for _ in range(8):
            a = ang[min(int(pts[-1][1]), S // 2 - 1), min(int(pts[-1][0]), S // 2 - 1)] + rng.normal(0, 0.15)
            pts.append((pts[-1][0] + 8 * np.cos(a) * U / 2, pts[-1][1] + 8 * np.sin(a) * U / 2))
        cv2.polylines(fibres, [np.int32(pts)], False, float(rng.uniform(0.1, 0.3)), int(rng.integers(1, 3)))
    coll = cv2.resize(0.2 + fibres + 0.05 * noise(rng, S // 2, 40 * U / 2), (S, S))
    E += stroma * np.clip(coll, 0.05, 0.6)
    E += epi * np.float32(0.42) + fat * np.float32(0.015)
    H += epi * np.float32(0.12)
    # fat: adipocyte membranes
    for x, y in sample(rng, fat, int(fat.sum() / (900 * U * U)) + 1):
        cv2.circle(E, (int(x), int(y)), int(rng.uniform(25, 45) * U), 0.35, 3)
    E *= (1 - lum)
    ell = cv2.ellipse
    # tumour nuclei: elliptic, 4-9 µm semi-axes, overlapping (two layers add), vesicular
    la, lb = np.zeros_like(H), np.zeros_like(H)
    n_t = int(tum.sum() / (55 * U * U))
    for j, (x, y) in enumerate(sample(rng, tum & (1 - lum), n_t)):
        a = rng.uniform(4, 9) * U
        ell(la if j % 2 else lb, (int(x), int(y)), (int(a), int(a * rng.uniform(0.55, 0.85))), rng.uniform(0, 180), 0, 360,
            float(rng.uniform(0.35, 0.7)), -1)
    tex = 0.75 + 0.35 * noise(rng, S, 1.5 * U)
    H += (la + lb) * tex
    for x, y in sample(rng, duct & (1 - lum), int(duct.sum() / (40 * U * U)) + 1):  # small regular duct nuclei
        ell(H, (int(x), int(y)), (int(3.5 * U), int(2.5 * U)), rng.uniform(0, 180), 0, 360, 0.8, -1)
    # fibroblasts: spindles along the fibres
    for x, y in sample(rng, stroma, int(stroma.sum() / (350 * U * U))):
        a = ang[int(y) // 2, int(x) // 2] * 57.3
        ell(H, (int(x), int(y)), (int(rng.uniform(5, 9) * U), int(rng.uniform(0.7, 1.2) * U)), float(a), 0, 360, 0.85, -1)
    # eosinophils (stroma, not counted): orange granular cytoplasm, bilobed nucleus
    for x, y in sample(rng, stroma & bed, int(rng.uniform(20, 150) * (stroma & bed).sum() / 1e6 / U / U)):
        cv2.circle(E, (int(x), int(y)), int(6 * U), 0.95, -1)
        for s in (-1, 1):
            cv2.circle(H, (int(x + s * 2 * U), int(y)), int(2.2 * U), 0.9, -1)
    # mononuclear cells: lymphocytes and plasma cells, clustered, denser near tumour, up to the target cover
    bs = stroma & bed
    near = cv2.distanceTransform(1 - tum[::8, ::8], cv2.DIST_L2, 5)
    w = np.exp(-near / (80 * U / 8)) + 0.3 * np.exp(noise(rng, S // 8, 100 * U / 8))
    mono = np.zeros((S, S), np.uint8)
    plas_share = rng.uniform(0.05, 0.3)
    nb, area_b = bs.sum(), 0
    while area_b / nb < target / 100:
        n = int(max(50, (target / 100 - area_b / nb) * nb / (40 * U * U) * 1.3))
        for x, y in sample(rng, bs, n, w):
            c = (int(x), int(y))
            if rng.random() < plas_share:
                a = rng.uniform(0, 180)
                ell(mono, c, (int(5 * U), int(4 * U)), a, 0, 360, 2, -1)
                ell(mono, (int(x + 1.5 * U), int(y)), (int(2.8 * U), int(2.8 * U)), 0, 0, 360, 3, -1)
            else:
                cv2.circle(mono, c, int(rng.uniform(3.0, 3.8) * U), 1, -1)
        area_b = np.count_nonzero(mono & np.where(bs, 3, 0).astype(np.uint8))
    for x, y in sample(rng, stroma & (1 - bed), int((stroma & (1 - bed)).sum() * rng.uniform(0.01, 0.05) / (40 * U * U)) + 1):
        cv2.circle(mono, (int(x), int(y)), int(3.4 * U), 1, -1)  # sparse TILs outside the bed (not counted)
    for x, y in sample(rng, tum & (1 - lum), int(tum.sum() * 0.01 / (40 * U * U)) + 1):
        cv2.circle(mono, (int(x), int(y)), int(3.4 * U), 1, -1)  # intratumoural (not counted)
    truth = 100 * np.count_nonzero(mono & np.where(bs, 3, 0).astype(np.uint8)) / nb
    lym = mono == 1
    H[lym] = 1.15
    E[lym] *= 0.3
    H[mono == 2] = 0.3
    E[mono == 2] = 0.25
    H[mono == 3] = 1.0
    for x, y in sample(rng, tum & (1 - lum), n_t // 3):  # nucleoli
        cv2.circle(H, (int(x), int(y)), int(0.8 * U), 1.2, -1)
    return H, E, truth


def make_slide(rng, S, target, look, blur):
    g = 1.0  # geometry is laid at 1 µm/px, then resized to the scan's 0.25 µm/px
    Sg = int(S / U * g)
    tissue = np.zeros((Sg, Sg), np.uint8)
    fill(tissue, blob(rng, Sg / 2, Sg / 2, Sg * 0.47, 0.15))
    bed = np.zeros_like(tissue)
    bed_poly = blob(rng, Sg / 2 + rng.normal(0, Sg * 0.04), Sg / 2 + rng.normal(0, Sg * 0.04), Sg * rng.uniform(0.22, 0.3), 0.3)
    fill(bed, bed_poly)
    tissue |= cv2.dilate(bed, np.ones((int(150 * g),) * 2, np.uint8))  # the bed lies within the tissue
    mix = dict(zip(("solid", "tubule", "cribriform", "cords"), rng.dirichlet([1.0, 1.2, 0.8, 0.9])))
    tum, lum = tumour(rng, Sg, bed, rng.uniform(0.25, 0.45), mix, g)
    out = tissue & (1 - cv2.dilate(bed, np.ones((int(100 * g),) * 2, np.uint8)))
    fat, duct = np.zeros_like(tissue), np.zeros_like(tissue)
    for x, y in sample(rng, out, int(rng.integers(1, 4)), step=2):
        fill(fat, blob(rng, x, y, rng.uniform(100, 220) * g, 0.3))
    for x, y in sample(rng, out, int(rng.integers(1, 4)), step=2):
        r = rng.uniform(25, 45) * g
        fill(duct, blob(rng, x, y, r, 0.08))
        fill(lum, blob(rng, x, y, r * 0.45, 0.05))
    fat &= out
    duct &= out & (1 - fat)
    lum &= tum | duct

    def up(mk):
        return (cv2.resize(mk.astype(np.float32), (S, S), interpolation=cv2.INTER_LINEAR) > 0.5).astype(np.uint8)
    tissue, tum, lum, fat, duct = map(up, (tissue, tum, lum, fat, duct))
    bed_poly = bed_poly * (U / g)
    bed = np.zeros((S, S), np.uint8)
    fill(bed, bed_poly)
    m = dict(tissue=tissue, bed=bed, tum=tum, lum=lum, fat=fat, duct=duct)
    H, E, truth = stain_layers(rng, S, m, target)
    vh, ve, gh, ge, glass = LOOKS[look]
    sig = 0.9 + (rng.uniform(2.0, 3.0) if blur else 0)
    H, E = cv2.GaussianBlur(H, (0, 0), sig), cv2.GaussianBlur(E, (0, 0), sig)
    rgb = np.empty((S, S, 3), np.uint8)
    gh, ge = gh * rng.uniform(0.85, 1.15), ge * rng.uniform(0.85, 1.15)
    for c in range(3):
        od = gh * vh[c] * H + ge * ve[c] * E
        rgb[..., c] = np.clip(glass[c] * np.exp(-od) + rng.standard_normal((S, S), dtype=np.float32) * 2, 0, 255)
    return rgb, bed_poly, truth, mix


def write_tiff(path, rgb, q):
    with tifffile.TiffWriter(path) as tw:
        lvl, f = rgb, 1
        while True:
            tw.write(lvl, tile=(512, 512), compression="jpeg", compressionargs={"level": q}, photometric="rgb",
                     resolution=(1e4 / (MPP * f), 1e4 / (MPP * f)), resolutionunit="CENTIMETER", subfiletype=int(f > 1))
            if min(lvl.shape[:2]) < 1200:
                break
            lvl, f = cv2.resize(lvl, (lvl.shape[1] // 2, lvl.shape[0] // 2), interpolation=cv2.INTER_AREA), f * 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--slides", type=int, default=34)
    ap.add_argument("--seed", type=int, default=401)
    ap.add_argument("--size-mm", type=float, default=2.0)
    ap.add_argument("--only", type=int, default=-1)
    ap.add_argument("--extra", default="", help="extra slides after --slides with these targets (comma-separated %%)")
    ap.add_argument("--labels", default=str(Path(__file__).resolve().parents[2] / "shared/data/labels/tcga_bc_tils.csv"))
    a = ap.parse_args()
    out = Path(a.out)
    (out / "beds").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    tcga = np.array([float(r["tils_score"]) for r in csv.DictReader(open(a.labels))])
    t = rng.choice(tcga, a.slides) * rng.uniform(0.9, 1.1, a.slides)
    k = min(7, a.slides)  # at least 6 slides over 60 %
    hi = np.argsort(t)[::-1][:k]
    t[hi] = np.maximum(t[hi], rng.uniform(63, 88, k))
    extra = [float(v) for v in a.extra.split(",") if v]
    if extra:  # e.g. to fill the 30-60 % band the TCGA draw left empty
        t = np.concatenate([t, extra])
    S = int(round(a.size_mm * 1000 * U))
    looks = list(LOOKS)
    rows = []
    for i in range(len(t)):
        if (a.only >= 0 and i != a.only) or (extra and i < a.slides):
            continue
        sid, look = f"og40i_{i:03d}", looks[i % 3]
        srng = np.random.default_rng([a.seed, i])
        blur = bool(srng.random() < 0.3)
        rgb, poly, truth, mix = make_slide(srng, S, float(np.clip(t[i], 0.5, 90)), look, blur)
        write_tiff(out / f"{sid}.tif", rgb, int(srng.integers(70, 93)))
        feat = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[float(x), float(y)] for x, y in
                list(poly) + [poly[0]]]]}, "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}}
        (out / "beds" / f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection", "pixel_size_um": MPP,
                                                                 "features": [feat]}))
        rows.append(dict(slide_id=sid, path=str((out / f"{sid}.tif").resolve()), stil=round(truth, 3), group=look,
                         blur=int(blur), mix=" ".join(f"{k}:{v:.2f}" for k, v in mix.items())))
        print(sid, f"target {t[i]:.1f} truth {truth:.2f}", look, blur, flush=True)
    with open(out / ("labels_extra.csv" if extra else "labels.csv" if a.only < 0 else f"labels_{a.only}.csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)


if __name__ == "__main__":
    main()
