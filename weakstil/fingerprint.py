"""A slide's identity from its content: the fingerprint recorded in every per-slide output.

Outputs are named after the slide file (``S1.svs`` -> ``S1.h5``), so a name says nothing about
which scan it is: two scanners, a rescan, or two cohorts with ``slide_001.svs`` give one name to
different slides. Every per-slide file therefore records ``slide_fingerprint`` and is reused
(feature caches, scores, tumour beds, tile overlays) only when the slide at hand has the same one.

The fingerprint is the SHA-256 of

* the file's size in bytes,
* the level-0 width and height, the number of pyramid levels and the µm/px of the metadata,
* OpenSlide's ``openslide.quickhash-1`` when the format has one (a hash OpenSlide computes on
  opening, over the slide's properties and the pixel data of its lowest-resolution level; for
  multi-file formats such as MRXS it covers the data files, which the file read below does not),
* the bytes of 10 blocks of 64 KiB at fixed places in the file: its head (the TIFF header and
  first directories, where scanners record the barcode, scan date and time), its tail, and 8
  evenly spaced offsets in between (compressed tile data).

That is under 1 MB read from any file, whatever its size: a few milliseconds, even for a 3 GB
slide on a network share. It tells apart two different scans: the compressed tiles of two scans
differ in practically every byte (sensor noise alone sees to that), so any interior block
differs, as do the scan times in the header. It stays the same when a file is copied, moved or
renamed, so caches follow the slide. It is not a hash of every byte: an edit that changes
neither the size, the header, the tail, the sampled blocks nor the thumbnail level goes
unnoticed — that is deliberate tampering, not a different slide.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Attribute (HDF5) and column name of the fingerprint.
ATTR = "slide_fingerprint"
#: Bumped when what is read changes; a fingerprint of another version counts as none.
VERSION = "wsfp1"
BLOCK = 64 * 1024
INTERIOR_BLOCKS = 8


def file_fingerprint(path: str | Path, *, dimensions: tuple[int, int] | None = None, levels: int | None = None,
                     mpp: float | None = None, quickhash: str | None = None) -> str:
    """The fingerprint of ``path`` given what the slide reader says about it (see the module)."""
    path = Path(path)
    size = os.path.getsize(path)
    h = hashlib.sha256()
    h.update(json.dumps({"size": size, "dimensions": list(dimensions) if dimensions else None, "levels": levels,
                         "mpp": None if mpp is None else round(float(mpp), 6), "quickhash": quickhash},
                        sort_keys=True).encode())
    offsets = [0, *(size * i // (INTERIOR_BLOCKS + 1) for i in range(1, INTERIOR_BLOCKS + 1)), max(0, size - BLOCK)]
    with open(path, "rb") as fh:
        for offset in offsets:
            fh.seek(offset)
            h.update(fh.read(BLOCK))
    return f"{VERSION}:{h.hexdigest()}"


def backend_fingerprint(backend: Any) -> str:
    """The fingerprint of an open slide backend (:mod:`weakstil.slide_backend`)."""
    props = backend.properties
    return file_fingerprint(backend.path, dimensions=tuple(backend.dimensions), levels=int(backend.level_count),
                            mpp=backend.mpp, quickhash=props.get("openslide.quickhash-1"))


def slide_fingerprint(path: str | Path) -> str | None:
    """The fingerprint of the slide file at ``path``; ``None`` when it cannot be opened (the
    command reading it then reports why)."""
    from weakstil.errors import WeakSTILError
    from weakstil.slide_backend import open_backend

    try:
        backend = open_backend(Path(path))
    except (WeakSTILError, OSError):
        return None
    try:
        return backend_fingerprint(backend)
    except OSError:
        return None
    finally:
        backend.close()


def recorded(attrs: dict[str, Any]) -> str | None:
    """The fingerprint an output records (``None``: none, or one of another version)."""
    value = attrs.get(ATTR)
    return str(value) if value and str(value).startswith(f"{VERSION}:") else None


def why_stale(attrs: dict[str, Any], current: str | None) -> str | None:
    """Why an output recording ``attrs`` is not for the slide whose fingerprint is ``current``,
    or ``None`` when it is (or when the slide cannot be fingerprinted)."""
    if current is None:
        return None
    mine = recorded(attrs)
    if mine is None:
        return "has no slide fingerprint (written by an older weakstil), so it cannot be trusted"
    if mine != current:
        return "was made from another slide file with the same name (its content fingerprint differs)"
    return None


def other_request(attrs: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why an output recording ``attrs`` was made with other settings than ``current`` (the
    ``score_request`` attribute: threshold, slide resolution, tumour-bed source...), or ``None``."""
    import json

    try:
        mine = json.loads(attrs["score_request"])
    except (KeyError, TypeError, ValueError):
        return "records no settings (written by an older weakstil), so it cannot be trusted"
    changed = sorted(k for k in set(mine) | set(current) if mine.get(k) != current.get(k))
    if changed:
        return "was made with other settings (" + "; ".join(f"{k}: {mine.get(k)!r} -> {current.get(k)!r}"
                                                              for k in changed) + ")"
    return None


def recorded_in(output: Path, kind_class: Any) -> str | None:
    """The slide fingerprint the HDF5 ``output`` (a ``kind_class`` file) records; ``None`` when it
    records none or cannot be read."""
    from weakstil.errors import WeakSTILError

    try:
        return recorded(kind_class.read_header(output)[0])
    except (WeakSTILError, OSError):
        return None


def check_not_another_file(output: Path, slide_path: str | Path, kind_class: Any) -> None:
    """Refuse to replace ``output`` (an HDF5 of ``kind_class``) made from *another* slide file with the
    same slide id: another path and other content, e.g. two patients' ``S1.svs`` from two folders
    scored into one ``--out`` by two runs (within one run the clash is refused too). The same path
    with new content (a rescan in place) is replaced."""
    from weakstil.errors import WeakSTILError

    if not output.is_file():
        return
    try:
        attrs, _ = kind_class.read_header(output)
    except WeakSTILError:
        return
    other = str(attrs.get("slide_path", ""))
    if other and other != str(Path(slide_path).resolve()) and \
            why_stale(attrs, slide_fingerprint(slide_path)) is not None and recorded(attrs) is not None:
        raise WeakSTILError(f"has the slide id of another slide file already scored in {output.parent} ({other})",
                            path=slide_path, fix="rename the file, score it into another --out, or pass --overwrite "
                            "to replace that score")


def check_unchanged(attrs: dict[str, Any], slide_path: str | Path) -> None:
    """``score``, before it writes a slide's outputs: the slide file is still the scan its features
    (``attrs``) were read from. A file replaced while it was scored (or still being copied in) was
    scored as the old content and recorded as ok beside the new file, one warning of the ink veto
    the only sign (hunt 30c); now that slide's error row, and a rerun scores the file as it is."""
    from weakstil.errors import WeakSTILError

    made_from = recorded(attrs)
    if made_from is None:
        return
    gone = not Path(slide_path).is_file()
    now = None if gone else slide_fingerprint(slide_path)
    if gone or (now is not None and now != made_from):
        raise WeakSTILError(f"{'was removed' if gone else 'changed'} while it was scored (replaced, or still being "
                            "copied?): its tiles were read from the file as it was", path=slide_path,
                            fix="run score again once the file is complete (it is scored as it is then)")
