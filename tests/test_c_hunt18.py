"""Fault hunt 18c: the cohort CSV a lab brings to train/evaluate when retraining on its own cohort.

Helper h37j: a header whose file-path column is named 'image' was told to rename it to 'slide_id'."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from weakstil.cohort import CohortError, read_cohort

LABELS = {"s0": 5.0, "s1": 15.5, "s2": 30.0, "s3": 54.5}


def _slides(tmp_path: Path) -> Path:
    (tmp_path / "slides").mkdir()
    for sid in LABELS:
        (tmp_path / "slides" / f"{sid}.tiff").write_bytes(b"x")
    return tmp_path


def _refused(csv: Path) -> str:
    with pytest.raises(CohortError) as info:
        read_cohort(csv)
    return " ".join(str(info.value).split())


def test_semicolon_csv_with_some_decimal_commas_is_read(tmp_path) -> None:
    """A European spreadsheet's 'CSV': ';' between fields, a decimal comma in the non-whole labels
    only (45 and 15,5). The rows with a decimal comma have two fields against the header's one, so
    pandas fails to parse, and the error said 'a row has more fields than the header: write
    decimals with a point' without naming the semicolons; hunt 39c: such a file is read as it is
    meant (every label a whole number or with a decimal comma)."""
    root = _slides(tmp_path)
    csv = root / "labels.csv"
    rows = [f"{s};slides/{s}.tiff;{str(v).replace('.', ',') if v % 1 else int(v)};c{i % 2}"
            for i, (s, v) in enumerate(LABELS.items())]
    csv.write_bytes(("\ufeffslide_id;path;stil;group\r\n" + "\r\n".join(rows) + "\r\n").encode())
    table = read_cohort(csv).table
    assert dict(zip(table["slide_id"], table["stil"])) == LABELS and list(table["group"]) == ["c0", "c1", "c0", "c1"]


@pytest.mark.parametrize("header, rename", [
    ("slide_id,path,sTIL", "'sTIL' to 'stil'"),
    ("slide_id,path,TILs (%)", "'TILs (%)' to 'stil'"),
    ("slide_id,path,stil_pct", "'stil_pct' to 'stil'"),
    ("Slide_ID,Path,sTIL%", "'Slide_ID' to 'slide_id', 'Path' to 'path', 'sTIL%' to 'stil'"),
])
def test_a_labs_own_column_names_get_the_rename_as_the_fix(tmp_path, header, rename) -> None:
    """The label column of a lab's sheet ('sTIL', 'TILs (%)', 'Slide_ID'): refused as 'missing
    column stil' with the generic fix; the fix now names the column to rename."""
    root = _slides(tmp_path)
    csv = root / "labels.csv"
    csv.write_text(header + "\n" + "".join(f"{s},slides/{s}.tiff,{v}\n" for s, v in LABELS.items()))
    said = _refused(csv)
    assert f"Fix: rename {rename} in the header" in said and str(csv) in said


def test_a_column_of_file_paths_is_named_as_the_path_not_the_slide_id(tmp_path) -> None:
    """Another generator's labels, 'image,case,til_pct,site' with 'image' holding 'slides/s0.tiff'
    (helper h37j, the checker's walk): the fix said "rename 'image' to 'slide_id', 'til_pct' to 'stil'",
    which makes file paths the slide ids and still lacks 'path'. A column of file paths is the path."""
    root = _slides(tmp_path)
    csv = root / "ground_truth.csv"
    csv.write_text("image,case,til_pct,site\n"
                   + "".join(f"slides/{s}.tiff,{s.upper()},{v},c0\n" for s, v in LABELS.items()))
    said = _refused(csv)
    assert "Fix: rename 'image' to 'path', 'til_pct' to 'stil' in the header" in said, said


def test_an_unrelated_column_name_gets_no_rename(tmp_path) -> None:
    root = _slides(tmp_path)
    csv = root / "labels.csv"
    csv.write_text("slide_id,path,score\n" + "".join(f"{s},slides/{s}.tiff,{v}\n" for s, v in LABELS.items()))
    said = _refused(csv)
    assert "missing column stil" in said and "rename" not in said


def test_label_ids_in_another_letter_case_get_a_fix_that_says_so(tmp_path) -> None:
    """TCGA-style labels in upper case (S0) against predictions with the file names' case (s0):
    'N cohort slides have no prediction', fix 'use predictions made for this cohort', which they
    were. The fix now says the ids differ only in letter case."""
    from weakstil.errors import WeakSTILError
    from weakstil.evaluation import evaluate_oof

    root = _slides(tmp_path)
    labels = root / "labels.csv"
    pd.DataFrame({"slide_id": [s.upper() for s in LABELS], "path": [f"slides/{s}.tiff" for s in LABELS],
                  "stil": list(LABELS.values())}).to_csv(labels, index=False)
    oof = tmp_path / "oof_predictions.csv"
    pd.DataFrame({"slide_id": list(LABELS), "stil_true": list(LABELS.values()),
                  "stil_pred": [v + 3 for v in LABELS.values()], "fold": [0, 1, 0, 1],
                  "group": list(LABELS)}).to_csv(oof, index=False)
    with pytest.raises(WeakSTILError) as info:
        evaluate_oof(labels, oof, tmp_path / "ev")
    said = " ".join(str(info.value).split())
    assert "4 of them differ from the predictions' ids only in letter case ('S0' against 's0')" in said
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("header, label", [("slide_id,path,stil", ""), ("slide_id,path", None),
                                           ("slide_id,path,stil", "NA"), ("slide_id,path,stil", "#N/A")])
def test_the_tumour_bed_detector_and_report_take_a_cohort_csv_without_labels(tmp_path, header, label) -> None:
    """'tumorbed train --cohort', 'tumorbed apply --cohort' and 'report --cohort' use the CSV to
    pick and locate slides, never its sTIL%: a new cohort's slide list with the labels still to
    come (empty, or no stil column) was refused as 'N bad rows: stil is empty' / 'missing column
    stil'; R's 'NA' and Excel's '#N/A' for a label not yet given as 'stil 'NA' is not a number'.
    The scoring and training commands still require labels."""
    from conftest import run_cli
    from weakstil.cli.tumorbed import cohort_ids
    from weakstil.report import _cohort_slides

    root = _slides(tmp_path)
    csv = root / "slides.csv"
    cells = (lambda s: f"{s},slides/{s}.tiff") if label is None else (lambda s: f"{s},slides/{s}.tiff,{label}")
    csv.write_text(header + "\n" + "".join(cells(s) + "\n" for s in LABELS))
    (tmp_path / "features").mkdir()
    (tmp_path / "outlines").mkdir()
    proc = run_cli("tumorbed", "train", "--features", tmp_path / "features", "--annotations", tmp_path / "outlines",
                   "--out", tmp_path / "tb", "--cohort", csv)
    said = " ".join(proc.stderr.split())
    assert proc.returncode != 0 and "stil" not in said and str(csv) not in said  # refused for its lack of outlines
    assert cohort_ids(csv, [tmp_path / "features" / "s1.h5"]) == {"s1": "s1"}
    assert sorted(_cohort_slides(csv)) == sorted(LABELS)
    with pytest.raises(CohortError):  # train and evaluate: the labels are what they learn and judge on
        read_cohort(csv)


@pytest.mark.parametrize("content, what", [
    (b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xcc\x9a[Content_Types].xml", "an Excel workbook (.xlsx)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00\x00", "an Excel 97-2003 workbook (.xls)"),
    ("slide_id\tpath\tstil\ns0\tslides/s0.tiff\t5\n".encode("utf-16"), "UTF-16 text"),
])
def test_a_spreadsheet_passed_as_the_csv_is_named_as_one(tmp_path, content, what) -> None:
    """The lab's labels.xlsx (or Excel's 'Unicode Text') passed as the cohort CSV: refused as
    'cannot parse the cohort CSV ('utf-8' codec can't decode byte 0xcc in position 10...)'."""
    root = _slides(tmp_path)
    csv = root / "labels.csv"
    csv.write_bytes(content)
    said = _refused(csv)
    assert f"is {what}" in said and "codec" not in said and "'CSV UTF-8 (Comma delimited)'" in said


def test_a_group_column_named_in_another_case_gets_the_column_as_the_fix(tmp_path) -> None:
    """'--group-column centre' for the lab's column 'Centre': 'missing column centre' with the fix
    'the header must have slide_id,path,stil': the fix now names the column to pass."""
    root = _slides(tmp_path)
    csv = root / "labels.csv"
    csv.write_text("slide_id,path,stil,Centre\n" + "".join(f"{s},slides/{s}.tiff,{v},c{i % 2}\n"
                                                          for i, (s, v) in enumerate(LABELS.items())))
    with pytest.raises(CohortError) as info:
        read_cohort(csv, group_column="centre")
    said = " ".join(str(info.value).split())
    assert "has no column 'centre' (the --group-column) but 'Centre'" in said
    assert "Fix: pass --group-column 'Centre'" in said
    assert read_cohort(csv, group_column="Centre").groups.tolist() == ["c0", "c1", "c0", "c1"]


def test_a_path_typed_in_another_case_names_the_file_there(tmp_path) -> None:
    """A CSV written on macOS or Windows (case-insensitive file systems) with 'slides/S0.TIFF' for
    the file slides/s0.tiff: on Linux only 'file not found slides/S0.TIFF'; now the row names the
    file that is there."""
    root = _slides(tmp_path)
    csv = root / "labels.csv"
    csv.write_text("slide_id,path,stil\n" + "".join(f"{s},slides/{s.upper()}.TIFF,{v}\n" for s, v in LABELS.items()))
    said = _refused(csv)
    assert "row 2 (s0): file not found slides/S0.TIFF (there is slides/s0.tiff: file names are case-sensitive" in said
    assert said.count("file names are case-sensitive") == len(LABELS)


def test_a_bare_file_name_names_the_subfolder_it_is_in(tmp_path) -> None:
    """A lab's sheet of file names (S0.tiff) beside a slides/ folder: 'file not found s0.tiff'; the
    row now says where the file is (paths are relative to the CSV's folder)."""
    root = _slides(tmp_path)
    (root / "other").mkdir()
    csv = root / "labels.csv"
    csv.write_text("slide_id,path,stil\n" + "".join(f"{s},{s}.tiff,{v}\n" for s, v in LABELS.items()))
    said = _refused(csv)
    assert "row 2 (s0): file not found s0.tiff (there is slides/s0.tiff: paths are relative to the CSV's folder)" in said
    csv.write_text("slide_id,path,stil\n" + "".join(f"{s},{s}.svs,{v}\n" for s, v in LABELS.items()))
    assert "there is" not in _refused(csv)  # nothing of that name anywhere: no hint


def test_a_slide_on_two_rows_with_other_labels_says_so(tmp_path) -> None:
    """Two readers' rows per slide (s0 at 5 and at 12.5): 'duplicate slide_id (first on row 2)',
    as for a copied row; the row now says the labels differ and what one row should hold."""
    root = _slides(tmp_path)
    csv = root / "labels.csv"
    body = "".join(f"{s},slides/{s}.tiff,{v}\n" for s, v in LABELS.items())
    csv.write_text("slide_id,path,stil\n" + body + "s0,slides/s0.tiff,12.5\ns1,slides/s1.tiff,15.50\n")
    said = _refused(csv)
    assert "row 6 (s0): duplicate slide_id (first on row 2) with another label (5.0 there, 12.5 here: one row per " \
           "slide, e.g. the mean of the readers' scores)" in said
    assert "row 7 (s1): duplicate slide_id (first on row 3). Fix:" in said  # the same label written another way


@pytest.mark.parametrize("sep, said_part", [(",", "the first line 'sep=,' is a spreadsheet's separator hint"),
                                             (";", "the first line 'sep=;' is a spreadsheet's separator hint")])
def test_excels_separator_hint_line_is_named(tmp_path, sep, said_part) -> None:
    """Excel's 'sep=,' line above the header: read as a 2-column header, the file was refused as
    'the rows have more fields than the header. Fix: write decimals with a point' (it has none)."""
    root = _slides(tmp_path)
    csv = root / "labels.csv"
    csv.write_text(f"sep={sep}\n" + sep.join(("slide_id", "path", "stil")) + "\n"
                   + "".join(f"{s}{sep}slides/{s}.tiff{sep}{int(v)}\n" for s, v in LABELS.items()))
    said = _refused(csv)
    assert said_part in said and "decimals with a point (30.5" not in said
