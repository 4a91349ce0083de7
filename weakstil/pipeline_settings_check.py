"""The cohort workflow's settings, checked with the rules of the commands its jobs run.

``pipelines/Snakefile`` hands most settings to ``weakstil`` commands (``mpp`` to ``weakstil tile
--mpp``, ``epochs`` to ``weakstil train --epochs``, ``train_extra`` to ``weakstil train`` as they
stand). :func:`settings_problems` parses each of them with that command's own parser, without
running it: the same types, ranges (:mod:`weakstil.settings`, :mod:`weakstil.cli.options`),
choices and device names, then the training settings as a whole with ``TrainConfig.check()``. So a
value a job would refuse is found before the run, not in a cluster job hours later. Also: every
setting but ``score_slides`` and ``slurm`` is one value, and every ``score_slides`` entry names a
slide file (a glob pattern: matches one).

Every problem is a :class:`~weakstil.errors.WeakSTILError` naming the key and, when known, where
it was set (a config file or a ``--config`` override); :mod:`weakstil.pipeline_preflight` reports
them together with its other checks.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import shlex
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

from weakstil.errors import WeakSTILError

log = logging.getLogger(__name__)

#: Each key -> the commands and options pipelines/Snakefile's rules pass it to.
JOB_OPTIONS: dict[str, tuple[tuple[str, str], ...]] = {
    "out": (("tile", "--out"),),
    "mpp": (("tile", "--mpp"),),
    "tile_size": (("tile", "--tile-size"),),
    "tissue_threshold": (("tile", "--tissue-threshold"),),
    "slide_mpp": (("tile", "--slide-mpp"),),
    "device": (("embed", "--device"), ("train", "--device"), ("score", "--device")),
    "folds": (("train", "--folds"),),
    "aggregator": (("train", "--aggregator"),),
    "epochs": (("train", "--epochs"),),
    "members": (("train", "--members"),),
    "seed": (("train", "--seed"), ("tumorbed train", "--seed")),
    "threshold": (("train", "--threshold"),),
    "threads": (("train", "--threads"), ("score", "--workers")),
    "group_column": (("train", "--group-column"),),
    "tumorbed_max_slides": (("tumorbed train", "--max-slides"),),
}
#: Keys the Snakefile leaves out of the command line when they are null or "" (its ``opt()``).
OMITTED_WHEN_NULL = {"slide_mpp", "device", "group_column"}
#: Each command's other arguments in its job, with stand-in paths (only the settings are checked).
BASE_ARGS: dict[str, list[str]] = {
    "tile": ["slide.svs", "--out", "."],
    "embed": ["slide.svs", "--out", ".", "--encoder", "small-cnn"],
    "train": ["cohort.csv", "--features", ".", "--out", "."],
    "tumorbed train": ["--features", ".", "--annotations", ".", "--out", "."],
    "score": ["slide.svs", "--model", ".", "--out", "."],
}
#: Options the train rule (pipelines/Snakefile) always gives, not to be given again in train_extra
#: (--device, --group-column and the bed options only when set: they may come from train_extra;
#: :func:`workflow_train_options`; their short spellings, -f and -o, come from the command: :func:`_spellings`).
WORKFLOW_TRAIN_OPTIONS = {"--features", "--out", "--overwrite", "--folds", "--aggregator", "--epochs", "--members",
                          "--seed", "--threshold", "--threads"}
#: The texts a YAML file reads as null: ``--config KEY=null`` arrives in the Snakefile as such a text.
#: Not "None": YAML reads it as text, and group_column None means "no groups" to weakstil train.
YAML_NULLS = ("null", "Null", "NULL", "~")


def yaml_nulls(config: dict) -> dict:
    """``config`` with each top-level YAML-null text made null, in place: the one reading of a
    setting the Snakefile and ``weakstil preflight`` share."""
    for key, value in list(config.items()):
        if isinstance(value, str) and value.strip() in YAML_NULLS:
            config[key] = None
    return config


def workflow_train_options(config: dict) -> set[str]:
    """The options the train rule gives with this config (see WORKFLOW_TRAIN_OPTIONS): given again in
    train_extra, the later would win silently while settings.json and the report show the config's."""
    taken = set(WORKFLOW_TRAIN_OPTIONS)
    taken |= {"--device"} if config.get("device") not in (None, "") else set()
    taken |= {"--group-column"} if config.get("group_column") not in (None, "") else set()
    taken |= {"--tumorbed-beds"} if config.get("annotations") or config.get("tumorbed") else set()
    taken |= {"--tumorbed"} if config.get("tumorbed") else set()
    return taken
#: Settings that are lists or sections; every other one is a single value.
NOT_SCALAR = {"score_slides", "slurm"}
#: Settings that name a file, folder or card: text, and set unless null is allowed (True).
PATHS = {"cohort": False, "out": False, "encoder": False, "weights": True, "annotations": True, "tumorbed": True}
#: The path settings whose files are the rules' inputs or outputs, where Snakemake reads { and } as wildcards.
RULE_PATHS = ("cohort", "out", "annotations", "tumorbed")


def braces_problem(path: str) -> str | None:
    """Why ``path`` cannot be a rule's input or output (Snakemake: a wildcard; a WildcardError), or None."""
    return "Snakemake reads { and } in a path as wildcards" if "{" in path or "}" in path else None


class WorkflowConfig(dict):
    """A workflow configuration (what Snakemake's ``config`` holds) and, in ``sources``, where each
    (dotted) key was last set: a config file or a ``--config KEY=VALUE`` override."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sources: dict[str, str] = {}

    def merge(self, data: dict, source: str) -> None:
        """``data`` on top, nested sections key by key (like Snakemake's ``--configfile``)."""
        _deep_update(self, data)
        self._record(data, source, "")

    def _record(self, data: dict, source: str, prefix: str) -> None:
        for key, value in data.items():
            self.sources[f"{prefix}{key}"] = source
            if isinstance(value, dict):
                self._record(value, source, f"{prefix}{key}.")


def _deep_update(base: dict, new: dict) -> dict:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def one_error(errors: list[WeakSTILError], kind: type[WeakSTILError] = WeakSTILError) -> WeakSTILError:
    """One error (of ``kind``) for the user: the only one, or one line listing them all, each with its fix."""
    if len(errors) == 1:
        e = errors[0]
        return e if isinstance(e, kind) else kind(e.message, path=e.path, fix=e.fix)
    return kind(f"{len(errors)} problems in the workflow config: " + "; ".join(
        f"({i}) {e.path + ': ' if e.path else ''}{e.message.rstrip('.')}" + (f" (fix: {e.fix.rstrip('.')})" if e.fix
                                                                           else "") for i, e in enumerate(errors, 1)))


@functools.lru_cache(maxsize=1)
def _commands() -> dict[str, Any]:
    """The click commands of the jobs' ``weakstil`` commands (the CLI's own functions and options)."""
    import typer

    from weakstil.cli import cohort, score, slides, stage1, tumorbed

    app = typer.Typer()
    for name, function in (("tile", slides.tile), ("embed", stage1.embed), ("train", cohort.train),
                           ("score", score.score), ("tumorbed train", tumorbed.tumorbed_train)):
        app.command(name)(function)
    return dict(typer.main.get_command(app).commands)


def _parse(command: str, args: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    """``weakstil COMMAND ARGS`` parsed as the CLI does (types, ranges, choices), not run:
    (its parameters, None), or (None, why it is refused)."""
    import sys

    import typer

    # click's exception base (typer >= 0.29 vendors click as typer._click; earlier typers use click itself)
    click_errors = tuple({cls for cls in (getattr(typer, "TyperException", None),
                                          getattr(sys.modules.get("click"), "ClickException", None))
                          if isinstance(cls, type)})
    try:
        ctx = _commands()[command].make_context(f"weakstil {command}", list(args))
    except click_errors as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        message = " ".join(message.split()).rstrip(".")
        return None, message[:1].lower() + message[1:]
    return ctx.params, None


@functools.cache
def _base_parses(command: str) -> bool:
    """Whether the job's command line without the settings parses: a command whose arguments
    changed (BASE_ARGS out of date) must not turn every setting into a problem of the user's."""
    _, why = _parse(command, BASE_ARGS[command])
    if why is not None:
        log.warning("the workflow settings passed to 'weakstil %s' are not checked before the run: %s", command, why)
    return why is None


def _where(sources: dict[str, str], key: str) -> tuple[str, str]:
    """Where ``key`` was set, for a message and for its fix."""
    source = sources.get(key)
    if source is None:
        return "", "in the workflow config (--configfile / --config)"
    if source.startswith("--config"):
        return f" (from {source})", f"in the override {source}"
    return f" (in {source})", f"in {source}"


def _problem(sources: dict[str, str], key: str, value: Any, reason: str, fix: str | None = None) -> WeakSTILError:
    where, fix_where = _where(sources, key)
    reason = reason.split(" Fix: ", 1)[0]  # an option's own fix speaks of its flag, not of the key
    shown = "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)  # as YAML
    return WeakSTILError(f"{key} is {shown}{where}: {reason.rstrip('.')}",
                         fix=fix or f"correct {key} {fix_where}; pipelines/config.yaml documents it")


def _option_args(config: dict, key: str, flag: str) -> list[str]:
    value = config[key]
    if key in OMITTED_WHEN_NULL and value in (None, ""):
        return []
    return [flag, str(value)]


def _scalar_problems(config: dict, sources: dict[str, str]) -> dict[str, WeakSTILError]:
    """Lists or sections where one value belongs; paths that are not text, or not set."""
    problems = {key: _problem(sources, key, value, f"a {'list' if isinstance(value, list) else 'section'}, not one "
                              "value", fix=f"give {key} a single value {_where(sources, key)[1]}")
                for key, value in config.items() if key not in NOT_SCALAR and isinstance(value, (list, dict))}
    for key, optional in PATHS.items():
        value = config.get(key)
        if key in RULE_PATHS and isinstance(value, str) and braces_problem(value) and key not in problems:
            problems[key] = _problem(sources, key, value, braces_problem(value),
                                     fix=f"set {key} to a path without braces {_where(sources, key)[1]} (rename the "
                                         "file or folder)")
            continue
        if key in problems or key not in config or (optional and value in (None, "")) or (isinstance(value, str) and value):
            continue
        problems[key] = _problem(sources, key, value, "not set" if value in (None, "") else "not a path or name",
                                 fix=f"set {key} to a path {_where(sources, key)[1]} (quote one YAML reads as a "
                                     f"number: {key}: '2024')" if value not in (None, "") else None)
    return problems


def _option_problems(config: dict, sources: dict[str, str], skip: set[str]) -> dict[str, WeakSTILError]:
    """Each key passed to a command, parsed alone by that command (so every bad key is found)."""
    problems: dict[str, WeakSTILError] = {}
    for key, uses in JOB_OPTIONS.items():
        if key not in config or key in skip:
            continue
        for command, flag in uses:
            if not _base_parses(command):
                continue
            _, why = _parse(command, BASE_ARGS[command] + _option_args(config, key, flag))
            if why is not None:
                problems[key] = _problem(sources, key, config[key], f"weakstil {command} refuses it: {why}")
                break
    return problems


def _spellings(command: str, options: set[str]) -> dict[str, str]:
    """Every spelling of ``options`` in ``weakstil COMMAND`` (``-f`` of ``--features``...) -> the one in ``options``."""
    spellings = {option: option for option in options}
    for param in _commands()[command].params:
        names = [*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())]
        named = [n for n in names if n in options]
        if named:
            spellings.update({n: named[0] for n in names if n not in options})
    return spellings


def _train_problems(config: dict, sources: dict[str, str], skip: set[str]) -> dict[str, WeakSTILError]:
    """``train_extra`` parsed by ``weakstil train``, then the whole training command line's
    settings checked together by ``TrainConfig.check()``, as the train job does."""
    from weakstil.mil.config import TrainConfig

    if not _base_parses("train"):
        return {}
    extra = config.get("train_extra") or ""
    try:
        extra_args = shlex.split(str(extra))
    except ValueError as exc:
        return {"train_extra": _problem(sources, "train_extra", extra, f"not a command line ({exc})")}
    # the options the train rule sets itself: repeated in train_extra (in any spelling: -f is --features,
    # -fDIR too), the last would win silently
    spellings = _spellings("train", workflow_train_options(config))
    given = {a.split("=", 1)[0] if a.startswith("--") else a[:2] for a in extra_args if a.startswith("-")}
    taken = sorted({spellings[a] for a in given if a in spellings})
    if taken:
        return {"train_extra": _problem(sources, "train_extra", extra, f"sets {', '.join(taken)}, which the workflow "
                                        "sets itself (use the workflow's own keys: folds, out, seed, device, "
                                        "group_column, ...)")}
    _, why = _parse("train", BASE_ARGS["train"] + extra_args)
    if why is not None:
        return {"train_extra": _problem(sources, "train_extra", extra, f"weakstil train refuses it: {why}")}
    keys = [key for key, uses in JOB_OPTIONS.items() if key in config and any(c == "train" for c, _ in uses)]
    if skip & set(keys):  # already reported: the whole line says nothing more
        return {}
    args = BASE_ARGS["train"] + [a for key in keys for a in _option_args(config, key, dict(JOB_OPTIONS[key])["train"])]
    params, why = _parse("train", args + extra_args)
    what = f"the training settings ({', '.join(keys)}, train_extra)"
    if params is None:  # each part alone was fine: an option that depends on another
        return {"train": WeakSTILError(f"{what}: weakstil train refuses them: {why}",
                                       fix="correct them in the workflow config")}
    names = {f.name for f in fields(TrainConfig)}
    values = {k: getattr(v, "value", v) for k, v in params.items() if k in names and v is not None}
    try:
        TrainConfig(**values).check()
    except WeakSTILError as exc:
        return {"train": WeakSTILError(f"{what}: {exc.message}", fix=exc.fix)}
    return {}


def expand_pattern(pattern: str) -> list[str]:
    """A ``score_slides`` entry's files: a glob's matches, sorted (``**`` any depth, as ``expand_slides``); a
    path that exists (brackets and all) or names nothing, as written; a leading ``~`` is the home folder."""
    pattern = pattern if os.path.lexists(pattern) else os.path.expanduser(pattern)
    return sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) and not os.path.lexists(pattern) else [pattern]


def _score_slides_problems(config: dict, sources: dict[str, str]) -> dict[str, WeakSTILError]:
    """Every ``score_slides`` entry names a slide file, or is a glob pattern matching one (the
    Snakefile's rule, relative to the directory Snakemake runs in)."""
    patterns = config.get("score_slides") or []
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        return {"score_slides": _problem(sources, "score_slides", config.get("score_slides"),
                                         "not a list of slide files or glob patterns",
                                         fix='write e.g. score_slides: [new/a.svs, "new/*.svs"], or []')}
    missing = []
    for pattern in patterns:
        matches = expand_pattern(pattern)
        if not matches or not Path(matches[0]).is_file():
            missing.append(pattern)
    if not missing:
        return {}
    source, fix_where = sources.get("score_slides"), _where(sources, "score_slides")[1]
    what = "path or pattern" if len(missing) == 1 else "paths or patterns"
    return {"score_slides": WeakSTILError(  # the Snakefile's own message, when it runs without a preflight
        f"{', '.join(missing)} (score_slides{' in ' + source if source else ''}): no slide file matches",
        fix=f"correct the {what} {fix_where} (relative to the directory Snakemake runs in)")}


def settings_problems(config: dict, sources: dict[str, str] | None = None) -> dict[str, WeakSTILError]:
    """Key -> its problem (see the module doc), in the order found; empty when every setting is
    one the jobs will accept. ``sources``: dotted key -> the file or ``--config`` that set it."""
    sources = sources or {}
    problems = _scalar_problems(config, sources)
    problems.update(_option_problems(config, sources, skip=set(problems)))
    problems.update(_train_problems(config, sources, skip=set(problems)))
    problems.update(_score_slides_problems(config, sources))
    threads = config.get("threads")
    if "threads" not in problems and not isinstance(threads, bool) and str(threads).strip().lstrip("-").isdigit() \
            and int(str(threads)) < 1:
        # train reads --threads 0 as "every core", but the value is also each job's Snakemake threads
        # (its share of --cores, SLURM's cpus-per-task): a job of 0 threads is no job a scheduler runs
        problems["threads"] = _problem(sources, "threads", threads, "every job needs at least 1 thread",
                                       fix=f"set threads to 1 or more {_where(sources, 'threads')[1]}")
    command = config.get("weakstil")
    if "weakstil" not in problems and command not in (None, ""):
        why = _command_problem(command)
        if why:
            problems["weakstil"] = _problem(sources, "weakstil", command, why, fix="set weakstil to the command that "
                                            f"runs WeakSTIL on the nodes, or null for this Python's -m weakstil "
                                            f"{_where(sources, 'weakstil')[1]}")
    slurm = config.get("slurm")
    if slurm is not None and not isinstance(slurm, dict):
        problems["slurm"] = _problem(sources, "slurm", slurm, "not a section of settings",
                                     fix="write slurm: as the keys under it in pipelines/config.yaml, or leave it out")
    elif slurm and "preflight" in slurm and not isinstance(slurm["preflight"], bool):
        # snakemake --config 'slurm={preflight: false}' reads it as the text 'false', which counts as true
        problems["slurm.preflight"] = _problem(sources, "slurm.preflight", slurm["preflight"],
                                               "not true or false (any text would count as true)",
                                               fix="write slurm.preflight: true or false in a config file "
                                                   "(--configfile)")
    return problems


def outlines(annotations: str, names) -> list:
    """The outlines of ``names`` in ``annotations``; one holding { or } (a slide id P{1}) is refused: a rule's input."""
    from weakstil.annotations import find_annotation

    found = [f for f in (find_annotation(annotations, n) for n in names) if f]
    if bad := next((str(f) for f in found if braces_problem(str(f))), None):
        raise WeakSTILError(f"{bad}: {braces_problem(bad)}", fix="rename it (and that slide_id) without braces")
    return found


def _command_problem(command: Any) -> str | None:
    """Why the ``weakstil`` setting is no command every job could start, or None (each job would exit 127)."""
    try:
        words = shlex.split(str(command))
    except ValueError as exc:
        return f"not a command line ({exc})"
    return "not a command" if not words else None if shutil.which(words[0]) else \
        f"{words[0]}: command not found (on PATH, or an executable file)"


def check_detector_setting(tumorbed: str | Path, encoder: object) -> None:
    """The ``tumorbed`` key: a detector folder (an MIL model folder or a damaged detector is refused
    here, not after every slide was embedded) trained on the workflow's ``encoder``."""
    from weakstil.encoders.cards import load_card
    from weakstil.tumorbed.detector import TumorBedDetector

    fix = "set tumorbed to a 'weakstil tumorbed train' folder, 'train', or null"
    try:
        detector = TumorBedDetector.load(tumorbed)
    except WeakSTILError as exc:
        raise WeakSTILError(f"{exc.message} (the `tumorbed` key)", path=tumorbed, fix=fix) from None
    try:
        name = load_card(str(encoder)).name
    except WeakSTILError:
        return  # the encoder check says what is wrong with it
    trained_on = detector.encoder_key[0]
    if trained_on is not None and trained_on != name:
        raise WeakSTILError(f"the tumour-bed detector was trained on encoder '{trained_on}', the workflow embeds "
                            f"with '{name}' (the `tumorbed` key)", path=tumorbed, fix=fix)


def score_slide_files(config: dict, cohort_paths, cohort_ids=None) -> tuple[dict[str, str], list[str], list[str]]:
    """Slide key (file name without extension, as ``weakstil tile/embed`` name their outputs) -> slide
    file, for the cohort (``cohort_paths``) and ``score_slides`` (globs expanded, relative to the
    directory Snakemake runs in); the score slides' keys in order; the cohort's keys. A path that is a
    symbolic link is named after the link, as the commands (and ``weakstil train``'s look-up) name it.
    Refused, by the Snakefile and by ``weakstil preflight`` alike: two files with one key (they would
    write the same outputs), and a file whose key is the cohort slide id (``cohort_ids``) of another
    file (its features/<id>.h5 would be taken for that cohort slide's)."""
    from weakstil.slide import slide_id_from_path

    files: dict[str, str] = {}
    score: list[str] = []
    owners = {str(sid): os.path.abspath(p) for sid, p in zip(cohort_ids, cohort_paths)} if cohort_ids is not None else {}

    def same(a: str, b: str) -> bool:
        return a == b or (os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b))

    def add(path: str, where: str) -> str:
        if braces_problem(path):  # a rule's input: Snakemake would stop on it with a WildcardError
            raise WeakSTILError(f"{path} ({where}): {braces_problem(path)}", fix="rename the slide file (or its "
                                "folder) without braces")
        key = slide_id_from_path(path)
        if key in files and not same(files[key], path):
            raise WeakSTILError(f"{path} ({where}) and {files[key]} both have the slide id '{key}' and would write "
                                "the same outputs", fix="rename one of the files")
        if key in owners and not same(owners[key], path):
            raise WeakSTILError(f"{path} ({where}) is named '{key}', the slide id of cohort slide {owners[key]} in "
                                f"{config.get('cohort')}: its features/{key}.h5 would be taken for that slide's",
                                fix="rename the file (or that cohort slide's slide_id)")
        files.setdefault(key, path)
        return key

    # abspath, not resolve(): a link keeps its own name
    cohort = [add(os.path.abspath(path), str(config.get("cohort"))) for path in cohort_paths]
    patterns = config.get("score_slides") or []
    for pattern in [patterns] if isinstance(patterns, str) else patterns:
        matches = expand_pattern(pattern)
        score += [add(os.path.abspath(m), "score_slides") for m in matches if Path(m).is_file()]
    return files, list(dict.fromkeys(score)), cohort


def embed_threads(threads: int, device: object, gpu: bool) -> tuple[int, int]:
    """(decode workers, torch threads) of an embed job of ``threads`` CPUs (its Snakemake threads,
    SLURM's cpus-per-task), split as ``weakstil embed`` splits a machine's cores: left to itself it
    plans for every core of the machine, and jobs side by side would oversubscribe it. ``gpu``: the
    job will find a GPU (for device ``auto``)."""
    from weakstil.runtime import plan_threads

    cuda = str(device).startswith("cuda") or (str(device) == "auto" and gpu)
    return plan_threads("cuda" if cuda else "cpu", cpus=max(1, int(threads)))
