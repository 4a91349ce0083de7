"""Writing stage-2 results: per-slide predictions, metrics (JSON + CSV), plots, tile scores.

Evaluation folder layout (``weakstil evaluate --out DIR``; the same under ``MODEL/cv/``):

* ``predictions.csv`` — slide_id, stil_true, stil_pred, high_true, high_pred, group (+ fold)
* ``metrics.json`` — n, r2, pearson_r, spearman_rho, mae, rmse, ci95 (of each), classification (AUC with its
  auc_ci95, sensitivity, specificity per sTIL-high threshold), calibration table, ``error_by_band`` (n, MAE, bias by true sTIL%);
  ``metrics.csv`` the same flat: ``metric,threshold,value`` (+ ``n_excluded``, ``n_unlabelled`` when > 0)
* ``calibration.csv`` — predicted-sTIL% bin, n, mean predicted, mean true
* ``metrics_by_group.csv`` (with a group column) — each group's metrics, as ``by_group`` in metrics.json
* ``scatter.png`` (predicted vs true with the identity line), ``roc.png``
* ``tiles/<slide_id>.h5`` — each slide's tile scores, a :class:`weakstil.files.TileScoresFile`.

``metrics.json`` of ``weakstil evaluate`` also says how its numbers were made: ``mode``
(``model``: the model scored the slides; ``oof``: saved out-of-fold predictions), the cohort CSV,
and in model mode the model (absolute path, weights SHA-256), ``scoring`` (``final`` or ``ensemble``), the
features folder, the tumour-bed sources, the slides left out (an empty tumour bed: no prediction, as in
``weakstil score``) and ``n_training_slides``, the evaluated slides the model was trained on (in-sample).

An evaluation folder is written all or nothing: into a temporary folder beside ``--out``, renamed into place
(with its ``.weakstil-output.json`` marker) only when everything succeeded (:func:`weakstil.outputdir.staged_folder`);
an existing evaluation is replaced only with ``--overwrite``."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from weakstil.atomic import atomic_path
from weakstil.errors import WeakSTILError
from weakstil.evaluation_results import (refuse_fraction_labels, refuse_fraction_labels_of_model,
                                         refuse_fraction_predictions)
from weakstil.evaluation_plots import plot_roc, plot_scatter
from weakstil.metrics import DEFAULT_THRESHOLDS, all_metrics, by_group, called_high
from weakstil import csv_cells, settings
from weakstil.code_version import version as code_version
from weakstil.settings import STIL_THRESHOLD

log = logging.getLogger(__name__)


def _clean(o: object) -> object:
    """NaN -> None (valid JSON), tuples -> lists, numpy scalars -> Python."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def thresholds_with(threshold: float | None) -> tuple[float, ...]:
    ths = list(DEFAULT_THRESHOLDS)
    if threshold is not None and float(threshold) not in ths:
        ths.append(float(threshold))
    return tuple(sorted(ths))


def in_slide_order(pred: pd.DataFrame) -> pd.DataFrame:
    """``pred`` by slide id (then truth, prediction): the metrics of a cohort, not of its row order. The
    bootstrap draws slides by position and float sums follow the rows, so the same 6 slides listed
    in reverse gave another interval (hunt 38h: R² 95 % CI low 0.798 vs 0.684; Pearson in the 16th
    digit); ``train`` already ordered its slides by id, ``evaluate`` kept the cohort CSV's order."""
    keys = [c for c in ("slide_id", "stil_true", "stil_pred") if c in pred]
    return pred.sort_values(keys, kind="stable", key=lambda c: c.astype(str) if c.name == "slide_id" else c,
                            ignore_index=True)


def write_metrics(pred: pd.DataFrame, out_dir: str | Path, *, threshold: float = STIL_THRESHOLD, title: str = "",
                  extra: dict | None = None, color_groups: bool = True) -> dict:
    """Metrics, calibration and plots for ``pred`` (columns stil_true, stil_pred) into ``out_dir``.

    ``color_groups``: colour the scatter plot by the ``group`` column (when it has 2-10 groups)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pred = in_slide_order(pred)
    t, p = pred["stil_true"].to_numpy(dtype=float), pred["stil_pred"].to_numpy(dtype=float)
    m = all_metrics(t, p, thresholds_with(threshold))
    m["threshold"] = float(threshold)
    by_centre = color_groups and "group" in pred  # a group column: the metrics of each group too
    if by_centre:
        m["by_group"] = by_group(t, p, pred["group"].to_numpy(), threshold)
    if extra:
        m.update(extra)
    from weakstil.runtime import versions

    m.setdefault("versions", versions())
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(_clean(m), indent=2) + "\n", encoding="utf-8")
    rows = [{"metric": k, "threshold": "", "value": m[k]} for k in ("n", "r2", "pearson_r", "spearman_rho", "mae",
                                                                    "rmse")]
    for c in m["classification"]:
        for k, v in (*((k, c[k]) for k in ("auc", "sensitivity", "specificity", "accuracy", "n_high", "n_low")),
                     *zip(("auc_ci95_low", "auc_ci95_high"), c.get("auc_ci95") or ())):
            rows.append({"metric": k, "threshold": c["threshold"], "value": v})
    rows += [{"metric": f"{k}_ci95_{end}", "threshold": "", "value": v} for k, ci in (m.get("ci95") or {}).items()
             for end, v in zip(("low", "high"), ci)]
    rows += [{"metric": f"{k}_true_{b['band']}", "threshold": "", "value": b[k]} for b in m["error_by_band"] for k in ("n", "mae", "bias")]  # noqa: E501
    counts = {"n_training_slides": m.get("n_training_slides"),  # > 0: in-sample metrics for that many slides
              "n_excluded": len(m.get("excluded") or []) or None, "n_unlabelled": len(m.get("unlabelled") or []) or None}
    rows += [{"metric": k, "threshold": "", "value": v} for k, v in counts.items() if v is not None]  # left out: counted
    with atomic_path(out_dir / "metrics.csv") as tmp:
        pd.DataFrame(rows, dtype=object).to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)  # counts stay 6, not 6.0
    if by_centre:
        with atomic_path(out_dir / "metrics_by_group.csv") as tmp:
            pd.DataFrame(m["by_group"]).to_csv(tmp, index=False)
    with atomic_path(out_dir / "calibration.csv") as tmp:
        pd.DataFrame(m["calibration"]).to_csv(tmp, index=False)
    plot_scatter(pred if color_groups else pred.drop(columns="group", errors="ignore"), out_dir / "scatter.png", m,
                 title=title)
    plot_roc(t, p, out_dir / "roc.png", [c["threshold"] for c in m["classification"]], title=title)
    return m


def write_predictions(pred: pd.DataFrame, path: str | Path, threshold: float = STIL_THRESHOLD) -> Path:
    out = pred.copy()
    out["high_true"] = (out["stil_true"] >= threshold).astype(int)
    # a slide without a prediction (no tumour bed) has no high/low call either: empty, not 0
    out["high_pred"] = pd.Series(called_high(out["stil_pred"], threshold), index=out.index).astype("Int64").where(
        out["stil_pred"].notna())
    extra = [c for c in ("tumorbed_source", "status", "training_slide") if c in out]  # after the usual columns
    out = out[[c for c in out.columns if c not in extra] + extra]
    with atomic_path(path) as tmp:
        csv_cells.defused(out).to_csv(tmp, index=False, float_format="%.4f")
    return Path(path)


#: Feature-cache attributes copied into tile-score files, so a viewer can place the tiles on
#: their slide (µm/px, grid spacing) and find the slide.
PLACEMENT_ATTRS = ("slide_path", "slide_mpp", "slide_width", "slide_height", "mpp", "tile_px", "overlap_px",
                   "tiling_key", "slide_fingerprint")


def placement_attrs(features_attrs: dict[str, object]) -> dict[str, object]:
    """The slide-placement attributes of a feature cache (missing ones are left out)."""
    return {k: features_attrs[k] for k in PLACEMENT_ATTRS if k in features_attrs}


# --- weakstil evaluate ---------------------------------------------------------------------------


def _beds_unlike_training(bed_record: dict, meta: dict, n_slides: int, model_dir: Path) -> int:
    """How many evaluated slides are scored over the whole tissue by a model trained on tumour beds
    (warned about, as ``weakstil score`` does: their scores are not what the model measures)."""
    from weakstil.qc.flags import bed_unlike_training, training_bed_kinds

    slides = bed_record.get("slides") or {}
    whole = sum(n for source, n in slides.items() if source == "tissue")
    why = bed_unlike_training("tissue", (meta.get("training") or {}).get("tumorbeds")) if whole else None
    if why is None:
        return 0
    kinds = training_bed_kinds((meta.get("training") or {}).get("tumorbeds"))
    log.warning("%s was trained on tumour beds (%s), and %d of the %d evaluated slides have none (no --annotations, "
                "--tumorbed-beds or --tumorbed, and the model bundles no detector): they are scored over the whole "
                "tissue, which is not what the model measures; pass the beds as for training", model_dir, kinds,
                whole, n_slides)
    return whole


def _beds_of_another_ink_rule(bed_record: dict, meta: dict, n_slides: int, model_dir: Path) -> int:
    """How many evaluated slides' beds had their ink veto measure ink over tissue under another ink-plane rule than
    every one of the model's training beds (warned about, as ``weakstil score`` flags them bed_unlike_training; review
    r46c: evaluate compared the bed sources only)."""
    from weakstil.ink_plane import rules_said
    from weakstil.qc.flags import ink_rule_unlike_training

    training = (meta.get("training") or {}).get("tumorbeds")
    other = {int(r): n for r, n in (bed_record.get("ink_plane_rules") or {}).items()
             if ink_rule_unlike_training(int(r), training) is not None}
    if other:
        log.warning("%s was trained on beds whose ink veto measured ink over tissue under %s, and %d of the %d evaluated "
                    "slides' beds under %s: other tiles may be vetoed as ink than in training (train the model again "
                    "on beds drawn by this WeakSTIL)", model_dir,
                    rules_said(training["ink_plane_rules"]), sum(other.values()),
                    n_slides, rules_said(other))
    return sum(other.values())


def _bed_is_empty(slide_id: str, tumorbeds: dict) -> bool:
    """Whether the slide's tumour bed holds no tile (all crush, an outline on glass): what ``weakstil score``
    reports as ``no tumour bed`` (no score) and ``train`` leaves out."""
    mask = tumorbeds.get(slide_id)
    return mask is not None and len(mask) > 0 and not np.asarray(mask, bool).any()


def write_tile_scores(path: Path, bag, scores, attrs: dict) -> Path:
    """One slide's tile scores as a :class:`weakstil.files.TileScoresFile` (cross-validation, evaluate)."""
    from weakstil.files import TileScoresFile

    return TileScoresFile(coords=bag.coords, tile_scores=scores.tile_stil, weights=scores.weights,
                          tile_scores_model=None if scores.stroma is None else scores.tile_scores,
                          tumorbed=bag.tile_mask, attention=scores.attention, stroma_weight=scores.stroma,
                          attrs={"slide_id": bag.slide_id, "tile_size_level0": float(bag.tile_size_level0),
                                 "tile_prior_stroma": settings.TILE_PRIOR_STROMA if scores.stroma is not None else 0.0,
                                 "weakstil_version": code_version(), **attrs,  # as every other per-slide file
                                 **placement_attrs(bag.attrs)}).write(path)


def evaluate_cohort(csv_path: str | Path, model_dir: str | Path, features_dir: str | Path, out_dir: str | Path, *,
                    group_column: str | None = None, threshold: float | None = None, beds=None, device: str = "cpu",
                    threads: int = 0, scoring: str | None = None, percent_as_written: bool = False) -> dict:
    """Score every slide with a trained model; write predictions, metrics, plots and tile scores.

    Each slide's score is made by its tumour-bed tiles (``beds``, a :class:`~weakstil.tumorbed.resolver.BedSources`;
    none given: the feature files' flags, else the whole tissue, crush left out, as ``score``). A slide whose tumour bed is empty gets no prediction, as in
    ``weakstil score``: it is listed in predictions.csv with status ``no tumour bed``, left out of the metrics. ``scoring``:
    ``final``, ``ensemble`` (the CV fold models) or None (what the model says)."""
    from weakstil.cohort import read_cohort
    from weakstil.files import FeaturesFile, slide_file
    from weakstil.insample import training_slides_among
    from weakstil.mil.bank import FeatureBank
    from weakstil.mil.ensemble import load_scoring_models, score_slides_ensemble
    from weakstil.mil.identity import (check_features_match_model, check_same_identity, crush_unlike_training,
                                       refuse_non_finite)
    from weakstil.modeldir import TILES_DIR, ModelDir
    from weakstil.runtime import resolve_device, sha256_file
    from weakstil.score import STATUS_BED_FALLBACK, STATUS_NO_BED, STATUS_OK

    models, meta = load_scoring_models(model_dir, scoring)
    model = models[0]
    model_dir, features_dir, out_dir = Path(model_dir).resolve(), Path(features_dir), Path(out_dir)
    cohort = read_cohort(csv_path, features_dir=features_dir, group_column=group_column, truth=True)
    ids, paths = cohort.slide_ids, cohort.feature_paths(features_dir)
    caches = [FeaturesFile.read(p, skip=("tissue_mask",)) for p in paths]  # tile stats: crush (FeatureBank)
    refuse_non_finite([(p, c.features) for p, c in zip(paths, caches)])  # before any bed is detected from them
    first = check_same_identity(ids[:1], [caches[0].attrs])
    check_features_match_model(meta, first, paths[0])  # before the beds
    if (crush := crush_unlike_training(meta, first.get("tilestats_version"))) is not None:
        log.warning("%s: %s", model_dir, crush)  # its beds kept crush, these leave it out
    from weakstil.tumorbed.resolver import BedSources

    beds = beds if beds is not None else BedSources()  # no source: each file's own flags, else the whole tissue, as score
    tumorbeds = beds.cohort(dict(zip(ids, paths)), dict(zip(ids, cohort.table["path"])))
    bed_record = beds.record()
    # per slide, in score's words (results.csv tumorbed_source): a slide scored over the whole tissue
    # after a bed fallback is said so, not 'ok'
    source_of = dict(beds.source_of)
    unlike = _beds_unlike_training(bed_record, meta, len(ids), model_dir)
    other_rule = _beds_of_another_ink_rule(bed_record, meta, len(ids), model_dir)
    no_bed = [sid for sid in ids if _bed_is_empty(sid, tumorbeds)]
    for sid in no_bed:  # a bed all crush is said so (weakstil.crush), as score says it
        crush = beds.crush_of.get(sid, 0)
        log.warning("%s: %s; no prediction (left out of the metrics, as 'weakstil score' gives it no score)", sid,
                    f"the {crush} tiles of its tumour bed are all crush artefact, left out of the scored area"
                    if crush else "no tumour bed")
    if len(no_bed) == len(ids):
        raise WeakSTILError("no slide of the cohort has a tile in its tumour bed; nothing to evaluate",
                            path=csv_path, fix="check the tumour beds (--annotations, --tumorbed-beds, --tumorbed)")
    left_out = set(no_bed)
    keep = [i for i, sid in enumerate(ids) if sid not in left_out]
    bank = FeatureBank.from_caches([caches[i] for i in keep], [ids[i] for i in keep], tumorbeds=tumorbeds,
                                   tile_stats=model.arch.tile_stats, stroma_estimate=model.needs_stroma_estimate,
                                   centre_embeddings=model.arch.centre_embeddings)
    fingerprint_of = {sid: str(c.attrs.get("slide_fingerprint") or "") for sid, c in zip(ids, caches)}
    del caches
    check_features_match_model(meta, bank.identity, features_dir)
    if bank.dim != model.arch.input_dim:
        raise WeakSTILError(f"features have {bank.dim} dimensions, the model expects {model.arch.input_dim}",
                            path=features_dir, fix="embed with the model's encoder")
    threshold = float(meta.get("threshold", STIL_THRESHOLD) if threshold is None else threshold)
    how = scoring or meta.get("scoring", "final")
    how = how if len(models) > 1 or how == "final" else "final"  # an ensemble without fold models is the final
    if scoring == "ensemble" and how == "final":  # as train says for --folds 1 --scoring ensemble
        log.warning("%s has no fold models (trained with --folds 1): --scoring ensemble scores with its final model",
                    model_dir)
    dev = resolve_device(device)
    bank.to_device(dev)
    scores = score_slides_ensemble([m.to(dev) for m in models], bank, device=dev, threads=threads)
    model_sha = sha256_file(ModelDir(model_dir).weights_path)
    label_of = dict(zip(ids, cohort.labels))
    stil = {}
    for bag, s in zip(bank.bags, scores):
        stil[bag.slide_id] = s.stil
        write_tile_scores(slide_file(out_dir / TILES_DIR, bag.slide_id), bag, s, {
            "stil_pred": s.stil, "stil_true": float(label_of[bag.slide_id]), "model_sha256": model_sha,
            "model": str(model_dir), "aggregator": model.arch.aggregator, "source": "evaluate",
            "n_models": len(models), "scoring": how, "threshold": threshold})
    pred = pd.DataFrame({"slide_id": ids, "stil_true": cohort.labels, "stil_pred": [stil.get(s, np.nan) for s in ids],
                         "group": cohort.groups, "tumorbed_source": [source_of.get(s, "") for s in ids],
                         "status": [STATUS_NO_BED if s in left_out else STATUS_BED_FALLBACK
                                    if source_of.get(s) == "tissue-fallback" else STATUS_OK for s in ids]})
    if not percent_as_written:  # (--percent-as-written: the labels are percentages as written, all under 1 or not)
        refuse_fraction_labels_of_model(pred, csv_path)  # before anything is written in place
    known, renamed, lists_ids = training_slides_among(fingerprint_of, model_dir, meta)
    seen = None if known is None else sorted(set(stil) & known)
    if seen:
        names = [f"{sid} (the scan of training slide {renamed[sid]})" if sid in renamed else sid for sid in seen]
        log.warning("%d of the %d evaluated slides are training slides of this model (%s%s): their metrics are "
                    "in-sample and overstate its accuracy on new slides (R² is inflated); evaluate on held-out "
                    "slides, or use 'weakstil evaluate --oof MODEL/cv/oof_predictions.csv'", len(seen), len(stil),
                    ", ".join(names[:5]), " ..." if len(seen) > 5 else "")
    elif not lists_ids:
        log.info("the model does not say which slides it was trained on: cannot tell whether any evaluated slide "
                 "is one")
    # said in the files people share too (the plots' titles, predictions.csv), not only in the log
    # every row, scored or not (a training slide without a bed here is still a training slide)
    pred["training_slide"] = pd.array([None if known is None else s in known for s in ids], dtype="boolean")
    write_predictions(pred, out_dir / "predictions.csv", threshold)
    title = f"evaluate, in-sample: {len(seen)} of {len(stil)} training slides" if seen else "evaluate"
    return write_metrics(pred[pred["stil_pred"].notna()].drop(columns=["tumorbed_source", "status", "training_slide"]), out_dir,
                         threshold=threshold, title=title, color_groups=cohort.group_column is not None, extra={
                             "mode": "model", "model": str(model_dir), "model_sha256": model_sha,
                             "model_id": ModelDir(model_dir).model_id(meta),  # as in score
                             "encoder": meta.get("encoder", {}).get("name"), "scoring": how, "n_models": len(models),
                             "cohort": str(Path(csv_path).resolve()), "features": str(features_dir.resolve()),
                             "tumorbeds": bed_record, "beds_unlike_training": unlike,
                             "beds_of_another_ink_rule": other_rule,
                             "n_training_slides": None if seen is None else len(seen),
                             "excluded": [{"slide_id": s, "reason": STATUS_NO_BED} for s in no_bed],
                             "percent_as_written": bool(percent_as_written)})


def _check_oof_labels(table: pd.DataFrame, pred: pd.DataFrame, oof_path: Path, csv_path: Path) -> None:
    """The labels the predictions were made against (``stil_true``) must be the cohort's: most of
    them different means another cohort, or fractions in the CSV (errors); a few, corrected labels (a warning)."""
    if "stil_true" not in pred.columns:
        return
    theirs = table["slide_id"].map(dict(zip(pred["slide_id"].astype(str), pd.to_numeric(pred["stil_true"],
                                                                                       errors="coerce"))))
    differ = table[~np.isclose(theirs.to_numpy(float), table["stil_true"].to_numpy(float), atol=0.01)]
    if differ.empty:
        return
    examples = ", ".join(f"{r.slide_id}: {theirs[i]:g} there, {r.stil_true:g} here"
                         for i, r in differ.head(3).iterrows())
    what = f"{len(differ)} of {len(table)} slides have other labels in the predictions file ({examples})"
    if 2 * len(differ) > len(table):
        refuse_fraction_labels(theirs.to_numpy(float), table, csv_path)
        raise WeakSTILError(f"{what}: the predictions were made for another cohort", path=oof_path,
                            fix="pass the oof_predictions.csv of a model trained on this cohort CSV")
    log.warning("%s: %s; evaluated against this cohort's labels", oof_path, what)


def _refuse_repeated_slides(pred: pd.DataFrame, values: pd.Series, wanted: set[str], oof_path: Path) -> None:
    """A cohort slide on two rows of other predictions or labels (two runs' files put together) is
    refused: one of them would be taken silently. Exact repeats are read once."""
    labels = pd.to_numeric(pred["stil_true"], errors="coerce") if "stil_true" in pred.columns else None
    rows: dict[str, list[int]] = {}
    for i, sid in enumerate(pred["slide_id"].astype(str)):
        if sid in wanted:
            rows.setdefault(sid, []).append(i)
    clash = [(sid, idx) for sid, idx in rows.items() if len(idx) > 1 and (
        values.iloc[idx].nunique(dropna=False) > 1 or (labels is not None and labels.iloc[idx].nunique(dropna=False) > 1))]
    if clash:
        said = "; ".join(f"{sid} on rows {', '.join(str(i + 2) for i in idx)}" for sid, idx in clash[:5])
        raise WeakSTILError(f"{len(clash)} slide{'s have' if len(clash) > 1 else ' has'} two or more rows that differ: "
                            f"{said}{' ...' if len(clash) > 5 else ''}", path=oof_path,
                            fix="keep one row per slide (the predictions of one run, e.g. MODEL/cv/oof_predictions.csv)")


def evaluate_oof(csv_path: str | Path, oof_path: str | Path, out_dir: str | Path, *,
                 group_column: str | None = None, threshold: float | None = None,
                 percent_as_written: bool = False) -> dict:
    """Metrics of saved predictions (e.g. ``MODEL/cv/oof_predictions.csv``) against the cohort's
    labels. A prediction outside 0-100 (not an sTIL%) is refused, naming its row. The file's
    SHA-256 is recorded (a report of a model checks that these are its predictions), and when it
    lies in a model folder, that model and its sTIL-high threshold (the default ``threshold``)."""
    from weakstil import evaluation_results as er, insample
    from weakstil.cohort import id_mismatch_fix, read_cohort
    from weakstil.cohort_csv import csv_separator
    from weakstil.modeldir import ModelDir
    from weakstil.runtime import sha256_file
    from weakstil.score import STATUS_OK

    # only the labels are needed: the slides are not scored, so their files need not be here, nor a path column
    cohort = read_cohort(csv_path, group_column=group_column, check_files=False, truth=True, require_paths=False)
    oof_path = Path(oof_path)
    if not oof_path.exists():
        raise WeakSTILError("predictions file not found", path=oof_path, fix="pass MODEL/cv/oof_predictions.csv")
    owner = oof_model(oof_path)
    asked = threshold  # None: the model's (or a score run's own), else 30
    if threshold is None:
        threshold = float(owner[1].get("threshold", STIL_THRESHOLD)) if owner else STIL_THRESHOLD
    try:
        pred = er.decimal_commas(csv_cells.read_csv(oof_path, dtype={"slide_id": str}, sep=csv_separator(oof_path)),
                                 oof_path)  # a European spreadsheet's ';' CSV, as the cohort reader reads it
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise WeakSTILError(f"cannot read predictions ({str(exc).splitlines()[0]})", path=oof_path,
                            fix="pass MODEL/cv/oof_predictions.csv or a 'weakstil score' results.csv") from None
    er.refuse_other_separator(pred, oof_path)
    wanted = set(cohort.slide_ids)
    unlabelled = er.unlabelled(pred, wanted, oof_path)
    scored = er.is_score_results(pred)  # a 'weakstil score' results.csv: its interval and qc flags judged too
    not_scored: dict[str, str] = {}
    if scored:
        pred, not_scored = er.predictions_from_results(pred, wanted, oof_path, cohort.table)
        pred, threshold = er.judged_at(pred, asked, threshold, oof_path)  # the run's own threshold, or --threshold
    for col in ("slide_id", "stil_pred"):
        if col not in pred.columns:
            raise WeakSTILError(f"predictions have no {col} column", path=oof_path,
                                fix="pass MODEL/cv/oof_predictions.csv or a 'weakstil score' results.csv")
    values = pd.to_numeric(pred["stil_pred"], errors="coerce")
    outside = [(i, v) for i, v in enumerate(values) if np.isfinite(v) and not 0.0 <= v <= 100.0]
    if outside:
        rows = ", ".join(f"row {i + 2} ({pred['slide_id'].iloc[i]}): {v:g}" for i, v in outside[:5])
        raise WeakSTILError(f"{len(outside)} prediction{'s are' if len(outside) > 1 else ' is'} outside 0-100, so "
                            f"not sTIL%: {rows}"
                            f"{' ...' if len(outside) > 5 else ''}", path=oof_path,
                            fix="pass sTIL% predictions (0-100), e.g. MODEL/cv/oof_predictions.csv")
    not_numbers = [(i, sid, raw) for i, (sid, raw, v) in enumerate(zip(pred["slide_id"].astype(str), pred["stil_pred"],
                                                                     values)) if sid in wanted and not np.isfinite(v)]
    if not_numbers:
        rows = ", ".join(f"row {i + 2} ({sid}): " + ("empty" if pd.isna(raw) else repr(str(raw)))
                         for i, sid, raw in not_numbers[:5])
        raise WeakSTILError(f"{len(not_numbers)} prediction{'s are' if len(not_numbers) > 1 else ' is'} not a number: "
                            f"{rows}{' ...' if len(not_numbers) > 5 else ''}", path=oof_path,
                            fix="pass numeric sTIL% predictions (0-100), e.g. MODEL/cv/oof_predictions.csv")
    _refuse_repeated_slides(pred, values, wanted, oof_path)
    have = dict(zip(pred["slide_id"].astype(str), values))
    # slides the predictions' model left out of training (a tumour bed without a tile): no prediction,
    # excluded as a model evaluation excludes them (status 'no tumour bed'), not a failure of the file
    beds = ((owner[1].get("training") or {}).get("tumorbeds") or {}) if owner else {}
    left_out = ({str(s) for s in beds.get("left_out_no_tile_in_bed") or []} - set(have)) | set(not_scored)
    missing = [s for s in cohort.slide_ids if (s not in have or not np.isfinite(have[s])) and s not in left_out]
    if missing:
        raise WeakSTILError(f"{len(missing)} cohort slides have no prediction: {', '.join(missing[:10])}"
                            f"{' ...' if len(missing) > 10 else ''}", path=oof_path,
                            fix=id_mismatch_fix(missing, unlabelled) or "use predictions made for this cohort")
    table = pd.DataFrame({"slide_id": cohort.slide_ids, "stil_true": cohort.labels,
                          "stil_pred": [have.get(s, np.nan) for s in cohort.slide_ids], "group": cohort.groups})
    for col in ("stil_lower", "stil_upper", "qc"):
        if col in pred.columns:
            table[col] = table["slide_id"].map(dict(zip(pred["slide_id"].astype(str), pred[col])))
    excluded = [s for s in cohort.slide_ids if s in left_out]
    reason = {s: not_scored.get(s) or "no tumour bed" for s in excluded}
    if excluded:
        table["status"] = [reason[s] if s in left_out else STATUS_OK for s in cohort.slide_ids]
        log.info("%d slide(s) %s have no prediction: %s", len(excluded),
                 "the run did not score" if scored else "the model left out of training (no tile in the tumour bed)",
                 ", ".join(excluded[:5]) + (" ..." if len(excluded) > 5 else ""))
    predicted = table["stil_pred"].notna()  # all but the excluded slides
    if not predicted.any():  # nothing to measure: every slide excluded
        why = "; ".join(f"{s}: {reason[s]}" for s in excluded[:3]) + (" ..." if len(excluded) > 3 else "")
        raise WeakSTILError(f"none of the {len(cohort.slide_ids)} cohort slides has a prediction ({why})", path=oof_path,
                            fix="score them again once the causes in its 'error' column are fixed" if scored else
                            "use predictions made for this cohort")
    _check_oof_labels(table[predicted].reset_index(drop=True), pred, oof_path, cohort.csv_path)
    if owner is None and not scored and not percent_as_written:  # a model's own cv/oof_predictions.csv and a score
        # run's results.csv are WeakSTIL's sTIL% (100 x sigmoid; train refuses fraction labels): all under 1 % is a
        # model's answer; another tool's, said to be percent (--percent-as-written), likewise
        refuse_fraction_predictions(table[predicted].reset_index(drop=True), oof_path)
    # predictions without the labels they were made against (a score run's results.csv): fractions in the
    # CSV were judged as they stood (hunt 38f: R² -28278, MAE 15.3, exit 0 with only the CSV's warning)
    if not percent_as_written:
        refuse_fraction_labels_of_model(table[predicted].reset_index(drop=True), cohort.csv_path)
    folds = None
    if "fold" in pred.columns:
        table["fold"] = table["slide_id"].map(dict(zip(pred["slide_id"].astype(str), pred["fold"])))
        try:  # whole numbers, also beside an excluded slide's empty fold
            table["fold"] = table["fold"].astype("Int64")
        except (TypeError, ValueError):
            pass
        folds = int(table["fold"].nunique())
    out_dir = Path(out_dir)
    seen = insample.training_slides_of_run(oof_path, table, predicted) if scored else None  # in-sample, as --model says
    write_predictions(table, out_dir / "predictions.csv", threshold)
    judged = er.interval_and_flag_metrics(table[predicted], pred.attrs.get("interval_level")) if scored else {}
    title = f"weakstil score results, in-sample: {seen} of {int(predicted.sum())} training slides" if seen else \
        "weakstil score results" if scored else "out-of-fold"
    return write_metrics(table[predicted].drop(columns=["status", "stil_lower", "stil_upper", "qc", "training_slide"],
                                               errors="ignore"), out_dir, threshold=threshold, title=title,
                         color_groups=cohort.group_column is not None, extra={
                             **judged, "mode": "results" if scored else "oof", "predictions": str(oof_path.resolve()),
                             "n_training_slides": seen,
                             "folds": folds, "predictions_sha256": sha256_file(oof_path),
                             "model": str(owner[0].resolve()) if owner else None,
                             "model_sha256": owner[1].get("weights_sha256") if owner else None,
                             "model_id": ModelDir(owner[0]).model_id(owner[1]) if owner else pred.attrs.get("model_id"),
                             "cohort": str(Path(csv_path).resolve()),
                             "excluded": [{"slide_id": s, "reason": reason[s]} for s in excluded], "unlabelled": unlabelled,
                             "percent_as_written": bool(percent_as_written)})


def oof_model(oof_path: Path) -> tuple[Path, dict] | None:
    """(the model folder, its model.json) of predictions saved as ``MODEL/cv/oof_predictions.csv``;
    ``None`` for a file elsewhere (or a folder without a readable model.json)."""
    from weakstil.modeldir import ModelDir

    model = ModelDir(oof_path.resolve().parent.parent)
    if oof_path.resolve() != model.oof_path.resolve() or not model.meta_path.is_file():
        return None
    try:
        return model.root, model.read_meta()
    except WeakSTILError:
        return None
