"""How the batched passes run: split across processes, and at what precision.

**Processes.** When a ``torch.distributed`` process group is initialised with more than one process
(``torchrun --nproc-per-node N ...`` and then :func:`init_from_env`, or the caller's own
``init_process_group``), the batched passes split their data: Eq. 1 counts
(:func:`lingerlab.features.source_class_counts`), Eq. 3 class means
(:func:`lingerlab.lingering.class_mean_probs` and :func:`lingerlab.lingering.lingering`) and the
Grad-CAM maps of Eq. 4 (:func:`lingerlab.attribution.gradcam`). Each process takes its
:func:`shard_indices` of the data, and the results are combined with ``all_reduce`` (counts, sums)
or ``all_gather`` (maps, back in the original order), so every process ends with the full result.
Nothing here schedules work or starts processes: the launcher does that. Without a process group,
or with one process, every helper is a no-op and the passes run exactly as in a plain session.

Which device a collective runs on: the gloo backend on CPU tensors, nccl on CUDA tensors; a
tensor on the other kind of device is copied over and back (with a ``"cpu:gloo,cuda:nccl"`` group,
which :func:`init_from_env` creates when CUDA is available, both stay where they are).

**Precision.** :func:`check_autocast` and :func:`autocast_context` implement the ``autocast=``
option of those passes: ``None`` or ``"fp32"`` (default) is the float32 path, unchanged;
``"bf16"`` runs the model's forward under ``torch.autocast(device_type, dtype=torch.bfloat16)``.
It pays on GPUs with bf16 tensor cores; on the CPU keep float32 (benchmarks/bf16_cpu.py measured
bf16 *slower* for EfficientNet-Lite0 there).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Callable, ContextManager, TypeVar

import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    Subset,
    TensorDataset,
)

from ._validation import check_choice, check_int_range

__all__ = [
    "is_distributed",
    "rank",
    "world_size",
    "init_from_env",
    "shard_indices",
    "shard_data",
    "all_reduce_sum",
    "all_reduce_max",
    "all_gather_cat",
    "run_local",
    "AUTOCAST_CHOICES",
    "check_autocast",
    "autocast_context",
]

T = TypeVar("T")


# --------------------------------------------------------------------------- the process group


def _dist():
    import torch.distributed as dist

    return dist


def is_distributed() -> bool:
    """Whether the passes split their data: ``torch.distributed`` is available, a process group is
    initialised and it holds more than one process."""
    dist = _dist()
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def rank() -> int:
    """This process's rank in the group (0 when not distributed)."""
    return int(_dist().get_rank()) if is_distributed() else 0


def world_size() -> int:
    """The number of processes the passes split across (1 when not distributed)."""
    return int(_dist().get_world_size()) if is_distributed() else 1


def init_from_env(backend: str | None = None) -> bool:
    """Initialise the default process group from a launcher's environment (``torchrun`` sets
    ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``, ``LOCAL_RANK``); return
    :func:`is_distributed`.

    Does nothing when a group already exists or ``WORLD_SIZE`` is unset or 1 (a plain run).
    ``backend=None``: ``"cpu:gloo,cuda:nccl"`` when CUDA is available (each process then uses GPU
    ``LOCAL_RANK`` as its current device, so ``"cuda"`` means its own GPU), else ``"gloo"``.
    """
    dist = _dist()
    if not dist.is_available():
        return False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if backend is None:
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if "nccl" in backend and torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        dist.init_process_group(backend=backend)
    return is_distributed()


# --------------------------------------------------------------------------- splitting the data


def shard_indices(n: int, rank: int | None = None, world_size: int | None = None) -> range:
    """The indices of ``0..n-1`` that process ``rank`` of ``world_size`` handles (defaults: this
    process and the current group).

    **Contiguous** blocks, in rank order, whose sizes differ by at most one (the first ``n %
    world_size`` ranks get one more): every index lands on exactly one rank, and concatenating the
    ranks' results in rank order restores the original order. A rank may get an empty range when
    ``n < world_size``.
    """
    n = check_int_range("n", n, 0)
    group = is_distributed()
    if world_size is None:
        w = _dist().get_world_size() if group else 1
    else:
        w = check_int_range("world_size", world_size, 1)
    r = (_dist().get_rank() if group else 0) if rank is None else check_int_range("rank", rank, 0, w - 1)
    base, extra = divmod(n, w)
    start = r * base + min(r, extra)
    return range(start, start + base + (1 if r < extra else 0))


def shard_data(data: Any, indices: range | None = None) -> Any:
    """This process's part of ``data`` (``ImageData``) at ``indices`` (default: :func:`shard_indices`).

    A tensor becomes a slice (a view), a ``TensorDataset`` a ``TensorDataset`` of slices, any other
    map-style ``Dataset`` a ``Subset``, and a ``DataLoader`` with sequential sampling the same kind
    of loader over the shard of its dataset. A loader that shuffles or samples otherwise, an
    iterable dataset or ``drop_last=True`` cannot be split consistently and raises ValueError.
    """
    from ._data import num_items

    idx = shard_indices(num_items(data)) if indices is None else indices
    if isinstance(data, Tensor):
        return data[idx.start : idx.stop]
    if isinstance(data, TensorDataset):
        return TensorDataset(*(t[idx.start : idx.stop] for t in data.tensors))
    if isinstance(data, DataLoader):
        sequential = (
            isinstance(data.sampler, SequentialSampler)
            and isinstance(data.batch_sampler, BatchSampler)
            and not data.drop_last
            and not isinstance(data.dataset, IterableDataset)
        )
        if not sequential:
            raise ValueError(
                "in a distributed run, a DataLoader must sample sequentially (no shuffle, sampler "
                "or drop_last) to be split across processes; pass its dataset instead"
            )
        kwargs: dict[str, Any] = dict(
            batch_size=data.batch_size,
            shuffle=False,
            num_workers=data.num_workers,
            collate_fn=data.collate_fn,
            pin_memory=data.pin_memory,
            timeout=data.timeout,
            worker_init_fn=data.worker_init_fn,
        )
        if data.num_workers > 0:
            kwargs.update(prefetch_factor=data.prefetch_factor, persistent_workers=data.persistent_workers)
        return DataLoader(shard_data(data.dataset, idx), **kwargs)
    if isinstance(data, IterableDataset):
        raise ValueError("an IterableDataset cannot be split across processes; pass a map-style Dataset")
    if isinstance(data, Dataset):
        return Subset(data, list(idx))
    raise TypeError(
        f"data must be a Tensor [N, 3, H, W], a Dataset of (image, label) or a DataLoader; got {type(data).__name__}"
    )


# --------------------------------------------------------------------------- collectives


def _comm_device(t: Tensor) -> torch.device:
    """The device the group's backend takes ``t`` on: its own when the backend serves its device
    type, else CPU (gloo) or the current CUDA device (nccl)."""
    backend = str(_dist().get_backend()).lower()
    kind = t.device.type
    if ":" in backend:  # "cpu:gloo,cuda:nccl"
        served = {part.split(":")[0].strip() for part in backend.split(",")}
        if kind in served:
            return t.device
        return torch.device("cpu") if "cpu" in served else torch.device("cuda", torch.cuda.current_device())
    if backend == "gloo":
        return torch.device("cpu")
    if backend == "nccl":
        return t.device if kind == "cuda" else torch.device("cuda", torch.cuda.current_device())
    return t.device


def _all_reduce(t: Tensor, op: Any) -> Tensor:
    if not is_distributed():
        return t
    dev = _comm_device(t)
    if dev == t.device:
        _dist().all_reduce(t, op=op)
    else:
        buf = t.to(dev)
        _dist().all_reduce(buf, op=op)
        t.copy_(buf)
    return t


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over all processes, in place; return ``t`` (a no-op when not distributed).

    Integer sums are exact; floating-point sums depend on the order of addition only by rounding.
    ``t`` must not be an inference tensor (clone one made under ``torch.inference_mode``).
    """
    return _all_reduce(t, _dist().ReduceOp.SUM if is_distributed() else None)


def all_reduce_max(t: Tensor) -> Tensor:
    """Elementwise maximum of ``t`` over all processes, in place; return ``t`` (no-op when not distributed)."""
    return _all_reduce(t, _dist().ReduceOp.MAX if is_distributed() else None)


_META = 10  # gathered per rank: n_local, ndim, up to 8 trailing sizes


def all_gather_cat(t: Tensor, n_total: int) -> Tensor:
    """Every process's rows of ``t`` (``[n_local, ...]``) reassembled into one ``[n_total, ...]``
    tensor, in the original order, on every process (on ``t``'s device).

    Rank r holds the rows at ``shard_indices(n_total, r)`` (contiguous blocks), so the result is the
    ranks' rows concatenated in rank order. Ranks may hold different numbers of rows (also none: pass
    an empty tensor of the right dtype; its trailing shape is taken from the others): rows are padded
    to the longest shard, gathered and unpadded. Trailing shapes and dtypes must agree. Not
    distributed: ``t`` itself.
    """
    n_total = check_int_range("n_total", n_total, 0)
    if not is_distributed():
        if len(t) != n_total:
            raise ValueError(f"t must hold n_total = {n_total} rows in a single process; got {len(t)}")
        return t
    dist = _dist()
    w = world_size()
    if t.dim() - 1 > _META - 2:
        raise ValueError(f"t may have at most {_META - 2} trailing dimensions; got shape {tuple(t.shape)}")
    meta = torch.zeros(_META, dtype=torch.long)
    meta[0], meta[1] = len(t), max(t.dim() - 1, 0)
    meta[2 : 2 + max(t.dim() - 1, 0)] = torch.as_tensor(t.shape[1:], dtype=torch.long)
    dev = _comm_device(meta)
    metas = [torch.zeros(_META, dtype=torch.long, device=dev) for _ in range(w)]
    dist.all_gather(metas, meta.to(dev))
    metas = [m.cpu() for m in metas]
    sizes = [int(m[0]) for m in metas]
    shapes = {tuple(int(s) for s in m[2 : 2 + int(m[1])]) for m in metas if int(m[0]) > 0}
    if sum(sizes) != n_total:  # the same check on every rank: all raise together, none hangs
        raise ValueError(f"the ranks hold {sizes} rows ({sum(sizes)} in all); n_total is {n_total}")
    if len(shapes) > 1:
        raise ValueError(f"the ranks' rows have different shapes: {sorted(shapes)}")
    if n_total == 0:
        return t
    trailing = shapes.pop()
    dtype = t.dtype
    wire = torch.uint8 if dtype == torch.bool else dtype  # gloo has no bool collectives
    cdev = _comm_device(t)
    biggest = max(sizes)
    pad = torch.zeros((biggest, *trailing), dtype=wire, device=cdev)
    if len(t):
        pad[: len(t)] = t.to(cdev, wire)
    parts = [torch.empty_like(pad) for _ in range(w)]
    dist.all_gather(parts, pad)
    return torch.cat([p[:s] for p, s in zip(parts, sizes)]).to(t.device, dtype)


def run_local(fn: Callable[[], T]) -> T:
    """Run this process's part of a pass, then agree with the others that every part succeeded.

    Not distributed: just ``fn()``. Distributed: if ``fn`` raises on some process, that process
    re-raises its error and the others raise RuntimeError, instead of waiting forever in the next
    collective for a process that left.
    """
    if not is_distributed():
        return fn()
    error: BaseException | None = None
    out: Any = None
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - re-raised below, after the others know
        error = e
    failed = all_reduce_sum(torch.tensor([0 if error is None else 1], dtype=torch.long))
    if error is not None:
        raise error
    if int(failed) > 0:
        raise RuntimeError(f"{int(failed)} other process(es) failed in this pass; see their error")
    return out


# --------------------------------------------------------------------------- precision

AUTOCAST_CHOICES: tuple[str | None, ...] = (None, "fp32", "bf16")


def check_autocast(autocast: str | None, device: torch.device | str) -> str | None:
    """Validate an ``autocast=`` option for a model on ``device``: ``None`` for the float32 path
    (``None`` or ``"fp32"``), ``"bf16"`` when bfloat16 autocast is supported there.

    A value other than the choices raises (TypeError for a non-string, ValueError otherwise); bf16 on a
    device type without autocast, or where autocast would switch itself off (a CUDA GPU without
    bf16), raises ValueError.
    """
    mode = check_choice("autocast", autocast, AUTOCAST_CHOICES)
    if mode in (None, "fp32"):
        return None
    kind = torch.device(device).type
    reason = None
    if not torch.amp.is_autocast_available(kind):
        reason = f"torch has no autocast for device type {kind!r}"
    else:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ctx = torch.autocast(kind, dtype=torch.bfloat16)
            if not getattr(ctx, "_enabled", True):
                reason = "; ".join(str(w.message) for w in caught) or "autocast disables itself"
        except (RuntimeError, AssertionError) as e:
            reason = str(e)
    if reason is not None:
        raise ValueError(f"autocast='bf16' is not supported on {device}: {reason}. Use autocast=None (float32)")
    return mode


def autocast_context(device: torch.device | str, mode: str | None) -> ContextManager[Any]:
    """A fresh context for one forward pass: ``nullcontext()`` for ``mode`` None (float32, nothing
    changes), ``torch.autocast(device.type, dtype=torch.bfloat16)`` for ``"bf16"`` (``mode`` as
    returned by :func:`check_autocast`)."""
    if mode is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
