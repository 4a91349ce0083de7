"""The lab's command ``score`` and the end-to-end ``demo``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from weakstil import settings
from weakstil.cli.options import (AnnotationsOpt, BatchSizeOpt, DecodeOpt, DeviceOpt, ScoreFeaturesOpt, ModelDirOpt, OutOpt,
                                  ScoreAllowUpsampleOpt, ScoreEncoderOpt, SeedOpt, SlideListOpt, SlideMppOpt,
                                  SlidesArg, StilThresholdOpt, ThreadsOpt, TumorBedOpt, TumorBedsOpt, WeightsOpt, WorkersOpt,
                                  expand_slides, listed_slides, out_dir)
from weakstil.decode.modes import DecodeMode

log = logging.getLogger("weakstil")


def score(
    model: ModelDirOpt,
    out: OutOpt,
    slides: SlidesArg = None,
    slide_list: SlideListOpt = None,
    features: ScoreFeaturesOpt = None,
    encoder: ScoreEncoderOpt = None,
    weights: WeightsOpt = None,
    annotations: AnnotationsOpt = None,
    tumorbed: TumorBedOpt = None,
    tumorbed_beds: TumorBedsOpt = None,
    threshold: StilThresholdOpt = None,
    slide_mpp: SlideMppOpt = None,
    allow_upsample: ScoreAllowUpsampleOpt = False,
    device: DeviceOpt = settings.DEVICE,
    workers: WorkersOpt = settings.DECODE_WORKERS,
    threads: ThreadsOpt = settings.TORCH_THREADS,
    decode: DecodeOpt = DecodeMode(settings.DECODE),
    batch_size: BatchSizeOpt = settings.BATCH_SIZE,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Score every slide again, even finished ones.")] = False,
) -> None:
    """Score slides end to end: sTIL% per slide (OUT/results.csv), tile-score heatmaps, HDF5 and
    QuPath GeoJSON per slide. A rerun only does what is missing or failed. Exit 0 when every
    slide succeeded (including 'no tumour bed'), 1 otherwise."""
    from weakstil.errors import UsageError, check_folder_option
    from weakstil.score import STATUS_ERROR, STATUS_NO_BED, ScoreOptions, score_batch

    slides, id_of = listed_slides(slides, slide_list)  # a CSV's slide_id column names its slides (hunt 32d)

    if features is not None and features.exists() and not features.is_dir():
        raise UsageError("--features is a file, not a folder (of feature caches, made when missing)",
                         path=features, fix="pass a folder, e.g. the --out of 'weakstil embed'")
    # a file given for a folder is a usage error (exit 2) before the model is read
    check_folder_option(annotations, "--annotations", "pass a folder of <slide_id>.geojson/.json/.xml/.annotations/.ndpa/.wkt files")
    check_folder_option(tumorbed_beds, "--tumorbed-beds", "pass the --out folder of 'weakstil tumorbed apply'")

    from weakstil.outputdir import check_out_is_not_input, check_score_out

    check_out_is_not_input(out, {"--features": features, "--annotations": annotations,
                                 "--tumorbed-beds": tumorbed_beds})
    check_score_out(out)
    opts = ScoreOptions(model=model, out=out, features=features, encoder=encoder, weights=weights, device=device,
                        workers=workers, threads=threads, decode=decode.value, batch_size=batch_size,
                        slide_mpp=slide_mpp,
                        allow_upsample=allow_upsample, annotations=annotations, tumorbed_model=tumorbed,
                        tumorbed_beds=tumorbed_beds, threshold=threshold, overwrite=overwrite,
                        listed=id_of)
    from weakstil.cli.batch import matched, nameable
    from weakstil.cli.errors import error_line

    unnamed: list[str] = []  # files whose names cannot be written into results.csv, globs matching nothing: no rows

    def refuse(problem: str) -> None:
        error_line(problem)
        unnamed.append(problem)

    paths = nameable(matched(_not_our_outputs(expand_slides(slides), out, opts.cache_dir), refuse), refuse)
    if not paths:  # nothing to score: no --out, no results.csv (it held a row of a slide named '*.svs')
        raise typer.Exit(1)
    if annotations is not None and annotations.is_dir():  # a misnamed outline: named, not unused without a word
        from weakstil.cli.tumorbed import known_slides, warn_unmatched_annotations
        from weakstil.slide import slide_id_from_path

        warn_unmatched_annotations(annotations, {slide_id_from_path(p): id_of(p) for p in paths},  # file name: id
                                   [], cohort_hint=False, others=known_slides([Path(p) for p in paths], features))
    from weakstil.cli.progress import RESULT, BatchLog, _log_console

    batch_log = None if _log_console().is_terminal else BatchLog(len(paths))  # a terminal has the live bar
    rows = score_batch(paths, opts, on_slide=None if batch_log is None else lambda _sid, row: batch_log.done(row))
    ok = sum(r["status"] != STATUS_ERROR for r in rows)
    no_bed = sum(r["status"] == STATUS_NO_BED for r in rows)
    skipped = len(getattr(rows, "skipped", ()))  # already scored (an earlier run, or one beside this): not redone
    log.info("%d of %d slides scored%s%s -> %s", ok, len(paths) + len(unnamed),  # (a read-only --out: none written)
             f" ({no_bed} without a tumour bed: no sTIL%)" if no_bed else "",
             f" ({skipped} of them already, by an earlier run or one beside this: skipped)" if skipped else "",
             out / "results.csv" if (out / "results.csv").is_file() else "no results.csv (see the error lines above)",
             extra=RESULT)
    if len(paths) + len(unnamed) > 1:  # (one slide: its error line is the last word)
        _say_failed([Path(str(r["path"])) for r in rows if r["status"] == STATUS_ERROR], len(unnamed))
    from weakstil.results_table import one_scan_under_two_ids, replaced_by_others

    for same in one_scan_under_two_ids(out, {str(r["slide_id"]) for r in rows}):
        gone = [f"{sid}'s file {where} is gone: renamed since?" for sid, where in same
                if where and not Path(where).exists()]
        log.warning("results.csv holds one scan (the same content) under %d slide ids, %s (%s): it counts that "
                    "slide %d times; keep one row (delete the others' rows and files in %s)", len(same),
                    ", ".join(sid for sid, _ in same), "; ".join(gone) or "copies of one file", len(same), out)
    others = replaced_by_others(out / "results.csv", rows)
    if others:  # two runs with different models into one --out: each slide's row is the last run's
        log.warning("%d of these slides were scored again since by another model (%s%s; now by %s) in a run into "
                    "the same --out: results.csv holds its rows for them; give each model its own --out",
                    len(others), ", ".join(sorted(others)[:3]), ", ..." if len(others) > 3 else "",
                    ", ".join(sorted(set(others.values()))))
    if ok < len(paths) or unnamed:
        raise typer.Exit(1)
    from weakstil.results_table import read_previous

    written = read_previous(out / "results.csv")
    # a row not written may leave an earlier run's row of the slide in its place: not "every slide recorded"
    if getattr(rows, "unrecorded", None) or any(str(r["slide_id"]) not in written for r in rows):
        raise typer.Exit(1)  # every slide scored, but results.csv could not take a row (its error line said why)


def _say_failed(files: list[Path], others: int, shown: int = 10) -> None:
    """The batch's failed files in one line after its summary: in a long batch's log their error lines
    lay among hundreds of qc lines, and the summary said only how many slides were scored (hunt 35h)."""
    if not files and not others:
        return
    names = [f"{f.parent.name}/{f.name}" for f in files[:shown]]  # the folder too: one name in two folders
    more = len(files) - len(names) + others  # (others: names not usable, patterns matching nothing)
    log.warning("%d not scored (their error lines above; results.csv's error column): %s%s", len(files) + others,
                ", ".join(names), f"{', ' if names else ''}{more} more" if more else "")


def _not_our_outputs(paths: list[Path], out: Path, cache_dir: Path) -> list[Path]:
    """``paths`` without the files an earlier score wrote into ``out`` (``score 'slides/*' --out
    slides``, run again, would list them as slides: error rows, exit 1), nor ``out`` itself and
    its feature caches (``score 'slides/*' --out slides/scores``; ``'slides/**/*'``)."""
    from weakstil.score import OUTPUT_SUFFIXES

    def written_by_score(p: Path) -> bool:  # results.csv, or an output with another of its slide's outputs beside it
        stem = next((p.name[: -len(s)] for s in OUTPUT_SUFFIXES if p.name.endswith(s)), None)
        return p.name == "results.csv" or (stem is not None and sum((out / f"{stem}{s}").is_file()
                                                                    for s in OUTPUT_SUFFIXES) >= 2)

    import os

    def real(p: Path) -> Path:  # not Path.resolve: it raises on a symbolic link loop (Python < 3.13)
        return Path(os.path.realpath(p))

    out_r, cache_r = real(out), real(cache_dir)

    def ours(p: Path) -> bool:
        if real(p) in (out_r, cache_r):
            return True
        parent = real(p.parent)
        if parent == out_r:
            return written_by_score(p) or p.name.startswith(".")
        return parent == cache_r and (p.suffix == ".h5" or p.name.startswith("."))

    skipped = [p for p in paths if ours(p)]
    if skipped:
        log.info("%d of the listed files are this command's own outputs in %s (%s...); not scored as slides",
                 len(skipped), out, skipped[0].name)
    return [p for p in paths if p not in skipped]


def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.", callback=out_dir)] = Path("demo_out"),
    quick: Annotated[bool, typer.Option("--quick", help="A smaller run (under 3 minutes) for tests.")] = False,
    seed: SeedOpt = settings.SEED,
    device: DeviceOpt = settings.DEVICE,
    workers: WorkersOpt = settings.DECODE_WORKERS,
    threads: ThreadsOpt = settings.TORCH_THREADS,
    decode: DecodeOpt = DecodeMode(settings.DECODE),
) -> None:
    """The whole method on a synthetic cohort: pretraining, embedding, tumour-bed detector, MIL
    training with cross-validation, scoring of held-out slides, and a metrics table."""
    from weakstil.demo import format_summary, run_demo

    typer.echo(format_summary(run_demo(out, quick=quick, seed=seed, device=device, workers=workers, threads=threads,
                                       decode=decode.value)))
