"""Inference-time interference detection with M^st (paper, Eq. 5)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from ._data import ImageData, batches, model_device, num_items
from ._validation import check_int_range, check_range
from .models import eval_mode


def class_list(classes: Tensor | Iterable[int]) -> list[int]:
    """Class ids given as a tensor or an iterable, as a list of ints."""
    return [int(c) for c in (classes.flatten().tolist() if isinstance(classes, Tensor) else classes)]


def interference_scores(
    mst: nn.Module, images: ImageData, lingering_classes: Tensor | Iterable[int], batch_size: int = 64
) -> Tensor:
    """``s(x) = max_{c in L} p_c(M^st(x))`` for every image (softmax over all source classes): the score
    Eq. 5 thresholds, ``[N]`` on the model's device; all 0 for an empty L (the model is not run)."""
    check_int_range("batch_size", batch_size, 1)
    device = model_device(mst)
    cls = torch.as_tensor(class_list(lingering_classes), dtype=torch.long, device=device)
    if len(cls) == 0:
        return torch.zeros(num_items(images), device=device)
    out = []
    with eval_mode(mst), torch.no_grad():
        for x, _ in batches(images, batch_size, device):
            p = mst(x).float().softmax(dim=1)
            if int(cls.min()) < 0 or int(cls.max()) >= p.shape[1]:
                raise ValueError(
                    f"lingering_classes must be in [0, {p.shape[1] - 1}]; got [{int(cls.min())}, {int(cls.max())}]"
                )
            out.append(p[:, cls].amax(dim=1))
    if not out:
        return torch.zeros(0, device=device)
    return torch.cat(out)


def interference(
    mst: nn.Module,
    images: ImageData,
    lingering_classes: Tensor | Iterable[int],
    p_lo: float = 0.01,
    batch_size: int = 64,
) -> tuple[Tensor, Tensor]:
    """Eq. 5: flag x when some lingering class c in L has ``p_c(M^st(x)) > p_lo``: ``(scores, flags)``."""
    check_range("p_lo", p_lo, 0, 1, lo_open=True, hi_open=True)
    scores = interference_scores(mst, images, lingering_classes, batch_size)
    return scores, scores > p_lo
