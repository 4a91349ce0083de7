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
from enum import Enum
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
CohortArg = Annotated[
    Path, typer.Argument(help="Cohort CSV: slide_id,path,stil[,group]; paths relative to the CSV.", show_default=False)
]
FeaturesOpt = Annotated[
    Optional[Path], typer.Option("--features", "-f", help="Feature cache directory (from 'weakstil embed').")
]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="Model directory (from 'weakstil train').")]
GroupColumnOpt = Annotated[
    Optional[str],
    typer.Option("--group-column", help="Cohort column whose groups (patient, centre) never straddle a CV split; "
                 "default 'group' when present, 'none' to split by slide."),
]
StilThresholdOpt = Annotated[
    Optional[float], typer.Option("--threshold", help="sTIL-high cut-off in % (high means >= it; evaluate defaults to the model's).")
]
DeviceOpt = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:N or auto.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
ThreadsOpt = Annotated[
    int, typer.Option("--threads", help="Torch CPU threads (0: automatic, the cores not busy with other work).")
]
EncoderOpt = Annotated[
    str, typer.Option("--encoder", "-e", help="Encoder card name ('weakstil encoders' lists them) or a "
                      "'weakstil pretrain' output directory.")
]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", help="Encoder weights: a .safetensors file, a PyTorch state dict, or 'random'; default: "
                 "the card's own (pretrain directory, or the Hugging Face cache/hub)."),
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Tiles per batch.")]
AnnotationsOpt = Annotated[
    Optional[Path],
    typer.Option("--annotations", help="Directory of tumour-bed annotations (<slide_id>.geojson QuPath GeoJSON or "
                 "<slide_id>.xml ImageScope XML); an annotation overrides detection for its slide."),
]
TumorBedOpt = Annotated[
    Optional[Path],
    typer.Option("--tumorbed", help="Tumour-bed detector (from 'weakstil tumorbed train'); score and evaluate "
                 "default to the one bundled in the model directory, if any."),
]
TumorBedsOpt = Annotated[
    Optional[Path],
    typer.Option("--tumorbed-beds", help="Directory of precomputed tumour beds (<slide_id>.h5 from 'weakstil "
                 "tumorbed apply'); a slide's bed there comes first, before --annotations and --tumorbed."),
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Tile-decoding threads (0: automatic).")]


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


class _SynthLook(str, Enum):
    """The looks of ``weakstil.synth.LOOKS`` (spelled here so the CLI starts without importing it)."""

    default = "default"
    alt = "alt"


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Output directory of the synthetic cohort.")],
    slides: Annotated[int, typer.Option("--slides", "-n", help="Number of slides.")] = 8,
    seed: SeedOpt = 0,
    size_mm: Annotated[
        tuple[float, float], typer.Option("--size-mm", help="Slide width and height in millimetres.")
    ] = (2.5, 2.5),
    groups: Annotated[int, typer.Option("--groups", help="Number of centres (groups) with their own stain look.")] = 4,
    hard: Annotated[bool, typer.Option(
        "--hard", help="Real-tissue confounders (dark tumour nuclei, plasma cells, necrosis, lymphoid structures "
        "outside the bed, DCIS, stain/focus/fold/pen artefacts...), strengths drawn per slide; labels stay exact.",
    )] = False,
    look: Annotated[_SynthLook, typer.Option(
        "--look", help="Appearance family: 'default' or 'alt' (other palette, nuclei, textures and optics).",
    )] = _SynthLook.default,
) -> None:
    """Generate a synthetic H&E cohort with exact sTIL truth (slides, labels.csv, truth masks)."""
    from weakstil.synth import generate_cohort

    table = generate_cohort(out, slides, seed, size_mm=size_mm, n_groups=groups, hard=hard, look=look.value)
    log.info("%d slides, sTIL median %.1f%%, %d%% >= 30%% -> %s", len(table), table["stil"].median(),
             round(100 * (table["stil"] >= 30).mean()), out / "labels.csv")



class _StainNorm(str, Enum):
    card = "card"
    none = "none"
    macenko = "macenko"


StainNormOpt = Annotated[
    _StainNorm, typer.Option("--stain-norm", help="Re-render tiles with reference stain vectors before the encoder "
                             "(per-slide Macenko estimate): macenko, none, or card (what the encoder card says).")]


class _Aggregator(str, Enum):
    stroma = "stroma"
    mean = "mean"
    attention = "attention"


class _Scoring(str, Enum):
    final = "final"
    ensemble = "ensemble"


class _StromaWeight(str, Enum):
    learned = "learned"
    estimate = "estimate"


class _Loss(str, Enum):
    mse = "mse"
    huber = "huber"


def _epoch_progress():
    """A rich progress display and an ``on_epoch`` callback feeding it (one bar per fold)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from rich.logging import RichHandler

    # share the log handler's console so log lines print above the live bars
    console = next((h.console for h in logging.getLogger().handlers if isinstance(h, RichHandler)), None)
    progress = Progress(TextColumn("{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                        console=console or Console(stderr=True), transient=False)
    tasks: dict[str, int] = {}

    def on_epoch(stage: str, epoch: int, max_epochs: int, train_loss: float, val_loss: float, done: bool) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=max_epochs, info="")
        info = f"loss {train_loss:.4f}" + ("" if val_loss != val_loss else f"  val {val_loss:.4f}")
        progress.update(tasks[stage], completed=max_epochs if done else epoch, info=info)

    return progress, on_epoch


@app.command()
def train(
    cohort: CohortArg,
    features: FeaturesOpt,
    out: OutOpt,
    folds: Annotated[int, typer.Option("--folds", help="Cross-validation folds (1: no cross-validation).")] = 5,
    group_column: GroupColumnOpt = None,
    aggregator: Annotated[
        _Aggregator, typer.Option("--aggregator", help="Slide score from tile scores: stroma (stroma-weighted mean, "
                                  "the sTIL definition), mean (WeakSTIL 2022) or attention.")
    ] = _Aggregator.mean,
    stroma_weight: Annotated[
        _StromaWeight, typer.Option("--stroma-weight", help="Tile weights of the stroma aggregator: learned (a head "
                                    "on the tile features) or estimate (colour-deconvolution stroma share).")
    ] = _StromaWeight.learned,
    tile_stats: Annotated[
        bool, typer.Option("--tile-stats/--no-tile-stats", help="Append each tile's stain and nuclear-morphometry "
                           "measurements to its embedding.")
    ] = False,
    scoring: Annotated[
        _Scoring, typer.Option("--scoring", help="How evaluate/score rate new slides: the final model, or the "
                               "ensemble of the cross-validation fold models.")
    ] = _Scoring.final,
    epochs: Annotated[int, typer.Option("--epochs", help="Maximum epochs (early stopping usually ends sooner).")] = 100,
    patience: Annotated[int, typer.Option("--patience", help="Stop after this many epochs without improvement.")] = 15,
    seed: SeedOpt = 0,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate (AdamW).")] = 2e-3,
    hidden: Annotated[int, typer.Option("--hidden", help="Hidden units of the tile MLP.")] = 128,
    dropout: Annotated[float, typer.Option("--dropout", help="Dropout in the tile MLP.")] = 0.25,
    max_tiles: Annotated[int, typer.Option("--max-tiles", help="Tiles sampled per slide per training step.")] = 512,
    batch_slides: Annotated[int, typer.Option("--batch-slides", help="Slides per training step.")] = 8,
    loss: Annotated[_Loss, typer.Option("--loss", help="Slide-level loss on sTIL%/100.")] = _Loss.mse,
    threshold: StilThresholdOpt = 30.0,
    device: DeviceOpt = "auto",
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
    from weakstil.errors import WeakSTILError

    try:
        from weakstil.milconfig import TrainConfig
        from weakstil.train import train_cohort

        cfg = TrainConfig(aggregator=aggregator.value, stroma_weight=stroma_weight.value, tile_stats=tile_stats,
                          scoring=scoring.value,
                          hidden=hidden, dropout=dropout, epochs=epochs,
                          patience=patience, lr=lr, max_tiles=max_tiles, batch_slides=batch_slides,
                          loss=loss.value, seed=seed, device=device, threads=threads)
        progress, on_epoch = _epoch_progress()
        with progress:
            result = train_cohort(cohort, features, out, cfg, n_folds=folds, group_column=group_column,
                                  threshold=threshold, overwrite=overwrite, on_epoch=on_epoch,
                                  tile_masks=_tile_masks(cohort, features, annotations, tumorbed, tumorbed_beds))
    except WeakSTILError as exc:
        error_line(exc.one_line())
        raise typer.Exit(1) from None
    from weakstil.score import bundle_for_scoring

    bundled = bundle_for_scoring(out, features, tumorbed)
    if bundled:
        log.info("bundled with the model for 'weakstil score': %s", ", ".join(bundled))
    cv = result["cv"]
    if cv:
        m = cv["metrics"]
        log.info("CV (%d folds): R² %.3f, Pearson %.3f, MAE %.2f, AUC@%g %s -> %s", cv["folds"], m["r2"],
                 m["pearson_r"], m["mae"], threshold, _fmt(cv["auc"].get(f"{threshold:g}")), out / "cv")
    log.info("final model: %s -> %s (%.0f s)", result["final_model"], out, result["seconds"])


def _tile_masks(cohort_csv: Path, features: Path, annotations: Path | None, tumorbed: Path | None,
                beds: Path | None):
    """Tumour-bed tiles per slide from --tumorbed-beds / --annotations / --tumorbed (None: all tiles)."""
    if annotations is None and tumorbed is None and beds is None:
        return None
    from weakstil.cohort import read_cohort
    from weakstil.tumorbed import cohort_tile_masks

    ids = list(read_cohort(cohort_csv, features_dir=features).slide_ids)
    return cohort_tile_masks(ids, features, annotations=annotations, detector=tumorbed, beds=beds)


def _bundled_tumorbed(model: Path | None) -> Path | None:
    return model / "tumorbed" if model is not None and (model / "tumorbed" / "model.json").is_file() else None


def _fmt(value) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


@app.command()
def evaluate(
    cohort: CohortArg,
    out: OutOpt,
    model: ModelOpt = None,
    features: FeaturesOpt = None,
    oof: Annotated[
        Optional[Path],
        typer.Option("--oof", help="Evaluate saved predictions (MODEL/cv/oof_predictions.csv) instead of a model."),
    ] = None,
    group_column: GroupColumnOpt = None,
    threshold: StilThresholdOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = 0,
    annotations: AnnotationsOpt = None,
    tumorbed: TumorBedOpt = None,
    tumorbed_beds: TumorBedsOpt = None,
) -> None:
    """Score a labelled cohort with a model (or --oof predictions) and report metrics.

    Writes OUT/metrics.json, metrics.csv, calibration.csv, predictions.csv, scatter.png, roc.png
    and per-slide tile scores OUT/tiles/<slide_id>.h5 (model mode).
    """
    from weakstil.errors import WeakSTILError

    if oof is None and (model is None or features is None):
        error_line("pass --model and --features to score the cohort, or --oof PREDICTIONS.csv")
        raise typer.Exit(2)
    if oof is not None and model is not None:
        error_line("pass either --model (with --features) or --oof, not both")
        raise typer.Exit(2)
    try:
        if oof is not None:
            from weakstil.train import evaluate_oof

            m = evaluate_oof(cohort, oof, out, group_column=group_column,
                             threshold=30.0 if threshold is None else threshold)
        else:
            from weakstil.train import evaluate_cohort

            m = evaluate_cohort(cohort, model, features, out, group_column=group_column, threshold=threshold,
                                device=device, threads=threads,
                                tile_masks=_tile_masks(cohort, features, annotations,
                                                       tumorbed or _bundled_tumorbed(model), tumorbed_beds))
    except WeakSTILError as exc:
        error_line(exc.one_line())
        raise typer.Exit(1) from None
    aucs = ", ".join(f"AUC@{c['threshold']:g} {_fmt(c['auc'])}" for c in m["classification"])
    log.info("n %d: R² %s, Pearson %s, Spearman %s, MAE %.2f, %s -> %s", m["n"], _fmt(m["r2"]), _fmt(m["pearson_r"]),
             _fmt(m["spearman_rho"]), m["mae"], aucs, out)


@app.command()
def report(
    model: Annotated[Path, typer.Option("--model", "-m", help="Model directory (from 'weakstil train' with "
                                        "--folds 2 or more).")],
    out: OutOpt,
    cohort: Annotated[
        Optional[Path], typer.Option("--cohort", help="Cohort CSV locating the slides for the heatmaps; default: "
                                     "the one recorded in the model.")
    ] = None,
    tiles: Annotated[
        Optional[Path], typer.Option("--tiles", help="'weakstil tile' output folder: its overlays become the "
                                     "thumbnails.")
    ] = None,
    evaluation: Annotated[
        Optional[Path], typer.Option("--evaluation", help="'weakstil evaluate --oof' output folder whose metrics "
                                     "and plots to show (default: MODEL/cv).")
    ] = None,
    settings: Annotated[
        Optional[Path], typer.Option("--settings", help="JSON or YAML file of settings to list (e.g. the workflow "
                                     "configuration).")
    ] = None,
    slide_mpp: SlideMppOpt = None,
    title: Annotated[str, typer.Option("--title", help="Report title.")] = "WeakSTIL cohort report",
) -> None:
    """Cohort report of a model's cross-validation (HTML and Markdown).

    OUT/report.html and OUT/report.md: metrics, predicted-vs-true scatter, ROC, a per-slide table
    (thumbnail, out-of-fold heatmap), settings and versions; OUT/overview.png shows it at a glance."""
    from weakstil.errors import WeakSTILError

    try:
        from weakstil.report import build_report, read_settings

        files = build_report(model, out, cohort=cohort, tiles_dir=tiles, evaluation_dir=evaluation,
                             settings=read_settings(settings) if settings is not None else None,
                             slide_mpp=slide_mpp, title=title)
    except WeakSTILError as exc:
        error_line(exc.one_line())
        raise typer.Exit(1) from None
    log.info("report -> %s", files["report.html"])


# --- stage 1: encoders, embedding, self-supervised pretraining ---------------------------
def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so temporary outputs are cleaned up on the way out."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from tests in a thread)
        pass


def _bar_progress(unit: str):
    """A rich progress display on the log console, for loops with a known total."""
    from rich.console import Console
    from rich.logging import RichHandler
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = next((h.console for h in logging.getLogger().handlers if isinstance(h, RichHandler)), None)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                    console=console or Console(stderr=True), transient=True)


@app.command()
def encoders() -> None:
    """List the built-in encoder cards (name, architecture, embedding size, licence, weights)."""
    from weakstil.encoders import list_cards

    for c in list_cards():
        weights = c.hub_id or "none published (train with 'weakstil pretrain')"
        flags = ", ".join(x for x in ("gated" if c.gated else "", c.status if c.status != "ok" else "") if x)
        typer.echo(f"{c.name:<20} {c.model:<28} {c.embed_dim:>5}-d  {c.input_px} px @ {c.mpp:g} µm/px  "
                   f"{c.precision:<4}  {weights}  [{c.licence}]" + (f"  ({flags})" if flags else ""))


@app.command()
def embed(
    slides: SlidesArg,
    out: OutOpt,
    encoder: EncoderOpt,
    weights: WeightsOpt = None,
    batch_size: BatchSizeOpt = 64,
    workers: WorkersOpt = 0,
    device: DeviceOpt = "auto",
    slide_mpp: SlideMppOpt = None,
    mpp: MppOpt = 0.5,
    tile_size: TileSizeOpt = 224,
    overlap: OverlapOpt = 0,
    tissue_threshold: TissueThresholdOpt = 0.5,
    allow_upsample: AllowUpsampleOpt = False,
    overwrite: OverwriteOpt = False,
    seed: SeedOpt = 0,
    stain_norm: StainNormOpt = _StainNorm.card,
) -> None:
    """Embed every tissue tile with an encoder: OUT/<slide_id>.h5 with features, coords and provenance.

    A slide whose complete cache was made with the same encoder, weights and tiling is skipped."""
    from weakstil.errors import WeakSTILError

    _interrupt_on_sigterm()
    try:
        import torch

        from weakstil.embed import cache_path, embed_slide, plan_threads
        from weakstil.encoders.factory import create_encoder, resolve_device
        from weakstil.tiles import TilingParams

        dev = resolve_device(device)
        n_workers, n_threads = plan_threads(dev.type, workers or None)
        torch.set_num_threads(n_threads)
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels
        enc = create_encoder(encoder, weights, str(dev), seed=seed)
        if stain_norm is not _StainNorm.card:
            import dataclasses

            enc.card = dataclasses.replace(enc.card, stain_norm=None if stain_norm is _StainNorm.none else
                                           stain_norm.value)
    except WeakSTILError as exc:
        error_line(exc.one_line())
        raise typer.Exit(1) from None
    log.info("encoder %s (%s, %d-d, weights %s) on %s, %s; %d decode thread(s), %d torch thread(s)", enc.name,
             enc.card.model, enc.embed_dim, enc.weights_sha256[:12], dev, enc.precision, n_workers, n_threads)
    params = TilingParams(mpp=mpp, tile_px=tile_size, overlap_px=overlap, tissue_threshold=tissue_threshold)
    failed = 0
    seen: dict[Path, Path] = {}
    with _bar_progress("tiles") as progress:
        for path in expand_slides(slides):
            target = cache_path(out, path)
            if target in seen:
                failed += 1
                error_line(f"{path}: has the same slide id as {seen[target]} (both would write {target}). "
                           "Fix: rename one of the files.")
                continue
            seen[target] = path
            task = progress.add_task(path.name, total=None, info="")

            def on_batch(done: int, total: int, task=task) -> None:
                progress.update(task, completed=done, total=total)

            try:
                r = embed_slide(path, enc, target, params, slide_mpp=slide_mpp, allow_upsample=allow_upsample,
                                batch_size=batch_size, workers=n_workers, overwrite=overwrite, seed=seed,
                                progress=on_batch)
            except WeakSTILError as exc:
                failed += 1
                error_line(exc.one_line())
                continue
            finally:
                progress.remove_task(task)
            if r.skipped:
                log.info("%s: up to date (%d tiles) -> %s", path, r.n_tiles, r.path)
            else:
                log.info("%s: %d tiles x %d -> %s (%.0f tiles/s)", path, r.n_tiles, enc.embed_dim, r.path,
                         r.tiles_per_s)
    if failed:
        raise typer.Exit(1)


@app.command()
def pretrain(
    slides: SlidesArg,
    out: OutOpt,
    encoder: EncoderOpt = "small-cnn",
    weights: Annotated[
        Optional[str], typer.Option("--weights", help="Start from these weights (default: random init).")
    ] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Optimisation steps in total (default 200).")] = None,
    epochs: Annotated[
        Optional[float], typer.Option("--epochs", help="Instead of --steps: passes over the sampled tiles.")
    ] = None,
    batch_size: BatchSizeOpt = 64,
    tiles_per_slide: Annotated[int, typer.Option("--tiles-per-slide", help="Random tissue tiles kept per slide.")] = 256,
    crop_px: Annotated[int, typer.Option("--crop-px", help="Side of the augmented views in pixels.")] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, cosine schedule).")] = 1e-3,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")] = False,
    workers: WorkersOpt = 0,
    slide_mpp: SlideMppOpt = None,
    mpp: MppOpt = 0.5,
    tile_size: TileSizeOpt = 224,
    tissue_threshold: TissueThresholdOpt = 0.5,
    allow_upsample: AllowUpsampleOpt = False,
    stain_norm: StainNormOpt = _StainNorm.card,
) -> None:
    """Self-supervised pretraining (SimCLR, H&E-aware augmentation) of an encoder on tissue tiles.

    Writes OUT/model.safetensors and OUT/card.yaml (use OUT as 'weakstil embed --encoder OUT'),
    and a checkpoint for --resume."""
    from weakstil.errors import WeakSTILError

    _interrupt_on_sigterm()
    failed = 0

    def slide_error(path, exc) -> None:
        nonlocal failed
        failed += 1
        error_line(exc.one_line())

    try:
        from weakstil.embed import plan_threads
        from weakstil.encoders.factory import resolve_device
        from weakstil.pretrain import PretrainConfig
        from weakstil.pretrain import pretrain as run_pretrain

        dev = resolve_device(device)
        n_workers, _ = plan_threads(dev.type, workers or None)  # tiles are read once, before training
        # training keeps torch's own thread count (all cores, or OMP_NUM_THREADS when set)
        cfg = PretrainConfig(encoder=encoder, init_weights=weights or "random", steps=steps, epochs=epochs,
                             batch_size=batch_size, tiles_per_slide=tiles_per_slide, crop_px=crop_px, lr=lr,
                             seed=seed, mpp=mpp, tile_px=tile_size, tissue_threshold=tissue_threshold,
                             stain_norm=stain_norm.value)
        with _bar_progress("steps") as progress:
            task = progress.add_task("pretrain", total=None, info="")

            def on_step(step: int, total: int, loss: float) -> None:
                progress.update(task, completed=step, total=total, info=f"loss {loss:.3f}")

            result = run_pretrain(expand_slides(slides), out, cfg, device=str(dev), resume=resume,
                                  slide_mpp=slide_mpp, allow_upsample=allow_upsample, workers=n_workers,
                                  on_step=on_step, on_slide_error=slide_error)
    except WeakSTILError as exc:
        error_line(exc.one_line())
        raise typer.Exit(1) from None
    log.info("encoder '%s': %d steps on %d tiles, loss %.3f, weights sha256 %s -> %s", result.card.name,
             result.steps, result.n_tiles, result.final_loss, result.weights_sha256[:12], out)
    if failed:
        raise typer.Exit(1)


@app.command()
def score(
    slides: SlidesArg,
    model: Annotated[Path, typer.Option("--model", "-m", help="Model directory (from 'weakstil train').")],
    out: OutOpt,
    features: FeaturesOpt = None,
    encoder: Annotated[Optional[str], typer.Option("--encoder", "-e", help="Encoder card or directory; default: "
                                                   "the one bundled in / recorded by the model.")] = None,
    weights: WeightsOpt = None,
    annotations: AnnotationsOpt = None,
    tumorbed: TumorBedOpt = None,
    tumorbed_beds: TumorBedsOpt = None,
    threshold: StilThresholdOpt = None,
    slide_mpp: SlideMppOpt = None,
    allow_upsample: AllowUpsampleOpt = False,
    device: DeviceOpt = "auto",
    workers: WorkersOpt = 0,
    batch_size: BatchSizeOpt = 64,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Score every slide again, even finished ones.")] = False,
) -> None:
    """Score slides end to end: sTIL% per slide (OUT/results.csv), tile-score heatmaps, HDF5 and
    QuPath GeoJSON per slide. A rerun only does what is missing or failed. Exit 0 when every
    slide succeeded (including 'no tumour bed'), 1 otherwise."""
    from weakstil.errors import WeakSTILError
    from weakstil.score import STATUS_ERROR, ScoreOptions, score_batch

    opts = ScoreOptions(model=model, out=out, features=features, encoder=encoder, weights=weights, device=device,
                        workers=workers or 2, batch_size=batch_size, slide_mpp=slide_mpp,
                        allow_upsample=allow_upsample, annotations=annotations, tumorbed_model=tumorbed,
                        tumorbed_beds=tumorbed_beds, threshold=threshold, overwrite=overwrite)
    try:
        rows = score_batch(expand_slides(slides), opts)
    except WeakSTILError as exc:
        error_line(exc.one_line())
        raise typer.Exit(1) from None
    ok = sum(r["status"] != STATUS_ERROR for r in rows)
    log.info("%d of %d slides scored -> %s", ok, len(rows), out / "results.csv")
    if ok < len(rows):
        raise typer.Exit(1)


tumorbed_app = typer.Typer(help="Tumour-bed detection: train a detector from a few annotated slides; apply "
                           "annotations or a detector to slides, one checkable bed per slide.",
                           no_args_is_help=True)
app.add_typer(tumorbed_app, name="tumorbed")


@tumorbed_app.command("train")
def tumorbed_train(
    features: Annotated[Path, typer.Option("--features", "-f", help="Feature cache directory (from 'weakstil embed').")],
    annotations: Annotated[Path, typer.Option("--annotations", help="Directory of tumour-bed annotations "
                                              "(<slide_id>.geojson or .xml).")],
    out: OutOpt,
    max_slides: Annotated[int, typer.Option("--max-slides", help="Use at most this many annotated slides.")] = 10,
    seed: SeedOpt = 0,
    cohort: Annotated[
        Optional[Path], typer.Option("--cohort", help="Only this cohort CSV's slides, in its order (default: "
                                     "every slide in --features).")
    ] = None,
) -> None:
    """Train a tumour-bed detector (tile classifier on embeddings + spatial smoothing and closing)
    from slides with annotations; writes OUT/model.safetensors + OUT/model.json."""
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed import train_tumorbed_from_cache

    try:
        slide_ids = None
        if cohort is not None:  # a shared feature folder may also hold slides outside the cohort
            from weakstil.cohort import read_cohort

            slide_ids = read_cohort(cohort, check_files=False).slide_ids
        model = train_tumorbed_from_cache(features, annotations, slide_ids=slide_ids, max_slides=max_slides,
                                          seed=seed)
        model.save(out)
    except WeakSTILError as exc:
        error_line(exc.one_line())
        raise typer.Exit(1) from None
    log.info("tumour-bed detector from %d slides (leave-one-slide-out Dice %.3f) -> %s",
             model.meta["n_slides"], model.meta["cv_dice"], out)


@tumorbed_app.command("apply")
def tumorbed_apply(
    features: Annotated[list[str], typer.Argument(help="Feature caches (<slide_id>.h5 from 'weakstil embed') or "
                                                  "glob patterns (quote globs).", show_default=False)],
    out: OutOpt,
    annotations: AnnotationsOpt = None,
    tumorbed: TumorBedOpt = None,
) -> None:
    """Each slide's tumour bed (annotation > detector > whole tissue), written once for checking
    and reuse: OUT/<slide_id>.h5 (per-tile flags, mask, provenance) and OUT/<slide_id>.geojson
    (QuPath outline). Pass OUT as --tumorbed-beds to train, evaluate and score."""
    from weakstil.beds import apply_tumorbed
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed import TumorBedModel

    try:
        detector = TumorBedModel.load(tumorbed) if tumorbed is not None else None
    except WeakSTILError as exc:
        error_line(exc.one_line())
        raise typer.Exit(1) from None
    failed = 0
    for path in expand_slides(features):
        try:
            applied = apply_tumorbed(path, out, annotations=annotations, detector=detector, detector_path=tumorbed)
        except WeakSTILError as exc:
            failed += 1
            error_line(exc.one_line())
            continue
        typer.echo(applied.summary())
    if failed:
        raise typer.Exit(1)


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("demo_out"),
    quick: Annotated[bool, typer.Option("--quick", help="A smaller run (under 3 minutes) for tests.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
) -> None:
    """The whole method on a synthetic cohort: pretraining, embedding, tumour-bed detector, MIL
    training with cross-validation, scoring of held-out slides, and a metrics table."""
    from weakstil.demo import format_summary, run_demo
    from weakstil.errors import WeakSTILError

    try:
        result = run_demo(out, quick=quick, seed=seed, device=device)
    except WeakSTILError as exc:
        error_line(exc.one_line())
        raise typer.Exit(1) from None
    typer.echo(format_summary(result))


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
