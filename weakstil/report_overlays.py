"""The report's thumbnails: the ``weakstil tile`` QC overlays of a ``--tiles`` folder.

An overlay shows the tiles a tiling kept, so it stands for the model's tiles only when it is of
the same slide file (its tiles file's fingerprint, :mod:`weakstil.fingerprint`) and was tiled as
the model's features were (its tiles file's ``tiling_key``: tile size, µm/px, overlap, tissue
detection). Any other overlay is left out; what was left out, or a folder with no overlay of the
reported slides at all, is said in one warning line each (:meth:`Overlays.warn`).
"""

from __future__ import annotations

import json
import logging
import numbers
from pathlib import Path

from weakstil.errors import WeakSTILError

log = logging.getLogger(__name__)

SUFFIX = "_tiles.png"
#: Settings differences named in a warning before "…".
SHOWN = 3


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        return {k2: v2 for k, v in value.items() for k2, v2 in _flat(v, f"{prefix}{k}.").items()}
    return {prefix.rstrip("."): value}


def model_tiling(meta: dict) -> dict[str, object]:
    """The model's tiling settings, flat (``tissue.min_density``), from its model.json; a model
    written before the tiling key was recorded gives its µm/px and tile size."""
    tiling = meta.get("tiling") or {}
    key = tiling.get("key") if isinstance(tiling.get("key"), dict) else {}
    return _flat({**key, **{k: tiling[k] for k in ("mpp", "tile_px") if tiling.get(k) is not None}})


def tiling_differences(theirs: dict[str, object], ours: dict[str, object]) -> list[str]:
    """The settings both record that differ, as ``name theirs (the model: ours)``."""
    said = []
    for name in sorted(set(theirs) & set(ours)):
        a, b = theirs[name], ours[name]
        numeric = all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in (a, b))
        if not (abs(float(a) - float(b)) < 1e-6 if numeric else a == b):
            said.append(f"{name} {a} (the model: {b})")
    return said


class Overlays:
    """Finds each reported slide's overlay in ``folder`` and remembers what it left out."""

    def __init__(self, folder: Path, meta: dict) -> None:
        self.folder, self.tiling = folder, model_tiling(meta)
        self.found: list[str] = []
        self.missing: list[str] = []
        self.other_slide: list[str] = []  #: an overlay of another slide file with the same name
        self.other_tiling: dict[str, list[str]] = {}  #: slide id -> how its tiling differs

    def find(self, slide_id: str, slide_path: Path | None, fingerprint: str | None) -> Path | None:
        """The overlay of ``slide_id`` (named after the slide id or the slide file), when its
        tiles file is of this slide (``fingerprint``) and of the model's tiling."""
        from weakstil.slide import slide_id_from_path

        names = [slide_id] + ([slide_id_from_path(slide_path)] if slide_path is not None else [])
        overlay = next((self.folder / f"{n}{SUFFIX}" for n in names if (self.folder / f"{n}{SUFFIX}").is_file()), None)
        if overlay is None:
            self.missing.append(slide_id)
            return None
        attrs = _tiles_attrs(overlay.with_name(overlay.name[:-len(SUFFIX)] + ".h5"))
        if attrs is not None:  # (an overlay without its tiles file cannot be checked: it is shown)
            from weakstil.fingerprint import recorded

            theirs = recorded(attrs)
            if fingerprint is not None and theirs is not None and theirs != fingerprint:
                log.warning("%s: no thumbnail (%s is of another slide file with the same name)", slide_id, overlay)
                self.other_slide.append(slide_id)
                return None
            differs = tiling_differences(_recorded_tiling(attrs), self.tiling)
            if differs:
                self.other_tiling[slide_id] = differs
                return None
        self.found.append(slide_id)
        return overlay

    def warn(self) -> None:
        """One line for overlays of another tiling, one for slides without any overlay."""
        if self.other_tiling:
            ids = list(self.other_tiling)
            differs = self.other_tiling[ids[0]]
            how = "; ".join(differs[:SHOWN]) + ("; …" if len(differs) > SHOWN else "")
            log.warning("--tiles %s: no thumbnail for %d slide(s) (%s): tiled otherwise than the model's features, "
                        "e.g. %s: %s; pass the 'weakstil tile' folder made with the model's tiling", self.folder,
                        len(ids), _some(ids), ids[0], how)
        if not self.missing:
            return
        if not self.found and not self.other_tiling and not self.other_slide:
            none_at_all = not any(self.folder.glob(f"*{SUFFIX}"))
            what = ("holds no 'weakstil tile' output (no <slide_id>_tiles.png)" if none_at_all
                    else "holds no 'weakstil tile' overlay of any reported slide")
            log.warning("--tiles %s %s: the report has no thumbnails; pass the --out folder of 'weakstil tile' of "
                        "the model's slides", self.folder, what)
        else:
            log.warning("--tiles %s: no overlay (<slide_id>_tiles.png) of %d of the reported slides (%s): no "
                        "thumbnail for them", self.folder, len(self.missing), _some(self.missing))


def _some(ids: list[str]) -> str:
    return ", ".join(ids[:SHOWN]) + (f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else "")


def _tiles_attrs(path: Path) -> dict | None:
    """The attributes of a ``weakstil tile`` tiles file (``None``: none, or not readable as one)."""
    from weakstil.files import TilesFile

    if not path.is_file():
        return None
    try:
        return TilesFile.read_header(path)[0]
    except (WeakSTILError, OSError):
        return None


def _recorded_tiling(attrs: dict) -> dict[str, object]:
    """The tiling a tiles file records, flat; its plain attributes when the key is unreadable."""
    try:
        key = json.loads(str(attrs.get("tiling_key", "")))
    except ValueError:
        key = None
    if isinstance(key, dict):
        return _flat(key)
    return {k: attrs[k] for k in ("mpp", "tile_px", "overlap_px", "tissue_threshold") if k in attrs}
