"""The one place that opens HDF5 files (h5py imported on first use).

Writing is atomic: a file is written under a temporary name beside the target and renamed
when complete, after temporaries a killed run left for the same target are removed.

HDF5 writes through a Python file object (:class:`_GuardedFile`), not its own POSIX driver:
when the disk is full, HDF5's own driver leaves the library with a file it can neither flush nor
close, and the process segfaults when that file is finally freed. The guard records the first
write error and accepts the rest, so HDF5 closes cleanly; the error is then raised as one
:class:`~weakstil.errors.OutputError` and the temporary file removed. The file under the guard is
unbuffered: a buffered one keeps written bytes back and writes them on the next ``seek``, ``read``
or ``close``, where a full disk's error reached HDF5 past the guard (a segfault again) or replaced
the ``OutputError`` with a bare ``OSError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil.atomic import atomic_path, remove_stale_temps
from weakstil.errors import WeakSTILError, from_os_error

if TYPE_CHECKING:  # pragma: no cover
    import h5py


class SlideFileError(WeakSTILError):
    """A per-slide file is missing, unreadable, incomplete, of another kind or too new."""


class H5ReadError(SlideFileError):
    """An HDF5 file is missing or unreadable."""


class OtherKindError(SlideFileError):
    """A WeakSTIL per-slide file of another kind than the one asked for (a score file given as a bed)."""


class IncompleteFileError(SlideFileError):
    """A per-slide file whose run was interrupted before it marked the file complete."""


@contextlib.contextmanager
def open_read(path: str | Path, *, fix: str | None = None) -> Iterator[h5py.File]:
    """``path`` opened read-only; a missing or unreadable file is one :class:`H5ReadError`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise H5ReadError("file not found", path=path, fix=fix)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise H5ReadError(f"not a readable HDF5 file ({exc})", path=path, fix=fix) from None
    with f:
        try:
            yield f
        except OSError as exc:
            if exc.errno is not None:  # the operating system's (EIO...): about the disk, not this file
                raise
            # HDF5 could open the file but not read its data (a damaged chunk): a rerun that finds
            # the file would read it again, so it must be deleted first
            raise H5ReadError(f"damaged: HDF5 cannot read its data ({exc})", path=path,
                              fix=f"delete it, then {fix or 'write it again'}") from None


class _GuardedFile:
    """A binary file for h5py's file-object driver that never lets a write error reach HDF5
    (see the module docstring): the first error (or interrupt) is kept in ``error``."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.error: BaseException | None = None

    def _guard(self, call: Any, *args: Any) -> Any:
        if self.error is None:
            try:
                return call(*args)
            except BaseException as exc:  # noqa: BLE001 - kept and raised once HDF5 has closed
                self.error = exc
        return None

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view) and self.error is None:  # an unbuffered write may take part of it
            n = self._guard(self.raw.write, view[done:])
            if not n:  # an error (kept), or nothing written: disk full without an error
                if self.error is None:
                    self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                break
            done += n
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        self._guard(self.raw.truncate, size)
        return self.raw.tell() if size is None else size

    def flush(self) -> None:
        self._guard(self.raw.flush)

    def read(self, n: int = -1) -> bytes:
        return self.raw.read(n)

    def readinto(self, buffer: Any) -> int:
        return self.raw.readinto(buffer)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()


@contextlib.contextmanager
def open_write(path: str | Path, *, track_order: bool = False) -> Iterator[h5py.File]:
    """A new HDF5 file that appears at ``path`` only when the block ends without error.

    A write error (disk full...) is one :class:`~weakstil.errors.OutputError`, nothing is left
    behind, and the process never crashes in HDF5."""
    import h5py

    path = Path(path)
    remove_stale_temps(path)
    with atomic_path(path) as tmp:
        with open(tmp, "w+b", buffering=0) as raw:  # unbuffered: see the module docstring
            guard = _GuardedFile(raw)
            try:
                with h5py.File(guard, "w", track_order=track_order) as f:
                    yield f
                guard.flush()
                if guard.error is None:
                    os.fsync(raw.fileno()) if _FSYNC else None
            except Exception:
                if guard.error is None:
                    raise
            _raise_kept(guard.error, path)


#: fsync every HDF5 file before its rename (off: the rename is atomic; a power cut may lose
#: the newest files, which a rerun redoes, but never leaves a half file under the final name).
_FSYNC = False


def _raise_kept(error: BaseException | None, path: Path) -> None:
    if error is None:
        return
    if isinstance(error, OSError):
        raise from_os_error(error, path) from None
    raise error


def plain(value: Any) -> Any:
    """An attribute value as plain Python (bytes -> str, numpy scalars -> int/float/bool)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def attrs_of(obj: Any) -> dict[str, Any]:
    """All attributes of an HDF5 file, group or dataset as plain Python values."""
    return {k: plain(v) for k, v in obj.attrs.items()}
