"""Writing stage-2 results: per-slide predictions, metrics (JSON + CSV), plots, tile scores.

Evaluation folder layout (``weakstil evaluate --out DIR``; the same under ``MODEL/cv/``):

* ``predictions.csv`` — slide_id, stil_true, stil_pred, high_true, high_pred, group (+ fold)
* ``metrics.json`` — n, r2, pearson_r, spearman_rho, mae, rmse, ci95, classification
  (AUC, sensitivity, specificity per sTIL-high threshold), calibration table
* ``metrics.csv`` — the same flat: ``metric,threshold,value``
* ``calibration.csv`` — predicted-sTIL% bin, n, mean predicted, mean true
* ``scatter.png`` (predicted vs true with the identity line), ``roc.png``
* ``tiles/<slide_id>.h5`` — each slide's tile scores, a :class:`weakstil.files.TileScoresFile`.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from weakstil.atomic import atomic_path
from weakstil.metrics import DEFAULT_THRESHOLDS, all_metrics, roc_curve
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


def write_metrics(pred: pd.DataFrame, out_dir: str | Path, *, threshold: float = STIL_THRESHOLD, title: str = "",
                  extra: dict | None = None, color_groups: bool = True) -> dict:
    """Metrics, calibration and plots for ``pred`` (columns stil_true, stil_pred) into ``out_dir``.

    ``color_groups``: colour the scatter plot by the ``group`` column (when it has 2-10 groups)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t = pred["stil_true"].to_numpy(dtype=float)
    p = pred["stil_pred"].to_numpy(dtype=float)
    m = all_metrics(t, p, thresholds_with(threshold))
    m["threshold"] = float(threshold)
    if extra:
        m.update(extra)
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(_clean(m), indent=2) + "\n")
    rows = [{"metric": k, "threshold": "", "value": m[k]} for k in ("n", "r2", "pearson_r", "spearman_rho", "mae",
                                                                    "rmse")]
    for c in m["classification"]:
        for k in ("auc", "sensitivity", "specificity", "accuracy", "n_high", "n_low"):
            rows.append({"metric": k, "threshold": c["threshold"], "value": c[k]})
    with atomic_path(out_dir / "metrics.csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL)
    with atomic_path(out_dir / "calibration.csv") as tmp:
        pd.DataFrame(m["calibration"]).to_csv(tmp, index=False)
    plot_scatter(pred if color_groups else pred.drop(columns="group", errors="ignore"), out_dir / "scatter.png", m,
                 title=title)
    plot_roc(t, p, out_dir / "roc.png", [c["threshold"] for c in m["classification"]], title=title)
    return m


def write_predictions(pred: pd.DataFrame, path: str | Path, threshold: float = STIL_THRESHOLD) -> Path:
    out = pred.copy()
    out["high_true"] = (out["stil_true"] >= threshold).astype(int)
    out["high_pred"] = (out["stil_pred"] >= threshold).astype(int)
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, float_format="%.4f")
    return Path(path)


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_scatter(pred: pd.DataFrame, path: Path, m: dict, title: str = "") -> None:
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5.2, 5), dpi=120)
    t = pred["stil_true"].to_numpy(dtype=float)
    p = pred["stil_pred"].to_numpy(dtype=float)
    groups = pred["group"].astype(str) if "group" in pred and pred["group"].nunique() <= 10 else None
    if groups is not None and groups.nunique() > 1:
        for g in sorted(groups.unique()):
            sel = (groups == g).to_numpy()
            ax.scatter(t[sel], p[sel], s=14, alpha=0.8, label=g)
        ax.legend(fontsize=7, title="group", title_fontsize=7, loc="upper left")
    else:
        ax.scatter(t, p, s=14, alpha=0.8)
    ax.plot([0, 100], [0, 100], "k--", lw=1, label="identity")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("true sTIL %")
    ax.set_ylabel("predicted sTIL %")
    ax.set_aspect("equal")
    ax.set_title(f"{title + ': ' if title else ''}n={m['n']}, R²={m['r2']:.3f}, r={m['pearson_r']:.3f}, "
                 f"MAE={m['mae']:.2f}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_roc(t: np.ndarray, p: np.ndarray, path: Path, thresholds, title: str = "") -> None:
    from weakstil.metrics import roc_auc

    plt = _figure()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    for th in thresholds:
        y = t >= th
        if y.all() or not y.any():
            ax.plot([], [], label=f"≥{th:g}%: AUC n/a (one class)")
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=1.5, label=f"≥{th:g}%: AUC {roc_auc(y, p):.3f} ({int(y.sum())}/{len(y)} high)")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"{title + ': ' if title else ''}sTIL-high ROC", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


#: Feature-cache attributes copied into tile-score files, so a viewer can place the tiles on
#: their slide (µm/px, grid spacing) and find the slide.
PLACEMENT_ATTRS = ("slide_path", "slide_mpp", "slide_width", "slide_height", "mpp", "tile_px", "overlap_px",
                   "tiling_key", "slide_fingerprint")


def placement_attrs(features_attrs: dict[str, object]) -> dict[str, object]:
    """The slide-placement attributes of a feature cache (missing ones are left out)."""
    return {k: features_attrs[k] for k in PLACEMENT_ATTRS if k in features_attrs}
