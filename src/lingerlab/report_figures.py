"""The figures of the audit report, drawn on matplotlib's Agg canvas (no pyplot state, no display)
from plain numbers: Eq. 1's counts, Eq. 3's mean probabilities, composites with their maps, Eq. 4
per class and ROC curves."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .plotting import show_cam, show_image

__all__ = ["counts_figure", "lingering_figure", "composites_figure", "distraction_figure", "roc_curve", "roc_figure"]


def _new_figure(width: float, height: float):
    """A matplotlib ``Figure`` on the Agg canvas (no pyplot: nothing global is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _new_axes(width: float, height: float):
    """``(figure, its one axes)`` (:func:`_new_figure`)."""
    fig = _new_figure(width, height)
    return fig, fig.add_subplot(1, 1, 1)


def counts_figure(v: Sequence[int], in_F: Sequence[bool], v_lo: float, names: Sequence[str]):
    """Eq. 1's v(c) for every source class, sorted, with Eq. 2's threshold and F in red."""
    v, in_F = np.asarray(v, dtype=float), np.asarray(in_F, dtype=bool)
    order = np.argsort(-v, kind="stable")
    fig, ax = _new_axes(9, 3.0)
    colours = np.where(in_F[order], "#c0392b", "#4c72b0")
    ax.bar(np.arange(len(v)), v[order], color=colours, width=1.0 if len(v) > 60 else 0.8)
    zero = np.flatnonzero(in_F[order] & (v[order] == 0))
    if len(zero):  # v(c) = 0 draws no bar: mark those classes of F on the axis
        mark = dict(marker="^", color="#c0392b", s=18, zorder=3, clip_on=False, label="v(c) = 0 (in F)")
        ax.scatter(zero, np.zeros(len(zero)), **mark)
    ax.axhline(v_lo, color="#333", lw=1, ls="--", label=f"v_lo = {v_lo:g}")
    if len(v) <= 40:
        ax.set_xticks(np.arange(len(v)))
        ax.set_xticklabels([str(names[i])[:14] for i in order], rotation=70, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"source classes, sorted by v(c) (red: F, {int(in_F.sum())} of {len(v)})")
    ax.set_ylabel("v(c)")
    ax.legend(fontsize=8, loc="upper right")
    return fig


def lingering_figure(table: pd.DataFrame, p_lo: float, max_classes: int = 30):
    """Mean p_c over D^c under M^s, M^st and the scratch-backbone control, per class of F (top by p_st)."""
    t = table.dropna(subset=["p_st"]).sort_values("p_st", ascending=False).head(max_classes)
    fig, ax = _new_axes(max(5.0, 0.32 * len(t) + 2), 3.2)
    if len(t) == 0:
        ax.text(0.5, 0.5, "no class of F has images in the source folder", ha="center", va="center")
        ax.set_axis_off()
        return fig
    cols = [("p_source", "M^s", "#7f7f7f"), ("p_st", "M^st = B(M^t) + H(M^s)", "#c0392b")]
    if "p_scratch_st" in t and t["p_scratch_st"].notna().any():
        cols.append(("p_scratch_st", "B(M^b) + H(M^s) (scratch backbone)", "#4c72b0"))
    w = 0.8 / len(cols)
    x = np.arange(len(t))
    for j, (col, label, colour) in enumerate(cols):
        ax.bar(x + (j - (len(cols) - 1) / 2) * w, t[col].to_numpy(dtype=float), width=w, label=label, color=colour)
    ax.axhline(p_lo, color="#333", lw=1, ls="--", label=f"p_lo = {p_lo:g}")
    ax.set_xticks(x)
    ax.set_xticklabels([str(n)[:14] for n in t["name"]], rotation=70, fontsize=7)
    ax.set_ylabel("mean p_c over D^c")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def composites_figure(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]):
    """One row per worst class: the composite and its maps. Each row: ``image`` [3, H, W], ``mask``
    [H, W], ``maps`` (one [H, W] per column after the first) and ``title``."""
    n = max(1, len(rows))
    fig = _new_figure(2.0 * len(columns), 2.1 * n)
    axes = fig.subplots(n, len(columns), squeeze=False)
    for i, row in enumerate(rows):
        show_image(axes[i][0], row["image"], f"{columns[0]}\n{row['title']}" if i == 0 else row["title"])
        for j, cam in enumerate(row["maps"], start=1):
            show_cam(axes[i][j], row["image"], cam, columns[j] if i == 0 else None, mask=row["mask"])
    for i in range(len(rows), n):
        for ax in axes[i]:
            ax.set_axis_off()
    for ax in fig.axes:
        ax.title.set_fontsize(8)
    fig.tight_layout()
    return fig


def distraction_figure(by_class: pd.DataFrame, max_classes: int = 20):
    """Per class: mean distraction (Eq. 4) with its interval, and the shuffled-pair null, per model."""
    models = list(dict.fromkeys(by_class["model"]))
    ref = by_class[by_class["model"] == models[0]].sort_values("excess", ascending=False).head(max_classes)
    classes = list(ref["source_class"])
    fig, ax = _new_axes(max(5.0, 0.4 * len(classes) + 2), 3.2)
    colours = ["#c0392b", "#4c72b0", "#55a868"]
    w = 0.8 / max(1, len(models))
    for j, m in enumerate(models):
        sub = by_class[by_class["model"] == m].set_index("source_class").reindex(classes)
        x = np.arange(len(classes)) + (j - (len(models) - 1) / 2) * w
        d, lo, hi = (sub[k].to_numpy(dtype=float) for k in ("distraction", "ci_lo", "ci_hi"))
        yerr = np.nan_to_num(np.vstack([d - lo, hi - d]), nan=0.0)
        colour = colours[j % 3]
        ax.errorbar(x, d, yerr=yerr, fmt="o", color=colour, label=f"{m}: distraction (95% interval)", ms=4, capsize=2)
        ax.scatter(
            x, sub["null"].to_numpy(dtype=float), marker="_", s=120, color=colour, label=f"{m}: shuffled-pair null"
        )
    ax.set_xticks(np.arange(len(classes)))
    ax.set_xticklabels([str(n)[:14] for n in ref["source_name"]], rotation=70, fontsize=7)
    ax.set_ylabel("Eq. 4 IoU")
    ax.legend(fontsize=7, loc="upper right")
    return fig


def roc_curve(negatives: Iterable[float], positives: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """``(fpr, tpr)`` of a score (higher = positive) over every threshold, from (0, 0) to (1, 1)."""
    neg, pos = np.asarray(list(negatives), dtype=float), np.asarray(list(positives), dtype=float)
    thr = np.unique(np.concatenate([neg, pos]))[::-1]
    fpr = np.concatenate([[0.0], [(neg >= t).mean() for t in thr]])
    tpr = np.concatenate([[0.0], [(pos >= t).mean() for t in thr]])
    return fpr, tpr


def roc_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]]):
    """ROC curves ``name -> (fpr, tpr, auroc)``."""
    fig, ax = _new_axes(4.2, 3.8)
    for name, (fpr, tpr, auc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auc:.3f})", drawstyle="steps-post")
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls=":")
    ax.set_xlabel("false-positive rate (clean target images)")
    ax.set_ylabel("true-positive rate (composites)")
    ax.legend(fontsize=7, loc="lower right")
    return fig
