"""Stage-1 commands: ``encoders``, ``embed``, ``pretrain``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from weakstil import settings
from weakstil.cli.errors import Failures
from weakstil.cli.options import (AllowUpsampleOpt, BatchSizeOpt, DecodeOpt, DeviceOpt, EncoderOpt, MppOpt, OutOpt,
                                  OverlapOpt, OverwriteOpt, SeedOpt, SlideMppOpt, SlidesArg, ThreadsOpt, TileSizeOpt,
                                  TissueThresholdOpt, WeightsOpt, WorkersOpt, expand_slides)
from weakstil.decode.modes import DecodeMode
from weakstil.cli.progress import bar_progress, interrupt_on_sigterm

log = logging.getLogger("weakstil")


def encoders() -> None:
    """List the built-in encoder cards (name, architecture, embedding size, licence, weights)."""
    from weakstil.encoders import list_cards

    for card in list_cards():
        typer.echo(card.summary())


def embed(
    slides: SlidesArg,
    out: OutOpt,
    encoder: EncoderOpt,
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
) -> None:
    """Embed every tissue tile with an encoder: OUT/<slide_id>.h5 with features, coords and provenance.

    A slide whose complete cache was made with the same encoder, weights and tiling is skipped."""
    interrupt_on_sigterm()
    from weakstil.embed import cache_path, embed_slide, open_encoder
    from weakstil.tiles import TilingParams

    enc, planner = open_encoder(encoder, weights, device, workers=workers, threads=threads, batch_size=batch_size,
                                seed=seed)
    log.info("encoder %s (%s, %d-d, weights %s) on %s, %s; decoding: %s", enc.name, enc.card.model, enc.embed_dim,
             enc.weights_sha256[:12], enc.device, enc.precision, decode.value)
    params = TilingParams(mpp=mpp, tile_px=tile_size, overlap_px=overlap, tissue_threshold=tissue_threshold)
    failures = Failures()
    seen: dict[Path, Path] = {}
    with bar_progress("tiles") as progress:
        for path in expand_slides(slides):
            target = cache_path(out, path)
            if target in seen:
                failures.add(f"{path}: has the same slide id as {seen[target]} (both would write {target}). "
                             "Fix: rename one of the files.")
                continue
            seen[target] = path
            task = progress.add_task(path.name, total=None, info="")

            def on_batch(done: int, total: int, task=task) -> None:
                progress.update(task, completed=done, total=total)

            with failures.each():
                try:
                    r = embed_slide(path, enc, target, params, slide_mpp=slide_mpp, allow_upsample=allow_upsample,
                                    batch_size=batch_size, overwrite=overwrite, seed=seed, progress=on_batch,
                                    decode=decode.value, planner=planner)
                finally:
                    progress.remove_task(task)
                if r.skipped:
                    log.info("%s: up to date (%d tiles) -> %s", path, r.n_tiles, r.path)
                else:
                    log.info("%s: %d tiles x %d -> %s (%.0f tiles/s)", path, r.n_tiles, enc.embed_dim, r.path,
                             r.tiles_per_s)
    failures.exit()


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
    batch_size: BatchSizeOpt = settings.BATCH_SIZE,
    tiles_per_slide: Annotated[int, typer.Option("--tiles-per-slide", help="Random tissue tiles kept per slide.")] = 256,
    crop_px: Annotated[int, typer.Option("--crop-px", help="Side of the augmented views in pixels.")] = 128,
    lr: Annotated[float, typer.Option("--lr", help="Peak learning rate (AdamW, cosine schedule).")] = 1e-3,
    seed: SeedOpt = settings.SEED,
    device: DeviceOpt = settings.DEVICE,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run saved in --out.")] = False,
    workers: WorkersOpt = settings.DECODE_WORKERS,
    threads: ThreadsOpt = settings.TORCH_THREADS,
    slide_mpp: SlideMppOpt = None,
    mpp: MppOpt = settings.MPP,
    tile_size: TileSizeOpt = settings.TILE_PX,
    tissue_threshold: TissueThresholdOpt = settings.TISSUE_THRESHOLD,
    allow_upsample: AllowUpsampleOpt = False,
) -> None:
    """Self-supervised pretraining (SimCLR, H&E-aware augmentation) of an encoder on tissue tiles.

    Writes OUT/model.safetensors and OUT/card.yaml (use OUT as 'weakstil embed --encoder OUT'),
    and a checkpoint for --resume."""
    interrupt_on_sigterm()
    from weakstil.pretrain import PretrainConfig
    from weakstil.pretrain import pretrain as run_pretrain
    from weakstil.runtime import cpu_count, resolve_device

    failures = Failures()
    dev = resolve_device(device)
    n_workers = workers or cpu_count()  # tiles are read once, before training: decoding may use every core
    if threads:  # else training keeps torch's own thread count (all cores, or OMP_NUM_THREADS when set)
        import torch

        torch.set_num_threads(threads)
    cfg = PretrainConfig(encoder=encoder, init_weights=weights or "random", steps=steps, epochs=epochs,
                         batch_size=batch_size, tiles_per_slide=tiles_per_slide, crop_px=crop_px, lr=lr,
                         seed=seed, mpp=mpp, tile_px=tile_size, tissue_threshold=tissue_threshold)
    with bar_progress("steps") as progress:
        task = progress.add_task("pretrain", total=None, info="")

        def on_step(step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, total=total, info=f"loss {loss:.3f}")

        result = run_pretrain(expand_slides(slides), out, cfg, device=str(dev), resume=resume,
                              slide_mpp=slide_mpp, allow_upsample=allow_upsample, workers=n_workers,
                              on_step=on_step, on_slide_error=lambda path, exc: failures.add(exc.one_line()))
    log.info("encoder '%s': %d steps on %d tiles, loss %.3f, weights sha256 %s -> %s", result.card.name,
             result.steps, result.n_tiles, result.final_loss, result.weights_sha256[:12], out)
    failures.exit()
