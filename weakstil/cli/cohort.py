"""Cohort commands: ``train``, ``evaluate``, ``report``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from weakstil import settings
from weakstil.cli.options import (AggregatorOpt, AnnotationsOpt, CohortArg, DeviceOpt, EpochsOpt, FeaturesOpt,
                                  EvalGroupColumnOpt, FoldsOpt, GroupColumnOpt, LossOpt, ModelOpt, OutOpt, OverwriteOpt, PercentAsWrittenOpt,
                                  ScoringOpt, ScoringOverrideOpt, StoppingOpt, SeedOpt, StromaWeightOpt, TileStatsOpt, StilThresholdOpt, ThreadsOpt, TumorBedOpt, TumorBedsOpt,
                                  in_range)
from weakstil.cli.progress import RESULT
from weakstil.errors import UsageError
from weakstil.mil.config import Aggregator, Loss, Scoring, Stopping, StromaWeight, TrainConfig

log = logging.getLogger("weakstil")
#: The training settings' defaults (one place: weakstil.mil.config / weakstil.settings).
_TRAIN = TrainConfig()


def train(
    cohort: CohortArg,
    features: FeaturesOpt,
    out: OutOpt,
    folds: FoldsOpt = settings.FOLDS,
    group_column: GroupColumnOpt = None,
    aggregator: AggregatorOpt = Aggregator(_TRAIN.aggregator),
    stroma_weight: StromaWeightOpt = None,
    tile_stats: TileStatsOpt = _TRAIN.tile_stats,
    scoring: ScoringOpt = Scoring(_TRAIN.scoring),
    stopping: StoppingOpt = Stopping(_TRAIN.stopping),
    epochs: EpochsOpt = _TRAIN.epochs,
    patience: Annotated[int, typer.Option("--patience", help="--stopping early: stop after this many epochs without improvement.",
                                          callback=in_range(1, 100_000))] = _TRAIN.patience,
    seed: SeedOpt = _TRAIN.seed,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate (AdamW).",
                                      callback=in_range(*settings.LR_RANGE, low_open=True))] = _TRAIN.lr,
    centre_embeddings: Annotated[bool, typer.Option(
        "--centre-embeddings/--no-centre-embeddings",
        help="Subtract each slide's mean embedding (the tile measurements stay; use with --tile-stats).",
    )] = _TRAIN.centre_embeddings,
    feature_noise: Annotated[float, typer.Option(
        "--feature-noise", help="Gaussian noise on the training features, in standard deviations (0: none).",
        callback=in_range(0.0, 10.0))] = _TRAIN.feature_noise,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden units of the tile MLP.",
                                        callback=in_range(1, 65_536))] = _TRAIN.hidden,
    members: Annotated[int, typer.Option(
        "--members", help="Models per cross-validation fold (own seeds), averaged in its scores and the ensemble.",
        callback=in_range(1, 100))] = _TRAIN.members,
    dropout: Annotated[float, typer.Option("--dropout", help="Dropout in the tile MLP (0 to below 1).",
                                           callback=in_range(0.0, 1.0, high_open=True))] = _TRAIN.dropout,
    max_tiles: Annotated[int, typer.Option("--max-tiles", help="Tiles sampled per slide per training step.",
                                           callback=in_range(1, 10_000_000))] = _TRAIN.max_tiles,
    batch_slides: Annotated[int, typer.Option("--batch-slides", help="Slides per training step.",
                                              callback=in_range(1, 100_000))] = _TRAIN.batch_slides,
    loss: LossOpt = Loss(_TRAIN.loss),
    threshold: StilThresholdOpt = settings.STIL_THRESHOLD,
    device: DeviceOpt = _TRAIN.device,
    threads: ThreadsOpt = 0,
    overwrite: OverwriteOpt = False,
    annotations: AnnotationsOpt = None,
    tumorbed: TumorBedOpt = None,
    tumorbed_beds: TumorBedsOpt = None,
) -> None:
    """Train the MIL sTIL regressor on slide labels: grouped CV, then a final model on all slides.

    Writes OUT/model.safetensors + OUT/model.json, and under OUT/cv/ the out-of-fold predictions,
    metrics, plots and per-tile scores (tiles/<slide_id>.h5) of the cross-validation.
    """
    from weakstil.cli.progress import epoch_progress
    from weakstil.metrics import fmt
    from weakstil.modeldir import ModelDir
    from weakstil.train import train_cohort
    from weakstil.tumorbed.resolver import BedSources

    if stroma_weight is not None and aggregator.value != "stroma":  # said, not dropped silently
        log.warning("--stroma-weight %s applies to the stroma aggregator only; --aggregator %s ignores it",
                    stroma_weight.value, aggregator.value)
    stroma_weight = stroma_weight or StromaWeight(_TRAIN.stroma_weight)
    cfg = TrainConfig(aggregator=aggregator.value, stroma_weight=stroma_weight.value, tile_stats=tile_stats,
                      scoring=scoring.value, hidden=hidden, dropout=dropout, stopping=stopping.value, epochs=epochs,
                      patience=patience, feature_noise=feature_noise, members=members,
                      centre_embeddings=centre_embeddings,
                      lr=lr, max_tiles=max_tiles, batch_slides=batch_slides, loss=loss.value, seed=seed,
                      device=device, threads=threads)
    from weakstil.outputdir import check_inputs_outside

    check_inputs_outside(out, {"cohort CSV": cohort, "--features": features, "--annotations": annotations,
                               "--tumorbed-beds": tumorbed_beds, "--tumorbed": tumorbed}, "train")
    beds = BedSources.open(annotations=annotations, beds=tumorbed_beds, detector=tumorbed)
    from weakstil.cli.tumorbed import warn_unmatched_in_cohort

    warn_unmatched_in_cohort(annotations, cohort, features)  # a misnamed outline: named, not left unused without a word
    bundle_tumorbed = tumorbed
    if tumorbed is None and tumorbed_beds is not None:  # the detector that drew the beds scores new slides alike
        from weakstil.tumorbed.resolver import detector_behind_beds

        bundle_tumorbed = detector_behind_beds(tumorbed_beds)
    progress, on_epoch = epoch_progress()
    with progress:
        result = train_cohort(cohort, features, out, cfg, n_folds=folds, group_column=group_column,
                              threshold=threshold, overwrite=overwrite, on_epoch=on_epoch, beds=beds,
                              bundle=True, bundle_tumorbed=bundle_tumorbed)  # inside the folder before its rename
    bundled = result["bundled"]
    if bundled:
        log.info("bundled with the model for 'weakstil score': %s", ", ".join(bundled))
    cv = result["cv"]
    if cv:
        m = cv["metrics"]
        log.info("CV (%d folds): R² %s, Pearson %s, MAE %.2f, AUC@%g %s -> %s", cv["folds"], fmt(m["r2"]),
                 fmt(m["pearson_r"]), m["mae"], threshold, fmt(cv["auc"].get(f"{threshold:g}")), ModelDir(out).cv_dir,
                 extra=RESULT)
    log.info("final model: %s -> %s (%.0f s)", result["final_model"], out, result["seconds"], extra=RESULT)


def evaluate(
    cohort: CohortArg,
    out: OutOpt,
    model: ModelOpt = None,
    features: FeaturesOpt = None,
    oof: Annotated[
        Optional[Path],
        typer.Option("--oof", help="Evaluate saved predictions instead of a model: MODEL/cv/oof_predictions.csv, or "
                     "the results.csv of 'weakstil score' (then also the sTIL% interval's coverage and the qc "
                     "flags' rates; slides it did not score are left out and named)."),
    ] = None,
    group_column: EvalGroupColumnOpt = None,
    threshold: StilThresholdOpt = None,
    device: DeviceOpt = settings.DEVICE,
    threads: ThreadsOpt = 0,
    annotations: AnnotationsOpt = None,
    tumorbed: TumorBedOpt = None,
    tumorbed_beds: TumorBedsOpt = None,
    scoring: ScoringOverrideOpt = None,
    percent_as_written: PercentAsWrittenOpt = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Score a labelled cohort with a model (or --oof predictions) and report metrics.

    Writes OUT/metrics.json, metrics.csv, calibration.csv, predictions.csv, scatter.png, roc.png
    (metrics_by_group.csv too with a group column: each centre's metrics) and per-slide tile scores OUT/tiles/<slide_id>.h5 (model mode), all or nothing. OUT is a new
    or empty folder, or an earlier evaluation replaced with --overwrite; never inside a model
    folder. A slide whose tumour bed is empty gets no prediction (as in 'weakstil score').
    """
    from weakstil.outputdir import check_out_folder, staged_folder
    from weakstil.locks import hold_folder
    from weakstil.metrics import fmt

    if oof is None and (model is None or features is None):
        raise UsageError("nothing to evaluate: no --model with --features, and no --oof",
                         fix="pass --model and --features to score the cohort, or --oof PREDICTIONS.csv")
    if oof is not None and model is not None:
        raise UsageError("--model and --oof both given", fix="pass either --model (with --features) or --oof, not both")
    if oof is not None and cohort.exists() and oof.exists() and cohort.resolve() == oof.resolve():
        # the predictions judged against themselves (a results.csv has slide_id, path, stil): R² 1
        raise UsageError(f"the cohort CSV and --oof are the same file ({oof})",
                         fix="pass the cohort CSV with the pathologist's sTIL% as COHORT and the predictions as --oof")
    check_out_folder(out, "evaluate", overwrite=overwrite)  # before any work
    from weakstil.outputdir import check_inputs_outside

    check_inputs_outside(out, {"cohort CSV": cohort, "--oof": oof, "--model": model, "--features": features,
                               "--annotations": annotations, "--tumorbed": tumorbed,
                               "--tumorbed-beds": tumorbed_beds}, "evaluate")  # --overwrite replaces it whole
    if oof is not None:
        from weakstil.evaluation import evaluate_oof

        with hold_folder(out, "evaluate"), staged_folder(out, "evaluate", overwrite=overwrite) as tmp:
            m = evaluate_oof(cohort, oof, tmp, group_column=group_column, threshold=threshold,
                             percent_as_written=percent_as_written)
    else:
        from weakstil.evaluation import evaluate_cohort
        from weakstil.tumorbed.resolver import BedSources

        beds = BedSources.open(annotations=annotations, beds=tumorbed_beds, detector=tumorbed, model=model)
        from weakstil.cli.tumorbed import warn_unmatched_in_cohort

        warn_unmatched_in_cohort(annotations, cohort, features)
        with hold_folder(out, "evaluate"), staged_folder(out, "evaluate", overwrite=overwrite) as tmp:
            m = evaluate_cohort(cohort, model, features, tmp, group_column=group_column, threshold=threshold,
                                device=device, threads=threads, beds=beds,
                                scoring=None if scoring is None else scoring.value,
                                percent_as_written=percent_as_written)
    aucs = ", ".join(f"AUC@{c['threshold']:g} {fmt(c['auc'])}" for c in m["classification"])
    log.info("n %d: R² %s, Pearson %s, Spearman %s, MAE %.2f, %s -> %s", m["n"], fmt(m["r2"]), fmt(m["pearson_r"]),
             fmt(m["spearman_rho"]), m["mae"], aucs, out, extra=RESULT)
    from weakstil.metrics import band_text

    if band_text(m.get("error_by_band") or []):  # a skewed cohort's one MAE is mostly its sTIL-low slides'
        log.info("by true sTIL%%: %s", band_text(m["error_by_band"]))
    if m.get("by_group"):  # per centre: --group-column had only coloured the scatter plot
        from weakstil.metrics import group_text

        log.info("by group (metrics_by_group.csv): %s", group_text(m["by_group"]))
    if m.get("mode") == "results":
        from weakstil.evaluation_results import describe

        said = describe(m)
        if said:
            log.info("%s", said)


def report(
    out: OutOpt,
    model: Annotated[
        Optional[Path], typer.Option("--model", "-m", help="Model directory (from 'weakstil train' with --folds 2 or "
                                     "more; with --folds 1, give --evaluation). With --scores: optional, the model "
                                     "that scored them (default: the one their score files record).")
    ] = None,
    scores: Annotated[
        Optional[Path], typer.Option("--scores", help="Report a 'weakstil score' run instead: its --out folder "
                                     "(results.csv, heatmaps). Per slide: status, sTIL%, 90 % interval, call, qc flags "
                                     "with their reasons, heatmap; the run's counts, model and settings.")
    ] = None,
    cohort: Annotated[
        Optional[Path], typer.Option("--cohort", help="Cohort CSV locating the slides for the heatmaps; default: "
                                     "the one recorded in the model.")
    ] = None,
    tiles: Annotated[
        Optional[Path], typer.Option("--tiles", help="'weakstil tile' output folder: its overlays become the "
                                     "thumbnails (an overlay of another slide file or tiling than the model's is "
                                     "left out; a folder with none of the slides' overlays is warned about).")
    ] = None,
    evaluation: Annotated[
        Optional[Path], typer.Option("--evaluation", help="A finished 'weakstil evaluate' folder of this model whose "
                                     "metrics and plots to show (default: MODEL/cv, the cross-validation): --oof "
                                     "predictions are labelled out-of-fold; a --model evaluation is labelled as such, "
                                     "not out-of-fold, with how many of its slides the model was trained on. For a "
                                     "model without cross-validation, its slides and heatmaps make the table too.")
    ] = None,
    settings_file: Annotated[
        Optional[Path], typer.Option("--settings", help="JSON or YAML file of settings to list (e.g. the workflow "
                                     "configuration).")
    ] = None,
    # report has no --slides: each heatmap is drawn at the µm/px its tile scores record (the shared help's
    # "mpp column in a --slides CSV" named an option report does not have).
    slide_mpp: Annotated[Optional[float], typer.Option(
        "--slide-mpp", help="Scan resolution in µm/px of every slide shown, overriding (or replacing missing) slide "
        "metadata for the heatmaps; rarely needed: a slide whose file states none is drawn at the µm/px its tile "
        "scores record.", callback=in_range(*settings.MPP_RANGE, unit="µm/px"))] = None,
    # Parentheses, not brackets: rich took '[default: ...]' for markup and the help showed no default.
    title: Annotated[Optional[str], typer.Option("--title", help="Report title (default: WeakSTIL cohort report; "
                                                 "with --scores: WeakSTIL scoring report).", show_default=False)] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Cohort report of a model's cross-validation, or of a 'weakstil score' run (HTML and Markdown).

    OUT/report.html and OUT/report.md: metrics, predicted-vs-true scatter, ROC, a per-slide table
    (thumbnail, out-of-fold heatmap), settings and versions; OUT/overview.png shows it at a glance.
    With --scores SCORE_OUT: the run's counts (ok, error, flagged), one row per slide (status, sTIL%,
    interval, call, qc flags and reasons, heatmap), the model and settings.
    Written all or nothing; an earlier report in OUT is replaced (all its files) only with --overwrite."""
    from weakstil.errors import UsageError, check_folder_option
    from weakstil.outputdir import check_out_folder, staged_folder
    from weakstil.locks import hold_folder
    from weakstil.pipeline_yaml import read_settings
    from weakstil.report import build_report

    if scores is not None:
        given = [n for n, v in (("--cohort", cohort), ("--tiles", tiles), ("--evaluation", evaluation),
                                ("--slide-mpp", slide_mpp)) if v is not None]
        if given:
            raise UsageError(f"{', '.join(given)} belong(s) to a model's cross-validation report, not to a --scores "
                             "report (its heatmaps come from the score folder)", path=scores,
                             fix=f"leave {', '.join(given)} out, or report the model with --model and no --scores")
        _report_scores(scores, out, model, settings_file, title, overwrite)
        return
    if model is None:
        raise UsageError("no --model and no --scores: nothing to report",
                         fix="pass --model MODEL (its cross-validation) or --scores SCORE_OUT (a 'weakstil score' run)")
    title = title or "WeakSTIL cohort report"
    check_folder_option(tiles, "--tiles", "pass the --out folder of 'weakstil tile'")
    check_folder_option(evaluation, "--evaluation", "pass the --out folder of 'weakstil evaluate'")
    # a report folder, or a new one: never a model (nor inside one), feature or cohort folder
    check_out_folder(out, "report", overwrite=overwrite)
    from weakstil.outputdir import check_inputs_outside

    check_inputs_outside(out, {"--model": model, "--cohort": cohort, "--tiles": tiles, "--evaluation": evaluation,
                               "--settings": settings_file}, "report")  # --overwrite replaces it whole
    with hold_folder(out, "report"), staged_folder(out, "report", overwrite=overwrite) as tmp:
        build_report(model, tmp, cohort=cohort, tiles_dir=tiles, evaluation_dir=evaluation,
                     settings=read_settings(settings_file) if settings_file is not None else None,
                     slide_mpp=slide_mpp, title=title)
    log.info("report -> %s", out / "report.html", extra=RESULT)


def _report_scores(scores: Path, out: Path, model: Path | None, settings_file: Path | None, title: str | None,
                   overwrite: bool) -> None:
    """``report --scores``: a 'weakstil score' run's report, written as the model's is (all or nothing)."""
    from weakstil.locks import hold_folder
    from weakstil.outputdir import check_inputs_outside, check_out_folder, staged_folder
    from weakstil.pipeline_yaml import read_settings
    from weakstil.report_scores import build_score_report, read_scores

    read_scores(scores)  # a wrong folder: one line before anything is made
    check_out_folder(out, "report", overwrite=overwrite)
    check_inputs_outside(out, {"--scores": scores, "--model": model, "--settings": settings_file}, "report")
    with hold_folder(out, "report"), staged_folder(out, "report", overwrite=overwrite) as tmp:
        build_score_report(scores, tmp, model=model, title=title or "WeakSTIL scoring report",
                           settings=read_settings(settings_file) if settings_file is not None else None)
    log.info("report -> %s", out / "report.html", extra=RESULT)
