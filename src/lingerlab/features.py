"""Source-only features: which source classes never show up in the target data (paper, Eqs. 1-2)."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor, nn

from ._data import ImageData, batches, model_device, num_items
from ._validation import check_int_range, check_range
from . import distributed as _dist
from .distributed import autocast_context, check_autocast
from .models import eval_mode


def default_k(num_source_classes: int) -> int:
    """Eq. 1's k, scaled with the source label space: ``max(1, round(5 * n / 1000))``.

    The paper's top-5 over ImageNet's 1000 classes is 0.5% of the label space; fixed at 5 over a few
    dozen classes, nearly every class would land in some image's top 5 by chance (notebook 2).
    """
    check_int_range("num_source_classes", num_source_classes, 1)
    return max(1, round(5 * num_source_classes / 1000))


def _sum_over_shards(
    one_pass: Callable[[ImageData], list[Tensor] | None], data: ImageData, zeros: Callable[[int], list[Tensor]]
) -> list[Tensor] | None:
    """``one_pass(data)`` (per-class tensors, the last one the counts; None for no batch). Distributed,
    each process passes over its shard and the tensors are summed over processes; a process whose
    shard is empty learns the number of classes from the others (``zeros``)."""
    if not _dist.is_distributed():
        return one_pass(data)
    shard = _dist.shard_data(data)
    local = _dist.run_local(lambda: one_pass(shard))
    c = int(_dist.all_reduce_max(torch.tensor([0 if local is None else len(local[-1])], dtype=torch.long)))
    if c == 0:
        return None
    return [_dist.all_reduce_sum(t) for t in (zeros(c) if local is None else local)]


def _count_pass(
    source_model: nn.Module, data: ImageData, k: int | None, batch_size: int, device: torch.device, amp: str | None
) -> list[Tensor] | None:
    """Eq. 1's counts over ``data`` (None when it yields no batch), as a one-element list."""
    counts: Tensor | None = None
    with eval_mode(source_model), torch.inference_mode():
        for x, _ in batches(data, batch_size, device):
            with autocast_context(device, amp):
                logits = source_model(x)
            n_classes = logits.shape[1]
            if counts is None:
                kk = default_k(n_classes) if k is None else k
                check_int_range("k", kk, 1, n_classes)
                counts = torch.zeros(n_classes, dtype=torch.long, device=device)
            top = logits.float().topk(kk, dim=1).indices
            counts += torch.bincount(top.flatten(), minlength=n_classes)
    # a clone: the pass made an inference tensor, which cannot be summed in place
    return None if counts is None else [counts.clone()]


def source_class_counts(
    source_model: nn.Module,
    target_data: ImageData,
    k: int | None = None,
    batch_size: int = 64,
    *,
    autocast: str | None = None,
) -> Tensor:
    """Eq. 1: ``v(c) = |{x in D^t : c in top_k(M^s(x))}|`` for every source class c.

    One pass of ``source_model`` (eval mode, ``torch.inference_mode``) over ``target_data``; labels are
    ignored; ``k=None`` uses :func:`default_k`. Returns a LongTensor ``[num_source_classes]`` on the
    model's device; ``v.sum() == k * N``. ``autocast="bf16"`` runs the forward in bfloat16, which can
    change the top-k set of images with close logits (tolerances: tests/test_precision.py).
    Distributed, each process counts its shard and the counts are summed over processes.
    """
    if k is not None:
        check_int_range("k", k, 1)
    check_int_range("batch_size", batch_size, 1)
    n = num_items(target_data)
    if n == 0:
        raise ValueError("target_data is empty: pass at least one image")
    device = model_device(source_model)
    amp = check_autocast(autocast, device)
    counts = _sum_over_shards(
        lambda data: _count_pass(source_model, data, k, batch_size, device, amp),
        target_data,
        lambda c: [torch.zeros(c, dtype=torch.long, device=device)],
    )
    if counts is None:
        raise ValueError("target_data is empty: pass at least one image")
    return counts[0]


def source_only(v: Tensor | Iterable[int], v_lo: float) -> Tensor:
    """Eq. 2: ``F = {c : v(c) <= v_lo}``, as a LongTensor of class indices (ascending, on v's device)."""
    check_range("v_lo", v_lo, 0)
    v = torch.as_tensor(v) if not isinstance(v, Tensor) else v
    if v.ndim != 1:
        raise ValueError(f"v must be a 1-d tensor of per-class counts; got shape {tuple(v.shape)}")
    return torch.nonzero(v <= v_lo).flatten()


def _as_set(xs: Tensor | Iterable[int]) -> set[int]:
    return {int(i) for i in (xs.flatten().tolist() if isinstance(xs, Tensor) else xs)}


def precision_recall(found: Tensor | Iterable[int], truth: Tensor | Iterable[int]) -> tuple[float, float]:
    """Precision and recall of a found class set against a planted ground truth (undefined ratios are
    0.0, as scikit-learn's ``zero_division=0``)."""
    f, t = _as_set(found), _as_set(truth)
    hit = len(f & t)
    precision = hit / len(f) if f else 0.0
    recall = hit / len(t) if t else 0.0
    return precision, recall
