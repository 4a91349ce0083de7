"""Cohort report: what a trained model's cross-validation says, for people.

``weakstil report --model MODEL --out DIR`` reads a model directory written by ``weakstil train``
(``model.json``; ``cv/oof_predictions.csv``, ``cv/metrics.json``, ``cv/scatter.png``,
``cv/roc.png``; ``cv/tiles/<slide_id>.h5`` out-of-fold tile scores) and the cohort's slides, and
writes into ``DIR``:

* ``report.html`` and ``report.md`` — the same content: headline metrics (R², Pearson, MAE, AUC,
  sensitivity and specificity at the model's sTIL-high threshold), the predicted-vs-true scatter,
  the ROC, one table row per slide (id, group, fold, true and predicted sTIL%, thumbnail,
  heatmap of its out-of-fold tile scores), the settings and the software versions;
* ``scatter.png``, ``roc.png``, ``overview.png`` (scatter, ROC and the first heatmaps in one
  picture) and ``slides/<slide_id>_thumb.png`` / ``slides/<slide_id>_heatmap.png``.

Images sit beside the pages and are linked relatively, so the folder can be copied or zipped as a
whole. Every file is written atomically. The heatmaps come from out-of-fold tile scores: each
slide is scored by the fold model that never saw its label, so they show no training optimism.
A model trained without cross-validation is reported from a ``weakstil evaluate --model`` folder
instead (its metrics, slides and ``tiles/`` scores); the page layout is :mod:`weakstil.report_render`,
the thumbnails' overlays are chosen by :mod:`weakstil.report_overlays`, the pictures drawn by
:mod:`weakstil.report_images`. A ``weakstil score`` run is reported by :mod:`weakstil.report_scores`
(``weakstil report --scores``) with the same layout.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pandas as pd

from weakstil import csv_cells
from weakstil.atomic import atomic_path
from weakstil.errors import WeakSTILError
from weakstil.evaluation_results import oof_folds
from weakstil.metrics import fmt
from weakstil.modeldir import ModelDir
from weakstil.outputdir import MARKER, commands_of, is_complete
from weakstil.report_images import write_heatmap, write_overview, write_thumbnail
from weakstil.report_overlays import Overlays
from weakstil.report_render import ReportContent, SlideRow, render_html, render_markdown
from weakstil.runtime import RECORD_KEYS
from weakstil.settings import STIL_THRESHOLD

log = logging.getLogger(__name__)

#: Packages whose versions the report lists (when installed).
VERSION_PACKAGES = ("weakstil", "torch", "timm", "numpy", "openslide-python", "snakemake",
                    "snakemake-executor-plugin-slurm")


def _read_json(path: Path, what: str, fix: str) -> dict:
    if not path.is_file():
        raise WeakSTILError(f"{what} not found", path=path, fix=fix)
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WeakSTILError(f"{what} is not valid JSON ({exc})", path=path, fix=fix) from None


def _read_table(path: Path, fix: str, **kw):
    """A CSV of the model or evaluation folder; a damaged one (binary bytes, cut short) is one line naming it:
    MODEL/cv/oof_predictions.csv or qc/training_slides.csv overwritten with binary bytes was "unexpected
    UnicodeDecodeError ... a bug in weakstil" (outside corruption sweep, hunt 37n)."""
    import pandas as pd

    try:
        return csv_cells.read_csv(path, **kw)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise WeakSTILError(f"cannot read {path.name}: not a readable CSV ({str(exc).splitlines()[0][:120]})",
                            path=path, fix=fix) from None


def flatten(mapping: dict, prefix: str = "") -> list[tuple[str, str]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", "1")]``, in key order; lists are shown inline."""
    rows: list[tuple[str, str]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(flatten(value, f"{name}."))
        else:
            rows.append((name, value if isinstance(value, str) else json.dumps(value, default=str)))
    return rows


def installed_versions(*extra: str) -> dict[str, str]:
    """Versions of Python and the packages that shape the results (and of ``extra``), at report time."""
    from weakstil.runtime import installed_versions as versions_of

    return versions_of(tuple(dict.fromkeys(VERSION_PACKAGES + extra)))


def _cohort_slides(cohort_csv: Path | None) -> dict[str, Path]:
    """Slide id -> slide file, from the cohort CSV (empty when there is none)."""
    if cohort_csv is None:
        return {}
    from weakstil.cohort import read_cohort

    cohort = read_cohort(cohort_csv, check_files=False, require_labels=False)  # it locates slides: no sTIL% needed
    return {sid: Path(p) for sid, p in zip(cohort.table["slide_id"], cohort.table["path"])}


def _recorded_fingerprint(path: Path) -> str | None:
    """The slide fingerprint a per-slide file records (``None``: none, or no readable file)."""
    from weakstil.files import read_any
    from weakstil.fingerprint import recorded

    try:
        return recorded(read_any(path, skip=("coords", "tissue_fraction", "tissue_mask")).attrs)
    except (WeakSTILError, OSError):
        return None


def _copy(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _slide_rows(table: pd.DataFrame, tile_scores_of, predicted: str, out_dir: Path, slides: dict[str, Path],
                overlays: Overlays | None, slide_mpp: float | None) -> list[SlideRow]:
    """One row per slide of ``table`` (slide_id, stil_true, stil_pred; group, fold), with its
    thumbnail (from ``overlays``) and the heatmap of its tile scores (``tile_scores_of(slide_id)``,
    a tile-scores file); ``predicted`` names the predictions in the heatmaps' titles."""
    from weakstil.fingerprint import slide_fingerprint

    rows = []
    for rec in table.to_dict("records"):
        sid = str(rec["slide_id"])
        slide_path = slides.get(sid)
        thumb_rel = heat_rel = None
        tile_scores = tile_scores_of(sid)
        trained_on = _recorded_fingerprint(tile_scores)
        overlay = overlays.find(sid, slide_path, trained_on) if overlays is not None else None
        if overlay is not None:
            thumb_rel = f"slides/{sid}_thumb.png"
            write_thumbnail(overlay, out_dir / thumb_rel)
        if slide_path is not None and slide_path.is_file() and trained_on is not None \
                and slide_fingerprint(slide_path) not in (None, trained_on):
            log.warning("%s: no heatmap (%s is not the slide file the model was trained on: its content fingerprint "
                        "differs)", sid, slide_path)
        elif slide_path is not None and slide_path.is_file() and tile_scores.is_file():
            heat_rel = f"slides/{sid}_heatmap.png"
            title = f"{sid}: true {rec['stil_true']:.1f}%, {predicted} {rec['stil_pred']:.1f}%"
            try:
                write_heatmap(slide_path, tile_scores, out_dir / heat_rel, title, slide_mpp)
            except WeakSTILError as exc:  # the slide moved or broke since training: report the rest
                log.warning("%s: no heatmap (%s)", sid, exc.one_line())
                heat_rel = None
        else:  # say which is missing, and where: the slide (moved?) or its tile scores (deleted?)
            why = ("not in the cohort CSV" if slide_path is None else f"slide file {slide_path} not found"
                   if not slide_path.is_file() else f"{predicted} tile scores {tile_scores} not found")
            if slides:  # without a cohort CSV at all, said once by the caller
                log.warning("%s: no heatmap (%s)", sid, why)
        rows.append(SlideRow(sid, str(rec.get("group", "")), rec.get("fold", ""), float(rec["stil_true"]),
                             float(rec["stil_pred"]), thumb_rel, heat_rel))
    if overlays is not None:
        overlays.warn()
    return rows


def _evaluated_labels(table: pd.DataFrame, folder: Path, cohort: str | None) -> tuple[pd.DataFrame, str]:
    """The out-of-fold slide table with the labels an ``evaluate --oof`` folder's metrics and scatter plot were
    computed against (its predictions.csv), said in one warning where they differ from training's: a label
    corrected in the cohort CSV since training (or a second reader's) gave metrics on it (MAE 28.7 with a
    slide relabelled 15.1 -> 80) beside a table that still showed 15.1 and its error, with no word (hunt 37g).
    Also the note for the metrics' source ('' when the labels agree)."""
    path = folder / "predictions.csv"
    if not path.is_file():
        return table, ""
    theirs = _read_table(path, "run 'weakstil evaluate --oof' again into that folder", dtype={"slide_id": str},
                         keep_default_na=False)
    labels = dict(zip(theirs["slide_id"], pd.to_numeric(theirs.get("stil_true"), errors="coerce"))) \
        if "stil_true" in theirs else {}
    table, differ = table.copy(), []
    for i, (sid, ours) in enumerate(zip(table["slide_id"], table["stil_true"])):
        if pd.notna(label := labels.get(sid)) and abs(float(label) - float(ours)) > 1e-3:
            differ.append(f"{sid} {float(ours):g} -> {float(label):g}")
            table.loc[table.index[i], "stil_true"] = float(label)
    if not differ:
        return table, ""
    said = (f"evaluated against other labels than the model was trained on ({cohort or 'another cohort CSV'}), for "
            f"{len(differ)} of {len(table)} slides: {', '.join(differ)}")
    log.warning("%s: %s; the slide table shows the evaluation's, as its metrics and scatter plot do", folder, said)
    return table, f"; {said}"


def _add_confidence(rows: list[SlideRow], folder: ModelDir, threshold: float | None = None,
                    trained_at: float | None = None) -> float | None:
    """Each slide's out-of-fold interval and qc flags from ``MODEL/qc/training_slides.csv`` (each end
    of the interval on the side of ``threshold`` its ``near_threshold`` is judged on). Train judged
    ``near_threshold`` at the model's threshold (``trained_at``); a report of an evaluation at another
    threshold judges it again there, as ``evaluate --oof results.csv`` does: the table flagged 29.0–46.7
    beside a headline at 50 and left 48.3–95.6 unflagged (hunt 38g). Returns the share of training slides
    flagged once judged again (``None`` when not): the headline's share was train's, at ``trained_at``."""
    from weakstil.confidence import interval_columns
    from weakstil.evaluation_results import rejudge_near_threshold
    from weakstil.metrics import interval_ends_text

    if not folder.qc_slides_path.is_file():
        return None
    table = _read_table(folder.qc_slides_path, "copy the whole model folder again, or train the model again",
                        dtype={"slide_id": str, "qc": str}, keep_default_na=False)
    low, high = interval_columns()
    share = None
    if threshold is not None and trained_at is not None and {low, high, "qc"} <= set(table.columns):
        judged = rejudge_near_threshold(pd.DataFrame({
            "qc": table["qc"], "stil_lower": pd.to_numeric(table[low], errors="coerce"),
            "stil_upper": pd.to_numeric(table[high], errors="coerce"), "threshold": float(trained_at)}),
            float(threshold), folder.qc_slides_path)
        table = table.assign(qc=judged["qc"].to_numpy())
        share = float(table["qc"].astype(bool).mean()) if len(table) and threshold != trained_at else None
    by_id = {str(r["slide_id"]): r for r in table.to_dict("records")}
    for row in rows:
        rec = by_id.get(row.slide_id)
        if rec is None:
            continue
        lo, hi = pd.to_numeric(rec.get(low, ""), errors="coerce"), pd.to_numeric(rec.get(high, ""), errors="coerce")
        row.interval = interval_ends_text(float(lo), float(hi), threshold) if pd.notna(lo) and pd.notna(hi) else ""
        row.qc = str(rec.get("qc", "")).replace(";", ", ")
    return share


def confidence_headline(meta: dict, flagged: float | None = None, at: float | None = None) -> dict[str, float | str | None]:
    """The interval's out-of-fold coverage and width, and the training slides' flag rate, each labelled
    with how many training slides it is over (beside an evaluation's few slides it was told apart by
    nothing) and the shares as percents, as ``evaluate`` logs them (0.906 stood under "90 %"). ``flagged``: the
    share with near_threshold judged at the report's threshold ``at`` (train's, at its own, said 50 % beside a
    slide table at another threshold that flagged none; helper h39d)."""
    qc = meta.get("qc") or {}
    conf = qc.get("confidence") or {}
    if not qc:
        return {}
    level = f"{100 * float(conf.get('level', 0.9)):g} %"
    from weakstil.confidence import MIN_SLIDES

    n = int(conf.get("n") or 0)
    usable = conf.get("q") is not None and n >= MIN_SLIDES  # else no interval at all
    slides = f"{n} training slide{'s' if n != 1 else ''}"
    coverage = conf.get("coverage_loo") if usable else None
    flagged = qc.get("training_flagged") if flagged is None else flagged
    judged = "" if at is None else f" (near_threshold judged at {at:g} %)"
    return {f"{level} interval coverage, out of fold (leave-one-out, {slides})": _percent(coverage),
            f"median {level} interval width (sTIL points, {slides})": conf.get("width_median") if usable else None,
            f"share of training slides with a qc flag{judged}": _percent(flagged)}


def _percent(share: object) -> str | None:
    """A share as a percent with one decimal (``None``, NaN: ``None``, shown as n/a)."""
    try:
        value = float(share)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f"{100 * value:.1f} %" if value == value else None


def headline(metrics: dict, threshold: float, of: str | None = None) -> dict[str, float | str | None]:
    """The numbers a reader looks at first; ``of`` says which slides ``n`` counts (an evaluation's few
    slides stood as a bare "n" beside the training slides' interval coverage)."""
    at = next((c for c in metrics.get("classification", []) if float(c["threshold"]) == float(threshold)), {})
    return {"n" if of is None else f"n ({of} slides)": metrics.get("n"), "R²": metrics.get("r2"), "Pearson r": metrics.get("pearson_r"),
            "Spearman ρ": metrics.get("spearman_rho"), "MAE (sTIL points)": metrics.get("mae"),
            "RMSE (sTIL points)": metrics.get("rmse"), f"AUC sTIL-high ≥{threshold:g}%": at.get("auc"),
            f"sensitivity ≥{threshold:g}%": at.get("sensitivity"),
            f"specificity ≥{threshold:g}%": at.get("specificity"),
            # by band of the label: a skewed cohort's one MAE is mostly its sTIL-low slides'
            **{f"MAE (bias), true sTIL {b['band']}%, {b['n']} slide{'s' if b['n'] != 1 else ''}": f"{b['mae']:.2f} ({b['bias']:+.2f})"
               for b in metrics.get("error_by_band") or [] if b.get("n")}}


def model_settings(meta: dict) -> list[tuple[str, str]]:
    """What the model was trained with, from its model.json: the encoder (its base architecture,
    weights), the features' stain normalisation, the tiling with its tissue detection, the training
    configuration, its folds and where the tumour beds came from."""
    enc = meta.get("encoder", {})
    card = enc.get("card") or {}
    training = dict(meta.get("training", {}))
    config = training.pop("config", {})
    tiling = meta.get("tiling", {})
    key = tiling.get("key") if isinstance(tiling.get("key"), dict) else {}
    tiling = {**key, **{k: v for k, v in tiling.items() if k != "key"}}  # the key holds tissue detection too
    folds = (training.get("cross_validation") or {}).get("folds")
    beds = {k: v for k, v in (training.get("tumorbeds") or {}).items() if v not in (None, "", {}, [])}
    rows = [("encoder", str(enc.get("name")))]
    rows += [("encoder architecture", str(card.get("base") or card.get("model")))] if card else []
    rows += [("encoder weights sha256", str(enc.get("weights_sha256"))),
             ("model weights sha256", str(meta.get("weights_sha256"))), ("seed", str(meta.get("seed"))),
             # the model's: beside a run or evaluation at another one, "sTIL-high threshold % 30.0" read as the report's
             ("sTIL-high threshold % in training", str(meta.get("threshold")))]
    rows += flatten(meta.get("features") or {}, "features.") + flatten(tiling, "tiling.") + flatten(config, "training.")
    rows += [(f"training.{k}", v) for k, v in flatten({k: v for k, v in training.items()
                                                        if k in ("cohort", "features", "n_slides", "n_tiles",
                                                                 "labels", "group_column",
                                                                 "final_model", "train_seconds")})]
    rows += [("training.cross_validation.folds", str(folds))] if folds else []
    return rows + flatten(beds, "training.tumorbeds.")


def build_report(model_dir: str | Path, out_dir: str | Path, *, cohort: str | Path | None = None,
                 tiles_dir: str | Path | None = None, evaluation_dir: str | Path | None = None,
                 settings: dict | None = None, slide_mpp: float | None = None,
                 title: str = "WeakSTIL cohort report") -> dict[str, Path]:
    """Write the report of ``model_dir``'s cross-validation into ``out_dir``; returns its files.

    ``cohort`` (default: the CSV recorded in model.json) locates the slides for the heatmaps;
    ``tiles_dir`` holds ``weakstil tile`` overlays used as thumbnails (those of the model's slides
    and tiling); ``evaluation_dir`` is a finished ``weakstil evaluate`` folder of this model whose
    metrics and plots are shown (default ``MODEL/cv``), labelled by how its predictions were made
    (:func:`describe_evaluation`); ``settings`` (e.g. the workflow configuration) is listed with the
    model's own settings.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    fix_model = "pass a directory written by 'weakstil train' with --folds 2 or more"
    folder = ModelDir(model_dir)
    meta = folder.read_meta(fix_model)
    from weakstil.qc.scoring import interval_note

    if (note := interval_note(folder, meta)) is not None:  # said once (it was silent: the report looked whole)
        log.warning("%s", note)
    cv_dir = folder.cv_dir
    oof_path = folder.oof_path
    own_cv = evaluation_dir is None or Path(evaluation_dir).resolve() == cv_dir.resolve()
    if not oof_path.is_file() and own_cv:
        raise WeakSTILError("the model has no out-of-fold predictions (trained without cross-validation?)",
                            path=oof_path, fix="train with --folds 2 or more, or pass --evaluation with the --out of "
                            "'weakstil evaluate --model' of this model on held-out slides")
    has_cv = oof_path.is_file()  # (a model written before folds were recorded has them, without the number)
    cv_folds = ((meta.get("training", {}).get("cross_validation") or {}).get("folds") or oof_folds(oof_path)) \
        if has_cv else None  # a model from before the number was recorded: its out-of-fold predictions' folds
    metrics_dir = cv_dir if own_cv else Path(evaluation_dir)
    if not own_cv and not is_complete(metrics_dir, "evaluate"):
        other = commands_of(metrics_dir)
        if other:  # another command's finished output (e.g. a 'weakstil score' folder): say so
            raise WeakSTILError(f"is an output of 'weakstil {other[0]}', not of 'weakstil evaluate'", path=metrics_dir,
                                fix="pass the --out folder of 'weakstil evaluate'")
        raise WeakSTILError("is not a finished 'weakstil evaluate' output (no completion marker "
                            f"{MARKER}: an interrupted run, or another folder)", path=metrics_dir,
                            fix="run 'weakstil evaluate' again into a new --out and pass that folder")
    # the model's own cv/metrics.json damaged: its folder is to copy again (hunt 44c), or its out-of-fold predictions
    # evaluated again and passed, as the fix said before (not 'train the model again': hours; review h44i)
    metrics = _read_json(metrics_dir / "metrics.json", "metrics.json",
                         f"copy the whole model folder again, or run 'weakstil evaluate COHORT_CSV --oof {oof_path} "
                         "--out DIR' and pass --evaluation DIR" if own_cv else
                         "pass the --out folder of 'weakstil evaluate --oof MODEL/cv/oof_predictions.csv'")
    # the cohort slides train left out (no tile in their bed) are in no metric and no row: named here
    untrained = ((meta.get("training") or {}).get("tumorbeds") or {}).get("left_out_no_tile_in_bed") or []
    described = f"{cv_folds}-fold cross-validation, out-of-fold predictions (each slide scored by a model that " \
                "never saw it" + _left_out({"excluded": [{"slide_id": s, "reason": "no tumour bed, left out of "
                                                         "training"} for s in untrained]}) + ")"
    if not own_cv:
        described = describe_evaluation(metrics, meta, metrics_dir, cv_folds, oof_path)
    threshold = float(metrics.get("threshold", meta.get("threshold", STIL_THRESHOLD)))
    if has_cv:  # the slide table and heatmaps: out-of-fold, whatever the metrics are
        table = _read_table(oof_path, "copy the whole model folder again, or train the model again",
                            dtype={"slide_id": str, "group": str}, keep_default_na=False)
        if not own_cv and (metrics.get("mode") or ("oof" if "predictions" in metrics else None)) == "oof":
            table, relabelled = _evaluated_labels(table, metrics_dir, metrics.get("cohort"))
            described += relabelled  # (the page says it too, not only the log)
        tile_scores_of, predicted, slides_source = folder.cv_tile_scores, "out-of-fold", \
            None if own_cv else f"the model's {cv_folds}-fold cross-validation, out-of-fold"
        recorded = meta.get("training", {}).get("cohort")
    else:  # no cross-validation: the slide table is the evaluation's own (its slides, its tile scores)
        table = _evaluated_slides(metrics, metrics_dir)
        from weakstil.files import slide_file
        from weakstil.modeldir import TILES_DIR

        tile_scores_of, predicted, slides_source = (lambda sid: slide_file(metrics_dir / TILES_DIR, sid)), \
            "predicted", None
        recorded = metrics.get("cohort")
    if cohort is None:
        cohort = Path(recorded) if recorded and Path(recorded).is_file() else None
        if cohort is None:  # said once, not as many 'no heatmap' lines as slides without their cause
            log.warning("%s: %s, so no slide file is known and no slide gets a heatmap; pass --cohort with the "
                        "cohort CSV (slide_id,path)", recorded or folder.meta_path,
                        "the cohort CSV the model records is not found" if recorded else "no cohort CSV is recorded")
    slides = _cohort_slides(Path(cohort) if cohort is not None else None)

    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for name in ("scatter.png", "roc.png"):
        source = metrics_dir / name
        if not source.is_file():
            raise WeakSTILError(f"{name} not found", path=source, fix="rerun 'weakstil evaluate' or 'weakstil train'")
        _copy(source, out_dir / name)
        files[name] = out_dir / name
    rows = _slide_rows(table, tile_scores_of, predicted, out_dir, slides,
                       Overlays(Path(tiles_dir), meta) if tiles_dir else None, slide_mpp)
    # the intervals and flags of the out-of-fold slides (an evaluation has none per slide)
    rejudged = _add_confidence(rows, folder, threshold, float(meta.get("threshold", STIL_THRESHOLD))) if has_cv else None
    files["overview.png"] = write_overview(out_dir, rows, out_dir / "overview.png")
    # the UTC offset, not the zone's abbreviation: CST was China's +0800 or Chicago's -0600
    content = ReportContent(title=title, created=time.strftime("%Y-%m-%d %H:%M:%S %z"), model_dir=str(model_dir),
                            metrics_source=described, slides_source=slides_source,
                            headline={**headline(metrics, threshold, "out-of-fold" if own_cv else "evaluation"),
                                      **(confidence_headline(meta, rejudged, None if rejudged is None else threshold)
                                         if has_cv else {})},
                            threshold=threshold, rows=rows,
                            settings=flatten({k: v for k, v in (settings or {}).items() if k not in RECORD_KEYS}),  # (versions: below)
                            model_settings=model_settings(meta),
                            trained_versions=dict(meta.get("versions", {})), report_versions=installed_versions(),
                            cv_folds=cv_folds, has_cv=has_cv)
    for name, text in (("report.html", render_html(content)), ("report.md", render_markdown(content))):
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        files[name] = out_dir / name
    log.info("report: %d %s slides; metrics on %s slides: R² %s, MAE %s", len(rows),
             "cross-validation" if has_cv else "evaluated", metrics.get("n"), fmt(metrics.get("r2")),
             fmt(metrics.get("mae")))
    return files


def _evaluated_slides(metrics: dict, folder: Path) -> pd.DataFrame:
    """The slides an evaluation scored (those left out without a tumour bed are not in its metrics)."""
    if metrics.get("mode") != "model":
        raise WeakSTILError("is not an evaluation of this model's own scoring ('weakstil evaluate --model'), and "
                            "the model has no cross-validation to show its slides", path=folder,
                            fix="pass the --out of 'weakstil evaluate --model MODEL' on held-out slides")
    path = folder / "predictions.csv"
    if not path.is_file():
        raise WeakSTILError("predictions.csv not found", path=path, fix="rerun 'weakstil evaluate' into a new --out")
    table = _read_table(path, "rerun 'weakstil evaluate' into a new --out",
                        dtype={"slide_id": str, "group": str}, keep_default_na=False)
    table["stil_pred"] = pd.to_numeric(table["stil_pred"], errors="coerce")
    return table[table["stil_pred"].notna()].reset_index(drop=True)


def describe_evaluation(metrics: dict, meta: dict, folder: Path, cv_folds: int | None, own_oof: Path) -> str:
    """How an evaluation folder's predictions were made, as its metrics.json says: out-of-fold
    (``evaluate --oof``) or this model scoring slides (``evaluate --model``, not out of fold:
    a slide it was trained on is in-sample). An evaluation of another model is refused."""
    mode = metrics.get("mode") or ("oof" if "predictions" in metrics else "model" if "model" in metrics else None)
    n = metrics.get("n")
    theirs, ours = metrics.get("model_sha256"), meta.get("weights_sha256")
    if mode == "results":
        raise WeakSTILError("is an evaluation of a 'weakstil score' results.csv, not of this model's cross-validation "
                            "or its own scoring of a cohort", path=folder,
                            fix="pass the --out of 'weakstil evaluate --model MODEL --features FEATURES' or of "
                            "'evaluate --oof MODEL/cv/oof_predictions.csv'")
    if mode == "oof":
        _check_own_predictions(metrics, folder, own_oof, theirs, ours)
        folds = metrics.get("folds") or cv_folds
        return (f"{folds}-fold cross-validation, out-of-fold predictions of {n} slides (each slide scored by a model "
                f"that never saw it; {metrics.get('predictions', 'saved predictions')}{_left_out(metrics)})")
    if mode != "model":
        raise WeakSTILError("metrics.json does not say how its predictions were made", path=folder / "metrics.json",
                            fix="pass an --evaluation folder written by 'weakstil evaluate'")
    if theirs and ours and theirs != ours:
        raise WeakSTILError(f"is an evaluation of another model ({metrics.get('model')}, weights sha256 "
                            f"{str(theirs)[:12]}…, not {str(ours)[:12]}…)", path=folder,
                            fix="pass an evaluation of this --model, or that evaluation's own model")
    who = {"final": "the final model", "ensemble": "the ensemble of its cross-validation fold models"}.get(
        metrics.get("scoring"), "the model")
    text = f"evaluation of {who} on {n} slides of {metrics.get('cohort') or 'a cohort'} (not out-of-fold"
    seen, whole = metrics.get("n_training_slides"), metrics.get("beds_unlike_training")
    text += f"; {seen} of them training slides of this model, so their metrics are in-sample" if seen else ""
    text += (f"; {whole} of them scored over the whole tissue, though the model was trained on tumour beds: not what "
             "it measures" if whole else "")
    return text + _left_out(metrics) + ")"


def _left_out(metrics: dict) -> str:
    """``"; 1 more slide(s) left out: S3 (no tumour bed)"``: the cohort slides an evaluation has no
    prediction for, each named with its reason (they are in no metric and no table row)."""
    left_out = [e for e in metrics.get("excluded") or [] if isinstance(e, dict)]
    if not left_out:
        return ""
    named = ", ".join(f"{e.get('slide_id')} ({e.get('reason') or 'no prediction'})" for e in left_out)
    return f"; {len(left_out)} more slide(s) left out: {named}"


def _check_own_predictions(metrics: dict, folder: Path, own_oof: Path, theirs: str | None, ours: str | None) -> None:
    """Refuse an ``evaluate --oof`` folder of another model's predictions: the model it records has
    other weights, or its predictions file (SHA-256 recorded, else the file itself) is not this
    model's ``cv/oof_predictions.csv``."""
    from weakstil.runtime import sha256_file

    recorded = metrics.get("predictions_sha256")
    if not recorded and metrics.get("predictions") and Path(metrics["predictions"]).is_file():  # an older evaluation
        recorded = sha256_file(Path(metrics["predictions"]))
    mine = sha256_file(own_oof) if own_oof.is_file() else None
    if (theirs and ours and theirs != ours) or (recorded and mine and recorded != mine):
        raise WeakSTILError("is an evaluation of another model's out-of-fold predictions "
                            f"({metrics.get('model') or metrics.get('predictions')})", path=folder,
                            fix="pass the --out of 'weakstil evaluate --oof MODEL/cv/oof_predictions.csv' of this --model")
