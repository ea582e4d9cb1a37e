"""Permutation tests that relabel what H0 makes exchangeable: seeds (:func:`permutation_p`, exact or
Monte Carlo; Fisher 1935; Good 2005; Phipson and Smyth 2010) or whole classes within seeds
(:func:`group_permutation_p`). Inputs and seeds follow ``_stat_inputs``.
"""

from __future__ import annotations

import itertools
import math
from typing import Hashable, Sequence

import numpy as np
import pandas as pd

from ._stat_inputs import BLOCK, ArrayLike, Seed, as_values, check_seed, rng_of
from ._validation import check_choice, check_int_range

__all__ = ["permutation_p", "group_permutation_p", "smallest_p", "ALTERNATIVES"]

ALTERNATIVES = ("two-sided", "greater", "less")
#: ties: a relabelling counts as "at least as extreme" within this relative tolerance
_TIE_RTOL = 1e-12


def _diffs_for(pooled: np.ndarray, idx: np.ndarray, k: int, total: float, sign: float) -> np.ndarray:
    """mean(group given by ``idx`` rows) - mean(the rest), times ``sign``, one value per row of idx."""
    s = pooled[idx].sum(axis=1)
    return sign * (s / k - (total - s) / (len(pooled) - k))


def _extreme(d: np.ndarray, obs: float, tol: float, alternative: str) -> np.ndarray:
    if alternative == "greater":
        return d >= obs - tol
    if alternative == "less":
        return d <= obs + tol
    return np.abs(d) >= abs(obs) - tol


def permutation_p(
    a: ArrayLike,
    b: ArrayLike,
    *,
    alternative: str = "two-sided",
    max_exact: int = 200_000,
    n_resamples: int = 10_000,
    seed: Seed = 0,
) -> float:
    """Permutation p-value for ``mean(a) - mean(b)`` (one value per seed).

    Every split of the pooled values into groups of sizes ``len(a)`` and ``len(b)`` is equally likely
    under H0. With at most ``max_exact`` splits all are enumerated (exact p: the share at least as
    extreme, the observed one included); otherwise ``n_resamples`` seeded random splits give
    ``(hits + 1) / (n_resamples + 1)`` (Phipson and Smyth 2010). ``alternative``: ``"greater"`` is
    ``P(D >= d_obs)``, ``"less"`` ``P(D <= d_obs)``, ``"two-sided"`` ``P(|D| >= |d_obs|)``. Ties within
    ``1e-12 * max|value|`` count as extreme. NaNs are dropped; an empty arm gives NaN.
    """
    alternative = check_choice("alternative", alternative, ALTERNATIVES)
    max_exact = check_int_range("max_exact", max_exact, 0)
    n_resamples = check_int_range("n_resamples", n_resamples, 1)
    seed = check_seed(seed)  # validated now, even when the exact branch needs no random numbers
    x, y = as_values("a", a), as_values("b", b)
    if len(x) == 0 or len(y) == 0:
        return float("nan")
    # Enumerate the smaller group's members (fewer index columns); sign maps its diff to mean(a)-mean(b).
    small, big, sign = (x, y, 1.0) if len(x) <= len(y) else (y, x, -1.0)
    pooled = np.concatenate([small, big])
    n, k = len(pooled), len(small)
    total = float(pooled.sum())
    tol = _TIE_RTOL * float(np.abs(pooled).max())
    obs = float(_diffs_for(pooled, np.arange(k)[None, :], k, total, sign)[0])
    n_splits = math.comb(n, k)
    if n_splits <= max_exact:
        combos = itertools.combinations(range(n), k)
        rows = max(1, BLOCK // k)
        hits = 0
        while True:
            block = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, rows)), dtype=np.intp)
            if block.size == 0:
                break
            d = _diffs_for(pooled, block.reshape(-1, k), k, total, sign)
            hits += int(_extreme(d, obs, tol, alternative).sum())
        return hits / n_splits
    rng = rng_of(seed)
    rows = max(1, BLOCK // n)
    hits = 0
    for start in range(0, n_resamples, rows):
        m = min(rows, n_resamples - start)
        keys = rng.random((m, n))
        idx = np.argpartition(keys, k - 1, axis=1)[:, :k]  # a uniform random k-subset per row
        d = _diffs_for(pooled, idx, k, total, sign)
        hits += int(_extreme(d, obs, tol, alternative).sum())
    return (hits + 1) / (n_resamples + 1)


def group_permutation_p(
    values: ArrayLike,
    groups: Sequence[Hashable] | np.ndarray,
    in_set: ArrayLike,
    strata: Sequence[Hashable] | np.ndarray,
    *,
    alternative: str = "two-sided",
    n_resamples: int = 10_000,
    seed: Seed = 0,
) -> tuple[float, float]:
    """``(statistic, p)``: is a set of *groups* (the classes of L) different from the other groups, over
    several strata (seeds)?

    One row per observation, with its ``group``, whether the group is in the set within the row's
    ``stratum`` (``in_set``) and the stratum. Statistic: mean over strata of ``mean(in set) - mean(out)``
    (strata with an empty side left out). Each of ``n_resamples`` draws relabels, in every stratum,
    which whole groups are in the set (its size kept); ``p = (hits + 1) / (n_resamples + 1)``;
    ``alternative`` as in :func:`permutation_p`. NaN values are dropped; no usable stratum: NaNs.
    """
    alternative = check_choice("alternative", alternative, ALTERNATIVES)
    n_resamples = check_int_range("n_resamples", n_resamples, 1)
    rng = rng_of(seed)
    v = as_values("values", values, drop_nan=False)
    flag = np.asarray(in_set)
    if flag.dtype != bool:
        flag = as_values("in_set", in_set, drop_nan=False) > 0.5
    g_lab, s_lab = np.asarray(groups, dtype=object), np.asarray(strata, dtype=object)
    if not len(v) == len(flag) == len(g_lab) == len(s_lab):
        raise ValueError(
            "values, groups, in_set and strata must have one entry per row; got lengths "
            f"{len(v)}, {len(g_lab)}, {len(flag)}, {len(s_lab)}"
        )
    keep = ~np.isnan(v)
    v, flag, g_lab, s_lab = v[keep], flag[keep], g_lab[keep], s_lab[keep]
    parts = []  # per stratum: group sums, group sizes, observed membership of each group
    for s_ in pd.unique(pd.Series(s_lab, dtype=object)):
        rows = s_lab == s_
        codes, _ = pd.factorize(pd.Series(g_lab[rows], dtype=object))
        sums = np.bincount(codes, weights=v[rows])
        sizes = np.bincount(codes).astype(np.float64)
        member = np.zeros(len(sizes), dtype=bool)
        member[codes[flag[rows]]] = True
        if np.any(member[codes] != flag[rows]):
            raise ValueError(f"in_set must be the same for every row of a group within a stratum (stratum {s_!r})")
        if 0 < member.sum() < len(member):
            parts.append((sums, sizes, member))
    if not parts:
        return float("nan"), float("nan")

    def stat(sums: np.ndarray, sizes: np.ndarray, member: np.ndarray) -> np.ndarray:
        ins = (member * sums).sum(-1) / (member * sizes).sum(-1)
        outs = (~member * sums).sum(-1) / (~member * sizes).sum(-1)
        return ins - outs

    obs = float(np.mean([stat(*p) for p in parts]))
    tol = _TIE_RTOL * max(1.0, float(np.abs(v).max()))
    draws = np.zeros(n_resamples)
    for sums, sizes, member in parts:
        k, g = int(member.sum()), len(member)
        keys = rng.random((n_resamples, g))
        chosen = np.zeros((n_resamples, g), dtype=bool)
        np.put_along_axis(chosen, np.argpartition(keys, k - 1, axis=1)[:, :k], True, axis=1)
        draws += stat(sums[None, :], sizes[None, :], chosen)
    draws /= len(parts)
    hits = int(_extreme(draws, obs, tol, alternative).sum())
    return obs, (hits + 1) / (n_resamples + 1)


def smallest_p(n_reference: int, n_baseline: int, alternative: str = "two-sided") -> float:
    """The smallest exact permutation p that ``n_reference`` against ``n_baseline`` seeds allow
    (:func:`permutation_p` on two fully separated samples): below ``1 / alpha`` relabellings nothing holds."""
    a, b = np.arange(int(n_reference), dtype=float), np.arange(int(n_baseline), dtype=float)
    return float(permutation_p(a + int(n_baseline) + 1e6, b, alternative=alternative))
