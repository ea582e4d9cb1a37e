"""Source-only features: which source classes never show up in the target data (paper, Eqs. 1-2)."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from ._data import ImageData, batches, model_device, num_items
from ._validation import check_int_range, check_range
from .models import eval_mode


def default_k(num_source_classes: int) -> int:
    """Eq. 1's k, scaled with the source label space: ``max(1, round(5 * n / 1000))``.

    The paper uses top-5 over ImageNet's 1000 classes (0.5% of the label space). Kept fixed at 5
    over a few dozen classes, top-5 is a fifth of the label space: nearly every class lands in
    some image's top 5 by chance, v(c) is high everywhere and the source-only tail is flooded
    (DESIGN.md, second trial: recall 0.20-0.25 with top-5 over 24 classes, 0.70-0.90 with top-1).
    Scaling keeps the same fraction: 5 for 1000 classes, 1 for tens of classes.
    """
    check_int_range("num_source_classes", num_source_classes, 1)
    return max(1, round(5 * num_source_classes / 1000))


def source_class_counts(source_model: nn.Module, target_data: ImageData, k: int | None = None,
                        batch_size: int = 64) -> Tensor:
    """Eq. 1: ``v(c) = |{x in D^t : c in top_k(M^s(x))}|`` for every source class c.

    One batched pass of ``source_model`` (in eval mode, under ``torch.inference_mode``) over
    ``target_data``; labels, if any, are ignored. ``k=None`` uses :func:`default_k`.
    Returns a LongTensor ``[num_source_classes]`` on the model's device; ``v.sum() == k * N``.
    """
    if k is not None:
        check_int_range("k", k, 1)
    check_int_range("batch_size", batch_size, 1)
    if num_items(target_data) == 0:
        raise ValueError("target_data is empty: pass at least one image")
    device = model_device(source_model)
    counts: Tensor | None = None
    with eval_mode(source_model), torch.inference_mode():
        for x, _ in batches(target_data, batch_size, device):
            logits = source_model(x)
            n_classes = logits.shape[1]
            if counts is None:
                kk = default_k(n_classes) if k is None else k
                check_int_range("k", kk, 1, n_classes)
                counts = torch.zeros(n_classes, dtype=torch.long, device=device)
            top = logits.float().topk(kk, dim=1).indices
            counts += torch.bincount(top.flatten(), minlength=n_classes)
    if counts is None:
        raise ValueError("target_data is empty: pass at least one image")
    return counts.clone()


def source_only(v: Tensor | Iterable[int], v_lo: float) -> Tensor:
    """Eq. 2: ``F = {c : v(c) <= v_lo}``, as a LongTensor of class indices (ascending, on v's device)."""
    check_range("v_lo", v_lo, 0)
    v = torch.as_tensor(v) if not isinstance(v, Tensor) else v
    if v.ndim != 1:
        raise ValueError(f"v must be a 1-d tensor of per-class counts; got shape {tuple(v.shape)}")
    return torch.nonzero(v <= v_lo).flatten()


def _as_set(xs: Tensor | Iterable[int]) -> set[int]:
    if isinstance(xs, Tensor):
        return {int(i) for i in xs.flatten().tolist()}
    return {int(i) for i in xs}


def precision_recall(found: Tensor | Iterable[int], truth: Tensor | Iterable[int]) -> tuple[float, float]:
    """Precision and recall of a found class set against a planted ground truth.

    Undefined ratios (nothing found, or an empty truth) are 0.0, as scikit-learn's ``zero_division=0``.
    """
    f, t = _as_set(found), _as_set(truth)
    hit = len(f & t)
    precision = hit / len(f) if f else 0.0
    recall = hit / len(t) if t else 0.0
    return precision, recall
