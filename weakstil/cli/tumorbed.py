"""``weakstil tumorbed train`` and ``weakstil tumorbed apply``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from weakstil import settings
from weakstil.cli.batch import for_each_slide, unique_ids
from weakstil.cli.errors import Failures
from weakstil.cli.progress import RESULT
from weakstil.cli.options import (AnnotationsDirOpt, AnnotationsOpt, FeatureFilesArg, FeaturesDirOpt,
                                  OutOpt, OverwriteOpt, TumorBedOpt, expand_slides, in_range)

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.tumorbed.resolver import BedSources

log = logging.getLogger("weakstil")

HELP = ("Tumour-bed detection: train a detector from a few annotated slides; apply annotations or a detector to "
        "slides, one checkable bed per slide.")


def tumorbed_train(
    features: FeaturesDirOpt,
    annotations: AnnotationsDirOpt,
    out: OutOpt,
    max_slides: Annotated[int, typer.Option("--max-slides", help="Use at most this many annotated slides.",
                                            callback=in_range(1, 100_000))] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seeds the appearance jitter of --augment (the fit itself has "
                                      "no random step: the same slides, annotations and seed give the same detector).",
                                      callback=in_range(*settings.SEED_RANGE))] = settings.SEED,
    cohort: Annotated[Optional[Path], typer.Option("--cohort", help="Only this cohort CSV's slides, in its order "
                                                   "(default: every slide in --features).")] = None,
    lymphoid_veto: Annotated[bool, typer.Option("--lymphoid-veto/--no-lymphoid-veto",
                                                help="Tiles of lymphocytes with no tumour nuclei (tile measurements) "
                                                "cannot seed the bed unless they touch tumour cells.")] = True,
    ink_veto: Annotated[bool, typer.Option("--ink-veto/--no-ink-veto",
                                           help="Tiles under marker ink (measured on the slides the feature files "
                                           "name, where they are there) cannot seed the bed.")] = True,
    infiltrate: Annotated[bool, typer.Option("--infiltrate/--no-infiltrate",
                                             help="Dense lymphocytic infiltrate touching the bed may be taken in "
                                             "(its reach, 0 included, chosen by the same cross-validation).")] = True,
    cell_gate: Annotated[bool, typer.Option("--cell-gate/--no-cell-gate",
                                            help="Tiles with no tumour nuclei in or beside them (tile measurements) "
                                            "cannot seed the bed; kept unless it lowers the cross-validated Dice "
                                            "by more than 0.005.")] = True,
    augment: Annotated[bool, typer.Option("--augment/--no-augment",
                                          help="Read the annotated slides' tiles again and add one copy, jittered in "
                                          "stain, brightness, contrast and focus, to the final classifier (not to the "
                                          "cross-validation that chooses the settings): beds on slides of another "
                                          "look. Needs the slides where their features say (or --cohort), and costs about one more embedding "
                                          "of the annotated slides' tiles (10 demo slides on one core: 26 -> 111 s).")] = True,
    front: Annotated[bool, typer.Option("--front/--no-front",
                                        help="Try tumour evidence at half-tile offsets where the bed meets other "
                                        "tissue (the slides read again there); kept when it raises the "
                                        "cross-validated Dice by 0.005.")] = True,
    aggregates: Annotated[bool, typer.Option("--aggregates/--no-aggregates",
                                             help="Keep compact, set-apart lymphoid aggregates (tertiary lymphoid "
                                             "structures) read off the slide at 4 µm/px out of the bed; kept unless it "
                                             "costs the annotated slides 0.005 of cross-validated Dice.")] = True,
    lobules: Annotated[bool, typer.Option("--lobules/--no-lobules",
                                          help="Keep normal lobules (clusters of small round lumens ringed by cells, "
                                          "read off the slide at 4 µm/px) out of the bed, their tiles no seeds; kept "
                                          "unless it costs the annotated slides 0.005 of cross-validated Dice.")] = True,
    mucin: Annotated[bool, typer.Option("--mucin/--no-mucin",
                                        help="Seed the bed with mucin pools holding floating cell clusters (pale, "
                                        "low-eosin pools read off the slide at 4 µm/px: a mucinous carcinoma's "
                                        "tumour); kept unless it costs the annotated slides 0.005 of "
                                        "cross-validated Dice.")] = True,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a tumour-bed detector from slides with annotations: tumour evidence per tile (a
    classifier on the embeddings) grown into the bed by geometry (bridge, enclosure, invasive-front
    margin in µm), every setting chosen by leave-one-slide-out Dice; writes OUT/model.safetensors
    + OUT/model.json (the settings and each slide's cross-validated Dice). Annotations drawn unlike a
    bed (all tissue, the nests alone, one outline on several slides) and slides whose held-out bed
    disagrees with their annotation (a focus left out, another slide's outline) are named."""
    from weakstil.errors import check_folder_option
    from weakstil.locks import hold_folder
    from weakstil.outputdir import check_own_folder, mark
    from weakstil.tumorbed.training_cache import train_tumorbed_from_cache

    check_folder_option(features, "--features", "pass the --out folder of 'weakstil embed'")
    check_folder_option(annotations, "--annotations", "pass the folder of <slide_id>.geojson/.json/.xml/.annotations/.ndpa/.wkt files")
    check_own_folder(out, "tumorbed train", overwrite=overwrite)  # before the work: a typo'd --out loses nothing
    slide_ids = slide_paths = None
    if cohort is not None:  # a shared feature folder may also hold slides outside the cohort
        from weakstil.cohort import read_cohort

        table = read_cohort(cohort, check_files=False, require_labels=False).table  # the bed needs no sTIL%
        slide_ids, slide_paths = list(table["slide_id"]), dict(zip(table["slide_id"], table["path"]))
    from weakstil.cli.progress import bar_progress

    with bar_progress("tiles") as progress:  # the jittered copies are embedded again: minutes on a CPU
        tasks: dict[str, int] = {}

        def on_batch(done: int, total: int, slide_id: str) -> None:
            if slide_id not in tasks:
                tasks[slide_id] = progress.add_task(f"{slide_id} (jittered copy)", total=total, info="")
            progress.update(tasks[slide_id], completed=done, total=total)

        model = train_tumorbed_from_cache(features, annotations, slide_ids=slide_ids, slide_paths=slide_paths,
                                           max_slides=max_slides, seed=seed,
                                           lymphoid_veto=lymphoid_veto, ink_veto=ink_veto, infiltrate=infiltrate,
                                           tumour_cell_gate=cell_gate, augment=augment, front=front,
                                           progress=on_batch, aggregates=aggregates,
                                           lobules=lobules, mucin=mucin)
    with hold_folder(out, "tumorbed train"):
        model.save(out)
        mark(out, "tumorbed train")
    log.info("tumour-bed detector from %d slides (%s Dice mean %.3f, min %.3f) -> %s", model.meta["n_slides"],
             model.meta["cv"], model.meta["cv_dice"], model.meta["cv_dice_min"], out, extra=RESULT)


def tumorbed_apply(
    features: FeatureFilesArg,
    out: OutOpt,
    annotations: AnnotationsOpt = None,
    tumorbed: TumorBedOpt = None,
    cohort: Annotated[Optional[Path], typer.Option("--cohort", help="Only this cohort CSV's slides, named by its "
                                                   "slide_id (annotations <slide_id>.geojson are found by it, as "
                                                   "by the slide file's name); feature files of other slides are "
                                                   "left out.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Make every bed again, also one made earlier from "
                                            "the same features, source and inputs (kept otherwise; an outline "
                                            "edited since is never overwritten).")] = False,
) -> None:
    """Each slide's tumour bed (annotation > detector > the feature file's own flags > whole tissue), written once for checking
    and reuse: OUT/<slide_id>.h5 (per-tile flags, mask, tumour evidence, provenance) and
    OUT/<slide_id>.geojson (QuPath outline). A detected bed that is empty or implausibly small is
    replaced by the whole tissue ('bed fallback: tissue', source tissue-fallback). A bed made
    earlier from the same inputs is kept. Pass OUT as --tumorbed-beds to train, evaluate and score."""
    from weakstil.errors import UsageError
    from weakstil.outputdir import check_out_is_not_input, check_per_slide_out, model_folder_around
    from weakstil.tumorbed.apply import claim_detector_folder
    from weakstil.tumorbed.resolver import BedSources

    check_out_is_not_input(out, {"--annotations": annotations})
    inside = model_folder_around(out)
    if inside is not None:  # 'train --overwrite' / 'tumorbed train --overwrite' replace those folders whole
        raise UsageError(f"is inside the model or detector folder {inside}, which its training command replaces "
                         "whole", path=out, fix="choose an --out outside it")
    # nor another command's folder (a feature cache, a score's --out): one line before any work, not a
    # refused slide per file of the same name and the beds of the others written among them
    check_per_slide_out(out, "tumorbed apply", "a tumour-bed file and an outline per slide")
    if annotations is None and tumorbed is None:
        log.warning("no --annotations and no --tumorbed: every bed written is the whole tissue, or the feature file's "
                    "own tumorbed flags where it holds them (a model's bundled detector is MODEL/tumorbed)")
    sources = BedSources.open(annotations=annotations, detector=tumorbed)
    failures = Failures()
    paths = unique_ids(expand_slides(features), failures, id_of=lambda p: Path(p).stem)
    ids = {Path(p).stem: Path(p).stem for p in paths}
    slide_of: dict[str, str] = {}  # slide id -> its file, the cohort CSV's (where it is now: the ink veto reads it)
    if cohort is not None:
        ids = cohort_ids(cohort, paths)
        paths = [p for p in paths if Path(p).stem in ids]
        from weakstil.cohort import read_cohort

        table = read_cohort(cohort, check_files=False, require_labels=False).table
        slide_of = dict(zip(table["slide_id"].astype(str), table["path"].astype(str)))
    if annotations is not None:
        warn_unmatched_annotations(annotations, ids, paths)
    if sources.detector is not None:
        check_detector_fits_some(sources, paths)

    from weakstil.tumorbed.apply import release_detector_claim
    from weakstil.tumorbed.runs import run_name

    existed = out.exists()
    run = run_name()  # this run, in the record while it uses it
    # one detector's beds per folder (two runs with two detectors mixed them, slide by slide)
    claimed = bool(paths) and claim_detector_folder(out, sources, overwrite,
                                                    [(ids[Path(p).stem], Path(p).stem) for p in paths], run)
    try:
        _apply_each(out, paths, ids, slide_of, sources, overwrite, failures)
    finally:
        if claimed:
            release_detector_claim(out, run, made_folder=not existed)
    failures.exit()


def _apply_each(out: Path, paths: list, ids: dict, slide_of: dict, sources, overwrite: bool, failures) -> None:
    """Each slide's bed (``tumorbed apply``), a failed one said and counted in ``failures``."""
    from weakstil.files import slide_file
    from weakstil.outputdir import mark
    from weakstil.tumorbed.apply import apply_tumorbed

    unread: list[str] = []  # slides whose ink veto or aggregate step fell away: their files are not where the features say
    redrawn: list[str] = []  # beds made again only for the ink-plane rule: said once, not left unexplained (h45e)

    def one(path: Path) -> None:
        applied = apply_tumorbed(path, out, sources, slide_id=ids[Path(path).stem], overwrite=overwrite,
                                 slide_path=slide_of.get(ids[Path(path).stem]))
        mark(out, "tumorbed apply")
        typer.echo(applied.summary())
        unread.extend([applied.slide_id] if applied.ink_unread or applied.aggregates_unread else [])
        redrawn.extend([applied.slide_id] if applied.other_rule else [])

    for_each_slide(paths, failures, lambda p: slide_file(out, Path(p).stem), one)
    if redrawn:
        from weakstil.ink_plane import INK_PLANE_RULE

        log.info("%d of %d beds were drawn again, not kept, as they had been drawn under another ink-plane rule "
                 "(the ink veto now measures ink over tissue under rule %d: weakstil.ink_plane.INK_PLANE_RULE): %s%s",
                 len(redrawn), len(paths), INK_PLANE_RULE, ", ".join(redrawn[:5]), " ..." if len(redrawn) > 5 else "")
    if unread:  # each was an info line among the beds: a moved slide folder lost the veto unnoticed
        log.warning("%d of %d beds were drawn without the detector's ink veto or another step that reads the slide "
                    "(lymphoid aggregates, normal lobules, mucin pools; each bed's summary says which), as their slides "
                    "could not be read where their features say (moved since they were embedded?): %s%s; marker "
                    "ink on them may seed the bed, aggregates beside the tumour be taken in. Fix: pass --cohort CSV with each slide's path as it is now (slide_id,path; the beds "
                    "are drawn again)", len(unread), len(paths), ", ".join(unread[:5]), " ..." if len(unread) > 5 else "")


def cohort_ids(cohort: Path, paths: list) -> dict[str, str]:
    """Feature file name -> the cohort CSV's slide_id, for the feature files of its slides (found by
    the id or by the slide file's name, as 'weakstil embed' names them); the others are named in a
    warning and left out, as 'tumorbed train --cohort' leaves them out."""
    from weakstil.cohort import read_cohort
    from weakstil.errors import UsageError
    from weakstil.slide import slide_id_from_path

    table = read_cohort(cohort, check_files=False, require_labels=False).table  # the bed needs no sTIL%
    by_name = {}
    for sid, slide in zip(table["slide_id"], table["path"]):
        by_name.setdefault(str(sid), str(sid))
        by_name.setdefault(slide_id_from_path(slide), str(sid))
    stems = [Path(p).stem for p in paths]
    ids = {stem: by_name[stem] for stem in stems if stem in by_name}
    outside = [stem for stem in stems if stem not in ids]
    if not ids:
        raise UsageError(f"none of the {len(stems)} feature files is of a slide in the cohort (e.g. {stems[0]})"
                         if stems else "no feature files given", path=cohort,
                         fix="pass the cohort's feature files (named by its slide_id or by its slide files' names)")
    if outside:
        log.warning("%s: %d feature file(s) are of slides not in the cohort and are left out: %s%s", cohort,
                    len(outside), ", ".join(outside[:5]), " ..." if len(outside) > 5 else "")
    return ids


def warn_unmatched_annotations(annotations: Path, ids: dict[str, str], paths: list, cohort_hint: bool = True,
                               others: tuple[str, ...] = ()) -> None:
    """Annotation files that match no slide, when some slide given has no annotation of its own:
    likely a misnamed file (or one named by a cohort's slide_id), which would go unused without a
    word while that slide gets the detector's bed. Files of other slides with features beside the
    given ones are not named (the workflow applies one slide at a time with the whole folder).
    ``ids``: slide file name -> slide id; ``cohort_hint``: the command takes --cohort (tumorbed apply);
    ``others``: names of other slides known to the run (not named either)."""
    from weakstil.annotations import find_annotation, unmatched_annotations

    missing = [stem for stem, sid in ids.items()
               if find_annotation(annotations, sid) is None and find_annotation(annotations, stem) is None]
    embedded = {f.stem for folder in {Path(p).parent for p in paths} for f in folder.glob("*.h5")} | set(others) \
        if missing else set()
    unused = unmatched_annotations(annotations, [*ids, *ids.values(), *embedded]) if missing else []
    if unused:
        log.warning("%s: %d annotation file(s) match no slide and are not used (%s%s), while %d "
                    "slide(s) have none (%s%s)%s", annotations, len(unused), ", ".join(p.name for p in unused[:5]),
                    " ..." if len(unused) > 5 else "", len(missing), ", ".join(missing[:5]),
                    " ..." if len(missing) > 5 else "",
                    "" if not cohort_hint or any(sid != stem for stem, sid in ids.items()) else
                    "; annotations named by a cohort CSV's slide_id are found with --cohort CSV")


def check_detector_fits_some(sources: BedSources, paths: list) -> None:
    """One error line, not one per slide, when the detector fits none of the feature files (their
    encoder differs); with some that fit, each other slide fails on its own and the rest go on."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import FeaturesFile
    from weakstil.mil.identity import MEASUREMENT_ATTRS
    from weakstil.tumorbed.resolver import check_detector_matches

    first_error = None
    for path in paths:
        try:
            attrs, _ = FeaturesFile.read_header(path)
        except WeakSTILError:
            return  # an unreadable file is that slide's own error, in the loop
        try:
            check_detector_matches(sources.detector, {k: attrs.get(k) for k in ("encoder", "weights_sha256", "weights_file_sha256", *MEASUREMENT_ATTRS)},
                                   sources.detector_path or path)
            return
        except WeakSTILError as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise WeakSTILError(f"{first_error.message} (all {len(paths)} feature files)", path=first_error.path,
                            fix=first_error.fix)


def warn_unmatched_in_cohort(annotations: Path | None, cohort: Path, features: Path | None) -> None:
    """:func:`warn_unmatched_annotations` for ``train`` and ``evaluate``: the cohort CSV's slides (by
    their slide_id or slide file name). A cohort CSV that cannot be read says so later, in its own words."""
    if annotations is None or not Path(annotations).is_dir():
        return
    from weakstil.cohort import read_cohort
    from weakstil.errors import WeakSTILError
    from weakstil.slide import slide_id_from_path

    try:
        table = read_cohort(cohort, check_files=False, require_labels=False).table
    except (WeakSTILError, OSError, ValueError):
        return
    ids = {slide_id_from_path(str(path)): str(sid) for sid, path in zip(table["slide_id"], table["path"])}
    warn_unmatched_annotations(annotations, ids, [], cohort_hint=False,
                               others=known_slides([Path(str(p)) for p in table["path"]], features))


def known_slides(slides: list[Path], features: Path | None) -> tuple[str, ...]:
    """Names of the slides a run can tell of beyond those it is given: the other slide files in their
    folders and the feature files in ``features`` (a training CSV of a split, scoring a few slides of a
    folder: the other slides' annotations are not misnamed)."""
    from weakstil.slide import slide_id_from_path

    names = set()
    for folder in [*{p.parent for p in slides}, *([Path(features)] if features is not None else [])]:
        try:
            names.update(slide_id_from_path(f) for f in folder.iterdir() if not f.name.startswith("."))
        except OSError:
            continue
    return tuple(names)
