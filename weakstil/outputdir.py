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

import contextlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from weakstil.code_version import version as code_version
from weakstil.atomic import glob_escape
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
            "weakstil_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
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
    refused (a :class:`UsageError`, exit 2: the --out is wrong, as for any command), so a mistyped
    ``--out`` never replaces a trained model's files. ``overwrite``: when the
    command has the option, an existing folder of its own is replaced only with it (``None``: the
    command handles its own reruns, e.g. ``pretrain --resume``)."""
    folder = Path(folder)
    if not folder.exists() or is_empty(folder):
        return
    why = why_not_replaceable(folder, command)
    if why is not None:
        raise UsageError(f"already holds other files ({why}); not writing into it", path=folder,
                            fix=new_out_fix(command))
    if overwrite is False:
        raise UsageError(f"already holds a 'weakstil {command}' output", path=folder,
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
        log.info("%s: not a readable HDF5 file (a damaged output?); this run's output replaces it when written", path)
        return
    what = FILE_KINDS[kind].WHAT + f" written by '{FILE_KINDS[kind].MADE_BY}'" if kind in FILE_KINDS else \
        "not a file WeakSTIL wrote"
    raise WeakSTILError(f"exists and is a {what}; not replacing it with a {kind_class.WHAT}" if kind in FILE_KINDS
                        else f"exists and is {what}; not replacing it with a {kind_class.WHAT}", path=path,
                        fix=f"choose {kind_class.FOLDER}" if hasattr(kind_class, "FOLDER") else
                        f"give '{kind_class.MADE_BY}' its own --out folder")


def check_out_is_not_input(out: str | Path, inputs: dict[str, str | Path | None]) -> None:
    """Refuse an ``--out`` that is also one of the command's input folders (``{option: folder}``):
    its ``<slide_id>.h5`` / ``.geojson`` outputs would replace the inputs of the same name, e.g. a
    pathologist's annotations or the feature caches."""
    import os

    out = Path(out)
    for option, folder in inputs.items():
        if folder is not None and out.exists() and Path(folder).exists() and os.path.samefile(out, folder):
            raise UsageError(f"is also the {option} folder: the per-slide outputs would replace its files of the "
                             "same name", path=out, fix=f"choose an --out other than the {option} folder")


def check_inputs_outside(out: str | Path, inputs: dict[str, str | Path | None], command: str) -> None:
    """Refuse inputs (``{option: folder or file}``, e.g. the cohort CSV) that are ``out`` or lie
    inside it, for a command that replaces ``out`` whole (``train``, and ``evaluate``/``report``
    with ``--overwrite``): they would be deleted with it."""
    if not Path(out).is_dir() or why_not_replaceable(Path(out), command) is not None:
        return  # nothing of ours to replace: the command's own checks refuse any other folder
    out_r = Path(out).resolve()
    for option, folder in inputs.items():
        if folder is None:
            continue
        where = Path(folder).resolve()
        if where == out_r or out_r in where.parents:
            kind = "file" if where.is_file() else "folder"
            raise UsageError(f"holds the {option} input ({folder}); 'weakstil {command}' replaces its --out folder "
                             "whole, and the input would go with it", path=out,
                             fix=f"choose an --out that does not hold the {option} {kind} (or move the {kind} "
                                 "out of it)")


def check_sidecar_replaceable(path: str | Path, main: str | Path, kind_class: Any) -> None:
    """Before a per-slide writer replaces ``path`` (e.g. ``<slide_id>.geojson``), written beside its
    ``main`` file (``<slide_id>.h5`` of ``kind_class``): an existing ``path`` without our ``main`` file
    beside it is not ours (we write both), e.g. a pathologist's annotation, and is refused, unless the
    GeoJSON itself says the same command wrote it (its main file deleted or damaged: the slide is redone)."""
    from weakstil.annotations import geojson_written_by
    from weakstil.files import kind_of

    path, main = Path(path), Path(main)
    if not path.exists() or geojson_written_by(path) == kind_class.MADE_BY:
        return
    try:
        ours = main.is_file() and kind_of(main) == kind_class.KIND
    except WeakSTILError:
        ours = False
    if not ours:
        raise WeakSTILError(f"exists, and no {kind_class.WHAT} beside it says '{kind_class.MADE_BY}' wrote it "
                            "(an annotation?); not replacing it", path=path,
                            fix=f"give '{kind_class.MADE_BY}' its own --out folder (or delete {path.name} if an "
                                f"earlier '{kind_class.MADE_BY}' wrote it)")


# --- evaluate / report folders: only ours, never inside a model, all or nothing ------------------------


def model_folder_around(folder: str | Path) -> Path | None:
    """The trained-model folder (``model.json`` beside ``model.safetensors`` or the ``train``
    marker) that ``folder`` is, or lies inside; ``None`` when there is none."""
    from weakstil.modeldir import META_FILE, WEIGHTS_FILE
    folder = Path(folder).resolve()
    for above in (folder, *folder.parents):
        if (above / META_FILE).is_file() and ((above / WEIGHTS_FILE).is_file() or commands_of(above)[:1] == ["train"]):
            return above
    return None


#: Commands whose --overwrite replaces their whole output folder (the per-slide ones replace files).
WHOLE_FOLDER_COMMANDS = ("train", "evaluate", "report", "pretrain", "tumorbed train")


def replaced_folder_around(path: str | Path) -> Path | None:
    """The folder that ``path`` is, or lies inside, which a rerun with ``--overwrite`` replaces as a
    whole (a model, an evaluation, a report, an encoder, a detector); ``None`` when there is none.
    Files of one's own kept there (e.g. corrected beds) would be lost."""
    model = model_folder_around(path)
    if model is not None:
        return model
    path = Path(path).resolve()
    return next((above for above in (path, *path.parents)
                 if set(commands_of(above)) & set(WHOLE_FOLDER_COMMANDS)), None)


def check_score_out(out: str | Path) -> None:
    """Before ``weakstil score`` (or the napari widget) writes into ``out``: not another command's
    folder (its files have the same names), not inside a folder that a rerun with --overwrite
    replaces whole (a model's, whose ``train --overwrite`` would delete the scores)."""
    others = commands_of(out)
    if others and "score" not in others:  # another command's folder: refused before anything is written into it
        raise UsageError(f"was written by 'weakstil {others[0]}'; score writes results.csv and per-slide files of "
                         "the same names", path=out, fix="give 'weakstil score' its own --out folder")
    inside = replaced_folder_around(out)
    if inside is None:
        return
    # a model folder may lack the marker (model.json beside its weights): 'train' wrote it
    command = next((c for c in commands_of(inside) if c in WHOLE_FOLDER_COMMANDS), "train")
    kind = KINDS.get(command, command)
    raise UsageError(f"is inside the {kind} folder {inside}, which 'weakstil {command} --overwrite' replaces whole",
                     path=out, fix=f"choose an --out outside the {kind} folder")


def check_features_out(out: str | Path) -> None:
    """Before ``weakstil embed`` writes ``<slide_id>.h5`` caches into ``out``: not another command's
    folder (a score, pretrain or tile folder), nor inside one that a rerun replaces whole (a model,
    its bundled encoder): the caches went in, and the folder's marker was rewritten as features."""
    check_per_slide_out(out, "embed", "a feature cache per slide")


def check_score_features(features: str | Path | None, cache_dir: str | Path | None = None) -> None:
    """``weakstil score --features DIR``: the caches score makes are written into DIR, so it is held
    to the rules of embed's ``--out`` (:func:`check_features_out`), said for ``--features``: a model
    folder given there got a ``<slide_id>.h5`` cache per slide and its marker rewritten. Without
    ``--features`` the caches go to ``cache_dir`` (``OUT/features``): a file there is one usage line
    (it was "File exists. Fix: check the file system", after the run had begun)."""
    if features is None:
        if cache_dir is not None and (Path(cache_dir).exists() or Path(cache_dir).is_symlink()) \
                and not Path(cache_dir).is_dir():
            raise UsageError("is a file, where 'weakstil score' keeps the feature caches it makes (OUT/features)",
                             path=cache_dir, fix="move it away, or pass --features DIR for the caches")
        return
    try:
        check_features_out(features)
    except UsageError as exc:
        where = exc.message.split(";")[0]  # "is the model folder of 'weakstil train'", "is inside the model folder M"
        raise UsageError(f"--features {where}: score writes the feature cache of each slide it embeds there",
                         path=exc.path, fix="pass the --out folder of 'weakstil embed', or leave out --features "
                                            "(the caches then go to OUT/features)") from None


def check_tiles_out(out: str | Path) -> None:
    """Before ``weakstil tile`` writes ``<slide_id>.h5`` and ``<slide_id>_tiles.png`` into ``out``:
    the same rules as :func:`check_features_out` (a tiles folder of its own, or one no command wrote)."""
    check_per_slide_out(out, "tile", "a tiles file and an overlay PNG per slide")


def check_per_slide_out(out: str | Path, command: str, what: str) -> None:
    """A per-slide writer's ``--out`` (a :class:`UsageError`, before any work): never another
    command's folder (the folder's first writer owns it), nor inside a folder that a rerun with
    ``--overwrite`` replaces whole (a model, an encoder, an evaluation, a report, a detector)."""
    others = commands_of(out)
    if others and others[0] != command:  # the folder's first writer owns it
        raise UsageError(f"is the {KINDS.get(others[0], others[0])} folder of 'weakstil {others[0]}'; {command} writes "
                         f"{what}", path=out, fix=f"give 'weakstil {command}' a folder of its own (--out)")
    check_not_inside_replaced(out, command)


def check_not_inside_replaced(out: str | Path, command: str) -> None:
    """``out`` is not, nor lies inside, a folder that a rerun with ``--overwrite`` replaces whole (a
    model, an encoder, an evaluation, a report, a detector): what ``command`` wrote there would go
    with it (a :class:`UsageError`)."""
    inside = replaced_folder_around(out)
    if inside is not None:
        whole = next((c for c in commands_of(inside) if c in WHOLE_FOLDER_COMMANDS), "train")
        kind = KINDS.get(whole, whole)
        raise UsageError(f"is {'the' if Path(out).resolve() == inside else 'inside the'} {kind} folder {inside}",
                         path=out, fix=f"give 'weakstil {command}' a folder of its own (--out), outside it")


def check_out_folder(out: str | Path, command: str, *, overwrite: bool) -> None:
    """Before ``evaluate``/``report`` writes ``out``: never inside a model folder (its ``cv/``
    holds the cross-validation), never another command's folder or a non-empty folder without our
    marker, and an existing folder of ``command``'s own only with ``overwrite``."""
    model = model_folder_around(out)
    if model is not None and model == Path(out).resolve():
        check_own_folder(out, command, overwrite=overwrite)  # the model itself: 'written by weakstil train'
    if model is not None:
        raise UsageError(f"is inside the model folder {model}; 'weakstil {command}' does not write into a model "
                            "(its cv/ holds the cross-validation results)", path=out,
                            fix=f"give 'weakstil {command}' an --out outside the model folder")
    check_own_folder(out, command, overwrite=overwrite)


@contextlib.contextmanager
def staged_folder(out: str | Path, command: str, *, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary folder beside ``out`` to write the outputs into; on success it gets the
    marker of ``command`` and replaces ``out`` (so files of a previous run, e.g. another cohort's
    ``tiles/*.h5``, are gone), on any failure or interruption it is removed and ``out`` stays as
    it was. Call with the folder's lock held (:func:`weakstil.locks.hold_folder`)."""
    out = Path(out)
    check_out_folder(out, command, overwrite=overwrite)  # again, under the lock
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{glob_escape(out.name)}.tmp-*"):  # a killed run's: the lock is ours
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        mark(tmp, command)
        if out.exists():
            check_out_folder(out, command, overwrite=overwrite)
            old = tmp.with_name(f"{tmp.name}-old")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_complete(folder: str | Path, command: str = "evaluate") -> bool:
    """Whether ``folder`` is a finished output of ``command`` (it carries that command's marker)."""
    return commands_of(folder)[:1] == [command]
