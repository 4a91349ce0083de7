"""The plots of an evaluation folder (``scatter.png``, ``roc.png``), drawn off-screen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from weakstil.atomic import atomic_path
from weakstil.metrics import fmt, roc_curve


def _figure(figsize: tuple[float, float], dpi: int):
    """A figure and its axes drawn off-screen without pyplot: ``matplotlib.use("Agg", force=True)`` switched
    the whole process's backend, so a notebook's ``plt.show()`` after ``train_cohort`` showed nothing (hunt 36d)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    return fig, fig.subplots()


def _lead(title: str) -> str:
    """A plot title's lead: on its own line when long (an in-sample warning must not be cut off)."""
    return "" if not title else f"{title}\n" if len(title) > 20 else f"{title}: "


def plot_scatter(pred: pd.DataFrame, path: Path, m: dict, title: str = "") -> None:
    fig, ax = _figure((5.2, 5), 120)
    t, p = pred["stil_true"].to_numpy(dtype=float), pred["stil_pred"].to_numpy(dtype=float)
    groups = pred["group"].astype(str) if "group" in pred and pred["group"].nunique() <= 10 else None
    if groups is not None and groups.nunique() > 1:
        for k, g in enumerate(sorted(groups.unique())):  # a shape each too: colour alone fails colour-blind readers
            sel = (groups == g).to_numpy()
            ax.scatter(t[sel], p[sel], s=16, alpha=0.8, label=g, marker="osD^vP*Xph"[k % 10])
        ax.legend(fontsize=7, title="group", title_fontsize=7, loc="upper left")
    else:
        ax.scatter(t, p, s=14, alpha=0.8)
    ax.plot([0, 100], [0, 100], "k--", lw=1, label="identity")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_xlabel("true sTIL %")
    ax.set_ylabel("predicted sTIL %")
    ax.set_aspect("equal")
    ax.set_title(f"{_lead(title)}n={m['n']}, R²={fmt(m['r2'])}, r={fmt(m['pearson_r'])}, "  # 2 slides: r n/a, not nan
                 f"MAE={m['mae']:.2f}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_roc(t: np.ndarray, p: np.ndarray, path: Path, thresholds, title: str = "") -> None:
    from weakstil.metrics import roc_auc

    fig, ax = _figure((5, 5), 120)
    for k, th in enumerate(thresholds):  # a dash pattern each: orange and green look alike to many readers
        y, style = t >= th, ("-", "--", "-.")[k % 3]
        if y.all() or not y.any():
            ax.plot([], [], ls=style, label=f"≥{th:g}%: AUC n/a (one class)")
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, lw=1.5, ls=style, label=f"≥{th:g}%: AUC {roc_auc(y, p):.3f} ({int(y.sum())}/{len(y)} high)")
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_title(f"{_lead(title)}sTIL-high ROC", fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
