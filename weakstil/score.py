"""Stage: score slides end to end — tiles, embeddings (cached), tumour bed, tile scores, slide sTIL%.

Per slide, in ``OUT``:

* ``<slide_id>.h5``: tile scores, tumour bed and masks, a :class:`weakstil.files.SlideScoresFile`.
* ``<slide_id>_heatmap.png``: thumbnail, tile-score heatmap, tumour-bed outline, colour bar (stroma-aggregator
  models: a second panel with each tile's stroma weight).
* ``<slide_id>.geojson``: the tiles as QuPath ``tile`` objects with their scores as measurements.

and ``results.csv`` with one row per input, rewritten atomically after every slide scored (a slide skipped as already
scored keeps its row), so a run killed midway loses nothing and a rerun only does what is missing or failed. Runs may
share one ``OUT``: each slide is scored under its lock (:mod:`weakstil.locks`), and ``results.csv`` is re-read and
merged under its own lock before every rewrite. A finished slide is skipped only when its score file records the
slide fingerprint (:mod:`weakstil.fingerprint`) of the file scored now. Of two files of one slide id in a batch, one
is refused (an ``error`` row naming both: :func:`weakstil.slide_ids.claim_ids`). A full disk stops the batch after
recording the failure.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from weakstil import settings
from weakstil.atomic import remove_stale_temps, replacing_together
from weakstil.confidence import interval_columns
from weakstil.errors import UsageError, WeakSTILError
from weakstil.files import FeaturesFile, SlideScoresFile, slide_file
from weakstil.limits import out_of_memory
from weakstil.modeldir import ModelDir
from weakstil.results_table import BatchRows, another_file, read_previous, typed_row, unchanged_by, write_results
from weakstil.score_state import (  # noqa: F401 (the statuses are score's words: imported from here too)
    FINISHED, OUTPUT_SUFFIXES, SCORED, STATUS_BED_FALLBACK, STATUS_ERROR, STATUS_NO_BED, STATUS_OK, already_scored, cached_features,
    keeps_earlier_row, scan_now)
from weakstil.slide import DARK_IMAGE, slide_id_from_path
from weakstil.score_outputs import title_labels, write_slide_outputs  # noqa: F401 (title_labels: imported from here too)
from weakstil.slide_list import SlideNaming

log = logging.getLogger(__name__)

#: The sTIL% interval's columns (weakstil.confidence): stil_lower_90, stil_upper_90.
LOWER, UPPER = interval_columns()
#: tumorbed_crush_tiles: the bed's tiles left out as crush artefact (weakstil.crush), beside the bed's scored tiles.
#: tumorbed_front: the detector's front refinement on the slide (refined, not refined: why; "": not tried), last: the
#: columns before it keep their places for scripts that read them by position.
RESULT_COLUMNS = ["slide_id", "path", "stil", LOWER, UPPER, "stil_high", "threshold", "n_tiles", "n_tumorbed_tiles",
                  "tumorbed_crush_tiles", "tumorbed_source", "status", "qc", "qc_reasons", "error",
                  "model_id", "encoder_id", "seconds", "tumorbed_front"]


@dataclass
class ScoreOptions:
    model: Path
    out: Path
    features: Path | None = None  #: embedding cache (default OUT/features)
    encoder: str | None = None  #: overrides the encoder recorded in the model
    weights: str | None = None
    device: str = settings.DEVICE
    workers: int = settings.DECODE_WORKERS  #: decode worker processes (0: planned with the torch threads)
    threads: int = settings.TORCH_THREADS  #: torch CPU threads (0: planned)
    decode: str = settings.DECODE  #: where JPEG tiles are decoded: cpu, gpu or auto
    batch_size: int = settings.BATCH_SIZE
    slide_mpp: float | None = None
    allow_upsample: bool = False
    annotations: Path | None = None
    tumorbed_model: Path | None = None
    tumorbed_beds: Path | None = None  #: precomputed beds (weakstil tumorbed apply), used first
    threshold: float | None = None
    overwrite: bool = False
    #: what a slide list says of its files: a CSV's slide_id and mpp columns (else the file's name, slide_mpp)
    listed: SlideNaming = field(default_factory=SlideNaming)

    def __post_init__(self) -> None:
        # a script passes strings: 'out / "features"' was a TypeError for ScoreOptions(model="m", out="o")
        for name in ("model", "out", "features", "annotations", "tumorbed_model", "tumorbed_beds"):
            if isinstance(value := getattr(self, name), str):
                setattr(self, name, Path(value))

    @property
    def cache_dir(self) -> Path:
        return self.features or self.out / "features"

    def slide_id(self, path: str | Path) -> str:
        """The id that names ``path``'s outputs and results.csv row."""
        return self.listed(path)


@dataclass
class _Context:
    """What every slide of a batch shares: the MIL model, encoder, tumour-bed sources."""

    opts: ScoreOptions
    model: Any  #: the first scoring model (its architecture); ``models`` score the slides
    meta: dict
    model_id: str
    threshold: float
    params: Any
    beds: Any  #: weakstil.tumorbed.resolver.BedSources
    assessor: Any = None  #: weakstil.qc.scoring.SlideAssessor: the sTIL% interval and the qc flags
    models: list = field(default_factory=list)  #: what scores slides: [model] or the CV fold models
    model_json_sha256: str = ""
    _encoder: Any = field(default=None, repr=False)  #: the encoder, or why it could not be built
    _planner: Any = field(default=None, repr=False)
    ink_rules_said: set = field(default_factory=set)  #: the beds' ink rules said unlike the training beds'

    @property
    def encoder_id(self) -> str:
        enc = self.meta.get("encoder", {})
        return f"{enc.get('name')}@{str(enc.get('weights_sha256'))[:12]}"

    def request(self, slide_id: str, path: str | Path | None = None) -> dict:
        """The settings that decide a slide's score besides the slide file and the model (``path``: the
        slide file, whose name also finds its bed or outline when a slide list's id names it)."""
        o, also = self.opts, slide_id_from_path(path) if path is not None else None
        return {"threshold": self.threshold, "slide_mpp": o.slide_mpp if path is None else o.listed.mpp_of(path, o.slide_mpp),
                "allow_upsample": o.allow_upsample, "encoder": o.encoder, "weights": o.weights,
                "tumorbed": self.beds.request(slide_id, also=also,
                                              features=None if path is None else cached_features(o, Path(path))),
                # a retrained model (other folds, members, calibration) may keep the final weights' hash
                "model_json_sha256": self.model_json_sha256, "scoring": "ensemble" if len(self.models) > 1 else "final"}

    def encoder(self):
        """Built on first use (a rerun of scored slides never loads it); a failure is kept, not retried."""
        if self._encoder is None:
            from weakstil.scoring_encoder import load_or_failure
            self._encoder = load_or_failure(self.opts, self.meta)
        if isinstance(self._encoder, Exception):
            raise self._encoder
        return self._encoder

    def planner(self):
        """Decode workers and torch threads, measured on the first slide that needs embedding."""
        if self._planner is None:
            from weakstil.decode import ThreadPlanner
            from weakstil.scoring_encoder import LazyEncoder

            self._planner = ThreadPlanner(LazyEncoder(self), self.opts.batch_size, workers=self.opts.workers or None,
                                          threads=self.opts.threads or None)
        return self._planner


def open_context(opts: ScoreOptions) -> _Context:
    from weakstil.mil.ensemble import load_scoring_models
    from weakstil.mil.identity import check_scores_new_slides, crush_unlike_training
    from weakstil.qc.flags import bed_unlike_training
    from weakstil.qc.scoring import SlideAssessor
    from weakstil.runtime import resolve_device, sha256_file
    from weakstil.scoring_encoder import check_encoder_files
    from weakstil.tiles import scoring_tiling
    from weakstil.tumorbed.resolver import BedSources, check_model_detector, trained_detector

    resolve_device(opts.device)  # a GPU this machine lacks: one usage error, not an error row per slide
    models, meta = load_scoring_models(opts.model)
    meta_path = ModelDir(opts.model).meta_path
    check_scores_new_slides(meta, meta_path)  # an older stain estimate: once, not per slide
    if (crush := crush_unlike_training(meta)) is not None:  # trained on beds with crush, scoring beds without
        log.warning("%s: %s", opts.model, crush)
    check_encoder_files(opts, meta)  # a broken or mismatched encoder fails once, not once per slide
    model = models[0]  # the architecture (the fold models share the final model's)
    # an ensemble's models are the fold models the interval needs: loaded once
    assessor = SlideAssessor.load(opts.model, meta, model.arch, fold_models=models if len(models) > 1 else None)
    if assessor.no_interval:  # once per run, not once per slide
        log.warning("%s: %s: no slide of this run gets a 90 %% interval (results.csv: %s and %s empty, qc "
                    "no_interval with this reason)", opts.model, assessor.no_interval, LOWER, UPPER)
    model_id = ModelDir(opts.model).model_id(meta)
    threshold = float(opts.threshold if opts.threshold is not None else meta.get("threshold", settings.STIL_THRESHOLD))
    beds = BedSources.open(annotations=opts.annotations, beds=opts.tumorbed_beds, detector=opts.tumorbed_model,
                           model=opts.model)
    check_model_detector(beds, meta, opts.model, bundled=opts.tumorbed_model is None)  # once, not once per slide
    trained_with = trained_detector(assessor.training_beds)
    if opts.tumorbed_model is None and beds.detector is not None and trained_with \
            and beds.detector.model_id != trained_with:  # MODEL/tumorbed replaced after training
        log.warning("%s: the bundled detector %s is not the one the model was trained with (%s)", beds.detector_path,
                    beds.detector.model_id, trained_with)
    if not beds.given and bed_unlike_training("tissue", assessor.training_beds):
        log.warning("%s was trained on tumour beds, and this run has none (no --annotations, --tumorbed-beds or "
                    "--tumorbed, and the model bundles no detector): a slide whose feature file holds no tumorbed flags of "
                    "its own is scored over the whole tissue and flagged bed_unlike_training", opts.model)
    tiling = scoring_tiling(meta, meta_path)  # (an edited tiling key: one error line)
    ctx = _Context(opts, model, meta, model_id, threshold, tiling, beds, assessor, models,
                   model_json_sha256=sha256_file(meta_path))
    if opts.encoder is not None or opts.weights is not None:  # asked for: built now, a wrong one refused once
        ctx.encoder()
    if beds.detector is not None:  # its front refinement embeds through this encoder, not a second copy
        beds.detector.offered_encoder = ctx.encoder
    return ctx


def score_batch(slides: list[Path], opts: ScoreOptions,
                on_slide: Callable[[str, dict], None] | None = None, progress: bool = True,
                on_tiles: Callable[[str, int, int], None] | None = None,
                say_error: Callable[[str], None] | None = None) -> list[dict]:
    """Score ``slides``; returns the rows of this batch (also in OUT/results.csv): a ``BatchRows``,
    whose ``skipped`` are the slides already scored. A slide that fails gets status ``error`` and its
    reason; the others go on. ``on_slide(id, row)`` is called after each slide, ``on_tiles(id, done,
    total)`` as its tiles are embedded (a GUI's progress bar), ``say_error(line)`` for each error
    (default: an ``error:`` line on stderr; a GUI says it in its own words)."""
    import contextlib
    import sys

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from weakstil.consoles import _log_console
    from weakstil.errors import OutputError, from_os_error
    from weakstil.feature_cache import refuse_other_folder, refuse_read_only_cache
    from weakstil.fingerprint import recorded_in
    from weakstil.ink_plane import ink_tests_kept, new_run
    from weakstil.locks import BusyError, in_turn
    from weakstil.outputdir import check_score_features, mark
    from weakstil.slide_ids import claim_ids
    from weakstil.whole_level import whole_levels_kept

    new_run()  # each slide's ink-plane news is said once in this run, again in a later one (napari scores again)
    # the caches made are written there: --features not a model, nor another command's folder; OUT/features a folder
    check_score_features(opts.features, opts.cache_dir)
    # (a slide scored before needs no cache: a rerun that skips every slide is not refused)
    refuse_read_only_cache(opts.cache_dir, slides, lambda p: cached_features(opts, p).exists()
                           or slide_file(opts.out, opts.slide_id(p)).exists())
    say = say_error or (lambda text: sys.stderr.write(f"error: {text}\n"))
    ctx = open_context(opts)
    if opts.features is not None and not opts.overwrite:  # a folder of another tiling: one refusal, not one per slide
        refuse_other_folder(opts.features, ctx.meta, ctx.params)
    results_path = opts.out / "results.csv"
    remove_stale_temps(results_path)
    earlier = read_previous(results_path)  # one that cannot be added to stops the run before any work
    mine: dict[str, dict] = {}  #: this run's rows by slide id
    clashes: list[dict] = []  #: error rows of files whose slide id an earlier file has
    batch_rows = BatchRows()
    other_file: set[str] = set()  #: slide ids whose earlier row was another file's
    todo, refused = claim_ids(slides, {i: str(r.get("path")) for i, r in earlier.items() if r.get("status") in FINISHED},
                              id_of=opts.slide_id)
    ctx.beds.share_names((opts.slide_id(p), p) for p in todo)  # an outline by a file name two slides share: neither's
    for path, exc in refused:
        say(exc.one_line())
        clashes.append(row := _error_row(path, opts.slide_id(path), ctx, exc, 0.0))
        batch_rows.append(row)
    stopped: OutputError | None = None
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn()]
    # on the log console (stderr, where 'weakstil score' logs and where it looks for a terminal): on rich's
    # default, stdout, a redirected 'weakstil score ... > FILE' got a blank line there, a script's output too,
    # and with stderr a terminal no bar at all (hunt 36d); none where it cannot be drawn (a log file: its blank line)
    console = _log_console()
    shown = progress and (console.is_terminal or console.is_jupyter)
    bar = Progress(*columns, disable=not shown, transient=True, console=console)  # from the first tiles embedded
    by_another_run: set[Path] = set()  #: scored by another run since this batch began: not redone
    clashes_written = 0  #: how many of ``clashes`` results.csv holds (written with an earlier row)
    lock_failed = 0  #: slides given to busy() (tried: not among those "not scored" when the batch stops)

    def busy(path: Path, exc: WeakSTILError) -> None:  # another run held it past WEAKSTIL_LOCK_TIMEOUT: its row is
        say(exc.one_line())  # that run's to write; an error line here (exit 1), and the rest go on
        nonlocal clashes_written, lock_failed, stopped
        lock_failed += 1
        sid = opts.slide_id(path)
        batch_rows.append(row := _error_row(path, sid, ctx, exc, 0.0))
        if isinstance(exc, BusyError):
            batch_rows.unrecorded.append(sid)
            return
        # its lock file could not be made (a name too long): this run's error row in results.csv, in place of
        # an earlier error row of the slide (appended, a rerun listed it twice)
        prev = read_previous(results_path).get(sid)
        mine_now = {} if keeps_earlier_row(opts.out, prev, row, False) else {sid: row}
        if not mine_now:
            clashes.append(row)
        try:
            mark(opts.out, "score")
            write_results(results_path, mine_now, clashes, RESULT_COLUMNS, other_file)
            clashes_written = len(clashes)
        except OSError as exc_w:
            say((err := from_os_error(exc_w, results_path)).one_line())
            batch_rows.unrecorded.append(sid)
            if err.stops_batch:  # a full disk stops the batch here, as after a scored slide (helper h42f: the next
                stopped = stopped or err  # slide was scored, minutes of work, before its own write stopped it)
    done = 0  #: slides given to the loop below
    with contextlib.closing(in_turn(todo, lambda p: slide_file(opts.out, opts.slide_id(p)), by_another_run,
                                    busy, stop=lambda: stopped is not None)) as turns, \
            contextlib.ExitStack() as showing:
        batch_task = bar.add_task("slides", total=len(todo))
        for done, path in enumerate(turns, start=1):
            slide_id = opts.slide_id(path)
            prev, unchanged = (table := read_previous(results_path)).get(slide_id), False  # (unchanged: see below)
            if (not opts.overwrite or path in by_another_run) and already_scored(opts.out, path, slide_id, prev, ctx):
                log.info("%s: already scored (%s) in %s: this very file (fingerprint), model and settings; skipped "
                         "(--overwrite scores it again)", slide_id, prev.get("status"), opts.out)
                batch_rows.skipped.append(slide_id)
                skipped_now = True
                row = {**prev, "path": os.path.abspath(path)}  # the same scan moved since: where it is now
                row.update({k: prev.get(k) or getattr(ctx, k) for k in ("model_id", "encoder_id")})  # (a deleted column)
                unchanged = unchanged_by(table, row)  # its row as results.csv holds it: not rewritten (hunt 35h)
            else:
                skipped_now = False
                tile_task = bar.add_task(f"  {slide_id}", total=None)

                def tick(done: int, total: int, _task=tile_task, _id=slide_id) -> None:
                    if not bar.live.is_started:
                        showing.enter_context(bar)
                    bar.update(_task, completed=done, total=total)
                    if on_tiles is not None:
                        on_tiles(_id, done, total)

                t0 = time.perf_counter()
                earlier_scan = recorded_in(slide_file(opts.out, slide_id), SlideScoresFile) if prev else None
                try:
                    # a single-level slide read whole once for its overviews, its ink test made once (bed and qc), let go after
                    with whole_levels_kept(), ink_tests_kept():
                        row = score_slide(path, ctx, progress=tick)  # (not held while the next slides are embedded)
                except (WeakSTILError, OSError, MemoryError, RuntimeError) as exc:
                    if isinstance(exc, (MemoryError, RuntimeError)):  # this slide's (a large one's): the rest go on,
                        if (oom := out_of_memory(exc, path)) is None:  # as for any slide error (it ended the
                            raise  # batch naming no slide, hunt 36f); another RuntimeError is a bug
                        exc = oom
                    if isinstance(exc, UsageError) and not hasattr(exc, "for_model"):  # a grid too large (GridTooLarge)
                        raise  # is this slide's (its size); the rest the command line's (a batch too large for memory)
                    err = from_os_error(exc, opts.out) if isinstance(exc, OSError) else getattr(exc, "for_model", lambda: exc)()
                    row = _error_row(path, slide_id, ctx, err, time.perf_counter() - t0)
                    say(err.one_line())
                    if isinstance(err, OutputError) and err.stops_batch:
                        stopped = err
                bar.remove_task(tile_task)
                if prev and another_file(prev, row, earlier_scan, scan_now(opts.out, row)):
                    other_file.add(slide_id)  # the columns a user added to the earlier row were about another file
            if keeps_earlier_row(opts.out, prev, row, slide_id in other_file):
                clashes.append(row)  # an earlier run's finished score stays; this failed attempt is listed after it
            else:
                mine[slide_id] = row
            # a skipped slide's row is results.csv's text: given back with a scored row's types
            given = typed_row(row, ("stil", LOWER, UPPER, "seconds")) if skipped_now else row
            batch_rows.append(given)
            try:  # only this slide's row: another run (another model) may have scored an earlier slide of ours
                if not unchanged or len(clashes) > clashes_written:  # again since: its row stays beside its files
                    mark(opts.out, "score")
                    write_results(results_path, {slide_id: row} if slide_id in mine else {}, clashes, RESULT_COLUMNS,
                                  other_file)
                    clashes_written = len(clashes)
            except OSError as exc:  # the old results.csv stays as it was
                err = from_os_error(exc, results_path)
                say(err.one_line())
                stopped = stopped or err
                batch_rows.unrecorded.append(slide_id)  # its row is not (or not this run's) in results.csv
            if on_slide is not None:
                on_slide(slide_id, given)
            bar.advance(batch_task)
            if stopped is not None:  # (left: not tried; a failed slide whose earlier row stays is not in mine)
                break
    if stopped is not None:  # (also set by busy(): results.csv could not take a lock-failed slide's error row;
        _say_stopped(say, stopped, len(todo) - done - lock_failed)  # in_turn gives no more slides then)
    if len(clashes) > clashes_written:  # only clashes (or every other row unchanged): still record them
        with contextlib.suppress(OSError):
            mark(opts.out, "score")
            write_results(results_path, {}, clashes, RESULT_COLUMNS)
    return batch_rows


def _say_stopped(say: Callable[[str], None], stopped: WeakSTILError, left: int) -> None:
    """The line that a batch stopped (a full disk) and how many slides it left unscored (none: not said)."""
    from weakstil.errors import stop_fix

    if left > 0:
        say(f"stopped after: {stopped.message}; {left} more slide(s) not scored. "
            f"Fix: {stop_fix(stopped.message)} (finished slides are kept and skipped).")


def _error_row(path: Path, slide_id: str, ctx: _Context, exc: WeakSTILError, seconds: float) -> dict:
    from weakstil.qc.flags import Flag

    # a slide refused because it is not brightfield H&E (e.g. fluorescence) is flagged as such
    return {"slide_id": slide_id, "path": os.path.abspath(path), "stil": math.nan, LOWER: math.nan, UPPER: math.nan,
            "stil_high": "", "threshold": _as_given(ctx.threshold),
            "n_tiles": "", "n_tumorbed_tiles": "", "tumorbed_crush_tiles": "", "tumorbed_source": "", "tumorbed_front": "",
            "status": STATUS_ERROR,
            "qc": Flag.STAIN.value if getattr(exc, "warnings", None) else "",
            "qc_reasons": f"{Flag.STAIN.value}: see error" if getattr(exc, "warnings", None) else "",
            "error": exc.one_line(), "model_id": ctx.model_id, "encoder_id": ctx.encoder_id,
            "seconds": round(seconds, 2)}


def _as_given(threshold: float) -> str:
    """The threshold as the user gave it (not rounded to the 4 decimals of the scores)."""
    return f"{threshold:.12g}"


def score_slide(path: Path, ctx: _Context, progress: Callable[[int, int], None] | None = None) -> dict:
    """Score one slide and write its outputs. Raises WeakSTILError for a bad slide."""
    from weakstil.embed import embed_slide
    from weakstil.errors import not_brightfield
    from weakstil.feature_cache import unwritable_cache
    from weakstil.fingerprint import check_not_another_file, check_unchanged
    from weakstil.metrics import called_high
    from weakstil.mil.bank import FeatureBank
    from weakstil.mil.identity import check_features_match_model
    from weakstil.mil.ensemble import score_slides_ensemble
    from weakstil.outputdir import check_replaceable, check_sidecar_replaceable, mark
    from weakstil.runtime import resolve_device
    from weakstil.scoring_encoder import LazyEncoder

    opts = ctx.opts
    t0 = time.perf_counter()
    slide_id = opts.slide_id(path)
    cached = cached_features(opts, path)
    # before any work, and before the all-or-none cleanup below could remove what is not ours
    check_replaceable(slide_file(opts.out, slide_id), SlideScoresFile)
    check_sidecar_replaceable(opts.out / f"{slide_id}.geojson", slide_file(opts.out, slide_id), SlideScoresFile)
    if not opts.overwrite:
        check_not_another_file(slide_file(opts.out, slide_id), path, SlideScoresFile)
    slide_mpp = opts.listed.mpp_of(path, opts.slide_mpp)  # a slide list's mpp column, else --slide-mpp
    if not cached.exists() and (unwritable := unwritable_cache(opts.cache_dir, cached)) is not None:
        raise unwritable  # (one clear line, not "F/ID.h5: Permission denied. Fix: check the permissions")
    result = embed_slide(path, LazyEncoder(ctx), out_path=cached, params=ctx.params, slide_mpp=slide_mpp,
                         allow_upsample=opts.allow_upsample, batch_size=opts.batch_size, workers=opts.workers,
                         progress=progress, decode=opts.decode, planner=ctx.planner(),
                         keep_other_settings=opts.features is not None and not opts.overwrite)  # --features: the user's
    if not result.skipped:  # a cache made here (one reused may lie in a folder this run can only read)
        mark(ctx.opts.cache_dir, "embed")
    features = FeaturesFile.read(result.path)
    check_features_match_model(ctx.meta, features.attrs, result.path)
    if DARK_IMAGE in (warned := json.loads(features.attrs.get("warnings") or "[]")):  # no brightfield H&E: no number
        raise not_brightfield(path, warned)
    bed = ctx.beds.resolve(slide_id, features, path)  # the slide where it is now (ink veto); (says when --annotations holds no outline of this slide)
    flags = bed.tile_flags
    # every tile gets a score (the heatmap); only tumour-bed tiles make the slide's sTIL%
    mask = flags if flags.any() else np.ones(len(flags), bool)
    stats = features.tile_stats  # from_caches consumes the features; the stats may be appended
    bank = FeatureBank.from_caches([features], [slide_id], tumorbeds={slide_id: mask},
                                   tile_stats=ctx.model.arch.tile_stats,
                                   stroma_estimate=ctx.model.needs_stroma_estimate,
                                   centre_embeddings=ctx.model.arch.centre_embeddings)
    features.tile_stats = stats
    device = resolve_device(opts.device)
    scores = score_slides_ensemble([m.to(device) for m in ctx.models], bank, device=device)[0]
    tile_scores = np.asarray(scores.tile_stil, np.float32)  # the published map (its bed mean: stil)
    if not np.isfinite(tile_scores).all():  # finite features too large for float32 (1e38, a cache from elsewhere)
        from weakstil.mil.identity import NON_FINITE_FIX  # gave an empty sTIL% with status ok and exit 0 (hunt 39f)

        raise WeakSTILError("the model's tile scores of these features are not numbers (features far beyond what an "
                            "encoder writes: edited, or written by another tool)", path=result.path, fix=NON_FINITE_FIX)
    attention = None if scores.attention is None else np.asarray(scores.weights, np.float32)
    logits = None if scores.attention is None else np.asarray(scores.attention, np.float32)
    if flags.any():
        stil = float(scores.stil)
        status = STATUS_BED_FALLBACK if bed.source.value == "tissue-fallback" else STATUS_OK
        stil_high: object = bool(called_high(stil, ctx.threshold))  # the call of the number written
    else:
        stil, status, stil_high = math.nan, STATUS_NO_BED, ""
        if bed.n_excluded:  # the outline holds tiles, every one of them crush artefact (weakstil.crush)
            log.warning("%s: the %d tiles of its tumour bed are all crush artefact, left out of the scored area; "
                        "no score", slide_id, bed.n_excluded)
        else:
            log.warning("%s: no tumour bed found; no score", slide_id)
    from weakstil.qc.pieces import of_scored_slide
    from weakstil.tumorbed.detector import VETO_SET_ASIDE  # the bed grown on evidence it took for lymphoid tissue
    from weakstil.tumorbed.resolver import bed_ink_rule, say_ink_rule_unlike_training

    # each tissue piece's own sTIL% (a core that differs from the others) and whether they are a TMA's spots
    per_piece, tma = of_scored_slide(features, scores, flags, ctx.model.arch.aggregator, slide_id)

    qc_row, qc_attrs = ctx.assessor.assess(
        bank=bank, scores=scores, stil=stil, n_bed_tiles=int(flags.sum()), threshold=ctx.threshold, slide_path=path,
        slide_mpp=slide_mpp, tissue_fraction=features.tissue_fraction, tile_px=int(features.attrs["tile_px"]),
        mpp=float(features.attrs["mpp"]), device=device, bed_source=bed.source.value, annotation_misplaced=bed.misplaced,
        bed_incomplete=bed.incomplete, bed_unlike_detector=bed.unlike_detector, bed_detail=bed.detail,
        bed_lymphoid=bed.seed_vetoes if VETO_SET_ASIDE in (bed.seed_vetoes or "") else "", tma_like=tma,
        crush_tiles=bed.n_excluded, bed_ink_rule=(ink_rule := bed_ink_rule(bed)))
    say_ink_rule_unlike_training(ink_rule, ctx.assessor.training_beds, opts.model, slide_id, ctx.ink_rules_said, stil)
    if per_piece:
        qc_attrs["tissue_pieces"] = json.dumps(per_piece)
    check_unchanged(features.attrs, path)  # outputs all or none: a failed attempt leaves the earlier set (its row)
    with replacing_together([opts.out / f"{slide_id}{suffix}" for suffix in OUTPUT_SUFFIXES]):
        write_slide_outputs(path, slide_id, ctx, features, bed, tile_scores, attention, stil, stil_high, status,
                             qc_attrs, attention_logits=logits, stroma=scores.stroma, model_scores=scores.tile_scores)
    return {"slide_id": slide_id, "path": os.path.abspath(path), "stil": round(stil, 4) if status in SCORED else math.nan,
            LOWER: qc_row[LOWER], UPPER: qc_row[UPPER], "qc": qc_row["qc"], "qc_reasons": qc_row["qc_reasons"],
            "stil_high": stil_high, "threshold": _as_given(ctx.threshold), "n_tiles": int(len(tile_scores)),
            "n_tumorbed_tiles": int(flags.sum()), "tumorbed_crush_tiles": bed.attrs().get("tumorbed_crush_tiles", ""),
            "tumorbed_source": bed.source.value, "tumorbed_front": bed.front, "status": status,
            "error": "", "model_id": ctx.model_id, "encoder_id": ctx.encoder_id,
            "seconds": round(time.perf_counter() - t0, 2)}
