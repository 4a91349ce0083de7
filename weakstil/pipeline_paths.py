"""Where a relative path of the workflow config is read from, for the preflight's error lines; one
spelling of each path for the workflow's jobs; a file's content digest for a job's params.

Snakemake reads every relative path of the config (``cohort``, ``annotations``, ``tumorbed``,
``weights``) from the directory it runs in, not from the folder of the ``--configfile`` that set it.
Run from another folder, a config that works beside its cohort failed with ``cohort CSV not found.
Fix: check the path``, although the file was there: the line now says which directory the path was
read from and, when the path exists beside the config file that set it, which folder to run from.
"""

from __future__ import annotations

from pathlib import Path


def relative_path_hint(config: dict, key: str) -> str:
    """A note for a missing ``key`` path: read from the working directory, and found beside its
    config file (if it is). Empty for an absolute path, one that exists, or no path."""
    value = config.get(key)
    if not isinstance(value, str) or not value.strip() or Path(value).is_absolute() or Path(value).exists():
        return ""
    cwd = Path.cwd()
    note = f"relative paths are read from the directory Snakemake runs in, {cwd}"
    source = getattr(config, "sources", {}).get(key)
    if source and not source.startswith("--config") and Path(source).is_file():
        folder = Path(source).resolve().parent
        if (folder / value).exists():
            note += f"; {value} is beside {source}: run Snakemake from {folder} or set {key} to {folder / value}"
    return note


def with_path_hint(text: str, config: dict, key: str) -> str:
    """``text``, with :func:`relative_path_hint` after a semicolon when there is one."""
    hint = relative_path_hint(config, key)
    return f"{text}; {hint}" if hint else text


def file_digest(path: str | Path) -> str:
    """The first 16 hex digits of a file's sha256, for a workflow job that reads the file (the cohort
    CSV, an annotation) to take as a param: another file copied over it with an older time (``cp -p``,
    ``rsync -a``) changes the param, and Snakemake's params trigger redoes the job where its file
    times alone saw nothing to do."""
    from weakstil.runtime import sha256_file

    return sha256_file(path)[:16]


def workflow_path(value: str | Path) -> str:
    """One spelling of a path the workflow reads (``cohort``, ``annotations``, ``tumorbed``...): relative
    to the directory Snakemake runs in when inside it, absolute otherwise, normalised (no ``./``,
    ``a/../``, trailing ``/``). Snakemake keys its records of a job (params, command, input files) by the
    paths as written: an absolute ``cohort`` or ``annotations`` redid every tumour bed and the training
    for the same files. (Not for ``out``: a target on the command line must match the outputs as
    written, see :func:`out_respelt`.)"""
    import os

    full = os.path.normpath(os.path.abspath(value))
    inside = os.path.relpath(full, os.getcwd())
    return full if inside == os.pardir or inside.startswith(os.pardir + os.sep) else inside


class Unrecorded:
    """A workflow param value Snakemake does not record (it records numbers, text and containers),
    formatted into the job's shell command as ``text``:

    * empty: a content param (:func:`file_digest`) of a job that reads no such file, so adding that
      param leaves the job's recorded params as they were and an existing output is not redone for it;
    * a command as it runs (:func:`as_run`): with the interpreter's path, the torch ``device`` and the
      slide file's path, none of which is one of the job's settings. Its ``settings`` param records the
      same command without them (the slide by its content fingerprint): a moved or recreated venv,
      another ``device`` or slides moved to another folder re-tiled and re-embedded every slide."""

    __slots__ = ("text",)

    def __init__(self, text: str = "") -> None:
        self.text = str(text)

    def __str__(self) -> str:
        return self.text

    def __format__(self, spec: str) -> str:
        return format(self.text, spec)

    def __repr__(self) -> str:
        return f"Unrecorded({self.text!r})" if self.text else "Unrecorded()"


def as_run(command: str) -> Unrecorded:
    """A job's command as it runs, left out of Snakemake's records (see :class:`Unrecorded`)."""
    return Unrecorded(command)


UNRECORDED = Unrecorded()


def out_respelt(out: str) -> str | None:
    """The spelling of ``out`` the last run used (its ``settings.json``), when it names the same folder
    another way (absolute instead of relative...), else ``None``. Snakemake keys its records of every
    job by the output paths as written: under another spelling it found none, and a changed setting
    (new ``epochs``) redid nothing ("Nothing to be done"). ``out`` keeps its spelling (targets given on
    the command line must match it), so the run is refused with the spelling to use."""
    import json
    import os

    try:
        last = json.loads((Path(out) / "settings.json").read_text(encoding="utf-8")).get("out")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(last, str) or Path(last) == Path(out):
        return None
    try:
        return last if os.path.samefile(last, out) else None
    except OSError:
        return None


#: The directory the last run of an `out` folder ran in (its Snakemake records are in its `.snakemake/`).
RUN_DIR_RECORD = ".snakemake-workdir.json"


def other_run_dir(out: str | Path) -> str | None:
    """The directory another run wrote ``out`` from, when it is not this one and still holds Snakemake's
    records (``.snakemake/``), else ``None``. Snakemake keeps its records of every job (params, code,
    inputs) in the directory it runs in: run from elsewhere into the same absolute ``out``, it found
    none and said "Nothing to be done" for a changed setting (``mpp``, ``encoder``: the old features
    kept), and two runs from two directories wrote the same files at once (each its own lock)."""
    import json
    import os

    try:
        last = json.loads((Path(out) / RUN_DIR_RECORD).read_text(encoding="utf-8")).get("workdir")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(last, str) or not (Path(last) / ".snakemake").is_dir():
        return None  # moved with its folder, or its records deleted: nothing to miss
    try:
        return None if os.path.samefile(last, os.getcwd()) else last
    except OSError:
        return None


def record_run_dir(out: str | Path) -> None:
    """Write the directory this run runs in into ``out`` (see :func:`other_run_dir`)."""
    import os

    from weakstil.atomic import write_json

    Path(out).mkdir(parents=True, exist_ok=True)
    write_json(Path(out) / RUN_DIR_RECORD, {"workdir": os.getcwd()}, indent=1)
