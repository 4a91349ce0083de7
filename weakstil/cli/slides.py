"""Commands on slides themselves: ``tile``, ``info``, ``synth``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from weakstil import settings
from weakstil.cli.batch import for_each_slide, nameable, say_done, unique_ids, without_own_outputs
from weakstil.cli.errors import Failures
from weakstil.cli.progress import RESULT
from weakstil.cli.options import (AllowUpsampleOpt, HardOpt, MppOpt, OutOpt, OverlapOpt, SeedOpt, SlideListOpt, SlideMppOpt,
                                  SlidesArg, StratifiedOpt, SynthLook, SynthLookOpt, TileSizeOpt, TissueThresholdOpt,
                                  expand_slides, in_range, listed_slides, out_dir)

log = logging.getLogger("weakstil")


def tile(
    out: OutOpt,
    slides: SlidesArg = None,
    slide_list: SlideListOpt = None,
    slide_mpp: SlideMppOpt = None,
    mpp: MppOpt = settings.MPP,
    tile_size: TileSizeOpt = settings.TILE_PX,
    overlap: OverlapOpt = settings.OVERLAP_PX,
    tissue_threshold: TissueThresholdOpt = settings.TISSUE_THRESHOLD,
    allow_upsample: AllowUpsampleOpt = False,
) -> None:
    """Find tissue and lay a tile grid; write <slide_id>.h5 and an overlay PNG per slide."""
    from weakstil.files import slide_file
    from weakstil.outputdir import check_tiles_out, mark
    from weakstil.slide import Slide, slide_id_from_path
    from weakstil.tiles import TilingParams, tile_slide_to_dir, tiles_up_to_date

    # tiles are named by the slide file, as 'tumorbed train' finds them
    slides, listed = listed_slides(slides, slide_list, ids_name_outputs=False)
    params = TilingParams(mpp=mpp, tile_px=tile_size, overlap_px=overlap, tissue_threshold=tissue_threshold)
    check_tiles_out(out)  # never into a model, a cohort or another command's folder (before any work)
    if (dense := params.dense_warning()) is not None:
        log.warning(dense)
    from weakstil.limits import MORE_MEMORY_FIX

    failures = Failures(memory_fix=MORE_MEMORY_FIX)  # tile has no --batch-size to lower
    paths = unique_ids(without_own_outputs(expand_slides(slides), out, (".h5", "_tiles.png"), "tile"), failures)

    def one(path: Path) -> None:
        mpp = listed.mpp_of(path, slide_mpp)  # a slide list's mpp column, else --slide-mpp
        with Slide.open(path, slide_mpp=mpp) as slide:  # is it done? (under the slide's lock: for_each_slide)
            if not allow_upsample:  # a coarse scan is refused as when it is tiled (the warning: when it is)
                slide.check_target_mpp(params.mpp)
            n_done = tiles_up_to_date(slide, out, params)
        if n_done is not None:
            mark(out, "tile")
            log.info("%s: up to date (%d tiles) -> %s", path, n_done, out / f"{slide_id_from_path(path)}.h5")
            up_to_date[0] += 1
            return
        h5_path, tiles = tile_slide_to_dir(path, out, params, slide_mpp=mpp, allow_upsample=allow_upsample)
        mark(out, "tile")
        log.info("%s: %d tiles -> %s", path, len(tiles.coords), h5_path)

    up_to_date = [0]
    for_each_slide(paths, failures, lambda p: slide_file(out, slide_id_from_path(p)), one)
    say_done(failures, "tiled", out, up_to_date[0])
    failures.exit()


def info(slides: SlidesArg = None, slide_list: SlideListOpt = None, slide_mpp: SlideMppOpt = None) -> None:
    """Print what WeakSTIL sees in each slide: resolution, size, levels, vendor."""
    # each line names the list's slide_id beside its path (it printed paths only, the lab's ids nowhere)
    slides, listed = listed_slides(slides, slide_list, ids_name_outputs=None)
    from weakstil.errors import NoMppError
    from weakstil.slide import Slide, describe_without_mpp

    failures = Failures()
    for path in nameable(expand_slides(slides), failures.add):
        with failures.each(path):
            try:
                with Slide.open(path, slide_mpp=listed.mpp_of(path, slide_mpp)) as s:
                    typer.echo(_with_id(s.describe() + _read_notes(s), path, listed.ids))
            except NoMppError:  # a slide without µm/px is still described (the other commands refuse it)
                if listed.mpp_of(path, slide_mpp) is not None:
                    raise
                typer.echo(_with_id(describe_without_mpp(path), path, listed.ids))
    failures.exit()


def _read_notes(s) -> str:
    """What the other commands will do with the open slide ``s`` at the default tiles, said on ``info``'s
    line: a 2 µm/px scan and a 100 x 80 px one were described as any other, and refused only by tile and
    score (hunt 36c), as a slide without µm/px is described with its need of --slide-mpp."""
    from weakstil.slide import COARSER_TOLERANCE

    notes, W, H = [], *s.dimensions
    if s.mpp > settings.MPP * (1 + COARSER_TOLERANCE):
        notes.append(f"coarser than the {settings.MPP:g} µm/px tiles are read at: tile, embed and score refuse it "
                     f"without --allow-upsample (which upsamples it {s.mpp / settings.MPP:.1f}x)")
    if min(W, H) * s.mpp < settings.TILE_PX * settings.MPP:
        notes.append(f"smaller than one {settings.TILE_PX} px tile at {settings.MPP:g} µm/px "
                     f"({settings.TILE_PX * settings.MPP:g} µm): tile and score refuse it at those settings")
    return "".join(f"; {n}" for n in notes)


def _with_id(line: str, path, ids: dict[str, str]) -> str:
    """``info``'s line of ``path`` led by the slide list's ``slide_id`` of it, path kept: ``LAB-001 (PATH): ...``."""
    import os

    sid = ids.get(os.path.abspath(path))
    for shown in (str(path), str(Path(path))):  # the line names the path as given or as a Path
        if sid is not None and line.startswith(f"{shown}: "):
            return f"{sid} ({shown}): {line[len(shown) + 2:]}"
    return line


def synth(
    out: Annotated[Optional[Path], typer.Argument(help="Output directory of the synthetic cohort (or --out).",
                                                  callback=out_dir, show_default=False)] = None,
    out_option: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output directory of the synthetic "
                                                       "cohort (as the positional OUT).", callback=out_dir)] = None,
    slides: Annotated[int, typer.Option("--slides", "-n", help="Number of slides.",
                                        callback=in_range(*settings.SYNTH_SLIDES_RANGE))] = 8,
    seed: SeedOpt = settings.SEED,
    size_mm: Annotated[
        tuple[float, float], typer.Option("--size-mm", help="Slide width and height in millimetres.",
                                          callback=in_range(*settings.SIZE_MM_RANGE, unit="mm"))
    ] = (2.5, 2.5),
    groups: Annotated[int, typer.Option("--groups", help="Number of centres (groups) with their own stain look.",
                                        callback=in_range(*settings.SYNTH_SLIDES_RANGE))] = 4,
    hard: HardOpt = False,
    look: SynthLookOpt = SynthLook.default,
    stratified: StratifiedOpt = False,
) -> None:
    """Generate a synthetic H&E cohort with exact sTIL truth (slides, labels.csv, truth masks)."""
    from weakstil.locks import hold_folder
    from weakstil.outputdir import check_not_inside_replaced, check_own_folder, mark
    from weakstil.errors import UsageError
    from weakstil.synth import generate_cohort

    # --out as every other writer spells it; the positional folder of earlier versions still works
    if out is not None and out_option is not None and out.resolve() != out_option.resolve():
        raise UsageError(f"two output folders given: {out} and --out {out_option}", fix="give one of them")
    out = out or out_option
    if out is None:
        raise UsageError("no output folder", fix="give one: weakstil synth --out DIR (or weakstil synth DIR)")
    _check_synth_memory(size_mm)  # before any folder is made: a 30 mm slide holds about 4 GB
    check_own_folder(out, "synth")  # never into a lab's cohort, a model or another command's folder
    check_not_inside_replaced(out, "synth")  # nor inside a model: 'train --overwrite' would delete the cohort
    with hold_folder(out, "synth"):
        # marked first: a run stopped half-way leaves a folder a rerun knows for its own and continues
        # (slides already written are kept), and a second run at the same time is told one is writing it
        mark(out, "synth")
        table = generate_cohort(out, slides, seed, size_mm=size_mm, n_groups=groups, hard=hard, look=look.value,
                                stratified=stratified)
        mark(out, "synth")
    high = settings.STIL_THRESHOLD
    log.info("%d slides, sTIL median %.1f%%, %d%% >= %g%% -> %s", len(table), table["stil"].median(),
             round(100 * (table["stil"] >= high).mean()), high, out / "labels.csv", extra=RESULT)


def _check_synth_memory(size_mm: tuple[float, float]) -> None:
    """Refuse (exit 2) a slide size whose generation would not fit in memory (hunt 29a)."""
    from weakstil.resources import check_memory
    from weakstil.synth.generator import synth_bytes

    need = synth_bytes(size_mm)
    check_memory(need, "cpu", what=f"--size-mm {size_mm[0]:g} {size_mm[1]:g} (one slide at a time)",
                 fix="pass a smaller --size-mm (2.5 2.5 by default; memory grows with the area, about 4 MB per mm² "
                     "plus 0.6 GB)")
    if need > 2 * 1024**3:
        log.warning("--size-mm %g %g: about %.1f GB of memory and several minutes per slide (16 x 16 mm: 1.5 GB, "
                    "4 min)", size_mm[0], size_mm[1], need / 1024**3)
