"""How the batched passes run: split across processes, and at what precision.

With a ``torch.distributed`` group of several processes (``torchrun`` then :func:`init_from_env`),
Eq. 1 counts, Eq. 3 class means and Eq. 4's Grad-CAM maps each take this process's
:func:`shard_indices` and combine with ``all_reduce`` / ``all_gather`` so every process ends with the
full result; without one every helper is a no-op. Collectives run on gloo (CPU) or nccl (CUDA),
copying a tensor over when needed. :func:`check_autocast` / :func:`autocast_context` implement the
passes' ``autocast=`` option: None/``"fp32"`` (float32) or ``"bf16"`` (slower on CPU: benchmarks/bf16_cpu.py).
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
    """Initialise the default process group from ``torchrun``'s environment unless one exists or
    ``WORLD_SIZE`` is at most 1; return :func:`is_distributed`. ``backend=None``: ``"cpu:gloo,cuda:nccl"``
    with CUDA (GPU ``LOCAL_RANK`` made current), else ``"gloo"``."""
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
    """The contiguous block of ``0..n-1`` that process ``rank`` of ``world_size`` handles (defaults: this
    process and group); blocks in rank order differ in size by at most one (the first ranks get more)."""
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
    """This process's part of ``data`` (``ImageData``) at ``indices`` (default: :func:`shard_indices`), of
    the same kind; a loader that is not sequential or an iterable dataset raises ValueError."""
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
        keys = ["batch_size", "num_workers", "collate_fn", "pin_memory", "timeout", "worker_init_fn"]
        keys += ["prefetch_factor", "persistent_workers"] if data.num_workers > 0 else []
        return DataLoader(shard_data(data.dataset, idx), shuffle=False, **{k: getattr(data, k) for k in keys})
    if isinstance(data, IterableDataset):
        raise ValueError("an IterableDataset cannot be split across processes; pass a map-style Dataset")
    if isinstance(data, Dataset):
        return Subset(data, list(idx))
    raise TypeError(
        f"data must be a Tensor [N, 3, H, W], a Dataset of (image, label) or a DataLoader; got {type(data).__name__}"
    )


# --------------------------------------------------------------------------- collectives


def _comm_device(t: Tensor) -> torch.device:
    """The device the group's backend takes ``t`` on (its own, else CPU for gloo or CUDA for nccl)."""
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
    """Sum ``t`` over all processes, in place; return ``t`` (no-op when not distributed; not an inference tensor)."""
    return _all_reduce(t, _dist().ReduceOp.SUM if is_distributed() else None)


def all_reduce_max(t: Tensor) -> Tensor:
    """Elementwise maximum of ``t`` over all processes, in place; return ``t`` (no-op when not distributed)."""
    return _all_reduce(t, _dist().ReduceOp.MAX if is_distributed() else None)


_META = 10  # gathered per rank: n_local, ndim, up to 8 trailing sizes


def all_gather_cat(t: Tensor, n_total: int) -> Tensor:
    """Every process's rows of ``t`` (its :func:`shard_indices` block, possibly empty) concatenated in
    rank order into ``[n_total, ...]`` on every process; padded to the longest shard for the gather."""
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
    """``fn()``, then agree that every process succeeded: a failing process re-raises its error and the
    others raise RuntimeError instead of hanging in the next collective."""
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
    """An ``autocast=`` option checked for ``device``: None (float32, for None or ``"fp32"``) or ``"bf16"``;
    bf16 where autocast is missing or would switch itself off raises ValueError."""
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
    """A fresh context for one forward pass: ``nullcontext()`` for None, bf16 ``torch.autocast`` for ``"bf16"``."""
    if mode is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
