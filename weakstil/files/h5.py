"""The one place that opens HDF5 files (h5py imported on first use).

Writing is atomic: a file is written under a temporary name beside the target and renamed
when complete, after temporaries a killed run left for the same target are removed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil.atomic import atomic_path, remove_stale_temps
from weakstil.errors import WeakSTILError

if TYPE_CHECKING:  # pragma: no cover
    import h5py


class SlideFileError(WeakSTILError):
    """A per-slide file is missing, unreadable, incomplete, of another kind or too new."""


class H5ReadError(SlideFileError):
    """An HDF5 file is missing or unreadable."""


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
        yield f


@contextlib.contextmanager
def open_write(path: str | Path, *, track_order: bool = False) -> Iterator[h5py.File]:
    """A new HDF5 file that appears at ``path`` only when the block ends without error."""
    import h5py

    path = Path(path)
    remove_stale_temps(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=track_order) as f:
            yield f


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
