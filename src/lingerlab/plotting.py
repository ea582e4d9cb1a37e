"""Figures the notebooks share: images, Grad-CAM overlays, image grids, the remedy table (matplotlib only)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor


def to_numpy_image(img: Tensor) -> np.ndarray:
    """A [3, H, W] tensor in [0, 1] as an [H, W, 3] float array for ``imshow``."""
    return img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def show_image(ax, img: Tensor, title: str | None = None) -> None:
    """Draw an image without axes."""
    ax.imshow(to_numpy_image(img))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def show_cam(ax, img: Tensor, cam: Tensor, title: str | None = None, alpha: float = 0.5,
             mask: Tensor | None = None) -> None:
    """Draw a Grad-CAM map (values in [0, 1]) over its image; outline ``mask`` (the overlay) if given."""
    show_image(ax, img, title)
    ax.imshow(cam.detach().float().cpu().numpy(), cmap="jet", alpha=alpha, vmin=0, vmax=1)
    if mask is not None:
        ax.contour(mask.detach().cpu().numpy().astype(float), levels=[0.5], colors="white", linewidths=1)


def image_grid(images: Tensor | Sequence[Tensor], titles: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.4, suptitle: str | None = None):
    """A grid of images; returns the figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if suptitle else 0)),
                             squeeze=False)
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

    Panels: gain in composite accuracy (buys) vs drop in target accuracy (costs); change in
    distraction above its null (Eq. 4); change in mean p_c(M^st) over F and in |L| (Eq. 3), negative
    is better; training-time overhead (x plain fine-tuning, log scale). ``ax``: four axes, or None.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    from .sweeps import summarize_remedies

    s = summarize_remedies(table, reference)
    s = s[s["feasible"] & (s["remedy"] != reference)].reset_index(drop=True)
    if ax is None:
        fig, axes = plt.subplots(1, 4, figsize=(18, 4.6), gridspec_kw={"width_ratios": [1.2, 1, 1, 0.8]})
    else:
        axes = ax
        fig = axes[0].figure
    colours = plt.get_cmap("tab10")(np.arange(len(s)) % 10)
    a = axes[0]
    for i, r in s.iterrows():
        a.errorbar(-r["d_target_acc"], r["d_composite_acc"], xerr=_nz(r["d_target_acc_sd"]),
                   yerr=_nz(r["d_composite_acc_sd"]), fmt="o", color=colours[i], capsize=3, label=r["remedy"])
    a.axhline(0, color="grey", lw=0.8)
    a.axvline(0, color="grey", lw=0.8)
    a.set_xlabel("cost: target accuracy drop vs plain")
    a.set_ylabel("buys: composite accuracy gain vs plain")
    a.legend(fontsize=7, loc="best")
    a.set_title("accuracy")
    y = np.arange(len(s))
    b = axes[1]
    b.barh(y, s["d_distraction_excess"], xerr=s["d_distraction_excess_sd"].fillna(0), color=colours)
    b.set_yticks(y, s["remedy"], fontsize=8)
    b.axvline(0, color="grey", lw=0.8)
    b.set_xlabel("change in distraction above null (Eq. 4 IoU)")
    b.set_title("buys: less distraction (negative)", fontsize=9)
    e = axes[2]
    e.barh(y, s["d_mean_p_st"], xerr=s["d_mean_p_st_sd"].fillna(0), color=colours)
    for i, r in s.iterrows():
        if np.isfinite(r["d_n_lingering"]):
            e.annotate(f"{r['d_n_lingering']:+.0f} L", (0, i), xytext=(3, -3), textcoords="offset points", fontsize=7)
    e.set_yticks(y, [""] * len(s))
    e.axvline(0, color="grey", lw=0.8)
    e.set_xlabel("change in mean p_c(M^st) over F (Eq. 3)")
    e.set_title("buys: weaker memories (negative); +n L = change in |L|", fontsize=9)
    c = axes[3]
    c.barh(y, s["time_overhead"], xerr=s["time_overhead_sd"].fillna(0), color=colours)
    c.set_xscale("log")
    c.axvline(1, color="grey", lw=0.8)
    c.set_yticks(y, [""] * len(s))
    c.set_xlabel("cost: training time (x plain fine-tuning)")
    c.set_title("time")
    fig.tight_layout()
    return fig


def _nz(v: float) -> float:
    return 0.0 if v is None or not np.isfinite(v) else float(v)
