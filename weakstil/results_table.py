"""``OUT/results.csv`` of ``weakstil score``: one row per slide, shared by runs into the same folder.

Rows are read back by slide id (a rerun skips what is finished) and merged under the file's lock,
so two runs into one folder both keep their slides; the file is rewritten atomically.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Collection
from pathlib import Path

from weakstil.atomic import atomic_path

log = logging.getLogger(__name__)


def read_previous(path: Path) -> dict[str, dict]:
    """The rows of ``results.csv`` by slide id (the first row of an id: later ones are clashes)."""
    return _split_rows(path)[0]


def _split_rows(path: Path) -> tuple[dict[str, dict], list[dict]]:
    """(the first row of each slide id, the later rows: clashes)."""
    first: dict[str, dict] = {}
    later: list[dict] = []
    for r in _read_rows(path):
        if str(r["slide_id"]) in first:
            later.append(r)
        else:
            first[str(r["slide_id"])] = r
    return first, later


_SAID_RECODED: set[tuple[str, int]] = set()


def read_table(path: Path):
    """``results.csv`` as a table of text cells (``None``: an empty file). Read as UTF-8 (a byte-order
    mark or none); a file a spreadsheet saved again in the Windows code page (Excel's "CSV (Comma
    delimited)") is read as such and said once, and written back in UTF-8 by the next row. A file
    that cannot be read is one error naming it: it used to be dropped as "unreadable", and the next
    row written replaced every earlier row (and the columns a user had added) with this run's."""
    import pandas as pd

    from weakstil.csv_cells import restored
    from weakstil.errors import WeakSTILError

    # every cell as the text it is: a rewrite gives back what a user typed (007, 12.345678) and the
    # threshold as given, not numbers pandas guessed and reformatted
    kw = {"dtype": str, "keep_default_na": False}
    try:
        try:
            return restored(pd.read_csv(path, encoding="utf-8-sig", **kw))
        except UnicodeDecodeError:
            table = restored(pd.read_csv(path, encoding="cp1252", **kw))
        said = (str(path), path.stat().st_mtime_ns)
        if said not in _SAID_RECODED:  # it is read again after every slide: said once
            _SAID_RECODED.add(said)
            log.warning("%s is not UTF-8 (saved again by a spreadsheet in the Windows code page?): read as Windows-1252; "
                        "it is written back in UTF-8", path)
        return table
    except pd.errors.EmptyDataError:
        if not path.read_bytes().strip():
            return None
        reason = "no columns"
    except (ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    raise WeakSTILError(f"cannot be read as a comma-separated table ({reason}); it is left as it is", path=path,
                        fix="restore the file 'weakstil score' wrote (or a copy of it), or move it away and run again "
                        "(every slide is then scored again)")


#: The rows last parsed from each table, by its path, with a digest of the bytes parsed: score reads
#: results.csv before every slide, and a rerun skipping finished slides parsed it again for each (300
#: slides of 300 rows: 300 parses of 10-60 ms, growing with the table; hunt 35h). Reading the bytes
#: and hashing them is a small part of a parse, and unlike a file's time and size it misses no edit.
_PARSED: dict[str, tuple[bytes, list[dict]]] = {}


def _read_rows(path: Path) -> list[dict]:
    import hashlib

    key = os.path.abspath(path)
    try:
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).digest()
    except OSError:  # missing, a folder, unreadable: said by the parse
        digest = None
    parsed = _PARSED.get(key)
    if digest is not None and parsed is not None and parsed[0] == digest:
        return [dict(r) for r in parsed[1]]  # copies: callers change their rows
    rows = _parse_rows(path)
    if digest is not None:
        if len(_PARSED) > 16:  # one per --out of this process: a test session's many folders are not all kept
            _PARSED.clear()
        _PARSED[key] = (digest, [dict(r) for r in rows])
    return rows


def _parse_rows(path: Path) -> list[dict]:
    if not path.is_file():
        if path.is_dir() or path.is_symlink():  # it cannot be written either: said before any slide is scored
            from weakstil.errors import WeakSTILError

            raise WeakSTILError(f"is {'a directory' if path.is_dir() else 'a broken symbolic link'}, not the results "
                                "table 'weakstil score' writes there; it is left as it is", path=path,
                                fix="move it away, or give 'weakstil score' another --out")
        return []
    table = read_table(path)
    if table is None:  # an empty file: no rows
        return []
    if "slide_id" not in table.columns:  # e.g. re-saved by a spreadsheet with ';' between the columns
        from weakstil.errors import WeakSTILError

        raise WeakSTILError("has no slide_id column, so it is not a results table weakstil can add to (saved "
                            "again by a spreadsheet with ';' separators?); it is left as it is", path=path,
                            fix="restore the comma-separated file, or move it away and run again")
    # a spreadsheet's empty rows (",,,," after the table) are no slide: not carried into every rewrite
    rows = [r for r in table.to_dict("records") if any(str(v).strip() for v in r.values())]
    return _without_cut_rows(path, _without_repeated_headers(path, rows), list(table.columns))


def cut_rows(rows: list[dict], columns: list) -> list[int]:
    """Indices of rows with no ``status``, which every row 'weakstil score' writes has: the end of a copy cut short
    (its last line "s", a slide id's first letter) was kept as slide "s", in every rewrite and in the report's count
    (fault matrix h48d). A table of a version before the status column has none to judge."""
    if "status" not in columns:
        return []
    return [i for i, r in enumerate(rows) if not str(r.get("status", "")).strip() or str(r.get("status")) == "nan"]


def _without_cut_rows(path: Path, rows: list[dict], columns: list) -> list[dict]:
    cut = cut_rows(rows, columns)
    if cut:
        log.warning("%s: %d row%s with no status dropped (%s; a line cut short by a copy?): no slide is recorded "
                    "there, and the next row written rewrites the file without %s", path, len(cut), "s" * (len(cut) > 1),
                    ", ".join(repr(str(rows[i].get("slide_id"))) for i in cut[:3]), "them" if len(cut) > 1 else "it")
    return [r for i, r in enumerate(rows) if i not in set(cut)]


def _without_repeated_headers(path: Path, rows: list[dict]) -> list[dict]:
    """``rows`` less the header lines repeated inside the table: two results.csv joined by ``cat`` (a batch
    scored on two machines) hold the second file's header as a row, slide id "slide_id", which every rewrite
    kept (helper h45d). A repeat of this header is dropped with a warning naming the file: the rows are whole and
    the line says nothing, so a lab's joined table is repaired, not refused over a line it can only delete. A header
    line of other columns (another order, another version's table) is refused: the rows under it are in other
    columns, and reading them under these names would put one column's values in another."""
    heads = [i for i, r in enumerate(rows) if str(r.get("slide_id", "")).strip("\ufeff \t") == "slide_id"]
    if not heads:
        return rows
    other = [i for i in heads if any(str(v).strip() not in ("", k) for k, v in rows[i].items())]
    if other:
        from weakstil.errors import WeakSTILError

        raise WeakSTILError(f"holds a second header line (line {other[0] + 2}) whose columns are not this table's "
                            "(two results tables of other columns joined end to end?): the rows under it would be read "
                            "in the wrong columns; it is left as it is", path=path,
                            fix="join the tables by column name (e.g. pandas.concat of both files) into results.csv, or "
                                "move it away and run again")
    log.warning("%s: %d repeated header line%s dropped (results tables joined end to end, e.g. by 'cat'); the rows "
                "are kept, and the next row written rewrites the file without %s", path, len(heads),
                "s" * (len(heads) > 1), "them" if len(heads) > 1 else "it")
    return [r for i, r in enumerate(rows) if i not in set(heads)]


def write_results(path: Path, mine: dict[str, dict], clashes: list[dict], columns: list[str],
                  other_file: Collection[str] = ()) -> None:
    """Merge this run's rows into ``results.csv`` (re-read under its lock: other runs may share
    ``OUT``) and rewrite it atomically. A write that fails (disk full) leaves the old file whole.

    An earlier run's clash rows (another file with a scored slide's id, refused) stay until that
    file is scored in its place or this run lists it again: the record that a slide was not scored
    must not vanish because a rerun skipped the finished one. ``other_file``: slide ids whose earlier
    row was of another file (another path, or a rescan in place): the columns a user added to it
    (a pathologist's sign-off) are not carried over to this file's row."""
    import pandas as pd

    from weakstil.csv_cells import defused
    from weakstil.locks import OutputLock

    with OutputLock(path):
        rows, earlier_clashes = _split_rows(path)
        for slide_id, row in mine.items():  # a rescored slide keeps the columns a user added to its row
            earlier = {k: v for k, v in rows.get(slide_id, {}).items() if k not in columns}
            if slide_id in other_file and (said := {k: v for k, v in earlier.items() if _filled(v)}):
                log.warning("%s: the columns added to its row in %s (%s) were about another file (%s); not kept for "
                            "%s", slide_id, path, ", ".join(f"{k}={v!r}" for k, v in said.items()),
                            rows[slide_id].get("path"), row.get("path"))
            rows[slide_id] = {**({} if slide_id in other_file else earlier), **row}
        for slide_id in [s for s, r in rows.items() if s not in mine and _now_matched(r, mine.values())]:
            del rows[slide_id]  # an earlier "matches nothing" row of a pattern that matches this run's slides
        listed = {(str(c["slide_id"]), str(c.get("path"))) for c in clashes}
        kept = [r for r in earlier_clashes if (str(r["slide_id"]), str(r.get("path"))) not in listed
                and str(r.get("path")) != str(rows[str(r["slide_id"])].get("path"))]
        # columns a user added (a pathologist's comment) are kept, after ours
        extra = list(dict.fromkeys(k for r in rows.values() for k in r if k not in columns))
        table = pd.DataFrame([{k: _cell(v) for k, v in r.items()} for r in [*rows.values(), *kept, *clashes]],
                             columns=[*columns, *extra])
        with atomic_path(path) as tmp:  # a slide id like '=HYPERLINK(...)' is no formula in a spreadsheet
            defused(table).to_csv(tmp, index=False)


def _now_matched(row: dict, rows: Collection[dict]) -> bool:
    """Whether ``row`` is an error row of a slide pattern (a glob that matched no file, kept as its
    own row so the batch said so) that one of ``rows`` (this run's slides) now matches."""
    import fnmatch
    import glob

    pattern = str(row.get("path", ""))
    return (str(row.get("status")) == "error" and glob.has_magic(pattern) and not Path(pattern).exists()
            and any(fnmatch.fnmatchcase(str(r.get("path", "")), pattern) for r in rows))


def unchanged_by(rows: dict[str, dict], row: dict) -> bool:
    """Whether writing ``row`` into the table whose rows are ``rows`` (:func:`read_previous`) would change
    nothing: a slide skipped as already scored, at the path its row names. A rerun rewrote results.csv after
    every such slide (read, merged and written whole: O(rows) per slide, quadratic over a batch; hunt 35h)."""
    return rows.get(str(row["slide_id"])) == row and not any(_now_matched(r, [row]) for r in rows.values()
                                                             if r.get("status") == "error")


def _filled(value: object) -> bool:
    return not (value is None or value == "" or (isinstance(value, float) and math.isnan(value)))


def _cell(value: object) -> object:
    """A float as ``%.4f`` (NaN empty), anything else as it is. Formatted here, row by row, because
    rows read back from the file are text: a column of text and floats would otherwise be written
    half ``%.4f`` and half ``repr``."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, numbers.Integral)):
        return "" if math.isnan(value) else f"{float(value):.4f}"
    return value


def replaced_by_others(path: Path, rows: list[dict]) -> dict[str, str]:
    """Slide id -> the model id now in ``results.csv`` for those of ``rows`` (this run's) whose row
    another model wrote since: another run into the same folder scored them again."""
    now = read_previous(path)
    return {str(r["slide_id"]): str(now[str(r["slide_id"])].get("model_id")) for r in rows
            if str(r["slide_id"]) in now and str(now[str(r["slide_id"])].get("model_id")) != str(r.get("model_id"))}


class BatchRows(list):
    """The rows of a batch, the slide ids whose row could not be written to results.csv (where an
    earlier run's row of the slide may stand beside this run's files), and those already scored
    (skipped: their rows are the earlier run's)."""

    def __init__(self) -> None:
        super().__init__()
        self.unrecorded: list[str] = []
        self.skipped: list[str] = []


def typed_row(row: dict, floats: tuple[str, ...], ints: tuple[str, ...] = ("n_tiles", "n_tumorbed_tiles",
                                                                               "tumorbed_crush_tiles")) -> dict:
    """A row read back from ``results.csv`` (every cell text) with the types a freshly scored row has:
    ``floats`` as float (an empty cell: nan), ``ints`` as int (an empty cell stays empty), ``stil_high``
    as bool. A script's ``row["stil"] > 30`` raised TypeError on a rerun (the slide skipped as already
    scored: '46.0941', a str) that it passed on the first run (46.0941) until hunt 36d."""
    out = dict(row)

    def number(value: object, kind: type) -> object:
        try:
            return kind(float(value)) if kind is int else kind(value)
        except (TypeError, ValueError):
            return value  # a cell a user edited into something else is given as it stands

    for k in floats:
        if k in out:
            out[k] = math.nan if out[k] in ("", None) else number(out[k], float)
    for k in ints:
        if out.get(k) not in ("", None):
            out[k] = number(out[k], int)
    if str(out.get("stil_high")) in ("True", "False"):
        out["stil_high"] = out["stil_high"] == "True"
    return out


def another_file(prev: dict, row: dict, earlier_scan: str | None, now_scan: str | None) -> bool:
    """Whether the new row is of another file than the earlier: another scan, else (unknown) another path.
    ``now_scan``: the new row's (a failed attempt's: the slide file's own, :func:`weakstil.score_state.scan_now`)."""
    if earlier_scan is None or now_scan is None:
        return str(prev.get("path")) != row["path"]
    return earlier_scan != now_scan


def row_unlike_file(prev: dict, attrs: dict) -> str:
    """What the results.csv row says otherwise than the slide's score file ('' when they agree)."""
    def number(value: object) -> float:
        try:
            return float(str(value)) if str(value).strip() else math.nan
        except ValueError:
            return math.nan

    said = []
    for key, tolerance in (("stil", 0.5 * 10 ** -4 + 1e-9), ("threshold", 1e-9)):  # stil: written with 4 decimals
        row, file = number(prev.get(key)), number(attrs.get(key))
        if not (math.isnan(row) and math.isnan(file)) and not abs(row - file) <= tolerance:
            said.append(f"{key} {prev.get(key)} there, {file:.12g} in the file")
    for key in ("status", "qc"):
        if str(prev.get(key, "")) != str(attrs.get(key, "")):
            said.append(f"{key} {prev.get(key, '')!r} there, {attrs.get(key, '')!r} in the file")
    return "; ".join(said)


def row_agrees_with_file(prev: dict, attrs: dict, score_file: Path, slide: Path) -> bool:
    """Whether the results.csv row ``prev`` is the row of the slide's score file (``attrs``); a row an
    earlier run left beside the files of a later one whose row could not be written is not."""
    differs = row_unlike_file(prev, attrs)
    if differs:
        log.warning("%s: results.csv's row is not that of the score in %s (%s): a run stopped before writing its "
                    "row; scoring again", slide, score_file, differs)
    return not differs


def one_scan_under_two_ids(out: Path, ids: Collection[str]) -> list[list[tuple[str, str]]]:
    """Each scan of this run (``ids``) that ``results.csv`` holds under several slide ids (by its score
    files' content fingerprint), as ``(slide id, its path)`` pairs: a slide file renamed since it was
    scored (the old row's file is gone) or a copy under another name. Either counts one slide twice in
    the table a lab counts and averages."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import SlideScoresFile
    from weakstil.files.paths import slide_file
    from weakstil.fingerprint import recorded

    by_scan: dict[str, list[str]] = {}
    rows = read_previous(out / "results.csv")
    for sid, row in rows.items():
        if str(row.get("status", "")) == "error" or not slide_file(out, sid).is_file():
            continue
        try:
            scan = recorded(SlideScoresFile.read_header(slide_file(out, sid))[0])
        except (WeakSTILError, OSError, ValueError, KeyError):  # being written by another run, damaged
            continue
        if scan is not None:
            by_scan.setdefault(scan, []).append(sid)
    return [[(sid, str(rows[sid].get("path", ""))) for sid in same] for same in by_scan.values()
            if len(same) > 1 and any(sid in ids for sid in same)]
