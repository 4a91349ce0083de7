"""Helper h45d: ``score`` into a folder whose results.csv was joined by ``cat`` (two batches' tables end to end).

Old: the second table's header line was read as a row, slide id "slide_id", and every rewrite kept it: the table
``score`` went on appending to held a header line in the middle (and a "slide_id" slide). Now a repeat of the
table's own header is dropped with a warning naming the file; a header of other columns is refused (its rows
would be read in the wrong columns).
"""

import logging

import pytest

COLUMNS = ["slide_id", "path", "stil", "status"]


def _joined(tmp_path, second_header: str = ",".join(COLUMNS)):
    path = tmp_path / "results.csv"
    path.write_text(",".join(COLUMNS) + "\nA,/s/A.svs,12.0000,ok\n" + second_header + "\nB,/s/B.svs,30.0000,ok\n")
    return path


def test_a_repeated_header_is_dropped_with_a_warning_and_the_rows_kept(tmp_path, caplog):
    from weakstil.results_table import read_previous, write_results

    path = _joined(tmp_path)
    with caplog.at_level(logging.WARNING):
        assert list(read_previous(path)) == ["A", "B"]  # was ['A', 'slide_id', 'B']
    assert str(path) in caplog.text and "repeated header" in caplog.text
    write_results(path, {"C": {"slide_id": "C", "path": "/s/C.svs", "stil": 5.0, "status": "ok"}}, [], COLUMNS)
    lines = path.read_text().splitlines()
    assert lines == [",".join(COLUMNS), "A,/s/A.svs,12.0000,ok", "B,/s/B.svs,30.0000,ok", "C,/s/C.svs,5.0000,ok"]


def test_a_header_of_other_columns_is_refused_and_the_file_left_as_it_is(tmp_path):
    from weakstil.errors import WeakSTILError
    from weakstil.results_table import read_previous

    path = _joined(tmp_path, "slide_id,stil,path,status")  # another column order: B's path would be read as its stil
    before = path.read_bytes()
    with pytest.raises(WeakSTILError, match="second header line") as err:
        read_previous(path)
    assert str(path) in err.value.one_line() and "pandas.concat" in err.value.one_line()
    assert path.read_bytes() == before
