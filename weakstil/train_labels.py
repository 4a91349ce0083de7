"""What ``weakstil train`` says about its labels and folds: the labels' spread in ``model.json``
(``training.labels``: what the model was trained on), the cross-validation's error by band of
the true sTIL% (the log, ``cv/metrics.json``'s ``error_by_band``), a fold that trains on under
half the slides (one group holding most of them), and slides trained on over the whole tissue.

A cohort like TCGA-BRCA's (342 pathologist scores: median 12.5 %, 9 % of slides at 50 % or more)
is mostly sTIL-low; a regressor trained on it pulls its few sTIL-high slides towards the mean, and
the overall MAE, made mostly of low slides, does not show it."""

from __future__ import annotations

import logging
import math

import numpy as np

from weakstil.metrics import band_text, bands

log = logging.getLogger("weakstil.train")

#: Mean under-scoring (points) of the highest band holding 2 or more slides that is warned about.
UNDER_SCORING_WARN = 10.0

#: The fewest slides of a group (a centre) whose out-of-fold error is given on its own.
GROUP_MIN_SLIDES = 3


def label_summary(labels) -> dict[str, object]:
    """n, min, median, max and the slides per true-sTIL% band of the labels trained on."""
    y = np.asarray(labels, dtype=float)
    y = y[np.isfinite(y)]
    return {"n": int(len(y)), "min": round(float(y.min()), 4), "median": round(float(np.median(y)), 4),
            "max": round(float(y.max()), 4),
            "by_band": {name: int(((y >= lo) & (y < hi)).sum()) for name, lo, hi in bands()}}


def warn_band_errors(rows: list[dict[str, object]], csv_path) -> None:
    """Log the out-of-fold error per band of the true sTIL%, and warn when the highest band with 2
    or more slides is scored lower by more than :data:`UNDER_SCORING_WARN` points on average."""
    text = band_text(rows)
    if not text:
        return
    log.info("cross-validation by true sTIL%%: %s", text)
    top = [r for r in rows if r["n"] >= 2 and not math.isnan(r["bias"])]
    if top and top[-1]["bias"] <= -UNDER_SCORING_WARN:
        r = top[-1]
        log.warning("%s: the out-of-fold sTIL%% of the %d slides at %s %% is %.1f points below their labels on "
                    "average (MAE %.1f): the model pulls sTIL-high slides towards the cohort's mean; its scores "
                    "there are low (more sTIL-high slides in training help)", csv_path, r["n"], r["band"],
                    -r["bias"], r["mae"])


def warn_group_errors(group_metrics, group_column: str | None, csv_path) -> list[dict[str, object]]:
    """The out-of-fold error (n, MAE, bias) of each group of :data:`GROUP_MIN_SLIDES` or more slides (a
    centre; a patient's one or two slides say little), from ``cv/metrics.json``'s ``by_group`` rows
    (:func:`weakstil.metrics.by_group`), logged when two or more such groups are there, and a warning for a
    group whose bias is :data:`UNDER_SCORING_WARN` or more points off the groups' median.
    Hunt 37h: 4 centres, leave-centre-out; one centre's 3 slides (other scanners, other tissue) came out
    +30.7 points on average, the others -5.2 to +7.8, and only `cv/oof_predictions.csv`, row by row, showed it."""
    if not group_column or not group_metrics:
        return []
    rows = [{"group": str(r["group"]), "n": int(r["n"]), "mae": round(float(r["mae"]), 4),
             "bias": round(float(r["bias"]), 4)} for r in group_metrics if int(r["n"]) >= GROUP_MIN_SLIDES]
    if len(rows) < 2:
        return []
    log.info("cross-validation by %s: %s", group_column, "; ".join(
        f"{r['group']}: {r['n']} slides, MAE {r['mae']:.1f}, bias {r['bias']:+.1f}" for r in rows))
    typical = float(np.median([r["bias"] for r in rows]))  # the median: one centre far off moves it least
    for r in rows:
        if abs(r["bias"] - typical) >= UNDER_SCORING_WARN:
            log.warning("%s: %s %r: its %d slides are scored %.1f points %s their labels on average out of fold, the "
                        "groups' median %+.1f: its slides differ from the rest (stain, scanner, tissue) or its labels "
                        "were scored another way; check them before trusting scores of slides like them (more of "
                        "its slides in training help)", csv_path, group_column, r["group"], r["n"], abs(r["bias"]),
                        "above" if r["bias"] > 0 else "below", typical)
    return rows


def warn_small_training_folds(folds, groups, csv_path) -> None:
    """Warn when a cross-validation fold trains on under half the slides: one group (a centre, a
    patient) holding most of the cohort is held out whole, and its models learn from the few slides
    left (12 demo slides, 9 of one centre: that fold trained on 3 and scored the 9, CV R² 0.24 where
    splitting by slide gave 0.92, and the model scored 28 new slides at R² 0.90). Its out-of-fold scores, the CV metrics and the interval calibrated
    on them then describe a far smaller model than the final one, and its models weigh 1/K in
    ``--scoring ensemble``."""
    folds, groups = np.asarray(folds), np.asarray(groups).astype(str)
    n, k = len(folds), int(folds.max()) + 1
    for fold in range(k):
        held = folds == fold
        if n - held.sum() < n / 2:
            names = sorted(set(groups[held]))
            log.warning("%s: cross-validation fold %d of %d holds out %d of the %d slides (group%s %s), so its models "
                        "train on %d: its out-of-fold scores, the CV metrics and the 90%% interval calibrated on them "
                        "understate a model trained on all %d, and those models weigh 1/%d in --scoring ensemble; "
                        "add slides of other groups, or pass --group-column none if the group's slides are "
                        "independent (not one patient's)", csv_path, fold + 1, k, int(held.sum()), n,
                        "s" if len(names) > 1 else "", ", ".join(repr(str(g)) for g in names[:3]) +
                        (", ..." if len(names) > 3 else ""), int(n - held.sum()), n, k)


def warn_whole_tissue(n_tissue: int, n: int, csv_path) -> None:
    """Warn when slides are trained on over the whole tissue: no bed source given and their feature
    files hold no ``tumorbed`` flags. An sTIL% label counts the stroma *inside the tumour bed*; the
    stroma outside it, with few lymphocytes, dilutes the slide the more the more lymphocytes its bed
    holds, so the model learns to score sTIL-high slides low (hunt 32f: the demo's 40 slides,
    leave-centre-out, 3 training seeds: the slides at >= 60 % 7.3 / 6.5 / 6.2 points low, MAE 3.40 /
    3.49 / 3.44; with their tumour beds 1.5 / 2.4 / 2.1 points low, MAE 2.02 / 1.96 / 2.09)."""
    if n_tissue <= 0:
        return
    log.warning("%s: %d of the %d slides have no tumour bed (no --annotations, --tumorbed or --tumorbed-beds "
                "given, and their feature files hold no tumour-bed flags): they are trained on over the whole "
                "tissue, while an sTIL%% label counts the stroma inside the tumour bed only; the stroma outside "
                "it pulls sTIL-high slides' scores down; give their beds (--annotations DIR, --tumorbed DIR or "
                "--tumorbed-beds DIR)", csv_path, n_tissue, n)


def scan_record(paths, slide_ids: list[str], csv_path) -> dict[str, object]:
    """The scans the model learns from, for ``model.json``'s ``training.scans``: the µm/px they were
    read at, each slide's scan resolution where it was not the file's own (an ``mpp`` column, ``--slide-mpp``)
    and the slides read upsampled (``embed --allow-upsample``), whose tiles hold less detail than the
    rest's; logged, and the upsampled ones warned about. Hunt 37h: a cohort of 0.25, 0.5, 1 and 2 µm/px
    scans, two of them read upsampled 2x and 4x and two at a CSV's mpp, trained without a word on any of it,
    and model.json recorded none of it (only the features' own files, which a re-embed replaces)."""
    from weakstil.files import FeaturesFile

    read_at, given, upsampled, scans = None, {}, {}, []
    for sid, path in zip(slide_ids, paths):
        attrs = FeaturesFile.read_header(path)[0]
        mpp, scan = attrs.get("mpp"), attrs.get("slide_mpp")
        if mpp is None or scan is None:  # (features of an older weakstil record no scan)
            continue
        read_at, scan = float(mpp), float(scan)
        scans.append(scan)
        if attrs.get("slide_mpp_source") == "override":
            given[sid] = round(scan, 4)
        if scan > read_at * 1.1:  # the tiler's tolerance: within 10 % is read as it is
            upsampled[sid] = round(scan / read_at, 2)
    if not scans:
        return {}
    record = {"mpp": read_at, "slide_mpp_min": round(min(scans), 4), "slide_mpp_max": round(max(scans), 4),
              "slide_mpp_given": given, "upsampled": upsampled}
    log.info("scans: %d slides at %.4g-%.4g µm/px, read at %.4g; %d at the µm/px their file states%s",
             len(scans), min(scans), max(scans), read_at, len(scans) - len(given),
             f", {len(given)} at a given one ({_names(given)})" if given else "")
    if upsampled:
        log.warning("%s: %d of the %d slides were scanned coarser than the %.4g µm/px they are read at and are "
                    "trained on upsampled (%s; embedded with --allow-upsample): their tiles hold less detail than "
                    "the others', so the model learns their blur with their labels; leave them out of the cohort "
                    "CSV, or use finer scans of them", csv_path, len(upsampled), len(scans), read_at,
                    _names({k: f"{v:g}x" for k, v in upsampled.items()}))
    return record


def _names(values: dict) -> str:
    """``A 2x, B 4x, ...``: the first five of ``values``."""
    shown = [f"{k} {v}" for k, v in list(values.items())[:5]]
    return ", ".join(shown) + (", ..." if len(values) > 5 else "")
