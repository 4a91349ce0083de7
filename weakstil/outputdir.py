"""Output folders know who wrote them, so WeakSTIL only ever replaces its own outputs.

Every command writes ``.weakstil-output.json`` into its output folder: which command wrote it,
what it holds, the version and when. ``--overwrite`` of a folder writer (``train``) replaces a
folder only when that marker says the same command wrote it; any other folder (a cohort with
its slides, a home directory, another command's output) is refused with one line (exit 2), and
nothing is deleted.

Per-slide writers (``tile``, ``embed``, ``score``, ``tumorbed apply``) replace a ``<slide_id>.h5``
only when it is their own kind of WeakSTIL file, or no HDF5 file at all (a damaged or truncated
copy); a WeakSTIL file of another kind or another program's HDF5 file is refused.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from weakstil import __version__
from weakstil.errors import UsageError, WeakSTILError

log = logging.getLogger(__name__)

MARKER = ".weakstil-output.json"

#: What each command's output folder holds.
KINDS = {"tile": "tiles", "embed": "features", "score": "scores", "tumorbed apply": "tumour beds",
         "tumorbed train": "tumour-bed detector", "train": "model", "evaluate": "evaluation", "report": "report",
         "pretrain": "encoder", "synth": "synthetic cohort", "demo": "demo"}


def marker_path(folder: str | Path) -> Path:
    return Path(folder) / MARKER


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The folder's marker, or ``None`` (none, or not readable as one)."""
    path = marker_path(folder)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("written_by") == "weakstil" else None


def commands_of(folder: str | Path) -> list[str]:
    marker = read_marker(folder)
    if marker is None:
        return []
    commands = marker.get("commands") or [marker.get("command")]
    return [str(c) for c in commands if c]


def mark(folder: str | Path, command: str) -> Path:
    """Record that ``command`` writes into ``folder`` (made when missing); idempotent."""
    from weakstil.atomic import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    commands = commands_of(folder)
    if command in commands:
        return marker_path(folder)
    data = {"written_by": "weakstil", "command": commands[0] if commands else command,
            "commands": [*commands, command], "kind": KINDS.get(commands[0] if commands else command, command),
            "weakstil_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with atomic_path(marker_path(folder)) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    return marker_path(folder)


def is_empty(folder: Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def check_overwrite(folder: str | Path, command: str) -> bool:
    """For a folder writer's ``--overwrite``: ``True`` when ``folder`` exists and was written by
    ``command`` (so it may be replaced); ``False`` when there is nothing to replace. Any other
    existing folder is a :class:`UsageError` (nothing is deleted)."""
    folder = Path(folder)
    if not folder.exists() or is_empty(folder):
        return False
    why = why_not_replaceable(folder, command)
    if why is None:
        return True
    raise UsageError(f"--overwrite refuses to replace this folder: {why}", path=folder, fix=new_out_fix(command))


def check_own_folder(folder: str | Path, command: str, *, overwrite: bool | None = None) -> None:
    """Before a folder writer (``pretrain``, ``tumorbed train``) writes into ``folder``: another
    command's folder, or a non-empty one without our marker (a model, a cohort, anything), is
    refused, so a mistyped ``--out`` never replaces a trained model's files. ``overwrite``: when the
    command has the option, an existing folder of its own is replaced only with it (``None``: the
    command handles its own reruns, e.g. ``pretrain --resume``)."""
    folder = Path(folder)
    if not folder.exists() or is_empty(folder):
        return
    why = why_not_replaceable(folder, command)
    if why is not None:
        raise WeakSTILError(f"already holds other files ({why}); not writing into it", path=folder,
                            fix=new_out_fix(command))
    if overwrite is False:
        raise WeakSTILError(f"already holds a 'weakstil {command}' output", path=folder,
                            fix="choose another --out, or pass --overwrite to replace it")


def why_not_replaceable(folder: Path, command: str) -> str | None:
    """Why ``--overwrite`` of ``command`` may not replace the existing ``folder`` (None: it may)."""
    commands = commands_of(folder) if folder.is_dir() else []
    if commands[:1] == [command]:
        return None
    marker = read_marker(folder) if folder.is_dir() else None
    return (f"it was written by 'weakstil {marker.get('command')}'" if marker else
            f"it has no {MARKER}, so it is not a folder 'weakstil {command}' wrote")


def new_out_fix(command: str) -> str:
    return f"choose a new --out for 'weakstil {command}' (or delete the folder yourself if you are sure)"


def check_replaceable(path: str | Path, kind_class: Any) -> None:
    """Before a per-slide writer replaces ``path``: refuse a WeakSTIL file of another kind or
    another program's HDF5 file (its own kind, and files that are not HDF5 at all, are replaced)."""
    from weakstil.files import KINDS as FILE_KINDS
    from weakstil.files import kind_of

    path = Path(path)
    if not path.exists():
        return
    if path.is_dir():
        raise WeakSTILError("is a directory; the output file cannot be written", path=path,
                            fix="move the directory away or choose another --out")
    try:
        kind = kind_of(path)
    except WeakSTILError:
        kind = "unreadable"
    if kind == kind_class.KIND:
        return
    if kind == "unreadable":
        log.info("%s: not a readable HDF5 file (a damaged output?); writing it again", path)
        return
    what = FILE_KINDS[kind].WHAT + f" written by '{FILE_KINDS[kind].MADE_BY}'" if kind in FILE_KINDS else \
        "not a file WeakSTIL wrote"
    raise WeakSTILError(f"exists and is a {what}; not replacing it with a {kind_class.WHAT}" if kind in FILE_KINDS
                        else f"exists and is {what}; not replacing it with a {kind_class.WHAT}", path=path,
                        fix=f"give '{kind_class.MADE_BY}' its own --out folder")
