"""Cohort tables: which slides, where they are, and their slide-level sTIL% labels.

A cohort CSV has the columns ``slide_id,path,stil`` and optionally a group column
(patient or centre) used to keep related slides on one side of a cross-validation split.
``path`` is relative to the CSV's own folder (absolute paths are accepted). ``stil`` is
the stromal TIL percentage, 0-100.

Validation collects every problem before failing, so one run tells the user about all
bad rows at once. Rows are numbered as lines of the file (the header is row 1).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np
import pandas as pd

from weakstil import cohort_labels
from weakstil.csv_cells import restore_id
from weakstil.cohort_csv import (DATE_ID, DECIMAL_FIX, REQUIRED_COLUMNS, SAVE_AS_CSV, CohortError, csv_separator,
                                 decimal_comma_labels, warn_date_ids, _check_first_line_is_header,
                                 _column_renames, _csv_rows, _refuse_other_separator, _trailing_delimiter, case_twin,
                                 in_subfolder, overlong_rows, record_lines, refuse_not_text, refuse_paths_from_cwd,
                                 refuse_separator_line,
                                 spreadsheet_number, unicode_twin, warn_lookalike_groups, warn_number_ids)
from weakstil.cohort_labels import (label_hint, refuse_class_labels, refuse_mixed_notation, refuse_split_decimal,
                                   warn_fraction_labels)
from weakstil.cohort_groups import (  # noqa: F401 (group_kfold, group_holdout, _group_like...: imported from here too)
    _group_like, group_column_lookalikes, group_holdout, group_kfold, group_setting, resolve_group_column)
from weakstil.errors import UsageError, name_problem
from weakstil.files.paths import feature_path
from weakstil.slide import slide_id_problem

log = logging.getLogger(__name__)

@dataclass
class Cohort:
    """A validated cohort.

    ``table`` has one row per slide with columns ``slide_id`` (str), ``path`` (absolute
    path as str), ``stil`` (float, 0-100, NaN only when labels were not required),
    ``group`` (str; the slide id itself when the cohort has no group column), ``row``
    (line number in the CSV) and ``features`` (the slide's feature file, when read with
    ``features_dir``).
    """

    csv_path: Path
    table: pd.DataFrame
    group_column: str | None

    def __len__(self) -> int:
        return len(self.table)

    @property
    def slide_ids(self) -> list[str]:
        return self.table["slide_id"].tolist()

    @property
    def labels(self) -> np.ndarray:
        return self.table["stil"].to_numpy(dtype=np.float64)

    @property
    def groups(self) -> np.ndarray:
        return self.table["group"].to_numpy(dtype=object)

    def feature_paths(self, features_dir: str | Path) -> list[Path]:
        """Each slide's feature file (as found when the cohort was read with ``features_dir``)."""
        if "features" in self.table and self.table["features"].notna().all():
            return [Path(p) for p in self.table["features"]]
        return [feature_path(features_dir, s) for s in self.slide_ids]


#: Labels that say 'no label yet' ('NA' of R's write.csv, Excel's '#N/A'): fine where no label is needed.
NO_LABEL = {"", "na", "n/a", "#n/a", "nan", "none", "null", "-"}
#: Group values that are a missing value written out (R's 'NA', Excel's '#N/A'), not a patient or centre.
MISSING_GROUP = {"na", "n/a", "#n/a", "nan", "null"}


def _parse_stil(raw: str) -> tuple[float | None, str | None]:
    """The label as a float, or the reason it is unusable."""
    text = raw.strip()
    if text == "":
        return None, "stil is empty"
    try:
        if "_" in text:  # Python reads "3_0" as 30
            raise ValueError(text)
        value = float(text[:-1] if text.endswith("%") else text)  # one % sign: "30%%" is a typo, not 30
    except ValueError:
        return None, f"stil {raw!r} is not a number{label_hint(text)}"
    if math.isnan(value):
        return None, "stil is NaN"
    if not 0.0 <= value <= 100.0:
        return None, f"stil {text} is outside 0-100"
    return value, None


def _check_features(path: Path, shown: str, slide: Path | None = None) -> tuple[str | None, str | None]:
    """Why ``path`` is not a usable feature cache (of ``slide``, when given and readable: its
    content fingerprint, :mod:`weakstil.fingerprint`), or ``None``; and the slide fingerprint the
    cache records (``None``: none)."""
    from weakstil.files import FeaturesFile, SlideFileError
    from weakstil.files.h5 import H5ReadError, IncompleteFileError
    from weakstil.fingerprint import recorded, slide_fingerprint

    if not path.exists():
        return f"no features {shown}", None
    try:
        attrs, _ = FeaturesFile.read_header(path)
    except H5ReadError:  # another user's cache is no damaged one: it said 'embed these slides again' (hunt 35c)
        return f"features {shown} are unreadable" + ("" if os.access(path, os.R_OK) else " by this user (permission denied)"), None
    except SlideFileError as exc:
        if isinstance(exc, IncompleteFileError):
            return f"features {shown} are incomplete (interrupted run)", None
        return f"features {shown}: {exc.message}", None
    mine = recorded(attrs)
    if mine is not None and slide is not None and slide.is_file():
        now = slide_fingerprint(slide)
        if now is None:
            return f"{slide} cannot be opened as a slide (features {shown} were made from one)", mine
        if now != mine:
            return f"features {shown} were made from another slide file than {slide} (content fingerprint differs; " \
                   "embed it again)", mine
    return None, mine


def _same_slide(first: dict[str, tuple[str, int]], key: str, sid: str, row: int, what: str) -> str | None:
    """Why row ``row`` repeats a slide seen on an earlier row under ``key`` (None: first time)."""
    if key in first:
        other, other_row = first[key]
        if other != sid:
            return f"{what} row {other_row} ({other}): one slide in two rows would be counted twice (in training, one " \
                   "fold trains on it and another tests it)"
        return None
    first[key] = (sid, row)
    return None


#: Columns of a 'weakstil score' results.csv that a cohort CSV of labels does not have.
SCORE_RESULT_COLUMNS = ("status", "model_id", "encoder_id", "n_tumorbed_tiles", "tumorbed_source")


def _refuse_predictions(columns: list[str], csv_path: Path) -> None:
    """A 'weakstil score' results.csv as the labels: its ``stil`` is the model's own prediction, so
    a model judged (or trained) on it looks perfect (R² 1, MAE 0) without a word."""
    marks = [c for c in columns if c in SCORE_RESULT_COLUMNS or c.startswith(("stil_lower_", "stil_upper_"))]
    if "status" in marks and len(marks) >= 3:
        raise CohortError(f"is the results.csv of 'weakstil score' (columns {', '.join(marks[:4])}): its stil column "
                          "holds the model's predictions, not labels", path=csv_path,
                          fix="pass the cohort CSV with the pathologist's sTIL% (slide_id,path,stil); a results.csv "
                              "is judged with 'weakstil evaluate COHORT --oof results.csv'")


def _cells(rec: dict, base: Path) -> dict[str, str]:
    """A row's cells as written (spaces round them aside), to tell a repeated row from a conflicting one; the
    path cell as the file it names (relative to ``base``, the CSV's folder): 'a.svs', './a.svs' and its absolute
    path are one file, a repeat (they were a "duplicate slide_id" refusing the batch, helper h43d)."""
    cells = {str(k): str(v).strip() for k, v in rec.items()}
    if cells.get("path"):
        cells["path"] = os.path.realpath(os.path.join(base, cells["path"]))
    return cells


def read_cohort(csv_path: str | Path, *, features_dir: str | Path | None = None, group_column: str | None = None,
                require_labels: bool = True, check_files: bool = True, truth: bool = False,
                refuse_fractions: bool = False, require_paths: bool = True, group_option: str = "--group-column",
                drop_repeated_rows: bool = False) -> Cohort:
    """Read and validate a cohort CSV; raise one :class:`CohortError` listing every bad row.

    ``features_dir`` also checks each slide has complete cached features there.
    ``group_column`` names the grouping column (``None``: ``group`` if present, ``"none"``:
    no grouping), named in errors as ``group_option`` (the workflow's ``group_column``).
    ``require_labels=False`` allows an empty ``stil`` (scoring unlabelled slides).
    ``truth``: the labels are the truth a model is trained or judged on, so a ``weakstil score``
    results.csv (its ``stil`` is a prediction) is refused. ``refuse_fractions``: labels that are all at most
    1 are refused (train), not warned about and then refused (the same words twice, warning and error).
    ``drop_repeated_rows`` (a slide list, ``--slides``): a row the same in every cell as an earlier row of its
    slide is dropped with one warning naming its line; a row of the same slide that differs stays a bad row.
    ``require_paths=False`` (with ``check_files=False``: labels only, as ``evaluate --oof`` reads them) allows
    no ``path`` column, or an empty path (the table's ``path`` is then ``""``).
    """
    csv_path = Path(csv_path)
    if not csv_path.exists():
        raise CohortError("cohort CSV not found", path=csv_path, fix="check the path")
    if csv_path.is_dir():
        raise CohortError("is a directory, not a cohort CSV", path=csv_path, fix="pass the CSV file")
    refuse_not_text(csv_path)
    refuse_separator_line(csv_path)
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True,
                          sep=(sep := csv_separator(csv_path)))
    except pd.errors.EmptyDataError:
        raise CohortError("cohort CSV is empty", path=csv_path,
                          fix="write a header 'slide_id,path,stil' and one row per slide") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        _check_first_line_is_header(csv_path)
        header = _csv_rows(csv_path)[:1]
        if header and len(header[0]) == 1:  # 'slide_id;path;stil': a decimal comma in some rows split them
            _refuse_other_separator(header[0], csv_path)
        first = str(exc).splitlines()[0]
        fix = (f"a row has more fields than the header: {DECIMAL_FIX}" if "fields" in first
               else f"save it as a comma-separated UTF-8 text file ({SAVE_AS_CSV.removeprefix('save it ')})"
               if isinstance(exc, UnicodeDecodeError) else "save it as a comma-separated UTF-8 text file")
        raise CohortError(f"cannot parse the cohort CSV ({first})", path=csv_path, fix=fix) from None
    raw.columns = [str(c).strip() for c in raw.columns]
    columns = list(raw.columns)
    twice = [c for c in columns if re.fullmatch(r".+\.\d+", c) and c.rsplit(".", 1)[0] in REQUIRED_COLUMNS
             and c.rsplit(".", 1)[0] in columns]  # pandas renames a repeated header 'stil' to 'stil.1'
    if twice:
        raise CohortError(f"the header has the column {twice[0].rsplit('.', 1)[0]!r} more than once", path=csv_path,
                          fix="keep one column of each name (slide_id, path, stil)")
    group_col = resolve_group_column(columns, group_column, csv_path, group_option)
    # without labels required (a slide list for the tumour-bed detector, a report), 'stil' may be absent
    # a slide list (score --slides, tumorbed --cohort) needs no stil: its fix asked for one until hunt 41d
    needed = [c for c in REQUIRED_COLUMNS if (require_labels or c != "stil") and (require_paths or c != "path")]
    missing = [c for c in needed if c not in columns]
    if group_col is not None and group_col not in columns:
        missing.append(f"{group_col} (the {group_option})")
    if missing and len(columns) == 1:
        _refuse_other_separator(columns, csv_path)
    if not isinstance(raw.index, pd.RangeIndex):  # every row has one field more than the header (pandas made it the index)
        _check_first_line_is_header(csv_path)
        if not _trailing_delimiter(csv_path):
            raise CohortError(f"the rows have more fields than the header{overlong_rows(csv_path)}", path=csv_path,
                              fix=DECIMAL_FIX)
        import warnings

        with warnings.catch_warnings():  # the field dropped is the empty one after the trailing delimiter
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True,
                              index_col=False, sep=sep)
        raw.columns = [str(c).strip() for c in raw.columns]
    if missing:
        _check_first_line_is_header(csv_path)
        renames = _column_renames(missing, columns, {c: raw[c].tolist() for c in raw.columns})
        alike = [c for c in columns if group_col is not None and group_col not in columns
                 and " ".join(c.casefold().split()) == " ".join(group_col.casefold().split())]
        if alike and len(missing) == 1:  # --group-column centre for the column 'Centre': the names are case-sensitive
            raise CohortError(f"has no column {group_col!r} (the {group_option}) but {alike[0]!r}", path=csv_path,
                              fix=f"{group_setting(group_option, repr(alike[0]))} (column names are case-sensitive)")
        raise CohortError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} (found: {', '.join(columns)})",
            path=csv_path,
            fix=(f"rename {renames} in the header; " if renames else "")
            + f"the header must have {','.join(needed)} (plus the group column if one is named)",
        )
    if len(raw) == 0:
        raise CohortError("cohort CSV has no rows", path=csv_path, fix="add one row per slide")
    raw.attrs["lines"] = lines = record_lines(csv_path, sep, len(raw))  # each row's line in the file
    raw = decimal_comma_labels(csv_path, raw, NO_LABEL) if sep == ";" else raw
    raw.attrs["lines"] = lines
    refuse_split_decimal(csv_path, raw, columns)
    if truth:
        _refuse_predictions(columns, csv_path)

    if features_dir is not None and not Path(features_dir).is_dir():
        # a file there is a usage mistake (exit 2), a missing folder a missing input
        fix = "pass the --out directory of 'weakstil embed'"
        if Path(features_dir).is_file():
            raise UsageError("is a file, not the feature cache directory", path=features_dir, fix=fix)
        raise CohortError("feature cache directory not found", path=features_dir, fix=fix)
    base = csv_path.resolve().parent
    problems: list[str] = []
    first_row: dict[str, int] = {}
    first_cells: dict[str, dict[str, str]] = {}  # each slide's first row, every cell as written
    repeated: list[tuple[int, int, str]] = []  # (line, first line, id): rows dropped as exact repeats
    first_label: dict[str, str] = {}  # each slide's label as written: two readers' rows differ in it
    first_folded: dict[str, tuple[str, int]] = {}
    # one slide in two rows sits in two cross-validation folds: trained on in one, tested in the other
    first_file: dict[str, tuple[str, int]] = {}
    listings: dict[Path, dict[str, str]] = {}  # folder -> its file names, for paths typed in another case
    subfolders: dict[Path, list[Path]] = {}  # the CSV folder's subfolders, for bare file names
    from_cwd: list[tuple[int, str, str]] = []  # rows whose path is there only from the current folder
    records, feature_problems, damaged_features, newer_features, locked_features, no_group = [], 0, 0, 0, 0, 0
    no_label = 0  # rows refused only for an empty or 'NA' label: unlabelled slides in the folder's sheet
    notation: list[tuple[int, str, str, float | None]] = []  # each kept row's label as written and as read
    number_ids: list[tuple[int, str, str]] = []  # ids '1' of files '001.svs' (a spreadsheet's number)
    date_ids: list[tuple[int, str]] = []  # ids a spreadsheet made dates of (1-3 as 01/03/2026)
    for i, rec in enumerate(raw.to_dict("records")):
        row = lines[i]  # line in the file (header line 1, blank lines counted)
        if all(str(v).strip() in ("", "nan") for v in rec.values()):
            continue  # a spreadsheet's empty row (",,,"), like a blank line
        reasons: list[str] = []
        sid = restore_id(str(rec["slide_id"]).strip(), str(rec.get("path", "")).strip())  # results.csv's '=x: =x
        date_ids += [(row, sid)] if DATE_ID.fullmatch(sid) else []
        if sid == "":
            reasons.append("slide_id is empty")
        elif sid in first_row and drop_repeated_rows and first_cells[sid] == _cells(rec, base):
            repeated.append((row, first_row[sid], sid))  # (a slide list: the same row twice is that slide once,
            continue  # as a text list's repeated line is; it refused the whole batch, helper h42f)
        elif sid in first_row:
            theirs, mine = first_label.get(sid, ""), str(rec.get("stil", "")).strip()
            readers = (f" with another label ({theirs} there, {mine} here: one row per slide, e.g. the mean of the "
                       "readers' scores)" if theirs != mine and _parse_stil(theirs)[0] != _parse_stil(mine)[0] else "")
            reasons.append(f"duplicate slide_id (first on row {first_row[sid]}){readers}")
        elif sid.casefold() in first_folded:  # one output file on macOS, Windows and SMB shares
            other, other_row = first_folded[sid.casefold()]
            reasons.append(f"slide_id differs only in case from {other!r} (row {other_row}): their files would "
                           "collide on a case-insensitive file system")
        else:
            first_row[sid], first_cells[sid] = row, _cells(rec, base)
            first_label[sid] = str(rec.get("stil", "")).strip()
            first_folded[sid.casefold()] = (sid, row)
        if sid and (bad_id := slide_id_problem(sid)):  # the rule score, tile and embed apply to a file's own id
            reasons.append(bad_id)
        rel = str(rec.get("path", "")).strip()
        full, cwd_entry = None, None
        if rel == "":
            reasons += ["path is empty"] if require_paths else []
        else:
            full = Path(rel) if Path(rel).is_absolute() else base / rel
            windows = PureWindowsPath(rel) if "\\" in rel and not full.exists() else None  # a CSV made on Windows
            if windows is not None and not windows.drive and (base / windows.as_posix()).exists():
                full = base / windows.as_posix()  # slides\\S1.svs: the file slides/S1.svs
            if check_files and not full.exists() and (same := unicode_twin(full)) is not None:
                full = same  # café.svs typed composed, the file's name decomposed (macOS): the same name
            if check_files and not full.exists() and (unnamed := name_problem(str(full))) is not None:
                reasons.append(f"{unnamed.reason}; {unnamed.fix}")  # (exists() is False for such a name)
            elif check_files and not full.exists():
                twin = case_twin(full, base, listings) if windows is None else None
                under = in_subfolder(rel, base, subfolders) if windows is None and twin is None else None
                cwd = (Path(rel).resolve() if windows is None and twin is None and under is None
                       and not Path(rel).is_absolute() and Path(rel).is_file() else None)
                hint = (f" (there is {rel} from the current folder, {Path.cwd()}: paths are relative to the CSV's "
                        f"folder, {base}; write it as {os.path.relpath(cwd, base)})" if cwd is not None else
                        "" if windows is None and twin is None and under is None else
                        f" (there is {twin}: file names are case-sensitive here; write it as the file is named)"
                        if twin is not None else
                        f" (there is {under}: paths are relative to the CSV's folder)" if under is not None else
                        " (a Windows path: give it relative to the CSV's folder, e.g. slides/S1.svs)" if windows.drive
                        else f" (read as {windows.as_posix()}: not there either)")
                shell = os.path.expandvars(os.path.expanduser(rel)) if not hint and rel[:1] in "~$" else rel
                hint = hint or (f" (a shell's '~' or '$' is not expanded in a CSV; write it as {shell})"
                                if shell != rel and Path(shell).is_file() else "")
                reasons.append(f"file not found {rel}{hint}")
                cwd_entry = (row, rel, os.path.relpath(cwd, base)) if cwd is not None else None
            elif check_files and full.is_dir():
                reasons.append(f"path is a folder, not a slide file {rel}")
        if check_files and full is not None and full.is_file() and sid:
            same = _same_slide(first_file, f"file {full.resolve()}", sid, row, "the same slide file as")
            reasons += [same] if same else []
        stil_raw = str(rec.get("stil", ""))
        stil, why = _parse_stil(stil_raw)
        unlabelled = stil_raw.strip().casefold() in NO_LABEL  # '', or R's / a spreadsheet's NA
        if why and (require_labels or not unlabelled):
            reasons.append(why)
        label_why = why  # (why is the feature file's below)
        group = sid if group_col is None else str(rec[group_col]).strip()
        if group_col is not None and (group == "" or group.casefold() in MISSING_GROUP):  # R's write.csv: 'NA' for all
            no_group += 1
            reasons.append(f"{group_col} is empty" if group == "" else
                           f"{group_col} is {group!r}, a missing value (R's or a spreadsheet's), not a group")
        fp = None
        if features_dir is not None and sid and "duplicate" not in " ".join(reasons):
            fp = feature_path(features_dir, sid, full)
            why, fingerprint = _check_features(fp, str(fp), full if check_files else None)
            # (features of another slide file than this row's: their fingerprint is not this slide's)
            if fingerprint is not None and why is None and not any("same slide file" in r for r in reasons):
                same = _same_slide(first_file, f"content {fingerprint}", sid, row, "a copy of the slide file of")
                reasons += [same] if same else []
            if why:
                reasons.append(why)
                newer = "this weakstil reads up to" in why  # written by a newer weakstil: not damaged
                locked = why.endswith("(permission denied)")  # nor is another user's file
                feature_problems += len(reasons) == 1 and why.startswith("no features")
                newer_features += len(reasons) == 1 and newer
                locked_features += len(reasons) == 1 and locked
                damaged_features += len(reasons) == 1 and not why.startswith("no features") and not (newer or locked)
        if reasons:
            no_label += reasons == [label_why] and unlabelled
            if len(reasons) == 1 and cwd_entry is not None:
                from_cwd.append(cwd_entry)
            label = f"row {row} ({sid})" if sid else f"row {row}"
            problems.append(f"{label}: {', '.join(reasons)}")
            continue
        records.append({"slide_id": sid, "path": "" if full is None else str(full), "stil": np.nan if stil is None else stil,
                        "group": group, "row": row, "features": None if fp is None else str(fp)})
        notation.append((row, sid, stil_raw.strip(), stil))
        name = "" if full is None else full.name
        if name and spreadsheet_number(sid, re.sub(r"\.ome\.tiff?$|\.[^.]*$", "", name, flags=re.IGNORECASE)):
            number_ids.append((row, sid, name))
    warn_date_ids(csv_path, date_ids)  # (an id with '/' is a bad row too: said first, with its cause)
    if repeated:
        said = "; ".join(f"line {r} repeats line {f} ({sid})" for r, f, sid in repeated[:5])
        log.warning("%s: %s%s, the same in every column: dropped (each slide is listed once)", csv_path, said,
                    f"; {len(repeated) - 5} more" if len(repeated) > 5 else "")
    if problems:
        refuse_paths_from_cwd(csv_path, base, from_cwd, len(problems))
        n = len(problems)
        fix = ("embed these slides first (weakstil embed ... --out FEATURES) or pass the --features folder that "
               "holds them; take a slide embed refused (unreadable, no tissue) out of the CSV" if feature_problems == n else
               "embed these slides again (weakstil embed SLIDES --out FEATURES)" if damaged_features == n else
               "upgrade weakstil (a newer version wrote these feature files)" if newer_features == n else
               "make these feature files readable (chmod a+r FILES), or ask their owner" if locked_features == n else
               f"fill in {group_col} (patient or centre), or {group_setting(group_option, 'none')}" if no_group == n and not records else
               "give each slide its sTIL% (0-100) or remove the rows of unlabelled slides: every slide trained on or "
               "judged needs its label" if no_label == n else
               "correct or remove these rows (paths are relative to the CSV's folder; damaged or stale features: "
               "embed those slides again)" if damaged_features else
               "correct or remove these rows (paths are relative to the CSV's folder)")
        raise CohortError(f"{n} bad row{'s' if n > 1 else ''}: " + "; ".join(problems), path=csv_path, fix=fix)
    warn_number_ids(csv_path, number_ids)
    if require_labels:
        refuse_mixed_notation(csv_path, notation)
    table = pd.DataFrame.from_records(records, columns=["slide_id", "path", "stil", "group", "row", "features"])
    if require_labels:
        refuse_class_labels(csv_path, table)
    percent_signed = bool(notation) and all(raw.endswith("%") for _, _, raw, value in notation if value is not None)
    if refuse_fractions:  # (looked up when called: a test stands in an older weakstil that trained on fractions)
        cohort_labels.refuse_fraction_labels(csv_path, table, percent_signed=percent_signed)
    warn_fraction_labels(csv_path, table, percent_signed=percent_signed)
    if group_col is not None:
        warn_lookalike_groups(csv_path, group_col, table["group"].tolist())
    log.debug("%s: %d slides, group column %s", csv_path, len(table), group_col)
    return Cohort(csv_path=csv_path, table=table, group_column=group_col)


def id_mismatch_fix(missing: list[str], found: list[str]) -> str | None:
    """The fix for cohort slide ids with no prediction when they differ from the predictions' ids
    only by a slide file's extension (``synth_0012.tiff`` against ``synth_0012``, as ``score``
    writes them), else ``None``."""
    from weakstil.settings import SLIDE_FILE_SUFFIXES

    def stem(sid: str) -> str:
        low = sid.lower()
        return next((sid[:-len(x)] for x in SLIDE_FILE_SUFFIXES if low.endswith(x)), sid)

    by_stem = {stem(f).casefold(): f for f in found}  # TCGA-A1-... against tcga-a1-...: ids are case-sensitive
    pairs = [(m, by_stem[stem(m).casefold()]) for m in missing
             if stem(m).casefold() in by_stem and by_stem[stem(m).casefold()] != m]
    if not pairs:
        # '1' against score's '001': the cohort's ids typed or opened in a spreadsheet, read as numbers
        digits = [f for f in found if re.fullmatch(r"\d+", f)]
        pair = next(((m, f) for m in missing[:20] for f in digits if spreadsheet_number(m, f)), None)
        if pair:
            m, f = pair
            return (f"the cohort's ids are the predictions' as a spreadsheet writes numbers ('{m}' against '{f}': "
                    "leading zeros or digits lost): write slide_id as text, as the predictions do (in the spreadsheet, "
                    "format the column as Text)")
        return None
    m, f = pairs[0]
    how = ("in letter case" if m.casefold() == f.casefold() else "by a file extension" if stem(m) == stem(f)
           else "by a file extension and letter case")
    return (f"{len(pairs)} of them differ from the predictions' ids only {how} ('{m}' against "
            f"'{f}'): write slide_id as the predictions do (score writes the file name without its extension)")
