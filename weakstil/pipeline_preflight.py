"""The cohort workflow's checks before anything runs, and what each of its jobs asks of SLURM.

``pipelines/Snakefile`` calls :func:`check_workflow` while it is read (every run, dry runs included) and
:func:`check_slurm` just before the first job is submitted to SLURM; ``weakstil preflight`` runs both. Every problem
found ends the run with one ``error:`` line naming the setting and its fix, before a single job was started:

* every setting, with the rules of the command its jobs pass it to (:mod:`weakstil.pipeline_settings_check`);
* the cohort CSV: its slide files exist, labels are numbers in 0-100 (not all at most 1: fractions), slide ids
  are unique, the group column is present when named (``group_column`` or ``--group-column`` in ``train_extra``),
  groups >= ``folds`` >= 2; no score slide has a cohort or another score slide's id;
* the encoder card resolves and its weights can be found without a download on the compute nodes;
* ``annotations`` is a folder that outlines some cohort slide (the slides it does not outline: a warning, as the
  run's); ``tumorbed`` is a detector folder or ``train``;
* on SLURM, each kind of job (:func:`job_requests`) fits a node of its partition: the partition exists and
  is open, and a node has the GPUs (``gpu_model``), CPUs (``threads``), memory and wall time asked for
  (``auto`` memory: sized from the work, :func:`embed_mem_mb`, :func:`train_mem_mb`, at most the largest node's)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weakstil.errors import UsageError, WeakSTILError
from weakstil.pipeline_paths import with_path_hint
from weakstil.fingerprint import slide_fingerprint
from weakstil.pipeline_yaml import read_config_yaml, refused_tag
from weakstil.pipeline_reruns import given_mpps, group_column_of, group_option_of, mpp_sources, stale_without_records, unoutlined_warning
from weakstil.pipeline_settings_check import (WorkflowConfig, check_detector_setting, one_error, score_slide_files,
                                              settings_problems, yaml_nulls)
from weakstil.pipeline_slide_files import check_cohort_slides, unusable_score_slides
from weakstil.slurm_cluster import Cluster, JobRequest, Problem, check_request, partition_memory_mb, unusable_warning

log = logging.getLogger(__name__)

AUTO, CPU_MEM = "auto", "slurm.mem_mb"  # the `auto` memory setting; the setting of the light CPU jobs
#: Memory of the light CPU jobs (tile, tumorbed, evaluate, report, score): measured peaks are
#: 0.1-1.4 GB on small slides, under 2 GB for `weakstil score` of a 100,000-tile slide.
CPU_MEM_MB = 4000
#: What any WeakSTIL job holds before its data: Python, torch, decoding buffers (measured ~1 GB).
BASE_MEM_MB = 1500
#: Encoder weights are held about 3 times while loading (file, fp32 model, transfer); measured
#: peaks: small-cnn 1.1 GB, uni (ViT-L, 303 M parameters) 4.6 GB.
WEIGHT_COPIES = 3
#: The training feature bank holds every slide's features once, plus one slide being read.
FEATURE_COPIES = 1.5
#: Parameters (millions) of the built-in cards' networks, so sizing needs no torch import;
#: tests/test_pipeline_preflight.py checks them against the networks themselves.
ENCODER_PARAMS_M = {"small-cnn": 1.2, "kaiko-vits16": 21.7, "lunit-dino-vits16": 21.7, "ctranspath": 27.5,
                    "lunit-swav-resnet50": 23.5, "uni": 303.4, "virchow": 631.2, "uni2-h": 681.4,
                    "h-optimus-0": 1134.8}
DEFAULT_SLURM = {"partition": "cpu", "gpu_partition": "gpu", "gpus_per_embed": 1, "gpu_model": None,
                 "account": None, "mem_mb": CPU_MEM_MB, "embed_mem_mb": AUTO, "train_mem_mb": AUTO,
                 "runtime": 60, "embed_runtime": 120, "train_runtime": 240, "preflight": True}


#: The most memory one job can get per partition, learnt by :func:`check_slurm` before the first
#: submission: an ``auto`` request never asks more (SLURM would refuse the job outright).
PARTITION_MEMORY_MB: dict[str, int] = {}


class PreflightError(WeakSTILError):
    """The workflow's settings, cohort or cluster cannot run it."""


class OverrideSyntaxError(PreflightError, UsageError):
    """A ``--config`` that is not ``KEY=VALUE`` with a YAML value: a wrong command line (exit 2)."""


def _round_up(mb: float, step: int = 500) -> int:
    return int(math.ceil(mb / step) * step)

# --- memory sizing ------------------------------------------------------------------------
def encoder_params_m(encoder: str) -> float:
    """Parameters (millions) of an encoder card's network: from the table of built-in cards (a pretrain
    folder counts as the card it started from), else built on torch's meta device (no memory)."""
    from weakstil.encoders.cards import load_card

    card = load_card(encoder)
    for name in (card.name, card.base):
        if name in ENCODER_PARAMS_M and card.model_kwargs == load_card(name).model_kwargs:
            return ENCODER_PARAMS_M[name]
    import torch

    from weakstil.encoders.factory import build_model

    with torch.device("meta"):
        model = build_model(card)
    return sum(p.numel() for p in model.parameters()) / 1e6


def embed_mem_mb(params_m: float, embed_dim: int, n_tiles: int = 0) -> int:
    """Memory (MB) of one embed job: base, encoder weights, the slide's features (computed, then written)."""
    return _round_up(BASE_MEM_MB + WEIGHT_COPIES * params_m * 4 + n_tiles * embed_dim * 4 * 2 / 1e6)


def train_mem_mb(features_mb: float) -> int:
    """Memory (MB) of the train (or detector) job that holds ``features_mb`` of feature files."""
    return _round_up(BASE_MEM_MB + 500 + FEATURE_COPIES * features_mb)


def tile_count(tiles_h5: str | Path) -> int:
    """Tiles of a slide, from its ``weakstil tile`` file (0 while it does not exist yet)."""
    from weakstil.files import TilesFile
    if not Path(tiles_h5).is_file():
        return 0
    try:
        _, shapes = TilesFile.read_header(tiles_h5)
    except WeakSTILError:  # an unreadable file fails its embed job with a clear line; size it as empty
        return 0
    return int(shapes.get("coords", (0,))[0])


# --- settings -> job requests -------------------------------------------------------------
def slurm_settings(config: dict) -> dict:
    """The ``slurm:`` section with every key present (defaults for the missing ones)."""
    section = config.get("slurm") or {}
    if not isinstance(section, dict):
        raise PreflightError(f"slurm is {section!r}, not a section of settings",
                             fix="write slurm: as the keys under it in pipelines/config.yaml, or leave it out")
    return {**DEFAULT_SLURM, **section}


def _mem_setting(value: Any, key: str) -> int | str:
    if value is None or str(value).strip().lower() == AUTO:
        return AUTO
    try:
        mb = int(value)
    except (TypeError, ValueError):
        raise PreflightError(f"slurm.{key} is {value!r}, not a number of MB or 'auto'",
                             fix=f"set slurm.{key} to e.g. 8000, or auto") from None
    if mb <= 0:
        raise PreflightError(f"slurm.{key} is {mb}", fix=f"set slurm.{key} to a positive number of MB, or auto")
    return mb


@dataclass
class EncoderSize:
    """An encoder's size for memory sizing, worked out once per run."""

    encoder: str

    def __post_init__(self):
        self._params, self._dim = None, None  # float | None, int | None

    def _load(self) -> None:
        if self._params is None:
            from weakstil.encoders.cards import load_card

            self._dim = load_card(self.encoder).embed_dim
            self._params = encoder_params_m(self.encoder)

    def mem_mb(self, n_tiles: int = 0) -> int:
        self._load()
        return embed_mem_mb(self._params, self._dim, n_tiles)


def memory_resource(config: dict, kind: str) -> int | Callable:
    """The ``mem_mb`` resource of a job kind (``cpu``, ``embed``, ``train``) for the Snakefile:
    a number, or for ``auto`` a function of the job's input that Snakemake calls when the job
    is about to be submitted (its inputs exist then; a dry run shows the estimate without them)."""
    s = slurm_settings(config)
    if kind == "cpu":
        value = _mem_setting(s["mem_mb"], "mem_mb")
        return CPU_MEM_MB if value == AUTO else value
    if kind == "embed":
        value = _mem_setting(s["embed_mem_mb"], "embed_mem_mb")
        if value != AUTO:
            return value
        size = EncoderSize(str(config["encoder"]))
        partition = str(s["gpu_partition"] if int(s["gpus_per_embed"] or 0) else s["partition"])
        return lambda wildcards, input: _capped(size.mem_mb(tile_count(input.tiles)), partition)
    value = _mem_setting(s["train_mem_mb"], "train_mem_mb")
    if value != AUTO:
        return value
    return lambda wildcards, input: _capped(train_mem_mb(input.size_mb), str(s["partition"]))


def _capped(mb: int, partition: str) -> int:
    cap = PARTITION_MEMORY_MB.get(partition)
    if cap is not None and mb > cap:
        log.warning("a job in partition %s would need about %d MB; asking for the %d MB its nodes have", partition,
                    mb, cap)
        return cap
    return mb


def job_requests(config: dict, *, embed_tiles: int = 0, train_features_mb: float = 0.0) -> list[JobRequest]:
    """What each kind of job of this configuration asks of SLURM (the Snakefile's resources). ``auto``
    memory is the estimate for ``embed_tiles`` tiles per slide and ``train_features_mb`` of features."""
    s = slurm_settings(config)
    threads = int(config.get("threads", 1))
    part = str(s["partition"])
    runtime, keys = int(s["runtime"]), {"partition": "slurm.partition", "runtime": "slurm.runtime"}
    mem = memory_resource(config, "cpu")
    score = bool(config.get("score_slides"))  # a score slide outside the cohort: score_slide_tiles, score_slide
    per_slide = ["tile"] + (["tumorbed"] if config.get("annotations") or config.get("tumorbed") else []) + \
        ["score_slide_tiles"] * score
    requests = [JobRequest((*per_slide, "evaluate", "report"), part, 1, mem, runtime, keys={**keys, "mem": CPU_MEM})]
    if score:
        requests.append(JobRequest(("score",), part, threads, mem, runtime, keys={**keys, "mem": CPU_MEM}))
    train_mem = memory_resource(config, "train")
    train_mem = train_mem if isinstance(train_mem, int) else train_mem_mb(train_features_mb)
    requests.append(JobRequest(("train",), part, threads, train_mem, int(s["train_runtime"]),
                               keys={**keys, "runtime": "slurm.train_runtime", "mem": "slurm.train_mem_mb"}))
    if config.get("tumorbed") == "train":
        requests.append(JobRequest(("tumorbed_detector",), part, 1, train_mem, runtime,
                                   keys={**keys, "mem": "slurm.train_mem_mb"}))
    gpus = int(s["gpus_per_embed"] or 0)
    embed_mem = memory_resource(config, "embed")
    if not isinstance(embed_mem, int):
        embed_mem = EncoderSize(str(config["encoder"])).mem_mb(embed_tiles)
    embed_keys = {"runtime": "slurm.embed_runtime", "mem": "slurm.embed_mem_mb", "gpus": "slurm.gpus_per_embed",
                  "partition": "slurm.gpu_partition" if gpus else "slurm.partition"}
    requests.append(JobRequest(("embed", "score_slide")[:1 + score], str(s["gpu_partition"]) if gpus else part,
                               threads, embed_mem, int(s["embed_runtime"]), gpus=gpus,
                               gpu_model=s.get("gpu_model") or None, keys=embed_keys))
    return requests


# --- checks -------------------------------------------------------------------------------
def check_cohort(config: dict):
    """The cohort (see the module doc); returns the :class:`~weakstil.cohort.Cohort`."""
    from weakstil.cohort import read_cohort
    if not re.fullmatch(r"-?\d+", str(config["folds"])):
        raise PreflightError(f"folds is {config['folds']!r}, not a whole number", fix="set folds to e.g. 5")
    folds = int(config["folds"])
    if folds < 2:
        raise PreflightError(f"folds is {folds}: the evaluation and the report need out-of-fold predictions",
                             fix="set folds to 2 or more (--config folds=5)")
    column = group_column_of(config)
    try:
        cohort = read_cohort(config["cohort"], group_column=column, refuse_fractions=True,  # train's, before embedding
                             group_option=group_option_of(config))
    except WeakSTILError as exc:
        where = with_path_hint("the `cohort` key of the workflow config", config, "cohort")
        raise PreflightError(f"{exc.one_line().rstrip('.')} ({where})") from None
    groups = len(set(cohort.groups.tolist()))
    if groups < folds:
        by = f"groups in column '{cohort.group_column}'" if cohort.group_column else "slides"
        fix = f"set folds to {groups} or fewer" if groups >= 2 else "add slides from more groups"
        if cohort.group_column:
            fix += ", or group_column: none to split by slide"
        # (`weakstil train` alone falls back to one fold per group of the CSV's own column; a workflow
        # states its folds in its config, and its evaluation and report would not say what ran)
        raise PreflightError(f"the cohort has {groups} {by} but folds is {folds}: every fold needs a group of "
                             "its own", path=config["cohort"], fix=fix)
    return cohort


def check_encoder(config: dict) -> None:
    """The encoder card and its weights (see the module doc), without building the network."""
    from weakstil.encoders.cards import CARD_FILE, load_card
    from weakstil.encoders.factory import MODEL_FILE, RANDOM

    encoder, weights = str(config["encoder"]), config.get("weights")
    try:
        card = load_card(encoder)
    except WeakSTILError as exc:
        raise PreflightError(f"{exc.one_line().rstrip('.')} (the `encoder` key of the workflow config)") from None
    if card.status == "unsupported":
        raise PreflightError(f"encoder '{card.name}' is not supported by this WeakSTIL version ({card.notes})",
                             fix="set encoder to another card (weakstil encoders lists them)")
    card_dir = Path(card.path).parent if card.path and Path(card.path).name == CARD_FILE else None
    if weights not in (None, "") and str(weights) == RANDOM:
        if card_dir is not None and (card_dir / MODEL_FILE).is_file():  # `random`, the default, would drop them
            raise PreflightError(f"encoder {encoder} holds its own pretrained weights, but weights is random: every "
                                 "embed job would use a random init, not the pretraining", fix="set weights: null "
                                 "(--config weights=null) to use them, or encoder: small-cnn for the random baseline")
        return
    if weights not in (None, ""):
        from weakstil.weights_check import weights_file_problem

        if (problem := weights_file_problem(weights)) is not None:
            raise PreflightError(f"{problem[0]} (the `weights` key)", path=weights, fix=problem[1])
        return
    if card_dir is not None and (card_dir / MODEL_FILE).is_file():
        return
    if not card.hub_id:
        raise PreflightError(f"encoder '{card.name}' has no published weights and `weights` is null",
                             fix="set weights to a file, or to random for a random-feature baseline")
    from huggingface_hub import try_to_load_from_cache

    from weakstil.encoders.factory import HUB_WEIGHT_FILES

    if not any(isinstance(try_to_load_from_cache(card.hub_repo, f), str) for f in HUB_WEIGHT_FILES):
        raise PreflightError(
            f"encoder '{card.name}': the weights of {card.hub_id} are not in the Hugging Face cache, and every "
            "embed job would have to download them (compute nodes often cannot)",
            fix=f"download them once where the jobs can read the cache: `hf download {card.hub_repo}` (gated "
                "models: `hf auth login` first), or set weights to a file")


def check_tumorbed(config: dict, slide_ids: list[str]) -> None:
    annotations, tumorbed = config.get("annotations") or None, config.get("tumorbed") or None
    if annotations is not None and not Path(annotations).is_dir():
        what = "is a file, not a folder" if Path(annotations).is_file() else "folder not found"
        what += f" ({with_path_hint('the `annotations` key', config, 'annotations')})"
        raise PreflightError(f"annotations {what}", path=annotations,
                             fix="set annotations to the folder of <slide_id>.geojson/.json/.xml/.annotations/.ndpa/.wkt outlines, or null")
    if tumorbed == "train" and annotations is None:
        raise PreflightError("tumorbed is 'train' but annotations is not set",
                             fix="set annotations to the folder of <slide_id>.geojson/.json/.xml/.annotations/.ndpa/.wkt outlines, or tumorbed to null")
    from weakstil.pipeline_settings_check import outlines  # (one holding { or } is refused there)
    if annotations is not None and not outlines(annotations, slide_ids):  # all misnamed?
        raise PreflightError("no cohort slide has an outline in the annotations folder", path=annotations,
                             fix="name the outlines <slide_id>.geojson, .json, .xml, .annotations, .ndpa or .wkt, or set annotations: null")
    if tumorbed not in (None, "train"):
        try:
            check_detector_setting(tumorbed, config.get("encoder"))
        except WeakSTILError as exc:
            raise PreflightError(exc.message, path=tumorbed, fix=with_path_hint(exc.fix, config, "tumorbed")) from None


def check_keys(config: dict) -> None:
    """A misspelt key (``annotaions: ann/``) would otherwise be ignored and the run go on without
    it: every key must be one of ``pipelines/config.yaml``'s (and ``slurm:``'s, of DEFAULT_SLURM)."""
    import difflib

    import yaml

    default = default_config_file()
    known = set(yaml.safe_load(default.read_text(encoding="utf-8")) or {}) if default is not None else None
    sections = [("", config, known), ("slurm.", config.get("slurm") if isinstance(config.get("slurm"), dict) else {},
                                      set(DEFAULT_SLURM))]
    sources, unknown = getattr(config, "sources", {}), []  # (see WorkflowConfig)
    for prefix, mapping, allowed in sections:
        if allowed is None:  # an installed package without the workflow's own config: nothing to compare with
            continue
        for key in (k for k in mapping if k not in allowed):
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            where = sources.get(f"{prefix}{key}")
            unknown.append(f"'{prefix}{key}'" + (f" (did you mean '{prefix}{close[0]}'?)" if close else "")
                           + (f" in {where}" if where else ""))
    if unknown:
        raise PreflightError(f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}",
                             fix=f"correct or remove {'them' if len(unknown) > 1 else 'it'}; pipelines/config.yaml "
                                 "lists every key")


def slurm_problems(config: dict) -> list[PreflightError]:
    """The ``slurm:`` numbers: memory in MB or ``auto``, whole numbers of GPUs and minutes."""
    s, problems = slurm_settings(config), []
    for key in ("mem_mb", "embed_mem_mb", "train_mem_mb"):
        try:
            _mem_setting(s[key], key)  # a bad number fails here, not at submission
        except PreflightError as exc:
            problems.append(exc)
    for key in ("gpus_per_embed", "runtime", "embed_runtime", "train_runtime"):
        # a wall time of 0 minutes: the slurm plugin passes no --time (the partition's default, not "0 min")
        least, what = (0, "GPUs") if key == "gpus_per_embed" else (1, "minutes")
        if not re.fullmatch(r"\d+", str(s[key] if s[key] is not None else "")) or int(s[key]) < least:
            problems.append(PreflightError(f"slurm.{key} is {s[key]!r}, not a whole number of {what}, {least} or more",
                                           fix=f"set slurm.{key} to e.g. {DEFAULT_SLURM[key]}"))
    for key in ("partition", *(("gpu_partition",) if str(s["gpus_per_embed"]).strip() not in ("0", "") else ())):
        # null was read as the partition "None": the cluster check refused it as a partition that does not
        # exist, and the jobs would have asked SLURM for it by that name
        if s[key] is None or not str(s[key]).strip():
            problems.append(PreflightError(f"slurm.{key} is empty: every job asks for a partition by name",
                                           fix=f"set slurm.{key} to a partition of your cluster (`sinfo -s` lists "
                                               f"them), e.g. {DEFAULT_SLURM[key]}"))
    return problems


def check_workflow(config: dict):
    """Everything but the cluster, every setting included (:mod:`weakstil.pipeline_settings_check`);
    raises one :class:`PreflightError` naming every problem found, returns the cohort."""
    problems: dict[str, WeakSTILError] = {}

    def run(check: Callable, *args: Any, needs: tuple[str, ...] = ()) -> Any:
        if not problems.keys() & set(needs):  # a check of settings already refused would only repeat it
            try:
                return check(*args)
            except WeakSTILError as exc:
                problems[check.__name__] = exc

    run(check_keys, config)
    problems.update(settings_problems(config, getattr(config, "sources", {})))
    cohort = run(check_cohort, config, needs=("cohort", "folds", "group_column", "train_extra"))
    if cohort is not None:  # outlines are found by the CSV's slide id or the slide file's name, as the jobs find them
        from weakstil.slide import slide_id_from_path
        names = [*cohort.slide_ids, *map(slide_id_from_path, cohort.table["path"])]
        run(check_tumorbed, config, names, needs=("annotations", "tumorbed"))
        run(check_cohort_slides, config, cohort.table, cohort.csv_path, needs=("slide_mpp", "mpp"))  # + its mpp column
        run(score_slide_files, config, cohort.table["path"], cohort.slide_ids, needs=("score_slides",))  # no clashes
    run(check_encoder, config, needs=("encoder", "weights"))
    problems.update({f"slurm.{i}": p for i, p in enumerate(run(slurm_problems, config, needs=("slurm",)) or [])})
    if problems:
        raise one_error(list(problems.values()), PreflightError)
    return cohort


def format_problems(problems: list[Problem]) -> str:
    return f"{problems[0].message}. Fix: {problems[0].fix}" if len(problems) == 1 else f"{len(problems)} problems: " \
        + "; ".join(f"({i}) {p.message} (fix: {p.fix})" for i, p in enumerate(problems, 1))


def check_slurm(config: dict, cluster: Cluster | None = None) -> list[str]:
    """Every job kind against the cluster (queried with ``scontrol`` when not given). Raises one
    :class:`PreflightError` listing the jobs that could never start; returns warnings (every node of a partition
    down or drained)."""
    if cluster is None:
        from weakstil.slurm_cluster import ClusterQueryError, query_cluster

        try:
            cluster = query_cluster()
        except ClusterQueryError as exc:
            raise PreflightError(f"cannot read the SLURM cluster's partitions ({exc})",
                                 fix="run Snakemake with the slurm profile on the cluster's login node, or set "
                                     "slurm.preflight: false to skip this check") from None
    requests = job_requests(config)
    for r in requests:
        most = partition_memory_mb(cluster, r.partition)
        if most is not None:
            PARTITION_MEMORY_MB[r.partition] = most
    problems = [p for r in requests for p in check_request(r, cluster)]
    if problems:
        raise PreflightError(format_problems(problems) + " (the `slurm:` section of the workflow config)")
    return [w for r in requests if (w := unusable_warning(r, cluster))]


def describe_requests(config: dict) -> str:
    """One line per job kind: what it asks (for ``weakstil preflight``)."""
    s = slurm_settings(config)
    auto = {rule for rule, key in (("embed", "embed_mem_mb"), ("train", "train_mem_mb"),
                                   ("tumorbed_detector", "train_mem_mb")) if _mem_setting(s[key], key) == AUTO}
    lines = []
    for r in job_requests(config):
        gpus = f", {r.gpus} GPU{'s' if r.gpus > 1 else ''}{' ' + r.gpu_model if r.gpu_model else ''}" if r.gpus else ""
        mem = f"{r.mem_mb} MB{' (auto: at least)' if r.rules[0] in auto else ''}"
        part = f"partition {r.partition}"  # never empty: slurm_problems refuses a null partition
        lines.append(f"{', '.join(r.rules)}: {part}, {r.cpus} CPU{'s' if r.cpus > 1 else ''}, "
                     f"{mem}, {r.runtime_min} min{gpus}")
    return "\n".join(lines)


# --- `weakstil preflight` -----------------------------------------------------------------
def default_config_file() -> Path | None:
    """The workflow's own ``pipelines/config.yaml`` beside this package (a source checkout)."""
    path = Path(__file__).resolve().parents[1] / "pipelines" / "config.yaml"
    return path if path.is_file() else None


def load_workflow_config(files: list[Path], overrides: list[str]) -> WorkflowConfig:
    """The configuration Snakemake would see: the files merged in order (nested sections key
    by key, like ``--configfile``), then ``KEY=VALUE`` overrides with YAML values (``--config``)."""
    import yaml

    config = WorkflowConfig()
    for path in files:
        try:
            data = read_config_yaml(path) or {}  # a repeated key or bad YAML: its line (weakstil/pipeline_yaml.py)
        except FileNotFoundError:
            raise PreflightError("workflow config file not found", path=path, fix="check the path") from None
        if not isinstance(data, dict):
            raise PreflightError("a workflow config must be a YAML mapping of keys", path=path,
                                 fix="write one `key: value` per line, as in pipelines/config.yaml")
        config.merge(data, str(path))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise OverrideSyntaxError(f"--config {item!r} is not KEY=VALUE", fix="write e.g. --config folds=3")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            said = refused_tag(exc, "a --config value") or (f"the value of {key.strip()} is not valid YAML ("  # (a tag:
                f"{getattr(exc, 'problem', None) or str(exc).splitlines()[0]})", f"write a YAML value after "  # refused)
                f"'{key.strip()}=' (quote text with YAML signs such as [ or {{: --config \"cohort='[a].csv'\")")
            raise OverrideSyntaxError(f"--config {item!r}: {said[0]}", fix=said[1]) from None
        config.merge({key.strip(): parsed}, f"--config {item}")
    if missing := [k for k in ("cohort", "folds", "encoder", "threads") if k not in config]:
        raise PreflightError(f"the workflow config has no {', '.join(missing)}",
                             fix="start from pipelines/config.yaml (pass it first)")
    return yaml_nulls(config)  # as the Snakefile reads them


def run_preflight(config: dict, *, slurm: bool) -> str:
    """Every check; raises :class:`PreflightError`, returns a summary for the user."""
    cohort = check_workflow(config)
    lines = [f"cohort {config['cohort']}: {len(cohort)} slides, {len(set(cohort.groups.tolist()))} groups, "
             f"{config['folds']} folds; encoder {config['encoder']} (weights {config.get('weights') or 'its own'})"]
    files, score, in_cohort = score_slide_files(config, cohort.table["path"], cohort.slide_ids)  # as the run warns:
    no_mpp, unusable = unusable_score_slides(config, files, score, in_cohort)
    lines += [f"warning: {files[k]} (score_slides): {why}; it gets an error row in scores/results.csv" for k, why in
              unusable.items()]
    given = given_mpps(config, config["cohort"], cohort.table, files, in_cohort, no_mpp)  # (slides of another µm/px)
    found = [unoutlined_warning(config.get("annotations"), config.get("tumorbed"), in_cohort, list(cohort.slide_ids),
                                list(files)),  # as the run says them (a stale out: it refuses the run)
             stale_without_records(config.get("out"), config, files, lambda p: str(slide_fingerprint(p)), given,
                                   mpp_sources(config["cohort"], cohort.table, in_cohort))]
    lines += [f"warning: {w}" for w in found if w]
    lines += [f"warning: {w}" for w in check_slurm(config)] if slurm else []
    lines.append("SLURM jobs (each fits a node of its partition):" if slurm else
                 "SLURM jobs (not checked against a cluster; --slurm does):")
    lines += ["  " + line for line in describe_requests(config).splitlines()]
    return "\n".join(lines)
