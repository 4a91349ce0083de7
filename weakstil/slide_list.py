"""A lab's slide list for ``weakstil score --slides LIST``: a cohort CSV (its ``path`` column, relative
to the CSV's folder, as ``train`` reads it; ``stil`` not needed) or a text file with one slide path a
line (relative to the list's folder, else to the working folder; blank and ``#`` lines skipped; the
quotes of Windows' "Copy as path" and a CR line end taken off). Paths with spaces or non-ASCII
letters are taken whole, which ``$(cat LIST)`` on a shell command line does not do."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from weakstil.cohort_csv import csv_separator, record_lines, refuse_separator_line
from weakstil.errors import UsageError, WeakSTILError

log = logging.getLogger(__name__)


class ListedSlides(list):
    """The slide paths a list names (strings, globs kept for :func:`weakstil.cli.options.expand_slides`),
    with ``ids``: a cohort CSV's own ``slide_id`` of each path (by absolute path), which names the
    slide's outputs and results.csv row instead of its file's name (hunt 32d); and ``mpps``: a CSV's
    ``mpp`` column, the scan resolution of the slides whose files state none or a wrong one."""

    def __init__(self, paths=(), ids: dict[str, str] | None = None, mpps: dict[str, float] | None = None,
                 renamed: int = 0):
        super().__init__(paths)
        self.ids = dict(ids or {})
        self.mpps = dict(mpps or {})
        self.renamed = renamed  # slides whose id is not their file's name (the command says whether it uses it)


class SlideNaming:
    """What a slide list says of each slide file beyond its path: its id (called: ``naming(path)``; the
    list's ``slide_id``, else the file's name) and its µm/px (:meth:`mpp_of`)."""

    def __init__(self, ids: dict[str, str] | None = None, mpps: dict[str, float] | None = None):
        self.ids, self.mpps = dict(ids or {}), dict(mpps or {})

    def __call__(self, path) -> str:
        import os

        return self.ids.get(os.path.abspath(path)) or _file_id(path)

    def mpp_of(self, path, default: float | None) -> float | None:
        """The list's ``mpp`` of ``path``, else ``default`` (``--slide-mpp``, else None: the file's own).
        ``--slide-mpp`` states one resolution for every slide given; a list's column states one slide's,
        so a batch holding one scan without a resolution leaves the others' own (hunt 32d: ``score
        'slides/*' --slide-mpp 0.25`` for one such slide read a 0.5 µm/px slide at half its size)."""
        import os

        return self.mpps.get(os.path.abspath(path), default)


def read_slide_list(path: Path) -> ListedSlides:
    """The slide paths (as strings, globs kept for :func:`weakstil.cli.options.expand_slides`) that ``path`` lists."""
    path = Path(path)
    if not path.is_file():
        error = WeakSTILError if not path.exists() else UsageError  # a missing input, as a missing slide (exit 1)
        raise error("--slides: the slide list is not there" if not path.exists() else
                    "--slides: is a folder, not a slide list", path=path,
                         fix="pass a CSV with a 'path' column or a text file with one slide path a line (a folder's "
                             "slides: pass them as a quoted glob, 'DIR/*.svs')")
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # A spreadsheet's save names itself, and a Windows 'CSV (Comma delimited)' its line: they were all
        # "not UTF-8 text (a slide itself, or a spreadsheet file?)", as if a slide had been given
        from weakstil.cohort_csv import not_utf8_line, spreadsheet_kind

        what = spreadsheet_kind(data[:8])
        if what is None and data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            raise UsageError("--slides: is a TIFF image (a slide itself), not a slide list", path=path,
                             fix="pass slides as arguments (weakstil score SLIDE ...); --slides takes a file that "
                                 "lists them") from None
        if what is None:
            try:
                data.decode("utf-8")  # (a BOM is UTF-8 too: the offset is the file's)
            except UnicodeDecodeError as exc:
                where = not_utf8_line(data, exc.start)
        raise UsageError(f"--slides: the slide list is {what}" if what else f"--slides: the slide list's {where}",
                         path=path, fix="save the list as UTF-8 text or CSV (from a spreadsheet: 'CSV UTF-8 (Comma "
                                        "delimited)'; one slide path a line)") from None
    except OSError as exc:
        raise UsageError(f"--slides: cannot read the slide list ({exc.strerror})", path=path,
                         fix="check its permissions") from None
    if "\0" in text:  # no path holds a NUL byte: it was "unexpected ValueError: embedded null byte" (hunt 37n)
        line = text[:text.index("\0")].count("\n") + 1
        raise UsageError(f"--slides: the slide list's line {line} holds a NUL byte (a damaged or binary file)", path=path,
                         fix="save the list as UTF-8 text or CSV (one slide path a line), or copy it again")
    # Excel's 'sep=;' line: it was read as a slide path ('sep=;: file not found', and the header 'path' another)
    refuse_separator_line(path, header="path (or slide_id,path,mpp), or a text list's first slide,", what="--slides",
                          error=UsageError)
    lines = text.splitlines()
    header = next((ln for ln in lines if ln.strip()), "")
    # a CSV's header names a path column (a spreadsheet's ';' or tab-separated save: the cohort reader says how to mend it)
    columns = {c.strip().lower() for sep in ",;\t" if sep in header for c in next(csv.reader([header], delimiter=sep))}
    other = next((sep for sep in ";\t" if sep in header and "," not in header), None)
    # a European spreadsheet's 'CSV' (';', decimal commas) is read as the cohort reader reads it (refused until
    # hunt 39e, which train read); its 'Text (Tab delimited)' is not: it said "names no slide. Fix: write one slide
    # path a line" (path<TAB>mpp), or asked for a stil column (slide_id<TAB>path)
    if other and "path" in columns and csv_separator(path) != other:
        raise UsageError(f"--slides: the slide list is separated by {other!r}, not commas (its header: "
                         f"{header.strip()[:60]})", path=path,
                         fix="save it as a comma-separated CSV (from a spreadsheet: 'CSV UTF-8 (Comma delimited)') "
                             "with a 'path' column (and slide_id, mpp if wanted; decimals with a point)")
    if header.strip().strip('"').lower() == "path":  # a CSV of one column: its header is no slide
        listed = _from_text(path, lines[lines.index(header) + 1:], lines.index(header) + 2)
    else:
        listed = (_from_csv(path) if "slide_id" in columns else _path_column(path, lines, other or ",")) \
            if "path" in columns else _from_text(path, lines, 1)
    _refuse_all_missing(path, listed, header if "," in header and "path" not in columns else "")
    log.info("%s: %d slide(s) listed", path, len(listed))
    if getattr(listed, "mpps", None):
        log.info("%s: %d slide(s) at the scan resolution of the list's mpp column", path, len(listed.mpps))
    return listed if isinstance(listed, ListedSlides) else ListedSlides(listed)


def _refuse_all_missing(path: Path, listed: list[str], csv_header: str = "") -> None:
    """A list none of whose files is there (copied away from its slides, paths from another machine): one
    line, not an error row per slide. ``csv_header``: the header of a CSV without a ``path`` column, whose
    lines were taken as paths (another generator's 'image,case,til_pct': "none of the 15 slides it lists is
    there (first: image,case,til_pct)", with a fix about relative paths, until helper h37j)."""
    import glob

    if len(listed) < 2 or any(Path(p).exists() or glob.has_magic(p) for p in listed):
        return
    if csv_header:
        from weakstil.cohort_csv import _column_renames

        rows = list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))
        columns = [c.strip() for c in next(csv.reader([csv_header]))]
        renames = _column_renames(["path", "slide_id"], columns,
                                  {c: [r.get(c) or "" for r in rows] for c in columns})
        raise WeakSTILError(f"--slides: is a CSV without a 'path' column (its header: {csv_header.strip()[:80]})",
                            path=path, fix=(f"rename {renames} in the header" if renames else
                                            "name the column of slide files 'path' (and their ids 'slide_id')")
                            + ", or write one slide path a line")
    raise WeakSTILError(f"--slides: none of the {len(listed)} slides it lists is there (first: {listed[0]})", path=path,
                     fix="relative paths are read from the list's folder: keep the list beside the slides' folders, "
                         "or write absolute paths")


def _from_text(path: Path, lines: list[str], first_line: int | None = None) -> list[str]:
    """The paths ``lines`` name; with ``first_line`` (the file's line number of ``lines[0]``: a text list) a
    line naming a path an earlier line names is dropped, said in one warning naming the lines."""
    import os

    names = [(i, name) for i, name in enumerate(map(_listed_name, lines)) if name]
    if not names:
        raise UsageError("--slides: the slide list names no slide", path=path,
                         fix="write one slide path a line")
    out, first, repeated = [], {}, []
    for i, name in names:
        listed = Path(name).expanduser()
        if listed.is_absolute():
            found = str(on_disk(listed))
        else:
            beside, here = on_disk(path.parent / listed), on_disk(listed)
            # the list's folder first; else a path written from the working folder, where it is
            found = str(beside if beside.exists() or not here.exists() else here)
        if first_line is not None:  # (another spelling of one file, a link: expand_slides keeps it once, by name)
            if (at := first.setdefault(os.path.abspath(found), first_line + i)) != first_line + i:
                repeated.append((first_line + i, at))
                continue
        out.append(found)
    _say_repeated(path, repeated)
    return out


def _say_repeated(path: Path, repeated: list[tuple[int, int]]) -> None:
    """One warning for the lines of a slide list dropped as repeats of an earlier line (line, its first)."""
    if repeated:  # (silent for a text list; a CSV's refused the whole batch, helper h42f)
        said = "; ".join(f"line {r} repeats line {f}" for r, f in repeated[:5])
        log.warning("%s: %s%s: dropped (each slide is listed once)", path, said,
                    f"; {len(repeated) - 5} more" if len(repeated) > 5 else "")


def _listed_name(line: str) -> str | None:
    """The slide path a list's line names (quotes taken off), None for a blank or ``#`` line."""
    name = line.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1]
    return name if name and not name.startswith("#") else None


def on_disk(p: Path) -> Path:
    """``p``, or the file it names as a list written on Windows does (``scans\\S1.svs``: the file
    ``scans/S1.svs``) or with its accented letters in another Unicode form (a name typed composed, the
    file's decomposed, as macOS writes it), as ``train`` reads a cohort CSV; until hunt 32d each such
    slide of a text list was 'file not found' (a whole list: "none of the N slides it lists is there")."""
    from pathlib import PureWindowsPath

    from weakstil.cohort_csv import unicode_twin

    if p.exists():
        return p
    if "\\" in str(p) and not PureWindowsPath(str(p)).drive:
        posix = Path(PureWindowsPath(str(p)).as_posix())
        if posix.exists() or unicode_twin(posix) is not None:
            p = posix
    return unicode_twin(p) or p


def _path_column(path: Path, lines: list[str], sep: str = ",") -> ListedSlides:
    """The ``path`` column of a comma- (or ``sep``-) separated list without ``slide_id`` (ids are the files' names)."""
    import os

    # blank lines above the header (as read_slide_list finds it): DictReader took the first as the header, and
    # the list "names no slide" (helper h42g)
    above = next((n for n, ln in enumerate(lines) if ln.strip()), 0)
    reader = csv.DictReader(lines[above:], skipinitialspace=True, delimiter=sep)
    _ = reader.fieldnames  # (reads the header: line_num is then its last line)
    rows, line_of, end = [], [], reader.line_num
    for row in reader:
        start, end = end + 1, reader.line_num  # the line it starts on (a quoted cell may span lines; it named its
        while start < end and not lines[above + start - 1]:  # last), after the blank lines DictReader skips
            start += 1
        rows.append(row)
        line_of.append(above + start)  # the file's line, for an error naming it, as the cohort reader's
    key = next((k for k in (rows[0] if rows else {}) if k and k.strip().lower() == "path"), "path")
    paths = _from_text(path, [(row.get(key) or "").strip() for row in rows])
    kept = [i for i, row in enumerate(rows) if _listed_name(row.get(key) or "")]  # the rows _from_text kept
    # a path listed twice: the same row again is dropped (one warning); another mpp (or other cell) is refused,
    # naming both lines (the last row's mpp was taken without a word, helper h42f)
    first: dict[str, int] = {}
    unique, repeated = [], []
    for j, i in enumerate(kept):
        at = first.setdefault(os.path.abspath(paths[j]), j)
        if at == j:
            unique.append(j)
            continue
        # (the path cell aside: 'a.svs' and './a.svs', or its absolute path, are that one file, as a text list's)
        mine, theirs = ({str(k).strip(): _text(v) for k, v in rows[n].items() if k and k != key} for n in (i, kept[at]))
        if mine != theirs:
            cell = next(k for k in dict.fromkeys([*theirs, *mine]) if theirs.get(k) != mine.get(k))
            raise UsageError(f"--slides: lines {line_of[kept[at]]} and {line_of[i]} both list {paths[j]}, with "
                             f"another {cell} ({theirs.get(cell)!r}, {mine.get(cell)!r})", path=path,
                             fix="keep one row per slide file, the one with the right values")
        repeated.append((line_of[i], line_of[kept[at]]))
    _say_repeated(path, repeated)
    paths, kept = [paths[j] for j in unique], [kept[j] for j in unique]
    mpps = _mpp_column(path, [rows[i] for i in kept], [line_of[i] for i in kept])
    return ListedSlides(paths, mpps={os.path.abspath(p): m for p, m in zip(paths, mpps) if m is not None})


#: The column of a slide list that gives a slide's scan resolution (µm/px), as ``--slide-mpp`` does for all.
MPP_COLUMN = "mpp"


def _text(value) -> str:
    """A CSV field as text: a row shorter than its header gives None (csv) or NaN (pandas) for the
    missing fields, which are empty, not a written "None" or "nan"."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()


def _mpp_column(path: Path, rows, lines=None, what: str = "--slides") -> list[float | None]:
    """Each row's ``mpp`` (None where the column or the cell is empty); a cell that is not a positive
    number in the plausible range (``nan``, ``None``, ``inf``, ``0`` too) is refused in one line naming the
    list, its line (``lines``: the rows' line numbers in the file) and slide, after ``what`` (the option that
    names the list)."""
    from weakstil.settings import MPP_RANGE

    out: list[float | None] = []
    bad: list[tuple[str, str]] = []  #: (where, cell) of every bad cell: the first alone was named (hunt 44c)
    for i, row in enumerate(rows):
        cell = next((_text(v) for k, v in row.items() if k and k.strip().lower() == MPP_COLUMN), "")
        if not cell:  # only an empty cell means "the file's own" (docs/scoring.md): a LIMS export's NaN or None
            out.append(None)  # for an unknown resolution was read as empty without a word (hunt 36l)
            continue
        try:
            value = float(cell.replace(",", "."))  # a European spreadsheet's decimal comma
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and MPP_RANGE[0] <= value <= MPP_RANGE[1]):
            slide = next((str(v).strip() for k, v in row.items() if k and k.strip().lower() == "path"), "")
            line = int(lines[i]) if lines is not None else None
            bad.append((f"line {line}" + (f" ({slide})" if slide else "") if line is not None else slide or f"row {i + 1}",
                        cell))
        out.append(value)
    if bad:
        fix = (f"write the µm/px of that slide's scan ({MPP_RANGE[0]}–{MPP_RANGE[1]}: about 0.25 at 40x, 0.5 at 20x), "
               "or, where it is unknown, leave the cell empty to use the file's own metadata")
        if len(bad) == 1:
            said = f"the mpp of {bad[0][0]} is {bad[0][1]!r}, not a scan resolution in µm/px"
        else:
            said = (f"the mpp of {len(bad)} lines is not a scan resolution in µm/px: "
                    + "; ".join(f"{where} {cell!r}" for where, cell in bad[:5]) + ("; ..." if len(bad) > 5 else ""))
            fix = fix.replace("that slide's scan", "each slide's scan")
        raise UsageError(f"{what + ': ' if what else ''}{said}", path=path, fix=fix)
    return out


def _from_csv(path: Path) -> ListedSlides:
    """A cohort CSV's paths, each under the CSV's own ``slide_id`` (a lab's ids: the outputs and
    results.csv rows are named by them; score named them after the file, hunt 32d). Duplicate ids are
    refused by the cohort reader, one line naming both rows."""
    import os

    from weakstil.cohort import read_cohort

    table = read_cohort(path, check_files=False, require_labels=False, drop_repeated_rows=True).table
    paths = [str(on_disk(Path(p))) for p in table["path"]]
    renamed = sum(str(sid) != _file_id(p) for sid, p in zip(table["slide_id"], paths))
    seen: dict[str, str] = {}
    for sid, p in zip(map(str, table["slide_id"]), paths):
        first = seen.setdefault(os.path.realpath(p), sid)
        if first != sid:  # one file, two ids: it was scored once, under the last id, and the first vanished
            raise WeakSTILError(f"--slides: slide ids {first} and {sid} name the same file ({p})", path=path,
                                fix="keep one row per slide file")
    mpps = _mpp_column(path, _records_at(path, table["row"]), list(table["row"]))  # (the reader keeps its own columns)
    return ListedSlides(paths, {os.path.abspath(p): sid for sid, p in zip(map(str, table["slide_id"]), paths)},
                        {os.path.abspath(p): m for p, m in zip(paths, mpps) if m is not None}, renamed)


def cohort_mpps(path: Path, table) -> dict[str, float]:
    """A cohort CSV's ``mpp`` column (absolute slide path -> µm/px) for the rows of ``table`` (the cohort
    reader's: ``path``, ``row``), as ``--slides`` reads it: the Snakemake workflow gives each such slide its
    own ``--slide-mpp`` (it took ``slide_mpp`` alone, for all slides stating none; hunt 33g). A bad cell is
    one line naming the CSV, its line and slide."""
    import os

    if "row" not in table or not len(table):
        return {}
    mpps = _mpp_column(Path(path), _records_at(Path(path), table["row"]), list(table["row"]), what="")
    return {os.path.abspath(str(p)): m for p, m in zip(table["path"], mpps) if m is not None}


def stated_mpp(path) -> float | None:
    """The µm/px ``path`` is read at without ``--slide-mpp`` (its metadata's), None where it states none
    usable or does not open (what is wrong with it is said where it is read)."""
    from weakstil.slide import Slide

    try:
        with Slide.open(path) as slide:
            return float(slide.mpp)
    except (WeakSTILError, OSError):
        return None


def overriding_mpps(mpps: dict[str, float], default: float | None = None) -> dict[str, float]:
    """The listed µm/px (path -> µm/px) that change how their slides are read: those other than ``default``
    (``--slide-mpp``), else than what their files state, as the caches compare them (6 decimals). A column
    that repeats a file's own resolution reads it as before and redoes nothing (the workflow's tile and
    embed jobs, a pretrain run's resume)."""
    def same(listed: float, before: float | None) -> bool:
        return before is not None and round(float(listed), 6) == round(float(before), 6)

    return {p: m for p, m in mpps.items() if not same(m, default if default is not None else stated_mpp(p))}


def _records_at(path: Path, rows) -> list[dict]:
    """The CSV's records (every column, as text) at the file's line numbers ``rows`` (the cohort reader's)."""
    import warnings

    import pandas as pd

    with warnings.catch_warnings():  # a spreadsheet's trailing delimiter: the empty field after it dropped
        warnings.simplefilter("ignore", pd.errors.ParserWarning)
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True,
                          index_col=False, sep=(sep := csv_separator(path)))  # (a ';' CSV's mpp column was not read)
    raw.columns = [str(c).strip() for c in raw.columns]
    # by the line each record starts on, as the cohort reader numbers its rows (record_lines): "line - 2" gave
    # the record after a blank line the next slide's mpp once the rows were numbered by line (helper h42f)
    at = dict(zip(record_lines(path, sep, len(raw)), raw.to_dict("records")))
    return [at.get(int(r), {}) for r in rows]


def _file_id(p: str) -> str:
    from weakstil.slide import slide_id_from_path

    return slide_id_from_path(str(p))
