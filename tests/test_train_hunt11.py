"""Train / evaluate defects of hunt 11: in-sample detection by content with --folds 1, row order,
a feature file without tile measurements, settings recorded as used, CSV shapes, --oof without slides."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import write_tiff_slide
from planted import make_planted_cohort

N_SLIDES = 6


def _with_real_slides(root: Path, table: pd.DataFrame, seed: int) -> None:
    """Replace the planted placeholders by small real TIFFs and record their content fingerprint
    in the feature files, as embed does."""
    from weakstil.fingerprint import slide_fingerprint

    rng = np.random.default_rng(seed)
    for sid in table["slide_id"]:
        slide = write_tiff_slide(root / "slides" / f"{sid}.tiff", rng.integers(0, 255, (256, 256, 3), np.uint8), levels=1)
        with h5py.File(root / "features" / f"{sid}.h5", "a") as f:
            f.attrs["slide_fingerprint"] = slide_fingerprint(slide)


@pytest.fixture(scope="module")
def folds1(tmp_path_factory, one_torch_thread_module):
    """A 6-slide planted cohort on real (tiny) slide files, trained with --folds 1, the mean
    aggregator and the default device and threads."""
    from weakstil.mil.config import TrainConfig
    from weakstil.train import train_cohort

    root = tmp_path_factory.mktemp("folds1")
    table, _ = make_planted_cohort(root / "train", N_SLIDES, dim=8, tiles=(12, 20), n_groups=2, seed=3)
    _with_real_slides(root / "train", table, seed=3)
    cfg = TrainConfig(aggregator="mean", stroma_weight="estimate", hidden=8, epochs=2, members=1)
    train_cohort(root / "train" / "labels.csv", root / "train" / "features", root / "model", cfg, n_folds=1)
    return root, table


def _evaluate(root: Path, cohort: Path, out: Path) -> pd.DataFrame:
    from weakstil.evaluation import evaluate_cohort

    m = evaluate_cohort(cohort / "labels.csv", root / "model", cohort / "features", out)
    pred = pd.read_csv(out / "predictions.csv", dtype={"slide_id": str})
    assert m["n_training_slides"] == int(pred["training_slide"].sum())
    return pred


def test_folds1_model_knows_its_training_slides_by_content(folds1, tmp_path) -> None:
    """--folds 1 writes no cv/tiles: the training scans' fingerprints are in qc/training_slides.csv."""
    root, table = folds1
    # other slides under the training slides' ids: not training slides
    other = tmp_path / "other"
    shutil.copytree(root / "train", other)
    _with_real_slides(other, table, seed=99)
    assert not _evaluate(root, other, tmp_path / "ev_other")["training_slide"].any()
    # the training slides under other ids: training slides
    renamed = tmp_path / "renamed"
    shutil.copytree(root / "train", renamed)
    rows = table.copy()
    for sid in table["slide_id"]:
        new = f"patient_{sid}"
        (renamed / "features" / f"{sid}.h5").rename(renamed / "features" / f"{new}.h5")
        with h5py.File(renamed / "features" / f"{new}.h5", "a") as f:
            f.attrs["slide_id"] = new
    rows["slide_id"] = [f"patient_{s}" for s in table["slide_id"]]
    rows.to_csv(renamed / "labels.csv", index=False)
    assert _evaluate(root, renamed, tmp_path / "ev_renamed")["training_slide"].all()
    qc = pd.read_csv(root / "model" / "qc" / "training_slides.csv", dtype=str, keep_default_na=False)
    assert qc["slide_fingerprint"].str.startswith("wsfp1:").all()


def test_model_json_records_the_settings_as_used(folds1) -> None:
    root, _ = folds1
    config = json.loads((root / "model" / "model.json").read_text())["training"]["config"]
    assert config["device"] in ("cpu", "cuda", "mps") or config["device"].startswith("cuda")
    assert isinstance(config["threads"], int) and config["threads"] >= 1
    # --folds 1 has no fold models to score as an ensemble: the final model scores (hunt 11e #4)
    assert config["requested"] == {"device": "auto", "threads": 0, "scoring": "ensemble"}
    assert config["scoring"] == "final" == json.loads((root / "model" / "model.json").read_text())["scoring"]
    assert config["stroma_weight"] is None  # the mean aggregator has no stroma weight


def test_calibration_without_interval_reports_no_coverage() -> None:
    from weakstil.confidence import calibrate

    y, pred = np.array([10.0, 20, 30, 40, 50]), np.array([12.0, 18, 33, 41, 47])
    d = calibrate(y, pred).to_dict()  # 5 slides: too few for a 90 % interval
    assert d["q"] is None and d["coverage_oof"] is None and d["coverage_loo"] is None


def test_row_order_does_not_change_the_model(tmp_path, one_torch_thread) -> None:
    from weakstil.mil.config import TrainConfig
    from weakstil.train import train_cohort

    table, _ = make_planted_cohort(tmp_path, N_SLIDES, dim=8, tiles=(12, 20), n_groups=3, seed=4)
    table.iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)
    cfg = TrainConfig(hidden=8, epochs=2, members=1, device="cpu")
    for name in ("labels", "reversed"):
        train_cohort(tmp_path / f"{name}.csv", tmp_path / "features", tmp_path / f"m_{name}", cfg, n_folds=2)
    assert (tmp_path / "m_labels" / "model.safetensors").read_bytes() == \
        (tmp_path / "m_reversed" / "model.safetensors").read_bytes()
    a, b = (pd.read_csv(tmp_path / f"m_{n}" / "cv" / "oof_predictions.csv").sort_values("slide_id")
            .reset_index(drop=True) for n in ("labels", "reversed"))
    pd.testing.assert_frame_equal(a, b)


def test_feature_files_without_tile_measurements_are_named(tmp_path, caplog, one_torch_thread) -> None:
    from weakstil.mil.config import TrainConfig
    from weakstil.train import train_cohort

    table, _ = make_planted_cohort(tmp_path, N_SLIDES, dim=8, tiles=(12, 20), seed=5)
    for sid in table["slide_id"][1:]:  # all but S000 measured
        with h5py.File(tmp_path / "features" / f"{sid}.h5", "a") as f:
            f.create_dataset("tile_stats", data=np.zeros((len(f["coords"]), 3), np.float32))
    cfg = TrainConfig(aggregator="mean", hidden=8, epochs=1, members=1, device="cpu")
    with caplog.at_level(logging.WARNING, logger="weakstil.train"):
        train_cohort(tmp_path / "labels.csv", tmp_path / "features", tmp_path / "m", cfg, n_folds=1)
    assert json.loads((tmp_path / "m" / "model.json").read_text())["architecture"]["tile_stats"] is False
    assert "1 of the 6 feature files have no tile measurements (S000" in caplog.text
    assert "trained without them" in caplog.text


def test_cohort_csv_trailing_delimiter_is_read_and_title_line_named(tmp_path) -> None:
    from weakstil.cohort import CohortError, read_cohort

    (tmp_path / "a.tiff").write_bytes(b"x")
    (tmp_path / "b.tiff").write_bytes(b"x")
    rows = ["slide_id,path,stil", "A,a.tiff,30.5", "B,b.tiff,12"]
    (tmp_path / "trail.csv").write_text(rows[0] + "\n" + "\n".join(r + "," for r in rows[1:]) + "\n")
    cohort = read_cohort(tmp_path / "trail.csv")
    assert cohort.slide_ids == ["A", "B"] and list(cohort.labels) == [30.5, 12.0]
    (tmp_path / "title.csv").write_text("# cohort v2\n" + "\n".join(rows) + "\n")
    with pytest.raises(CohortError, match="the first line is not the header") as err:
        read_cohort(tmp_path / "title.csv")
    assert "decimals" not in err.value.one_line()
    # a real decimal comma keeps its fix
    (tmp_path / "comma.csv").write_text("slide_id,path,stil\nA,a.tiff,30,5\nB,b.tiff,12,0\n")
    with pytest.raises(CohortError, match="decimals with a point"):
        read_cohort(tmp_path / "comma.csv")


def test_evaluate_oof_needs_no_slide_files(tmp_path) -> None:
    from weakstil.evaluation import evaluate_oof

    ids, labels = [f"S{i}" for i in range(6)], [5.0, 15, 25, 35, 45, 55]
    pd.DataFrame({"slide_id": ids, "path": [f"gone/{s}.svs" for s in ids], "stil": labels}).to_csv(
        tmp_path / "c.csv", index=False)
    pd.DataFrame({"slide_id": ids, "stil_true": labels, "stil_pred": [v + 3 for v in labels]}).to_csv(
        tmp_path / "oof.csv", index=False)
    m = evaluate_oof(tmp_path / "c.csv", tmp_path / "oof.csv", tmp_path / "out")
    assert m["n"] == 6 and m["mae"] == pytest.approx(3.0)
    assert m["model_id"] is None  # predictions not in a model folder: no model to name
