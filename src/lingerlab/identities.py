"""Identities of a training run's inputs for cache keys: initial weights, architecture, data and
callables (augmentation, extra losses, model factories)."""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from . import cache as _cache
from ._data import ImageData, batches, num_items

__all__ = ["weights_fingerprint", "architecture_key", "data_fingerprint", "callable_key"]


def weights_fingerprint(model: nn.Module) -> str:
    """Hash of a model's state dict (0-d tensors such as ``num_batches_tracked`` included)."""
    return _cache.fingerprint({k: (v.reshape(1) if v.ndim == 0 else v) for k, v in model.state_dict().items()})


def architecture_key(model: nn.Module) -> str:
    """Hash of a model's structure and the module settings a state dict does not hold (BatchNorm
    momentum and eps, dropout rates, conv strides...): every module's name, type and ``extra_repr``."""
    return _cache.fingerprint([(n, type(m).__qualname__, m.extra_repr()) for n, m in model.named_modules()])


def data_fingerprint(data: ImageData) -> str:
    """A stable hash of a dataset's contents.

    Uses, in order: a ``fingerprint`` attribute (lazy file datasets define one from paths, sizes and
    labels), the tensors of a ``TensorDataset``/``Tensor``, a ``Subset``'s parent and indices, else
    every item (images and labels) read once.
    """
    fp = getattr(data, "fingerprint", None)
    if isinstance(fp, str) and fp:
        return fp
    if isinstance(data, Tensor):
        return _cache.fingerprint("tensor", data)
    if isinstance(data, TensorDataset):
        return _cache.fingerprint("tensors", list(data.tensors))
    if isinstance(data, Subset):
        return _cache.fingerprint("subset", data_fingerprint(data.dataset), [int(i) for i in data.indices])
    if isinstance(data, DataLoader):
        return data_fingerprint(data.dataset)  # type: ignore[arg-type]
    parts: list[Any] = [type(data).__name__, num_items(data)]
    for x, y in batches(data, batch_size=256):
        parts.append(_cache.fingerprint(x, y))
    return _cache.fingerprint("items", parts)


def callable_key(fn: Callable[..., Any] | None) -> str | None:
    """Identity of a callable for a cache key: :func:`lingerlab.cache.fingerprint` of it (None for None).

    An object may define ``cache_key`` (a plain-data description of what it computes); otherwise the
    key hashes its code (the ``lingerlab`` module closure that defines it, or its own source) and the
    values it closes over (``functools.partial`` arguments, defaults, closure cells, an instance's
    attributes), so editing the function or changing a captured hyper-parameter invalidates the cache.
    An object that cannot be hashed stably raises ``TypeError``.
    """
    return None if fn is None else _cache.fingerprint(fn, length=24)
