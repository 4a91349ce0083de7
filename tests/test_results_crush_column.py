"""results.csv's ``tumorbed_crush_tiles`` (helper h44d): the bed's tiles left out as crush artefact, which the scores
HDF5 recorded (``tumorbed_crush_tiles``) beside ``n_tumorbed_tiles`` but results.csv did not; checked against the score
file as its sibling columns are, and not said missing from an older WeakSTIL's results.csv."""

from __future__ import annotations

import logging

import numpy as np


def _score_file(folder, slide_id: str, crush: int) -> None:
    from weakstil.files import SlideScoresFile, slide_file

    n = 4
    flags = np.array([True, True, False, False])
    SlideScoresFile(coords=np.stack([np.arange(n) * 448, np.zeros(n)], 1).astype(np.int64),
                    tile_scores=np.full(n, 20.0, np.float32), tumorbed=flags, tumorbed_fraction=flags.astype(np.float32),
                    tissue_fraction=np.ones(n, np.float32), tissue_mask=np.ones((4, 16), bool), tissue_mask_mpp=28.0,
                    tumorbed_mask=np.ones((4, 16), bool), tumorbed_mask_mpp=28.0,
                    attrs={"slide_id": slide_id, "slide_mpp": 0.25, "slide_width": 4 * 448, "slide_height": 448,
                           "tile_size_level0": 448.0, "stil": 20.0, "threshold": 30.0, "aggregator": "mean",
                           "status": "ok", "n_tiles": n, "n_tumorbed_tiles": 2, "tumorbed_crush_tiles": crush,
                           "tumorbed_source": "annotation"}).write(slide_file(folder, slide_id))


def test_results_csv_has_the_crush_tile_count_beside_the_bed_tile_count(tmp_path, caplog):
    from weakstil.results_check import checked_records, score_file_rows
    from weakstil.score import RESULT_COLUMNS

    assert RESULT_COLUMNS.index("tumorbed_crush_tiles") == RESULT_COLUMNS.index("n_tumorbed_tiles") + 1
    _score_file(tmp_path, "s1", 3)
    assert score_file_rows(tmp_path, set())[0]["tumorbed_crush_tiles"] == "3"  # a row deleted: from the file
    row = {"slide_id": "s1", "path": "", "status": "ok", "stil": "20", "threshold": "30", "n_tiles": "4",
           "n_tumorbed_tiles": "2", "tumorbed_source": "annotation"}
    with caplog.at_level(logging.WARNING):  # typed over in a spreadsheet: the file's count, said
        rec = checked_records(tmp_path, [{**row, "tumorbed_crush_tiles": "0"}], unlisted=False)[0]
    assert rec["tumorbed_crush_tiles"] == "3" and "tumorbed_crush_tiles '0' there, '3' in the file" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # an older WeakSTIL's results.csv: no such column, nothing said of it
        rec = checked_records(tmp_path, [row], unlisted=False)[0]
    assert rec["tumorbed_crush_tiles"] == "3" and "tumorbed_crush_tiles" not in caplog.text


def test_an_older_weakstils_row_in_a_table_a_newer_score_rewrote_is_not_said_edited(tmp_path, caplog):
    """A rerun of 'weakstil score' into an older WeakSTIL's folder writes the new column for every row: the rows it did
    not score (or skipped) get an empty cell, which is no edit (helper h44e: each was said to differ from its score
    file, "edited in a spreadsheet?"); a count typed over is still said."""
    from weakstil.results_check import checked_records

    _score_file(tmp_path, "old", 0)
    _score_file(tmp_path, "new", 3)
    row = {"path": "", "status": "ok", "stil": "20", "threshold": "30", "n_tiles": "4", "n_tumorbed_tiles": "2",
           "tumorbed_source": "annotation"}
    rows = [{**row, "slide_id": "new", "tumorbed_crush_tiles": "3"}, {**row, "slide_id": "old", "tumorbed_crush_tiles": ""}]
    with caplog.at_level(logging.WARNING):
        recs = checked_records(tmp_path, rows, unlisted=False)
    assert [r["tumorbed_crush_tiles"] for r in recs] == ["3", "0"] and "differ from their slide" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        checked_records(tmp_path, [{**rows[0], "tumorbed_crush_tiles": "1"}], unlisted=False)
    assert "tumorbed_crush_tiles '1' there, '3' in the file" in caplog.text
