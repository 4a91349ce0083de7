"""Metamorphic test of the scoring path (hunt 41e): the same tissue presented differently must give
(nearly) the same sTIL%, interval, bed and qc flags.

    nice -n 10 .venv/bin/python benchmarks/metamorphic.py --model MODEL_DIR --cache .bench/metamorphic
    nice -n 10 .venv/bin/python benchmarks/metamorphic.py --model M --outside C/slides/og41a_003.tiff C/slides/og41a_011.tiff
    nice -n 10 .venv/bin/python benchmarks/metamorphic.py --model M --variants ref rot90 two_sections --label scores_new --rescore

``MODEL_DIR`` is a ``weakstil demo --quick`` (or ``weakstil train``) model with its bundled detector.
Six slides of the product's generator (``weakstil.synth``, 1.6 mm: default look at sTIL 5 / 25 / 50 %,
``--hard`` at 12 / 35 %, ``--hard --look alt`` at 20 %) and, with ``--outside``, slides of another
generator at 0.5 µm/px (``benchmarks/outside_generator_41a.py``: its every fourth slide is a 20x one)
are written again (tifffile, ``benchmarks/scan_variants.py``'s writer) as:

- ``ref``: the original's pixels rewritten as a generic tiled TIFF, JPEG 90, x4 pyramid: every other
  copy is compared with it, so a JPEG re-encode is not counted as the transformation's effect;
- geometry: rotated 90° / 180°, mirrored; translated right and down by ``d`` px (``shift_<d>``, the new
  strip filled with the slide's own glass: the brightest half of its border, colour and noise), d = 37 and
  173 px (not multiples of the 224 px tile) and, for the tile grid's noise, 16 / 61 / 99 / 137 / 199 px;
  cropped to the tissue's bounding box plus 16 px (``crop``: no empty glass left); the section placed
  twice side by side on one slide, 200 µm of glass between (``two_sections``: the sTIL% of two identical
  sections is that of one; tiles and bed tiles should double);
- scan and storage: 40x (0.25 µm/px, the base upsampled 2x with Lanczos, µm/px tags set), JPEG 95 and
  60, one level (no pyramid), Aperio-like SVS.

Each copy is scored with ``weakstil.score.score_batch`` (the lab's ``weakstil score``) and compared with
``ref``: Δ sTIL, the 90 % interval's Δ width, tiles, bed tiles (``two_sections``: against twice
``ref``'s) and the qc flags gained or lost. The tile-grid noise of a slide is the largest |Δ sTIL| of its
translated copies (``shift_*``, sub-tile offsets) against ``ref``; the summary's ``beyond`` column names
the slides a copy moves further than that. Scores of the default set (9 slides x 18 copies) take about
10 minutes on 2 busy cores. Everything is cached under ``--cache``; ``--rescore`` scores again (after a code change).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("metamorphic")

SYNTH = (  # (look kwargs, target sTIL %)
    ({}, 5.0), ({}, 25.0), ({}, 50.0),
    ({"hard": True}, 12.0), ({"hard": True}, 35.0),
    ({"hard": True, "look": "alt"}, 20.0),
)
SIZE_MM = 1.6
MPP = 0.5
SHIFTS_NOISE = (16, 61, 99, 137, 199)


@dataclass
class Copy:
    name: str
    what: str
    rot90: int = 0
    mirror: bool = False
    shift_px: int = 0
    crop: bool = False
    two: bool = False
    mpp: float = MPP
    quality: int = 90
    steps: tuple[int, ...] | None = (4, 4, 4)
    fmt: str = "tiff"
    noise: bool = False  # a sub-tile shift measuring the grid's noise


COPIES = [
    Copy("ref", "the original's pixels rewritten: generic TIFF, JPEG 90, x4 levels (the reference)"),
    Copy("rot90", "rotated 90°", rot90=1),
    Copy("rot180", "rotated 180°", rot90=2),
    Copy("mirror", "mirrored left-right", mirror=True),
    Copy("shift_37", "moved 37 px right and down (glass-filled)", shift_px=37),
    Copy("shift_173", "moved 173 px right and down (glass-filled)", shift_px=173),
    Copy("crop", "cropped to the tissue's bounding box + 16 px", crop=True),
    Copy("two_sections", "the section twice side by side, 200 µm of glass between", two=True),
    Copy("x40", "0.25 µm/px (2x Lanczos upsample), x4 levels", mpp=0.25),
    Copy("q95", "JPEG 95", quality=95),
    Copy("q60", "JPEG 60", quality=60),
    Copy("flat", "one level, no pyramid", steps=None),
    Copy("svs", "Aperio-like SVS (240 px tiles, JPEG 90)", fmt="svs"),
] + [Copy(f"shift_{d}", f"moved {d} px (grid noise)", shift_px=d, noise=True) for d in SHIFTS_NOISE]


# -- the slides ------------------------------------------------------------------------------------------

def make_slides(cache: Path, seed: int, outside: list[Path]) -> list[dict]:
    import h5py

    from weakstil.synth import generate_slide, slide_seed

    out = []
    for i, (kw, target) in enumerate(SYNTH):
        sid = f"m{i}_{kw.get('look', 'default')}{'_hard' if kw.get('hard') else ''}_{int(target)}"
        path, truth = cache / "orig" / f"{sid}.tiff", cache / "truth" / f"{sid}.h5"
        if not truth.is_file():
            generate_slide(path, cache / "truth", sid, slide_seed(seed, i), size_mm=(SIZE_MM, SIZE_MM),
                           target_stil=target, group=f"centre_{i % 4}", preview=False, **kw)
        with h5py.File(truth, "r") as f:
            out.append({"slide_id": sid, "path": path, "truth": float(f.attrs["stil"])})
    for p in outside:
        import tifffile

        with tifffile.TiffFile(p) as tf:
            x = tf.pages[0].tags["XResolution"].value
            unit = tf.pages[0].tags["ResolutionUnit"].value
            mpp = {3: 1e4, 2: 25400.0}[int(unit)] * x[1] / x[0]
        if abs(mpp - MPP) > 0.01:
            raise SystemExit(f"{p}: {mpp:.3f} µm/px; --outside takes 0.5 µm/px slides (the 41a generator's every 4th)")
        meta = p.parent.parent / "cohort.csv"  # the 41a generator's truth, beside its slides/
        truth = float("nan")
        if meta.is_file():
            import pandas as pd

            t = pd.read_csv(meta).set_index("slide_id")["stil"]
            truth = float(t.get(p.stem, float("nan")))
        out.append({"slide_id": p.stem, "path": p, "truth": truth})
    return out


def glass_of(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The slide's glass: median colour and noise (std, at most 4) of the brightest half of a 16 px border
    frame (tissue running off the image's edge is darker: taken in, it made the new strip read as tissue)."""
    b = np.concatenate([rgb[:16].reshape(-1, 3), rgb[-16:].reshape(-1, 3),
                        rgb[:, :16].reshape(-1, 3), rgb[:, -16:].reshape(-1, 3)]).astype(np.float32)
    grey = b.mean(axis=1)
    b = b[grey >= np.median(grey)]
    return np.median(b, axis=0), np.minimum(b.std(axis=0), 4.0)


def glass(shape: tuple[int, int], med, std, rng) -> np.ndarray:
    g = rng.normal(med, std, size=shape + (3,))
    return np.clip(np.round(g), 0, 255).astype(np.uint8)


def tissue_box(rgb: np.ndarray, med) -> tuple[int, int, int, int]:
    """Bounding box (y0, y1, x0, x1) of pixels clearly off the glass, at 8 px blocks."""
    from weakstil.synth.pyramid import downsample_mean

    small = downsample_mean(rgb, 8).astype(np.float32)
    off = np.abs(small - med).max(axis=2) > 12
    ys, xs = np.nonzero(off)
    return ys.min() * 8, (ys.max() + 1) * 8, xs.min() * 8, (xs.max() + 1) * 8


def transform(rgb: np.ndarray, c: Copy, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    med, std = glass_of(rgb)
    if c.rot90:
        rgb = np.rot90(rgb, c.rot90)
    if c.mirror:
        rgb = rgb[:, ::-1]
    if c.shift_px:
        h, w = rgb.shape[:2]
        d = c.shift_px
        canvas = glass((h + d, w + d), med, std, rng)
        canvas[d:, d:] = rgb
        rgb = canvas
    if c.crop:
        y0, y1, x0, x1 = tissue_box(rgb, med)
        h, w = rgb.shape[:2]
        rgb = rgb[max(0, y0 - 16): min(h, y1 + 16), max(0, x0 - 16): min(w, x1 + 16)]
    if c.two:
        h, w = rgb.shape[:2]
        gap = round(200 / MPP)
        canvas = glass((h, 2 * w + gap), med, std, rng)
        canvas[:, :w] = rgb
        canvas[:, w + gap:] = rgb
        rgb = canvas
    if c.mpp != MPP:
        from scan_variants import resample

        rgb = resample(rgb, MPP / c.mpp)
    return np.ascontiguousarray(rgb)


def copy_path(cache: Path, s: dict, c: Copy) -> Path:
    return cache / "slides" / c.name / f"{s['slide_id']}.{'svs' if c.fmt == 'svs' else 'tiff'}"


def build(slides: list[dict], copies: list[Copy], cache: Path) -> None:
    import tifffile
    from scan_variants import Variant, write_variant

    for k, s in enumerate(slides):
        base = None
        for c in copies:
            path = copy_path(cache, s, c)
            if path.is_file():
                continue
            if base is None:
                base = tifffile.imread(s["path"], key=0)
            v = replace(Variant(c.name, c.what), mpp=c.mpp, quality=c.quality, steps=c.steps, fmt=c.fmt,
                        tile=240 if c.fmt == "svs" else 256)
            write_variant(transform(base, c, 1000 + k), path, v, c.quality)


# -- scoring and comparison ------------------------------------------------------------------------------

def score(paths: list[Path], model: Path, out: Path) -> None:
    from weakstil.score import ScoreOptions, score_batch

    opts = ScoreOptions(model=model, out=out, workers=1, threads=1)
    score_batch(paths, opts, progress=False, say_error=lambda line: log.error("%s", line))


def collect(slides: list[dict], c: Copy, out: Path) -> list[dict]:
    import pandas as pd

    table = pd.read_csv(out / "results.csv", keep_default_na=False).set_index("slide_id")
    rows = []
    for s in slides:
        r = table.loc[s["slide_id"]] if s["slide_id"] in table.index else None
        if r is None or r["stil"] == "":  # an error row (a bed fallback is scored: status 'bed fallback: ...')
            rows.append({"copy": c.name, "slide_id": s["slide_id"], "status": "missing" if r is None else r["status"]})
            continue
        num = lambda k: float(r[k]) if r[k] != "" else float("nan")  # noqa: E731
        rows.append({"copy": c.name, "slide_id": s["slide_id"], "truth": s["truth"], "stil": num("stil"),
                     "lo": num("stil_lower_90"), "hi": num("stil_upper_90"), "n_tiles": int(r["n_tiles"]),
                     "n_bed": int(r["n_tumorbed_tiles"]), "qc": str(r["qc"]), "status": r["status"]})
    return rows


def flagset(q) -> set[str]:
    return set(filter(None, str(q).split(";")))


def compare(df, copies: list[Copy]):
    """One line per copy against ``ref``; ``beyond``: the slides whose |Δ sTIL| exceeds their own tile-grid noise
    (the largest |Δ| of that slide's sub-tile shifts)."""
    import pandas as pd

    df = df[df["stil"].notna()] if "stil" in df else df
    ref = df[df["copy"] == "ref"].set_index("slide_id")
    noise = df[df["copy"].isin([c.name for c in copies if c.shift_px]) & df["slide_id"].isin(ref.index)].copy()
    noise["d"] = noise["stil"].to_numpy() - ref.loc[noise["slide_id"], "stil"].to_numpy()
    per_slide = noise.assign(a=noise["d"].abs()).groupby("slide_id")["a"].max()
    lines = []
    for c in copies:
        ok = df[df["copy"] == c.name].set_index("slide_id")
        ok = ok[ok.index.isin(ref.index)]
        b = ref.loc[ok.index]
        d = ok["stil"] - b["stil"]
        k = 2 if c.two else 1
        gained = sorted({f"+{f}" for i in ok.index for f in flagset(ok.at[i, "qc"]) - flagset(b.at[i, "qc"])})
        lost = sorted({f"-{f}" for i in ok.index for f in flagset(b.at[i, "qc"]) - flagset(ok.at[i, "qc"])})
        beyond = [i for i in ok.index if i in per_slide.index and abs(d[i]) > per_slide[i] + 1e-9]
        lines.append({"copy": c.name, "n": len(ok), "max_abs_d": float(d.abs().max()), "mean_d": float(d.mean()),
                      "worst": d.abs().idxmax() if len(d) else "",
                      "max_dwidth": float(((ok["hi"] - ok["lo"]) - (b["hi"] - b["lo"])).abs().max()),
                      "max_dtiles": int((ok["n_tiles"] - k * b["n_tiles"]).abs().max()),
                      "max_dbed": int((ok["n_bed"] - k * b["n_bed"]).abs().max()),
                      "beyond": "" if c.shift_px or c.name == "ref" else ",".join(beyond),
                      "flags": ";".join(gained + lost)})
    return pd.DataFrame(lines), per_slide, noise


def main() -> None:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a weakstil demo/train model folder")
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "metamorphic")
    ap.add_argument("--outside", type=Path, nargs="*", default=[], help="0.5 µm/px slides of another generator")
    ap.add_argument("--copies", "--variants", dest="copies", nargs="*", help="copy names (default: all)")
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--rescore", action="store_true", help="score again (after a code change)")
    ap.add_argument("--label", default="scores", help="the scores' folder under --cache")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    from inputs import need_model, scored_once

    need_model(args.model)
    want = [c for c in COPIES if not args.copies or c.name in args.copies or c.name == "ref"]
    slides = make_slides(args.cache, args.seed, args.outside)
    build(slides, want, args.cache)
    rows = []
    for c in want:
        out = args.cache / args.label / c.name
        scored_once(out, args.rescore, c.name,
                    lambda c=c, out=out: score([copy_path(args.cache, s, c) for s in slides], args.model, out), log)
        rows += collect(slides, c, out)
    df = pd.DataFrame(rows)
    df.to_csv(args.cache / args.label / "per_slide.csv", index=False)
    table, per_slide, noise = compare(df, want)
    table.to_csv(args.cache / args.label / "table.csv", index=False)
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.max_colwidth", 60):
        print(df[["copy", "slide_id", "truth", "stil", "lo", "hi", "n_tiles", "n_bed", "qc"]]
              .to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        print()
        print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    grid = float(per_slide.max()) if len(per_slide) else float("nan")
    if len(noise):
        print("\ntile-grid noise (the sub-tile shifts against ref), max |Δ sTIL| per slide: "
              + ", ".join(f"{k} {v:.2f}" for k, v in per_slide.items())
              + f"\nover {len(noise)} slide-copies: mean |Δ| {noise['d'].abs().mean():.2f}, sd {noise['d'].std():.2f}")
    print(json.dumps({"slides": len(slides), "copies": len(want), "grid_noise_max": grid}))


if __name__ == "__main__":
    from inputs import one_line_errors

    one_line_errors(main)
