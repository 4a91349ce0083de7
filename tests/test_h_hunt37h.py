"""A multi-centre cohort of mixed scans, retrained by an outside tester (hunt 37h).

A cohort of 14 slides from 4 centres (synthetic looks default / alt / hard, the real SVS and DICOM files),
scanned at 0.25, 0.5, 1 and 2 µm/px, two of them at the cohort CSV's mpp column, embedded with
--allow-upsample, trained leave-centre-out:
- `train` said nothing of the scans: two slides trained on upsampled 2x and 4x, two at a given µm/px, and
  model.json recorded none of it (only the feature files, which a re-embed replaces). Now one line of the
  scans, a warning naming the upsampled slides, and `training.scans` in model.json.
- no per-centre error: one centre's 3 slides were scored +30.7 points out of fold (the others -5.2 to +7.8),
  seen only row by row in cv/oof_predictions.csv. Now a `cross-validation by centre` line, a warning for a
  centre far from the others, and `training.cross_validation.error_by_group`.
- the workflow's preflight passed a 1 and a 2 µm/px scan, whose tile jobs then failed with the fix "pass
  --allow-upsample", which the workflow has no key for. Now the preflight refuses them, naming them and mpp.
- a slide `embed` refused (unreadable, no tissue) left its row to `train`, whose fix was "embed these slides
  first": the same refusal again. Now the fix also says to take such a slide out of the CSV.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_tiff_slide


def disc(seed: int, side: int = 512) -> np.ndarray:
    """A pink disc of tissue with dark nuclei on white glass."""
    rng = np.random.default_rng(seed)
    rgb = np.full((side, side, 3), 240, np.uint8)
    yy, xx = np.mgrid[:side, :side]
    inside = (yy - side // 2) ** 2 + (xx - side // 2) ** 2 < (side * 0.42) ** 2
    rgb[inside] = (205, 120 + 4 * seed, 180)
    rgb[inside & (rng.random(inside.shape) < 0.1)] = (80, 40, 120)
    return rgb


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """Six slides of two centres (x: sTIL 10-14 %, y: 60-64 %): x2 scanned at 1 µm/px, y0 stating no µm/px
    (the CSV's mpp column gives it); the others at 0.5. All embedded with --allow-upsample."""
    import tifffile

    root = tmp_path_factory.mktemp("hunt37h")
    (root / "slides").mkdir()
    rows = []
    for i, (sid, stil) in enumerate([("x0", 10), ("x1", 12), ("x2", 14), ("y0", 60), ("y1", 62), ("y2", 64)]):
        rgb, mpp = disc(i), ""
        if sid == "x2":  # the same 0.26 mm of tissue in half the pixels
            write_tiff_slide(root / "slides" / f"{sid}.tiff", rgb[::2, ::2].copy(), mpp=1.0, levels=1)
        elif sid == "y0":
            tifffile.imwrite(root / "slides" / f"{sid}.tiff", rgb, tile=(256, 256), photometric="rgb",
                             compression="jpeg")
            mpp = "0.5"
        else:
            write_tiff_slide(root / "slides" / f"{sid}.tiff", rgb, mpp=0.5, levels=1)
        rows.append(f"{sid},slides/{sid}.tiff,{stil},{sid[0]},{mpp}")
    (root / "cohort.csv").write_text("slide_id,path,stil,centre,mpp\n" + "\n".join(rows) + "\n")
    run_cli("embed", "--slides", root / "cohort.csv", "--out", root / "features", "--encoder", "small-cnn",
            "--weights", "random", "--allow-upsample", "--tile-size", "128", "--threads", "1", "--workers", "0",
            "--stain-norm", "none", "--no-tile-stats", check=True)
    return root


def test_train_says_and_records_the_scans_and_each_centres_error(lab: Path, one_torch_thread) -> None:
    proc = run_cli("train", lab / "cohort.csv", "-f", lab / "features", "-o", lab / "model", "--group-column",
                   "centre", "--folds", "2", "--epochs", "1", "--members", "1", "--threads", "1", check=True)
    said = " ".join(proc.stderr.split())
    training = json.loads((lab / "model" / "model.json").read_text())["training"]
    # old code: no 'scans' in model.json, and no line of the scans or of the upsampled slide
    assert training.get("scans") == {"mpp": 0.5, "slide_mpp_min": 0.5, "slide_mpp_max": 1.0,
                                     "slide_mpp_given": {"y0": 0.5}, "upsampled": {"x2": 2.0}}, training.get("scans")
    assert "1 of the 6 slides were scanned coarser" in said and "(x2 2x; embedded with --allow-upsample)" in said, said
    # leave-centre-out: each centre is scored from the other's labels, some 50 points off
    by_group = training["cross_validation"].get("error_by_group")  # old code: None
    assert [(r["group"], r["n"]) for r in by_group or []] == [("x", 3), ("y", 3)], by_group
    assert by_group[0]["bias"] > 25 and by_group[1]["bias"] < -25, by_group
    assert "cross-validation by centre: x: 3 slides, MAE" in said, said
    assert "centre 'x': its 3 slides are scored" in said and "above their labels on average" in said, said


def test_the_workflow_preflight_refuses_a_scan_coarser_than_its_mpp(lab: Path) -> None:
    proc = run_cli("preflight", "--config", f"cohort={lab / 'cohort.csv'}", "--config", "folds=2",
                   "--config", f"out={lab / 'wf'}")
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr  # old code: exit 0, the tile job failed later
    assert "1 cohort slide is scanned coarser than mpp 0.5" in errors[0] and "x2.tiff (1 µm/px)" in errors[0]
    assert "set mpp to the coarsest scan" in errors[0], errors


def test_a_slide_embed_refused_is_to_be_taken_out_of_the_cohort_csv(lab: Path) -> None:
    write_tiff_slide(lab / "slides" / "blank.tiff", np.full((512, 512, 3), 242, np.uint8), levels=1)
    csv = lab / "with_blank.csv"
    csv.write_text((lab / "cohort.csv").read_text() + "blank,slides/blank.tiff,20,y,\n")
    proc = run_cli("train", csv, "-f", lab / "features", "-o", lab / "model_blank", "--folds", "1")
    assert proc.returncode == 1 and "row 8 (blank): no features" in proc.stderr, proc.stderr
    # old code: only "embed these slides first", which refuses a slide without tissue again
    assert "take a slide embed refused (unreadable, no tissue) out of the CSV" in proc.stderr, proc.stderr
