"""Out-of-fold error by band of the true sTIL%: a trained model against the colour-deconvolution rule.

    .venv/bin/python benchmarks/band_errors.py COHORT MODEL/cv/oof_predictions.csv

COHORT is a ``weakstil synth`` cohort folder (``labels.csv``, ``slides/``, ``truth/``); the rule
(``benchmarks/colour_rule.py``) reads each slide's tumour-bed tiles from the truth and fits its
linear map on the training folds of the model's own cross-validation (the ``fold`` column), so both
are judged on the same splits. Prints R², MAE and n / MAE / bias per band (< 10, 10-30, 30-60, >= 60 %).
The rule always reads the truth's tumour beds; a model trained over the whole tissue (no bed given:
``training.tumorbeds`` of its ``model.json`` counts ``tissue`` slides) is said to be so, as its
sTIL-high slides then score low for that reason (hunt 32f: >= 60 % bias -7.3 whole tissue, -1.5 with beds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import pandas as pd

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from colour_rule import calibrate_oof, slide_ratio, tile_counts, truth_bed_tiles

    from weakstil.metrics import band_text, error_by_band, mae, r2_score

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cohort", type=Path)
    ap.add_argument("oof", type=Path)
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench" / "band_errors")
    args = ap.parse_args()
    from inputs import need

    need(args.cohort / "labels.csv", "cohort (labels.csv)", "a `weakstil synth` cohort folder (with truth/)")
    need(args.oof, "out-of-fold predictions CSV", "a `weakstil train` model's cv/ out-of-fold predictions CSV")
    oof = pd.read_csv(args.oof)
    table = pd.read_csv(args.cohort / "labels.csv").set_index("slide_id").loc[oof["slide_id"]]
    cache = args.cache / args.cohort.resolve().name
    cache.mkdir(parents=True, exist_ok=True)
    ratios = []
    for sid, path in zip(oof["slide_id"], table["path"]):
        stored = cache / f"{sid}.npy"
        if stored.exists():
            counts = np.load(stored)
        else:
            coords, side = truth_bed_tiles(args.cohort / "truth" / f"{sid}.h5")
            counts = tile_counts(args.cohort / path, coords, side)
            np.save(stored, counts)
        ratios.append(slide_ratio(counts))
    y = oof["stil_true"].to_numpy(float)
    rule, _ = calibrate_oof(np.array(ratios), y, oof["fold"].to_numpy())
    meta = args.oof.resolve().parents[1] / "model.json"  # MODEL/cv/oof_predictions.csv
    if meta.is_file():
        import json

        beds = ((json.loads(meta.read_text(encoding="utf-8")).get("training") or {}).get("tumorbeds") or {})
        tissue = (beds.get("slides") or {}).get("tissue", 0)
        if tissue:
            print(f"note: the model was trained over the whole tissue on {tissue} slide(s) (no tumour bed given), "
                  "the rule on the truth's beds: not the same sTIL%; train with --annotations COHORT/truth")
    for name, p in (("model", oof["stil_pred"].to_numpy(float)), ("colour rule", rule)):
        print(f"{name:12s} R² {r2_score(y, p):.3f} MAE {mae(y, p):.2f} | {band_text(error_by_band(y, p))}")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
