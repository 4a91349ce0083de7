"""Annotation styles as pathologists draw them -> ``tumorbed train`` -> the detector's Dice against the
exact beds (hunt 38l, docs/tumorbed-quality.md 2026-12-06).

    weakstil synth ROOT/cohort --slides 8 --seed 3 --size-mm 1.5 1.5
    weakstil embed ROOT/cohort/slides/*.tiff --encoder small-cnn --weights random --out ROOT/features
    python -P benchmarks/tumorbed_annotation_styles.py ROOT [part of a style's name ...]

Trains on synth_0000-0005 with each style's annotations (ROOT/ann/<style>/), applies the detector to all
8 slides, prints one JSON line per style: leave-one-slide-out Dice against the annotations (``cv``),
Dice against the exact beds on the training slides (``train_true``) and on synth_0006-0007 (``held``),
and the warnings train logged.
"""
import json
import logging
import time
from pathlib import Path

import h5py
import numpy as np
from shapely.affinity import scale, translate
from shapely.geometry import box, mapping, shape
from shapely.ops import unary_union

R = Path("/tmp/h38l")  # ROOT, set from the command line
IDS = [f"synth_{i:04d}" for i in range(8)]
TRAIN, HELD = IDS[:6], IDS[6:]
F = 8  # truth mask px -> level-0 px


def truth(sid, key):
    with h5py.File(R / "cohort/truth" / f"{sid}.h5") as f:
        return f[key][:] > 0


def polys(mask):
    boxes = []
    for y in range(mask.shape[0]):
        row = np.concatenate([[0], mask[y].astype(np.int8), [0]])
        d = np.diff(row)
        for a, b in zip(np.where(d == 1)[0], np.where(d == -1)[0]):
            boxes.append(box(a * F, y * F, b * F, (y + 1) * F))
    return unary_union(boxes)


def bed_poly(sid):
    g = json.loads((R / "cohort/truth" / f"{sid}_tumorbed.geojson").read_text())
    return unary_union([shape(f["geometry"]) for f in g["features"]])


def feat(geom, cls="Tumor"):
    return {"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": cls}},
            "geometry": mapping(geom)}


def write(name, per_slide):
    d = R / "ann" / name
    d.mkdir(parents=True, exist_ok=True)
    for p in d.glob("*"):
        p.unlink()
    for sid, feats in per_slide.items():
        if feats is None:
            continue
        (d / f"{sid}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return d


def half(p):
    x0, y0, x1, y1 = p.bounds
    return p.intersection(box(x0, y0, (x0 + x1) / 2, y1))


def variants():
    v = {}
    beds = {s: bed_poly(s) for s in TRAIN}
    v["exact"] = {s: [feat(beds[s])] for s in TRAIN}
    v["under: nests only"] = {s: [feat(polys(truth(s, "tumor")))] for s in TRAIN}
    v["over: all tissue"] = {s: [feat(polys(truth(s, "tissue")))] for s in TRAIN}
    v["partial: half of bed"] = {s: [feat(half(beds[s]))] for s in TRAIN}
    v["over: tissue minus 60um rim"] = {s: [feat(polys(truth(s, "tissue")).buffer(-120))] for s in TRAIN}
    g = dict(v["exact"]); g[TRAIN[2]] = [feat(box(0, 0, 1000, 1000))]
    v["one bed on glass"] = g
    o = dict(v["exact"]); o[TRAIN[3]] = v["over: all tissue"][TRAIN[3]]
    v["one slide all tissue"] = o
    o = dict(v["exact"]); o[TRAIN[3]] = v["partial: half of bed"][TRAIN[3]]
    v["one slide half annotated"] = o
    v["over: convex hull"] = {s: [feat(beds[s].convex_hull)] for s in TRAIN}
    v["rough +250um simplified"] = {s: [feat(beds[s].buffer(500).simplify(500))] for s in TRAIN}
    v["rough -250um simplified"] = {s: [feat(beds[s].buffer(-500).simplify(500))] for s in TRAIN}
    mc = {}
    for s in TRAIN:
        nests, bed, tis = polys(truth(s, "tumor")), beds[s], polys(truth(s, "tissue"))
        mc[s] = [feat(nests, "Tumor"), feat(bed.difference(nests), "Stroma"),
                 feat(tis.difference(bed).buffer(-200), "Other"),
                 feat(bed.centroid.buffer(150), "Immune cells")]
    v["classes: Tumor=nests+Stroma+Other"] = mc
    hole = {}
    for s in TRAIN:
        c = beds[s].representative_point().buffer(200)
        hole[s] = [feat(beds[s].difference(c), "Tumor"), feat(c, "Necrosis")]
    v["bed with necrosis hole"] = hole
    v["level 0 of 40x scan (x2)"] = {s: [feat(scale(beds[s], 2, 2, origin=(0, 0)))] for s in TRAIN}
    v["identical (copy of slide 0)"] = {s: [feat(beds[TRAIN[0]])] for s in TRAIN}
    wrong = dict(v["exact"])
    b = beds[TRAIN[1]]
    wrong[TRAIN[1]] = [feat(translate(b, -b.bounds[0] + 0, -b.bounds[1] + 0))]  # pushed to the corner
    v["one bed in the corner (other slide's)"] = wrong
    sw = dict(v["exact"])
    sw[TRAIN[1]], sw[TRAIN[2]] = v["exact"][TRAIN[2]], v["exact"][TRAIN[1]]
    v["two slides' files swapped"] = sw
    empty = dict(v["exact"])
    empty[TRAIN[1]] = []
    v["one empty file"] = empty
    return v


def dice(a, b):
    return 2 * (a & b).sum() / max(a.sum() + b.sum(), 1)


def evaluate(det):
    from weakstil.files import FeaturesFile
    from skimage.transform import resize
    out = {}
    for sid in IDS:
        bed = det.detect_file(FeaturesFile.read(R / "features" / f"{sid}.h5"))
        t = truth(sid, "tumorbed")
        t = resize(t.astype(np.float32), bed.mask.shape, order=0, anti_aliasing=False) > 0.5
        out[sid] = (dice(bed.mask.astype(bool), t), bed.source.value)
    return out


class Keep(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.msgs = []

    def emit(self, r):
        self.msgs.append(r.getMessage())


def main(which):
    from weakstil.tumorbed.training_cache import train_tumorbed_from_cache
    logging.basicConfig(level=logging.WARNING)
    v = variants()
    runs = [(k, 6) for k in v] + [("exact", 1), ("exact", 2), ("exact", 3)]
    if which:
        runs = [r for r in runs if any(w in r[0] for w in which)]
    res = []
    for name, n in runs:
        d = write(name.replace(" ", "_").replace(":", "").replace("(", "").replace(")", "").replace("'", "")
                  .replace("=", "").replace("+", "p"), v[name])
        keep = Keep()
        logging.getLogger().addHandler(keep)
        t0 = time.time()
        try:
            det = train_tumorbed_from_cache(R / "features", d, slide_ids=TRAIN, max_slides=n)
            ev = evaluate(det)
            row = dict(style=name, n=n, cv=round(det.meta["cv_dice"], 3),
                       held=round(float(np.mean([ev[s][0] for s in HELD])), 3),
                       train_true=round(float(np.mean([ev[s][0] for s in TRAIN])), 3),
                       fallbacks=sum(ev[s][1] != "model" for s in IDS))
        except Exception as exc:  # noqa
            row = dict(style=name, n=n, error=str(exc)[:300])
        logging.getLogger().removeHandler(keep)
        row["warnings"] = [m[:250] for m in keep.msgs]
        row["s"] = round(time.time() - t0)
        print(json.dumps(row), flush=True)
        res.append(row)
    return res


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="folder holding cohort/ and features/ (made as above)")
    parser.add_argument("styles", nargs="*", help="run only the styles whose name holds one of these")
    args = parser.parse_args()
    R = args.root
    main(args.styles)
