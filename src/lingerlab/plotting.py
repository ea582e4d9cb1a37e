"""Figures the notebooks share: images, Grad-CAM overlays, image grids, the remedy table, the fair
test (matplotlib only), `publish` (every figure of the book: legible, saved, glued), and `Findings`,
Markdown text the book glues."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor


#: The smallest type a figure of the book may carry *as the page shows it* (legible at page width).
MIN_FONT_PT = 9.0
#: The width the book's pages give a figure: the content column of the book's theme is at most 774 CSS
#: px wide (measured in Chromium), and the notebooks' inline figures are drawn at 100 dpi, so a
#: figure wider than this many inches is shown scaled down, and its type with it.
PAGE_WIDTH_IN = 7.74
#: The width the book's figures are designed at (inches): within the page, so shown at full size.
BOOK_WIDTH_IN = 7.5


def shown_scale(fig: Any, page_width_in: float = PAGE_WIDTH_IN) -> float:
    """How much the page scales ``fig`` down: ``min(1, page width / the figure's tight width)``."""
    fig.canvas.draw()
    width = fig.get_tightbbox(fig.canvas.get_renderer()).width  # inches, as bbox_inches="tight" saves it
    return min(1.0, page_width_in / max(width, 1e-9))


def small_text(fig: Any, min_pt: float = MIN_FONT_PT, page_width_in: float | None = PAGE_WIDTH_IN) -> list[str]:
    """The visible texts of a matplotlib figure (titles, labels, tick labels, legends, annotations) whose
    type is smaller than ``min_pt`` points as the page shows it (its size times :func:`shown_scale`;
    ``page_width_in=None``: as drawn), each as ``'<text>' (<size> pt)``."""
    from matplotlib.text import Text

    scale = 1.0 if page_width_in is None else shown_scale(fig, page_width_in)
    return [
        f"{t.get_text()[:30]!r} ({t.get_fontsize() * scale:.3g} pt)"
        for t in fig.findobj(Text)
        if t.get_visible() and t.get_text().strip() and t.get_fontsize() * scale < min_pt - 0.05
    ]  # 0.05 pt: rounding


def publish(fig: Any, name: str, *, key: str | None = None, dpi: int = 120) -> Path:
    """Show one figure of the book: check that its type is legible (:data:`MIN_FONT_PT`), save it as
    ``<figures_dir>/<name>.png``, glue it as ``key`` (default ``fig_<name>``; the page numbers and
    captions it with ``{glue:figure}``, and the cell that calls this carries ``remove-output`` so the
    book shows it once), and close it. Outside the book's environment (no myst-nb) it is displayed.

    Raises ``ValueError`` naming the texts that are too small, before anything is written."""
    import matplotlib.pyplot as plt

    from .report import glue, savefig

    small = small_text(fig)
    if small:
        raise ValueError(
            f"figure {name!r}: text below {MIN_FONT_PT:g} pt at page width ({PAGE_WIDTH_IN:g} in; "
            f"the figure is shown at {shown_scale(fig):.2f} of its size) is not legible: "
            + ", ".join(small[:8])
            + (" ..." if len(small) > 8 else "")
            + f"; make it at most {BOOK_WIDTH_IN:g} in wide or its type larger"
        )
    path = savefig(fig, name, dpi=dpi)
    try:
        import myst_nb  # noqa: F401
    except ImportError:  # pragma: no cover - Colab without the book's extras
        from IPython.display import display

        display(fig)
    else:
        glue(key or f"fig_{name}", fig, display=True)
    plt.close(fig)
    return path


def to_numpy_image(img: Tensor) -> np.ndarray:
    """A [3, H, W] tensor in [0, 1] as an [H, W, 3] float array for ``imshow``."""
    return img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def show_image(ax, img: Tensor, title: str | None = None) -> None:
    """Draw an image without axes."""
    ax.imshow(to_numpy_image(img))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def show_cam(
    ax, img: Tensor, cam: Tensor, title: str | None = None, alpha: float = 0.5, mask: Tensor | None = None
) -> None:
    """Draw a Grad-CAM map (values in [0, 1]) over its image; outline ``mask`` (the overlay) if given."""
    show_image(ax, img, title)
    ax.imshow(cam.detach().float().cpu().numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1)
    if mask is not None:
        ax.contour(mask.detach().cpu().numpy().astype(float), levels=[0.5], colors="white", linewidths=1)


def image_grid(
    images: Tensor | Sequence[Tensor],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.4,
    suptitle: str | None = None,
):
    """A grid of images; returns the figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0)), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_image(ax, images[i], titles[i] if titles else None)
        else:
            ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    return fig


def topk_labels(logits: Tensor, names: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k (class name, probability) per image."""
    p = torch.softmax(logits.float(), dim=1)
    vals, idx = p.topk(k, dim=1)
    return [[(names[int(i)], float(v)) for v, i in zip(vr, ir)] for vr, ir in zip(vals, idx)]


def plot_remedies(table: pd.DataFrame, reference: str = "plain fine-tuning", ax: Any = None) -> Any:
    """What each remedy buys against what it costs (paired with ``reference``, mean ± SD over seeds).

    Panels: gain in composite accuracy (buys) vs drop in target accuracy (costs; a remedy whose
    target accuracy is at chance, ``at_chance``, is drawn hollow and labelled so); change in
    distraction above its null (Eq. 4); change in mean p_c(M^st) over F and in |L| (Eq. 3), negative
    is better; training-time overhead (x plain fine-tuning, log scale). ``ax``: four axes, or None.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    from .sweeps import summarize_remedies

    s = summarize_remedies(table, reference)
    s = s[s["feasible"] & (s["remedy"] != reference)].reset_index(drop=True)
    if ax is None:
        fig = plt.figure(figsize=(BOOK_WIDTH_IN, 4.0 + 0.26 * len(s) + 1.2))
        grid = fig.add_gridspec(2, 3, height_ratios=[4.0, 0.26 * len(s) + 1.2], width_ratios=[1, 1, 1])
        axes = [fig.add_subplot(grid[0, :])]
        axes.append(fig.add_subplot(grid[1, 0]))
        axes += [fig.add_subplot(grid[1, k], sharey=axes[1]) for k in (1, 2)]
    else:
        axes = ax
        fig = axes[0].figure
    colours = plt.get_cmap("tab20")(np.arange(len(s)) % 20)
    markers = "osD^v"
    a = axes[0]
    for i, r in s.iterrows():
        lesion = bool(r.get("at_chance", False))  # target accuracy at chance: a lesion, drawn hollow
        a.errorbar(
            -r["d_target_acc"],
            r["d_composite_acc"],
            xerr=_nz(r["d_target_acc_sd"]),
            yerr=_nz(r["d_composite_acc_sd"]),
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
    b = axes[1]
    b.barh(y, s["d_distraction_excess"], xerr=s["d_distraction_excess_sd"].fillna(0), color=colours)
    b.set_yticks(y, s["remedy"], fontsize=9)
    b.axvline(0, color="grey", lw=0.8)
    b.set_xlabel("Eq. 4 above null, change")
    b.set_title("distraction (< 0 buys)", fontsize=9)
    e = axes[2]
    e.barh(y, s["d_mean_p_st"], xerr=s["d_mean_p_st_sd"].fillna(0), color=colours)
    for i, r in s.iterrows():
        if np.isfinite(r["d_n_lingering"]):
            e.annotate(f"{r['d_n_lingering']:+.0f} L", (0, i), xytext=(3, -3), textcoords="offset points", fontsize=9)
    e.tick_params(labelleft=False)
    e.axvline(0, color="grey", lw=0.8)
    e.set_xlabel("mean p_c(M^st), change")
    e.set_title("memories, Eq. 3 (< 0 buys)", fontsize=9)
    c = axes[3]
    c.barh(y, s["time_overhead"], xerr=s["time_overhead_sd"].fillna(0), color=colours)
    c.set_xscale("log")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    c.xaxis.set_major_formatter(FormatStrFormatter("%gx"))
    c.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a log axis overlap
    c.axvline(1, color="grey", lw=0.8)
    c.tick_params(labelleft=False)
    c.set_xlabel("x plain fine-tuning")
    c.set_title("cost: training time", fontsize=9)
    b.invert_yaxis()  # the registry's order, top down (the axes share it)
    fig.tight_layout()
    fig.legend(handles, labels, fontsize=9, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    return fig


def plot_detection(summary: pd.DataFrame, title: str = "") -> Any:
    """Eq. 5 against pytorch-ood's detectors (``detection.detection_over_seeds(...)["summary"]``): AUROC
    with its 95% bootstrap-over-seeds interval and the chance line (left); M^t's error on composites
    each score flags and on those it lets through, at 5% clean false positives (right). One row per
    score, Eq. 5 first. Returns the figure."""
    import matplotlib.pyplot as plt

    s = summary.reset_index(drop=True)
    y = np.arange(len(s))[::-1]
    fig, (a, b) = plt.subplots(1, 2, figsize=(BOOK_WIDTH_IN, 0.36 * len(s) + 2.2), sharey=True)
    colours = ["tab:red" if n == "eq5" else "tab:blue" for n in s["score"]]
    err = _spread(s["auroc"], s["auroc_ci_lo"], s["auroc_ci_hi"])
    for i, c in enumerate(colours):
        a.errorbar(s["auroc"].iloc[i], y[i], xerr=[[err[0][i]], [err[1][i]]], fmt="o", color=c, capsize=3)
    a.axvline(0.5, color="grey", ls="--", lw=1, label="chance (0.5)")
    a.set_yticks(y, ["Eq. 5 (ours)" if n == "eq5" else n for n in s["score"]])
    a.set_xlim(0, 1)
    a.set_xlabel("AUROC, L composites vs clean")
    a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=9, frameon=False)
    for col, off, mk, lab in (("error_flagged", 0.12, "o", "flagged"), ("error_unflagged", -0.12, "s", "not flagged")):
        b.errorbar(
            s[col],
            y + off,
            xerr=_spread(s[col], s[f"{col}_ci_lo"], s[f"{col}_ci_hi"]),
            fmt=mk,
            capsize=3,
            label=lab,
            color="tab:purple" if col == "error_flagged" else "tab:gray",
        )
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


def _nz(v: float) -> float:
    return 0.0 if v is None or not np.isfinite(v) else float(v)


# ------------------------------------------------------------------ the fair test (notebook 4)
_ARM_COLOURS = ("tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple", "tab:brown")


def per_class_distraction(ft: Any, arms: Sequence[str], n_boot: int = 2000) -> pd.DataFrame:
    """Per (arm, source class): Eq. 4 and its per-class null over the seeds in which the class is in L
    (Fig. 3a is over L; a class in L in no seed is measured over all seeds and marked ``F \\ L``), the
    cluster-bootstrap 95% interval of Eq. 4 (by source photo, per-composite values averaged over
    those seeds first; a class with a single source photo has no spread between photos, and its
    interval is a bootstrap over seeds instead: ``interval_over`` says which), ``share_L`` (in how many of the seeds
    the class is in L) and ``subset``."""
    from .stats import cluster_bootstrap_ci

    ctl = ft.controls
    rows = []
    for arm in arms:
        a = ctl[ctl.arm == arm]
        n_seeds = a["seed"].nunique()
        for (c, name), g in a.groupby(["source_class", "source_name"], sort=True):
            share = g.groupby("seed")["in_L"].first().sum() / n_seeds
            use = g[g["in_L"]] if share > 0 else g
            per_comp = use.groupby("composite").agg(d=("distraction", "mean"), cluster=("cluster", "first"))
            if per_comp["cluster"].nunique() >= 2:
                mean, lo, hi = cluster_bootstrap_ci(
                    per_comp["d"].to_numpy(float), per_comp["cluster"].tolist(), n_boot=n_boot, seed=int(c)
                )
                over = "source photos"
            else:  # one photo: no spread between photos to resample, so the interval is over seeds
                per_seed = use.groupby("seed")["distraction"].mean().dropna().to_numpy(float)
                mean, lo, hi = cluster_bootstrap_ci(per_seed, np.arange(len(per_seed)), n_boot=n_boot, seed=int(c))
                over = "seeds"
            rows.append(
                {
                    "arm": arm,
                    "source_class": int(c),
                    "source_name": name,
                    "distraction": mean,
                    "ci_lo": lo,
                    "ci_hi": hi,
                    "interval_over": over,
                    "null": float(use["null"].mean()),
                    "share_L": float(share),
                    "subset": "L" if share > 0 else "F \\ L",
                }
            )
    return pd.DataFrame(rows)


def plot_fig3a(ft: Any, arms: Sequence[str], ax: Any = None, title: str | None = None) -> Any:
    """Figure 3a, per source-only class (one row each): Eq. 4 of each arm over the seeds in which the
    class lingers (dot, 95% interval of :func:`per_class_distraction`) next to its own per-class null
    (grey tick); classes ordered by how often they are in L (top: in L in every seed), with that share
    printed beside each name; classes in L in no seed (``F \\ L``, the contrast) hollow, at the bottom.
    With ``ax`` None the figure is laid out (``tight_layout``) and its legend takes one column where two
    would be wider than the book's page."""
    import matplotlib.pyplot as plt

    pc = per_class_distraction(ft, arms)
    order = (
        pc[pc.arm == arms[0]].sort_values(["share_L", "distraction"], ascending=[False, False])["source_class"].tolist()
    )
    pos = {c: i for i, c in enumerate(order)}
    created = ax is None
    if created:
        _, ax = plt.subplots(figsize=(BOOK_WIDTH_IN, 0.32 * len(order) + 1.6))
    height = 0.8 / len(arms)
    hollow = False
    for j, arm in enumerate(arms):
        sub = pc[pc.arm == arm]
        y = np.array([pos[c] for c in sub["source_class"]]) - 0.4 + height * (j + 0.5)
        colour = _ARM_COLOURS[j % len(_ARM_COLOURS)]
        for subset, face in (("L", colour), ("F \\ L", "white")):
            m = (sub["subset"] == subset).to_numpy()
            if m.any():
                d = sub[m]
                hollow |= subset != "L"
                ax.errorbar(
                    d["distraction"],
                    y[m],
                    xerr=[d["distraction"] - d["ci_lo"], d["ci_hi"] - d["distraction"]],
                    fmt="o",
                    ms=4,
                    lw=0.8,
                    color=colour,
                    mfc=face,
                    label=f"{arm}: Eq. 4" if subset == "L" else None,
                )
        ax.scatter(
            sub["null"],
            y,
            marker="|",
            s=120,
            color="grey",
            zorder=3,
            label="per-class null (shuffled pairs)" if j == 0 else None,
        )
    names = pc[pc.arm == arms[0]].set_index("source_class")
    ax.set_yticks(
        range(len(order)),
        [
            f"{names.loc[c, 'source_name']} "
            + (f"(L {names.loc[c, 'share_L']:.0%})" if names.loc[c, "share_L"] > 0 else "(F \\ L)")
            for c in order
        ],
    )
    ax.set_ylim(len(order) - 0.5, -0.5)  # the first class at the top
    ax.set(xlabel="distraction (Eq. 4, IoU)")
    ax.set_title(title or "Eq. 4 per source-only class, against its own null", fontsize=10)
    if hollow:  # one entry for every arm's hollow dots, so the legend's width does not grow with the arms' names
        from matplotlib.lines import Line2D

        ax.add_line(
            Line2D(
                [],
                [],
                marker="o",
                ms=4,
                ls="",
                color="grey",
                mfc="white",
                label="hollow: in F \\ L (lingers in no seed)",
            )
        )
    anchor = (0.0, -0.12 - 0.6 / max(len(order), 1))
    for ncol in (2, 1):  # long class or arm names: one column keeps the figure within the page
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=anchor, ncol=ncol, frameon=False)
        if not created:
            break
        ax.figure.tight_layout()
        if shown_scale(ax.figure, BOOK_WIDTH_IN) == 1.0:
            break
    return ax


#: The y-axis label (quantity and unit) of each measure the fair-test figures draw.
_UNITS = {
    "distraction": "Eq. 4 (IoU)",
    "excess_error": "error difference",
    "err_source_only": "error rate",
    "flip_rate": "flip rate",
}


def plot_headline(
    tests: dict[str, Any], arms: dict[str, Sequence[str]], measures: Sequence[tuple[str, str]], fig: Any = None
) -> Any:
    """One row per world, one column per measure: each arm's mean over seeds on L composites with its
    bootstrap-over-seeds 95% interval; for Eq. 4 the per-class null beside it (hollow). ``tests``:
    world -> FairTest; ``arms``: world -> arms to show; ``measures``: (measure, axis label)."""
    import matplotlib.pyplot as plt

    worlds = list(tests)
    if fig is None:
        fig, axes = plt.subplots(len(worlds), len(measures), figsize=(BOOK_WIDTH_IN, 3.0 * len(worlds)), squeeze=False)
    else:
        axes = np.asarray(fig.axes).reshape(len(worlds), len(measures))
    for i, w in enumerate(worlds):
        ft = tests[w]
        t = ft.table[ft.table.subset == "L"].set_index(["arm", "measure"])
        for j, (measure, label) in enumerate(measures):
            ax = axes[i, j]
            for k, arm in enumerate(arms[w]):
                r = t.loc[(arm, measure)]
                colour = _ARM_COLOURS[k % len(_ARM_COLOURS)]
                ax.errorbar(
                    [k],
                    [r["mean"]],
                    yerr=[[r["mean"] - r["ci_lo"]], [r["ci_hi"] - r["mean"]]],
                    fmt="o",
                    color=colour,
                    capsize=3,
                )
                if measure == "distraction":
                    n = t.loc[(arm, "distraction_null")]
                    ax.errorbar(
                        [k + 0.25],
                        [n["mean"]],
                        yerr=[[n["mean"] - n["ci_lo"]], [n["ci_hi"] - n["mean"]]],
                        fmt="o",
                        mfc="white",
                        color="grey",
                        capsize=2,
                    )
            if measure != "distraction":
                ax.axhline(0, color="k", lw=0.6)
            ax.set_xticks(range(len(arms[w])), list(arms[w]), rotation=20, fontsize=9)
            ax.set_xlim(-0.5, len(arms[w]) - 0.3)
            ax.set_ylabel(_UNITS.get(measure, measure))
            ax.set_title(f"{w}: {label}", fontsize=9)
    fig.tight_layout()
    return fig


def _spread(mean: Any, lo: Any, hi: Any) -> list[np.ndarray]:
    """Error-bar lengths below and above ``mean`` (clipped at 0: a mean of equal values may sit an ulp
    above their maximum)."""
    m, lo, hi = (np.asarray(v, dtype=float) for v in (mean, lo, hi))
    return [np.clip(m - lo, 0, None), np.clip(hi - m, 0, None)]


def _legend_above(ax: Any, room: float = 0.45, ncol: int = 1) -> None:
    """A legend in headroom added above the data (``room``: a share of the y range), so it covers none."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + room * (hi - lo))
    ax.legend(fontsize=9, loc="upper left", ncol=ncol, frameon=False)


def plot_arch(comparison: Any, fig: Any = None) -> Any:
    """Figure 8 from ``sweeps.arch_comparison``: per architecture, |F with images| and |L| (range over
    seeds); Eq. 4 on L of the fine-tuned arm and the scratch baseline with their 95% bootstrap-over-seeds
    intervals and the per-class null (hollow); the same for the excess error; and the Jaccard overlap
    of the lingering sets between architectures of one world (one cell per pair)."""
    import matplotlib.pyplot as plt

    t = comparison.table[comparison.table["available"].astype(bool)].reset_index(drop=True)
    if fig is None:
        fig, axes = plt.subplots(2, 2, figsize=(BOOK_WIDTH_IN, 7.0))
        axes = list(axes.flat)
    else:
        axes = fig.axes
    x = np.arange(len(t))
    ax = axes[0]
    ax.bar(x - 0.2, t["n_F_images"], 0.4, color="lightgrey", label="|F| with D^c images")
    ax.bar(
        x + 0.2,
        t["n_L"],
        0.4,
        color="tab:red",
        yerr=_spread(t["n_L"], t["n_L_min"], t["n_L_max"]),
        capsize=3,
        label="|L| (mean, range over seeds)",
    )
    ax.set_title("|F| with images, and |L|", fontsize=9)
    ax.set_ylabel("source-only classes")
    _legend_above(ax)
    for ax, name, label in (
        (axes[1], "distraction", "Eq. 4 on L (hollow: null)"),
        (axes[2], "excess_error", "excess error on L"),
    ):
        for k, (tag, colour) in enumerate((("reference", "tab:red"), ("baseline", "tab:blue"))):
            m, lo, hi = (t[f"{name}_{tag}{s}"].to_numpy(float) for s in ("", "_lo", "_hi"))
            ax.errorbar(
                x + (k - 0.5) * 0.3,
                m,
                yerr=_spread(m, lo, hi),
                fmt="o",
                color=colour,
                capsize=3,
                label="fine-tuned (M^t)" if tag == "reference" else "scratch (M^b, same data)",
            )
            if name == "distraction":
                n = t[f"null_{tag}"].to_numpy(float)
                ax.scatter(x + (k - 0.5) * 0.3 + 0.12, n, marker="o", facecolor="white", edgecolor=colour, zorder=3)
        if name != "distraction":
            ax.axhline(0, color="k", lw=0.6)
        ax.set_ylabel(_UNITS[name])
        ax.set_title(label, fontsize=9)
        _legend_above(ax, room=0.5)
    for ax in axes[:3]:
        ax.set_xticks(x, t["label"], rotation=20, fontsize=9)
    ax = axes[3]
    o = comparison.overlap
    if len(o):
        ax.barh(
            np.arange(len(o)),
            o["jaccard_L"],
            xerr=_spread(o["jaccard_L"], o["jaccard_L_min"], o["jaccard_L_max"]),
            color="tab:purple",
            capsize=3,
            label="L (same seed; range over seeds)",
        )
        ax.scatter(o["jaccard_F"], np.arange(len(o)), marker="|", s=200, color="k", zorder=3, label="F")
        ax.set_yticks(np.arange(len(o)), [f"{a}\nvs {b}" for a, b in zip(o["a"], o["b"])], fontsize=9)
        ax.set_ylim(-0.6, len(o) - 0.4)
        _legend_above(ax, room=0.35)
    ax.set(xlim=(0, 1.05), xlabel="Jaccard overlap")
    ax.set_title("the same memories? (overlap)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_size_sweep(size: pd.DataFrame, title: str) -> Any:
    """Figure 7 from ``sweeps.size_sweep``: |L|, Eq. 4 on L (with its per-class null), excess error and
    flip rate on L against the number of target training images; mean ± SD over seeds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(BOOK_WIDTH_IN, 5.6))
    g = size.groupby("n_train")
    for ax, (col, label) in zip(
        axes.flat,
        [
            ("n_lingering", "|L| (Eq. 3)"),
            ("distraction", "Eq. 4 on L"),
            ("excess_error", "excess error on L"),
            ("flip_rate", "flip rate on L"),
        ],
    ):
        m, sd = g[col].mean(), g[col].std()
        ax.errorbar(m.index, m, yerr=sd, fmt="o-", capsize=3, label="fine-tuned M^t")
        ax.set(xscale="log", xlabel="target training images", ylabel=label)
        if col == "distraction":
            ax.plot(m.index, g["distraction_null"].mean(), "o--", color="grey", mfc="white", label="per-class null")
            _legend_above(ax, room=0.5, ncol=2)
    fig.suptitle(f"{title}\n(mean ± SD over {size['seed'].nunique()} seeds)", fontsize=10)
    fig.tight_layout()
    return fig


class Findings:
    """Markdown text that displays as Markdown in a notebook and as HTML elsewhere: glue it, and the
    book can paste it on the same page (``{glue:md}``, text/markdown) and on another one (``{glue}``
    with ``:doc:``, which pastes text/html)."""

    def __init__(self, markdown: str) -> None:
        if not isinstance(markdown, str):
            raise TypeError(f"markdown must be a str; got {type(markdown).__name__}")
        self.markdown = markdown

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        try:
            from markdown_it import MarkdownIt
        except ImportError:  # pragma: no cover - markdown-it-py comes with the book's extras
            import html

            return f"<pre>{html.escape(self.markdown)}</pre>"
        return MarkdownIt("commonmark").render(self.markdown)

    def __repr__(self) -> str:
        return self.markdown
