"""``weakstil train`` as a library function (``weakstil evaluate``: :mod:`weakstil.evaluation`).

:func:`train_cohort` writes a model folder (layout in :mod:`weakstil.modeldir`) into a temporary
folder beside it, renamed into place only when everything succeeded.

Every slide's out-of-fold tile scores come from a model that never saw its label (nor any
slide of its group), so they can be shown as heatmaps without optimism.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from weakstil.cohort import Cohort, read_cohort
from weakstil.errors import UsageError, WeakSTILError
from weakstil.evaluation import write_metrics, write_predictions, write_tile_scores
from weakstil.metrics import fmt
from weakstil.train_labels import (label_summary, scan_record, warn_band_errors, warn_group_errors,
                                   warn_small_training_folds, warn_whole_tissue)
from weakstil.modeldir import ModelDir
from weakstil.settings import STIL_THRESHOLD

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.tumorbed.resolver import BedSources

log = logging.getLogger(__name__)


def _prepare_out(out_dir: Path, overwrite: bool) -> None:
    """An existing output is replaced only with ``overwrite`` and only when ``weakstil train``
    wrote it (its marker, :mod:`weakstil.outputdir`): never a cohort folder or anything else."""
    from weakstil.outputdir import check_overwrite, new_out_fix, why_not_replaceable

    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not overwrite:
            other = why_not_replaceable(out_dir, "train")  # then --overwrite would not help: do not offer it
            raise UsageError(f"output already exists ({other})" if other else "output already exists",
                                path=out_dir, fix=new_out_fix("train") if other else
                                "choose another --out or pass --overwrite to replace it")
        check_overwrite(out_dir, "train")


def _bank_for(cohort: Cohort, features_dir: Path, tumorbeds: dict | None, beds: BedSources | None,
              tile_stats: bool = False, stroma_estimate: bool = False, centre_embeddings: bool = False):
    """The cohort's features, with each slide's tumour bed: ``tumorbeds`` when given, else
    resolved from ``beds``, else the feature files' own flags (or all tiles)."""
    from weakstil.mil.bank import FeatureBank

    paths = cohort.feature_paths(features_dir)
    if tumorbeds is None and beds is not None:
        tumorbeds = beds.cohort(dict(zip(cohort.slide_ids, paths)), dict(zip(cohort.slide_ids, cohort.table["path"])))
    return FeatureBank.load(paths, cohort.slide_ids, tumorbeds=tumorbeds, tile_stats=tile_stats,
                            stroma_estimate=stroma_estimate, centre_embeddings=centre_embeddings)


def _without_empty_beds(cohort: Cohort, tumorbeds: dict | None, beds: BedSources | None, csv_path) -> Cohort:
    """The cohort without the slides whose given tumour bed (an annotation, a detector's) holds no
    tile: ``weakstil score`` and ``evaluate`` give such a slide no score, and training on its whole
    tissue instead would learn its label from tissue the label does not describe."""
    empty = [sid for sid in cohort.slide_ids if tumorbeds is not None and sid in tumorbeds
             and not np.asarray(tumorbeds[sid]).any()]
    if not empty:
        return cohort
    crush = {sid: n for sid in empty if beds is not None and (n := beds.crush_of.get(sid, 0))}  # weakstil.crush
    crushed = f"; all crush artefact, left out of the scored area: {', '.join(f'{s} ({n} tiles)' for s, n in list(crush.items())[:5])}" \
        if crush else ""
    if len(empty) > len(cohort) - 2:
        raise WeakSTILError(f"the tumour beds of {len(empty)} of the {len(cohort)} slides hold no tile "
                            f"({', '.join(empty[:5])}{', ...' if len(empty) > 5 else ''}{crushed}): too few slides are "
                            "left to train on", path=csv_path, fix="check the beds (an annotation drawn on glass, or "
                            "exported at another magnification, covers no tile)")
    log.warning("%d slide(s) whose tumour bed holds no tile are left out of training, as 'weakstil score' gives "
                "them no score (%s%s%s): check their annotations (drawn on glass, or exported at another "
                "magnification?)", len(empty), ", ".join(empty[:5]), ", ..." if len(empty) > 5 else "", crushed)
    if beds is not None:  # the record counts the slides trained on
        for sid in empty:
            source = beds.source_of.get(sid)
            if source in beds.used:
                beds.used[source] -= 1
        beds.used = {k: n for k, n in beds.used.items() if n > 0}
        beds.left_out = list(empty)
    return Cohort(cohort.csv_path, cohort.table[~cohort.table["slide_id"].isin(empty)].reset_index(drop=True),
                  cohort.group_column)


def _in_slide_id_order(cohort: Cohort) -> Cohort:
    """The cohort sorted by slide id: the order of the slides is the order of the mini-batches
    and of the model's inputs, so the same cohort in another row order trains the same model."""
    table = cohort.table.sort_values("slide_id", kind="stable").reset_index(drop=True)
    return Cohort(cohort.csv_path, table, cohort.group_column)


def _all_have_tile_stats(paths, slide_ids: list[str]) -> bool:
    """Whether every feature file holds the per-tile measurements (made by this weakstil's embed);
    when only some lack them, says which: one such file turns them off for the whole model."""
    from weakstil.files import FeaturesFile

    without = [sid for sid, p in zip(slide_ids, paths) if "tile_stats" not in FeaturesFile.read_header(p)[1]]
    if without and len(without) < len(slide_ids):
        log.warning("%d of the %d feature files have no tile measurements (%s%s; embedded with --no-tile-stats or "
                    "by an older weakstil): the model is trained without them for every slide; re-embed those "
                    "slides to use them", len(without), len(slide_ids), ", ".join(without[:5]),
                    ", ..." if len(without) > 5 else "")
    return not without


def _fit_confidence_and_qc(folder: ModelDir, bank, cohort: Cohort, labels: np.ndarray, oof, fold_models: list,
                           threshold: float, seed: int, on_epoch, members: int = 1) -> dict:
    """Save the fold models and what the sTIL% interval and the qc flags of ``weakstil score``
    need (weakstil.qc.training); returns the ``folds`` and ``qc`` entries of model.json."""
    from weakstil.mil.store import save_fold_models
    from weakstil.qc.training import fit_qc

    def on_slide(done: int, total: int) -> None:
        if on_epoch is not None:
            on_epoch("qc slides", done, total, float("nan"), float("nan"), done == total)

    folds = save_fold_models(fold_models, folder.root, members) if fold_models else []
    qc = fit_qc(folder, bank, cohort.table["path"].tolist(), labels, oof, threshold=threshold, seed=seed,
                groups=cohort.groups, on_slide=on_slide)
    return {"folds": folds, "qc": qc}


def train_cohort(csv_path: str | Path, features_dir: str | Path, out_dir: str | Path, cfg=None, *,
                 n_folds: int = 5, group_column: str | None = None, threshold: float = STIL_THRESHOLD,
                 overwrite: bool = False, on_epoch=None, tumorbeds: dict | None = None,
                 beds: BedSources | None = None, bundle: bool = False,
                 bundle_tumorbed: str | Path | None = None) -> dict:
    """Cross-validate (``n_folds`` >= 2) and train the final model; returns a summary dict.

    ``bundle``: make the model self-contained for ``weakstil score``
    (:meth:`weakstil.modeldir.ModelDir.bundle_for_scoring`: the local encoder, and the detector
    ``bundle_tumorbed``), inside the temporary folder before it is renamed into place, so a run killed
    while copying never leaves a model folder with a half-copied encoder or detector (the copy was made
    into ``out_dir`` after the rename and outside the folder's lock: hunt 20b). The summary's
    ``bundled`` lists what was bundled.

    With ``cfg.stopping == "fixed"`` (the default) every model trains ``cfg.epochs`` epochs on
    all its training slides. With ``"early"``: ``n_folds`` <= 1 stops the final model early on an
    inner validation split; with cross-validation the final model trains on all slides for the
    median best epoch of the folds. Each slide's score is made by its tumour-bed tiles:
    ``tumorbeds`` (slide id -> bool per tile), else resolved from ``beds`` as ``score`` resolves them
    (no source given: the ``tumorbed`` flags in the feature files, else the whole tissue; crush left out).
    """
    from weakstil.mil.config import TrainConfig

    from weakstil.files.schema import headers_read_once
    from weakstil.ink_plane import ink_tests_kept
    from weakstil.locks import hold_folder

    cfg = cfg or TrainConfig()
    cfg.check()
    out_dir = Path(out_dir)
    _prepare_out(out_dir, overwrite)
    # each feature file's header read once, not five times; each slide's ink test made once, for its bed's ink veto
    # and then the QC's ink measure (they read the same thumbnail; made twice before helper h46c)
    with hold_folder(out_dir, "train"), headers_read_once(), ink_tests_kept(every_slide=True):
        return _train_cohort(csv_path, Path(features_dir), out_dir, cfg, n_folds=n_folds, group_column=group_column,
                             threshold=threshold, overwrite=overwrite, on_epoch=on_epoch, tumorbeds=tumorbeds,
                             beds=beds, bundle=bundle, bundle_tumorbed=bundle_tumorbed)


def _train_cohort(csv_path, features_dir: Path, out_dir: Path, cfg, *, n_folds: int, group_column: str | None,
                  threshold: float, overwrite: bool, on_epoch, tumorbeds: dict | None,
                  beds: BedSources | None, bundle: bool = False, bundle_tumorbed: str | Path | None = None) -> dict:
    t0 = time.perf_counter()
    _prepare_out(out_dir, overwrite)  # again, under the folder's lock
    # fractions refused here, as read (read_cohort only warns by default: report reads such a CSV)
    cohort = read_cohort(csv_path, features_dir=features_dir, group_column=group_column, truth=True,
                         refuse_fractions=True)
    from weakstil.outputdir import check_inputs_outside

    # a slide file kept in the model folder would be deleted with it, as the cohort CSV (checked by the CLI)
    for path in cohort.table["path"]:
        check_inputs_outside(out_dir, {"cohort slide": path}, "train")
    if len(cohort) < 2:
        raise WeakSTILError(f"cohort has {len(cohort)} slide; training needs several", path=csv_path,
                            fix="add slides")
    n_groups = len(np.unique(cohort.groups.astype(str)))
    # the CSV's own 'group' column (not asked for): rather than refuse a command that names no
    # groups, keep its groups apart in fewer folds, or split by slide when it holds one group
    implicit_groups = n_folds >= 2 and group_column is None and bool(cohort.group_column)
    if implicit_groups and 2 <= n_groups < n_folds:
        log.warning("%s: %d groups in column %r but %d folds: cross-validating leave-one-group-out in %d folds "
                    "(--group-column none splits by slide into %d)", csv_path, n_groups, cohort.group_column,
                    n_folds, n_groups, n_folds)
        n_folds = n_groups
    elif n_folds >= 2 and group_column is None and not cohort.group_column:
        from weakstil.cohort import group_column_lookalikes

        for name in group_column_lookalikes(csv_path):  # a 'Group' or 'patient_id' column is not taken by itself
            # quoted for the shell: 'Medical center' unquoted was two arguments and the fix failed
            log.warning("%s: column %r is not used to keep groups apart (only 'group' is, or the column "
                        "--group-column names): slides of one patient or centre may sit in two cross-validation "
                        "folds, trained on in one and tested in the other; pass --group-column %s (or "
                        "--group-column none to split by slide)", csv_path, name, shlex.quote(name))
    elif implicit_groups and n_groups == 1:
        log.warning("%s: one group in column %r: cross-validating by slide", csv_path, cohort.group_column)
        cohort = read_cohort(csv_path, features_dir=features_dir, group_column="none", truth=True)
    from weakstil.cohort import group_kfold

    cohort = _in_slide_id_order(cohort)
    what = "groups" if cohort.group_column else "slides"
    if n_folds >= 2:  # fail on too few groups before loading any features
        group_kfold(cohort.groups, n_folds, seed=cfg.seed, what=what)
    resolved = tumorbeds is None  # by the bed resolver, as 'score' resolves them: no source, each file's own flags
    if resolved:  # or the whole tissue, less crush (before helper h44d the bank took those: other tiles than score's)
        from weakstil.tumorbed.resolver import BedSources

        beds = beds if beds is not None else BedSources()
        tumorbeds = beds.cohort(dict(zip(cohort.slide_ids, cohort.feature_paths(features_dir))),
                                dict(zip(cohort.slide_ids, cohort.table["path"])))  # where the slides are (ink veto)
    cohort = _without_empty_beds(cohort, tumorbeds, beds, csv_path)
    if resolved and not beds.given:  # no bed source: the feature files' own flags, else the whole tissue
        warn_whole_tissue(sum(beds.source_of.get(s) == "tissue" for s in cohort.slide_ids), len(cohort), csv_path)
    if n_folds >= 2:  # the folds again, on the slides that are left (cross_validate splits them so)
        warn_small_training_folds(group_kfold(cohort.groups, n_folds, seed=cfg.seed, what=what), cohort.groups,
                                  csv_path)
    # torch only now: bad inputs fail in a second
    from weakstil.mil.config import Aggregator, Stopping, StromaWeight
    from weakstil.mil.store import model_meta, save_model
    from weakstil.mil.training import cross_validate, fit, inner_split, warn_no_validation
    from weakstil.outputdir import mark
    from weakstil.runtime import resolve_device

    if cfg.tile_stats is None:  # automatic: the measurements when every feature file has them
        cfg = dataclasses.replace(cfg, tile_stats=_all_have_tile_stats(cohort.feature_paths(features_dir),
                                                                           cohort.slide_ids))
    if cfg.centre_embeddings and not cfg.tile_stats:
        log.warning("--centre-embeddings without the tile measurements: the slide-level abundance of "
                    "lymphocytes in the embeddings' mean is lost (use --tile-stats)")
    bank = _bank_for(cohort, features_dir, tumorbeds, beds, tile_stats=cfg.tile_stats,
                     stroma_estimate=(cfg.aggregator, cfg.stroma_weight) == (Aggregator.STROMA.value,
                                                                             StromaWeight.ESTIMATE.value),
                     centre_embeddings=cfg.centre_embeddings)
    from weakstil.mil.identity import check_features_current

    check_features_current(bank.identity, bool(cfg.tile_stats) or cfg.stroma_weight == StromaWeight.ESTIMATE.value,
                           cohort.feature_paths(features_dir)[0], len(cohort))
    scans = scan_record(cohort.feature_paths(features_dir), cohort.slide_ids, csv_path)
    bank.to_device(resolve_device(cfg.device))
    labels = cohort.labels.astype(np.float32)
    if len(labels) > 1 and float(np.ptp(labels)) < 1.0:
        log.warning("%s: every label is %.1f%% (within 1 point): the model can learn nothing but that number", csv_path,
                    float(labels.mean()))
    groups = cohort.groups
    log.info("%d slides, %d tiles, %d-dim features (%s); groups: %s", len(bank), bank.features.shape[0], bank.dim,
             bank.identity.get("encoder"), cohort.group_column or "none (split by slide)")
    t_load = time.perf_counter() - t0

    from weakstil.atomic import glob_escape

    for stale in out_dir.parent.glob(f".{glob_escape(out_dir.name)}.tmp-*"):  # a killed run's (the lock is ours)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        cv_summary: dict = {}
        if n_folds >= 2:
            cv = cross_validate(bank, labels, groups, cfg, n_folds, on_epoch=on_epoch)
            pred = pd.DataFrame({
                # the labels as written (float64): float32 put 45.1219 below a 45.1219 threshold
                "slide_id": cohort.slide_ids, "stil_true": cohort.labels.astype(float),
                # folds numbered from 1, as the fold model files (folds/fold_<k>_<m>) and the log
                "stil_pred": [s.stil for s in cv.scores], "fold": np.asarray(cv.folds) + 1, "group": groups,
            })
            folder = ModelDir(tmp)
            write_predictions(pred, folder.oof_path, threshold)
            for bag, s, k in zip(bank.bags, cv.scores, cv.folds):
                write_tile_scores(folder.cv_tile_scores(bag.slide_id), bag, s, {
                    "stil_pred": s.stil, "stil_true": float(cohort.labels[bank.index[bag.slide_id]]), "fold": int(k) + 1,
                    "source": "cross-validation (out of fold)", "aggregator": cfg.aggregator,
                    "threshold": float(threshold)})
            metrics = write_metrics(pred, folder.cv_dir, threshold=threshold, title=f"{n_folds}-fold CV",
                                    extra={"folds": n_folds, "group_column": cohort.group_column},
                                    color_groups=cohort.group_column is not None)
            fixed = cfg.stopping == Stopping.FIXED.value
            final_epochs = cfg.epochs if fixed else max(1, int(round(float(np.median(cv.best_epochs)))))
            cv_summary = {
                "folds": n_folds, "best_epochs": cv.best_epochs,
                "metrics": {k: metrics[k] for k in ("n", "r2", "pearson_r", "spearman_rho", "mae", "rmse")},
                "auc": {f"{c['threshold']:g}": c["auc"] for c in metrics["classification"]},
                "error_by_band": metrics["error_by_band"],
            }
            log.info("cross-validation: R² %s, Pearson %s, MAE %.2f, AUC@%g %s", fmt(metrics["r2"]),
                     fmt(metrics["pearson_r"]), metrics["mae"], threshold,
                     fmt(next(c["auc"] for c in metrics["classification"] if c["threshold"] == threshold)))
            warn_band_errors(metrics["error_by_band"], csv_path)
            if by_group := warn_group_errors(metrics.get("by_group"), cohort.group_column, csv_path):  # a centre scored off the rest
                cv_summary["error_by_group"] = by_group
            final = fit(bank, labels, np.arange(len(bank)), None, cfg, seed=cfg.seed, epochs=final_epochs,
                        stage="final", on_epoch=on_epoch)
            how = f"all {len(bank)} slides for {final_epochs} epochs " + (
                "(fixed)" if fixed else "(median best epoch of the CV folds)")
        elif cfg.stopping == Stopping.FIXED.value:
            final = fit(bank, labels, np.arange(len(bank)), None, cfg, seed=cfg.seed, stage="final", on_epoch=on_epoch)
            how = f"all {len(bank)} slides for {cfg.epochs} epochs (fixed); no cross-validation"
        else:
            fit_idx, val_idx = inner_split(np.arange(len(bank)), groups, cfg.val_fraction, cfg.seed + 1000)
            if not len(val_idx):
                warn_no_validation("final", len(bank), cfg.epochs)
            final = fit(bank, labels, fit_idx, val_idx, cfg, seed=cfg.seed, stage="final", on_epoch=on_epoch)
            how = (f"{len(fit_idx)} slides, early stopping on {len(val_idx)} held-out slides "
                   f"(best epoch {final.best_epoch}); no cross-validation")
        qc_meta = _fit_confidence_and_qc(ModelDir(tmp), bank, cohort, labels, cv.scores if n_folds >= 2 else None,
                                         cv.models if n_folds >= 2 else [], threshold, cfg.seed, on_epoch,
                                         cfg.members)
        duration = time.perf_counter() - t0
        meta = model_meta(bank, cfg, threshold=threshold, threads=final.threads, extra={
            "cohort": str(Path(csv_path).resolve()), "features": str(Path(features_dir).resolve()),
            "n_slides": len(bank), "n_tiles": int(bank.features.shape[0]), "labels": label_summary(cohort.labels),
            "group_column": cohort.group_column, "final_model": how,
            # the epoch of the weights kept (early stopping without cross-validation: not the epochs run)
            "final_epochs": final.best_epoch,
            "cross_validation": cv_summary or None, "load_seconds": round(t_load, 2),
            "train_seconds": round(duration, 2),
            # where each slide's tumour bed came from (a model trained on other beds scores otherwise)
            "scans": scans or None,  # the scan resolutions learnt from (upsampled slides, given µm/px)
            "tumorbeds": beds.record() if resolved else {"slides": {"given by the caller": len(bank)}},
        })
        meta.update(qc_meta)  # "folds": MODEL/folds/ (scoring="ensemble" and the interval use them), "qc"
        meta["scoring"] = cfg.scoring if qc_meta.get("folds") else "final"
        if meta["scoring"] != cfg.scoring:  # recorded as used, the request beside it (as device and threads)
            config = meta["training"]["config"]
            config["requested"] = {**config.get("requested", {}), "scoring": config["scoring"]}
            config["scoring"] = meta["scoring"]
            log.warning("no cross-validation fold models (--folds %d): new slides are scored by the final model, "
                        "not --scoring %s, and get no interval", n_folds, cfg.scoring)
        save_model(final.model, tmp, meta)
        bundled = ModelDir(tmp).bundle_for_scoring(features_dir, bundle_tumorbed) if bundle else []
        mark(tmp, "train")
        if out_dir.exists():
            _prepare_out(out_dir, overwrite)  # still one of ours
            shutil.rmtree(out_dir) if out_dir.is_dir() else out_dir.unlink()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("model -> %s (%.1f s)", out_dir, duration)
    return {"out": out_dir, "cv": cv_summary, "final_model": how, "seconds": duration, "bundled": bundled}
