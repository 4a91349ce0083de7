"""The sTIL% label column read for its scale: labels are percentages 0-100, and fractions (0.35
for 35 %) typed or exported into it are refused or warned about (used by
:func:`weakstil.cohort.read_cohort`)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from weakstil.cohort_csv import CohortError, line_of

log = logging.getLogger("weakstil.cohort")


def warn_fraction_labels(csv_path: Path, table, percent_signed: bool = False) -> None:
    """Warn when every label is at most 1 (fractions, not percentages), or when labels between 0
    and 1 that read as a pathologist's score times 100 sit beside percentages. Labels all written
    with a '%' sign (``percent_signed``) are percentages by their own notation: no fraction warning."""
    labels = table["stil"].dropna()
    if percent_signed:
        return
    if len(labels) >= 2 and labels.max() <= 1.0 and labels.max() > 0:
        log.warning("%s: every sTIL label is at most 1 (%s...): they look like fractions, but the labels are "
                    "percentages 0-100; multiply them by 100 if so", csv_path,
                    ", ".join(f"{v:g}" for v in labels.iloc[:3]))
    elif labels.max() > 1.0:
        _warn_mixed_fractions(csv_path, table.loc[labels.index])


#: A label a spreadsheet made a date of: '12.05.2026', '12/05/2026', '2026-05-12', '12. Mai', '12-May', '12-May-26'.
DATE_LABEL = re.compile(r"\d{1,2}[./-]\d{1,2}[./-]\d{2,4}|\d{4}-\d{2}-\d{2}(?:[ T][\d:]+)?"
                        r"|\d{1,2}[-. ]+(?:jan|feb|m[aä]r|mrz|mrt|apr|ma[iy]|mei|jun|jul|aug|sept?|o[ck]t|nov|de[cz])[a-zä]*\.?(?:[-. ]+\d{2,4})?",
                        re.IGNORECASE)


def label_hint(text: str) -> str:
    """What to write instead of a label that is not a number, in parentheses, or '': a decimal comma
    (30,5), or a pathologist's shorthand, a bound (<1, >90) or a range (5-10), which were refused as
    'not a number' without saying what a number would be."""
    import re

    number = r"(\d+(?:\.\d+)?)\s*%?"
    if DATE_LABEL.fullmatch(text):  # '12.5' typed into a German/Dutch Excel is 12 May: saved as '12.05.2026' (hunt 41d)
        return (" (a date: the spreadsheet took the label for one, as a German or Dutch Excel does with 12.5; "
                "format the column as Number and type the sTIL% again)")
    if "," in text:
        return " (write decimals with a point: 30.5, not 30,5)"
    if text.casefold() in {"na", "n/a", "#n/a", "none", "null", "-", "?", "nd", "n.d."}:
        return " (a missing label: give the slide's sTIL% or remove its row)"
    if m := re.fullmatch(rf"([<>≤≥]=?|~|ca\.?|approx\.?|about)\s*{number}", text, flags=re.IGNORECASE):
        # '<1': 1, TCGA-BRCA's lowest score (two 0.5s beside whole numbers are warned about as fractions)
        if m.group(1)[0] in "<>≤≥":
            bound = float(m.group(2))
            guess = (bound if bound <= 1 else bound / 2) if m.group(1)[0] in "<≤" else (bound + 100) / 2
            return (f" (a bound, not a score: write one sTIL% 0-100, the pathologist's estimate, e.g. {guess:g}, "
                    "or leave the slide out)")
        return f" (write the number alone: {m.group(2)})"
    if m := re.fullmatch(rf"{number}\s*(?:-|–|to)\s*{number}", text, flags=re.IGNORECASE):
        low, high = float(m.group(1)), float(m.group(2))
        return f" (a range: write one sTIL% 0-100, e.g. its midpoint {(low + high) / 2:g})"
    return ""


def refuse_fraction_labels(csv_path: Path, table, percent_signed: bool = False) -> None:
    """Refuse to train on labels that are all at most 1 (fractions, 0.35 for 35 %): read as
    percentages they span at most 1 point, so the model can learn nothing but that number, and it
    scored every slide under 1 % (12 demo slides of true sTIL 0.5-85 % given as fractions: out-of-fold
    sTIL% 0.05-0.72, exit 0, with only a warning). ``read_cohort`` still warns (``weakstil report``
    and the others read such a CSV for its slides); ``weakstil train`` and the workflow's preflight
    call this."""
    labels = table["stil"].dropna()
    if len(labels) < 2 or labels.max() > 1.0 or labels.max() <= 0:
        return
    shown = ", ".join(f"{v:g}" for v in labels.iloc[:3]) + (", ..." if len(labels) > 3 else "")
    if percent_signed:
        # written '0.4%': percentages by their own notation, not fractions (the message said "they look like
        # fractions ... multiply by 100", and the mixed-notation fix itself suggests writing '0.4%')
        shown = ", ".join(f"{v:g}%" for v in labels.iloc[:3]) + (", ..." if len(labels) > 3 else "")
        raise CohortError(f"every sTIL label is at most 1 % ({shown}; {len(labels)} slides): labels spanning at most one "
                          "point leave the model nothing to learn but that number, and it would score every slide "
                          "under 1 %", path=csv_path,
                          fix="train on a cohort whose labels span the sTIL range (0-100 %), or check the stil column "
                              "was exported as the pathologists' percentages")
    raise CohortError(f"every sTIL label is at most 1 ({shown}; {len(labels)} slides): they look like fractions, "
                      "but the labels are percentages 0-100; trained on as they are, the model would score every "
                      "slide under 1 %", path=csv_path,
                      fix="multiply the stil column by 100 (0.35 -> 35) and train again")


def refuse_class_labels(csv_path: Path, table) -> None:
    """Refuse a label column of only 0 and 1 (or 0 and 100), both present, on 4 or more slides: sTIL-high yes/no
    calls (a TCGA-style 'TIL high' column), not percentages. They were read as 0 % and 1 %, warned
    about as fractions to multiply by 100 (which makes them 0 and 100 %), and trained on: the model
    scored every slide under 1 %. A cohort whose slides are all scored 0 or 1 % is not one to train on."""
    labels = table["stil"].dropna()
    if len(labels) >= 4 and labels.nunique() == 2 and labels.isin([0.0, 100.0]).all():
        # the same calls as 0 % and 100 % (0/1 cells formatted as percentages export so): trained on
        # without a word (8 demo slides: out-of-fold R² -0.89, MAE 68.6, exit 0); no slide's stroma is
        # all lymphocytes
        high = int((labels == 100.0).sum())
        raise CohortError(f"every sTIL label is 0 or 100 ({high} slides 100, {len(labels) - high} slides 0): they look "
                          "like classes (sTIL-high yes/no, e.g. 0/1 cells formatted as percentages), not percentages",
                          path=csv_path, fix="give each slide's stromal TIL percentage, 0-100 (as a pathologist scores "
                          "it, TILs Working Group method): a yes/no call cannot be regressed")
    if len(labels) < 4 or labels.nunique() < 2 or not labels.isin([0.0, 1.0]).all():
        return
    ones = int((labels == 1.0).sum())
    raise CohortError(f"every sTIL label is 0 or 1 ({ones} slides 1, {len(labels) - ones} slides 0): they look like "
                      "classes (sTIL-high yes/no), not percentages; trained on as 0 % and 1 %, the model would score "
                      "every slide under 1 %", path=csv_path,
                      fix="give each slide's stromal TIL percentage, 0-100 (as a pathologist scores it, TILs Working "
                          "Group method): a yes/no call cannot be regressed, and x 100 would make it 0 and 100 %")


def refuse_mixed_notation(csv_path: Path, notation: list[tuple[int, str, str, float | None]]) -> None:
    """Refuse a label column that writes some labels as percentages with a '%' sign ('35%', as a
    spreadsheet shows a cell formatted as a percentage) and others as bare numbers between 0 and 1
    (0.35, a cell left in the General format): the bare ones are fractions of the same scale, and
    read as 0.35 % each would be a TIL-free slide (no warning caught it when the fractions were not
    whole percentages)."""
    percent = [(row, raw) for row, _, raw, value in notation if raw.endswith("%") and value is not None]
    bare = [(row, sid, raw, value) for row, sid, raw, value in notation
            if value is not None and not raw.endswith("%") and 0.0 < value < 1.0]
    if not percent or not bare:
        return
    shown = "; ".join(f"row {row} ({sid}) {raw}" for row, sid, raw, _ in bare[:5]) + ("; ..." if len(bare) > 5 else "")
    raise CohortError(f"the stil column writes labels as percentages with a '%' sign (row {percent[0][0]}: "
                      f"{percent[0][1]}) and {len(bare)} as bare numbers between 0 and 1, which read as below 1 %: "
                      f"{shown}", path=csv_path,
                      fix=f"write every label as a percentage 0-100 ({bare[0][3] * 100:g} or {bare[0][3] * 100:g}% "
                          f"if {bare[0][2]} is a fraction; {bare[0][2]}% if it is meant as under 1 %)")


def _warn_mixed_fractions(csv_path: Path, rows) -> None:
    """Labels strictly between 0 and 1 beside percentages (up to 100) look like fractions typed
    into a percentage column (0.35 for 35 %): read as 0.35 %, each would teach the model that
    slide is TIL-free. Scored sTIL% below 1 is rare (none of 342 TCGA labels), so two or more
    such labels are warned about when, times 100, they read as a pathologist's score: a multiple
    of 1/12 % (whole, half, quarter or third percentages, as averages of 2-4 readers give).
    Measured labels (a generator's truth, another algorithm's output: 0.5827 %) are left alone."""
    small = rows[(rows["stil"] > 0.0) & (rows["stil"] < 1.0)]
    on_grid = (small["stil"] * 1200.0 - (small["stil"] * 1200.0).round()).abs() < 0.01
    small = small[on_grid]
    if len(small) >= 2:
        shown = [f"{sid} {v:g}" for sid, v in zip(small["slide_id"], small["stil"])]
        log.warning("%s: %d sTIL labels are between 0 and 1 (%s%s) beside labels up to %g: if they are fractions, "
                    "write them as percentages (x 100); the labels are percentages 0-100", csv_path, len(small),
                    ", ".join(shown[:5]), ", ..." if len(shown) > 5 else "", rows["stil"].max())


def refuse_split_decimal(csv_path: Path, raw, columns: list[str]) -> None:
    """Refuse labels whose decimal comma split them into the next column: with a column after
    ``stil`` left empty (a comment, a group not yet filled in), the row ``S1,a.svs,35,5`` has as many
    fields as the header, so it was read as the label 35 and the next column '5', without a word.
    Refused when whole-number labels are followed by 1-4 digits in that column on some rows and
    the column holds no bare number on any other row (empty or text there); a column of numbers
    (a patient number, readers) is left alone."""
    import re

    if "stil" not in columns or columns.index("stil") + 1 >= len(columns):
        return
    after = columns[columns.index("stil") + 1]
    split, others_numeric, others = [], False, 0
    for i, (label, nxt) in enumerate(zip(raw["stil"].astype(str).str.strip(), raw[after].astype(str).str.strip())):
        if re.fullmatch(r"\d+", label) and re.fullmatch(r"\d{1,4}", nxt):
            split.append((line_of(raw, i), label, nxt))
        else:
            others += 1
            others_numeric = others_numeric or bool(re.fullmatch(r"[+-]?\d+([.,]\d*)?", nxt))
    if not split or not others or others_numeric:
        return
    shown = "; ".join(f"row {row}: {label},{nxt}" for row, label, nxt in split[:5]) + ("; ..." if len(split) > 5 else "")
    row, label, nxt = split[0]
    raise CohortError(f"{len(split)} sTIL label(s) look split by a decimal comma into the next column {after!r}, "
                      f"which is empty or text on the other rows ({shown}): {label},{nxt} would be read as "
                      f"{label} with {after} {nxt}", path=csv_path,
                      fix=f"write decimals with a point ({label}.{nxt}); if {nxt} is the {after} of row {row}, "
                          f"move the {after} column before stil")
