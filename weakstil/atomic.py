"""Atomic output files: write to a temporary name beside the target, then rename.

A killed run therefore never leaves a file that looks complete. The temporary name records the
writing process (``.NAME.<host>.<pid>.<random>.tmp``), so the clean-up of leftovers by one run
never deletes the live temporary file of another run on the same machine; writers also hold the
output's lock (:mod:`weakstil.locks`) while they write, which keeps runs on other machines apart.
Files get the permissions the user's umask gives (0644 usually), whatever library wrote them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

from weakstil.errors import TEMP_NAME, OutputError

log = logging.getLogger(__name__)

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
#: ``.NAME.<host>.<pid>.<hex>.tmp`` (and the older ``.NAME.<hex>.tmp``)
_TEMP = TEMP_NAME


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


#: Bytes a file name may have (ext4, XFS, NFS...).
NAME_MAX = 255
#: What a temporary name adds to the stem: ``.`` + ``.<host>.<pid>.<hex>.tmp`` (pid up to 7 digits).
_TEMP_EXTRA = 1 + len(f".{_HOST}.{'9' * 7}.{'0' * 8}.tmp")


def temp_stem(name: str) -> str:
    """The part of ``name`` a temporary name carries: ``name`` itself, or, for a name so long that
    the temporary one would pass ``NAME_MAX`` (a final name that fits must not fail for its
    temporary name), its start and a hash of the whole."""
    import hashlib

    room = NAME_MAX - _TEMP_EXTRA
    raw = name.encode()
    if len(raw) <= room:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:12]
    return raw[:room - 13].decode("utf-8", "ignore") + "~" + digest


def temp_path(final: str | Path) -> Path:
    """A temporary name beside ``final`` that names this process."""
    final = Path(final)
    return final.with_name(f".{temp_stem(final.name)}.{_HOST}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it into place on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        yield tmp
        if tmp.is_file():  # libraries like safetensors write 0600; outputs follow the umask like any file
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except Exception as exc:
        io = library_io_error(exc, final)
        if io is None:
            raise
        raise io from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def library_io_error(exc: BaseException, path: Path) -> OSError | None:
    """A writer library's own error that is an I/O error underneath, as that :class:`OSError`
    (``None`` for any other): safetensors raises ``SafetensorError: Error while serializing: I/O
    error: No space left on device (os error 28)``, which ended 'weakstil train' on a full disk
    as 'unexpected SafetensorError ... a bug in weakstil' instead of the disk-full line and fix."""
    if isinstance(exc, OSError) or type(exc).__name__ != "SafetensorError":
        return None
    found = re.search(r"\(os error (\d+)\)", str(exc))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))


def _aside_path(final: Path) -> Path:
    """Where :func:`replacing_together` keeps ``final``'s earlier version: a temporary name, but
    not one of ``final``'s own (its writer removes those of this process before it writes)."""
    return temp_path(final.with_name(f".previous-{final.name}"))


@contextlib.contextmanager
def replacing_together(finals: list[Path]) -> Iterator[None]:
    """Replace a set of files that belong together (a slide's score, heatmap and GeoJSON) as one.

    The files there now are moved aside (renamed: no space needed), the block writes the new ones;
    if it fails (a full disk, Ctrl-C, any error) what it wrote is removed and the earlier files
    are put back, so a failed rewrite leaves the earlier complete set, never none or a mix; once
    it succeeds they are deleted. A run killed in between leaves the set aside under temporary
    names, which the next writer of these files removes (the slide is then done again)."""
    finals = [Path(f) for f in finals]
    for f in finals:
        if f.is_dir():  # not an earlier output: never moved aside, written over or left half done
            raise OutputError("is a directory; the output file cannot be written (nothing was written for this slide)",
                              path=f, fix="move the directory away or choose another --out")
    for f in finals:
        remove_stale_temps(f.with_name(f".previous-{f.name}"))
    aside: list[tuple[Path, Path]] = []
    try:
        for f in finals:
            if os.path.lexists(f):
                tmp = _aside_path(f)
                os.replace(f, tmp)
                aside.append((f, tmp))
    except BaseException:
        for f, tmp in aside:
            os.replace(tmp, f)
        raise
    try:
        yield
    except BaseException:
        for f in finals:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        for f, tmp in aside:
            try:
                os.replace(tmp, f)
            except OSError as exc:  # pragma: no cover - the folder went away
                log.warning("%s: could not put the earlier file back (%s)", f, exc)
        raise
    for _, tmp in aside:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def is_live_temp(tmp: Path) -> bool:
    """Whether ``tmp`` belongs to a process still running on this machine (other than this one's
    own leftovers, which are never live: a writer removes its temporary file when it fails)."""
    m = _TEMP.search(tmp.name)
    if m is None or m["host"] != _HOST:
        return False  # an older name, or another machine's: the caller holds the output's lock
    pid = int(m["pid"])
    return pid != os.getpid() and _alive(pid)


def remove_stale_temps(path: str | Path) -> int:
    """Delete temporary files a killed run left for ``path`` (``.NAME.*.tmp``); returns how many.

    A temporary file of a live process on this machine is kept."""
    path = Path(path)
    n = 0
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{glob_escape(temp_stem(path.name))}.*.tmp"):
            if is_live_temp(tmp):
                continue
            try:
                tmp.unlink()
                n += 1
            except FileNotFoundError:
                pass
            except PermissionError:  # a folder this run may only read (EACCES, EPERM): left to one that may write
                pass
            except OSError as exc:  # EROFS likewise
                if exc.errno != errno.EROFS:
                    raise
    if n:
        log.info("%s: removed %d leftover temporary file(s) of an interrupted run", path, n)
    return n


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters escaped (slide names may contain ``[``)."""
    import glob

    return glob.escape(name)


def json_ready(obj: object) -> object:
    """``obj`` for strict JSON: NaN and ±inf become ``null``, numpy values plain Python, paths text."""
    import math

    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy scalars and arrays
        return json_ready(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: object, **dumps_kwargs: object) -> Path:
    """Write ``obj`` as valid JSON (no bare NaN: see :func:`json_ready`), atomically."""
    import json

    text = json.dumps(json_ready(obj), allow_nan=False, **dumps_kwargs)  # type: ignore[arg-type]
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return Path(path)
