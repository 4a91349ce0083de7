"""The machinery shared by every per-slide file kind: declared datasets, one reader, one writer.

A kind is a dataclass deriving from :class:`SlideFile` that lists its datasets in ``DATASETS``
(one :class:`Dataset` each, with a field of the same name) and keeps every file attribute in
``attrs``. Reading follows three rules, so later versions can add to a kind without breaking
older readers or older files:

* datasets a reader does not declare are ignored;
* a declared optional dataset that a file lacks reads as ``None``;
* ``schema_version`` grows only when a change would mislead an older reader (a renamed or
  re-scaled dataset); a reader refuses files of a newer schema version with one error line.
  Adding an optional dataset or attribute keeps the version.

Files written before kinds existed (no ``kind`` attribute) are recognised by their datasets
(:func:`legacy_kind`) and read as schema version 1.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from weakstil.files import h5
from weakstil.files.h5 import SlideFileError
from weakstil.scoped_cache import scoped_dict

S = TypeVar("S", bound="SlideFile")

#: The headers read inside :func:`headers_read_once` (None outside it): (kind class, file identity) ->
#: (attributes, shapes).
_HEADERS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("weakstil_headers", default=None)


@contextlib.contextmanager
def headers_read_once() -> Iterator[None]:
    """Inside the block, :meth:`SlideFile.read_header` reads each file once: a later call on a file
    unchanged since (same device, inode, size, modification and change times) gets what the first
    read, as copies. ``weakstil train`` read each feature file's header five times (the cohort check,
    the bed record twice, the tile-measurement check, the scan record): 3-4 ms each, an eighth of a
    48-slide test training's CPU. Only successful reads are kept; a file that fails is read (and
    refused) again. Nested blocks share the outermost one's headers."""
    with scoped_dict(_HEADERS):
        yield


def _header_key(cls: type, path: Path) -> tuple | None:
    """What identifies a file's header inside :func:`headers_read_once` (None: no cache, or no such file)."""
    if _HEADERS.get() is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return cls, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass(frozen=True)
class Dataset:
    """One dataset of a kind: its field name, stored dtype and how it is written."""

    name: str
    dtype: str
    required: bool = True
    stored_as: str | None = None  #: name in the file when it differs from the field's
    aliases: tuple[str, ...] = ()  #: other names accepted when reading
    gzip: bool = False  #: compressed (masks)
    mpp: bool = False  #: a mask with an ``mpp`` attribute, held in the field ``<name>_mpp``
    as_bool: bool = False  #: read back as bool (flags and masks stored as uint8)
    rows_chunk: int | None = None  #: chunked by this many rows (large per-tile matrices)

    @property
    def file_name(self) -> str:
        return self.stored_as or self.name

    def names(self) -> tuple[str, ...]:
        return (self.file_name, *self.aliases)


@dataclass(kw_only=True)
class SlideFile:
    """Base of the per-slide file kinds (see the module docstring)."""

    KIND: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    DATASETS: ClassVar[tuple[Dataset, ...]] = ()
    #: What the file is called in messages, and the command that writes it (for fixes).
    WHAT: ClassVar[str] = "file"
    MADE_BY: ClassVar[str] = "weakstil"

    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  #: where it was read from

    # -- attributes ----------------------------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        """A file attribute (plain Python), ``default`` when the file has none."""
        return self.attrs.get(name, default)

    @property
    def slide_id(self) -> str:
        sid = self.attrs.get("slide_id")
        return str(sid) if sid is not None else (self.path.stem if self.path is not None else "")

    @property
    def n_tiles(self) -> int:
        coords = getattr(self, "coords", None)
        return int(len(coords)) if coords is not None else int(self.attrs.get("n_tiles", 0))

    @property
    def tile_size_level0(self) -> float:
        """A tile's side in level-0 px (older feature files without it: the tile size)."""
        from weakstil.settings import TILE_PX

        return float(self.attrs.get("tile_size_level0", self.attrs.get("tile_px", TILE_PX)))

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def fix(cls) -> str:
        return f"run '{cls.MADE_BY}' again for this slide"

    @classmethod
    def read(cls: type[S], path: str | Path, *, skip: Collection[str] = ()) -> S:
        """The file at ``path``; datasets named in ``skip`` are not loaded (left ``None``)."""
        path = Path(path)
        with h5.open_read(path, fix=cls.fix()) as f:
            attrs = cls._check(f, path)
            cls._check_datasets(f, attrs, path)
            values: dict[str, Any] = {}
            for ds in cls.DATASETS:
                name = next((n for n in ds.names() if n in f), None)
                if name is None:
                    if ds.required:
                        raise SlideFileError(f"{cls.WHAT} has no '{ds.file_name}' dataset", path=path,
                                             fix=cls.fix())
                    continue
                if ds.mpp:
                    if "mpp" not in f[name].attrs:  # a file edited by hand: said, not a KeyError's traceback
                        raise SlideFileError(f"{cls.WHAT}'s '{name}' dataset has no 'mpp' attribute (its µm/px)",
                                             path=path, fix=cls.fix())
                    values[f"{ds.name}_mpp"] = float(f[name].attrs["mpp"])
                if ds.name in skip:
                    continue
                data = f[name][()]
                values[ds.name] = data.astype(bool) if ds.as_bool else data
        return cls(attrs=attrs, path=path, **values)

    @classmethod
    def read_header(cls, path: str | Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
        """The file's attributes and the shapes of its declared datasets, without loading data. A required
        dataset missing is the same error as :meth:`read`'s: a score file without its ``coords`` was kept as
        "already scored" by a rerun, while the viewer's error on it said to score the slide again (hunt 37n)."""
        path = Path(path)
        key = _header_key(cls, path)
        cache = _HEADERS.get() if key is not None else None
        if cache is not None and key in cache:
            attrs, shapes = cache[key]
            return dict(attrs), dict(shapes)
        with h5.open_read(path, fix=cls.fix()) as f:
            attrs = cls._check(f, path)
            cls._check_datasets(f, attrs, path)
            shapes = {}
            for ds in cls.DATASETS:
                name = next((n for n in ds.names() if n in f), None)
                if name is not None:
                    shapes[ds.name] = tuple(f[name].shape)
                elif ds.required:
                    raise SlideFileError(f"{cls.WHAT} has no '{ds.file_name}' dataset", path=path, fix=cls.fix())
        if cache is not None:
            cache[key] = (dict(attrs), dict(shapes))
        return attrs, shapes

    @classmethod
    def _check(cls, f: Any, path: Path) -> dict[str, Any]:
        attrs = h5.attrs_of(f)
        kind = attrs.get("kind") or legacy_kind(set(f.keys()))
        if kind != cls.KIND:
            what = KINDS[kind].WHAT if kind in KINDS else "WeakSTIL per-slide file"
            raise h5.OtherKindError(f"is a {what}, not a {cls.WHAT}" if kind else f"not a {cls.WHAT}", path=path,
                                    fix=f"pass the <slide_id>.h5 files written by '{cls.MADE_BY}'")
        version = int(attrs.get("schema_version", 1))
        if version > cls.SCHEMA_VERSION:
            raise SlideFileError(f"{cls.WHAT} has schema version {version}; this weakstil reads up to "
                                 f"{cls.SCHEMA_VERSION}", path=path, fix="upgrade weakstil")
        if int(attrs.get("complete", 0)) != 1:
            raise h5.IncompleteFileError(f"{cls.WHAT} is incomplete (an interrupted run)", path=path, fix=cls.fix())
        return attrs

    #: attributes that must be numbers where a file has them (the tiling every reader computes with)
    NUMBER_ATTRS: ClassVar[tuple[str, ...]] = ("mpp", "tile_px", "tile_um", "tile_size_level0", "slide_mpp",
                                               "overlap_px", "embed_dim")

    @classmethod
    def _check_datasets(cls, f: Any, attrs: dict[str, Any], path: Path) -> None:
        """Numbers in the tiling attributes, numbers in every declared dataset, ``coords`` (N, 2) and one row
        per tile in every per-tile dataset: a file edited or written by another tool was a numpy ValueError or
        IndexError ("this is a bug in weakstil") deep inside the command, and took a tumorbed apply batch down
        (outside corruption sweep, hunt 37n)."""
        def refuse(what: str) -> None:
            raise SlideFileError(f"{cls.WHAT}'s {what} (edited, or written by another tool)", path=path,
                                 fix=f"delete it, then {cls.fix()}")

        for key in cls.NUMBER_ATTRS:
            value = attrs.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                refuse(f"attribute '{key}' is {str(value)[:40]!r}, not a number")
        found = {ds: f[n] for ds in cls.DATASETS if (n := next((m for m in ds.names() if m in f), None))}
        for ds, data in found.items():
            if not hasattr(data, "dtype") or data.dtype.kind not in "biuf":
                refuse(f"'{ds.file_name}' holds {getattr(data, 'dtype', 'a group')}, not numbers")
        coords = next((d for ds, d in found.items() if ds.name == "coords"), None)
        if coords is None or coords.size == 0:  # a slide of no tiles may store its empty arrays flat
            return
        if coords.ndim != 2 or coords.shape[1] != 2:
            refuse(f"'coords' has shape {coords.shape}, not (tiles, 2)")
        for ds, data in found.items():
            if ds.mpp and data.ndim != 2:
                refuse(f"'{ds.file_name}' has shape {data.shape}, not a 2-D mask")
            elif not ds.mpp and (data.ndim == 0 or data.shape[0] != coords.shape[0]):
                refuse(f"'{ds.file_name}' has shape {data.shape}: not one row for each of its {coords.shape[0]} tiles")
        cls._check_coords_on_slide(coords, attrs, refuse)

    @staticmethod
    def _check_coords_on_slide(coords: Any, attrs: dict[str, Any], refuse: Callable[[str], None]) -> None:
        """Tile corners on the slide the file records (a tile's size of margin): a cache from elsewhere
        with a corner at -1e12 made the tumour-bed detector ask for a 33 GiB grid ("out of memory", hunt 39f)."""
        size = [attrs.get(k) for k in ("slide_width", "slide_height")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in size):
            return
        tile = attrs.get("tile_size_level0")
        margin = float(tile) if isinstance(tile, (int, float)) and 0 < tile < math.inf else 0.0
        xy = np.asarray(coords[:], dtype=np.float64)
        if not np.isfinite(xy).all():
            refuse("'coords' holds NaN or infinite values")
        low, high = xy.min(axis=0), xy.max(axis=0)
        if (low < -margin).any() or (high > np.asarray(size, dtype=np.float64) + margin).any():
            refuse(f"'coords' run from ({low[0]:.4g}, {low[1]:.4g}) to ({high[0]:.4g}, {high[1]:.4g}), off its "
                   f"{size[0]:g} x {size[1]:g} px slide")

    # -- writing -------------------------------------------------------------------------
    def write(self, path: str | Path) -> Path:
        """Write atomically: datasets, then attributes, then ``kind``, ``schema_version`` and
        ``complete`` = 1 last. Attributes whose value is ``None`` are left out."""
        path = Path(path)
        with h5.open_write(path) as f:
            self._write_datasets(f)
            self._write_attrs(f)
        self.path = path
        return path

    def _write_datasets(self, f: Any, skip: Collection[str] = ()) -> None:
        for ds in self.DATASETS:
            if ds.name in skip:
                continue
            value = getattr(self, ds.name)
            if value is None:
                if ds.required:
                    raise ValueError(f"{type(self).__name__}.{ds.name} is required")
                continue
            data = np.asarray(value, dtype=ds.dtype)
            kwargs: dict[str, Any] = {"compression": "gzip"} if ds.gzip else {}
            if ds.rows_chunk and len(data):
                kwargs["chunks"] = (min(len(data), ds.rows_chunk), *data.shape[1:])
            out = f.create_dataset(ds.file_name, data=data, **kwargs)
            if ds.mpp:
                out.attrs["mpp"] = float(getattr(self, f"{ds.name}_mpp"))

    def _write_attrs(self, f: Any) -> None:
        for key, value in self.attrs.items():
            if value is not None and key not in ("kind", "schema_version", "complete"):
                f.attrs[key] = value
        f.attrs["kind"] = self.KIND
        f.attrs["schema_version"] = self.SCHEMA_VERSION
        f.attrs["complete"] = 1

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)


#: Every kind by its ``kind`` attribute (filled by weakstil.files.kinds).
KINDS: dict[str, type[SlideFile]] = {}


def register(cls: type[S]) -> type[S]:
    KINDS[cls.KIND] = cls
    return cls


def legacy_kind(names: set[str]) -> str | None:
    """The kind of a file written before the ``kind`` attribute existed, from its datasets."""
    if "features" in names:
        return "features"
    if "tile_scores" in names:
        return "slide_scores" if "tumorbed" in names else "tile_scores"
    if "coords" in names and "tumorbed_fraction" in names:
        return "tumorbed"
    if "coords" in names and "tissue_mask" in names:
        return "tiles"
    return None


def kind_of(path: str | Path) -> str | None:
    """A per-slide file's kind (``None``: an HDF5 file of no WeakSTIL kind)."""
    with h5.open_read(path) as f:
        kind = h5.plain(f.attrs.get("kind")) or legacy_kind(set(f.keys()))
    return kind if kind in KINDS else None


def read_any(path: str | Path, *, skip: Collection[str] = ()) -> SlideFile:
    """Any per-slide file, as the class of its kind (datasets in ``skip`` are not loaded)."""
    kind = kind_of(path)
    if kind is None:
        raise SlideFileError("not a WeakSTIL per-slide file", path=path,
                             fix="open a .h5 written by 'weakstil tile', 'embed', 'tumorbed apply', 'train', "
                                 "'evaluate' or 'score'")
    return KINDS[kind].read(path, skip=skip)
