"""Figures the notebooks share: images, Grad-CAM overlays, image grids (matplotlib only)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
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
