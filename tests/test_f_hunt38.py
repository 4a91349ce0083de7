"""Hunt 38f: label CSVs as labs write them in spreadsheets and R, read by train, evaluate and the others.

1. ``evaluate --oof RESULTS`` of a cohort whose labels were written as fractions (0.375 for 37.5 %),
   against a ``weakstil score`` results.csv (its rows carry no labels to compare with): judged as
   written, R² -28278, MAE 15.3, exit 0, metrics written, with only the CSV's "look like fractions"
   warning (8 demo slides). ``evaluate --model`` refused the same labels. Now refused as fractions.
2. R's ``write.table()`` without ``sep=","`` (``"slide_id" "path" "stil"``, space-separated) was refused
   as "missing columns slide_id, stil (found: slide_id "path" "stil")", naming as missing the columns
   its header holds, and no fix. Now refused as separated by spaces, with R's write.csv as the fix.
3. Slide ids typed or opened in Excel lose leading zeros ('001' -> 1): a slide '1' of file '001.svs'
   was read without a word, and ``evaluate --oof`` of a score run (ids '0012') said "12 cohort slides
   have no prediction... Fix: use predictions made for this cohort". Now read_cohort warns naming the
   rows, and evaluate's fix names the spreadsheet's number ids.
4. A decimal comma in every row (or in the first: pandas takes one more field for an index) was refused
   as "the rows have more fields than the header", naming no row. Now the rows and their text are named.
5. Unlabelled slides (an empty or 'NA' label) in train's CSV were refused with the fix "correct or remove
   these rows (paths are relative to the CSV's folder)". Now: give each its sTIL% or remove its row.
"""

from __future__ import annotations

import logging

import pytest

from weakstil.cohort import CohortError, read_cohort
from weakstil.errors import WeakSTILError


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_evaluate_oof_refuses_fraction_labels_against_predictions_without_labels(tmp_path):
    from weakstil.evaluation import evaluate_oof

    truth = [("s1", 37.5), ("s2", 9.1), ("s3", 1.4), ("s4", 5.2), ("s5", 30.5), ("s6", 13.4)]
    pred = [46.1, 8.2, 4.0, 7.0, 28.0, 15.0]
    cohort = _write(tmp_path / "labels.csv", "slide_id,path,stil\n" + "".join(f"{s},{s}.svs,{y / 100:g}\n"
                                                                             for s, y in truth))
    oof = _write(tmp_path / "results.csv", "slide_id,stil_pred\n" + "".join(f"{s},{p}\n" for (s, _), p in zip(truth, pred)))
    with pytest.raises(WeakSTILError) as err:  # old: metrics at R² about -20000, exit 0
        evaluate_oof(cohort, oof, tmp_path / "ev")
    assert "labels x 100" in str(err.value) and "percentages (x 100)" in err.value.fix
    assert not (tmp_path / "ev" / "metrics.json").exists()


def test_space_separated_r_write_table_is_named_as_such(tmp_path):
    csv = _write(tmp_path / "c.csv", '"slide_id" "path" "stil"\n"1" "S1" "S1.svs" 45\n"2" "S2" "S2.svs" 30\n')
    with pytest.raises(CohortError) as err:
        read_cohort(csv, check_files=False)
    # old: 'missing columns slide_id, stil (found: slide_id "path" "stil")'
    assert "separated by spaces" in str(err.value) and "write.csv" in err.value.fix
    one = _write(tmp_path / "one.csv", "slide id\nS1\n")  # one column whose name has a space: not separated
    with pytest.raises(CohortError, match="missing columns"):
        read_cohort(one, check_files=False)


def test_number_ids_a_spreadsheet_wrote_are_warned_about_and_named_in_evaluate(tmp_path, caplog):
    from weakstil.evaluation import evaluate_oof

    csv = _write(tmp_path / "c.csv", "slide_id,path,stil\n1,001.svs,45\n2.0,002.svs,30\nS3,S3.svs,10\n")
    with caplog.at_level(logging.WARNING, logger="weakstil.cohort"):
        table = read_cohort(csv, check_files=False).table
    assert table["slide_id"].tolist() == ["1", "2.0", "S3"]  # read as written, with a warning
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "row 2: 1 for 001.svs; row 3: 2.0 for 002.svs" in said  # old: no warning
    labels = _write(tmp_path / "labels.csv", "slide_id,path,stil\n12,a.svs,40\n21,b.svs,10\n")
    oof = _write(tmp_path / "p.csv", "slide_id,stil_pred\n0012,38\n0021,12\n")
    with pytest.raises(WeakSTILError) as err:
        evaluate_oof(labels, oof, tmp_path / "ev")
    assert "'12' against '0012'" in err.value.fix  # old: 'use predictions made for this cohort'


def test_rows_with_more_fields_than_the_header_are_named(tmp_path):
    csv = _write(tmp_path / "c.csv", "slide_id,path,stil\nS1,S1.svs,45,5\nS2,S2.svs,30\n")
    with pytest.raises(CohortError) as err:
        read_cohort(csv, check_files=False)
    assert "(1 of 2 rows; row 2: S1,S1.svs,45,5)" in str(err.value)  # old: no row named


def test_unlabelled_slides_get_the_fix_to_label_or_remove_them(tmp_path):
    csv = _write(tmp_path / "c.csv", "slide_id,path,stil\nS1,S1.svs,45\nS2,S2.svs,\nS3,S3.svs,NA\n")
    with pytest.raises(CohortError) as err:
        read_cohort(csv, check_files=False)
    assert "row 3 (S2): stil is empty" in str(err.value)
    assert "remove the rows of unlabelled slides" in err.value.fix  # old: '... paths are relative to the CSV's folder'
    assert len(read_cohort(csv, check_files=False, require_labels=False)) == 3  # a slide list needs no label
