"""The cohort CSV as a file: its header, separator and line shapes, checked before its rows
(:func:`weakstil.cohort.read_cohort`), each refused with the cause and the fix."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from weakstil.errors import WeakSTILError

log = logging.getLogger("weakstil.cohort")

#: The fix of a CSV whose rows have more fields than its header (most often a decimal comma).
DECIMAL_FIX = "write decimals with a point (30.5, not 30,5) and quote fields that hold commas"

REQUIRED_COLUMNS = ("slide_id", "path", "stil")


class CohortError(WeakSTILError):
    """The cohort CSV has missing columns or bad rows."""


def _csv_rows(csv_path: Path) -> list[list[str]]:
    """The CSV's non-blank rows as fields ([] when it cannot be read as text)."""
    import csv

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            return [r for r in csv.reader(f, skipinitialspace=True) if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def record_lines(csv_path: Path, sep: str, n_rows: int) -> list[int]:
    """The line of the file on which each of the ``n_rows`` data rows pandas read begins. pandas skips blank
    and whitespace-only lines (before the header too) and a quoted cell may span lines, so "row i + 2" named
    the wrong row after a blank line: a spreadsheet's duplicate on line 6 was "row 4 (first on row 2)"
    (helper h42b). ``i + 2`` for every row when the file cannot be read so."""
    import csv

    starts: list[int] = []
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader, last = csv.reader(f, delimiter=sep, skipinitialspace=True), 0  # (as pandas reads it)
            for rec in reader:
                start, last = last + 1, reader.line_num
                if rec and not (len(rec) == 1 and not rec[0].strip()):
                    starts.append(start)
    except (OSError, UnicodeDecodeError, csv.Error):
        starts = []
    return starts[1:] if len(starts) == n_rows + 1 else list(range(2, n_rows + 2))


def line_of(raw, i: int) -> int:
    """Row ``i``'s line in its CSV (:func:`record_lines`, kept in ``raw.attrs``; else ``i + 2``)."""
    lines = raw.attrs.get("lines") or ()
    return lines[i] if i < len(lines) else i + 2


def _refuse_other_separator(columns: list[str], csv_path: Path) -> None:
    """A header read as one column that holds ';', a tab or '|': the file is not comma-separated
    (a European spreadsheet's 'CSV' uses ';' and decimal commas)."""
    if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
        sep = next(s for s in ";\t|" if s in columns[0])
        raise CohortError(f"the CSV is separated by {sep!r}, not commas (one column: {columns[0].strip()})",
                          path=csv_path, fix="save it as a comma-separated file with the header slide_id,path,stil "
                                             "(and decimals with a point)")
    # R's write.table() without sep=",": '"slide_id" "path" "stil"', read as one column and refused as
    # missing slide_id and stil while the header named them (two words naming two required columns)
    words = {_required_column(w) for w in columns[0].replace('"', " ").split()} - {None} if len(columns) == 1 else set()
    if len(words) >= 2:
        raise CohortError(f"the CSV is separated by spaces, not commas (one column: {columns[0].strip()})",
                          path=csv_path, fix="save it as a comma-separated file with the header slide_id,path,stil "
                                             "(in R: write.csv(x, file, row.names = FALSE))")


def _required_column(name: str) -> str | None:
    """The required column that ``name`` is, under its own name or another (:data:`COLUMN_ALIASES`)."""
    key = re.sub(r"[^a-z]", "", name.casefold())
    return next((want for want in REQUIRED_COLUMNS if name == want or key in COLUMN_ALIASES[want]), None)


#: Other names of the required columns (lower case, letters only): a lab's own header.
COLUMN_ALIASES = {"slide_id": {"slideid", "slide", "slidename", "id", "image", "imageid"},
                  "path": {"path", "file", "filepath", "filename", "slidepath", "slidefile"},
                  "stil": {"stil", "stils", "stilpct", "stilpercent", "stromaltil", "stromaltils", "til", "tils",
                           "tilpct", "tilspct", "tilscore", "tilsscore", "tilspercent"}}


def _holds_paths(values) -> bool:
    """Whether a column's cells are slide file paths ('scans/A-001.tif'): most non-empty ones name a
    folder or end in a slide file's extension."""
    from weakstil.settings import SLIDE_FILE_SUFFIXES

    cells = [str(v).strip() for v in values if str(v).strip()]
    paths = [v for v in cells if "/" in v or "\\" in v or v.casefold().endswith(SLIDE_FILE_SUFFIXES)]
    return bool(cells) and len(paths) * 2 > len(cells)


def _column_renames(missing: list[str], columns: list[str], values=None) -> str:
    """'sTIL' to 'stil', ...: the CSV's columns that name a missing required column another way
    ('' when none does). ``values`` (column -> cells) sends a column of file paths to 'path' whatever
    its name: an 'image' column of 'scans/A-001.tif' was named as the slide_id to rename."""
    pathlike = {c for c in columns if values is not None and c not in REQUIRED_COLUMNS and _holds_paths(values.get(c, ()))}
    pairs = []
    for want in missing:
        keys = COLUMN_ALIASES.get(want, set())
        found = [c for c in columns if re.sub(r"[^a-z]", "", c.casefold()) in keys and c not in REQUIRED_COLUMNS]
        if want == "slide_id":
            found = [c for c in found if c not in pathlike]
        elif want == "path" and len(pathlike) == 1:
            found = sorted(pathlike)
        if len(found) == 1:
            pairs.append(f"{found[0]!r} to {want!r}")
    return ", ".join(pairs)


def _trailing_delimiter(csv_path: Path) -> bool:
    """Whether every data row ends in one empty field more than the header has (a spreadsheet's
    trailing delimiter), rather than a decimal comma splitting a value in two."""
    rows = _csv_rows(csv_path)
    return len(rows) >= 2 and all(len(r) == len(rows[0]) + 1 and r[-1].strip() == "" for r in rows[1:])


def _check_first_line_is_header(csv_path: Path) -> None:
    """A title or comment line above the header (one field, rows of several below) is named as
    such, not taken for rows with decimal commas or a missing column."""
    rows = _csv_rows(csv_path)
    if len(rows) >= 2 and len(rows[0]) == 1 and not any(sep in rows[0][0] for sep in ";\t|") \
            and any(len(r) >= len(REQUIRED_COLUMNS) for r in rows[1:]):
        raise CohortError(f"the first line is not the header (it reads {rows[0][0][:60]!r})", path=csv_path,
                          fix="delete the line(s) above the header slide_id,path,stil (a title or comment)")


#: Spreadsheet fix: how to write the cohort CSV from Excel (LibreOffice: 'Text CSV', UTF-8, ',').
SAVE_AS_CSV = "save it from the spreadsheet as 'CSV UTF-8 (Comma delimited)' with the header slide_id,path,stil"


def refuse_not_text(csv_path: Path) -> None:
    """An Excel workbook (.xlsx, .xls) or UTF-16 text (Excel's 'Unicode Text') passed as the cohort
    CSV is named as what it is, not as a UTF-8 decoding error at some byte."""
    try:
        with open(csv_path, "rb") as f:
            head = f.read(8)
    except OSError:
        return
    what = spreadsheet_kind(head)
    if what is not None:
        raise CohortError(f"is {what}", path=csv_path, fix=SAVE_AS_CSV)
    _refuse_not_utf8(csv_path)


def spreadsheet_kind(head: bytes) -> str | None:
    """What a file starting with ``head`` is, when it is a spreadsheet's save that is no UTF-8 CSV."""
    return ("an Excel workbook (.xlsx), not a CSV" if head.startswith(b"PK\x03\x04") else
            "an Excel 97-2003 workbook (.xls), not a CSV" if head.startswith(b"\xd0\xcf\x11\xe0") else
            "UTF-16 text (a spreadsheet's 'Unicode Text'), not UTF-8" if head[:2] in (b"\xff\xfe", b"\xfe\xff")
            else None)


def not_utf8_line(data: bytes, start: int) -> str:
    """The line of ``data`` whose byte ``start`` is not UTF-8, named and shown as Windows-1252 reads it
    (a spreadsheet's 'CSV (Comma delimited)' on Windows), for the error line."""
    line = data.count(b"\n", 0, start) + 1
    text = data[data.rfind(b"\n", 0, start) + 1:].split(b"\n", 1)[0].rstrip(b"\r")
    shown = text.decode("cp1252", errors="replace")
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"line {line} is not UTF-8 text (byte 0x{data[start]:02X}; read as Windows-1252 it says {shown!r})"


def _refuse_not_utf8(csv_path: Path, limit: int = 64 * 1024**2) -> None:
    """A CSV that is not UTF-8 (a spreadsheet's 'CSV (Comma delimited)' is Windows-1252 on Windows)
    is refused naming the line, not the decoder's byte offset. It is never read in another encoding:
    a guess that is wrong would name another slide file or id without a word."""
    try:
        with open(csv_path, "rb") as f:
            data = f.read(limit)
    except OSError:
        return
    try:
        data.decode("utf-8")
        return
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3 and len(data) == limit:  # a character cut by the read limit
            return
        start = exc.start
    raise CohortError(f"{not_utf8_line(data, start)}, and is not guessed at: another encoding read wrongly would "
                      "name another slide file", path=csv_path,
                      fix=f"save it as UTF-8: {SAVE_AS_CSV.removeprefix('save it ')}")


def case_twin(path: Path, base: Path, listings: dict[Path, dict[str, str]]) -> str | None:
    """The file that ``path`` names in another letter case (a CSV written on macOS or Windows, whose
    file systems ignore case), relative to ``base`` when under it, or ``None``. ``listings`` caches
    each folder's names (casefolded -> name) over one CSV's rows."""
    folder = path.parent
    if folder not in listings:
        try:
            listings[folder] = {p.name.casefold(): p.name for p in folder.iterdir()} if folder.is_dir() else {}
        except OSError:
            listings[folder] = {}
    name = listings[folder].get(path.name.casefold())
    if name is None or name == path.name:
        return None
    twin = folder / name
    try:
        return twin.relative_to(base).as_posix()
    except ValueError:
        return str(twin)


def unicode_twin(path: Path) -> Path | None:
    """The existing file that ``path`` names with its accented letters in another Unicode form, or
    ``None``: macOS writes file names decomposed (NFD: 'e' + a combining accent), a CSV typed in a
    spreadsheet holds them composed (NFC), and the two look the same but are other bytes here, so
    'café.svs' was 'file not found' beside a file listed as 'café.svs'. Each missing part of the
    path is looked up in its folder by its NFC form."""
    import unicodedata

    def nfc(text: str) -> str:
        return unicodedata.normalize("NFC", text)

    if path.exists() or nfc(str(path)) == unicodedata.normalize("NFD", str(path)):
        return None  # nothing to normalise: plain ASCII
    found = Path(path.anchor) if path.is_absolute() else Path()
    for part in path.parts[1:] if path.is_absolute() else path.parts:
        candidate = found / part
        if not candidate.exists():
            try:
                candidate = next((found / p.name for p in found.iterdir() if nfc(p.name) == nfc(part)), None)
            except OSError:
                candidate = None
            if candidate is None:
                return None
        found = candidate
    return found


#: Subfolders of the CSV's folder looked into for a bare file name (a lab's sheet of file names).
SUBFOLDERS_LOOKED_INTO = 50


def in_subfolder(rel: str, base: Path, subfolders: dict[Path, list[Path]]) -> str | None:
    """Where a bare file name (``S1.svs``, no folder) lies in a subfolder of the CSV's folder
    (``slides/S1.svs``), relative to it; ``None`` when in none. ``subfolders`` caches the folder's
    subfolders (at most :data:`SUBFOLDERS_LOOKED_INTO`) over one CSV's rows."""
    if "/" in rel or "\\" in rel:
        return None
    if base not in subfolders:
        try:
            subfolders[base] = sorted(p for p in base.iterdir() if p.is_dir())[:SUBFOLDERS_LOOKED_INTO]
        except OSError:
            subfolders[base] = []
    return next(((f / rel).relative_to(base).as_posix() for f in subfolders[base] if (f / rel).is_file()), None)


def refuse_separator_line(csv_path: Path, header: str = "slide_id,path,stil", what: str = "",
                          error: type[WeakSTILError] = CohortError) -> None:
    """Excel's separator hint ('sep=,' or 'sep=;') as the first line: with ',' it was read as a
    two-column header and the file refused for 'rows with more fields than the header' (a decimal
    comma), with ';' as a one-column header 'sep=;'. Without the line either file is read (a ';' one
    since hunt 39c: the fix was to save it comma-separated until helper h40d). ``header``, ``what`` and
    ``error``: the file's header, the option naming it and the error, for a slide list (``--slides``,
    whose hint line was read as a slide path until helper h40d)."""
    try:
        with open(csv_path, encoding="utf-8-sig", errors="replace") as f:
            first = next((line.strip() for line in f if line.strip()), "")
    except OSError:
        return
    # (.?): a tab-separated file's 'sep=<tab>' is 'sep=' once its line is stripped
    if re.fullmatch(r'"?sep=(.?)"?[,;]*', first, flags=re.IGNORECASE) is not None:
        raise error(f"{what + ': ' if what else ''}the first line {first!r} is a spreadsheet's separator hint, not "
                    "the header", path=csv_path, fix=f"delete that first line: the header {header} comes first")


def warn_lookalike_groups(csv_path: Path, group_col: str, groups: list[str]) -> None:
    """Groups that differ only in case or spacing ('centre_0', 'Centre_0'), or numbers written two ways
    ('7', '7.0', '07': a spreadsheet's float column or a dropped leading zero), are likely one centre or
    patient typed twice: as two groups its slides can sit on both sides of a cross-validation split."""
    def key(g: str) -> str:
        number = re.fullmatch(r"(\d+)(?:\.(\d*))?", g.strip())
        if number is None:
            return " ".join(g.casefold().split())
        decimals = (number[2] or "").rstrip("0")
        return (number[1].lstrip("0") or "0") + (f".{decimals}" if decimals else "")

    seen: dict[str, set[str]] = {}
    for g in groups:
        seen.setdefault(key(g), set()).add(g)
    alike = [sorted(names) for names in seen.values() if len(names) > 1]
    if alike:
        log.warning("%s: %s values that differ only in case, spacing or number format are taken as different "
                    "groups: %s; if each is one centre or patient, spell it one way (else its slides can be trained on "
                    "and tested on in cross-validation)", csv_path, group_col,
                    "; ".join(" / ".join(map(repr, a)) for a in alike[:5]))


def refuse_paths_from_cwd(csv_path: Path, base: Path, rows: list[tuple[int, str, str]], n_bad: int) -> None:
    """Every bad row (3 or more) a path written from the current folder rather than the CSV's
    (``row, path, path from the CSV's folder``): one cause said once with an example, not each row
    with the same hint (40 such rows made a 12,000-character error line)."""
    import os

    if len(rows) < 3 or len(rows) != n_bad:
        return
    row, rel, fixed = rows[0]
    raise CohortError(f"{len(rows)} rows' slide paths are written from the current folder, {Path.cwd()}, where the "
                      f"files are, but paths are relative to the CSV's folder, {base} (row {row}: {rel})",
                      path=csv_path, fix=f"write them relative to the CSV's folder (row {row}: {fixed}), or as absolute "
                                         f"paths (row {row}: {os.path.abspath(rel)})")


def spreadsheet_number(sid: str, stem: str) -> bool:
    """Whether slide id ``sid`` is the file name ``stem`` (all digits, '001') as a spreadsheet writes the
    number it read it as: '1' (leading zeros dropped), '1.0' (a float column), '1.23457E+14' (a long
    number, its last digits lost)."""
    if sid == stem or not re.fullmatch(r"\d+", stem) or not re.fullmatch(r"\d+(\.\d*)?([eE][+-]?\d+)?", sid):
        return False
    return abs(float(sid) - float(stem)) <= 1e-5 * max(1.0, float(stem))


def warn_number_ids(csv_path: Path, rows: list[tuple[int, str, str]]) -> None:
    """Slide ids that are their files' numbers as a spreadsheet wrote them (``row, slide_id, file name``):
    Excel reads '001' as the number 1, so the cohort's id is '1' where 'weakstil score' and the file say
    '001', and predictions and labels no longer meet by id (read without a word until hunt 38f)."""
    if not rows:
        return
    shown = "; ".join(f"row {row}: {sid} for {name}" for row, sid, name in rows[:3]) + ("; ..." if len(rows) > 3 else "")
    log.warning("%s: %d slide_id(s) are their file's number as a spreadsheet writes it, leading zeros or digits lost "
                "(%s): outputs are named by slide_id, 'weakstil score' names the slide by its file; write slide_id "
                "as the file is named (in the spreadsheet, format the column as Text before typing or importing)",
                csv_path, len(rows), shown)


def overlong_rows(csv_path: Path) -> str:
    """The rows with more fields than the header, named with their text ('row 2: S1,a.svs,45,5; ...'), for
    the error that refuses them (it named no row when every row had one more: pandas took the first
    column for an index)."""
    import csv

    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, skipinitialspace=True)
            rows = [(reader.line_num, r) for r in reader if any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return ""
    if not rows:
        return ""
    over = [(line, ",".join(r)) for line, r in rows[1:] if len(r) > len(rows[0][1])]
    shown = "; ".join(f"row {line}: {text[:60]}" for line, text in over[:3]) + ("; ..." if len(over) > 3 else "")
    return f" ({len(over)} of {len(rows) - 1} rows; {shown})" if over else ""


def csv_separator(csv_path: Path) -> str:
    """``;`` for a header separated by semicolons with no comma in it (a European-locale spreadsheet's
    'CSV', whose labels carry decimal commas: refused whole until hunt 39c), else ``,``."""
    try:
        with open(csv_path, encoding="utf-8-sig", errors="replace") as f:
            first = next((line.strip() for line in f if line.strip()), "")
    except OSError:
        return ","
    return ";" if ";" in first and "," not in first and not first.casefold().strip('"').startswith("sep=") else ","


def decimal_comma_labels(csv_path: Path, raw, no_label: set[str]):
    """A ';'-separated CSV's labels with their decimal commas as points ('12,5' is 12.5), when every
    label with a decimal mark has a comma; a mix of commas and points (which is the decimal mark?)
    is one error naming a row of each."""
    if "stil" not in raw.columns:
        return raw
    cells = [(line_of(raw, i), str(v).strip()) for i, v in enumerate(raw["stil"]) if str(v).strip().casefold() not in no_label]
    # Excel's scientific format too ('7,60E+01' in a European locale: 'not a number ... write decimals with a point'
    # until hunt 41d, while '76,0' beside it was read)
    commas = [(row, v) for row, v in cells if re.fullmatch(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?\s*%?", v)]
    points = [(row, v) for row, v in cells if re.fullmatch(r"[+-]?\d*\.\d+(?:[eE][+-]?\d+)?\s*%?", v)]
    if commas and points:
        raise CohortError(f"the ';'-separated CSV has labels with a decimal comma (row {commas[0][0]}: {commas[0][1]}) "
                          f"and with a decimal point (row {points[0][0]}: {points[0][1]})", path=csv_path,
                          fix="write every label with the same decimal mark, or save it as 'CSV UTF-8 (Comma "
                              "delimited)' with decimals with a point")
    if commas:
        raw = raw.copy()
        raw["stil"] = [re.sub(r"^([+-]?\d*),(\d+)", r"\1.\2", str(v).strip()) for v in raw["stil"]]
        log.info("%s: read as a ';'-separated CSV with decimal commas (%d labels such as %s)", csv_path, len(commas),
                 commas[0][1])
    return raw


#: A slide id that a spreadsheet turned into a date ('1-3' as 01/03/2026, 2026-03-01 or 1-Mar).
DATE_ID = re.compile(r"\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?|\d{1,2}-[A-Za-z]{3}")


def warn_date_ids(csv_path: Path, rows: list[tuple[int, str]]) -> None:
    """Warn about slide ids (``row, slide_id``) that read as dates: Excel makes '1-3' the date 1 March
    (written back as 01/03/2026 or 2026-03-01), and the id no longer names the slide."""
    if not rows:
        return
    shown = "; ".join(f"row {row}: {sid}" for row, sid in rows[:3]) + ("; ..." if len(rows) > 3 else "")
    log.warning("%s: %d slide_id(s) are dates (%s): a spreadsheet reads an id such as 1-3 as a date and writes it "
                "back so; write slide_id as the file is named (in the spreadsheet, format the column as Text before "
                "typing or importing)", csv_path, len(rows), shown)
