"""Hunt 24, area c: defects left open by earlier hunts — CSV formula injection in the tables WeakSTIL
writes, the encoder weights' fingerprint across .pth and .safetensors, the feature cache's key, a moved
scan's recorded path, and the napari plugin's dock closed while scoring."""

from __future__ import annotations

import pandas as pd

from weakstil.score import RESULT_COLUMNS

FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "'=already quoted"]
KEPT = ["-5", "+1.5e3", "synth_0001", "'plain", "a=b"]  # no formula: written as they are


def _row(slide_id: str) -> dict:
    return {"slide_id": slide_id, "path": f"/slides/{slide_id}.svs", "stil": 12.5, "status": "ok", "threshold": "30"}


def test_results_csv_defuses_formula_slide_ids_and_reads_them_back(tmp_path):
    """A slide file named ``=HYPERLINK(...).svs`` had its id written raw into results.csv, where a
    spreadsheet runs it as a formula (OWASP "CSV injection"). Such a cell now begins with ``'``; the
    next ``score`` (read_previous), ``report --scores`` (read_table) read the id back as it was, and a
    negative-looking id (``-5``) is written as it is."""
    from weakstil.results_table import read_previous, read_table, write_results

    path = tmp_path / "results.csv"
    ids = FORMULAS + KEPT
    write_results(path, {s: _row(s) for s in ids}, [], RESULT_COLUMNS)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)  # as a spreadsheet or another program sees it
    for cell, slide_id in zip(raw["slide_id"], ids):
        if slide_id in KEPT:
            assert cell == slide_id
        else:
            assert cell == "'" + slide_id, cell  # the spreadsheet shows text, not a formula
    assert set(read_previous(path)) == set(ids)
    assert list(read_table(path)["slide_id"]) == ids
    # a second run's rewrite (rows read back, merged and written) marks each once, not once more per run
    write_results(path, {ids[0]: _row(ids[0])}, [], RESULT_COLUMNS)
    assert list(pd.read_csv(path, dtype=str, keep_default_na=False)["slide_id"]) == list(raw["slide_id"])
    assert list(read_table(path)["slide_id"]) == ids


def test_evaluate_oof_reads_a_defused_results_csv_and_defuses_its_predictions(tmp_path):
    """``evaluate COHORT --oof results.csv`` matched results.csv's ids to the cohort's: a defused id
    (``'=x``) would not have matched ``=x``; predictions.csv writes it defused too, and ``report
    --evaluation`` reads it back."""
    from weakstil.evaluation import evaluate_oof
    from weakstil.report import _evaluated_slides
    from weakstil.results_table import write_results

    ids = ["=A1+1", "-5", "@x", "plain1", "plain2", "+y"]
    rows = {s: {**_row(s), "stil": 10.0 + i, "n_tiles": 50, "n_tumorbed_tiles": 40} for i, s in enumerate(ids)}
    write_results(tmp_path / "results.csv", rows, [], RESULT_COLUMNS)
    cohort = tmp_path / "cohort.csv"
    pd.DataFrame({"slide_id": ids, "path": [f"/slides/{s}.svs" for s in ids],
                  "stil": [11.0 + i for i in range(len(ids))]}).to_csv(cohort, index=False)
    m = evaluate_oof(cohort, tmp_path / "results.csv", tmp_path / "ev")
    assert m["n"] == len(ids)
    written = pd.read_csv(tmp_path / "ev" / "predictions.csv", dtype=str, keep_default_na=False)
    assert sorted(written["slide_id"]) == sorted(["'=A1+1", "-5", "'@x", "plain1", "plain2", "'+y"])
    assert sorted(_evaluated_slides({**m, "mode": "model"}, tmp_path / "ev")["slide_id"]) == sorted(ids)


def test_csv_cells_round_trip():
    from weakstil.csv_cells import defuse, restore

    for text in [*FORMULAS, *KEPT, "''-x", "'", "", "-", "="]:
        assert restore(defuse(text)) == text
        if text not in ("-5", "+1.5e3"):
            assert not str(defuse(text)).startswith(("=", "+", "-", "@", "\t", "\r"))
    assert defuse(-3.5) == -3.5 and defuse("-0.25") == "-0.25"
