"""Notebook 5's figures: what each remedy buys and costs, Eq. 5 against OOD detectors, and the sweeps of
App. B (Fig. 7: training-set size; Fig. 8: architecture)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .plotting import UNITS, axes_style, error_bars, legend_above
from .publishing import BOOK_WIDTH_IN

__all__ = ["plot_remedies", "plot_detection", "plot_arch", "plot_size_sweep"]


def plot_remedies(summary: pd.DataFrame, reference: str = "plain fine-tuning") -> Any:
    """What each remedy of ``summary`` (``remedy_summary.summarize_remedies``) buys against what it costs,
    paired with ``reference`` (mean ± SD over seeds): composite-accuracy gain vs target-accuracy drop
    (hollow: at chance), change in Eq. 4 above its null, in mean p_c(M^st) and |L| (Eq. 3), and the
    training-time overhead (log scale). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    s = summary[summary["feasible"] & (summary["remedy"] != reference)].reset_index(drop=True)
    fig = plt.figure(figsize=(BOOK_WIDTH_IN, 4.0 + 0.26 * len(s) + 1.2))
    grid = fig.add_gridspec(2, 3, height_ratios=[4.0, 0.26 * len(s) + 1.2], width_ratios=[1, 1, 1])
    axes = [fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, 0])]
    axes += [fig.add_subplot(grid[1, k], sharey=axes[1]) for k in (1, 2)]
    colours = plt.get_cmap("tab20")(np.arange(len(s)) % 20)
    markers = "osD^v"
    a = axes[0]
    for i, r in s.iterrows():
        lesion = bool(r.get("at_chance", False))  # target accuracy at chance: a lesion, drawn hollow
        a.errorbar(
            -r["d_target_acc"],
            r["d_composite_acc"],
            xerr=np.nan_to_num(r["d_target_acc_sd"]),
            yerr=np.nan_to_num(r["d_composite_acc_sd"]),
            fmt=markers[i % len(markers)],
            color=colours[i],
            capsize=3,
            mfc="none" if lesion else colours[i],
            label=r["remedy"] + (" (target acc. at chance)" if lesion else ""),
        )
    a.axhline(0, color="grey", lw=0.8)
    a.axvline(0, color="grey", lw=0.8)
    a.set_xlabel("cost: target accuracy drop vs plain")
    a.set_ylabel("buys: composite accuracy gain vs plain")
    handles, labels = a.get_legend_handles_labels()
    a.set_title("accuracy")
    y = np.arange(len(s))
    b, e, c = axes[1:]
    for ax, col, zero, xlabel, title in (
        (b, "d_distraction_excess", 0, "Eq. 4 above null, change", "distraction (< 0 buys)"),
        (e, "d_mean_p_st", 0, "mean p_c(M^st), change", "memories, Eq. 3 (< 0 buys)"),
        (c, "time_overhead", 1, "x plain fine-tuning", "cost: training time"),
    ):
        ax.barh(y, s[col], xerr=s[f"{col}_sd"].fillna(0), color=colours)
        ax.axvline(zero, color="grey", lw=0.8)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=9)
    b.set_yticks(y, s["remedy"], fontsize=9)
    for i, r in s.iterrows():
        if np.isfinite(r["d_n_lingering"]):
            e.annotate(f"{r['d_n_lingering']:+.0f} L", (0, i), xytext=(3, -3), textcoords="offset points", fontsize=9)
    e.tick_params(labelleft=False)
    c.set_xscale("log")
    c.xaxis.set_major_formatter(FormatStrFormatter("%gx"))
    c.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a log axis overlap
    c.tick_params(labelleft=False)
    b.invert_yaxis()  # the registry's order, top down (the axes share it)
    fig.tight_layout()
    fig.legend(handles, labels, fontsize=9, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    return fig


def plot_detection(summary: pd.DataFrame, title: str = "") -> Any:
    """Eq. 5 against pytorch-ood's detectors (``detection.detection_over_seeds(...)["summary"]``): AUROC
    with its 95% interval (left) and M^t's error on the composites each score flags or not at 5% clean
    false positives (right). Returns the figure."""
    import matplotlib.pyplot as plt

    s = summary.reset_index(drop=True)
    y = np.arange(len(s))[::-1]
    fig, (a, b) = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 0.36 * len(s) + 2.2), sharey=True)
    colours = ["tab:red" if n == "eq5" else "tab:blue" for n in s["score"]]
    err = error_bars(s["auroc"], s["auroc_ci_lo"], s["auroc_ci_hi"])
    for i, c in enumerate(colours):
        a.errorbar(s["auroc"].iloc[i], y[i], xerr=[[err[0][i]], [err[1][i]]], fmt="o", color=c, capsize=3)
    a.axvline(0.5, color="grey", ls="--", lw=1, label="chance (0.5)")
    a.set_yticks(y, ["Eq. 5 (ours)" if n == "eq5" else n for n in s["score"]])
    a.set_xlim(0, 1)
    a.set_xlabel("AUROC, L composites vs clean")
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=9, frameon=False)
    for col, off, mk, lab in (("error_flagged", 0.12, "o", "flagged"), ("error_unflagged", -0.12, "s", "not flagged")):
        err = error_bars(s[col], s[f"{col}_ci_lo"], s[f"{col}_ci_hi"])
        colour = "tab:purple" if col == "error_flagged" else "tab:gray"
        b.errorbar(s[col], y + off, xerr=err, fmt=mk, capsize=3, label=lab, color=colour)
    b.set_xlim(-0.02, 1.02)
    b.set_xlabel("$M^t$ error on L composites\n(flag at 5% clean FPR)")
    b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9, frameon=False)
    for ax in (a, b):
        ax.tick_params(labelsize=9)
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_arch(comparison: Any) -> Any:
    """Figure 8 from ``arch_sweep.arch_comparison``: per architecture, |F with images| and |L|; Eq. 4 on L
    (with its null, hollow) and the excess error of M^t and M^b with 95% intervals; and the Jaccard
    overlap of L between architectures of one world."""
    import matplotlib.pyplot as plt

    t = comparison.table[comparison.table["available"].astype(bool)].reset_index(drop=True)
    fig, axes = plt.subplots(2, 2, figsize=(BOOK_WIDTH_IN, 7.0))
    axes = list(axes.flat)
    x = np.arange(len(t))
    ax = axes[0]
    ax.bar(x - 0.2, t["n_F_images"], 0.4, color="lightgrey", label="|F| with D^c images")
    err = error_bars(t["n_L"], t["n_L_min"], t["n_L_max"])
    ax.bar(x + 0.2, t["n_L"], 0.4, color="tab:red", yerr=err, capsize=3, label="|L| (mean, range over seeds)")
    ax.set_title("|F| with images, and |L|", fontsize=9)
    ax.set_ylabel("source-only classes")
    legend_above(ax)
    for ax, name, label in (
        (axes[1], "distraction", "Eq. 4 on L (hollow: null)"),
        (axes[2], "excess_error", "excess error on L"),
    ):
        for k, (tag, colour) in enumerate((("reference", "tab:red"), ("baseline", "tab:blue"))):
            m, lo, hi = (t[f"{name}_{tag}{s}"].to_numpy(float) for s in ("", "_lo", "_hi"))
            xk = x + (k - 0.5) * 0.3
            arm = "fine-tuned (M^t)" if tag == "reference" else "scratch (M^b, same data)"
            ax.errorbar(xk, m, yerr=error_bars(m, lo, hi), fmt="o", color=colour, capsize=3, label=arm)
            if name == "distraction":
                n = t[f"null_{tag}"].to_numpy(float)
                ax.scatter(xk + 0.12, n, marker="o", facecolor="white", edgecolor=colour, zorder=3)
        if name != "distraction":
            ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel(UNITS[name])
        ax.set_title(label, fontsize=9)
        legend_above(ax, room=0.5)
    for ax in axes[:3]:
        ax.set_xticks(x, t["label"], rotation=20, fontsize=9)
    ax = axes[3]
    o = comparison.overlap
    if len(o):
        err = error_bars(o["jaccard_L"], o["jaccard_L_min"], o["jaccard_L_max"])
        label = "L (same seed; range over seeds)"
        ax.barh(np.arange(len(o)), o["jaccard_L"], xerr=err, color="tab:purple", capsize=3, label=label)
        ax.scatter(o["jaccard_F"], np.arange(len(o)), marker="|", s=200, color="k", zorder=3, label="F")
        ax.set_yticks(np.arange(len(o)), [f"{a}\nvs {b}" for a, b in zip(o["a"], o["b"])], fontsize=9)
        ax.set_ylim(-0.6, len(o) - 0.4)
        legend_above(ax, room=0.35)
    ax.set(xlim=(0, 1.05), xlabel="Jaccard overlap")
    ax.set_title("the same memories? (overlap)", fontsize=9)
    fig.tight_layout()
    return fig


def _mean_sd_line(ax: Any, size: pd.DataFrame, col: str, sd: bool, **kws: Any) -> None:
    """Seaborn's line of ``col``'s mean over seeds against ``n_train`` (± SD bars where ``sd``), broken
    at sizes where every seed's value is missing."""
    import seaborn as sns

    present = size.groupby("n_train")[col].count() > 0
    runs = (~present).cumsum()[present]
    for k, sizes in enumerate(runs.groupby(runs).groups.values()):
        sns.lineplot(
            data=size[size["n_train"].isin(sizes)],
            x="n_train",
            y=col,
            errorbar="sd" if sd else None,
            err_style="bars",
            err_kws={"capsize": 3},
            legend=False,
            ax=ax,
            **(kws if k == 0 else {**kws, "label": "_nolegend_"}),
        )


def plot_size_sweep(size: pd.DataFrame, title: str) -> Any:
    """Figure 7 from ``size_sweep.size_sweep``: |L|, Eq. 4 on L (with its null), excess error and flip rate
    against the number of target training images; mean ± SD over seeds (seaborn's line plot)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    with axes_style():
        fig, axes = plt.subplots(2, 2, figsize=(BOOK_WIDTH_IN, 5.6))
        for ax, (col, label) in zip(
            axes.flat,
            [
                ("n_lingering", "|L| (Eq. 3)"),
                ("distraction", "Eq. 4 on L"),
                ("excess_error", "excess error on L"),
                ("flip_rate", "flip rate on L"),
            ],
        ):
            if col == "distraction":  # drawn first so that it heads the legend, and on top of M^t's line
                null = dict(color="grey", ls="--", marker="o", mfc="white", mec="grey", mew=1.0, zorder=2.1)
                _mean_sd_line(ax, size, "distraction_null", sd=False, label="per-class null", **null)
            _mean_sd_line(ax, size, col, sd=True, color="C0", marker="o", label="fine-tuned M^t")
            ax.set(xscale="log", xlabel="target training images", ylabel=label)
            if col == "distraction":
                legend_above(ax, room=0.5, ncol=2)
        sns.despine(fig=fig)
        fig.suptitle(f"{title}\n(mean ± SD over {size['seed'].nunique()} seeds)", fontsize=10)
        fig.tight_layout()
    return fig
