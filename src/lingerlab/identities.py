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
    """Hash of a model's structure and the settings a state dict lacks (momenta, dropout rates,
    strides): every module's name, type and ``extra_repr``."""
    return _cache.fingerprint([(n, type(m).__qualname__, m.extra_repr()) for n, m in model.named_modules()])


def data_fingerprint(data: ImageData) -> str:
    """A stable hash of a dataset's contents: its ``fingerprint`` attribute, its tensors, a ``Subset``'s
    parent and indices, else every item read once."""
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
    items = [_cache.fingerprint(x, y) for x, y in batches(data, batch_size=256)]
    return _cache.fingerprint("items", [type(data).__name__, num_items(data), *items])


def callable_key(fn: Callable[..., Any] | None) -> str | None:
    """Identity of a callable for a cache key (None for None): its ``cache_key``, else its code and the
    values it closes over (:func:`lingerlab.cache.fingerprint`); ``TypeError`` if it cannot be hashed."""
    return None if fn is None else _cache.fingerprint(fn, length=24)
