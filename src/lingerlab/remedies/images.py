"""Images of a labelled dataset as tensors: split by class, or stacked for a remedy to draw from."""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

from .._data import ImageData, gather, num_items

__all__ = ["images_by_class", "as_image_tensor"]


def images_by_class(data: ImageData, classes: Iterable[int] | None = None) -> dict[int, Tensor]:
    """Split a labelled dataset into ``{class: images [n, 3, H, W]}`` (only ``classes``, if given)."""
    if num_items(data) == 0:
        raise ValueError("data is empty: pass at least one image")
    x, y = gather(data)
    if y is None:
        raise ValueError("data has no labels: pass a Dataset of (image, class id) pairs")
    y = y.long()
    wanted = sorted({int(c) for c in y.tolist()}) if classes is None else [int(c) for c in classes]
    return {c: x[y == c] for c in wanted}


def as_image_tensor(data: ImageData | Sequence[ImageData], name: str) -> Tensor:
    """``data`` (a tensor, a dataset, or a list of them) as one image tensor ``[N, 3, H, W]``, N >= 1.

    ``name`` is the parameter named in the ValueError raised when there is no image.
    """
    if isinstance(data, (list, tuple)):
        parts = [as_image_tensor(d, name) for d in data]
        x = torch.cat(parts) if parts else torch.empty(0)
    else:
        x = gather(data)[0] if num_items(data) else torch.empty(0)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"{name} must hold at least one image [N, 3, H, W]; got shape {tuple(x.shape)}")
    return x
