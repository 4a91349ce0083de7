"""Fault hunt 15 (d): an outside tester's faults on `evaluate --oof results.csv` and the qc
reference's spread radii.

A results.csv is what `weakstil score` wrote, then perhaps concatenated, edited or re-saved by a
lab: every such file is judged correctly or refused in one line naming it, never a traceback,
never metrics of rows that contradict each other."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

COLUMNS = ["slide_id", "path", "stil", "stil_lower_90", "stil_upper_90", "stil_high", "threshold", "n_tiles",
           "n_tumorbed_tiles", "tumorbed_source", "status", "qc", "qc_reasons", "error", "model_id", "encoder_id",
           "seconds"]
TRUE = {"s0": 5.0, "s1": 20.0, "s2": 40.0, "s3": 70.0}


def _results(tmp_path: Path, name: str = "results.csv", rows: list[dict] | None = None, **csv) -> Path:
    """A results.csv as `weakstil score` writes it (strings, empty where it writes nothing)."""
    if rows is None:
        rows = [{"slide_id": s, "stil": f"{v + 2:.4f}", "stil_lower_90": f"{max(0, v - 5):.4f}",
                 "stil_upper_90": f"{v + 6:.4f}", "qc": "near_threshold" if s == "s1" else ""}
                for s, v in TRUE.items()]
    table = pd.DataFrame([{**{c: "" for c in COLUMNS}, "path": f"/x/{r['slide_id']}.tiff", "status": "ok",
                           "threshold": "30", "model_id": "model@abc", "encoder_id": "encoder@def", **r}
                          for r in rows], columns=COLUMNS)
    path = tmp_path / name
    table.to_csv(path, index=False, **csv)
    return path


@pytest.fixture
def labels(tmp_path) -> Path:
    path = tmp_path / "labels.csv"
    pd.DataFrame({"slide_id": list(TRUE), "path": [f"{s}.tiff" for s in TRUE], "stil": list(TRUE.values())}).to_csv(
        path, index=False)
    return path


def _rows(**changes: dict) -> list[dict]:
    rows = [{"slide_id": s, "stil": f"{v + 2:.4f}", "stil_lower_90": f"{max(0, v - 5):.4f}",
             "stil_upper_90": f"{v + 6:.4f}", "qc": ""} for s, v in TRUE.items()]
    for sid, change in changes.items():
        next(r for r in rows if r["slide_id"] == sid).update(change)
    return rows


def _refused(proc, out: Path, *words: str) -> None:
    said = " ".join(proc.stderr.split())
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and last.startswith("error:"), proc.stderr
    assert all(w in last for w in words), said
    assert not out.exists()


def test_a_run_where_every_slide_failed_is_refused_in_one_line(labels, tmp_path):
    """Every row an error (a run on a broken share): was an 'unexpected TypeError ... bug in
    weakstil' from the qc rates of zero slides."""
    failed = [{"slide_id": s, "status": "error", "error": "OSError: cannot open"} for s in TRUE]
    path = _results(tmp_path, rows=failed)
    proc = run_cli("evaluate", labels, "--oof", path, "--out", tmp_path / "ev")
    _refused(proc, tmp_path / "ev", "results.csv", "none of the 4 cohort slides has a prediction",
             "s0: error: OSError: cannot open")


def test_a_slide_on_rows_that_differ_is_refused_and_the_same_row_twice_is_not(labels, tmp_path):
    """A rerun's rows appended to a failed run's: the slide was both excluded (named as failed) and
    measured; a row repeated with another qc or interval: the last one silently won."""
    failed_then_ok = [{"slide_id": "s1", "status": "error", "error": "boom"}, *_rows()]
    proc = run_cli("evaluate", labels, "--oof", _results(tmp_path, "a.csv", failed_then_ok), "--out", tmp_path / "ev")
    _refused(proc, tmp_path / "ev", "a.csv", "s1 on rows 2, 4", "one row per slide")
    other_qc = [*_rows(), {**_rows()[2], "qc": "out_of_distribution", "stil_lower_90": "0"}]
    proc = run_cli("evaluate", labels, "--oof", _results(tmp_path, "b.csv", other_qc), "--out", tmp_path / "ev")
    _refused(proc, tmp_path / "ev", "b.csv", "s2 on rows 4, 6")
    same = [*_rows(), _rows()[2]]
    proc = run_cli("evaluate", labels, "--oof", _results(tmp_path, "c.csv", same), "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["n"] == 4 and m["qc"]["any_flag"] == 0 and m["interval"]["coverage"] == 1.0


def test_an_interval_that_is_text_or_inverted_is_refused_an_empty_one_is_not_measured(labels, tmp_path):
    """Text in an interval column was counted as 'no interval'; an interval whose end lies below its
    start counted as a miss of width < 0. Neither is what score writes; an empty one is (no
    calibrated interval) and stays out of the coverage."""
    proc = run_cli("evaluate", labels, "--oof", _results(tmp_path, "t.csv", _rows(s2={"stil_lower_90": "n/a x"})),
                   "--out", tmp_path / "ev")
    _refused(proc, tmp_path / "ev", "t.csv", "stil_lower_90 value is not a number", "row 4 (s2)")
    proc = run_cli("evaluate", labels, "--oof", _results(tmp_path, "i.csv", _rows(s2={"stil_lower_90": "60",
                                                                                      "stil_upper_90": "30"})),
                   "--out", tmp_path / "ev")
    _refused(proc, tmp_path / "ev", "i.csv", "1 interval ends below its start: row 4 (s2)")
    proc = run_cli("evaluate", labels, "--oof", _results(tmp_path, "e.csv", _rows(s2={"stil_lower_90": ""})),
                   "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    iv = json.loads((tmp_path / "ev" / "metrics.json").read_text())["interval"]
    assert iv["n"] == 3 and iv["n_without"] == 1 and iv["coverage"] == 1.0


def test_a_threshold_column_of_several_runs_is_said_not_silently_replaced(labels, tmp_path):
    rows = _rows(s0={"threshold": "10"}, s1={"threshold": "10"})
    proc = run_cli("evaluate", labels, "--oof", _results(tmp_path, "m.csv", rows), "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "threshold column holds 10, 30" in said and "--threshold" in said
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["threshold"] == 30.0
    proc = run_cli("evaluate", labels, "--oof", tmp_path / "m.csv", "--out", tmp_path / "ev2", "--threshold", "10")
    assert proc.returncode == 0 and "threshold column" not in proc.stderr
    assert json.loads((tmp_path / "ev2" / "metrics.json").read_text())["threshold"] == 10.0


def test_a_semicolon_results_csv_and_the_labels_judged_against_themselves_are_refused(labels, tmp_path):
    """A spreadsheet's export with ';' was told to 'pass the CSV written by weakstil train' (no
    slide_id column); the results.csv passed as the cohort too gave R² 1.000."""
    # since hunt 39e a ';' export is read (as the cohort reader reads one), its MAE as the comma file's
    path = _results(tmp_path, "semi.csv", sep=";")
    proc = run_cli("evaluate", labels, "--oof", path, "--out", tmp_path / "ev_semi")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "ev_semi" / "metrics.json").read_text())["mae"] == pytest.approx(2.0)
    path = _results(tmp_path)
    proc = run_cli("evaluate", path, "--oof", path, "--out", tmp_path / "ev")
    _refused(proc, tmp_path / "ev", "same file")
    # a BOM and CRLF line ends (a Windows export) read as the file itself
    _results(tmp_path, "w.csv", encoding="utf-8-sig", lineterminator="\r\n")
    proc = run_cli("evaluate", labels, "--oof", tmp_path / "w.csv", "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["interval"]["coverage"] == 1.0


def test_a_qc_reference_with_radii_that_do_not_fit_is_refused_naming_the_file(tmp_path):
    """embeddings.safetensors whose reference_radius is of another length (IndexError mid-run, as
    'a bug in weakstil'), 2-D, NaN or negative (silent: NaN ratios are never unfamiliar) is refused
    as a changed model folder; inf radii (no other training slide near: one slide, one centre) and
    a file without radii (a model of before the spread rule) load."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    from weakstil.mil.identity import ModelError
    from weakstil.qc.embedding import EmbeddingReference, fit_reference

    rng = np.random.default_rng(0)
    ref, _ = fit_reference([rng.normal(size=(40, 16)).astype(np.float32) for _ in range(3)])
    saved = ref.save(tmp_path / "e.safetensors")
    with safe_open(str(saved), framework="numpy") as f:
        arrays, meta = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    n = len(arrays["reference"])

    def with_radius(name, radius):
        out = {k: v for k, v in arrays.items() if k != "reference_radius"}
        if radius is not None:
            out["reference_radius"] = np.asarray(radius, np.float32)
        save_file(out, str(tmp_path / name), metadata=meta)
        return tmp_path / name

    for name, radius in (("short", np.ones(n - 3)), ("wide", np.ones((n, 2))), ("nan", np.full(n, np.nan)),
                         ("negative", -np.ones(n))):
        with pytest.raises(ModelError, match="reference_radius") as exc:
            EmbeddingReference.load(with_radius(name, radius))
        assert name in str(exc.value.path)
    for name, radius in (("inf", np.full(n, np.inf)), ("old", None)):
        loaded = EmbeddingReference.load(with_radius(name, radius))
        d, ratios = loaded.tile_neighbours(rng.normal(size=(10, 16)).astype(np.float32))
        assert len(d) == 10 and np.isfinite(d).all()
        assert ratios is None if radius is None else (ratios == 0).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_noisy_glass_under_a_yellow_lamp_lit_unevenly_is_not_fat(seed):
    """Scanner noise of 3 grey levels per channel, a yellow lamp (blue x 0.85) and 4 % lighting
    fall-off: the cast's balance stretches the blue channel's noise, 7-10 % of the glass's pixels
    passed the fat step's 0.03 saturation floor, and 13-35 % of the glass around a tissue disc was
    read as fat. Faint stain is now more saturated than 95 % of the glass's own pixels; the disc is
    kept whole."""
    from weakstil.tissue import detect_tissue

    rng = np.random.default_rng(seed)
    size = 400  # 3.2 mm at 8 µm/px
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.full((size, size, 3), 240.0)
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    img[disc] = (215, 150, 185)
    img = (img + rng.normal(0, 3.0, img.shape)) * np.array([1.0, 0.97, 0.85]) * (1 - 0.04 * xx / (size - 1))[..., None]
    mask = detect_tissue(np.clip(img + 0.5, 0, 255).astype(np.uint8), 8.0)
    assert (mask & ~disc).sum() / (~disc).sum() < 0.02  # the closing's rim about the disc
    assert mask[disc].mean() > 0.99
