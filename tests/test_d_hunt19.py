"""Hunt 19 (d): what a pathologist and a lab manager read after 'weakstil score' and 'weakstil report'.

- an interval shown with one decimal could contradict its own ``near_threshold`` flag, which is judged
  on the interval as results.csv writes it (4 decimals): an upper end 29.96 showed "30.0" without the
  flag, and a flagged lower end 29.97 showed "interval 30.0-40.0 contains the threshold 30";
- the cohort report named how many slides an evaluation left out, never which (and an out-of-fold
  evaluation, or the model's own cross-validation, not even that): they were in no metric and no row.
- (hunt 38g) a cohort report of an evaluation at another threshold than the model's (``evaluate --oof
  --threshold 20`` of a model trained at 30) showed its headline at 20 and each interval on its side of 20,
  but train's ``near_threshold``, judged at 30: 29.97–45.0 flagged, 12.5–29.96 (which holds 20) not. The
  flag is now judged at the report's threshold, and the settings' model threshold is named "in training".

The model folder is written by hand in the shape 'weakstil train' writes (training one takes ~20 s and
nothing here depends on weights); the evaluation is made by the real 'weakstil evaluate --oof'."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli


def test_heatmap_title_interval_ends_stay_on_their_side_of_the_threshold() -> None:
    from weakstil.outputs import heatmap_title

    # upper end 29.96 < 30: not near_threshold (as results.csv writes it), so not shown as "30.0"
    title = heatmap_title("S1", 20.0, False, 30.0, {"stil_lower_90": 12.34, "stil_upper_90": 29.96})
    assert "12.3–29.96" in title and "30.0)" not in title
    # lower end 29.97 < 30 <= upper: flagged; shown below the threshold, not "30.0"
    title = heatmap_title("S2", 35.0, True, 30.0, {"stil_lower_90": 29.97, "stil_upper_90": 40.0,
                                                  "qc": "near_threshold"})
    assert "29.97–40.0" in title and "qc: high/low call uncertain" in title
    # an end on the threshold itself: 30.0 is high and inside (lower 30.0 is not < 30): one decimal
    assert "30.0–40.0" in heatmap_title("S3", 35.0, True, 30.0, {"stil_lower_90": 30.0, "stil_upper_90": 40.0})
    # far from it: one decimal as before
    assert "(90 % interval 3.2–12.1)" in heatmap_title("S4", 7.6, False, 30.0,
                                                      {"stil_lower_90": 3.2478, "stil_upper_90": 12.1085})


@pytest.mark.parametrize(("low", "high", "flagged", "shown"), [
    (29.97, 40.0, True, "interval 29.97-40.0 contains the threshold 30"),
    (12.0, 29.96, False, None),
    (12.0, 29.99996, True, "interval 12.0-30.0 contains the threshold 30"),  # written 30.0000: inside
    (0.0, 53.8964, True, "interval 0.0-53.9 contains the threshold 30"),
])
def test_near_threshold_reason_shows_the_interval_it_judged(low, high, flagged, shown) -> None:
    from weakstil.qc.flags import slide_flags

    flags, why = slide_flags(ood_score=None, ood_threshold=None, n_bed_tiles=50, low=low, high=high,
                             threshold=30.0, image=None, image_ref=None)
    assert ("near_threshold" in flags) == flagged
    if shown:
        assert why["near_threshold"] == shown
        ends = shown.split()[1].split("-")
        # the ends as shown say the same as the flag: lower < threshold <= upper
        assert float(ends[0]) < 30.0 <= float(ends[1])


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> dict[str, Path]:
    """A model whose 2-fold cross-validation has slides s1, s2 (s2's interval ends 29.96: no flag) and
    that left s3 out of training (no tile in its bed); a cohort CSV of the three."""
    from PIL import Image

    root = tmp_path_factory.mktemp("d_hunt19")
    model = root / "model"
    (model / "cv").mkdir(parents=True)
    (model / "qc").mkdir()
    meta = {"format": "weakstil-mil", "format_version": 1, "threshold": 30.0, "seed": 0, "weights_sha256": "ab" * 32,
            "encoder": {"name": "enc", "weights_sha256": "cd" * 32, "card": {"base": "small-cnn"}},
            "tiling": {"mpp": 0.5, "tile_px": 224},
            "training": {"config": {"aggregator": "stroma"}, "cohort": str(root / "none.csv"), "n_slides": 2,
                         "cross_validation": {"folds": 2},
                         "tumorbeds": {"slides": {"annotation": 2}, "left_out_no_tile_in_bed": ["s3"]}}}
    (model / "model.json").write_text(json.dumps(meta))
    (model / "cv" / "oof_predictions.csv").write_text("slide_id,stil_true,stil_pred,fold,group\n"
                                                      "s1,40.0,35.0,1,A\ns2,10.0,20.0,2,B\n")
    (model / "cv" / "metrics.json").write_text(json.dumps({"n": 2, "r2": 0.5, "mae": 7.5, "threshold": 30.0}))
    (model / "qc" / "training_slides.csv").write_text("slide_id,stil_true,stil_lower_90,stil_upper_90,qc\n"
                                                      "s1,40.0,29.97,45.0,near_threshold\ns2,10.0,12.5,29.96,\n")
    for name in ("scatter.png", "roc.png"):
        Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(model / "cv" / name)
    cohort = root / "cohort.csv"
    cohort.write_text("slide_id,path,stil,group\ns1,s1.tiff,40.0,A\ns2,s2.tiff,10.0,B\ns3,s3.tiff,25.0,A\n")
    return {"root": root, "model": model, "cohort": cohort}


def _line(md: str, slide: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(f"| {slide} |"))


def test_report_names_the_slides_left_out_and_shows_intervals_as_flagged(model_folder, tmp_path: Path) -> None:
    from weakstil.report import build_report

    md = build_report(model_folder["model"], tmp_path / "r")["report.md"].read_text()
    assert "29.97–45.0" in _line(md, "s1") and "near_threshold" in _line(md, "s1")
    assert "12.5–29.96" in _line(md, "s2") and "30.0" not in _line(md, "s2")
    # the slide train left out is in no metric and no row: the header names it, with why
    assert "s3 (no tumour bed, left out of training)" in md.split("## Metrics")[0]

    # an evaluation of the out-of-fold predictions against the cohort: s3 has none, and is named
    ev = tmp_path / "ev"
    proc = run_cli("evaluate", model_folder["cohort"], "--oof", model_folder["model"] / "cv" / "oof_predictions.csv",
                   "--out", ev)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((ev / "metrics.json").read_text())["excluded"] == [{"slide_id": "s3", "reason": "no tumour bed"}]
    md = build_report(model_folder["model"], tmp_path / "r_ev", evaluation_dir=ev)["report.md"].read_text()
    assert "1 more slide(s) left out: s3 (no tumour bed)" in md.split("## Metrics")[0]


def test_model_evaluation_report_names_each_slide_left_out_with_its_reason() -> None:
    from weakstil.report import describe_evaluation

    metrics = {"mode": "model", "n": 4, "cohort": "c.csv", "scoring": "final",
               "excluded": [{"slide_id": "nobed", "reason": "no tumour bed"}]}
    text = describe_evaluation(metrics, {}, Path("ev"), None, Path("none.csv"))
    assert text.endswith("; 1 more slide(s) left out: nobed (no tumour bed))")


def test_stain_reasons_say_the_slides_own_value_not_only_its_distance(cmu) -> None:
    """'e_strength 1.16 > 0.768' read as the slide's eosin strength, which was 2.47 (the distance
    |log(2.47 / 0.775)| was 1.16): a reason now says the value measured, the training median and
    the distance its limit is compared with."""
    import dataclasses

    from weakstil.qc.flags import stain_outside, stain_reference
    from weakstil.qc.image import slide_image_stats
    from weakstil.slide import Slide

    with Slide.open(cmu) as slide:
        real = slide_image_stats(slide, np.array([[0, 0], [224, 224]]), None, 224, 0.5)
    reference = stain_reference([real])
    h, e = real.stain_max_c
    odd = dataclasses.replace(real, stain_max_c=[h, 3 * e], od_mean=[4 * v for v in real.od_mean],
                              stain_h=list(real.stain_e))
    reasons = {r.split(":")[0]: r for r in stain_outside(odd, reference)}
    assert set(reasons) == {"e_strength", "od", "h_angle"}
    assert f"eosin strength {3 * e:.3g} vs the training slides' median {e:.3g}" in reasons["e_strength"]
    assert f"|log ratio| {math.log(3):.3g} > " in reasons["e_strength"]
    assert "haematoxylin vector" in reasons["h_angle"] and "° from the training slides' median (> " in reasons["h_angle"]
    assert f"mean optical density (R/G/B) {4 * real.od_mean[0]:.3g}/" in reasons["od"]
    assert f"|log ratio| up to {math.log(4):.3g} > " in reasons["od"]


def test_heatmap_says_what_its_cyan_outline_is_and_that_outside_tiles_do_not_count(cmu, tmp_path: Path) -> None:
    """Every tile is painted with its score, those outside the tumour bed too (CMU-1: bright orange
    tiles outside the outline), and nothing in the PNG said what the cyan outline was nor that only
    its tiles made the sTIL%. A key line under the panels now says it."""
    from PIL import Image

    from weakstil.outputs import heatmap_key, write_heatmap_png
    from weakstil.slide import Slide

    key = heatmap_key({"tumorbed_source": "model", "n_tumorbed_tiles": 21, "n_tiles": 49,
                       "tumorbed_tile_threshold": 0.5})
    assert key == ("cyan outline: the 21 of 49 tiles that made the sTIL%: those 50 % or more inside the tumour bed "
                   "(detected); the tiles outside it are shown, not counted")  # (hunt 20: the outline is of the tiles)
    assert "(annotation); no tile lies 50 % or more inside it: no sTIL%" in heatmap_key(
        {"tumorbed_source": "annotation", "n_tumorbed_tiles": 0, "n_tiles": 54})
    assert "(whole tissue: bed fallback)" in heatmap_key({"tumorbed_source": "tissue-fallback", "n_tumorbed_tiles": 9,
                                                         "n_tiles": 9})

    with Slide.open(cmu) as slide:
        thumb = slide.read_thumbnail(8.0)
    coords = np.array([[0, 0], [448, 448], [896, 896]])
    bed = np.zeros(thumb.shape[:2], bool)
    bed[20:60, 20:60] = True
    args = (thumb, 8.0, 0.5, coords, 448.0, np.array([10.0, 50.0, 90.0]))
    plain = write_heatmap_png(tmp_path / "plain.png", *args, tumorbed_mask=bed, title="S")
    keyed = write_heatmap_png(tmp_path / "keyed.png", *args, tumorbed_mask=bed, title="S", key=key)
    unbedded = write_heatmap_png(tmp_path / "nobed.png", *args, title="S", key=key)  # no outline: no key
    with Image.open(plain) as a, Image.open(keyed) as b, Image.open(unbedded) as c:
        assert b.height == a.height + 22 and c.size == a.size and b.width >= 600  # the key line fits
        strip = np.asarray(b.convert("RGB"))[-30:]
    assert ((strip == (0, 229, 255)).all(axis=2)).sum() > 20  # the cyan swatch
    assert ((strip < 100).all(axis=2)).sum() > 200  # the text


def test_a_report_at_an_evaluations_threshold_judges_near_threshold_there(model_folder, tmp_path: Path) -> None:
    """(hunt 38g) The slide table's near_threshold is judged at the threshold of the metrics shown."""
    from weakstil.report import build_report

    ev = tmp_path / "ev"
    run_cli("evaluate", model_folder["cohort"], "--oof", model_folder["model"] / "cv" / "oof_predictions.csv",
            "--out", ev, "--threshold", "20", check=True)
    md = build_report(model_folder["model"], tmp_path / "r", evaluation_dir=ev)["report.md"].read_text()
    assert "AUC sTIL-high ≥20%" in md  # the headline: at the evaluation's threshold
    # the model's own, named as such (old: "| sTIL-high threshold % | `30.0` |", read as the report's)
    assert "| sTIL-high threshold % in training | `30.0` |" in md
    # train flagged s1 (29.97–45.0) at 30; at 20 only s2 (12.5–29.96) is near it. Old: s1 flagged, s2 not
    assert "30.0–45.0" in _line(md, "s1") and "near_threshold" not in _line(md, "s1")
    assert "12.5–30.0" in _line(md, "s2") and "near_threshold" in _line(md, "s2")


def test_the_training_flag_share_is_judged_at_the_reports_threshold(model_folder, tmp_path: Path) -> None:
    """(helper h39d) The headline's "share of training slides with a qc flag" was train's (model.json
    ``qc.training_flagged``, near_threshold judged at 30) beside a slide table judged at the evaluation's 20:
    50.0 % over a table of 2 slides that flagged none. Now it is the table's share, said to be judged at 20."""
    import shutil

    from weakstil.report import build_report

    model = Path(shutil.copytree(model_folder["model"], tmp_path / "model"))
    meta = json.loads((model / "model.json").read_text())
    meta["qc"] = {"training_flagged": 0.5, "confidence": {"level": 0.9, "n": 2}}
    (model / "model.json").write_text(json.dumps(meta))
    (model / "qc" / "training_slides.csv").write_text("slide_id,stil_true,stil_lower_90,stil_upper_90,qc\n"
                                                      "s1,40.0,29.97,45.0,near_threshold\ns2,10.0,12.5,18.0,\n")
    ev = tmp_path / "ev"
    run_cli("evaluate", model_folder["cohort"], "--oof", model / "cv" / "oof_predictions.csv", "--out", ev,
            "--threshold", "20", check=True)
    md = build_report(model, tmp_path / "r", evaluation_dir=ev)["report.md"].read_text()
    assert "near_threshold" not in _line(md, "s1") + _line(md, "s2")  # neither interval holds 20
    # old: "| share of training slides with a qc flag | 50.0 % |"
    assert "| share of training slides with a qc flag (near_threshold judged at 20 %) | 0.0 % |" in md
    at_30 = build_report(model, tmp_path / "r30")["report.md"].read_text()  # the model's own threshold: train's share
    assert "| share of training slides with a qc flag | 50.0 % |" in at_30 and "near_threshold" in _line(at_30, "s1")
