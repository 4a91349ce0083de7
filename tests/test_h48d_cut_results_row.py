"""Fault matrix h48d: a results.csv whose copy was cut short ends in a fragment of a row ("s", a slide id's first
letter). `score` kept it as slide "s" in every rewrite, and `report --scores` counted it: "3 slides (2 ok, 0 error)"."""

from __future__ import annotations

import logging
from pathlib import Path

from weakstil.report_scores import read_scores
from weakstil.results_table import read_previous

HEADER = "slide_id,path,stil,stil_lower_90,stil_upper_90,stil_high,threshold,n_tiles,status,qc,error,model_id"


def _cut_table(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "results.csv"
    path.write_text(f"{HEADER}\n"
                    "a1,/s/a1.svs,12.5,8.0,17.0,False,30,40,ok,,,m1\n"
                    "b2,/s/b2.svs,,,,,30,,error,,cannot read pixels,m1\n"
                    "s\n")  # the next row, cut after its first letter
    return path


def test_score_drops_a_cut_row_of_results_csv_with_a_warning(tmp_path: Path, caplog) -> None:
    path = _cut_table(tmp_path / "scores")
    with caplog.at_level(logging.WARNING):
        rows = read_previous(path)
    assert sorted(rows) == ["a1", "b2"]  # the error row (status error) is kept, the fragment is not
    assert any("1 row with no status dropped ('s'" in r.getMessage() for r in caplog.records)


def test_report_does_not_count_a_cut_row_as_a_slide(tmp_path: Path) -> None:
    _cut_table(tmp_path / "scores")
    table = read_scores(tmp_path / "scores")
    assert sorted(table["slide_id"].astype(str)) == ["a1", "b2"]
