"""Commands on slides themselves: ``tile``, ``info``, ``synth``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from weakstil import settings
from weakstil.cli.errors import Failures
from weakstil.cli.options import (AllowUpsampleOpt, HardOpt, MppOpt, OutOpt, OverlapOpt, SeedOpt, SlideMppOpt,
                                  SlidesArg, SynthLook, SynthLookOpt, TileSizeOpt, TissueThresholdOpt, expand_slides)

log = logging.getLogger("weakstil")


def tile(
    slides: SlidesArg,
    out: OutOpt,
    slide_mpp: SlideMppOpt = None,
    mpp: MppOpt = settings.MPP,
    tile_size: TileSizeOpt = settings.TILE_PX,
    overlap: OverlapOpt = settings.OVERLAP_PX,
    tissue_threshold: TissueThresholdOpt = settings.TISSUE_THRESHOLD,
    allow_upsample: AllowUpsampleOpt = False,
) -> None:
    """Find tissue and lay a tile grid; write <slide_id>.h5 and an overlay PNG per slide."""
    from weakstil.tiles import TilingParams, tile_slide_to_dir

    params = TilingParams(mpp=mpp, tile_px=tile_size, overlap_px=overlap, tissue_threshold=tissue_threshold)
    failures = Failures()
    for path in expand_slides(slides):
        with failures.each():
            h5_path, tiles = tile_slide_to_dir(path, out, params, slide_mpp=slide_mpp, allow_upsample=allow_upsample)
            log.info("%s: %d tiles -> %s", path, len(tiles.coords), h5_path)
    failures.exit()


def info(slides: SlidesArg, slide_mpp: SlideMppOpt = None) -> None:
    """Print what WeakSTIL sees in each slide: resolution, size, levels, vendor."""
    from weakstil.slide import Slide

    failures = Failures()
    for path in expand_slides(slides):
        with failures.each(), Slide.open(path, slide_mpp=slide_mpp) as s:
            typer.echo(s.describe())
    failures.exit()


def synth(
    out: Annotated[Path, typer.Argument(help="Output directory of the synthetic cohort.")],
    slides: Annotated[int, typer.Option("--slides", "-n", help="Number of slides.")] = 8,
    seed: SeedOpt = settings.SEED,
    size_mm: Annotated[
        tuple[float, float], typer.Option("--size-mm", help="Slide width and height in millimetres.")
    ] = (2.5, 2.5),
    groups: Annotated[int, typer.Option("--groups", help="Number of centres (groups) with their own stain look.")] = 4,
    hard: HardOpt = False,
    look: SynthLookOpt = SynthLook.default,
) -> None:
    """Generate a synthetic H&E cohort with exact sTIL truth (slides, labels.csv, truth masks)."""
    from weakstil.synth import generate_cohort

    table = generate_cohort(out, slides, seed, size_mm=size_mm, n_groups=groups, hard=hard, look=look.value)
    high = settings.STIL_THRESHOLD
    log.info("%d slides, sTIL median %.1f%%, %d%% >= %g%% -> %s", len(table), table["stil"].median(),
             round(100 * (table["stil"] >= high).mean()), high, out / "labels.csv")
