"""A lab's slide list for ``weakstil score --slides LIST``: a cohort CSV (its ``path`` column, relative
to the CSV's folder, as ``train`` reads it; ``stil`` not needed) or a text file with one slide path a
line (relative to the list's folder, else to the working folder; blank and ``#`` lines skipped; the
quotes of Windows' "Copy as path" and a CR line end taken off). Paths with spaces or non-ASCII
letters are taken whole, which ``$(cat LIST)`` on a shell command line does not do."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from weakstil.errors import UsageError, WeakSTILError

log = logging.getLogger(__name__)


class ListedSlides(list):
    """The slide paths a list names (strings, globs kept for :func:`weakstil.cli.options.expand_slides`),
    with ``ids``: a cohort CSV's own ``slide_id`` of each path (by absolute path), which names the
    slide's outputs and results.csv row instead of its file's name (hunt 32d)."""

    def __init__(self, paths=(), ids: dict[str, str] | None = None):
        super().__init__(paths)
        self.ids = dict(ids or {})


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
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError("--slides: the slide list is not UTF-8 text (a slide itself, or a spreadsheet file?)",
                         path=path, fix="save the list as UTF-8 text or CSV (one slide path a line)") from None
    except OSError as exc:
        raise UsageError(f"--slides: cannot read the slide list ({exc.strerror})", path=path,
                         fix="check its permissions") from None
    lines = text.splitlines()
    header = next((ln for ln in lines if ln.strip()), "")
    # a CSV's header names a path column (a spreadsheet's ';' or tab-separated save: the cohort reader says how to mend it)
    columns = {c.strip().lower() for sep in ",;\t" if sep in header for c in next(csv.reader([header], delimiter=sep))}
    if header.strip().strip('"').lower() == "path":  # a CSV of one column: its header is no slide
        listed = _from_text(path, lines[lines.index(header) + 1:])
    else:
        listed = (_from_csv(path) if "slide_id" in columns else _path_column(path, lines)) if "path" in columns \
            else _from_text(path, lines)
    _refuse_all_missing(path, listed)
    log.info("%s: %d slide(s) listed", path, len(listed))
    return listed if isinstance(listed, ListedSlides) else ListedSlides(listed)


def _refuse_all_missing(path: Path, listed: list[str]) -> None:
    """A list none of whose files is there (copied away from its slides, paths from another machine): one
    line, not an error row per slide."""
    import glob

    if len(listed) < 2 or any(Path(p).exists() or glob.has_magic(p) for p in listed):
        return
    raise WeakSTILError(f"--slides: none of the {len(listed)} slides it lists is there (first: {listed[0]})", path=path,
                     fix="relative paths are read from the list's folder: keep the list beside the slides' folders, "
                         "or write absolute paths")


def _from_text(path: Path, lines: list[str]) -> list[str]:
    names = []
    for line in lines:
        name = line.strip()
        if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
            name = name[1:-1]
        if name and not name.startswith("#"):
            names.append(name)
    if not names:
        raise UsageError("--slides: the slide list names no slide", path=path,
                         fix="write one slide path a line")
    out = []
    for name in names:
        listed = Path(name).expanduser()
        if listed.is_absolute():
            out.append(str(on_disk(listed)))
            continue
        beside, here = on_disk(path.parent / listed), on_disk(listed)
        # the list's folder first; else a path written from the working folder, where it is
        out.append(str(beside if beside.exists() or not here.exists() else here))
    return out


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


def _path_column(path: Path, lines: list[str]) -> list[str]:
    """The ``path`` column of a comma-separated list without ``slide_id`` (ids are the files' names)."""
    rows = csv.DictReader(lines, skipinitialspace=True)
    key = next((k for k in rows.fieldnames or [] if k.strip().lower() == "path"), "path")
    return _from_text(path, [(row.get(key) or "").strip() for row in rows])


def _from_csv(path: Path) -> ListedSlides:
    """A cohort CSV's paths, each under the CSV's own ``slide_id`` (a lab's ids: the outputs and
    results.csv rows are named by them; score named them after the file, hunt 32d). Duplicate ids are
    refused by the cohort reader, one line naming both rows."""
    import os

    from weakstil.cohort import read_cohort

    table = read_cohort(path, check_files=False, require_labels=False).table
    paths = [str(on_disk(Path(p))) for p in table["path"]]
    renamed = sum(str(sid) != _file_id(p) for sid, p in zip(table["slide_id"], paths))
    if renamed:
        log.info("%s: %d slide(s) named by the list's slide_id column, not their file's name", path, renamed)
    seen: dict[str, str] = {}
    for sid, p in zip(map(str, table["slide_id"]), paths):
        first = seen.setdefault(os.path.realpath(p), sid)
        if first != sid:  # one file, two ids: it was scored once, under the last id, and the first vanished
            raise WeakSTILError(f"--slides: slide ids {first} and {sid} name the same file ({p})", path=path,
                                fix="keep one row per slide file")
    return ListedSlides(paths, {os.path.abspath(p): sid for sid, p in zip(map(str, table["slide_id"]), paths)})


def _file_id(p: str) -> str:
    from weakstil.slide import slide_id_from_path

    return slide_id_from_path(str(p))
