"""The cohort report (weakstil.report, `weakstil report`) on a tiny trained model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli


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
        for rel in labels["path"]:
            slide = root / "cohort" / rel
            tile_slide_to_dir(slide, root / "tiles")
            embed_slide(slide, encoder, out_dir=root / "features")
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
