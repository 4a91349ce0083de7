"""Helper h41d: a European spreadsheet's labels in Excel's scientific format.

A ';'-separated cohort CSV with decimal commas is read since hunt 39c ('30,6' is 30.6), and
``evaluate --oof`` predictions in the scientific format ('4,93E+01') since hunt 39k, but a label so
written ('7,60E+01': a column formatted Scientific in a German Excel) was refused when the whole column was so
written, "stil '7,60E+01' is not a number (write decimals with a point: 30.5, not 30,5)" on every row
(beside a plain '30,6' it was read), and '4.55E+01' beside '30,6' was read without the mixed-marks error. It is now 76.0; beside a decimal point ('4.55E+01') it is one error naming a row of each.
"""

from __future__ import annotations

import pytest

from weakstil.cohort import read_cohort
from weakstil.errors import WeakSTILError


def _csv(tmp_path, labels):
    path = tmp_path / "labels.csv"
    path.write_bytes(("\ufeffslide_id;path;stil;group\r\n" + "".join(
        f"S{i};S{i}.tiff;{v};c{i % 2}\r\n" for i, v in enumerate(labels))).encode("utf-8"))
    return path


def test_scientific_labels_with_a_decimal_comma_are_read(tmp_path):
    # the whole column formatted Scientific: no label was a plain decimal comma, and none was converted
    cohort = read_cohort(_csv(tmp_path, ["7,60E+01", "3,06E+01", "1,25E+00", "4,50E+00"]), check_files=False)
    assert dict(zip(cohort.table["slide_id"], cohort.table["stil"])) == pytest.approx(
        {"S0": 76.0, "S1": 30.6, "S2": 1.25, "S3": 4.5})


def test_scientific_labels_beside_the_other_decimal_mark_are_named(tmp_path):
    with pytest.raises(WeakSTILError, match=r"decimal comma \(row 3: 30,6\) and with a decimal point \(row 2: 4.55E\+01\)"):
        read_cohort(_csv(tmp_path, ["4.55E+01", "30,6", "12"]), check_files=False)


def test_a_slide_list_header_is_not_asked_for_a_label_column(tmp_path):
    """``score --slides`` and ``tumorbed --cohort`` read a list without sTIL%: a header in another case
    ('Slide_ID;Path' from Excel) was told "the header must have slide_id,path,stil"."""
    path = tmp_path / "batch7.csv"
    path.write_text('\ufeff"Slide_ID";"Path";"mpp"\r\nN0;a.tiff;0,5\r\n', encoding="utf-8")
    with pytest.raises(WeakSTILError) as err:
        read_cohort(path, check_files=False, require_labels=False)
    assert "rename 'Slide_ID' to 'slide_id', 'Path' to 'path'" in str(err.value)
    assert "must have slide_id,path (plus" in str(err.value) and "stil" not in str(err.value)


@pytest.mark.parametrize("cell", ["12.05.2026", "12. Mai", "2026-05-12", "12-May", "12-May-26"])
def test_a_label_a_spreadsheet_made_a_date_of_is_named_as_one(tmp_path, cell):
    """'12.5' typed into a German or Dutch Excel is 12 May; saved, the label is a date. It was refused as
    "'12.05.2026' is not a number" with no more to go on."""
    with pytest.raises(WeakSTILError, match=rf"row 2 \(S0\): stil '{cell}' is not a number \(a date: the spreadsheet "
                                            r"took the label for one.*format the column as Number"):
        read_cohort(_csv(tmp_path, [cell, "30,6", "12"]), check_files=False)
