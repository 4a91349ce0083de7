"""Real tissue from another generator: a Kather-mosaic cohort with exact sTIL% truth, and its measurement.

    .venv/bin/python benchmarks/kather_mosaic.py make --out .bench/mosaic/m0 -n 16 --seed 0
    .venv/bin/python benchmarks/kather_mosaic.py make --out .bench/mosaic/m1 -n 16 --seed 1 --prefix mosaicB
    .venv/bin/python -m weakstil score --model MODEL --slides .bench/mosaic/m0/labels.csv --out S0
    .venv/bin/python benchmarks/kather_mosaic.py measure --cohort .bench/mosaic/m0 --scores S0

``make`` builds slides out of the 32 real Kather CRC H&E tiles (``../shared/data``, or the same
files in ``tests/data/kather``: the pixels of another lab and scanner, not of ``weakstil synth``):
grids of 192 px crops (random turn and flip) with a TUM + STR + LYM tumour bed inside NORM / ADI /
MUS tissue on glass (``benchmarks/mosaic_truth.py``). Written into ``--out``: ``slides/<id>.tiff``
(pyramidal JPEG, 0.5 µm/px recorded), ``annotations/<id>.geojson`` (the truth bed, QuPath GeoJSON,
for ``--annotations``), ``labels.csv`` (slide_id, path, stil: a cohort for ``weakstil train`` /
``score --slides``) and ``truth.json`` (seed, pitch, grid, tiles, versions, each slide's class grid
and counts).
Truth sTIL% = LYM / (LYM + STR) cells of the bed.

``measure`` reads ``weakstil score``'s ``results.csv`` (and ``<id>.h5``) in ``--scores`` and prints
the per-slide table (truth, score, 90 % interval, covered, bed source, bed Dice vs the truth, status,
qc flags) and R², MAE, Pearson r, interval coverage, mean Dice; beside them the
colour-deconvolution rule (``benchmarks/colour_rule.py``: lymphocyte over lymphocyte + stroma pixels
over the truth bed's cells, a linear map to sTIL% calibrated leave-one-out on this cohort, or on
``--calibrate-on`` another cohort). ``--tumorbed-truth`` asserts the scores were made over the truth
annotations (``score --annotations COHORT/annotations``), so the figures judge the model alone.
Measured figures: ``docs/accuracy.md``, *Real tissue from another generator (Kather mosaic)*.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.mosaic_truth import (  # noqa: E402
    GENERATOR_VERSION, MPP, PITCH, MosaicError, bed_geojson, bed_mask, class_counts, default_tiles, grid_rows,
    load_tiles, make_slide, read_truth, stil_of, write_text, write_tiff)

COLOUR_CACHE = "colour_rule.csv"


def make(out: Path, n: int, seed: int, grid: int, prefix: str, tiles_dir: Path, low: float = 0.0,
         high: float = 80.0) -> list[dict[str, object]]:
    """Write the cohort (see the module docstring); returns labels.csv's rows."""
    import pandas as pd

    from weakstil import __version__

    if n < 1 or grid < 3:
        raise MosaicError(f"-n {n} --grid {grid}: give at least 1 slide and a grid of at least 3 cells")
    tiles = load_tiles(tiles_dir)
    rng = np.random.default_rng(seed)
    # evenly spread targets, shuffled so slide order says nothing of the label
    targets = np.linspace(low, high, n)
    rng.shuffle(targets)
    rows, slides = [], {}
    for k, target in enumerate(targets):
        sid = f"{prefix}_{k:03d}"
        img, lab = make_slide(tiles, grid, float(target), rng)
        cells = grid_rows(lab)
        write_tiff(out / "slides" / f"{sid}.tiff", img)
        write_text(out / "annotations" / f"{sid}.geojson", json.dumps(bed_geojson(cells)))
        counts = class_counts(cells)
        rows.append({"slide_id": sid, "path": f"slides/{sid}.tiff", "stil": round(stil_of(counts), 2)})
        slides[sid] = {"target": round(float(target), 4), "counts": counts, "grid": cells}
        print(f"{sid}: sTIL {rows[-1]['stil']:.2f} % ({counts['LYM']} LYM / {counts['STR']} STR cells, "
              f"{counts['TUM']} TUM)", flush=True)
    truth = {"generator": "kather_mosaic", "generator_version": GENERATOR_VERSION, "weakstil": __version__,
             "seed": seed, "n": n, "prefix": prefix, "grid": grid, "pitch_px": PITCH, "mpp": MPP,
             "target_range": [low, high], "tiles": str(tiles_dir),
             "tiles_per_class": {c: len(v) for c, v in sorted(tiles.items())},
             "truth": "stil = 100 * LYM / (LYM + STR) cells of the bed (TUM + STR + LYM cells)",
             "codes": {"T": "TUM", "S": "STR", "L": "LYM", "N": "NORM", "A": "ADI", "M": "MUS", ".": "GLASS"},
             "slides": slides}
    write_text(out / "truth.json", json.dumps(truth, indent=1) + "\n")
    write_text(out / "labels.csv", pd.DataFrame(rows).to_csv(index=False))
    return rows


# --- measure ---------------------------------------------------------------------------------


def colour_ratios(cohort: Path) -> dict[str, float]:
    """The colour rule's ratio per slide over its truth bed, cached in COHORT/colour_rule.csv (the
    slides do not change once made; a remade cohort is older than its cache only if remade by hand)."""
    import pandas as pd

    from benchmarks.colour_rule import slide_ratio, tile_counts

    truth = read_truth(cohort)
    cache = cohort / COLOUR_CACHE
    if cache.is_file() and cache.stat().st_mtime >= (cohort / "truth.json").stat().st_mtime:
        table = pd.read_csv(cache)
        if set(table["slide_id"]) == set(truth["slides"]):
            return dict(zip(table["slide_id"], table["ratio"].astype(float)))
    out = {}
    for sid, s in truth["slides"].items():
        ii, jj = np.nonzero(bed_mask(s["grid"]))
        coords = np.stack([jj * truth["pitch_px"], ii * truth["pitch_px"]], 1)
        out[sid] = slide_ratio(tile_counts(cohort / "slides" / f"{sid}.tiff", coords, truth["pitch_px"]))
    write_text(cache, pd.DataFrame({"slide_id": list(out), "ratio": list(out.values())}).to_csv(index=False))
    return out


def colour_rule(cohort: Path, slide_ids: list[str], y: np.ndarray,
                calibrate_on: Path | None) -> tuple[np.ndarray, str, float]:
    """The rule's sTIL% for ``slide_ids`` (truth ``y``), how it was calibrated, Pearson(ratio, truth)."""
    from weakstil.metrics import pearson

    ratios = colour_ratios(cohort)
    r = np.array([ratios[s] for s in slide_ids])
    if calibrate_on is not None:
        other = read_truth(calibrate_on)
        other_r = colour_ratios(calibrate_on)
        ids = list(other["slides"])
        other_y = [stil_of(other["slides"][s]["counts"]) for s in ids]
        a, b = np.polyfit([other_r[s] for s in ids], other_y, 1)
        pred, how = np.clip(a * r + b, 0, 100), f"calibrated on {calibrate_on} ({len(ids)} slides)"
    else:
        if len(r) < 3:
            raise MosaicError(f"{len(r)} slide(s) scored: the colour rule's leave-one-out calibration needs 3; "
                              "give --calibrate-on OTHER_COHORT or --no-colour-rule")
        pred = np.zeros_like(r)
        for i in range(len(r)):
            keep = np.arange(len(r)) != i
            a, b = np.polyfit(r[keep], y[keep], 1)
            pred[i] = np.clip(a * r[i] + b, 0, 100)
        how = "leave-one-out calibrated on this cohort"
    return pred, how, pearson(r, y)


def bed_dice(h5: Path, cells: list[str], pitch: int) -> tuple[float, str]:
    """Dice of the score file's tumour-bed mask vs the truth bed, and the bed's source ("" when the
    file holds no bed mask: Dice NaN)."""
    import h5py

    if not h5.is_file():
        return float("nan"), ""
    with h5py.File(h5, "r") as f:
        source = str(f.attrs.get("tumorbed_source", ""))
        if "tumorbed_mask" not in f:
            return float("nan"), source
        mask = f["tumorbed_mask"][:] > 0
        mask_mpp = float(f["tumorbed_mask"].attrs["mpp"])
        slide_mpp = float(f.attrs["slide_mpp"])
    truth = bed_mask(cells)
    # the truth cell under each mask pixel's centre (any mask resolution, not only whole divisors)
    step = mask_mpp / slide_mpp / pitch
    ci = np.minimum(((np.arange(mask.shape[0]) + 0.5) * step).astype(int), truth.shape[0] - 1)
    cj = np.minimum(((np.arange(mask.shape[1]) + 0.5) * step).astype(int), truth.shape[1] - 1)
    t = truth[np.ix_(ci, cj)]
    return 2.0 * float((mask & t).sum()) / max(float(mask.sum() + t.sum()), 1.0), source


def measure(cohort: Path, scores: Path, tumorbed_truth: bool, calibrate_on: Path | None,
            with_colour: bool) -> tuple[object, dict[str, object]]:
    """(per-slide table, summary) of a scored cohort; see the module docstring."""
    import pandas as pd

    from weakstil.metrics import pearson, r2_score

    truth = read_truth(cohort)
    results = scores / "results.csv"
    if not results.is_file():
        raise MosaicError(f"{results} is missing: score the cohort first (weakstil score --slides "
                          f"{cohort / 'labels.csv'} --out {scores})")
    res = pd.read_csv(results, dtype={"slide_id": str, "qc": str})
    for col in ("slide_id", "stil", "stil_lower_90", "stil_upper_90", "status"):
        if col not in res.columns:
            raise MosaicError(f"{results} has no {col} column: is it a weakstil score results.csv?")
    res = res[res["slide_id"].isin(truth["slides"])]
    if res.empty:
        raise MosaicError(f"{results} holds none of {cohort}'s slides ({next(iter(truth['slides']))}, ...)")
    rows = []
    for r in res.itertuples(index=False):
        s = truth["slides"][r.slide_id]
        y = stil_of(s["counts"])
        lo, hi = float(r.stil_lower_90), float(r.stil_upper_90)
        dice, source = bed_dice(scores / f"{r.slide_id}.h5", s["grid"], truth["pitch_px"])
        source = source or str(getattr(r, "tumorbed_source", ""))
        if tumorbed_truth and source != "annotation":
            raise MosaicError(f"{r.slide_id}: its bed came from '{source or 'nothing recorded'}', not the truth "
                              f"annotation: score with --annotations {cohort / 'annotations'}, or leave out "
                              "--tumorbed-truth")
        rows.append({"slide": r.slide_id, "truth": round(y, 2), "score": float(r.stil),
                     "interval": "-" if np.isnan(lo) else f"{lo:.0f}-{hi:.0f}",
                     "covers": bool(lo <= y <= hi), "bed": source, "dice": dice,
                     "status": r.status, "qc": qc if isinstance(qc := getattr(r, "qc", ""), str) else "",
                     "width": hi - lo})
    table = pd.DataFrame(rows).sort_values("truth").reset_index(drop=True)
    ok = table["score"].notna() & (table["status"] == "ok")
    if not ok.any():
        raise MosaicError(f"{results}: none of {cohort}'s slides was scored (status ok): see its error column")
    y, p = table.loc[ok, "truth"].to_numpy(float), table.loc[ok, "score"].to_numpy(float)
    has_int = ok & table["width"].notna()
    flagged = ok & (table["qc"] != "")
    summary: dict[str, object] = {
        "n_slides": len(truth["slides"]), "n_scored": int(ok.sum()), "not_scored": sorted(set(truth["slides"]) -
                                                                                          set(table.loc[ok, "slide"])),
        "r2": r2_score(y, p) if ok.sum() > 1 else float("nan"), "mae": float(np.abs(y - p).mean()),
        "pearson": pearson(y, p) if ok.sum() > 2 else float("nan"),
        "coverage": float(table.loc[has_int, "covers"].mean()) if has_int.any() else float("nan"),
        "n_with_interval": int(has_int.sum()), "mean_width": float(table.loc[has_int, "width"].mean()),
        "misses": int((has_int & ~table["covers"]).sum()),
        "misses_flagged": int((has_int & ~table["covers"] & flagged).sum()), "n_flagged": int(flagged.sum()),
        "mean_dice": float(table["dice"].mean()), "min_dice": float(table["dice"].min()),
        "bed_sources": table["bed"].value_counts().to_dict()}
    if with_colour:
        pc, how, pr = colour_rule(cohort, list(table.loc[ok, "slide"]), y, calibrate_on)
        table.loc[ok, "colour_rule"] = pc.round(2)
        summary["colour_rule"] = {"r2": r2_score(y, pc) if len(y) > 1 else float("nan"),
                                  "mae": float(np.abs(y - pc).mean()), "pearson_ratio_truth": pr,
                                  "calibration": how}
    return table.drop(columns="width"), summary


def report(table, summary: dict[str, object]) -> str:
    import pandas as pd

    with pd.option_context("display.width", 250, "display.max_colwidth", 80, "display.max_rows", 1000):
        lines = [table.to_string(index=False, float_format=lambda v: f"{v:.2f}")]
    s = summary
    lines.append(f"model: n={s['n_scored']} of {s['n_slides']} R²={s['r2']:.3f} MAE={s['mae']:.1f} "
                 f"pearson={s['pearson']:.3f} coverage={s['coverage']:.0%} of {s['n_with_interval']} "
                 f"(mean width {s['mean_width']:.0f}; {s['misses']} misses, {s['misses_flagged']} of them on "
                 f"flagged slides; {s['n_flagged']} flagged) bed Dice mean {s['mean_dice']:.2f} "
                 f"min {s['min_dice']:.2f} (beds: {', '.join(f'{k} {v}' for k, v in s['bed_sources'].items())})")
    if s["not_scored"]:
        lines.append(f"not scored (left out of the figures): {', '.join(s['not_scored'])}")
    if "colour_rule" in s:
        c = s["colour_rule"]
        lines.append(f"colour rule ({c['calibration']}, truth beds): R²={c['r2']:.3f} MAE={c['mae']:.1f} "
                     f"pearson(ratio, truth)={c['pearson_ratio_truth']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make", help="build a cohort of Kather-mosaic slides with exact truth")
    mk.add_argument("--out", type=Path, required=True, help="cohort folder (slides/, annotations/, labels.csv, ...)")
    mk.add_argument("-n", type=int, default=16, help="slides (truth spread evenly over 0-80 %%)")
    mk.add_argument("--seed", type=int, default=0)
    mk.add_argument("--grid", type=int, default=20, help="cells a side (20: 3840 px, 1.9 mm at 0.5 µm/px)")
    mk.add_argument("--prefix", default="mosaic", help="slide ids are PREFIX_000, PREFIX_001, ...")
    mk.add_argument("--tiles", type=Path, default=default_tiles(ROOT), help="folder of the 32 Kather CRC tiles "
                    "(labels.csv; images/ or beside it); default ../shared/data/tiles/kather_crc_val_he_7k_sample "
                    "beside the repository, else tests/data/kather (the same files)")
    me = sub.add_parser("measure", help="per-slide table and R²/MAE/coverage/Dice of a scored cohort")
    me.add_argument("--cohort", type=Path, required=True, help="a folder from 'make'")
    me.add_argument("--scores", type=Path, required=True, help="'weakstil score' output folder of that cohort")
    me.add_argument("--tumorbed-truth", action="store_true", help="require every slide's bed to be its truth "
                    "annotation (score --annotations COHORT/annotations)")
    me.add_argument("--calibrate-on", type=Path, help="calibrate the colour rule on this other 'make' cohort "
                    "(default: leave-one-out on --cohort)")
    me.add_argument("--no-colour-rule", action="store_true", help="skip the colour rule (about 3 s a slide, cached)")
    me.add_argument("--json", type=Path, help="also write the table, figures, settings and versions here")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "make":
            t0 = time.perf_counter()
            rows = make(args.out, args.n, args.seed, args.grid, args.prefix, args.tiles)
            print(f"{len(rows)} slides -> {args.out} ({time.perf_counter() - t0:.0f} s): labels.csv, truth.json, "
                  "slides/, annotations/")
            return 0
        table, summary = measure(args.cohort, args.scores, args.tumorbed_truth, args.calibrate_on,
                                 not args.no_colour_rule)
    except MosaicError as exc:
        print(f"kather_mosaic: {exc}", file=sys.stderr)
        return 1
    print(report(table, summary))
    if args.json:
        from weakstil.runtime import library_versions

        record = {"command": sys.argv, "cohort": str(args.cohort), "scores": str(args.scores),
                  "tumorbed_truth": args.tumorbed_truth, "truth": {k: v for k, v in read_truth(args.cohort).items()
                                                                   if k != "slides"},
                  "summary": summary, "slides": json.loads(table.to_json(orient="records")),
                  "versions": library_versions()}
        write_text(args.json, json.dumps(record, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
