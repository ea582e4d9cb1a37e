"""Low-level drawing helpers the book's figures share: images, Grad-CAM overlays, grids, top-k labels,
error bars, legends and each measure's axis label."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

#: The axis label (quantity and unit) of each measure of the fair test the figures draw.
UNITS = {
    "distraction": "Eq. 4 (IoU)",
    "excess_error": "error difference",
    "err_source_only": "error rate",
    "flip_rate": "flip rate",
}


def show_image(ax, img: Tensor, title: str | None = None) -> None:
    """Draw an image (a [3, H, W] tensor in [0, 1]) without axes."""
    ax.imshow(img.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
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


def error_bars(mean: Any, lo: Any, hi: Any) -> list[np.ndarray]:
    """Error-bar lengths below and above ``mean``, clipped at 0 (a mean may sit an ulp above its ``hi``)."""
    m, lo, hi = (np.asarray(v, dtype=float) for v in (mean, lo, hi))
    return [np.clip(m - lo, 0, None), np.clip(hi - m, 0, None)]


def legend_above(ax: Any, room: float = 0.45, ncol: int = 1) -> None:
    """A legend in headroom added above the data (``room``: a share of the y range), so it covers none."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + room * (hi - lo))
    ax.legend(fontsize=9, loc="upper left", ncol=ncol, frameon=False)


def axes_style() -> Any:
    """Seaborn's "ticks" axes style for one figure, in the fonts of the book's other figures."""
    import matplotlib as mpl
    import seaborn as sns

    return sns.axes_style("ticks", {k: mpl.rcParams[k] for k in ("font.family", "font.sans-serif")})
