"""Stage-1 commands: ``encoders``, ``embed``, ``pretrain``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from weakstil import settings
from weakstil.cli.batch import for_each_slide, say_done, unique_ids, without_own_outputs
from weakstil.cli.errors import Failures
from weakstil.cli.options import (AllowUpsampleOpt, BatchSizeOpt, DecodeOpt, DeviceOpt, EncoderOpt,
                                  MeasureTileStatsOpt, MppOpt, OutOpt,
                                  OverlapOpt, OverwriteOpt, SeedOpt, SlideListOpt, SlideMppOpt, SlidesArg, ThreadsOpt, TileSizeOpt,
                                  StainNormChoice, StainNormOpt, TissueThresholdOpt, WeightsOpt, WorkersOpt, expand_slides, listed_slides,
                                  in_range)
from weakstil.decode.modes import DecodeMode
from weakstil.errors import UsageError
from weakstil.cli.progress import RESULT, bar_progress, interrupt_on_sigterm

log = logging.getLogger("weakstil")


def encoders() -> None:
    """List the built-in encoder cards (name, architecture, embedding size, licence, weights)."""
    from weakstil.encoders import list_cards

    for card in list_cards():
        typer.echo(card.summary())


def _cache_made_from(out: Path, slide_id: str) -> str | None:
    """The slide file the feature cache ``OUT/<slide_id>.h5`` was made from (``None``: none, or unreadable)."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import FeaturesFile

    cache = Path(out) / f"{slide_id}.h5"
    try:
        return str(FeaturesFile.read_header(cache)[0].get("slide_path")) if cache.is_file() else None
    except (WeakSTILError, OSError):
        return None


def embed(
    out: OutOpt,
    encoder: EncoderOpt,
    slides: SlidesArg = None,
    slide_list: SlideListOpt = None,
    weights: WeightsOpt = None,
    batch_size: BatchSizeOpt = settings.BATCH_SIZE,
    workers: WorkersOpt = settings.DECODE_WORKERS,
    threads: ThreadsOpt = settings.TORCH_THREADS,
    decode: DecodeOpt = DecodeMode(settings.DECODE),
    device: DeviceOpt = settings.DEVICE,
    slide_mpp: SlideMppOpt = None,
    mpp: MppOpt = settings.MPP,
    tile_size: TileSizeOpt = settings.TILE_PX,
    overlap: OverlapOpt = settings.OVERLAP_PX,
    tissue_threshold: TissueThresholdOpt = settings.TISSUE_THRESHOLD,
    allow_upsample: AllowUpsampleOpt = False,
    overwrite: OverwriteOpt = False,
    seed: SeedOpt = settings.SEED,
    stain_norm: StainNormOpt = StainNormChoice(settings.STAIN_NORM),
    tile_stats: MeasureTileStatsOpt = True,
) -> None:
    """Embed every tissue tile with an encoder: OUT/<slide_id>.h5 with features, coords and provenance.

    A slide whose complete cache was made with the same encoder, weights and tiling is skipped."""
    interrupt_on_sigterm()
    from weakstil.embed import embed_slide, open_encoder
    from weakstil.files import slide_file
    from weakstil.feature_cache import refuse_mixing_folder, refuse_partial_overwrite
    from weakstil.outputdir import check_features_out, mark
    from weakstil.tiles import TilingParams

    slides, id_of = listed_slides(slides, slide_list)  # a CSV's slide_id column names the caches, as in score
    params = TilingParams(mpp=mpp, tile_px=tile_size, overlap_px=overlap, tissue_threshold=tissue_threshold)
    check_features_out(out)  # never into a model, an encoder or another command's folder
    if (dense := params.dense_warning()) is not None:
        log.warning(dense)
    enc, planner = open_encoder(encoder, weights, device, workers=workers, threads=threads, batch_size=batch_size,
                                seed=seed, stain_norm=stain_norm.value, tile_stats=tile_stats)
    log.info("encoder %s (%s, %d-d, weights %s) on %s, %s; decoding: %s", enc.name, enc.card.model, enc.embed_dim,
             enc.weights_sha256[:12], enc.device, enc.precision, decode.value)
    check_embed_memory(enc, batch_size, tile_size, workers)
    failures = Failures()
    paths = unique_ids(without_own_outputs(expand_slides(slides), out, (".h5",), "embed"), failures, id_of=id_of,
                       made_from=lambda sid: _cache_made_from(out, sid))

    def cache_path(out: Path, path: Path) -> Path:
        return slide_file(out, id_of(path))
    if not overwrite:  # a folder of another tiling, encoder or stain norm: one line, not a mixed folder (nor an
        # error per slide); without tile stats, only slides new to the folder would mix it
        refuse_mixing_folder(out, enc, params, tile_stats, new=any(not cache_path(out, p).exists() for p in paths))
    if overwrite:  # some of the folder's slides at another encoder, tiling, stain norm or tile stats: one line
        refuse_partial_overwrite(out, enc, params, {cache_path(out, p).name for p in paths}, tile_stats)
    with bar_progress("tiles") as progress:
        def one(path: Path) -> None:
            task = progress.add_task(path.name, total=None, info="")

            def on_batch(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            try:
                r = embed_slide(path, enc, cache_path(out, path), params, slide_mpp=id_of.mpp_of(path, slide_mpp),
                                allow_upsample=allow_upsample, batch_size=batch_size, seed=seed,
                                overwrite=overwrite and path not in by_another_run,  # (it was just made)
                                progress=on_batch, decode=decode.value, planner=planner, tile_stats=tile_stats)
            finally:
                progress.remove_task(task)
            mark(out, "embed")
            up_to_date[0] += r.skipped
            if r.skipped:
                log.info("%s: up to date (%d tiles) -> %s", path, r.n_tiles, r.path)
            else:
                log.info("%s: %d tiles x %d -> %s (%.0f tiles/s)", path, r.n_tiles, enc.embed_dim, r.path,
                         r.tiles_per_s)

        by_another_run: set[Path] = set()  # embedded by another run since this batch began: not redone
        up_to_date = [0]
        for_each_slide(paths, failures, lambda p: cache_path(out, p), one, by_another_run)
    say_done(failures, "embedded", out, up_to_date[0])
    failures.exit()


def check_embed_memory(enc, batch_size: int, tile_px: int, workers: int) -> None:
    """Refuse a batch whose decoded tiles and activations do not fit in memory (a usage error)."""
    from weakstil.resources import activation_cost, check_memory, decode_ring_slots, embed_bytes

    cost = activation_cost(enc.model, enc.input_px, enc.input_px, card=enc.card)
    buffers = decode_ring_slots(batch_size, tile_px, workers)
    check_memory(embed_bytes(cost, batch_size, tile_px, enc.input_px, buffers=buffers), enc.device,
                 what=f"embedding batches of {batch_size} tiles of {tile_px} px", fix="lower --batch-size")


def pretrain(
    out: OutOpt,
    slides: SlidesArg = None,
    slide_list: SlideListOpt = None,
    encoder: EncoderOpt = "small-cnn",
    weights: Annotated[
        Optional[str], typer.Option("--weights", help="Start from these weights (default: an --encoder folder's "
                                    "own weights, else random init; 'random' for a random init).")
    ] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="Optimisation steps in total (default 200).",
                                                 callback=in_range(1, 10_000_000))] = None,
    epochs: Annotated[
        Optional[float], typer.Option("--epochs", help="Instead of --steps: passes over the sampled tiles.",
                                      callback=in_range(0.0, 100_000.0, low_open=True))
    ] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Tiles per batch (at least 2: SimCLR contrasts the tiles of a batch).",
        callback=in_range(settings.PRETRAIN_BATCH_MIN, settings.BATCH_SIZE_RANGE[1],
                          why="SimCLR contrasts each tile with the other tiles of its batch, so a batch needs at "
                              "least 2"))] = settings.BATCH_SIZE,
    tiles_per_slide: Annotated[int, typer.Option("--tiles-per-slide", help="Random tissue tiles kept per slide.",
                                                 callback=in_range(1, 1_000_000))] = 256,
    crop_px: Annotated[int, typer.Option("--crop-px", help="Side of the augmented views in pixels.",
                                         callback=in_range(*settings.CROP_PX_RANGE, unit="px"))] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, cosine schedule).",
                                      callback=in_range(*settings.LR_RANGE, low_open=True))] = 1e-3,
    seed: SeedOpt = settings.SEED,
    device: DeviceOpt = settings.DEVICE,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")] = False,
    workers: WorkersOpt = settings.DECODE_WORKERS,
    threads: ThreadsOpt = settings.TORCH_THREADS,
    slide_mpp: SlideMppOpt = None,
    mpp: Annotated[Optional[float], typer.Option(
        "--mpp", help="Resolution in µm/px at which tiles are read (default: the --encoder card's: 0.5 for the "
        "built-in cards, the µm/px an earlier pretrain folder was trained at).",
        callback=in_range(*settings.MPP_RANGE, unit="µm/px"), show_default=False)] = None,
    tile_size: Annotated[Optional[int], typer.Option(
        "--tile-size", help="Tile side in pixels at --mpp (default: the --encoder card's input size: 224 for the "
        "built-in cards).", callback=in_range(*settings.TILE_PX_RANGE, unit="px"), show_default=False)] = None,
    tissue_threshold: TissueThresholdOpt = settings.TISSUE_THRESHOLD,
    allow_upsample: AllowUpsampleOpt = False,
    stain_norm: StainNormOpt = StainNormChoice(settings.STAIN_NORM),
) -> None:
    """Self-supervised pretraining (SimCLR, H&E-aware augmentation) of an encoder on tissue tiles.

    Writes OUT/model.safetensors and OUT/card.yaml (use OUT as 'weakstil embed --encoder OUT'),
    and a checkpoint for --resume."""
    interrupt_on_sigterm()
    # a CSV's mpp column: those slides' µm/px, as embed reads it (its ids name nothing: one encoder comes out)
    slides, listed = listed_slides(slides, slide_list, ids_name_outputs=False)
    from weakstil.pretrain import PretrainConfig
    from weakstil.runtime import cpu_count, resolve_device
    from weakstil.tiles import TilingParams

    if steps is not None and epochs is not None:
        raise UsageError("give --steps or --epochs, not both", fix="drop one of them")
    TilingParams(tissue_threshold=tissue_threshold)  # the range, before any work (--mpp/--tile-size: their options)

    failures = Failures()
    dev = resolve_device(device)
    n_workers = workers or cpu_count()  # tiles are read once, before training: decoding may use every core
    if threads:  # else training keeps torch's own thread count (all cores, or OMP_NUM_THREADS when set)
        import torch

        torch.set_num_threads(threads)
    from weakstil.encoders.cards import CARD_FILE

    if weights is None:  # an encoder folder with weights (an earlier pretrain) goes on from them (7A #5)
        from weakstil.encoders.factory import MODEL_FILE, check_encoder_folder

        own = Path(encoder) / MODEL_FILE
        # refused as embed refuses it: its card records weights that are missing or another file (11A #1)
        has_own = (Path(encoder) / CARD_FILE).is_file() and check_encoder_folder(encoder) is not None
        from weakstil.encoders.cards import load_card

        hub = None if has_own else load_card(encoder).hub_id  # a published card (uni, lunit...) starts from its weights:
        weights = str(own.resolve()) if has_own else None if hub else "random"  # it was a silent random init
        if weights != "random":
            log.info("pretraining %s from %s's %s (--weights random for a random init)", "starts" if hub else "goes on",
                     encoder, f"published weights, {hub}," if hub else "own weights")
    cfg = PretrainConfig(encoder=encoder, init_weights=weights, steps=steps, epochs=epochs,
                         batch_size=batch_size, tiles_per_slide=tiles_per_slide, crop_px=crop_px, lr=lr,
                         seed=seed, mpp=mpp, tile_px=tile_size, tissue_threshold=tissue_threshold,
                         stain_norm=stain_norm.value)
    from weakstil.outputdir import check_own_folder
    from weakstil.pretrain import CHECKPOINT

    if not (out / CHECKPOINT).exists() and not (out / CARD_FILE).exists():  # a run of ours: pretrain's own checks
        check_own_folder(out, "pretrain")  # never into a model, feature or cohort folder
    existed = out.exists()
    try:
        result = _run_pretrain(slides, out, cfg, dev, resume, (slide_mpp, listed.mpps), allow_upsample, n_workers,
                               failures)
    except BaseException:  # stopped before a checkpoint (Ctrl-C, SIGTERM, a failure): no empty --out left (7A #8)
        if not existed and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    log.info("encoder '%s': %d steps on %d tiles, loss %.3f, weights sha256 %s -> %s", result.card.name,
             result.steps, result.n_tiles, result.final_loss, result.weights_sha256[:12], out,
             extra=RESULT)  # (under -q too, as every command's closing line)
    failures.exit()


def _run_pretrain(slides, out: Path, cfg, dev, resume: bool, mpps, allow_upsample: bool, n_workers: int,
                  failures: Failures):
    slide_mpp, listed_mpps = mpps  # --slide-mpp, and a slide list's mpp column (path -> µm/px)
    from weakstil.locks import hold_folder
    from weakstil.outputdir import mark
    from weakstil.pretrain import pretrain as run_pretrain

    with hold_folder(out, "pretrain"), bar_progress("steps") as progress:
        task = progress.add_task("pretrain", total=None, info="")

        def on_step(step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, total=total, info=f"loss {loss:.3f}")

        paths = unique_ids(expand_slides(slides), failures)
        failures.inputs += len(paths)  # a slide that fails while tiles are sampled is one of these
        result = run_pretrain(paths, out, cfg, device=str(dev), resume=resume,
                              slide_mpp=slide_mpp, allow_upsample=allow_upsample, workers=n_workers,
                              slide_mpps=listed_mpps,
                              on_step=on_step, on_slide_error=lambda path, exc: failures.add(exc.one_line(),
                                                                                             counted=True))
        mark(out, "pretrain")
    return result
