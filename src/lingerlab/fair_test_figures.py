"""The fair test's figures (notebook 4): Eq. 4 per source-only class against its null (Fig. 3a), each
arm's headline numbers on L, and the composites behind them with their Grad-CAM maps (Figs. 1, 2, 3b, 5)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ._validation import check_int_range
from .controls import control_sets
from .plotting import UNITS, axes_style, error_bars, show_cam, show_image
from .publishing import BOOK_WIDTH_IN, shown_scale
from .bootstrap import cluster_bootstrap_ci

__all__ = ["per_class_distraction", "plot_fig3a", "plot_headline", "hijacks", "class_maps"]

#: The colour of the i-th arm of a figure, the same in every figure of the fair test.
_ARM_COLOURS = ("tab:red", "tab:orange", "tab:blue", "tab:green", "tab:purple", "tab:brown")


def _arm_colours(arms: Sequence[str]) -> dict[str, str]:
    """Each arm's colour, in the order shown (the palette repeats)."""
    return {arm: _ARM_COLOURS[j % len(_ARM_COLOURS)] for j, arm in enumerate(arms)}


def _strip(ax: Any, data: pd.DataFrame, x: str, y: str, order: Sequence[Any], arms: Sequence[str], **kws: Any) -> None:
    """Seaborn's strip plot of ``data``, one colour per arm (:func:`_arm_colours`), without jitter or legend."""
    import seaborn as sns

    kws.update(hue="arm", order=order, hue_order=arms, palette=_arm_colours(arms), jitter=False, legend=False)
    sns.stripplot(data=data, x=x, y=y, ax=ax, **kws)


def _interval(r: Any) -> list[np.ndarray]:
    """The error bars of one row's ``mean`` and 95% interval ``ci_lo``, ``ci_hi``."""
    return error_bars([r["mean"]], [r["ci_lo"]], [r["ci_hi"]])


def per_class_distraction(ft: Any, arms: Sequence[str], n_boot: int = 2000) -> pd.DataFrame:
    """Per (arm, source class): Eq. 4, its per-class null and its cluster-bootstrap 95% interval over
    the seeds in which the class is in L (all seeds, ``subset`` ``F \\ L``, where it is in L in none);
    the interval resamples source photos, or seeds where the class has one photo (``interval_over``)."""
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


def _hollow(collections: Sequence[Any], hollow_y: np.ndarray) -> None:
    """Edge each dot in its own colour; make it hollow where its y is one of ``hollow_y``."""
    from matplotlib.colors import to_rgba

    for coll in collections:
        xy = np.asarray(coll.get_offsets(), dtype=float).reshape(-1, 2)
        if len(xy):
            face = np.array(coll.get_facecolors())
            coll.set_edgecolors(face.copy())
            face[np.isclose(xy[:, 1][:, None], hollow_y[None, :]).any(axis=1)] = to_rgba("white")
            coll.set_facecolors(face)


def plot_fig3a(ft: Any, arms: Sequence[str], title: str | None = None) -> Any:
    """Figure 3a: per source-only class (rows, ordered by share of seeds in L), each arm's Eq. 4 with its
    95% interval (seaborn's strip plot) beside its per-class null (grey tick); ``F \\ L`` hollow.
    Returns the axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    arms = list(arms)
    pc = per_class_distraction(ft, arms)
    order = (
        pc[pc.arm == arms[0]].sort_values(["share_L", "distraction"], ascending=[False, False])["source_class"].tolist()
    )
    colours = _arm_colours(arms)
    height = 0.8 / len(arms)  # each arm's row within a class, where the strip plot dodges it
    y = pc["source_class"].map({c: i for i, c in enumerate(order)}) - 0.4 + height * (pc["arm"].map(arms.index) + 0.5)
    pc["y"] = y.to_numpy(float)
    with axes_style():
        _, ax = plt.subplots(figsize=(BOOK_WIDTH_IN, 0.32 * len(order) + 1.6))
        n_before = len(ax.collections)
        dots = dict(orient="y", dodge=True, size=4, linewidth=1.0, zorder=2.5)
        _strip(ax, pc, "distraction", "source_class", order, arms, **dots)
        _hollow(ax.collections[n_before:], pc.loc[pc["subset"] != "L", "y"].to_numpy(float))
        handles = []
        for j, arm in enumerate(arms):
            sub = pc[pc.arm == arm]
            d = sub["distraction"]
            ax.errorbar(
                d, sub["y"], xerr=error_bars(d, sub["ci_lo"], sub["ci_hi"]), fmt="none", lw=0.8, color=colours[arm]
            )
            label = "per-class null (shuffled pairs)" if j == 0 else None
            null = ax.scatter(sub["null"], sub["y"], marker="|", s=120, color="grey", zorder=3, label=label)
            handles += [null] if j == 0 else []
        # one entry for every arm's hollow dots, so the legend's width does not grow with the arms' names
        if (pc["subset"] != "L").any():
            label = "hollow: in F \\ L (lingers in no seed)"
            handles.append(Line2D([], [], marker="o", ms=4, ls="", color="grey", mfc="white", label=label))
        handles += [  # an arm with no class in L has no filled dot to name
            Line2D([], [], marker="o", ms=4, lw=0.8, color=colours[arm], label=f"{arm}: Eq. 4")
            for arm in arms
            if (pc.loc[pc.arm == arm, "subset"] == "L").any()
        ]
        names = pc[pc.arm == arms[0]].set_index("source_class")
        share = lambda c: f"(L {names.loc[c, 'share_L']:.0%})" if names.loc[c, "share_L"] > 0 else "(F \\ L)"
        ax.set_yticks(range(len(order)), [f"{names.loc[c, 'source_name']} {share(c)}" for c in order])
        ax.set_ylim(len(order) - 0.5, -0.5)  # the first class at the top
        ax.set(xlabel="distraction (Eq. 4, IoU)", ylabel="")
        ax.set_title(title or "Eq. 4 per source-only class, against its own null", fontsize=10)
        sns.despine(ax=ax)
        anchor = (0.0, -0.12 - 0.6 / max(len(order), 1))
        for ncol in (2, 1):  # long class or arm names: one column keeps the figure within the page
            ax.legend(handles=handles, fontsize=9, loc="upper left", bbox_to_anchor=anchor, ncol=ncol, frameon=False)
            ax.figure.tight_layout()
            if shown_scale(ax.figure, BOOK_WIDTH_IN) == 1.0:
                break
    return ax


def plot_headline(tests: dict[str, Any], arms: dict[str, Sequence[str]], measures: Sequence[tuple[str, str]]) -> Any:
    """One row per world (``tests``: world -> FairTest), one column per (measure, label) of ``measures``:
    each of ``arms[world]``'s mean on L with its 95% interval (seaborn's strip plot), and for Eq. 4
    its per-class null (hollow). Returns the figure."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    worlds = list(tests)
    with axes_style():
        fig, axes = plt.subplots(len(worlds), len(measures), figsize=(BOOK_WIDTH_IN, 3.0 * len(worlds)), squeeze=False)
        for i, w in enumerate(worlds):
            ft = tests[w]
            t = ft.table[ft.table.subset == "L"].set_index(["arm", "measure"])
            shown = list(arms[w])
            colours = _arm_colours(shown)
            for j, (measure, label) in enumerate(measures):
                ax = axes[i, j]
                rows = pd.DataFrame([t.loc[(arm, measure)] for arm in shown]).assign(arm=shown)
                _strip(ax, rows, "arm", "mean", shown, shown, size=6)
                for k, arm in enumerate(shown):
                    r = rows.iloc[k]
                    ax.errorbar([k], [r["mean"]], yerr=_interval(r), fmt="none", color=colours[arm], capsize=3)
                    if measure == "distraction":
                        n = t.loc[(arm, "distraction_null")]
                        ax.errorbar(
                            [k + 0.25], [n["mean"]], yerr=_interval(n), fmt="o", mfc="white", color="grey", capsize=2
                        )
                if measure != "distraction":
                    ax.axhline(0, color="k", lw=0.6)
                ax.set_xticks(range(len(shown)), shown, rotation=20, fontsize=9)
                ax.set_xlim(-0.5, len(shown) - 0.3)
                ax.set(xlabel="", ylabel=UNITS.get(measure, measure))
                ax.set_title(f"{w}: {label}", fontsize=9)
        sns.despine(fig=fig)
        fig.tight_layout()
    return fig


def hijacks(audit: Any, ft: Any, n: int = 3) -> tuple[Any, pd.DataFrame]:
    """Figs. 1, 3b and 5 searched for: the ``n`` composites of ``ft`` on which the reference is hijacked
    (``controls.with_hijacks``) in the most seeds, each at its first such seed, with M^s's, the
    reference's (with the object and blurred) and the baseline's maps. Returns the figure and a table."""
    import matplotlib.pyplot as plt

    check_int_range("n", n, 1)
    ref, base = ft.reference, ft.baselines[0]
    ctl = ft.controls
    hit = ctl[(ctl["arm"] == ref) & ctl["hijack"].astype(bool)]
    counts = (
        hit.groupby("composite", sort=True)["seed"]
        .agg(["size", "min"])
        .sort_values("size", ascending=False, kind="stable")
    )
    top = counts.head(n)
    names = audit.world.source_classes
    if top.empty:
        fig, ax = plt.subplots(figsize=(7.6, 1.0))
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"no composite hijacks {ref} in any seed", ha="center", va="center", fontsize=10)
        return fig, pd.DataFrame(columns=["composite", "source_class", "seeds_hijacked", "seed"])
    sets = control_sets(audit)
    comp, neutral = sets["source_only"], sets["neutral"]
    idx = torch.as_tensor(top.index.to_numpy(), dtype=torch.long)
    sub, sub_n = comp.subset(idx), neutral.subset(idx)
    cs = audit.composite_classes(sub)
    y = sub.target_label.cpu()
    arms = audit.world.spec.comparison
    fig, axes = plt.subplots(len(idx), 5, figsize=(7.6, 1.75 * len(idx)), squeeze=False)
    rows = []
    for r, (i, info) in enumerate(top.iterrows()):
        s = int(info["min"])
        one, one_n = sub.subset([r]), sub_n.subset([r])
        m_ref, m_base = audit.model(arms[ref], s), audit.model(arms[base], s)
        p_ref, p_ref_n, p_base = (
            float(audit.logits(m, x.images).float().softmax(1)[0, y[r]])
            for m, x in ((m_ref, one), (m_ref, one_n), (m_base, one))
        )
        show_image(axes[r, 0], one.images[0], f"{names[int(cs[r])]}")
        panels = (
            (one, audit.maps("M^s", one, int(cs[r])), "$M^s$: source class" if r == 0 else None, None),
            (one, audit.maps(m_ref, one, y[r : r + 1]), f"$M^t$ p={p_ref:.2f}", one.masks[0]),
            (one_n, audit.maps(m_ref, one_n, y[r : r + 1]), f"blurred p={p_ref_n:.2f}", one.masks[0]),
            (one, audit.maps(m_base, one, y[r : r + 1]), f"$M^b$ p={p_base:.2f}", one.masks[0]),
        )
        for col, (x, maps, title, mask) in enumerate(panels, start=1):
            show_cam(axes[r, col], x.images[0], maps[0], title, mask=mask)
        rows.append(
            {
                "composite": int(i),
                "source_class": names[int(cs[r])],
                "seeds_hijacked": int(info["size"]),
                "seed": s,
                "p_true_reference": p_ref,
                "p_true_reference_blurred": p_ref_n,
                "p_true_baseline": p_base,
            }
        )
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def class_maps(audit: Any, ft: Any, c: int, n: int = 3, seed: int = 0) -> Any:
    """Figure 2, third row, for source class ``c``: its first ``n`` composites with the maps of M^s, the
    reference and the first baseline (seed ``seed``); white outline: the pasted target image."""
    import matplotlib.pyplot as plt

    check_int_range("n", n, 1)
    comp = audit.composites()
    idx = torch.nonzero(audit.composite_classes(comp) == int(c)).flatten()[:n]
    if len(idx) == 0:
        raise ValueError(f"c must be a source class with composites; class {c} has none")
    sub = comp.subset(idx)
    arms = audit.world.spec.comparison
    ref, base = ft.reference, ft.baselines[0]
    maps = {
        "$M^s$": audit.maps("M^s", sub, int(c)),
        "$M^t$": audit.maps(arms[ref], sub, sub.target_label, seed),
        "$M^b$": audit.maps(arms[base], sub, sub.target_label, seed),
    }
    fig, axes = plt.subplots(len(idx), 4, figsize=(7.4, 2.0 * len(idx)), squeeze=False)
    for r in range(len(idx)):
        show_image(axes[r, 0], sub.images[r], audit.world.source_classes[int(c)] if r == 0 else None)
        for j, (name, mp) in enumerate(maps.items(), start=1):
            show_cam(axes[r, j], sub.images[r], mp[r], name if r == 0 else None, mask=sub.masks[r])
    fig.tight_layout()
    return fig
