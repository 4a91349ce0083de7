"""Training the MIL regressor on slide labels only: one fit with early stopping, and grouped
cross-validation whose out-of-fold scores come from models that never saw the slide's group.

Only slide labels are used (MSE or Huber on sTIL%/100), so the tile scores are learned from
weak labels; with the mean aggregator they are directly on the sTIL% scale and make the heatmap.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from weakstil.mil.bank import FeatureBank
from weakstil.mil.config import Stopping, TrainConfig
from weakstil.mil.model import SlideScores, TileMIL, score_slides
from weakstil.runtime import Deterministic, TorchThreads, choose_threads, resolve_device

log = logging.getLogger(__name__)

#: on_epoch(stage, epoch, max_epochs, train_loss, val_loss, done)
EpochCallback = Callable[[str, int, int, float, float, bool], None]


@dataclass
class FitResult:
    model: TileMIL
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)
    threads: int = 0  #: the torch threads it trained with (recorded in model.json)


def _loss_fn(cfg: TrainConfig):
    if cfg.loss == "huber":
        return lambda pred, target: nn.functional.huber_loss(pred / 100.0, target / 100.0, delta=cfg.huber_delta)
    return lambda pred, target: nn.functional.mse_loss(pred / 100.0, target / 100.0)


def _feature_stats(bank: FeatureBank, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and std over all tiles of the given slides (float64 accumulation)."""
    s = torch.zeros(bank.dim, dtype=torch.float64, device=bank.features.device)
    ss = torch.zeros(bank.dim, dtype=torch.float64, device=bank.features.device)
    n = 0
    for i in idx:
        x = bank.slide_features(int(i)).to(torch.float64)
        s += x.sum(0)
        ss += (x * x).sum(0)
        n += x.shape[0]
    mean = s / max(n, 1)
    var = (ss / max(n, 1) - mean * mean).clamp_min(0.0)
    std = var.sqrt()
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return mean.float().cpu(), std.float().cpu()


def _sample_batch(bank: FeatureBank, slides: np.ndarray, max_tiles: int, rng: np.random.Generator,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Features (B, M, D) float32, mask (B, M) and stroma estimates (B, M) (None when the bank has
    none) of up to ``max_tiles`` tumour-bed tiles per slide."""
    rows = []
    for i in slides:
        r = bank.bags[int(i)].masked_rows
        if len(r) > max_tiles:
            r = r[np.sort(rng.choice(len(r), max_tiles, replace=False))]
        rows.append(r)
    m = max(len(r) for r in rows)
    idx = np.zeros((len(rows), m), dtype=np.int64)
    mask = np.zeros((len(rows), m), dtype=bool)
    for j, r in enumerate(rows):
        idx[j, :len(r)] = r
        mask[j, :len(r)] = True
    rows_t = torch.from_numpy(idx).to(bank.features.device)
    x = bank.features[rows_t].to(device=device, dtype=torch.float32)
    est = None if bank.stroma_estimate is None else bank.stroma_estimate[rows_t.to(bank.stroma_estimate.device)].to(device)
    return x, torch.from_numpy(mask).to(device), est


def fit(bank: FeatureBank, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray | None,
        cfg: TrainConfig, *, seed: int, epochs: int | None = None, stage: str = "train",
        on_epoch: EpochCallback | None = None) -> FitResult:
    """Train one model on ``train_idx`` slides.

    With ``val_idx`` the model with the lowest validation loss is kept (early stopping
    after ``cfg.patience`` epochs without improvement); without it, exactly ``epochs``
    epochs are run.
    """
    cfg.check()
    device = resolve_device(cfg.device)
    max_epochs = int(epochs if epochs is not None else cfg.epochs)
    train_idx = np.asarray(train_idx, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.float32)
    tiles_per_step = cfg.batch_slides * min(cfg.max_tiles, max(int(b.tile_mask.sum()) for b in bank.bags))
    threads = choose_threads(tiles_per_step * bank.dim * cfg.hidden, cfg.threads)
    # seeded on a forked generator: the caller's torch random stream is given back as it was (fit reset it
    # to the training seed, so a notebook's later torch draws repeated across runs, until hunt 36d)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with Deterministic(), TorchThreads(threads), torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        model = TileMIL(cfg.architecture(bank.dim))
        mean, std = _feature_stats(bank, train_idx)
        model.feature_mean.copy_(mean)
        model.feature_std.copy_(std)
        with torch.no_grad():  # start every tile at the mean training label
            p = float(np.clip(labels[train_idx].mean() / 100.0, 0.01, 0.99))
            model.score.bias.fill_(math.log(p / (1 - p)))
        model.to(device)
        std_dev = std.to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = _loss_fn(cfg)
        y_all = torch.from_numpy(labels).to(device)
        best_loss, best_state, best_epoch = math.inf, None, max_epochs
        history: list[dict[str, float]] = []
        epoch = 0
        for epoch in range(1, max_epochs + 1):
            model.train()
            order = rng.permutation(train_idx)
            total, count = 0.0, 0
            for start in range(0, len(order), cfg.batch_slides):
                batch = order[start:start + cfg.batch_slides]
                x, mask, est = _sample_batch(bank, batch, cfg.max_tiles, rng, device)
                if cfg.feature_noise > 0:  # per feature, on the training tiles' scale
                    x = x + cfg.feature_noise * std_dev * torch.randn_like(x)
                pred, _, _ = model(x, mask, est)
                loss = loss_fn(pred, y_all[torch.from_numpy(batch).to(device)])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(batch)
                count += len(batch)
            train_loss = total / max(count, 1)
            val_loss = math.nan
            if val_idx is not None and len(val_idx):
                preds = np.array([s.stil for s in score_slides(model, bank, val_idx, device, threads)],
                                 dtype=np.float32)
                val_loss = float(loss_fn(torch.from_numpy(preds), torch.from_numpy(labels[val_idx])))
                if val_loss < best_loss - 1e-7:
                    best_loss, best_epoch = val_loss, epoch
                    best_state = copy.deepcopy(model.state_dict())
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            stop = val_idx is not None and len(val_idx) > 0 and epoch - best_epoch >= cfg.patience
            if on_epoch is not None:
                on_epoch(stage, epoch, max_epochs, train_loss, val_loss, stop or epoch == max_epochs)
            if stop:
                break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            best_epoch = epoch
        model.eval()
    return FitResult(model=model.cpu(), best_epoch=best_epoch, epochs_run=epoch, history=history, threads=threads)


@dataclass
class CVResult:
    folds: np.ndarray  #: fold per slide
    scores: list[SlideScores]  #: out-of-fold, in bank order
    best_epochs: list[int]  #: per model, in ``models`` order
    histories: list[list[dict[str, float]]]  #: per model
    #: the fold models (on the CPU): fold k's ``cfg.members`` models at ``k * members`` onwards
    models: list[TileMIL] = field(default_factory=list)


#: Fewer training groups than this: the early-stopping split is by slide (whole groups would
#: take a third or more of the training data away, e.g. one of three centres).
MIN_GROUPS_FOR_GROUP_SPLIT = 5


def inner_split(train_idx: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split training slides into (fit, validation) for early stopping: whole groups when there
    are enough groups (patients), else by slide."""
    from weakstil.cohort import group_holdout

    g = np.asarray(groups, dtype=object)[train_idx]
    n_groups = len(np.unique(g.astype(str)))
    if n_groups < MIN_GROUPS_FOR_GROUP_SPLIT:
        g = np.array([str(i) for i in train_idx], dtype=object)
        log.debug("%d groups among the training slides: early-stopping split by slide", n_groups)
    held = group_holdout(g, fraction, seed)
    if held.all() or not held.any():
        return train_idx, train_idx[:0]
    return train_idx[~held], train_idx[held]


def warn_no_validation(stage: str, n_train: int, epochs: int) -> None:
    """``--stopping early`` with no slide to validate on (one training slide, or groups that cannot be
    split): the model trains the full ``--epochs``, said rather than silently done."""
    log.warning("%s: %d training slide(s) leave none for the early-stopping validation split: trained for "
                "all %d epochs (as --stopping fixed); add slides, or use --stopping fixed", stage, n_train, epochs)


def _member_progress(on_epoch: EpochCallback | None, member: int, members: int) -> EpochCallback | None:
    """One progress line per fold: member ``member`` of ``members`` reports its epochs after the
    previous members' and is done only when it is the last."""
    if on_epoch is None or members == 1:
        return on_epoch

    def report(stage: str, epoch: int, max_epochs: int, train_loss: float, val_loss: float, done: bool) -> None:
        on_epoch(stage, member * max_epochs + epoch, members * max_epochs, train_loss, val_loss,
                 done and member == members - 1)
    return report


def cross_validate(bank: FeatureBank, labels: np.ndarray, groups: np.ndarray, cfg: TrainConfig, n_folds: int,
                   *, on_epoch: EpochCallback | None = None) -> CVResult:
    """Group-aware K-fold: each slide scored by the models that did not see its group.

    ``cfg.stopping``: ``fixed`` trains each fold model on all the fold's training slides for
    ``cfg.epochs``; ``early`` holds out an inner validation split and keeps the best epoch.
    ``cfg.members`` models per fold (seeds ``seed + k + 1 + 1000 m``; member 0 is the single model of
    ``members=1``) score the fold's slides together (:func:`weakstil.mil.ensemble.score_slides_ensemble`)."""
    from weakstil.cohort import group_kfold
    from weakstil.mil.ensemble import score_slides_ensemble

    what = "slides" if len(np.unique(np.asarray(groups).astype(str))) == len(groups) else "groups"
    folds = group_kfold(groups, n_folds, seed=cfg.seed, what=what)
    scores: list[SlideScores | None] = [None] * len(bank)
    best_epochs, histories, models = [], [], []
    dev = resolve_device(cfg.device)
    for k in range(n_folds):
        test = np.flatnonzero(folds == k)
        train = np.flatnonzero(folds != k)
        if cfg.stopping == Stopping.FIXED.value:  # all training slides, exactly cfg.epochs
            fit_idx, val_idx = train, None
        else:
            fit_idx, val_idx = inner_split(train, groups, cfg.val_fraction, cfg.seed + 1000 + k)
            if not len(val_idx):
                warn_no_validation(f"fold {k + 1}/{n_folds}", len(train), cfg.epochs)
        fold_models = []
        for member in range(cfg.members):
            res = fit(bank, labels, fit_idx, val_idx, cfg, seed=cfg.seed + k + 1 + 1000 * member,
                      stage=f"fold {k + 1}/{n_folds}", on_epoch=_member_progress(on_epoch, member, cfg.members))
            best_epochs.append(res.best_epoch)
            histories.append(res.history)
            fold_models.append(res.model.to(dev))
        for i, s in zip(test, score_slides_ensemble(fold_models, bank, test, dev, threads=cfg.threads)):
            scores[int(i)] = s
        models += [model.cpu() for model in fold_models]
        log.info("fold %d/%d: %d train, %d validation, %d test slides, %d model(s), best epoch %s", k + 1, n_folds,
                 len(fit_idx), 0 if val_idx is None else len(val_idx), len(test), cfg.members,
                 best_epochs[-cfg.members:])
    return CVResult(folds=folds, scores=scores, best_epochs=best_epochs, histories=histories,  # type: ignore[arg-type]
                    models=models)
