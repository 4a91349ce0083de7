"""An outside tester's breast H&E slide generator (hunt 40c), independent of weakstil.synth.

Follows the TILs Working Group's sTIL definition: the tumour bed is the invasive tumour's region
(nests and the stroma between and around them up to the invasive front); sTIL% = area of the
bed's stroma covered by lymphocytes / the bed's stromal area. Intratumoural lymphocytes,
lymphoid aggregates outside the bed, normal ducts, fat and necrosis are excluded by construction.

Look: pink-magenta eosin, violet haematoxylin, pale, small lymphocytes (r 2.8 µm).

    .venv/bin/python benchmarks/outside_generator_40c.py --out DIR --slides 40 --seed 40 [--size-mm 2]
(seed 40 made the cohort of docs/tumorbed-quality.md, "An outside look, hunt 40c").

Writes DIR/<id>.tif (tiled JPEG page pyramid, 0.5 µm/px in the TIFF resolution tags),
DIR/beds/<id>.geojson (the exact bed, QuPath annotation "Tumor", level-0 px, `pixel_size_um`),
DIR/labels.csv (slide_id, path, stil, group) with the exact truth.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import tifffile

MPP = 0.5
UM = 1 / MPP  # px per µm
# own stain vectors (optical density per R, G, B): violet haematoxylin, magenta eosin
V_H = np.array([0.52, 0.86, 0.30])
V_E = np.array([0.10, 0.90, 0.42])


def polar_shape(rng, cx, cy, r, rough=0.25, n=180, harmonics=6):
    """Closed polygon (n, 2) of radius r with low-frequency wobble."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rr = np.ones(n)
    for k in range(2, 2 + harmonics):
        rr += rng.normal(0, rough / k) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    rr = np.clip(rr, 0.45, 1.6) * r
    return np.stack([cx + rr * np.cos(t), cy + rr * np.sin(t)], 1)


def fill(shape, poly, val=1, img=None):
    img = np.zeros(shape, np.uint8) if img is None else img
    cv2.fillPoly(img, [np.round(poly).astype(np.int32)], val)
    return img


def smooth_noise(rng, shape, scale_px):
    h, w = shape
    small = rng.standard_normal((max(2, int(h / scale_px)) + 2, max(2, int(w / scale_px)) + 2)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return (big - big.mean()) / (big.std() + 1e-6)


_NZ = {}  # the last mask's pixel indices: np.nonzero of 16 Mpx costs 0.1 s, and one mask is sampled often


def sample_in(rng, mask, n, weight=None):
    """n random pixel positions (x, y) in mask, optionally weighted; masks are not changed once sampled."""
    if _NZ.get("mask") is not mask:
        _NZ.update(mask=mask, nz=np.nonzero(mask))
    ys, xs = _NZ["nz"]
    if len(ys) == 0:
        return np.zeros((0, 2))
    p = None
    if weight is not None:
        p = weight[ys, xs].astype(np.float64)
        p /= p.sum()
    i = rng.choice(len(ys), size=n, p=p)
    return np.stack([xs[i], ys[i]], 1) + rng.uniform(-0.5, 0.5, (n, 2))


def disks(shape, pts, r_um, rng, out=None, jitter=0.15):
    out = np.zeros(shape, np.uint8) if out is None else out
    for x, y in pts:
        r = r_um * UM * (1 + rng.uniform(-jitter, jitter))
        cv2.circle(out, (int(x), int(y)), max(1, int(round(r))), 1, -1)
    return out


def nests(rng, shape, bed, kind_w):
    """Tumour nest mask inside the bed: solid blobs, cords, scattered clusters."""
    tum = np.zeros(shape, np.uint8)
    bs = bed[::4, ::4]
    target = rng.uniform(0.25, 0.5) * bs.sum()
    inner = cv2.erode(bed, np.ones((31, 31), np.uint8))
    while (tum[::4, ::4] & bs).sum() < target:
        kind = rng.choice(3, p=kind_w)
        (cx, cy), = sample_in(rng, inner, 1)
        if kind == 0:  # solid nest
            fill(shape, polar_shape(rng, cx, cy, rng.uniform(35, 140) * UM, 0.35, 60), 1, tum)
        elif kind == 1:  # cord: a thick wavy line
            ang, L = rng.uniform(0, np.pi), rng.uniform(80, 300) * UM
            s = np.linspace(-0.5, 0.5, 12)[:, None]
            d = np.array([np.cos(ang), np.sin(ang)])
            pts = np.array([cx, cy]) + s * L * d + np.outer(np.sin(s[:, 0] * 6 + rng.uniform(0, 6)), [-d[1], d[0]]) * 12 * UM
            cv2.polylines(tum, [pts.astype(np.int32)], False, 1, int(rng.uniform(10, 26) * UM))
        else:  # scattered small clusters
            for x, y in np.array([cx, cy]) + rng.normal(0, 60 * UM, (8, 2)):
                cv2.circle(tum, (int(x), int(y)), int(rng.uniform(6, 16) * UM), 1, -1)
    return tum & bed


def make_slide(rng, size_px, stil_target):
    shape = (size_px, size_px)
    c = size_px / 2
    tissue = fill(shape, polar_shape(rng, c + rng.normal(0, 40), c + rng.normal(0, 40), 0.44 * size_px, 0.3))
    ang = rng.uniform(0, 2 * np.pi)
    off = rng.uniform(0, 0.12) * size_px
    bed_poly = polar_shape(rng, c + off * np.cos(ang), c + off * np.sin(ang), rng.uniform(0.17, 0.26) * size_px, 0.3, 240)
    bed = fill(shape, bed_poly) & cv2.erode(tissue, np.ones((81, 81), np.uint8))
    bed_poly = max(cv2.findContours(bed, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0], key=cv2.contourArea)[:, 0, :]
    bed = fill(shape, bed_poly)
    far = cv2.erode(tissue, np.ones((61, 61), np.uint8)) & (cv2.dilate(bed, np.ones((401, 401), np.uint8)) == 0)
    kind_w = rng.dirichlet([1.5, 1, 0.8])
    tum = nests(rng, shape, bed, kind_w)
    # necrosis: the core of the largest solid nest, on a third of slides
    necro = np.zeros(shape, np.uint8)
    if rng.random() < 0.35:
        big = cv2.erode(tum, np.ones((101, 101), np.uint8))
        if big.any():
            necro = cv2.dilate(big, np.ones((41, 41), np.uint8)) & tum
    # outside the bed: fat lobules, normal ducts, lymphoid aggregates
    fat = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(1, 4)):
        if far.any():
            (x, y), = sample_in(rng, far, 1)
            fill(shape, polar_shape(rng, x, y, rng.uniform(100, 260) * UM, 0.35, 60), 1, fat)
    fat &= tissue & (bed == 0)
    ducts, lumen = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for _ in range(rng.integers(2, 6)):
        if far.any():
            (x, y), = sample_in(rng, far & (fat == 0), 1)
            a, b = rng.uniform(25, 55) * UM, rng.uniform(20, 40) * UM
            cv2.ellipse(ducts, (int(x), int(y)), (int(a), int(b)), rng.uniform(0, 180), 0, 360, 1, -1)
            cv2.ellipse(lumen, (int(x), int(y)), (int(a - 12 * UM), int(b - 12 * UM)), 0, 0, 360, 1, -1)
    aggr = np.zeros(shape, np.uint8)
    for _ in range(rng.integers(1, 4)):
        if far.any():
            (x, y), = sample_in(rng, far & (fat == 0) & (ducts == 0), 1)
            fill(shape, polar_shape(rng, x, y, rng.uniform(60, 130) * UM, 0.2, 60), 1, aggr)
    aggr &= tissue & (bed == 0)
    stroma = tissue & (tum == 0) & (fat == 0) & (ducts == 0)
    stroma_bed = stroma & bed
    # stromal lymphocytes in the bed: clustered (smooth weight, more near nests), until the target cover
    small = cv2.resize(tum.astype(np.float32), (size_px // 8, size_px // 8), interpolation=cv2.INTER_AREA)
    near = cv2.resize(cv2.GaussianBlur(small, (0, 0), 40 * UM / 8), shape[::-1], interpolation=cv2.INTER_LINEAR)
    w = np.exp(1.2 * smooth_noise(rng, shape, 120 * UM)) * (0.3 + near / (near.max() + 1e-6))
    lym = np.zeros(shape, np.uint8)
    r_lym = 2.8
    n_str = stroma_bed.sum()
    area = np.pi * (r_lym * UM) ** 2
    while (lym & stroma_bed).sum() < stil_target / 100 * n_str:
        need = stil_target / 100 * n_str - (lym & stroma_bed).sum()
        disks(shape, sample_in(rng, stroma_bed, int(max(50, 1.2 * need / area)), w), r_lym, rng, lym)
    lym &= stroma_bed
    # background lymphocytes in the stroma outside the bed, intratumoural ones, and the aggregates
    out = stroma & (bed == 0)
    if out.any():
        disks(shape, sample_in(rng, out, int(rng.uniform(0.005, 0.03) * out.sum() / area)), r_lym, rng, lym)
    n_itl = int(rng.uniform(0.01, 0.03 + 0.001 * stil_target) * tum.sum() / area)
    if n_itl:
        disks(shape, sample_in(rng, tum & (necro == 0), n_itl), r_lym, rng, lym)
    if aggr.any():
        disks(shape, sample_in(rng, aggr, int(1.6 * aggr.sum() / area)), r_lym, rng, lym)
    lym &= tissue & (fat == 0) & (lumen == 0)
    truth = 100.0 * (lym & stroma_bed).sum() / max(1, stroma_bed.sum())
    return dict(tissue=tissue, bed=bed, bed_poly=bed_poly, tum=tum, necro=necro, fat=fat, ducts=ducts,
                lumen=lumen, stroma=stroma, lym=lym, aggr=aggr), truth


def render(rng, m, shape):
    """Optical densities of H and E per pixel, then RGB."""
    f32 = np.float32
    H = np.zeros(shape, f32)
    E = np.zeros(shape, f32)
    fib = cv2.GaussianBlur(rng.standard_normal(shape).astype(f32), (0, 0), sigmaX=6, sigmaY=1.2)
    fib = cv2.warpAffine(fib, cv2.getRotationMatrix2D((shape[1] / 2, shape[0] / 2), rng.uniform(0, 180), 1), shape[::-1],
                         borderMode=cv2.BORDER_REFLECT)
    fib /= fib.std() + 1e-6
    st = m["stroma"] > 0
    E[st] = (0.42 + 0.10 * fib[st]).clip(0.1, 0.8)
    H[st] = 0.03
    # fibroblast nuclei: thin dark spindles in stroma
    spind = np.zeros(shape, np.uint8)
    for x, y in sample_in(rng, m["stroma"], int(m["stroma"].sum() / 9000)):
        cv2.ellipse(spind, (int(x), int(y)), (int(rng.uniform(5, 9) * UM), int(1.2 * UM)), rng.uniform(0, 180), 0, 360, 1, -1)
    spind &= m["stroma"]
    H[spind > 0] = 0.75
    tum = m["tum"] > 0
    E[tum] = 0.32
    H[tum] = 0.16
    nuc = np.zeros(shape, np.uint8)
    for x, y in sample_in(rng, m["tum"], int(m["tum"].sum() / (np.pi * (5.5 * UM) ** 2))):
        a = rng.uniform(4.0, 6.5) * UM
        cv2.ellipse(nuc, (int(x), int(y)), (int(a), int(a * rng.uniform(0.65, 1))), rng.uniform(0, 180), 0, 360, 1, -1)
    nuc &= m["tum"]
    chrom = cv2.GaussianBlur(rng.standard_normal(shape).astype(f32), (0, 0), 1.0)
    nz = nuc > 0
    H[nz] = (0.50 + 0.22 * chrom[nz] / (chrom.std() + 1e-6)).clip(0.3, 1.1)
    ne = m["necro"] > 0
    E[ne] = 0.55 + 0.15 * fib[ne]
    H[ne] = 0.08
    debris = disks(shape, sample_in(rng, m["necro"], int(m["necro"].sum() / 400)), 1.2, rng) & m["necro"]
    H[debris > 0] = 0.9
    du = (m["ducts"] > 0) & (m["lumen"] == 0)
    E[du] = 0.22
    H[du] = 0.5 + 0.2 * chrom[du] / (chrom.std() + 1e-6)
    lu = m["lumen"] > 0
    E[lu], H[lu] = 0.02, 0.0
    fat = m["fat"] > 0
    E[fat] = H[fat] = 0.0
    # adipocyte membranes: Voronoi edges of random seeds
    seeds = sample_in(rng, m["fat"], int(m["fat"].sum() / (np.pi * (35 * UM) ** 2)) + 1)
    if len(seeds) > 3:
        sub = cv2.Subdiv2D((0, 0, shape[1], shape[0]))
        for x, y in seeds:
            sub.insert((float(np.clip(x, 0, shape[1] - 1)), float(np.clip(y, 0, shape[0] - 1))))
        facets, _ = sub.getVoronoiFacetList([])
        mem = np.zeros(shape, np.uint8)
        cv2.polylines(mem, [f.astype(np.int32) for f in facets], True, 1, 3)
        mem &= m["fat"]
        E[mem > 0] = 0.45
    ly = m["lym"] > 0
    H[ly] = 1.25 + 0.15 * chrom[ly] / (chrom.std() + 1e-6)
    E[ly] = 0.05
    H = cv2.GaussianBlur(H, (0, 0), 0.8)
    E = cv2.GaussianBlur(E, (0, 0), 0.8)
    gain_h, gain_e = rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.15)
    rgb = np.empty(shape + (3,), np.uint8)
    for ch in range(3):
        od = (gain_h * V_H[ch]) * H + (gain_e * V_E[ch]) * E + 0.02
        v = 250 * np.exp(-od) + (rng.standard_normal(shape, dtype=np.float32) * 2.5)
        rgb[..., ch] = np.clip(v, 0, 255)
    return rgb


def write_tiff(path, rgb):
    res = (1e4 / MPP, 1e4 / MPP)
    with tifffile.TiffWriter(path) as tw:
        lvl = rgb
        for i in range(3):
            tw.write(lvl, tile=(256, 256), compression="jpeg", compressionargs={"level": 90}, photometric="rgb",
                     resolution=(res[0] / 4 ** i, res[1] / 4 ** i), resolutionunit="CENTIMETER",
                     subfiletype=0 if i == 0 else 1)
            lvl = cv2.resize(lvl, (lvl.shape[1] // 4, lvl.shape[0] // 4), interpolation=cv2.INTER_AREA)
            if min(lvl.shape[:2]) < 256:
                break


def write_bed(path, poly):
    feat = {"type": "Feature", "id": "bed", "geometry": {"type": "Polygon", "coordinates": [
        [[float(x), float(y)] for x, y in list(poly) + [poly[0]]]]},
        "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]}}}
    path.write_text(json.dumps({"type": "FeatureCollection", "pixel_size_um": MPP, "features": [feat]}))


def targets(rng, n, labels_csv):
    tcga = [float(r["tils_score"]) for r in csv.DictReader(open(labels_csv))]
    t = rng.choice(tcga, n) * rng.uniform(0.9, 1.1, n)
    k = min(6, n)
    hi = np.argsort(t)[::-1][:k]
    t[hi] = np.maximum(t[hi], rng.uniform(62, 90, k))
    return np.clip(t, 0.5, 90)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--slides", type=int, default=40)
    ap.add_argument("--seed", type=int, default=40)
    ap.add_argument("--size-mm", type=float, default=2.0)
    ap.add_argument("--labels", default=str(Path(__file__).resolve().parents[2] / "shared/data/labels/tcga_bc_tils.csv"))
    a = ap.parse_args()
    out = Path(a.out)
    (out / "beds").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    tg = targets(rng, a.slides, a.labels)
    size = int(round(a.size_mm * 1000 * UM))
    rows = []
    for i, t in enumerate(tg):
        sid = f"og40_{i:03d}"
        srng = np.random.default_rng([a.seed, i])
        m, truth = make_slide(srng, size, float(t))
        write_tiff(out / f"{sid}.tif", render(srng, m, (size, size)))
        write_bed(out / "beds" / f"{sid}.geojson", m["bed_poly"])
        rows.append(dict(slide_id=sid, path=str((out / f"{sid}.tif").resolve()), stil=round(truth, 3), group=f"c{i % 4}"))
        print(sid, f"target {t:.1f} truth {truth:.2f}", flush=True)
    with open(out / "labels.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)


if __name__ == "__main__":
    main()
