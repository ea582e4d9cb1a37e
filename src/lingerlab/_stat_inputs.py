"""The conventions every statistic of the package follows (``bootstrap``, ``permutation``, ``verdict_rule``).

Inputs are 1-D sequences, NumPy arrays or torch tensors of floats; NaN values are dropped (per arm,
or per row for paired data) before anything is computed, and infinite values raise ValueError.
Every random choice takes ``seed``: an int, a ``numpy.random.Generator`` (used and advanced in
place) or a ``torch.Generator`` (one draw from it seeds a NumPy generator). The same seed and the
same inputs give the same numbers.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np
import torch

from ._validation import check_int_range

__all__ = ["Seed", "ArrayLike", "BLOCK", "as_values", "check_seed", "rng_of", "real"]

Seed = Union[int, np.integer, np.random.Generator, torch.Generator]
ArrayLike = Union[Sequence[float], np.ndarray, torch.Tensor]

#: how many random integers one bootstrap / Monte Carlo block may hold (memory bound)
BLOCK = 2_000_000


def as_values(name: str, x: ArrayLike, *, drop_nan: bool = True) -> np.ndarray:
    """``x`` as a 1-D float64 array (NaNs dropped unless ``drop_nan`` is False); infinities raise."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    if isinstance(x, (str, bytes)) or np.isscalar(x):
        raise TypeError(f"{name} must be a 1-D sequence, array or tensor of floats; got {type(x).__name__}")
    try:
        v = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a 1-D sequence, array or tensor of floats; got {type(x).__name__}") from e
    if v.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {v.shape}")
    if np.isinf(v).any():
        raise ValueError(f"{name} must hold finite values (NaN is allowed and dropped); got an infinity")
    return v[~np.isnan(v)] if drop_nan else v


def check_seed(seed: Seed) -> Seed:
    """Validate ``seed`` (a non-negative int, a NumPy or a torch generator); return it (ints as int)."""
    if isinstance(seed, (np.random.Generator, torch.Generator)):
        return seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)):
        raise TypeError(
            "seed must be a non-negative integer, a numpy.random.Generator or a torch.Generator; "
            f"got {type(seed).__name__} {seed!r}"
        )
    return check_int_range("seed", seed, 0)


def rng_of(seed: Seed) -> np.random.Generator:
    """A NumPy generator from an int seed, a NumPy generator (returned as is, advanced by its use) or a
    torch generator (one draw from it seeds a fresh NumPy generator)."""
    seed = check_seed(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=seed)))
    return np.random.default_rng(seed)


def real(name: str, value: Any) -> float:
    """A real number (NaN allowed) as a Python float; TypeError naming ``name`` otherwise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number (NaN allowed); got {type(value).__name__} {value!r}")
    return float(value)
