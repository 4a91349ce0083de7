"""Same tissue, another scan: does a slide's score and bed depend on how its tissue was scanned?

    nice -n 10 .venv/bin/python benchmarks/scan_variants.py --model MODEL_DIR            # 6 slides x all variants
    nice -n 10 .venv/bin/python benchmarks/scan_variants.py --model M --variants orig rot90 x40_svs
    # after a code change: the same slides, scored into another folder (--label) to compare
    nice -n 10 .venv/bin/python benchmarks/scan_variants.py --model M --label scores_new --variants tiff_q90 margin

Synthetic slides with exact truth (``weakstil.synth``: 2 default, 2 ``--hard``, 2 ``--hard --look alt``,
1.6 mm, as ``weakstil demo`` trains on) are written again as other scans of the same tissue: another
resolution (40x, 10x, real scanners' 0.2425 / 0.263 µm/px, resampled with Lanczos), pyramid (none,
x2 / x3 / x16 steps, odd level sizes), compression (JPEG 95 / 70, LZW, deflate), TIFF tile size, file
layout (Aperio-like SVS, generic tiled TIFF, OME-TIFF with SubIFDs, resolution in inches, none), and
geometry (rotated, mirrored, moved on a larger canvas). Each is scored with ``weakstil score`` (the
model's bundled detector gives the bed) and compared with the original file: the sTIL% and its 90 %
interval, the qc flags, the tile counts, and the detected bed's Dice against the exact truth bed (in
the variant's own frame). Everything is cached under ``--cache``; a variant is rescored only when its
output is missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("scan_variants")

LOOKS = (("default", {}), ("hard", {"hard": True}), ("alt-hard", {"hard": True, "look": "alt"}))
TARGETS = (8.0, 40.0)  # one TIL-poor and one TIL-rich slide per look
SIZE_MM = 1.6
MPP = 0.5  # the generator's level-0 µm/px
TRUTH_MPP = 4.0


@dataclass
class Variant:
    name: str
    what: str
    mpp: float = MPP  # the variant's level-0 µm/px
    fmt: str = "tiff"  # tiff | svs | ome
    compression: str = "jpeg"
    quality: int = 90
    tile: int = 256
    steps: tuple[int, ...] | None = (4, 4, 4)  # reduction of each level from the one above (None: one level)
    floor_levels: bool = False  # level sizes rounded down (some writers) instead of up
    unit: str | None = "CENTIMETER"  # TIFF ResolutionUnit, None: no resolution at all
    rot90: int = 0
    mirror: bool = False
    pad_um: tuple[float, float, float, float] = (0, 0, 0, 0)  # left, top, right, bottom margins (µm)
    tag_mpp: float | None = None  # the pixels of ``mpp``, the file saying this µm/px (a scanner's 0.499 for 0.5)
    score_opts: dict = field(default_factory=dict)


VARIANTS = [
    Variant("orig", "as the generator wrote it (generic TIFF, JPEG at the look's quality, x4 pyramid)"),
    Variant("tiff_q90", "rewritten: generic TIFF, JPEG 90, 256 px tiles, x4 levels"),
    Variant("tiff_q95", "JPEG 95", quality=95),
    Variant("tiff_q70", "JPEG 70", quality=70),
    Variant("lzw", "LZW (lossless)", compression="lzw"),
    Variant("deflate", "deflate (lossless)", compression="zlib"),
    Variant("tile240", "240 px TIFF tiles", tile=240),
    Variant("tile512", "512 px TIFF tiles", tile=512),
    Variant("svs", "Aperio-like SVS (240 px tiles, JPEG 90, x4)", fmt="svs", tile=240),
    Variant("no_pyramid", "one level, no pyramid", steps=None),
    Variant("x2_levels", "levels x2 (2, 4, 8, 16)", steps=(2, 2, 2, 2)),
    Variant("x3_levels", "levels x3 (3, 9)", steps=(3, 3)),
    Variant("x16_levels", "one level x16", steps=(16,)),
    Variant("odd_floor", "x4 levels, sizes rounded down", floor_levels=True),
    Variant("ome_subifd", "OME-TIFF, levels as SubIFDs, µm/px in the OME-XML", fmt="ome"),
    Variant("mpp_inch", "resolution tags in pixels per inch", unit="INCH"),
    Variant("mpp_absent", "no resolution (scored with --slide-mpp 0.5)", unit=None, score_opts={"slide_mpp": 0.5}),
    Variant("x40", "40x: 0.25 µm/px, x4 levels", mpp=0.25),
    Variant("x40_x2", "40x: 0.25 µm/px, x2 levels", mpp=0.25, steps=(2, 2, 2, 2)),
    Variant("x40_svs", "40x Aperio-like SVS", mpp=0.25, fmt="svs", tile=240),
    Variant("x40_flat", "40x, one level", mpp=0.25, steps=None),
    Variant("mpp_0.2425", "0.2425 µm/px (a 40x scanner's)", mpp=0.2425),
    Variant("mpp_0.263", "0.263 µm/px", mpp=0.263),
    Variant("mpp_0.46", "0.46 µm/px (a 20x scanner's)", mpp=0.46),
    Variant("tag_0.499", "0.5 µm/px pixels, the file saying 0.499 (Aperio 20x)", tag_mpp=0.499),
    Variant("tag_0.5025", "0.5 µm/px pixels, the file saying 0.5025", tag_mpp=0.5025),
    Variant("x10", "10x: 1.0 µm/px (scored with --allow-upsample)", mpp=1.0, score_opts={"allow_upsample": True}),
    Variant("rot90", "rotated 90°", rot90=1),
    Variant("rot180", "rotated 180°", rot90=2),
    Variant("mirror", "mirrored left-right", mirror=True),
    Variant("shift", "moved 36 µm right and 52 µm down (another tile-grid phase)", pad_um=(36, 52, 0, 0)),
    Variant("margin", "on a canvas 2 mm larger, tissue off centre", pad_um=(1500, 600, 500, 1400)),
    Variant("shift_8px", "moved 4 µm right and down (8 px: the most a grid anchored on an 8 µm/px tissue mask is off)",
            pad_um=(4, 4, 0, 0)),
    Variant("shift_tile", "moved one tile (112 µm) right and down: the same grid phase, the same tiles moved",
            pad_um=(112, 112, 0, 0)),
]


# -- the slides -----------------------------------------------------------------------------------------

def make_slides(cache: Path, seed: int) -> list[dict]:
    import h5py

    from weakstil.synth import generate_slide, slide_seed

    out = []
    i = 0
    for look, kwargs in LOOKS:
        for target in TARGETS:
            sid = f"s{i}_{look}"
            path, truth = cache / "orig" / f"{sid}.tiff", cache / "truth" / f"{sid}.h5"
            if not truth.is_file():
                generate_slide(path, cache / "truth", sid, slide_seed(seed, i), size_mm=(SIZE_MM, SIZE_MM),
                               target_stil=target, group=f"centre_{i % 4}", preview=False, **kwargs)
            with h5py.File(truth, "r") as f:
                out.append({"slide_id": sid, "look": look, "path": path, "truth": truth, "stil": float(f.attrs["stil"]),
                            "quality": int(f.attrs.get("style_jpeg_quality", 90))})
            i += 1
    return out


def read_level0(path: Path) -> np.ndarray:
    import tifffile

    return tifffile.imread(path, key=0)


def resample(rgb: np.ndarray, factor: float) -> np.ndarray:
    """The same tissue at ``factor`` times the pixels per µm (Lanczos; area mean for integer reductions)."""
    from PIL import Image

    from weakstil.synth.pyramid import downsample_mean

    if factor == 1:
        return rgb
    inv = 1 / factor
    if abs(inv - round(inv)) < 1e-9:
        return downsample_mean(rgb, int(round(inv)))
    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((round(w * factor), round(h * factor)), Image.Resampling.LANCZOS))


def _moved(a: np.ndarray, v: Variant, mpp: float, fill) -> np.ndarray:
    """``a`` (an image or a mask at ``mpp``) rotated, mirrored and padded with ``fill`` as the variant's tissue."""
    if v.rot90:
        a = np.rot90(a, v.rot90)
    if v.mirror:
        a = a[:, ::-1]
    if any(v.pad_um):
        left, top, right, bottom = (round(p / mpp) for p in v.pad_um)
        a = np.pad(a, ((top, bottom), (left, right)) + ((0, 0),) * (a.ndim - 2), constant_values=fill)
    return a


def geometry(rgb: np.ndarray, v: Variant) -> np.ndarray:
    """Rotate, mirror and pad (white) at the original resolution."""
    return np.ascontiguousarray(_moved(rgb, v, MPP, 255))


def truth_in_frame(truth_bed: np.ndarray, v: Variant) -> np.ndarray:
    """The truth bed (at ``TRUTH_MPP``) moved as the variant's tissue was."""
    return _moved(truth_bed, v, TRUTH_MPP, 0)


def pyramid(rgb: np.ndarray, v: Variant) -> list[np.ndarray]:
    from weakstil.synth.pyramid import downsample_mean

    levels = [rgb]
    for k in v.steps or ():
        nxt = downsample_mean(levels[-1], k)
        if v.floor_levels:
            h, w = levels[-1].shape[:2]
            nxt = nxt[: h // k, : w // k]
        if min(nxt.shape[:2]) < 64:
            break
        levels.append(nxt)
    return levels


def write_variant(rgb: np.ndarray, path: Path, v: Variant, quality: int) -> None:
    import tifffile

    from weakstil.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    if v.fmt == "svs":
        from weakstil.decode.svswriter import write_svs

        with atomic_path(path) as tmp:
            write_svs(tmp, rgb, v.tag_mpp or v.mpp, tile=v.tile, quality=v.quality)
        return
    levels = pyramid(rgb, v)
    h0, w0 = rgb.shape[:2]
    comp = {"compression": v.compression}
    if v.compression == "jpeg":
        comp["compressionargs"] = {"level": quality}
    opts = dict(tile=(v.tile, v.tile), photometric="rgb", **comp)

    def res(lvl: np.ndarray) -> dict:
        if v.unit is None:
            return {}
        mpp = (v.tag_mpp or v.mpp) * w0 / lvl.shape[1]
        per_unit = {"CENTIMETER": 1e4, "INCH": 25400.0}[v.unit] / mpp
        return {"resolution": (per_unit, per_unit), "resolutionunit": v.unit}

    with atomic_path(path) as tmp:
        if v.fmt == "ome":
            meta = {"axes": "YXS", "PhysicalSizeX": v.tag_mpp or v.mpp, "PhysicalSizeY": v.tag_mpp or v.mpp,
                    "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}
            with tifffile.TiffWriter(tmp, ome=True) as tw:
                tw.write(levels[0], subifds=len(levels) - 1, metadata=meta, **opts)
                for lvl in levels[1:]:
                    tw.write(lvl, subfiletype=1, **opts)
            return
        with tifffile.TiffWriter(tmp) as tw:
            tw.write(levels[0], metadata=None, **res(levels[0]), **opts)
            for lvl in levels[1:]:
                tw.write(lvl, subfiletype=1, metadata=None, **res(lvl), **opts)


def build(slides: list[dict], variants: list[Variant], cache: Path) -> None:
    for s in slides:
        base = None
        for v in variants:
            if v.name == "orig":
                continue
            path = cache / "slides" / v.name / f"{s['slide_id']}.{'svs' if v.fmt == 'svs' else 'tiff'}"
            if path.is_file():
                continue
            if base is None:
                base = read_level0(s["path"])
            rgb = resample(geometry(base, v), MPP / v.mpp)
            write_variant(rgb, path, v, v.quality)


def variant_paths(slides: list[dict], v: Variant, cache: Path) -> list[Path]:
    if v.name == "orig":
        return [s["path"] for s in slides]
    return [cache / "slides" / v.name / f"{s['slide_id']}.{'svs' if v.fmt == 'svs' else 'tiff'}" for s in slides]


# -- scoring and comparison -------------------------------------------------------------------------------

def score_variant(paths: list[Path], v: Variant, model: Path, out: Path) -> None:
    from weakstil.score import ScoreOptions, score_batch

    opts = ScoreOptions(model=model, out=out, workers=1, threads=1, **v.score_opts)
    score_batch(paths, opts, progress=False, say_error=lambda line: log.error("%s: %s", v.name, line))


def bed_dice(score_h5: Path, truth_h5: Path, v: Variant) -> float:
    import h5py
    from skimage.transform import resize

    from weakstil.tissue import dice

    with h5py.File(score_h5, "r") as f:
        if "tumorbed_mask" not in f:
            return float("nan")
        mask = f["tumorbed_mask"][:].astype(bool)
    with h5py.File(truth_h5, "r") as f:
        truth = truth_in_frame(f["tumorbed"][:].astype(np.float32), v)
    truth = resize(truth, mask.shape, order=1, anti_aliasing=True) > 0.5
    return dice(mask, truth)


def collect(slides: list[dict], v: Variant, out: Path) -> list[dict]:
    import pandas as pd

    table = pd.read_csv(out / "results.csv", keep_default_na=False).set_index("slide_id")
    rows = []
    for s in slides:
        r = table.loc[s["slide_id"]] if s["slide_id"] in table.index else None
        if r is None or r["status"] not in ("ok", "tumorbed_fallback"):
            rows.append({"variant": v.name, "slide_id": s["slide_id"], "status": "missing" if r is None else r["status"],
                         "error": "" if r is None else r["error"]})
            continue
        num = lambda k: float(r[k]) if r[k] != "" else float("nan")  # noqa: E731
        rows.append({"variant": v.name, "slide_id": s["slide_id"], "look": s["look"], "truth": s["stil"],
                     "stil": num("stil"), "lo": num("stil_lower_90"), "hi": num("stil_upper_90"),
                     "n_tiles": int(r["n_tiles"]), "n_bed": int(r["n_tumorbed_tiles"]), "qc": r["qc"],
                     "status": r["status"], "dice": bed_dice(out / f"{s['slide_id']}.h5", s["truth"], v)})
    return rows


def compare(df):
    import pandas as pd

    base = df[df["variant"] == "orig"].set_index("slide_id")
    lines = []
    for name, g in df.groupby("variant", sort=False):
        g = g.set_index("slide_id")
        ok = g[g["status"].isin(["ok", "tumorbed_fallback"])]
        b = base.loc[ok.index]
        d = (ok["stil"] - b["stil"]).abs()
        width = (ok["hi"] - ok["lo"]) - (b["hi"] - b["lo"])
        new_flags = sorted({f for i in ok.index for f in set(filter(None, str(ok.at[i, "qc"]).split(";")))
                            - set(filter(None, str(b.at[i, "qc"]).split(";")))})
        lines.append({"variant": name, "n": len(ok), "failed": int(len(g) - len(ok)),
                      "max_dstil": float(d.max()) if len(d) else float("nan"),
                      "mean_dstil": float(d.mean()) if len(d) else float("nan"),
                      "max_dwidth": float(width.abs().max()) if len(d) else float("nan"),
                      "max_dtiles": int((ok["n_tiles"] - b["n_tiles"]).abs().max()) if len(d) else -1,
                      "max_dbed_tiles": int((ok["n_bed"] - b["n_bed"]).abs().max()) if len(d) else -1,
                      "dice_mean": float(ok["dice"].mean()), "dice_min": float(ok["dice"].min()),
                      "max_ddice": float((ok["dice"] - b["dice"]).abs().max()) if len(d) else float("nan"),
                      "new_flags": ";".join(new_flags)})
    return pd.DataFrame(lines)


def main() -> None:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="a weakstil train/demo model folder (bundled detector)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "scan_variants")
    ap.add_argument("--variants", nargs="*", help="variant names (default: all)")
    ap.add_argument("--seed", type=int, default=30)
    ap.add_argument("--rescore", action="store_true", help="score again (after a code change)")
    ap.add_argument("--label", default="scores", help="the scores' folder under --cache (one per code version compared)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    from inputs import need_model, scored_once

    need_model(args.model)
    want = [v for v in VARIANTS if not args.variants or v.name in args.variants or v.name == "orig"]
    slides = make_slides(args.cache, args.seed)
    build(slides, want, args.cache)
    rows = []
    for v in want:
        out = args.cache / args.label / v.name
        scored_once(out, args.rescore, v.name,
                    lambda v=v, out=out: score_variant(variant_paths(slides, v, args.cache), v, args.model, out), log)
        rows += collect(slides, v, out)
    df = pd.DataFrame(rows)
    df.to_csv(args.cache / args.label / "per_slide.csv", index=False)
    table = compare(df)
    table.to_csv(args.cache / args.label / "table.csv", index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df[["variant", "slide_id", "truth", "stil", "lo", "hi", "n_tiles", "n_bed", "dice", "qc"]]
              .to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        print()
        print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(json.dumps({"slides": len(slides), "variants": len(want)}))


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
