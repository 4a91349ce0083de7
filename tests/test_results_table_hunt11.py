"""results.csv rewritten by a later run into the same folder (hunt 11e #1, #2): what a user typed into
the rows, and the threshold as given, come back as the same text."""

from __future__ import annotations

from weakstil.results_table import write_results

COLUMNS = ["slide_id", "path", "stil", "threshold", "n_tiles", "status"]


def test_a_later_run_gives_back_the_cells_a_user_typed_and_the_threshold_as_given(tmp_path):
    path = tmp_path / "results.csv"
    first = {"slide_id": "A", "path": "/s/A.tiff", "stil": 12.345678, "threshold": "29.12345", "n_tiles": 51,
             "status": "ok"}
    write_results(path, {"A": first}, [], COLUMNS)
    lines = path.read_text().splitlines()
    assert lines[1] == "A,/s/A.tiff,12.3457,29.12345,51,ok"
    # a pathologist adds columns in a text editor: a case number with leading zeros, a number, a note
    path.write_text(lines[0] + ",case_no,reviewer_stil,block,note\n" + lines[1] + ",007,12.345678,1E5,ok\n")
    second = {"slide_id": "B", "path": "/s/B.tiff", "stil": 40.0, "threshold": "29.12345", "n_tiles": 7,
              "status": "ok"}
    write_results(path, {"B": second}, [], COLUMNS)
    lines = path.read_text().splitlines()
    assert lines[0] == "slide_id,path,stil,threshold,n_tiles,status,case_no,reviewer_stil,block,note"
    assert lines[1] == "A,/s/A.tiff,12.3457,29.12345,51,ok,007,12.345678,1E5,ok"  # byte for byte
    assert lines[2] == "B,/s/B.tiff,40.0000,29.12345,7,ok,,,,"
