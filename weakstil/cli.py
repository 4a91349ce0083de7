"""The ``weakstil`` command line.

Options shared by several sub-commands are defined once below, so every command spells
a flag the same way. Heavy libraries are imported inside the commands: ``weakstil
--help`` must answer in about a second.

Exit codes: 0 all inputs succeeded; 1 at least one input failed (the others were still
processed); 2 usage error.
"""

from __future__ import annotations

import glob
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from weakstil import __version__

app = typer.Typer(
    name="weakstil",
    help="Stromal TIL scoring (sTIL%) of H&E whole-slide images with weakly supervised MIL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
log = logging.getLogger("weakstil")

# --- options defined once, reused by every sub-command ---------------------------------
SlidesArg = Annotated[list[str], typer.Argument(help="Slide files or glob patterns (quote globs).", show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory.")]
SlideMppOpt = Annotated[
    Optional[float],
    typer.Option("--slide-mpp", help="Scan resolution in µm/px, overriding (or replacing missing) slide metadata."),
]
MppOpt = Annotated[float, typer.Option("--mpp", help="Target resolution in µm/px at which tiles are read.")]
TileSizeOpt = Annotated[int, typer.Option("--tile-size", help="Tile side in pixels at --mpp.")]
OverlapOpt = Annotated[int, typer.Option("--overlap", help="Tile overlap in pixels at --mpp.")]
TissueThresholdOpt = Annotated[
    float, typer.Option("--tissue-threshold", help="Minimum tissue fraction for a tile to be kept (0-1).")
]
AllowUpsampleOpt = Annotated[
    bool,
    typer.Option("--allow-upsample", help="Accept slides scanned coarser than --mpp (pixels are upsampled)."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]


def _setup_logging(verbose: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    handler = RichHandler(console=Console(stderr=True), show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], format="%(message)s",
                        force=True)
    # third-party chatter
    for name in ("PIL", "matplotlib", "h5py", "urllib3", "timm", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"weakstil {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _setup_logging(verbose)


def expand_slides(patterns: list[str]) -> list[Path]:
    """Expand globs; a pattern that matches nothing is kept so it fails as 'file not found'."""
    out: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else []
        out.extend(Path(m) for m in matches) if matches else out.append(Path(pattern))
    return out


def error_line(message: str) -> None:
    """One line on stderr, without rich wrapping."""
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


@app.command()
def tile(
    slides: SlidesArg,
    out: OutOpt,
    slide_mpp: SlideMppOpt = None,
    mpp: MppOpt = 0.5,
    tile_size: TileSizeOpt = 224,
    overlap: OverlapOpt = 0,
    tissue_threshold: TissueThresholdOpt = 0.5,
    allow_upsample: AllowUpsampleOpt = False,
) -> None:
    """Find tissue and lay a tile grid; write <slide_id>.h5 and an overlay PNG per slide."""
    from weakstil.errors import WeakSTILError
    from weakstil.tiles import TilingParams, tile_slide_to_dir

    params = TilingParams(mpp=mpp, tile_px=tile_size, overlap_px=overlap, tissue_threshold=tissue_threshold)
    failed = 0
    for path in expand_slides(slides):
        try:
            h5_path, tiles = tile_slide_to_dir(path, out, params, slide_mpp=slide_mpp, allow_upsample=allow_upsample)
        except WeakSTILError as exc:
            failed += 1
            error_line(exc.one_line())
            continue
        log.info("%s: %d tiles -> %s", path, len(tiles.coords), h5_path)
    if failed:
        raise typer.Exit(1)


@app.command()
def info(slides: SlidesArg, slide_mpp: SlideMppOpt = None) -> None:
    """Print what WeakSTIL sees in each slide: resolution, size, levels, vendor."""
    from weakstil.errors import WeakSTILError
    from weakstil.slide import Slide

    failed = 0
    for path in expand_slides(slides):
        try:
            with Slide.open(path, slide_mpp=slide_mpp) as s:
                W, H = s.dimensions
                levels = ", ".join(f"{d:g}" for d in s.level_downsamples)
                typer.echo(f"{path}: {W}x{H} px, {s.mpp:.4g} µm/px ({s.mpp_source.value}), "
                           f"{W * s.mpp / 1000:.2f}x{H * s.mpp / 1000:.2f} mm, vendor {s.vendor}, "
                           f"levels [{levels}]")
        except WeakSTILError as exc:
            failed += 1
            error_line(exc.one_line())
    if failed:
        raise typer.Exit(1)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Output directory of the synthetic cohort.")],
    slides: Annotated[int, typer.Option("--slides", "-n", help="Number of slides.")] = 8,
    seed: SeedOpt = 0,
    size_mm: Annotated[
        tuple[float, float], typer.Option("--size-mm", help="Slide width and height in millimetres.")
    ] = (2.5, 2.5),
    groups: Annotated[int, typer.Option("--groups", help="Number of centres (groups) with their own stain look.")] = 4,
) -> None:
    """Generate a synthetic H&E cohort with exact sTIL truth (slides, labels.csv, truth masks)."""
    from weakstil.synth import generate_cohort

    table = generate_cohort(out, slides, seed, size_mm=size_mm, n_groups=groups)
    log.info("%d slides, sTIL median %.1f%%, %d%% >= 30%% -> %s", len(table), table["stil"].median(),
             round(100 * (table["stil"] >= 30).mean()), out / "labels.csv")


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
