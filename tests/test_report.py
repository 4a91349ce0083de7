"""The cohort report (weakstil.report, `weakstil report`) on a tiny trained model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli


def _strip_mpp(slide: Path) -> float:
    """Make a synthetic TIFF state no resolution unit (OpenSlide then reports no µm/px); its µm/px."""
    import tifffile

    from weakstil.slide import Slide

    with Slide.open(slide) as s:
        mpp = float(s.mpp)
    with tifffile.TiffFile(slide, mode="r+b") as tf:
        for page in tf.pages:
            page.tags["ResolutionUnit"].overwrite(1)  # RESUNIT_NONE
    return mpp


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """4 synthetic slides in 2 centres, embedded with a random small CNN, 2-fold CV."""
    import torch

    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.mil.config import TrainConfig
    from weakstil.synth import generate_cohort
    from weakstil.tiles import tile_slide_to_dir
    from weakstil.train import train_cohort

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("report")
        labels = generate_cohort(root / "cohort", 4, 1, size_mm=(0.8, 0.8), n_groups=2, progress=False)
        encoder = create_encoder("small-cnn", "random")
        for i, rel in enumerate(labels["path"]):
            slide = root / "cohort" / rel
            # a cohort of mixed scanners: the first slide's file states no µm/px (tiled and embedded with
            # --slide-mpp), the others do
            slide_mpp = _strip_mpp(slide) if i == 0 else None
            tile_slide_to_dir(slide, root / "tiles", slide_mpp=slide_mpp)
            embed_slide(slide, encoder, out_dir=root / "features", slide_mpp=slide_mpp)
        train_cohort(root / "cohort" / "labels.csv", root / "features", root / "model",
                     TrainConfig(epochs=3, seed=0, device="cpu", threads=1), n_folds=2)
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "cohort": root / "cohort" / "labels.csv", "model": root / "model", "tiles": root / "tiles",
            "ids": list(labels["slide_id"])}


def test_report_has_metrics_plots_slides_settings_versions(trained, tmp_path: Path, one_torch_thread) -> None:
    from weakstil.report import build_report

    settings = {"folds": 2, "slurm": {"partition": "cpu"}, "encoder": "small-cnn"}
    files = build_report(trained["model"], tmp_path / "r", cohort=trained["cohort"], tiles_dir=trained["tiles"],
                         settings=settings, title="Tiny cohort")
    assert {"report.html", "report.md", "scatter.png", "roc.png", "overview.png"} <= set(files)
    page = files["report.html"].read_text()
    md = files["report.md"].read_text()
    cv = json.loads((trained["model"] / "cv" / "metrics.json").read_text())
    assert "<h1>Tiny cohort</h1>" in page
    assert f"{cv['r2']:.3f}" in page and f"| MAE (sTIL points) | {cv['mae']:.3f} |" in md
    assert "AUC sTIL-high ≥30%" in page
    oof = pd.read_csv(trained["model"] / "cv" / "oof_predictions.csv")
    for sid, pred in zip(oof["slide_id"], oof["stil_pred"]):
        assert (tmp_path / "r" / "slides" / f"{sid}_heatmap.png").stat().st_size > 1000
        assert (tmp_path / "r" / "slides" / f"{sid}_thumb.png").is_file()
        assert f"| {sid} |" in md and f"{pred:.1f}" in md
    assert "slurm.partition" in md and "encoder weights sha256" in md  # workflow and model settings
    assert "| torch |" in md and "| python |" in md  # versions at training and report time
    assert not list((tmp_path / "r").rglob("*.tmp"))  # atomic writes leave nothing behind


def test_report_cli_defaults_to_the_models_cv_and_cohort(trained, tmp_path: Path) -> None:
    proc = run_cli("report", "--model", trained["model"], "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "r" / "report.md").read_text()
    assert all(f"| {sid} |" in md for sid in trained["ids"])
    # without --tiles there are no thumbnails, but the heatmaps come from the slides
    assert "_thumb.png" not in md and "_heatmap.png" in md


def test_report_refuses_bad_input_in_one_line(trained, tmp_path: Path) -> None:
    proc = run_cli("report", "--model", tmp_path / "nothing", "--out", tmp_path / "r")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and "model.json not found" in proc.stderr

    settings = tmp_path / "settings.yaml"
    settings.write_text("- just\n- a list\n")
    proc = run_cli("report", "--model", trained["model"], "--out", tmp_path / "r", "--settings", settings)
    assert proc.returncode == 1 and f"error: {settings}: settings are not a mapping" in proc.stderr

    no_cv = tmp_path / "no_cv"
    no_cv.mkdir()
    (no_cv / "model.json").write_text((trained["model"] / "model.json").read_text())
    proc = run_cli("report", "--model", no_cv, "--out", tmp_path / "r")
    assert proc.returncode == 1 and "Fix: train with --folds 2 or more" in proc.stderr


def test_report_of_a_model_with_a_damaged_metrics_file_says_to_copy_the_model_again(trained, tmp_path: Path) -> None:
    """A model whose own cv/metrics.json is damaged (a cut copy): the fix named another folder to pass,
    'the --out folder of weakstil evaluate --oof ...', where the model folder is what to copy again (hunt 44c)."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(trained["model"], model)
    (model / "cv" / "metrics.json").write_text("{")
    proc = run_cli("report", "--model", model, "--out", tmp_path / "r")
    assert proc.returncode == 1
    line = [x for x in proc.stderr.splitlines() if x.startswith("error:")][0]
    assert line.startswith(f"error: {model / 'cv' / 'metrics.json'}: metrics.json is not valid JSON"), line
    assert not (tmp_path / "r").exists()
    # the cheap way out the fix names (review h44i: it said 'train the model again'): works
    assert line.endswith(f"Fix: copy the whole model folder again, or run 'weakstil evaluate COHORT_CSV --oof "
                         f"{model / 'cv' / 'oof_predictions.csv'} --out DIR' and pass --evaluation DIR."), line
    proc = run_cli("evaluate", trained["cohort"], "--oof", model / "cv" / "oof_predictions.csv", "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", "--model", model, "--out", tmp_path / "r", "--evaluation", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    md = " ".join((tmp_path / "r" / "report.md").read_text().split())
    assert "2-fold cross-validation, out-of-fold predictions of 4 slides" in md


# --- weakstil evaluate into its own folder; the report says what an evaluation is ------------------


def _evaluate(trained, out, *extra):
    return run_cli("evaluate", trained["cohort"], "--model", trained["model"], "--features",
                   trained["root"] / "features", "--out", out, *extra)


def _one_error(proc) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory) -> Path:
    """The trained model evaluated (model mode) on its own training cohort."""
    out = tmp_path_factory.mktemp("evaluated") / "eval"
    proc = _evaluate(trained, out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_evaluate_records_how_its_numbers_were_made(trained, evaluated) -> None:
    m = json.loads((evaluated / "metrics.json").read_text())
    meta = json.loads((trained["model"] / "model.json").read_text())
    assert m["mode"] == "model" and m["scoring"] == meta["scoring"] and m["n_models"] >= 1
    assert m["model"] == str(trained["model"].resolve()) and m["model_sha256"] == meta["weights_sha256"]
    assert m["model_id"] == f"model@{meta['weights_sha256'][:12]}"
    assert m["cohort"] == str(trained["cohort"].resolve()) and m["features"] == str((trained["root"] / "features").resolve())
    assert m["tumorbeds"]["slides"] and m["excluded"] == []
    # every slide is a training slide of this model: counted (the CLI warned, see the next test)
    assert m["n_training_slides"] == 4
    # the versions, and the bootstrap behind ci95: its record gives the same interval again
    from weakstil.metrics import bootstrap_ci, r2_score

    assert m["versions"]["weakstil"] and m["versions"]["torch"]
    pred = pd.read_csv(evaluated / "predictions.csv")
    how = m["ci95_method"]
    again = bootstrap_ci(pred["stil_true"], pred["stil_pred"], r2_score, n_boot=how["n_boot"], seed=how["seed"])
    assert again == pytest.approx(tuple(m["ci95"]["r2"]), rel=1e-3, nan_ok=True)  # predictions.csv is rounded
    assert (evaluated / ".weakstil-output.json").is_file() and not list(evaluated.parent.glob(".eval.tmp-*"))


def test_evaluate_warns_about_training_slides_and_takes_only_its_own_folders(trained, evaluated, tmp_path) -> None:
    import shutil

    out = tmp_path / "e"
    shutil.copytree(evaluated, out)
    (out / "tiles" / "other_cohort_slide.h5").write_bytes(b"stale")
    proc = _evaluate(trained, out)  # an earlier evaluation: only with --overwrite
    assert proc.returncode == 2 and "--overwrite" in _one_error(proc)
    assert (out / "tiles" / "other_cohort_slide.h5").exists()
    proc = _evaluate(trained, out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "4 of the 4 evaluated slides are training slides of this model" in said and "in-sample" in said
    assert sorted(p.name for p in (out / "tiles").iterdir()) == sorted(f"{s}.h5" for s in trained["ids"])
    cv_before = {p.name: p.read_bytes() for p in (trained["model"] / "cv").iterdir() if p.is_file()}
    for inside in (trained["model"] / "cv", trained["model"] / "cv" / "new"):
        proc = _evaluate(trained, inside, "--overwrite")
        assert proc.returncode == 2 and "inside the model folder" in _one_error(proc)
    proc = _evaluate(trained, trained["model"], "--overwrite")
    assert proc.returncode == 2 and "written by 'weakstil train'" in _one_error(proc)
    assert {p.name: p.read_bytes() for p in (trained["model"] / "cv").iterdir() if p.is_file()} == cv_before
    assert not (trained["model"] / "cv" / "new").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / ".weakstil-output.json").write_text(json.dumps({"written_by": "weakstil", "command": "score"}))
    for folder, why in ((mine, "no .weakstil-output.json"), (scores, "written by 'weakstil score'")):
        proc = _evaluate(trained, folder, "--overwrite")
        assert proc.returncode == 2 and why in _one_error(proc)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_evaluate_gives_a_slide_without_tumour_bed_no_prediction(trained, tmp_path) -> None:
    """As 'weakstil score' does: no prediction, left out of the metrics, listed with the reason."""
    ann = tmp_path / "ann"
    ann.mkdir()
    empty = trained["ids"][0]  # a tiny polygon in the slide's corner holds no tile
    (ann / f"{empty}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"classification": {"name": "Tumor bed"}},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [2, 0], [0, 2], [0, 0]]]}}]}))
    proc = _evaluate(trained, tmp_path / "e", "--annotations", ann)
    assert proc.returncode == 0, proc.stderr
    assert f"{empty}: no tumour bed; no prediction" in " ".join(proc.stderr.split())
    pred = pd.read_csv(tmp_path / "e" / "predictions.csv", dtype={"slide_id": str}).set_index("slide_id")
    assert pd.isna(pred.loc[empty, "stil_pred"]) and pd.isna(pred.loc[empty, "high_pred"])
    assert pred.loc[empty, "status"] == "no tumour bed" and (pred.drop(empty)["status"] == "ok").all()
    m = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert m["n"] == 3 and m["excluded"] == [{"slide_id": empty, "reason": "no tumour bed"}]
    assert not (tmp_path / "e" / "tiles" / f"{empty}.h5").exists()


def test_evaluate_refuses_predictions_outside_0_100(trained, tmp_path) -> None:
    oof = pd.read_csv(trained["model"] / "cv" / "oof_predictions.csv", dtype={"slide_id": str})
    oof.loc[2, "stil_pred"] = 500.0
    bad = tmp_path / "oof.csv"
    oof.to_csv(bad, index=False)
    proc = run_cli("evaluate", trained["cohort"], "--oof", bad, "--out", tmp_path / "e")
    assert proc.returncode == 1
    err = _one_error(proc)
    assert str(bad) in err and f"row 4 ({oof.loc[2, 'slide_id']}): 500" in err and "outside 0-100" in err
    assert not (tmp_path / "e").exists()


def test_evaluate_refuses_predictions_that_are_not_numbers_naming_them(trained, tmp_path) -> None:
    oof = pd.read_csv(trained["model"] / "cv" / "oof_predictions.csv", dtype={"slide_id": str})
    oof["stil_pred"] = oof["stil_pred"].astype(object)
    oof.loc[1, "stil_pred"], oof.loc[3, "stil_pred"] = "abc", None
    bad = tmp_path / "oof.csv"
    oof.to_csv(bad, index=False)
    proc = run_cli("evaluate", trained["cohort"], "--oof", bad, "--out", tmp_path / "e")
    assert proc.returncode == 1
    err = _one_error(proc)  # not "have no prediction ... use predictions made for this cohort"
    assert f"2 predictions are not a number: row 3 ({oof.loc[1, 'slide_id']}): 'abc', row 5 " \
           f"({oof.loc[3, 'slide_id']}): empty" in err and "numeric" in err
    assert not (tmp_path / "e").exists()


def test_evaluate_knows_a_training_slide_under_another_id(trained, tmp_path) -> None:
    """A cohort keyed by patient: the same scan under a new id is still in-sample (its fingerprint)."""
    cohort = pd.read_csv(trained["cohort"], dtype={"slide_id": str})
    first = cohort.loc[0, "slide_id"]
    cohort.loc[0, "slide_id"] = "patient_A"
    cohort["path"] = [str((trained["cohort"].parent / p).resolve()) for p in cohort["path"]]
    renamed = tmp_path / "renamed.csv"
    cohort.to_csv(renamed, index=False)
    proc = run_cli("evaluate", renamed, "--model", trained["model"], "--features", trained["root"] / "features",
                   "--out", tmp_path / "e")
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "4 of the 4 evaluated slides are training slides" in said
    assert f"patient_A (the scan of training slide {first})" in said
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["n_training_slides"] == 4


def test_an_interrupted_evaluate_leaves_nothing_and_report_refuses_unfinished(trained, evaluated, tmp_path,
                                                                              monkeypatch) -> None:
    import shutil

    import weakstil.evaluation

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(weakstil.evaluation, "plot_roc", interrupted)  # after metrics.*, predictions.csv
    oof = trained["model"] / "cv" / "oof_predictions.csv"
    proc = run_cli("evaluate", trained["cohort"], "--oof", oof, "--out", tmp_path / "e")
    assert proc.returncode == 130 and not (tmp_path / "e").exists()
    shutil.copytree(evaluated, tmp_path / "old")
    proc = run_cli("evaluate", trained["cohort"], "--oof", oof, "--out", tmp_path / "old", "--overwrite")
    assert proc.returncode == 130  # the earlier evaluation stays as it was
    assert json.loads((tmp_path / "old" / "metrics.json").read_text())["mode"] == "model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # no temporary folder left
    # a folder an older weakstil left half-written: metrics but no plots and no completion marker
    half = tmp_path / "half"
    shutil.copytree(evaluated, half)
    (half / ".weakstil-output.json").unlink()
    (half / "scatter.png").unlink()
    proc = run_cli("report", "--model", trained["model"], "--out", tmp_path / "r", "--evaluation", half)
    assert proc.returncode == 1 and "not a finished 'weakstil evaluate' output" in _one_error(proc)
    assert not (tmp_path / "r").exists()


def test_report_labels_an_evaluation_by_how_it_was_made(trained, evaluated, tmp_path) -> None:
    from weakstil.report import build_report

    files = build_report(trained["model"], tmp_path / "r", evaluation_dir=evaluated)
    md = " ".join(files["report.md"].read_text().split())
    assert "not out-of-fold; 4 of them training slides of this model, so their metrics are in-sample" in md
    assert "Metrics, scatter and ROC: evaluation of the" in md and "Metrics and slides: 2-fold" not in md
    proc = run_cli("evaluate", trained["cohort"], "--oof", trained["model"] / "cv" / "oof_predictions.csv",
                   "--out", tmp_path / "oof")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((trained["model"] / "model.json").read_text())  # the model named as score names it
    oof_metrics = json.loads((tmp_path / "oof" / "metrics.json").read_text())
    assert oof_metrics["model_id"] == f"{trained['model'].name}@{meta['weights_sha256'][:12]}"
    md = build_report(trained["model"], tmp_path / "r2", evaluation_dir=tmp_path / "oof")["report.md"].read_text()
    assert "2-fold cross-validation, out-of-fold predictions of 4 slides" in " ".join(md.split())


def test_report_replaces_its_folder_only_with_overwrite(trained, tmp_path) -> None:
    out = tmp_path / "r"
    assert run_cli("report", "--model", trained["model"], "--out", out).returncode == 0
    stale = out / "slides" / "another_models_slide_heatmap.png"
    stale.write_bytes(b"png")
    proc = run_cli("report", "--model", trained["model"], "--out", out)
    assert proc.returncode == 2 and "--overwrite" in _one_error(proc) and stale.exists()
    proc = run_cli("report", "--model", trained["model"], "--out", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists() and (out / "report.html").is_file() and (out / ".weakstil-output.json").is_file()
    proc = run_cli("report", "--model", trained["model"], "--out", trained["model"] / "report")
    assert proc.returncode == 2 and "inside the model folder" in _one_error(proc)


def test_report_names_the_command_of_an_evaluation_folder_that_is_not_evaluate_s(trained, tmp_path) -> None:
    from weakstil.outputdir import mark

    scores = tmp_path / "scores"
    mark(scores, "score")  # what 'weakstil score' leaves in its --out
    proc = run_cli("report", "--model", trained["model"], "--out", tmp_path / "r", "--evaluation", scores)
    assert proc.returncode == 1
    err = _one_error(proc)  # not "no completion marker" for a folder that has one
    assert "is an output of 'weakstil score', not of 'weakstil evaluate'" in err and "marker" not in err
    assert not (tmp_path / "r").exists()


def test_a_model_without_cross_validation_is_reported_from_its_evaluation(trained, evaluated, tmp_path) -> None:
    """A --folds 1 model has no out-of-fold slides: its report is an evaluation's (metrics, slides, heatmaps)."""
    from weakstil.mil.config import TrainConfig
    from weakstil.train import train_cohort

    model = tmp_path / "m1"
    train_cohort(trained["cohort"], trained["root"] / "features", model,
                 TrainConfig(epochs=2, seed=0, device="cpu", threads=1), n_folds=1)
    proc = run_cli("report", "--model", model, "--out", tmp_path / "r0")
    assert proc.returncode == 1 and "or pass --evaluation with the --out of 'weakstil evaluate --model'" in proc.stderr
    # another model's out-of-fold evaluation cannot stand in for this model's slides
    proc = run_cli("evaluate", trained["cohort"], "--oof", trained["model"] / "cv" / "oof_predictions.csv",
                   "--out", tmp_path / "oof")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", "--model", model, "--out", tmp_path / "r1", "--evaluation", tmp_path / "oof")
    assert proc.returncode == 1 and "another model's out-of-fold predictions" in _one_error(proc)
    assert not (tmp_path / "r1").exists()
    # nor can predictions of no known model (a copy elsewhere): they are not this model's scoring
    shutil.copy(trained["model"] / "cv" / "oof_predictions.csv", tmp_path / "preds.csv")
    run_cli("evaluate", trained["cohort"], "--oof", tmp_path / "preds.csv", "--out", tmp_path / "oof2", check=True)
    proc = run_cli("report", "--model", model, "--out", tmp_path / "r1", "--evaluation", tmp_path / "oof2")
    assert proc.returncode == 1 and "not an evaluation of this model's own scoring" in _one_error(proc)

    proc = run_cli("evaluate", trained["cohort"], "--model", model, "--features", trained["root"] / "features",
                   "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("report", "--model", model, "--out", tmp_path / "r", "--evaluation", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    md = " ".join((tmp_path / "r" / "report.md").read_text().split())
    pred = pd.read_csv(tmp_path / "ev" / "predictions.csv", dtype={"slide_id": str})
    assert "Metrics and slides: evaluation of the final model on 4 slides" in md and "out-of-fold heatmap" not in md
    assert "| heatmap |" in md and "interval coverage" not in md
    for sid, value in zip(pred["slide_id"], pred["stil_pred"]):
        assert f"| {sid} |" in md and f"{value:.1f}" in md
        assert (tmp_path / "r" / "slides" / f"{sid}_heatmap.png").stat().st_size > 1000
    assert "4 evaluated slides; metrics on 4 slides" in proc.stderr


def test_score_writes_no_folder_another_commands_overwrite_replaces(trained, evaluated) -> None:
    """'weakstil score' (and the napari widget, through the same check) never writes inside a model
    or an evaluation folder: their --overwrite replaces them whole, scores included."""
    from weakstil.errors import UsageError
    from weakstil.outputdir import check_score_out

    with pytest.raises(UsageError, match="inside the model folder .*'weakstil train --overwrite'"):
        check_score_out(trained["model"] / "cv" / "tiles")
    with pytest.raises(UsageError, match="inside the evaluation folder .*'weakstil evaluate --overwrite'"):
        check_score_out(evaluated / "scores")
    with pytest.raises(UsageError, match="written by 'weakstil evaluate'"):
        check_score_out(evaluated)
    check_score_out(evaluated.parent / "scores")  # beside it: fine


def test_the_heatmap_png_is_as_wide_as_its_title_on_a_small_slide(tmp_path):
    """A 240 px crop's heatmap was narrower than its title: the slide id and the qc flags were cut
    off both edges (hunt 9c). The figure widens to the title; the panel keeps its pixels."""
    import numpy as np
    from PIL import Image, ImageDraw

    from weakstil.outputs import _font, write_heatmap_png

    glass_rgb = (201, 97, 153)  # a colour neither the text (greys) nor the colour bar has
    thumb = np.broadcast_to(np.array(glass_rgb, np.uint8), (30, 30, 3)).copy()
    title = "crop1: sTIL 41.6 % (90 % interval 20.1-63.0), high at 30 % (bed fallback: whole tissue)\n" \
            "qc: out_of_distribution;near_threshold;stain_outside_training_range;few_tumorbed_tiles"
    path = write_heatmap_png(tmp_path / "h.png", thumb, 4.0, 0.5, np.array([[0, 0], [112, 0]]), 112.0,
                             np.array([20.0, 60.0]), title=title)
    widest = max(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(line, font=_font(14))
                 for line in title.splitlines())
    with Image.open(path) as im:
        assert im.width >= widest
        # the panel (thumbnail + heat) is drawn whole, centred under the title
        rgb = np.asarray(im.convert("RGB"))
    # the panel is all there: as much bare glass (the thumbnail's colour) as in the figure without a title
    bare = write_heatmap_png(tmp_path / "bare.png", thumb, 4.0, 0.5, np.array([[0, 0], [112, 0]]), 112.0,
                             np.array([20.0, 60.0]))
    with Image.open(bare) as im:
        glass = (np.asarray(im.convert("RGB")) == glass_rgb).all(axis=2).sum()
    assert glass > 0 and (rgb == glass_rgb).all(axis=2).sum() == glass
