"""Regression and classification metrics for sTIL% predictions (numpy/scipy only).

All functions take 1-D arrays of true and predicted sTIL% (0-100) and return floats;
undefined values (constant inputs, one class absent) come back as NaN, never an exception.
"""

from __future__ import annotations

import math

import numpy as np

from weakstil.settings import STIL_THRESHOLD

#: sTIL-high cut-offs reported by default (high means stil >= threshold).
DEFAULT_THRESHOLDS = (10.0, STIL_THRESHOLD, 50.0)
#: Decimals of a predicted sTIL% in every table (results.csv, predictions.csv).
STIL_DECIMALS = 4


def called_high(predicted, threshold: float) -> np.ndarray:
    """The sTIL-high call of each predicted sTIL% as it is written (:data:`STIL_DECIMALS`), so that
    score, train's cross-validation and evaluate call a number the same and every row agrees with
    the number it prints (29.99996 is written 30.0000: high at 30). NaN: False."""
    with np.errstate(invalid="ignore"):
        return (as_written(predicted) >= float(threshold)).reshape(np.shape(predicted))


def as_written(predicted) -> np.ndarray:
    """Each predicted sTIL% (flat) as the tables write it, :data:`STIL_DECIMALS` decimals (Python's
    correctly rounded ``round``, not ``np.round``, which can differ at a half); NaN stays NaN."""
    values = np.asarray(predicted, np.float64).ravel()
    return np.array([round(float(v), STIL_DECIMALS) if math.isfinite(v) else math.nan for v in values], np.float64)


def stil_text(stil: float, threshold: float | None) -> str:
    """An sTIL% for people: one decimal, or as many more (up to :data:`STIL_DECIMALS`) as keep it on
    its call's side of ``threshold`` (29.96 at 30 is "29.96", low, not "30.0" beside "low")."""
    if threshold is None or not math.isfinite(stil):
        return f"{stil:.1f}"
    high = bool(called_high(stil, threshold))
    for decimals in range(1, STIL_DECIMALS + 1):
        if (round(stil, decimals) >= float(threshold)) == high:
            return f"{stil:.{decimals}f}"
    return f"{stil:.{STIL_DECIMALS}f}"


def interval_ends_text(low: float, high: float, threshold: float | None) -> str:
    """A 90 % interval's ends for people, ``"17.1–30.2"``: one decimal, or as many more (up to
    :data:`STIL_DECIMALS`) as keep each end on its side of ``threshold`` as written, which is how
    ``near_threshold`` is judged (lower < threshold <= upper): an upper end 29.96 at 30 is "29.96",
    not "30.0" beside no flag, and a lower end 29.97 is "29.97", not "30.0" beside the flag."""
    if threshold is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"{low:.1f}–{high:.1f}"
    threshold = float(threshold)

    def end(value: float, holds) -> str:
        side = holds(round(value, STIL_DECIMALS))
        for decimals in range(1, STIL_DECIMALS + 1):
            if holds(round(value, decimals)) == side:
                return f"{value:.{decimals}f}"
        return f"{value:.{STIL_DECIMALS}f}"

    return f"{end(low, lambda v: v < threshold)}–{end(high, lambda v: threshold <= v)}"


def fmt(value: object) -> str:
    """A metric for people: floats with 3 decimals, ``n/a`` for None, NaN and infinities."""
    if value is None:
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return f"{value:.3f}" if math.isfinite(value) else "n/a"
    return str(value)


def _arrays(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"length mismatch: {t.shape[0]} true vs {p.shape[0]} predicted")
    return t, p


def r2_score(y_true, y_pred) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (NaN when the truth is constant)."""
    t, p = _arrays(y_true, y_pred)
    if len(t) < 2:
        return math.nan
    ss_tot = float(((t - t.mean()) ** 2).sum())
    if ss_tot == 0:
        return math.nan
    return 1.0 - float(((t - p) ** 2).sum()) / ss_tot


def pearson(x, y) -> float:
    a, b = _arrays(x, y)
    # two points are always on a line: r = ±1 whatever the model, so no evidence of it; that holds for
    # two distinct points drawn several times too (a bootstrap resample of 3 slides mostly is one: their
    # ±1 made the 95 % interval of 3 slides' r [-1.0000000000000002, 1.0000000000000002])
    if len(a) < 3 or (len(np.unique(a)) < 3 and len(np.unique(b)) < 3  # 3 values of either: 3 points (fast)
                      and len(np.unique(np.column_stack([a, b]), axis=0)) < 3):
        return math.nan
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    # |r| <= 1 (rounding put a perfect fit at 1.0000000000000002)
    return min(1.0, max(-1.0, float((a * b).sum()) / den)) if den > 0 else math.nan


def rankdata(a) -> np.ndarray:
    """Average ranks from 1 (ties share the mean of their ranks), as ``scipy.stats.rankdata``'s default,
    in numpy: importing scipy.stats cost about 0.7 s in every process that ranked (train's metrics)."""
    values = np.asarray(a).ravel()
    order = np.argsort(values, kind="mergesort")
    position = np.empty(len(values), np.intp)
    position[order] = np.arange(len(values))
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]  # the first of each run of equal values
    run = np.cumsum(starts)[position]  # each value's run, 1-based
    bounds = np.r_[np.flatnonzero(starts), len(values)]  # where each run starts, then the end
    return 0.5 * (bounds[run] + bounds[run - 1] + 1)


def spearman(x, y) -> float:
    a, b = _arrays(x, y)
    return pearson(rankdata(a), rankdata(b))


def mae(y_true, y_pred) -> float:
    t, p = _arrays(y_true, y_pred)
    return float(np.abs(t - p).mean()) if len(t) else math.nan


def rmse(y_true, y_pred) -> float:
    t, p = _arrays(y_true, y_pred)
    return float(np.sqrt(((t - p) ** 2).mean())) if len(t) else math.nan


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic (ties count half).

    NaN when one class is absent.
    """
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(s)
    return (float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds), starting at (0, 0)."""
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.array([], dtype=int)
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thr = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thr


def classification_at(y_true, y_pred, threshold: float) -> dict[str, object]:
    """sTIL-high (>= threshold) classification: AUC of the predicted sTIL% and the
    sensitivity/specificity of the rule ``predicted >= threshold``."""
    t, p = _arrays(y_true, y_pred)
    pos = t >= threshold
    called = called_high(p, threshold)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    out: dict[str, object] = {
        "threshold": float(threshold),
        "n_high": n_pos,
        "n_low": n_neg,
        "auc": roc_auc(pos, p),
        "sensitivity": float((called & pos).sum() / n_pos) if n_pos else math.nan,
        "specificity": float((~called & ~pos).sum() / n_neg) if n_neg else math.nan,
        "accuracy": float((called == pos).mean()) if len(t) else math.nan,
    }
    if n_pos == 0 or n_neg == 0:
        out["note"] = (f"AUC undefined: no slides with true sTIL {'>=' if n_pos == 0 else '<'} "
                       f"{threshold:g}% (one class absent)")
    return out


def calibration_table(y_true, y_pred, bin_width: float = 10.0) -> list[dict[str, object]]:
    """Per predicted-sTIL% bin: count, mean predicted, mean true (NaN for empty bins). A prediction is
    binned as it is written (:data:`STIL_DECIMALS`), as it is called: 29.99996 is 30.0000 in
    predictions.csv, high at 30, and in the 30-40 bin (it was counted in 20-30)."""
    t, p = _arrays(y_true, y_pred)
    written = as_written(p)
    edges = np.arange(0.0, 100.0 + bin_width, bin_width)
    edges[-1] = 100.0
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (written >= lo) & ((written < hi) | ((hi >= 100.0) & (written <= hi)))
        n = int(sel.sum())
        rows.append({
            "bin_low": float(lo), "bin_high": float(hi), "n": n,
            "mean_pred": float(p[sel].mean()) if n else math.nan,
            "mean_true": float(t[sel].mean()) if n else math.nan,
            "std_true": float(t[sel].std()) if n else math.nan,
        })
    return rows


#: Edges of the true sTIL% bands errors and the interval are also measured in (issue 14's: < 10,
#: 10-30, 30-60, >= 60; a TCGA-like cohort is mostly under 10 %, so its overall MAE says little
#: about the few sTIL-high slides).
BAND_EDGES = (10.0, 30.0, 60.0)


def bands(edges=BAND_EDGES) -> tuple[tuple[str, float, float], ...]:
    """(name, low, high) of each band: ``low <= sTIL < high``."""
    lows, highs = (-math.inf, *edges), (*edges, math.inf)
    names = [f"<{highs[0]:g}", *(f"{a:g}-{b:g}" for a, b in zip(lows[1:-1], highs[1:-1])), f">={lows[-1]:g}"]
    return tuple(zip(names, lows, highs))


def error_by_band(y_true, y_pred) -> list[dict[str, object]]:
    """Per band of the *true* sTIL%: n, MAE and bias (mean predicted - true). The calibration
    table bins by the prediction, where a model that pulls sTIL-high slides towards the cohort's
    mean hides (they sit in the middle bins); binned by the label, its under-scoring shows."""
    t, p = _arrays(y_true, y_pred)
    rows = []
    for name, lo, hi in bands():
        sel = (t >= lo) & (t < hi)
        n = int(sel.sum())
        rows.append({"band": name, "n": n, "mae": float(np.abs(p[sel] - t[sel]).mean()) if n else math.nan,
                     "bias": float((p[sel] - t[sel]).mean()) if n else math.nan})
    return rows


def band_text(rows: list[dict[str, object]]) -> str:
    """``<10 %: 16 slides, MAE 2.1, bias +1.5; ...`` (bands without slides left out)."""
    return "; ".join(f"{r['band']} %: {r['n']} slide{'s' if r['n'] != 1 else ''}, MAE {r['mae']:.1f}, "
                     f"bias {r['bias']:+.1f}" for r in rows if r["n"])


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    t, p = _arrays(y_true, y_pred)
    return {
        "n": int(len(t)),
        "r2": r2_score(t, p),
        "pearson_r": pearson(t, p),
        "spearman_rho": spearman(t, p),
        "mae": mae(t, p),
        "rmse": rmse(t, p),
    }


def by_group(y_true, y_pred, groups, threshold: float) -> list[dict[str, object]]:
    """Each group's (a centre's) n, R², Pearson, Spearman, MAE, RMSE, bias (mean predicted - true) and
    sTIL-high AUC, sensitivity and specificity at ``threshold``, groups sorted by name: a pooled cohort
    hides a centre scored off the rest. Undefined values (a group of 1 or 2, one class) are NaN."""
    t, p = _arrays(y_true, y_pred)
    g = np.asarray(groups).astype(str).ravel()
    rows = []
    for name in sorted(set(g)):
        sel = g == name
        c = classification_at(t[sel], p[sel], threshold)
        rows.append({"group": name, **regression_metrics(t[sel], p[sel]), "bias": float((p[sel] - t[sel]).mean()),
                     **{k: c[k] for k in ("threshold", "n_high", "n_low", "auc", "sensitivity", "specificity")}})
    return rows


def group_text(rows: list[dict[str, object]]) -> str:
    """``A: 8 slides, R² 0.91, MAE 3.2, bias +1.0, AUC@30 0.95; ...`` (n/a where undefined)."""
    return "; ".join(f"{r['group']}: {r['n']} slide{'s' if r['n'] != 1 else ''}, R² {fmt(r['r2'])}, MAE {r['mae']:.1f}, "
                     f"bias {r['bias']:+.1f}, AUC@{r['threshold']:g} {fmt(r['auc'])}" for r in rows)


#: The bootstrap behind every ``ci95`` (recorded beside it in metrics.json).
BOOTSTRAP_N = 1000
BOOTSTRAP_SEED = 0


def bootstrap_ci(y_true, y_pred, fn, n_boot: int = BOOTSTRAP_N, seed: int = BOOTSTRAP_SEED,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of ``fn(y_true, y_pred)`` over slides (one resample at a time:
    any metric; :func:`bootstrap_all` gives the reported ones at once)."""
    t, p = _arrays(y_true, y_pred)
    if len(t) < 3:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(t), len(t))
        v = fn(t[idx], p[idx])
        if not math.isnan(v):
            vals.append(v)
    if len(vals) < n_boot // 2:
        return math.nan, math.nan
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def _row_ranks(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Average ranks (from 1, ties sharing) of ``values[idx]`` within each row of ``idx``, as
    :func:`rankdata` gives each resample's, from the values' dense ranks: no sort per resample."""
    dense = np.unique(values, return_inverse=True)[1].ravel()
    k, rows = int(dense.max()) + 1, len(idx)
    d = dense[idx]
    count = np.bincount((np.arange(rows)[:, None] * k + d).ravel(), minlength=rows * k).reshape(rows, k)
    below = np.cumsum(count, axis=1) - count
    return np.take_along_axis(below, d, 1) + (np.take_along_axis(count, d, 1) + 1) / 2


def _row_pearson(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> np.ndarray:
    """:func:`pearson` of each row pair; ``points``: each row's distinct (true, predicted) pairs (< 3: NaN)."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.clip((a * b).sum(axis=1) / den, -1.0, 1.0)
    return np.where((den > 0) & (points >= 3), r, np.nan)


def _resample_metrics(t: np.ndarray, p: np.ndarray, idx: np.ndarray, thresholds) -> dict[str, np.ndarray]:
    """Every ``ci95`` metric of each resample (a row of slide indices ``idx``) at once, as the metric
    functions give them one by one (a loop of them took 0.4 s per evaluation, the suite runs hundreds)."""
    tt, pp = t[idx], p[idx]
    err = pp - tt
    ss_tot = ((tt - tt.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    pair = np.unique(np.column_stack([t, p]), axis=0, return_inverse=True)[1].ravel()[idx]
    pair.sort(axis=1)
    points = 1 + (np.diff(pair, axis=1) != 0).sum(axis=1)
    rank_p = _row_ranks(p, idx)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"r2": np.where(ss_tot > 0, 1.0 - (err ** 2).sum(axis=1) / ss_tot, np.nan),
               "pearson_r": _row_pearson(tt, pp, points),
               "spearman_rho": _row_pearson(_row_ranks(t, idx), rank_p, points),
               "mae": np.abs(err).mean(axis=1), "rmse": np.sqrt((err ** 2).mean(axis=1))}
        for th in thresholds:  # Mann-Whitney U of the predicted ranks, as roc_auc
            pos = tt >= th
            n_pos = pos.sum(axis=1)
            n_neg = pos.shape[1] - n_pos
            u = (rank_p * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2
            out[f"auc@{th:g}"] = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)
    return out


def bootstrap_all(y_true, y_pred, thresholds=DEFAULT_THRESHOLDS, n_boot: int = BOOTSTRAP_N,
                  seed: int = BOOTSTRAP_SEED, alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """The percentile bootstrap interval of every :data:`CI_METRICS` metric and of the AUC at each
    threshold (``auc@30``), on the resamples :func:`bootstrap_ci` draws (the same intervals); a
    resample where a metric is undefined (constant truth, one class absent) is skipped for it."""
    t, p = _arrays(y_true, y_pred)
    names = [*CI_METRICS, *(f"auc@{th:g}" for th in thresholds)]
    if len(t) < 3:
        return {name: (math.nan, math.nan) for name in names}
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, 2_000_000 // len(t)))  # rows at a time: memory stays small for big cohorts
    parts = []
    for start in range(0, n_boot, chunk):  # the same draws as bootstrap_ci's one resample at a time
        parts.append(_resample_metrics(t, p, rng.integers(0, len(t), (min(chunk, n_boot - start), len(t))),
                                       thresholds))
    out = {}
    for name in names:
        v = np.concatenate([part[name] for part in parts])
        v = v[~np.isnan(v)]
        out[name] = (math.nan, math.nan) if len(v) < n_boot // 2 else (
            float(np.quantile(v, alpha / 2)), float(np.quantile(v, 1 - alpha / 2)))
    return out


#: Metrics with a ``ci95`` in metrics.json (and ``<name>_ci95_low``/``_high`` rows in metrics.csv).
CI_METRICS = ("r2", "pearson_r", "spearman_rho", "mae", "rmse")  # (as _resample_metrics names them)


def all_metrics(y_true, y_pred, thresholds=DEFAULT_THRESHOLDS, *, ci: bool = True) -> dict[str, object]:
    """Everything ``weakstil evaluate`` reports, as a JSON-ready dict."""
    out: dict[str, object] = regression_metrics(y_true, y_pred)
    out["classification"] = [classification_at(y_true, y_pred, th) for th in thresholds]
    if ci:  # a paper gives each headline number with its interval: Spearman, RMSE and AUC had none
        cis = bootstrap_all(y_true, y_pred, thresholds)
        out["ci95"] = {name: cis[name] for name in CI_METRICS}
        for c in out["classification"]:
            c["auc_ci95"] = cis[f"auc@{c['threshold']:g}"]
        out["ci95_method"] = {"method": "percentile bootstrap over slides (resamples where a metric is undefined "
                                        "skipped)", "n_boot": BOOTSTRAP_N, "seed": BOOTSTRAP_SEED}
    out["calibration"] = calibration_table(y_true, y_pred)
    out["error_by_band"] = error_by_band(y_true, y_pred)
    return out
