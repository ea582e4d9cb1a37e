"""Source-only features: which source classes never show up in the target data (paper, Eqs. 1-2)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from ._data import ImageData, batches, model_device, num_items
from ._validation import check_int_range, check_range
from . import distributed as _dist
from .distributed import autocast_context, check_autocast
from .models import eval_mode


def default_k(num_source_classes: int) -> int:
    """Eq. 1's k, scaled with the source label space: ``max(1, round(5 * n / 1000))``.

    The paper uses top-5 over ImageNet's 1000 classes (0.5% of the label space). Kept fixed at 5
    over a few dozen classes, top-5 is a fifth of the label space: nearly every class lands in
    some image's top 5 by chance, v(c) is high everywhere and the source-only tail is flooded
    (notebook 2 measures recall against k on the planted truth).
    Scaling keeps the same fraction: 5 for 1000 classes, 1 for tens of classes.
    """
    check_int_range("num_source_classes", num_source_classes, 1)
    return max(1, round(5 * num_source_classes / 1000))


def _count_pass(
    source_model: nn.Module, data: ImageData, k: int | None, batch_size: int, device: torch.device, amp: str | None
) -> Tensor | None:
    """Eq. 1's counts over ``data`` (None when it yields no batch)."""
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
    return counts


def source_class_counts(
    source_model: nn.Module,
    target_data: ImageData,
    k: int | None = None,
    batch_size: int = 64,
    *,
    autocast: str | None = None,
) -> Tensor:
    """Eq. 1: ``v(c) = |{x in D^t : c in top_k(M^s(x))}|`` for every source class c.

    One batched pass of ``source_model`` (in eval mode, under ``torch.inference_mode``) over
    ``target_data``; labels, if any, are ignored. ``k=None`` uses :func:`default_k`.
    Returns a LongTensor ``[num_source_classes]`` on the model's device; ``v.sum() == k * N``.

    ``autocast``: ``None``/``"fp32"`` (default) runs in float32; ``"bf16"`` runs the forward under
    bfloat16 autocast (for GPUs; ValueError where unsupported). bf16 rounds logits to 8 bits of
    mantissa, so images whose k-th and (k+1)-th logits are close change their top-k set. Stated
    tolerance, checked by tests/test_precision.py on a small random CNN with close logits (64
    images, 20 classes, k = 1 and 2): at least 90% of the images keep their top-k set (measured
    93.8-100% over 20 seeds), at least 50% of the classes keep exactly their float32 count
    (measured 60-100%) and no count moves by more than 3 (measured <= 2). The count of a class is
    a sum over images, so the fraction of classes with an exact count falls as N grows; the
    per-image agreement is the scale-free number.

    In a distributed run (:mod:`lingerlab.distributed`) each process counts its shard of
    ``target_data`` and the counts are summed over processes (int64: exactly one process's counts,
    unless float rounding of a different batching flips a top-k tie); every process gets them all.
    """
    if k is not None:
        check_int_range("k", k, 1)
    check_int_range("batch_size", batch_size, 1)
    n = num_items(target_data)
    if n == 0:
        raise ValueError("target_data is empty: pass at least one image")
    device = model_device(source_model)
    amp = check_autocast(autocast, device)
    if not _dist.is_distributed():
        counts = _count_pass(source_model, target_data, k, batch_size, device, amp)
        if counts is None:
            raise ValueError("target_data is empty: pass at least one image")
        return counts.clone()
    shard = _dist.shard_data(target_data)
    local = _dist.run_local(lambda: _count_pass(source_model, shard, k, batch_size, device, amp))
    # a process whose shard is empty (N < processes) learns the number of classes from the others
    n_classes = int(_dist.all_reduce_max(torch.tensor([0 if local is None else len(local)], dtype=torch.long)))
    if n_classes == 0:
        raise ValueError("target_data is empty: pass at least one image")
    counts = (
        torch.zeros(n_classes, dtype=torch.long, device=device) if local is None else local.clone()
    )  # a clone: the pass made an inference tensor, which cannot be summed in place
    return _dist.all_reduce_sum(counts)


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
