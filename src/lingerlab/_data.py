"""How the package sees data: tensors of images in [0, 1], or datasets of ``(image, label)``.

Every stage accepts ``ImageData``: a ``Tensor`` ``[N, 3, H, W]``, a ``Dataset`` whose items are an
image or an ``(image, label)`` pair, or a ``DataLoader`` over such a dataset. ``batches`` turns any of
them into device-resident batches, so stage functions never care where the data lives.
"""

from __future__ import annotations

from typing import Iterator, Sequence, Union

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, TensorDataset

ImageData = Union[Tensor, Dataset, DataLoader]


def _collate(items):
    first = items[0]
    if isinstance(first, (tuple, list)):
        xs = torch.stack([it[0] for it in items])
        ys = torch.as_tensor([int(it[1]) for it in items])
        return xs, ys
    return torch.stack(items), None


def batches(
    data: ImageData, batch_size: int = 64, device: torch.device | str | None = None
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Yield ``(images, labels_or_None)`` batches on ``device``, in the data's order."""
    if isinstance(data, Tensor):
        it = ((data[i : i + batch_size], None) for i in range(0, len(data), batch_size))
    elif isinstance(data, TensorDataset):
        tensors = data.tensors
        it = (
            (tensors[0][i : i + batch_size], tensors[1][i : i + batch_size] if len(tensors) > 1 else None)
            for i in range(0, len(tensors[0]), batch_size)
        )
    elif isinstance(data, DataLoader):
        it = (b if isinstance(b, (tuple, list)) else (b, None) for b in data)
    elif isinstance(data, Dataset):
        it = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=_collate)
    else:
        raise TypeError(
            "data must be a Tensor [N, 3, H, W], a Dataset of (image, label) or a DataLoader; "
            f"got {type(data).__name__}"
        )
    for x, y in it:
        yield x.to(device) if device is not None else x, (y.to(device) if (y is not None and device is not None) else y)


def num_items(data: ImageData) -> int:
    """Number of images in ``data`` (for a DataLoader: in its dataset)."""
    if isinstance(data, DataLoader):
        return len(data.dataset)  # type: ignore[arg-type]
    return len(data)  # type: ignore[arg-type]


def labels_of(data: ImageData) -> Tensor:
    """All labels of a labelled dataset, in order (reads images only when the dataset must be iterated)."""
    if isinstance(data, TensorDataset) and len(data.tensors) > 1:
        return data.tensors[1]
    targets = getattr(data, "targets", None)
    if targets is not None:
        return torch.as_tensor(targets)
    ys = [y for _, y in batches(data)]
    if any(y is None for y in ys):
        raise ValueError("data has no labels: pass a Dataset of (image, label) pairs")
    return torch.cat(ys)  # type: ignore[arg-type]


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter (CPU for a parameter-less model)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def as_image(array, size: int | None = None) -> Tensor:
    """A photo (``H x W``, ``H x W x 3`` or ``x 4`` uint8/float array, e.g. from scikit-image) as a
    [3, size, size] float tensor in [0, 1]: grey is repeated, alpha dropped, centre-cropped to a
    square and resized (bilinear, antialiased) when ``size`` is given."""
    import numpy as np

    a = np.asarray(array)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"array must be H x W, H x W x 3 or H x W x 4; got shape {a.shape}")
    a = a[..., :3]
    t = torch.as_tensor(a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)).permute(2, 0, 1)
    return (t if size is None else square_resize(t, size)).clamp(0, 1)


def square_resize(t: Tensor, size: int) -> Tensor:
    """An image ``[C, H, W]`` centre-cropped to a square and resized to ``size`` px (bilinear, antialiased)."""
    import torch.nn.functional as F

    h, w = t.shape[1:]
    s = min(h, w)
    t = t[:, (h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
    return F.interpolate(t[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]


def gather(data: ImageData, idx: Sequence[int] | None = None) -> tuple[Tensor, Tensor | None]:
    """Images (and labels, None when unlabelled) of ``data`` at ``idx`` (None: all) as two tensors.

    The one way the package turns a dataset into tensors (fast path for tensors and TensorDatasets).
    """
    from torch.utils.data import Subset

    if isinstance(data, Tensor):
        return (data if idx is None else data[torch.as_tensor(list(idx), dtype=torch.long)]), None
    if isinstance(data, TensorDataset):
        ts = data.tensors
        if idx is not None:
            t = torch.as_tensor(list(idx), dtype=torch.long)
            ts = tuple(x[t] for x in ts)
        return ts[0], (ts[1] if len(ts) > 1 else None)
    sel = data if idx is None else Subset(data, list(idx))  # type: ignore[arg-type]
    xs, ys = [], []
    for x, y in batches(sel, batch_size=256):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise ValueError("no images selected: idx is empty or data has no items")
    labels = None if any(y is None for y in ys) else torch.cat(ys)  # type: ignore[arg-type]
    return torch.cat(xs), labels
