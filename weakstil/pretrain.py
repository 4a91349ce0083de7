"""Self-supervised pretraining of a tile encoder on the tissue tiles of some slides (SimCLR).

Tiles are sampled from each slide's tissue (``find_tiles``), held in memory as uint8, and
two H&E-aware augmented views of every tile in a batch (:class:`~weakstil.encoders.transforms.SSLAugment`)
are pulled together by the NT-Xent loss through a small projection head.

Output directory:

* ``model.safetensors``: the encoder's weights (no projection head);
  ``create_encoder(DIR)`` / ``weakstil embed --encoder DIR`` load it
* ``card.yaml``: the base card's architecture and normalisation, ``weights_sha256`` of
  ``model.safetensors`` and a ``training`` section (settings, seed, slides, losses, versions)
* ``checkpoint.safetensors``: encoder + head + AdamW moments, with the run's JSON state in the
  file's metadata (one file, so it is always self-consistent); ``checkpoint.json`` is a
  readable copy of that state. ``--resume`` continues from it; raising ``--steps`` on resume
  trains further.

Every random draw of step ``s`` comes from a generator seeded with ``(seed, s)``, so a resumed
run follows the same path as one that was never interrupted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from weakstil import pretrain_resume, settings
from weakstil.code_version import version as code_version
from weakstil.atomic import atomic_path
from weakstil.encoders.cards import CARD_FILE, EncoderCard, load_card
from weakstil.errors import UsageError, WeakSTILError
from weakstil.pretrain_resume import PretrainError
from weakstil.slide import Slide, slide_id_from_path

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_JSON = "checkpoint.json"
MODEL_FILE = "model.safetensors"
DEFAULT_STEPS = 200


@dataclass
class PretrainConfig:
    encoder: str = "small-cnn"  #: base card (name or card file)
    init_weights: str | None = "random"  #: "random", a weights file to start from, or None: the card's published ones
    steps: int | None = None  #: total optimisation steps (default DEFAULT_STEPS)
    epochs: float | None = None  #: alternatively: passes over the sampled tiles
    batch_size: int = settings.BATCH_SIZE
    tiles_per_slide: int = 256
    crop_px: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    proj_dim: int = 128
    proj_hidden: int = 512
    warmup_frac: float = 0.05
    seed: int = settings.SEED
    mpp: float | None = None  #: default: the card's µm/px
    tile_px: int | None = None  #: default: the card's input size
    tissue_threshold: float = settings.TISSUE_THRESHOLD
    checkpoint_every: int = 50
    augment: dict[str, Any] = field(default_factory=dict)  #: overrides of SSLAugment settings
    #: "card" (the base card's), "none" or "macenko": tiles re-rendered with reference stains
    #: (per-slide estimate, weakstil.stain); recorded in the output card, so embed does the same
    stain_norm: str = settings.STAIN_NORM

    def total_steps(self, n_tiles: int) -> int:
        if self.steps is not None and self.epochs is not None:
            raise PretrainError("give --steps or --epochs, not both", fix="drop one of them")
        if self.steps is not None:
            return int(self.steps)
        if self.epochs is not None:  # by the batches trained on: fewer tiles than --batch-size make smaller ones
            return max(1, math.ceil(self.epochs * n_tiles / min(self.batch_size, n_tiles)))
        return DEFAULT_STEPS


@dataclass
class PretrainResult:
    out_dir: Path
    card: EncoderCard
    steps: int
    n_tiles: int
    final_loss: float
    seconds: float
    weights_sha256: str
    resumed_from: int = 0
    failed_slides: list[str] = field(default_factory=list)


# -- data -------------------------------------------------------------------------------
def sample_tiles(slides: Sequence[str | Path], card: EncoderCard, cfg: PretrainConfig, *, slide_mpp: float | None,
                 allow_upsample: bool, workers: int = 1,
                 on_error: Callable[[Path, WeakSTILError], None] | None = None,
                 fingerprints: dict[str, str] | None = None,
                 slide_mpps: dict[str, float] | None = None) -> tuple[np.ndarray, list[str]]:
    """Up to ``tiles_per_slide`` random tissue tiles per slide: ``(uint8 (N, px, px, 3), slide ids)``.
    ``fingerprints``, when given, receives each sampled slide's content fingerprint by slide id.
    ``slide_mpps``: a slide list's ``mpp`` column (absolute path -> µm/px), before ``slide_mpp``."""
    from weakstil.decode.batches import shared_pool
    from weakstil.decode.readers import plan_reader
    from weakstil.decode.shm import workers_for_shm
    from weakstil.decode.workers import iter_batches_inline
    from weakstil.tiles import TilingParams, find_tiles

    params = TilingParams(mpp=cfg.mpp or card.mpp, tile_px=cfg.tile_px or card.input_px,
                          tissue_threshold=cfg.tissue_threshold)
    chunks, ids = [], []
    for path in slides:
        path = Path(path)
        try:
            with Slide.open(path, slide_mpp=(slide_mpps or {}).get(os.path.abspath(path), slide_mpp)) as slide:
                tiles = find_tiles(slide, params, allow_upsample=allow_upsample)
                n = len(tiles.coords)
                if n == 0:
                    raise tiles.no_tissue_error(path)
                seed = int(hashlib.sha256(slide.slide_id.encode()).hexdigest()[:8], 16)
                rng = np.random.default_rng([cfg.seed, seed])
                pick = np.sort(rng.choice(n, size=min(n, cfg.tiles_per_slide), replace=False))
                coords = tiles.coords[pick]
                out = np.empty((len(coords), params.tile_px, params.tile_px, 3), np.uint8)
                spec = plan_reader(slide, params.mpp, params.tile_px)  # JPEG tiles or OpenSlide
                n_workers = workers_for_shm(workers, 32 * params.tile_px * params.tile_px * 3)
                batches = (shared_pool(n_workers).batches(spec, coords, 32) if n_workers >= 1
                           else iter_batches_inline(spec, coords, 32))
                normaliser = None
                if card.stain_norm == "macenko":
                    from weakstil.stain import Normaliser, estimate_slide_stain

                    normaliser = Normaliser(estimate_slide_stain(slide, tiles))
                with contextlib.closing(batches):
                    for start, batch in batches:
                        out[start:start + len(batch)] = batch if normaliser is None else normaliser(batch)
                chunks.append(out)
                ids.append(slide.slide_id)
                if fingerprints is not None:
                    fingerprints[slide.slide_id] = slide.fingerprint
                log.info("%s: %d of %d tissue tiles sampled", path, len(out), n)
        except WeakSTILError as exc:
            if on_error is None:
                raise
            on_error(path, exc)
    if not chunks:
        raise PretrainError("no tiles to train on (every slide failed or has no tissue)",
                            fix="pass readable slides with tissue")
    return np.concatenate(chunks), ids


# -- model and loss ---------------------------------------------------------------------
def build_ssl_model(backbone: Any, in_dim: int, hidden: int, out: int) -> Any:
    from torch import nn

    class SimCLRModel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone
            self.head = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, out))

        def forward(self, x):
            return self.head(self.backbone(x))

    return SimCLRModel()


def nt_xent(z1: Any, z2: Any, temperature: float) -> Any:
    """SimCLR's normalised-temperature cross entropy for two ``(B, d)`` views."""
    import torch
    import torch.nn.functional as F

    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step]).generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))


# -- checkpoints ------------------------------------------------------------------------
def _save_checkpoint(out_dir: Path, model: Any, opt: Any, state: dict[str, Any]) -> None:
    import torch

    from weakstil.encoders.factory import save_state_dict

    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    osd = opt.state_dict()
    for i, st in osd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(float(v))
    groups = [{k: v for k, v in g.items()} for g in osd["param_groups"]]
    state = {**state, "optimizer_param_groups": groups}
    text = json.dumps(state, sort_keys=True)
    save_state_dict(tensors, out_dir / CHECKPOINT, metadata={"weakstil_pretrain_state": text})
    with atomic_path(out_dir / CHECKPOINT_JSON) as tmp:
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def read_checkpoint(out_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, tensors)`` from ``checkpoint.safetensors`` (the JSON state is in its metadata)."""
    from safetensors import SafetensorError, safe_open

    path = out_dir / CHECKPOINT
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as exc:
        raise PretrainError(f"checkpoint is unreadable ({exc})", path=path,
                            fix="start again without --resume in a new --out directory") from None
    if "weakstil_pretrain_state" not in meta:
        raise PretrainError("not a 'weakstil pretrain' checkpoint (no state)", path=path,
                            fix="start again without --resume in a new --out directory")
    return json.loads(meta["weakstil_pretrain_state"]), tensors


def _restore(model: Any, opt: Any, state: dict[str, Any], tensors: dict[str, Any], path: Path) -> None:
    from weakstil.encoders.factory import load_state_dict_strict

    msd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state_dict_strict(model, msd, what="the pretraining model", path=path)
    opt_state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            opt_state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": opt_state, "param_groups": state["optimizer_param_groups"]})


# -- the run ----------------------------------------------------------------------------
def check_pretrain_memory(backbone: Any, card: EncoderCard, cfg: PretrainConfig, *, n_slides: int,
                          device: Any) -> None:
    """Refuse settings whose batch x crop needs more memory than the machine has (one line with
    the estimate, the memory available and the fix), before any slide is read."""
    from weakstil.resources import PROBE_PX, InputSizeError, activation_cost, check_memory, patch_px, pretrain_bytes

    if cfg.batch_size < settings.PRETRAIN_BATCH_MIN:
        raise UsageError(f"--batch-size {cfg.batch_size} is too small: SimCLR contrasts each tile with the other "
                         f"tiles of its batch, so a batch needs at least {settings.PRETRAIN_BATCH_MIN}",
                         fix="pass --batch-size 2 or more (64 by default)")
    tile_px = cfg.tile_px or card.input_px
    if cfg.crop_px > tile_px:  # each crop is the whole tile, blown up: views far from the scan's magnification
        log.warning("--crop-px %d is larger than the %d px tiles: every view is a whole tile upsampled %.1fx, not a "
                    "crop near the native magnification the encoder is later used at", cfg.crop_px, tile_px,
                    cfg.crop_px / tile_px)
    n_tiles = max(1, n_slides) * cfg.tiles_per_slide
    batch = min(cfg.batch_size, n_tiles)
    try:
        cost = activation_cost(backbone, PROBE_PX, cfg.crop_px)
    except InputSizeError as exc:  # a ViT's position grid, a Swin's windows: only the card's own size
        activation_cost(backbone, card.input_px, card=card)  # the card's own size fails too: the card's error
        raise UsageError(f"encoder '{card.name}' ({card.model}) takes only its {card.input_px} px input, not "
                         f"--crop-px {cfg.crop_px} ({exc.reason})", fix=f"pass --crop-px {card.input_px}") from None
    step = patch_px(backbone)  # a ViT of any input size still takes whole patches: it failed after the slides were
    if step and cfg.crop_px % step:  # read, as 'unexpected AssertionError ... this is a bug in weakstil'
        fits = sorted({max(step, cfg.crop_px - cfg.crop_px % step), cfg.crop_px - cfg.crop_px % step + step})
        raise UsageError(f"encoder '{card.name}' ({card.model}) cuts its input into {step} px patches, which do not "
                         f"divide --crop-px {cfg.crop_px}", fix=f"pass --crop-px {' or '.join(map(str, fits))}")
    n_params = sum(p.numel() for p in backbone.parameters())
    check_memory(pretrain_bytes(cost, batch, cfg.crop_px, n_tiles, tile_px, n_params), device,
                 what=f"pretraining with --batch-size {batch} and --crop-px {cfg.crop_px} "
                      f"({n_tiles} tiles of {tile_px} px in memory)",
                 fix="lower --crop-px or --batch-size (or --tiles-per-slide)")


def _licence(card: EncoderCard, init_source: str, init_path: Path | None) -> str:
    """The written card's licence: a run from weights keeps their terms (UNI's bind its fine-tune). A run
    from an earlier pretrain folder keeps that card's licence; it was 'your own weights', so UNI's
    non-commercial terms were lost at the second run, as were a card's own when given --weights FILE."""
    if init_path is None:
        return f"your own weights (architecture of {card.name})"
    return card.licence if card.base else f"{card.licence} (derived from {init_source})"


def card_name_for(out_dir: Path, base: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.+\-]", "-", out_dir.resolve().name).strip("-.") or f"{base}-simclr"
    return name if re.match(r"^[A-Za-z0-9]", name) else f"{base}-{name}"


def pretrain(slides: Sequence[str | Path], out_dir: str | Path, cfg: PretrainConfig | None = None, *,
             device: str = "auto", resume: bool = False, slide_mpp: float | None = None,
             allow_upsample: bool = False, workers: int = 1, slide_mpps: dict[str, float] | None = None,
             on_step: Callable[[int, int, float], None] | None = None,
             on_slide_error: Callable[[Path, WeakSTILError], None] | None = None) -> PretrainResult:
    """Train ``cfg.encoder`` with SimCLR on tiles of ``slides``; write the encoder into ``out_dir``.
    ``slide_mpps``: a slide list's ``mpp`` column (absolute path -> µm/px; ``--slide-mpp`` for the others),
    recorded by slide id as ``listed_mpps``, as embed reads the column (it was ignored, hunt 33g)."""
    import torch

    from weakstil.encoders.factory import load_model, save_state_dict
    from weakstil.runtime import library_versions, package_version, resolve_device
    from weakstil.encoders.transforms import SSLAugment

    cfg = cfg or PretrainConfig()
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    has_ckpt = (out_dir / CHECKPOINT).exists()
    if resume and not has_ckpt:
        raise PretrainError(f"nothing to resume: no {CHECKPOINT}", path=out_dir,
                            fix="run without --resume to start training")
    if not resume and (has_ckpt or (out_dir / CARD_FILE).exists()):
        raise PretrainError("already holds a pretraining run", path=out_dir,
                            fix="pass --resume to continue it, or choose another --out directory")
    state: dict[str, Any] | None = None
    tensors: dict[str, Any] = {}
    from weakstil.slide_list import overriding_mpps

    # (a listed µm/px the slide is read at anyway, its file's or --slide-mpp, changes nothing: not recorded)
    slide_mpps = overriding_mpps(dict(slide_mpps or {}), slide_mpp)
    listed = {slide_id_from_path(str(p)): float(m) for p, m in sorted(slide_mpps.items())}
    card = load_card(cfg.encoder)
    base_card = pretrain_resume.card_identity(card)  # before --stain-norm: the card file as it reads
    if resume:
        state, tensors = read_checkpoint(out_dir)
        cfg = pretrain_resume.run_length(state, cfg, out_dir)
        pretrain_resume.check_settings(state, cfg, card, slide_mpp=slide_mpp, allow_upsample=allow_upsample,
                                       out_dir=out_dir, listed_mpps=listed)
    if cfg.stain_norm != "card":
        import dataclasses

        card = dataclasses.replace(card, stain_norm=None if cfg.stain_norm == "none" else cfg.stain_norm)
    if card.pooling != "default":
        raise PretrainError(f"encoder '{card.name}' uses '{card.pooling}' pooling; pretraining supports cards "
                            "with default pooling", fix="choose another --encoder")
    dev = resolve_device(device)
    try:
        backbone, init_sha, init_source, init_path = load_model(card, cfg.init_weights, seed=cfg.seed)
    except WeakSTILError as exc:  # a published card's weights not here: a random init is only on request
        if cfg.init_weights is None and exc.fix:
            exc.fix += "; or pass --weights random to pretrain a random init of its network"
        raise
    if init_path is not None:  # the file's sha256, as the card of the folder it goes on from records its weights
        from weakstil.weights_id import file_sha256

        init_sha = file_sha256(init_path)
    check_pretrain_memory(backbone, card, cfg, n_slides=len(slides), device=dev)

    failed: list[str] = []

    def slide_failed(path: Path, exc: WeakSTILError) -> None:
        failed.append(str(path))
        if on_slide_error is None:
            raise exc
        on_slide_error(path, exc)

    fingerprints: dict[str, str] = {}
    tiles_np, slide_ids = sample_tiles(slides, card, cfg, slide_mpp=slide_mpp, allow_upsample=allow_upsample,
                                       workers=workers, on_error=slide_failed, fingerprints=fingerprints,
                                       slide_mpps=slide_mpps)
    n_tiles = len(tiles_np)
    threads = torch.get_num_threads()  # CPU kernels sum in another order with another count: other weights
    if state is not None:
        pretrain_resume.check_inputs(state, slide_ids, n_tiles, fingerprints, out_dir)
        pretrain_resume.warn_threads(state, threads, out_dir)
    batch = min(cfg.batch_size, n_tiles)
    if batch < 2:
        raise PretrainError(f"only {n_tiles} tile(s) to train on", fix="pass more slides or larger ones")
    if batch < cfg.batch_size:
        log.warning("only %d tiles: batches of %d instead of %d", n_tiles, batch, cfg.batch_size)
    total = cfg.total_steps(n_tiles)
    warmup = max(1, int(cfg.warmup_frac * total))

    emb_dim = int(getattr(backbone, "num_features", card.embed_dim))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        model = build_ssl_model(backbone, emb_dim, cfg.proj_hidden, cfg.proj_dim)
    model.to(dev).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses: list[float] = []
    start_step = 0
    elapsed_before = 0.0
    if state is not None:
        _restore(model, opt, state, tensors, out_dir / CHECKPOINT)
        start_step = int(state["step"])
        losses = list(state["losses"])
        elapsed_before = float(state.get("seconds", 0.0))
        if start_step > total:
            raise PretrainError(f"the checkpoint is at step {start_step}, past the {total} steps asked for",
                                path=out_dir, fix=f"pass --steps above {start_step} to train on, or use the "
                                                  "encoder as it is")
        log.info("%s: resuming at step %d of %d", out_dir, start_step, total)

    aug = SSLAugment(cfg.crop_px, card.mean, card.std, **cfg.augment)
    if state is not None:
        pretrain_resume.check_augment(state, aug.settings(), out_dir)
    tiles = torch.from_numpy(tiles_np)
    if dev.type == "cuda":  # the sample lives on the GPU when it fits comfortably, else in pinned memory
        free, _total = torch.cuda.mem_get_info(dev)
        tiles = tiles.to(dev) if tiles.numel() < free // 4 else tiles.pin_memory()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else None
    out_dir.mkdir(parents=True, exist_ok=True)
    t_run = time.perf_counter()
    inputs = {"slide_mpp": slide_mpp, "allow_upsample": allow_upsample,  # how the slides were read
              **({"listed_mpps": listed} if listed else {})}

    def run_state(step: int) -> dict[str, Any]:
        config = {**asdict(cfg), "encoder": pretrain_resume.encoder_identity(cfg.encoder)}  # from anywhere
        return {"step": step, "total_steps": total, "config": config, "slides": slide_ids, "n_tiles": n_tiles,
                "losses": losses, "seconds": elapsed_before + time.perf_counter() - t_run, "device": str(dev),
                "init_weights_sha256": init_sha, "weakstil_version": code_version(), "augment": aug.settings(),
                "slide_fingerprints": fingerprints, "torch_threads": threads, "base_card": base_card, **inputs}

    step = start_step
    for step in range(start_step, total):
        g = torch.Generator().manual_seed(step_seed(cfg.seed, step))
        idx = torch.randperm(n_tiles, generator=g)[:batch]
        x = tiles[idx.to(tiles.device)].to(dev, non_blocking=True)
        v = torch.cat([aug(x, g), aug(x, g)])
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total, cfg.lr, warmup)
        if autocast is not None:
            with autocast:
                z = model(v)
        else:
            z = model(v)
        loss = nt_xent(z[:batch], z[batch:], cfg.temperature)
        if not torch.isfinite(loss):
            raise PretrainError(f"loss became {loss.item()} at step {step}", path=out_dir,
                                fix="lower --lr or raise --batch-size")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(round(float(loss.item()), 5))
        if on_step is not None:
            on_step(step + 1, total, losses[-1])
        if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < total:
            _save_checkpoint(out_dir, model, opt, run_state(step + 1))
    done = max(total, start_step)
    _save_checkpoint(out_dir, model, opt, run_state(done))

    # the encoder alone, then its card (written last: a directory with a card is complete)
    backbone_state = {k: v for k, v in model.backbone.state_dict().items()}
    sha = save_state_dict(backbone_state, out_dir / MODEL_FILE, metadata={"format": "pt"})
    seconds = elapsed_before + time.perf_counter() - t_run
    augment = aug.settings()
    training = {
        "method": "simclr", "loss": "nt-xent", "steps": done, "batch_size": batch, "epochs_seen":
        round(done * batch / n_tiles, 3), "crop_px": cfg.crop_px, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
        "temperature": cfg.temperature, "proj_dim": cfg.proj_dim, "proj_hidden": cfg.proj_hidden,
        "tiles_per_slide": cfg.tiles_per_slide, "n_tiles": n_tiles, "slides": slide_ids,
        "tile_mpp": cfg.mpp or card.mpp, "tile_px": cfg.tile_px or card.input_px, "seed": cfg.seed,
        "tissue_threshold": cfg.tissue_threshold, **inputs, "torch_threads": threads,
        "augment": augment, "init": init_source, "init_weights_sha256": init_sha,
        "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
        "loss_last10_mean": round(float(np.mean(losses[-10:])), 5) if losses else None,
        "seconds": round(seconds, 2), "device": str(dev), "torch_version": str(torch.__version__),
        "timm_version": package_version("timm"), "weakstil_version": code_version(),
        "library_versions": library_versions("torch", "timm"),  # the slide reader's and decoders' too
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    base = card.to_dict()
    base.update(name=card_name_for(out_dir, card.name), description=f"{card.name} pretrained with SimCLR on "
                f"{n_tiles} tiles of {len(slide_ids)} slide(s) ({done} steps)", hub_id=None, gated=False,
                weights_sha256=sha, base=card.base or card.name, training=training, status="ok",
                mpp=float(cfg.mpp or card.mpp),  # the resolution it was trained at (7A #4: it kept the base's)
                licence=_licence(card, init_source, init_path), notes="")
    base.pop("hub_id", None)
    new_card = EncoderCard.from_dict(base)
    with atomic_path(out_dir / CARD_FILE) as tmp:
        tmp.write_text(new_card.to_yaml(), encoding="utf-8")
    log.info("%s: %d steps, loss %.3f -> %.3f, %.0f s", out_dir, done, training["loss_first"] or float("nan"),
             training["loss_last"] or float("nan"), seconds)
    return PretrainResult(out_dir, new_card, done, n_tiles, losses[-1] if losses else float("nan"),
                          time.perf_counter() - t_start, sha, resumed_from=start_step, failed_slides=failed)
