"""A ``weakstil score`` results.csv edited by hand, checked against the slides' score files.

A lab opens results.csv in a spreadsheet, types over cells, deletes rows or columns, re-sorts it and
saves it again. Each scored slide's ``<slide_id>.h5`` beside it records its sTIL%, interval, call,
threshold, status, qc flags, tile counts and model: ``report --scores`` and ``evaluate --oof`` read
those cells from the file (hunt 28c), and say which rows differed.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd

from weakstil.errors import WeakSTILError

log = logging.getLogger(__name__)


def number_or_nan(text: object) -> float:
    """A cell as a number (NaN: empty or text)."""
    try:
        return float(str(text))
    except ValueError:
        return math.nan


def score_attrs(folder: Path, slide_id: str) -> dict:
    """A slide's score-file attributes (``{}``: none, or not readable)."""
    return _read_attrs(folder, slide_id)[0]


def _read_attrs(folder: Path, slide_id: str) -> tuple[dict, str | None]:
    """(a slide's score-file attributes, why its file there cannot be read: None when it reads or is
    not there). A damaged file (truncated by a full disk or a stopped copy) is not a missing one."""
    from weakstil.files import SlideScoresFile, slide_file

    path = slide_file(folder, slide_id)
    try:
        return SlideScoresFile.read_header(path)[0], None
    except (WeakSTILError, OSError) as exc:
        why = exc.message if isinstance(exc, WeakSTILError) else str(exc)
        return {}, (why if path.is_file() else None)


def _reasons_text(recorded: object) -> str:
    """A score file's ``qc_reasons`` (JSON: flag -> why) as results.csv writes the cell
    (``flag: why | flag: why``; qc.scoring), so the two compare (hunt 30c: the cell was not compared,
    and a reason typed over or emptied in a spreadsheet was reported as the row said)."""
    import json

    try:
        why = json.loads(str(recorded))
    except ValueError:
        return str(recorded)
    return " | ".join(f"{flag}: {reason}" for flag, reason in why.items()) if isinstance(why, dict) else str(recorded)


def _said_high(rec: dict) -> bool | None:
    """The row's ``stil_high`` cell as ``score`` writes it (``True``/``False``) or as a spreadsheet
    saves it again (``TRUE``/``FALSE``, ``1``/``0``); ``None``: a cell that says neither."""
    said = str(rec.get("stil_high", "")).strip().lower()
    return True if said in ("true", "1", "1.0") else False if said in ("false", "0", "0.0") else None


def called_high(stil: float, threshold: float) -> bool:
    """The sTIL-high call of the ``stil`` shown at the threshold shown: the report's call is always the
    call of the number beside it (a ``stil_high`` cell typed over in a spreadsheet is not)."""
    from weakstil.metrics import called_high as calls

    return bool(calls(stil, threshold))


#: results.csv columns newer than some results.csv files (``tumorbed_crush_tiles``: helper h44d): a file without one
#: is an older WeakSTIL's, not one whose column was deleted in a spreadsheet (taken from the score files, unsaid); so is
#: an empty cell of one, the row of a slide an older WeakSTIL scored in a table a newer ``score`` rewrote (helper h44e:
#: every such row was said to differ from its score file, "edited in a spreadsheet?").
NEWER_COLUMNS = ("tumorbed_crush_tiles", "tumorbed_front")  # tumorbed_front: helper h45i


def _checked_cells() -> tuple[tuple[str, bool], ...]:
    """The cells of a results.csv row that its score file also records: (column, whether a number)."""
    from weakstil.confidence import interval_columns

    return (("status", False), ("stil", True), *((c, True) for c in interval_columns()), ("stil_high", False),
            ("threshold", True), ("qc", False), ("qc_reasons", False), ("n_tiles", True), ("n_tumorbed_tiles", True),
            ("tumorbed_crush_tiles", True), ("tumorbed_source", False), ("tumorbed_front", False),
            ("model_id", False))


def _file_text(value: object, number: bool, column: str = "") -> str:
    if column == "qc_reasons":
        return _reasons_text(value)
    if number:
        value = float(value)
        return "" if not math.isfinite(value) else f"{value:.4f}" if value != round(value) else f"{value:g}"
    return str(bool(value)) if type(value).__name__ in ("bool", "bool_") else "" if value is None else str(value)


def _unlike(row: object, file: str, number: bool) -> bool:
    if not number:
        said = _said_high({"stil_high": row})  # TRUE, 1 and True are one call
        return str(row).strip() != file and not (said is not None and said == _said_high({"stil_high": file}))
    a, b = number_or_nan(row), number_or_nan(file)
    return not (math.isnan(a) and math.isnan(b)) and not abs(a - b) <= 0.5e-4 + 1e-9


def checked_records(folder: Path, records: list[dict], *, unlisted: bool = True) -> list[dict]:
    """``records`` (results.csv's rows) with the cells their slide's score file records taken from it.
    A lab edits, re-sorts and saves results.csv in a spreadsheet; the report used to print what the
    cells said (an emptied threshold "low at nan %", an sTIL 6.7 % typed ``stil_high`` yes "high at
    30 %"). A row whose cells differ from its score file is reported as the file records it, and the
    differences are said; a scored row without a score file of its slide (renamed, deleted, an id a
    spreadsheet turned into a date) is reported as the row says, marked unchecked. ``unlisted``: add
    a row for each score file in ``folder`` that results.csv has none of."""
    out, differ, unchecked, renamed, damaged = [], [], [], [], []
    listed = {str(r["slide_id"]) for r in records}
    # the score files results.csv has no row of, by their slide's path
    unreadable: list[str] = []  # score files results.csv has no row of that cannot be read
    loose = {r["path"] or r["slide_id"]: r for r in score_file_rows(folder, listed, unreadable)} if unlisted else {}
    dropped = [c for c, _ in _checked_cells() if records and c not in records[0]]
    deleted = [c for c in dropped if c not in NEWER_COLUMNS]  # a results.csv of an older WeakSTIL has none of those
    if deleted:  # columns deleted in a spreadsheet: said once, not as every row's empty cell
        log.warning("%s/results.csv has no %s column: taken from each slide's score file", folder, ", ".join(deleted))
    for rec in records:
        rec = dict(rec)
        if str(rec.get("status", "")) == "error":
            out.append(rec)
            continue
        attrs, broken = _read_attrs(folder, str(rec["slide_id"]))
        if not attrs and str(rec.get("path", "")) in loose:  # its id changed (a spreadsheet made a date of it)
            file_row = loose.pop(str(rec["path"]))
            renamed.append(f"{rec['slide_id']!r} is {file_row['slide_id']!r}")
            out.append({**rec, **{k: v for k, v in file_row.items() if k != "_unlisted"}})
            continue
        if not attrs or str(attrs.get("slide_id", rec["slide_id"])) != str(rec["slide_id"]):
            # a damaged file is said as such, with its fix (it was "no score file of their slide")
            (damaged if broken else unchecked).append(f"{rec['slide_id']}.h5: {broken}" if broken else str(rec["slide_id"]))
            rec["_unchecked"] = "damaged" if broken else True
            stil, threshold, high = number_or_nan(rec.get("stil", "")), number_or_nan(rec.get("threshold", "")), _said_high(rec)
            if math.isfinite(stil) and math.isfinite(threshold) and high is not None \
                    and high != called_high(stil, threshold):
                log.warning("%s: results.csv's row says stil_high %s of an sTIL of %s %% at %s %%: reported as the "
                            "call of that number", rec["slide_id"], rec.get("stil_high"), rec.get("stil"),
                            rec.get("threshold"))
            out.append(rec)
            continue
        said = []
        for column, number in _checked_cells():
            if column not in attrs:
                continue
            try:
                file = _file_text(attrs[column], number, column)
            except (TypeError, ValueError):
                continue
            cell = rec.get(column, "")
            cell = "" if isinstance(cell, float) and math.isnan(cell) else cell  # an empty cell read by pandas
            if column in dropped or (column in NEWER_COLUMNS and str(cell).strip() == ""):
                rec[column] = file  # an older WeakSTIL's row in a table a newer score rewrote: its cell is empty
            elif _unlike(cell, file, number):
                said.append(f"{column} {str(cell)!r} there, {file!r} in the file")
                rec[column] = file
        if said:
            differ.append(f"{rec['slide_id']} ({'; '.join(said)})")
        out.append(rec)
    if renamed:
        log.warning("%d slide id(s) of %s/results.csv are not those of the slides' score files (changed by a "
                    "spreadsheet?): reported under the score files' ids: %s", len(renamed), folder, ", ".join(renamed))
    if loose:
        log.warning("%d score file(s) in %s have no row in its results.csv (%s%s): reported from the score files",
                    len(loose), folder, ", ".join(r["slide_id"] for r in list(loose.values())[:5]),
                    ", ..." if len(loose) > 5 else "")
        out += list(loose.values())
    if unreadable:  # a slide of this run whose row was never written: it was left out without a word
        log.warning("%d score file(s) in %s have no row in its results.csv and cannot be read (%s%s): left out. "
                    "Fix: run 'weakstil score' on %s again with --out %s", len(unreadable), folder,
                    "; ".join(unreadable[:3]), "; ..." if len(unreadable) > 3 else "",
                    "that slide" if len(unreadable) == 1 else "those slides", folder)
    if differ:
        log.warning("%d row(s) of %s/results.csv differ from their slide's score file (edited in a spreadsheet?): "
                    "taken as the score files record them: %s", len(differ), folder, ", ".join(differ))
    if unchecked and (unlisted or len(unchecked) < len(records)):  # evaluate: a copied results.csv, as is
        log.warning("%d scored row(s) of %s/results.csv have no score file of their slide there (%s%s): reported as "
                    "results.csv says, unchecked", len(unchecked), folder, ", ".join(unchecked[:5]),
                    ", ..." if len(unchecked) > 5 else "")
    if damaged:
        log.warning("%d scored row(s) of %s/results.csv have a damaged score file, which cannot be read (%s%s): reported "
                    "as results.csv says, unchecked. Fix: run 'weakstil score' on %s again with --out %s", len(damaged), folder,
                    "; ".join(damaged[:3]), "; ..." if len(damaged) > 3 else "",
                    "that slide" if len(damaged) == 1 else "those slides", folder)
    return out


def checked_numbers(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (:func:`checked_records` as a table) with its number columns numbers again: the cells
    taken from score files are text."""
    for column, number in _checked_cells():
        if number and column in table.columns:
            values = pd.to_numeric(table[column], errors="coerce")
            # text that is no number stays text, for the reader's own refusal naming the row and cell
            typed = table[column].astype(object)
            text = values.isna() & typed.notna() & (typed.astype(str).str.strip() != "")
            table[column] = values.astype(object).where(~text, typed) if text.any() else values
    return table.drop(columns=[c for c in ("_unchecked", "_unlisted") if c in table.columns])


def score_file_rows(folder: Path, listed: set[str], unreadable: list[str] | None = None) -> list[dict]:
    """A row for each score file in ``folder`` that results.csv lists no row of (rows deleted in a
    spreadsheet, a run stopped before writing its row): from the file, marked as such. They were
    left out of the report without a word, its counts short by them. Not said here: a row whose id
    was changed is matched to its file by :func:`checked_records` first. ``unreadable`` gets
    ``<file>: why`` of each such file that is damaged or incomplete (another kind of file is not
    this run's and is passed over)."""
    from weakstil.files import SlideScoresFile
    from weakstil.files.h5 import H5ReadError, IncompleteFileError

    rows = []
    for path in sorted(folder.glob("*.h5")):
        if path.stem in listed:
            continue
        try:
            attrs = SlideScoresFile.read_header(path)[0]
        except (WeakSTILError, OSError, ValueError, KeyError) as exc:  # not a score file: not this run's
            if unreadable is not None and isinstance(exc, (H5ReadError, IncompleteFileError)):
                unreadable.append(f"{path.name}: {exc.message if isinstance(exc, WeakSTILError) else exc}")
            continue
        if str(attrs.get("slide_id", "")) != path.stem:
            continue
        rec = {"slide_id": path.stem, "path": str(attrs.get("slide_path", "")), "_unlisted": True}
        for column, number in _checked_cells():
            try:
                rec[column] = _file_text(attrs.get(column, math.nan if number else ""), number, column)
            except (TypeError, ValueError):
                rec[column] = ""
        rows.append(rec)
    return rows
