"""``weakstil tumorbed train`` and ``weakstil tumorbed apply``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from weakstil import settings
from weakstil.cli.batch import for_each_slide, unique_ids
from weakstil.cli.errors import Failures
from weakstil.cli.options import (AnnotationsDirOpt, AnnotationsOpt, FeatureFilesArg, FeaturesDirOpt,
                                  OutOpt, OverwriteOpt, SeedOpt, TumorBedOpt, expand_slides, in_range)

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
    seed: SeedOpt = settings.SEED,
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
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a tumour-bed detector from slides with annotations: tumour evidence per tile (a
    classifier on the embeddings) grown into the bed by geometry (bridge, enclosure, invasive-front
    margin in µm), every setting chosen by leave-one-slide-out Dice; writes OUT/model.safetensors
    + OUT/model.json (the settings and each slide's cross-validated Dice)."""
    from weakstil.errors import WeakSTILError
    from weakstil.locks import hold_folder
    from weakstil.outputdir import check_own_folder, mark
    from weakstil.tumorbed.training import train_tumorbed_from_cache

    for folder, what, made_by in ((features, "feature cache folder", "the --out folder of 'weakstil embed'"),
                                  (annotations, "annotation folder", "the folder of <slide_id>.geojson/.xml files")):
        if not folder.is_dir():
            raise WeakSTILError(f"{what} not found" if not folder.exists() else f"is not a folder (the {what})",
                                path=folder, fix=f"pass {made_by}")
    check_own_folder(out, "tumorbed train", overwrite=overwrite)  # before the work: a typo'd --out loses nothing
    slide_ids = slide_paths = None
    if cohort is not None:  # a shared feature folder may also hold slides outside the cohort
        from weakstil.cohort import read_cohort

        table = read_cohort(cohort, check_files=False).table
        slide_ids, slide_paths = list(table["slide_id"]), dict(zip(table["slide_id"], table["path"]))
    model = train_tumorbed_from_cache(features, annotations, slide_ids=slide_ids, slide_paths=slide_paths,
                                       max_slides=max_slides, seed=seed,
                                       lymphoid_veto=lymphoid_veto, ink_veto=ink_veto, infiltrate=infiltrate)
    with hold_folder(out, "tumorbed train"):
        model.save(out)
        mark(out, "tumorbed train")
    log.info("tumour-bed detector from %d slides (%s Dice mean %.3f, min %.3f) -> %s", model.meta["n_slides"],
             model.meta["cv"], model.meta["cv_dice"], model.meta["cv_dice_min"], out)


def tumorbed_apply(
    features: FeatureFilesArg,
    out: OutOpt,
    annotations: AnnotationsOpt = None,
    tumorbed: TumorBedOpt = None,
) -> None:
    """Each slide's tumour bed (annotation > detector > whole tissue), written once for checking
    and reuse: OUT/<slide_id>.h5 (per-tile flags, mask, tumour evidence, provenance) and
    OUT/<slide_id>.geojson (QuPath outline). A detected bed that is empty or implausibly small is
    replaced by the whole tissue ('bed fallback: tissue', source tissue-fallback). Pass OUT as
    --tumorbed-beds to train, evaluate and score."""
    from weakstil.files import slide_file
    from weakstil.errors import UsageError
    from weakstil.outputdir import check_out_is_not_input, mark, model_folder_around
    from weakstil.tumorbed.apply import apply_tumorbed
    from weakstil.tumorbed.resolver import BedSources

    check_out_is_not_input(out, {"--annotations": annotations})
    inside = model_folder_around(out)
    if inside is not None:  # 'train --overwrite' / 'tumorbed train --overwrite' replace those folders whole
        raise UsageError(f"is inside the model or detector folder {inside}, which its training command replaces "
                         "whole", path=out, fix="choose an --out outside it")
    if annotations is None and tumorbed is None:
        log.warning("no --annotations and no --tumorbed: every bed written is the whole tissue (a model's "
                    "bundled detector is MODEL/tumorbed)")
    sources = BedSources.open(annotations=annotations, detector=tumorbed)
    failures = Failures()
    paths = unique_ids(expand_slides(features), failures, id_of=lambda p: Path(p).stem)
    if sources.detector is not None:
        check_detector_fits_some(sources, paths)

    def one(path: Path) -> None:
        applied = apply_tumorbed(path, out, sources)
        mark(out, "tumorbed apply")
        typer.echo(applied.summary())

    for_each_slide(paths, failures, lambda p: slide_file(out, Path(p).stem), one)
    failures.exit()


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
            check_detector_matches(sources.detector, {k: attrs.get(k) for k in ("encoder", "weights_sha256", *MEASUREMENT_ATTRS)},
                                   sources.detector_path or path)
            return
        except WeakSTILError as exc:
            first_error = first_error or exc
    if first_error is not None:
        raise WeakSTILError(f"{first_error.message} (all {len(paths)} feature files)", path=first_error.path,
                            fix=first_error.fix)
