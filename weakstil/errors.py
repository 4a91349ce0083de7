"""Errors that reach the user as one clear line."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple


class WeakSTILError(Exception):
    """A problem with the user's input or settings, explained in one line.

    ``path`` names the offending file; ``fix`` says what the user can do about it.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None):
        self.message = message
        self.path = str(path) if path is not None else None
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = []
        if self.path:
            parts.append(f"{self.path}: ")
        parts.append(self.message.rstrip("."))
        if self.fix:
            parts.append(f". Fix: {self.fix.rstrip('.')}")
        text = "".join(parts) + "."
        return " ".join(text.split())  # always one line


class ModelError(WeakSTILError):
    """A model directory is missing, damaged or does not fit the features (``weakstil.mil.identity`` names it too;
    here so that ``weakstil.modeldir`` checks model.json's fields without importing the mil package)."""


class SlideError(WeakSTILError):
    """The slide cannot be used (unreadable, no resolution, too coarse...); ``warnings``: why it is
    not brightfield H&E, when that is why (a greyscale image), as :class:`NoTissueError` says it."""

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None,
                 warnings: list[str] | None = None):
        self.warnings = list(warnings or [])
        super().__init__(message, path=path, fix=fix)


class NoMppError(SlideError):
    """The slide's metadata states no microns-per-pixel: ``--slide-mpp`` gives it (``info`` and the viewer
    then describe or show the slide in pixels)."""


class NoTissueError(WeakSTILError):
    """Tissue detection found nothing to tile; ``warnings`` says why the image may not be
    brightfield H&E (e.g. a fluorescence scan)."""

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None,
                 warnings: list[str] | None = None):
        self.warnings = list(warnings or [])
        super().__init__(message, path=path, fix=fix)


#: The words of :func:`weakstil.tiles.all_ink_reason` that choose :func:`no_tissue`'s fix.
INK_ONLY = "looks like marker ink"


def no_tissue(path: str | Path, warnings: list[str] | None = None, tissue_mm2: float = 0.0,
              threshold: float | None = None, debris: tuple[int, float, float, float] | None = None) -> NoTissueError:
    """The error of a slide with 0 tissue tiles: why it may not be H&E when the detector said so; how
    much tissue it found (``tissue_mm2``) when some was, too little to fill a tile to ``threshold``;
    ``debris``: ``(pieces, mm² in all, largest mm², debris size mm²)`` of stained pieces the detector
    dropped as debris, when there were some (a fragment too small to score, not a blank slide)."""
    if tissue_mm2 <= 0 and not warnings and debris is not None:
        # a biopsy fragment of 0.1 mm² (its stained part 0.02 mm², the rest fat) was told to check the slide
        # is not blank, or to lower the tissue threshold, which cannot bring back what the detector dropped
        n, total, largest, limit = debris
        return NoTissueError(f"no tissue found (0 tiles): only {n} stained piece{'s' if n != 1 else ''}, "
                             f"{total:.4f} mm² in all (the largest {largest:.4f} mm²; a piece under {limit:g} mm² is "
                             "dropped as debris)",
                             path=path, fix="look at the slide: a tissue fragment this small is too small to score "
                                            "(rescan it or score a larger section); dust or a bubble is a blank slide")
    if tissue_mm2 > 0 and not warnings:  # not blank: a small piece (or strands) under the threshold
        return NoTissueError(f"no tissue found (0 tiles): the tissue found, {tissue_mm2:.3f} mm², fills no tile to "
                             f"the tissue threshold{f' {threshold:g}' if threshold is not None else ''}", path=path,
                             fix="lower --tissue-threshold (tile, embed, pretrain; score uses its model's), or choose a "
                                 "smaller --tile-size")
    if warnings and any(INK_ONLY in w for w in warnings):  # weakstil.tiles.all_ink_reason
        return NoTissueError(f"no tissue found (0 tiles): {'; '.join(warnings)}", path=path,
                             fix="open it in a slide viewer: ink on blank glass has nothing to score; faded or "
                                 "washed-out tissue needs a scan with the scanner's colour calibration (or the slide "
                                 "restained)", warnings=warnings)
    if warnings:  # e.g. a fluorescence scan: say so, and do not send the user to the threshold
        return NoTissueError(f"no tissue found (0 tiles): {'; '.join(warnings)}", path=path,
                             fix="give the brightfield H&E scan of this tissue (this file does not look like one: "
                                 "open it in a slide viewer)", warnings=warnings)
    return NoTissueError("no tissue found (0 tiles)", path=path,
                         fix="check the slide is not blank; if tissue is faint, lower --tissue-threshold (tile, embed, "
                             "pretrain; score uses its model's)")


def not_brightfield(path: str | Path, warnings: list[str]) -> NoTissueError:
    """The error of a slide ``weakstil score`` refuses though tiles were found: a mostly dark image
    (fluorescence, darkfield, an image read with the wrong sign) has no brightfield H&E to score."""
    return NoTissueError(f"not scored: {'; '.join(warnings)}", path=path,
                         fix="WeakSTIL scores brightfield H&E scans; check the file is one (and is read as one: "
                             "its thumbnail in the tile overlay)", warnings=warnings)


class UsageError(WeakSTILError):
    """The command line itself is wrong (an unknown device, contradictory options): exit code 2."""


def check_folder_option(folder: str | Path | None, option: str, fix: str) -> None:
    """An option that takes a folder: a file given there is a usage mistake known before any slide
    is processed (a :class:`UsageError`, exit 2); a folder that is not there is a missing input
    (exit 1), as a missing slide is."""
    if folder is None or Path(folder).is_dir():
        return
    if Path(folder).exists():
        raise UsageError(f"{option} is a file, not a folder", path=folder, fix=fix)
    raise WeakSTILError(f"{option} folder not found", path=folder, fix=fix)


def short_reason(exc: BaseException, limit: int = 160) -> str:
    """An exception's message on one line, cut to ``limit`` characters (for ``error:`` lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < limit else text[:limit - 3] + "..."


class NameProblem(NamedTuple):
    """Why a file name cannot be used: the name as it can be shown, the reason, the fix."""

    shown: str
    reason: str
    fix: str

    def line(self) -> str:
        return f"{self.shown}: {self.reason}. Fix: {self.fix}."


def name_problem(name: str) -> NameProblem | None:
    """Why the file name ``name`` cannot be used, or None when it can: outputs, HDF5 attributes and
    results.csv are UTF-8, so a name must be valid UTF-8 (a Latin-1 name from an old file share is
    not: Python holds its bytes as surrogates), and it must be one the system's file-name encoding
    can write (under an ASCII locale with Python's UTF-8 mode off, a UTF-8 name from a CSV is not)."""
    import sys

    locale = (f"the file name has characters this system's locale ({sys.getfilesystemencoding()} file names) "
              "cannot encode", "run with a UTF-8 locale (export LC_ALL=C.UTF-8) or Python's UTF-8 mode (export "
              "PYTHONUTF8=1)")
    try:
        raw = os.fsencode(name)  # the bytes on disk (a name read from a CSV: as the locale would write it)
    except UnicodeEncodeError:
        return NameProblem(name.encode("ascii", "backslashreplace").decode("ascii"), *locale)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return NameProblem(raw.decode("utf-8", "backslashreplace"),
                           "the file name is not valid UTF-8 (bytes of another encoding, e.g. Latin-1 from an old "
                           "file share), and WeakSTIL's outputs and results.csv name slides in UTF-8",
                           "rename the file to a UTF-8 name (e.g. 'convmv -f latin1 -t utf8 --notest FILE')")
    if text != name:  # a UTF-8 name the locale's encoding cannot hold (held as surrogates)
        return NameProblem(text, *locale)
    return None


def unencodable_name(name: str) -> str | None:
    """:func:`name_problem` as one error line (``NAME: reason. Fix: ...``), or None."""
    problem = name_problem(name)
    return None if problem is None else problem.line()


class OutputError(WeakSTILError):
    """Writing an output failed (disk full, no permission, an I/O error).

    ``stops_batch``: every later input would fail the same way (disk full, quota, read-only
    file system), so a batch records this failure and stops; other I/O errors concern one
    input and the batch goes on."""

    def __init__(self, message: str, *, path: str | Path | None = None, fix: str | None = None,
                 stops_batch: bool = False):
        super().__init__(message, path=path, fix=fix)
        self.stops_batch = stops_batch


#: errno values after which a batch stops: the output's file system cannot take more.
def read_only_mount(folder: str | Path) -> bool:
    """Whether ``folder`` lies on a file system mounted read-only (no chmod makes it writable)."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


_STOPPING = {"ENOSPC", "EDQUOT", "EROFS", "EFBIG"}


#: How :mod:`weakstil.atomic` names a temporary output (``.NAME.HOST.PID.HEX.tmp``): an error about
#: one names the output it stands for (:func:`final_name`).
#: what a per-slide command's rerun does after a full disk (the others start over: weakstil.cli.errors)
RERUN_CONTINUES = "a rerun continues where this one stopped"
#: a folder written whole and renamed into place (weakstil.outputdir, weakstil.train): ``.NAME.tmp-HEX``
TEMP_FOLDER = re.compile(r"^\.(.+)\.tmp-[0-9a-f]{8}$")
TEMP_NAME = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def final_name(name: str) -> str | None:
    """The output a temporary file name stands for (``.NAME.HOST.PID.HEX.tmp`` -> ``NAME``; a long
    name's hashed stem as it is), or ``None`` for a name that is no temporary one."""
    m = TEMP_NAME.search(name)
    return name[1:m.start()] if m is not None and name.startswith(".") and m.start() > 1 else None


def file_size_limit() -> int | None:
    """This process's file size limit in bytes (``ulimit -f``; a cluster job's), ``None`` when unlimited:
    a write past it fails with "File too large" (EFBIG) on any file system (hunt 30c)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError, AttributeError):  # pragma: no cover - not POSIX
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _too_large_fix() -> str:
    limit = file_size_limit()
    if limit is None:
        return "choose another file system for --out (this one's largest file is smaller)"
    return (f"raise this shell's file size limit (ulimit -f: {limit // 1024} KB now; 'ulimit -f unlimited', or the "
            "job's file size limit) and run again")


def stop_fix(reason: str) -> str:
    """The fix of a batch stopped by ``reason`` (an :class:`OutputError` message of a stopping errno):
    a read-only or too-small file system is not mended by freeing space."""
    import errno as errno_mod

    if reason.startswith(os.strerror(errno_mod.EROFS)):
        return "make the folder writable, or choose a writable --out (--features for feature caches), and run again"
    if reason.startswith(os.strerror(errno_mod.EFBIG)):
        return _too_large_fix() if file_size_limit() is not None else "choose another file system and run again"
    if reason.startswith((os.strerror(errno_mod.EACCES), os.strerror(errno_mod.EPERM))):  # results.csv refused
        return "make the file writable (or close it in the program holding it, e.g. a spreadsheet) and run again"
    if not reason.startswith((os.strerror(errno_mod.ENOSPC), os.strerror(errno_mod.EDQUOT))):
        return "mend what the error above names and run again"
    return "free space and run again"


def from_os_error(exc: OSError, path: str | Path | None = None) -> OutputError:
    """An OSError (from Python, h5py, pandas...) as one :class:`OutputError` line."""
    import errno as errno_mod

    code = exc.errno
    name = errno_mod.errorcode.get(code, "") if code is not None else ""
    if not name:  # h5py and others put "[Errno 28] ..." in the text without setting errno
        found = re.search(r"errno\s*=?\s*(\d+)|\[Errno (\d+)\]", str(exc))
        if found:
            code = int(found.group(1) or found.group(2))
            name = errno_mod.errorcode.get(code, "")
    reason = os.strerror(code) if code else short_reason(exc)
    where = exc.filename or path
    if name in _STOPPING and exc.filename2:  # a copy (shutil.copyfile) names its source first: the full side is
        where = exc.filename2  # where it wrote (report named the model's cv/scatter.png under ulimit -f, hunt 44c)
    if where is not None and Path(where).name.startswith(".") and Path(where).name.endswith(".lock"):
        where = Path(where).with_name(Path(where).name[1:-len(".lock")])  # the file, not its lock beside it
    elif where is not None and (final := final_name(Path(where).name)) is not None:
        where = Path(where).with_name(final)  # the file, not its temporary name
    if where is not None:  # a file inside a folder written under a temporary name (train's model): the folder's own name
        where = Path(*[m.group(1) if (m := TEMP_FOLDER.match(part)) else part for part in Path(where).parts])
    if name == "ENAMETOOLONG" and where is not None:  # the slide's name made an output name too long
        shown = Path(where).name
        # the name that failed may be a longer temporary or lock name beside this one: no byte count
        # of this one, which can be under the limit itself
        return OutputError("file name too long: the output names are made from the slide file's name, and with "
                           "their suffixes and temporary-file marks they pass the file system's limit (255 bytes)",
                           path=Path(where).parent / (shown[:40] + "..."), fix="rename the slide file to a shorter name")
    if name == "EEXIST" and where is not None and os.path.islink(where) and not os.path.exists(where):
        target = os.path.join(os.path.dirname(where), os.readlink(where))  # a link to a purged scratch folder
        return OutputError(f"is a symbolic link to {target}, which does not exist", path=where,
                           fix=f"create that folder (mkdir -p {target}), or point the link elsewhere")
    fixes = {"ENOSPC": f"free disk space or choose another --out ({RERUN_CONTINUES})",
             "EDQUOT": "free space in your quota or choose another --out",
             "EROFS": "the folder is read-only: choose a writable one (--out; --features for feature caches)",
             "EFBIG": _too_large_fix(),
             "EACCES": "check the permissions of the file and its folder", "EPERM": "check the permissions",
             "EISDIR": "pass a file, not a directory", "ENOTDIR": "check the path",
             "ENOENT": "check the path", "EIO": "the disk or network file system reported an error; check it "
                                              "and run again"}
    return OutputError(reason, path=where, fix=fixes.get(name, "check the file system and run again"),
                       stops_batch=name in _STOPPING)


def glob_miss_fix(pattern: str) -> str:
    """The fix for a glob that matched no file, with what its folder does hold: patterns are
    case-sensitive (``*.TIFF`` misses ``a.tiff``) and a suffix may be spelt otherwise (``*.tif``
    misses ``a.tiff``); it was only 'check the pattern and its folder'."""
    import fnmatch
    import glob
    from collections import Counter

    folder, name = os.path.split(pattern)
    if not name or glob.has_magic(folder):
        return "check the pattern and its folder"
    try:
        files = sorted(e.name for e in os.scandir(folder or ".") if e.is_file() and not e.name.startswith("."))
    except PermissionError:  # there, but this user may not list it (it said "it is not there"; hunt 35c)
        return f"this user may not list the folder {folder or '.'!r} (permission denied): chmod a+rx it, or ask its owner"
    except OSError:
        return f"check the folder {folder!r}: it is not there" if folder else "check the pattern and its folder"
    same = [f for f in files if fnmatch.fnmatchcase(f.casefold(), name.casefold())]
    if same:
        return (f"patterns are case-sensitive and {len(same)} file(s) match it in another case ({same[0]}"
                f"{', ...' if len(same) > 1 else ''}): write the pattern in the files' case")
    suffixes = Counter(Path(f).suffix for f in files if Path(f).suffix)
    deeper = slides_in_subfolders(folder or ".", name)
    if deeper:  # 'DIR/*.svs' of a folder of case folders
        return deeper
    if not suffixes:
        return f"the folder {folder or '.'} holds no file with a suffix: check the pattern and its folder"
    held = ", ".join(f"{n} {s}" for s, n in suffixes.most_common(4))
    return f"the folder {folder or '.'} holds {held} file(s): check the pattern (e.g. {os.path.join(folder, '*' + suffixes.most_common(1)[0][0])!r})"


def slides_in_subfolders(folder: str | Path, name: str = "*") -> str | None:
    """A glob for the slide files one folder down (``DIR/*/*.svs``), with how many there are, when
    ``folder`` holds subfolders of slides (a folder per case or per scanner): the hint given for
    the folder itself, or a glob of it, matched nothing (``'DIR/*'`` named the subfolders)."""
    import fnmatch
    from collections import Counter

    from weakstil import settings

    try:
        found = [f for d in sorted(Path(folder).iterdir()) if d.is_dir() and not d.name.startswith(".")
                 for f in sorted(d.iterdir()) if f.is_file() and not f.name.startswith(".")
                 and f.suffix.lower() in settings.SLIDE_FILE_SUFFIXES and fnmatch.fnmatchcase(f.name, name)]
    except OSError:
        return None
    if not found:
        return None
    suffix = Counter(f.suffix for f in found).most_common(1)[0][0]
    n_dirs = len({f.parent for f in found})
    pattern = Path(folder) / "*" / (name if name != "*" else f"*{suffix}")
    return (f"its slides sit in subfolders ({len(found)} slide file(s) in {n_dirs} of them, e.g. "
            f"{found[0].relative_to(folder)}): pass a glob of them (quoted): '{pattern}'")
