"""Statistics for comparing training arms with several seeds each (the comparison protocol).

The unit of a model-level test is the *seed*: each arm gives one value per trained model, and
two arms are compared by the difference of their means with

- :func:`permutation_p`: an exact permutation test over all relabellings of the pooled seeds
  (Fisher 1935; Good, *Permutation, Parametric and Bootstrap Tests of Hypotheses*, 2005), or a seeded
  Monte Carlo estimate ``(hits + 1) / (n + 1)`` (Phipson and Smyth 2010) when there are too many;
  at 5 + 5 seeds the smallest two-sided p is 2/252 (about 0.008);
- :func:`bootstrap_diff_ci`: a percentile bootstrap interval, resampling each arm's seeds with
  replacement independently (Efron and Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 13);
- :func:`holm` / :func:`holm_family`: Holm's step-down correction across the family of tests of one
  world (Holm 1979);
- :func:`hierarchical_bootstrap`: bootstrap draws of a mean over seeds of per-seed class means,
  resampling seeds and then the classes within each drawn seed (Davison and Hinkley 1997, sec. 3.8),
  because which classes a seed's L holds is a large part of what varies;
- :func:`minimum_detectable_effect`: the smallest true effect a one-sided test detects with 80% power;
- :func:`verdict`: the one rule that turns (effect, intervals, adjusted p-values, gate) into one of
  the four verdicts;
- :func:`compare_arms`: all of it for one measure, one row per arm against a reference arm.

Composite-level intervals use the cluster bootstrap (:func:`cluster_bootstrap_ci`,
:func:`paired_cluster_bootstrap_ci`): augmented views of one source photo are one cluster, and whole
clusters are resampled (Field and Welsh 2007; Cameron, Gelbach and Miller 2008). Seeds x composites
are never pooled as independent observations.

Conventions: inputs are 1-D sequences, NumPy arrays or torch tensors of floats; NaN values are
dropped (per arm, or per row for paired data) before anything is computed, and infinite values raise
ValueError. Every random choice takes ``seed``: an int, a ``numpy.random.Generator`` (used and
advanced in place) or a ``torch.Generator`` (one draw from it seeds a NumPy generator). The same
seed and the same inputs give the same numbers.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Hashable, Mapping, Sequence, Union

import numpy as np
import pandas as pd
import torch

from ._validation import check_choice, check_int_range, check_range

__all__ = [
    "hierarchical_bootstrap",
    "minimum_detectable_effect",
    "permutation_p",
    "group_permutation_p",
    "bootstrap_diff_ci",
    "holm",
    "holm_family",
    "cluster_bootstrap_ci",
    "paired_cluster_bootstrap_ci",
    "verdict",
    "compare_arms",
    "VERDICTS",
    "ALTERNATIVES",
]

Seed = Union[int, np.integer, np.random.Generator, torch.Generator]
ArrayLike = Union[Sequence[float], np.ndarray, torch.Tensor]

VERDICTS = ("holds", "does not hold", "inconclusive", "not testable", "not measured")
ALTERNATIVES = ("two-sided", "greater", "less")
DIRECTIONS = ("higher", "lower")

#: how many random integers one bootstrap / Monte Carlo block may hold (memory bound)
_BLOCK = 2_000_000
#: ties: a relabelling counts as "at least as extreme" within this relative tolerance
_TIE_RTOL = 1e-12


# ----------------------------------------------------------------------------------------- helpers
def _values(name: str, x: ArrayLike, *, drop_nan: bool = True) -> np.ndarray:
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


def _check_seed(seed: Seed) -> Seed:
    """Validate ``seed`` (a non-negative int, a NumPy or a torch generator); return it (ints as int)."""
    if isinstance(seed, (np.random.Generator, torch.Generator)):
        return seed
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)):
        raise TypeError(
            "seed must be a non-negative integer, a numpy.random.Generator or a torch.Generator; "
            f"got {type(seed).__name__} {seed!r}"
        )
    return check_int_range("seed", seed, 0)


def _rng(seed: Seed) -> np.random.Generator:
    """A NumPy generator from an int seed, a NumPy generator (returned as is, advanced by its use) or a
    torch generator (one draw from it seeds a fresh NumPy generator)."""
    seed = _check_seed(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, torch.Generator):
        return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=seed)))
    return np.random.default_rng(seed)


def _real(name: str, value: Any) -> float:
    """A real number (NaN allowed) as a Python float; TypeError naming ``name`` otherwise."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number (NaN allowed); got {type(value).__name__} {value!r}")
    return float(value)


def _percentile_interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------ permutation test
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
    """Permutation p-value for the difference in means ``mean(a) - mean(b)`` (one value per seed).

    Under H0 the labels are exchangeable: every split of the pooled values into groups of sizes
    ``len(a)`` and ``len(b)`` is equally likely. When there are at most ``max_exact`` such splits
    (``comb(n_a + n_b, n_a)``; 252 at 5 + 5, 184,756 at 10 + 10) all of them are enumerated and the
    p-value is exact: the share of splits (the observed one included) whose difference is at least as
    extreme as the observed one. Otherwise ``n_resamples`` random splits are drawn (seeded by ``seed``)
    and ``p = (hits + 1) / (n_resamples + 1)`` (Phipson and Smyth 2010), never 0.

    ``alternative``: ``"greater"`` tests mean(a) > mean(b) (``P(D >= d_obs)``), ``"less"``
    mean(a) < mean(b) (``P(D <= d_obs)``), ``"two-sided"`` is ``P(|D| >= |d_obs|)``. (For unequal
    group sizes the permutation distribution need not be symmetric, and this differs from SciPy's
    two-sided ``2 * min(P(D >= d), P(D <= d))``; at equal sizes they agree.) Ties count as extreme
    within ``1e-12 * max|pooled value|``. NaNs are dropped from each arm first; NaN is returned when
    an arm is then empty. Identical arms give 1.0 (two-sided).
    """
    alternative = check_choice("alternative", alternative, ALTERNATIVES)
    max_exact = check_int_range("max_exact", max_exact, 0)
    n_resamples = check_int_range("n_resamples", n_resamples, 1)
    seed = _check_seed(seed)  # validated now, even when the exact branch needs no random numbers
    x, y = _values("a", a), _values("b", b)
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
        rows = max(1, _BLOCK // k)
        hits = 0
        while True:
            block = np.fromiter(itertools.chain.from_iterable(itertools.islice(combos, rows)), dtype=np.intp)
            if block.size == 0:
                break
            d = _diffs_for(pooled, block.reshape(-1, k), k, total, sign)
            hits += int(_extreme(d, obs, tol, alternative).sum())
        return hits / n_splits
    rng = _rng(seed)
    rows = max(1, _BLOCK // n)
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
    """``(statistic, p)``: is a set of *groups* different from the other groups, over several strata?

    Each row is one observation (a composite) with its ``group`` (its source class), whether that group
    is in the set within the row's stratum (``in_set``: the class is in L of that seed's model) and
    its ``stratum`` (the seed). The statistic is the mean over strata of ``mean(values in the set) -
    mean(values outside it)``; strata where either side is empty are left out. Under H0 set
    membership is exchangeable between the groups of a stratum: each of ``n_resamples`` draws
    relabels, independently in every stratum, which groups are in the set (keeping its size), so
    whole groups move together and the observations of one group are never split (a group is a
    cluster). ``p = (hits + 1) / (n_resamples + 1)`` (Phipson and Smyth 2010); ``alternative`` as in
    :func:`permutation_p`. NaN values are dropped first; no usable stratum gives ``(nan, nan)``.
    """
    alternative = check_choice("alternative", alternative, ALTERNATIVES)
    n_resamples = check_int_range("n_resamples", n_resamples, 1)
    rng = _rng(seed)
    v = _values("values", values, drop_nan=False)
    flag = np.asarray(in_set)
    if flag.dtype != bool:
        flag = _values("in_set", in_set, drop_nan=False) > 0.5
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


# ------------------------------------------------------------------------------------ bootstrap
def bootstrap_diff_ci(
    a: ArrayLike, b: ArrayLike, *, level: float = 0.95, n_boot: int = 10_000, seed: Seed = 0
) -> tuple[float, float, float]:
    """``(mean(a) - mean(b), lo, hi)`` with a percentile bootstrap ``level`` interval.

    The bootstrap over seeds (Efron and Tibshirani 1993, sec. 8.3 and ch. 13): each of ``n_boot``
    replicates resamples ``a``'s values and ``b``'s values with replacement, independently and each
    at its own size, and the interval is the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the
    replicated differences. NaNs are dropped from each arm first. An empty arm gives all NaN; an arm
    with a single value has no spread to resample, so ``lo`` and ``hi`` are NaN (the difference is
    still returned).
    """
    level = check_range("level", level, 0, 1, lo_open=True, hi_open=True)
    n_boot = check_int_range("n_boot", n_boot, 1)
    rng = _rng(seed)
    x, y = _values("a", a), _values("b", b)
    if len(x) == 0 or len(y) == 0:
        return float("nan"), float("nan"), float("nan")
    effect = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return effect, float("nan"), float("nan")
    rows = max(1, _BLOCK // (len(x) + len(y)))
    boot = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        m = min(rows, n_boot - start)
        ix = rng.integers(0, len(x), size=(m, len(x)))
        iy = rng.integers(0, len(y), size=(m, len(y)))
        boot[start : start + m] = x[ix].mean(axis=1) - y[iy].mean(axis=1)
    lo, hi = _percentile_interval(boot, level)
    return effect, lo, hi


def cluster_bootstrap_ci(
    values: ArrayLike,
    clusters: Sequence[Hashable] | np.ndarray | torch.Tensor,
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: Seed = 0,
    statistic: str = "mean",
) -> tuple[float, float, float]:
    """``(pooled mean, lo, hi)``: a cluster (block) percentile bootstrap of the mean of ``values``.

    Rows that share a label in ``clusters`` (any hashable labels: strings, ints; e.g. the source
    photo of each augmented composite) are one cluster. Each of ``n_boot`` replicates draws as many
    clusters as there are, with replacement, and takes the mean over all rows of the drawn clusters
    (so clusters weigh by their size: the pooled mean of the resampled rows) (Field and Welsh 2007;
    Cameron, Gelbach and Miller 2008). ``statistic``: only ``"mean"``. Rows whose value is NaN are
    dropped first (a cluster left with no row drops out). No rows: all NaN; a single cluster: ``lo``
    and ``hi`` are NaN.
    """
    statistic = check_choice("statistic", statistic, ("mean",))
    level = check_range("level", level, 0, 1, lo_open=True, hi_open=True)
    n_boot = check_int_range("n_boot", n_boot, 1)
    rng = _rng(seed)
    v = _values("values", values, drop_nan=False)
    if isinstance(clusters, torch.Tensor):
        clusters = clusters.detach().cpu().numpy()
    if isinstance(clusters, (str, bytes)) or np.isscalar(clusters):
        raise TypeError(f"clusters must be a sequence of labels, one per value; got {type(clusters).__name__}")
    labels = list(clusters)
    if len(labels) != len(v):
        raise ValueError(f"values and clusters must have one entry per row; got {len(v)} and {len(labels)}")
    keep = ~np.isnan(v)
    v = v[keep]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    codes, _ = pd.factorize(pd.Series([lab for lab, k in zip(labels, keep) if k], dtype=object))
    if (codes < 0).any():
        raise ValueError("clusters must not hold missing labels (None/NaN)")
    sums = np.bincount(codes, weights=v)
    sizes = np.bincount(codes).astype(np.float64)
    g = len(sizes)
    estimate = float(v.mean())
    if g < 2:
        return estimate, float("nan"), float("nan")
    rows = max(1, _BLOCK // g)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, rows):
        m = min(rows, n_boot - start)
        idx = rng.integers(0, g, size=(m, g))
        boot[start : start + m] = sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    lo, hi = _percentile_interval(boot, level)
    return estimate, lo, hi


def paired_cluster_bootstrap_ci(
    a: ArrayLike,
    b: ArrayLike,
    clusters: Sequence[Hashable] | np.ndarray | torch.Tensor,
    *,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: Seed = 0,
    statistic: str = "mean",
) -> tuple[float, float, float]:
    """``(mean(a - b), lo, hi)``: :func:`cluster_bootstrap_ci` of the per-row difference ``a - b``.

    ``a[i]`` and ``b[i]`` are two measurements of the same row (e.g. one composite under two models or
    two backgrounds); rows where either is NaN are dropped. Clusters are resampled whole, as in
    :func:`cluster_bootstrap_ci`.
    """
    x, y = _values("a", a, drop_nan=False), _values("b", b, drop_nan=False)
    if len(x) != len(y):
        raise ValueError(f"a and b must have one value per row; got {len(x)} and {len(y)}")
    return cluster_bootstrap_ci(x - y, clusters, level=level, n_boot=n_boot, seed=seed, statistic=statistic)


# ----------------------------------------------------------------------------------------- Holm
def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (Holm 1979), in the input order.

    With the m non-NaN p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of ``p_(i)`` is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``: monotone in the sorted order, never below the raw
    p, capped at 1. Rejecting where the adjusted p is below alpha controls the family-wise error
    rate at alpha. NaN entries stay NaN and do not count in the family size m.
    """
    p = _values("pvalues", pvalues, drop_nan=False)
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise ValueError(f"pvalues must lie in [0, 1] (or be NaN); got {p[ok][(p[ok] < 0) | (p[ok] > 1)][:3].tolist()}")
    out = np.full(len(p), np.nan)
    valid = np.flatnonzero(ok)
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(stepped)
    return out


# -------------------------------------------------------------------------- hierarchical bootstrap
def hierarchical_bootstrap(units: Sequence[Sequence[ArrayLike]], *, n_boot: int = 4000, seed: Seed = 0) -> np.ndarray:
    """Bootstrap draws of ``mean over seeds of [mean(g_0) - mean(g_1)]`` (or ``mean(g_0)``).

    ``units`` holds one entry per seed: a tuple of one or two 1-D arrays of class means (``g_0``: the
    classes of the set measured, e.g. L; ``g_1``, optional: the contrast set, e.g. F \\ L). Each draw
    resamples the seeds with replacement and then, independently for every drawn seed, the classes of
    each of its groups with replacement (a two-stage bootstrap: Davison and Hinkley 1997, sec. 3.8).
    Seeds with an empty group drop out. Returns ``n_boot`` draws (all NaN when no seed is left).
    """
    n_boot = check_int_range("n_boot", n_boot, 1)
    rng = _rng(seed)
    kept = []
    for i, unit in enumerate(units):
        groups = [_values(f"units[{i}][{j}]", g) for j, g in enumerate(unit)]
        if not 1 <= len(groups) <= 2:
            raise ValueError(f"units[{i}] must hold one or two arrays of class means; got {len(groups)}")
        if all(len(g) for g in groups):
            kept.append(groups)
    if not kept:
        return np.full(n_boot, np.nan)
    s = len(kept)
    pick = rng.integers(0, s, size=(n_boot, s))
    total = np.zeros(n_boot)
    for j in range(s):
        for u, groups in enumerate(kept):
            rows = np.flatnonzero(pick[:, j] == u)
            if len(rows) == 0:
                continue
            value = np.zeros(len(rows))
            for sign, g in zip((1.0, -1.0), groups):
                value += sign * g[rng.integers(0, len(g), size=(len(rows), len(g)))].mean(axis=1)
            total[rows] += value
    return total / s


def minimum_detectable_effect(se: float, *, alpha: float = 0.05, power: float = 0.8, p_floor: float = 0.0) -> float:
    """The smallest true effect that a one-sided test at level ``alpha`` detects with probability
    ``power``, for an estimate with standard error ``se`` (normal approximation: ``(z_{1-alpha} +
    z_{power}) * se``; Cohen 1988, ch. 2). ``p_floor``: the smallest p-value the design can give (a
    permutation test over few seeds); when it is not below ``alpha`` no effect is detectable and the
    result is ``inf``. NaN ``se`` gives NaN."""
    from scipy.stats import norm

    alpha = check_range("alpha", alpha, 0, 1, lo_open=True, hi_open=True)
    power = check_range("power", power, 0, 1, lo_open=True, hi_open=True)
    se = _real("se", se)
    if math.isnan(se):
        return float("nan")
    if p_floor >= alpha:
        return float("inf")
    return float((norm.ppf(1 - alpha) + norm.ppf(power)) * abs(se))


# -------------------------------------------------------------------------------------- verdict
def verdict(
    effect: float,
    ci_lo: float,
    ci_hi: float,
    p_adjusted: float,
    *,
    paper_direction: str,
    alpha: float = 0.05,
    margin: float | None = None,
    ci90: tuple[float, float] | None = None,
    p_against: float | None = None,
    gate: str | None = None,
) -> str:
    """The verdict on one claim, from one rule fixed in code.

    ``paper_direction`` is the sign of the effect the paper predicts (``"higher"``: effect > 0,
    ``"lower"``: effect < 0); ``[ci_lo, ci_hi]`` the effect's 95% interval and ``p_adjusted`` its
    Holm-adjusted one-sided p in the paper's direction. In this order:

    1. ``gate`` names a failed precondition -> ``"not testable"``.
    2. effect is NaN -> ``"not measured"``.
    3. The effect points the paper's way AND p_adjusted < alpha -> ``"holds"``.
    4. With a ``margin`` (the symmetric rule): the 90% interval ``ci90`` lies inside ``[-margin,
       +margin]`` (equivalence, two one-sided tests at 5%: Schuirmann 1987) OR the Holm-adjusted
       one-sided p against the paper's direction ``p_against`` is below alpha -> ``"does not hold"``.
       Without a margin: the effect does not point the paper's way and the 95% interval excludes
       every effect in the paper's direction -> ``"does not hold"``.
    5. Otherwise -> ``"inconclusive"`` (NaN p-values and interval ends compare False).

    An effect of exactly 0 never "holds". ``ci_lo > ci_hi`` raises ValueError.
    """
    paper_direction = check_choice("paper_direction", paper_direction, DIRECTIONS)
    alpha = check_range("alpha", alpha, 0, 1, lo_open=True, hi_open=True)
    effect, lo, hi, p = (
        _real("effect", effect),
        _real("ci_lo", ci_lo),
        _real("ci_hi", ci_hi),
        _real("p_adjusted", p_adjusted),
    )
    if lo > hi:
        raise ValueError(f"ci_lo must not exceed ci_hi; got ci_lo={lo!r}, ci_hi={hi!r}")
    for name, value in (("p_adjusted", p), ("p_against", p_against)):
        if value is not None and not math.isnan(value) and not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must lie in [0, 1] (or be NaN); got {value!r}")
    if gate:
        return "not testable"
    if math.isnan(effect):
        return "not measured"
    s = 1.0 if paper_direction == "higher" else -1.0
    e, upper = s * effect, (hi if s > 0 else -lo)  # upper: the interval's end on the paper's side
    paper_way = e > 0
    if paper_way and p < alpha:  # NaN p compares False
        return "holds"
    if margin is not None:
        margin = check_range("margin", margin, 0, None, lo_open=True)
        lo90, hi90 = ci90 if ci90 is not None else (float("nan"), float("nan"))
        if (-margin <= lo90 and hi90 <= margin) or (p_against is not None and p_against < alpha):
            return "does not hold"
        return "inconclusive"
    if not paper_way and upper <= 0:  # NaN end compares False
        return "does not hold"
    return "inconclusive"


# ---------------------------------------------------------------------------------- comparisons
_COLUMNS = [
    "arm",
    "n_reference",
    "n_arm",
    "mean_reference",
    "mean_arm",
    "effect",
    "ci_lo",
    "ci_hi",
    "p_perm",
    "p_holm",
    "verdict",
    "reference",
    "paper_direction",
    "alpha",
]


def compare_arms(
    values_by_arm: Mapping[str, ArrayLike],
    reference: str,
    *,
    paper_direction: str,
    alpha: float = 0.05,
    level: float = 0.95,
    n_boot: int = 10_000,
    seed: Seed = 0,
    family: ArrayLike | None = None,
) -> pd.DataFrame:
    """Compare every arm with ``reference`` on one measure, one value per seed; one row per other arm.

    ``values_by_arm``: arm name -> per-seed values (NaNs dropped per arm). For each arm other than
    ``reference`` (in mapping order): ``effect = mean(reference) - mean(arm)``, its percentile
    bootstrap-over-seeds interval (:func:`bootstrap_diff_ci`, ``level``, ``n_boot``), the exact
    two-sided permutation p-value ``p_perm`` (:func:`permutation_p`), ``p_holm`` (Holm over the rows of
    this table plus, if given, the other p-values ``family`` of the same family, which count in the
    family size but get no row) and ``verdict`` (:func:`verdict` with ``p_holm``). ``paper_direction``
    is the sign of ``effect`` the paper predicts ("higher": the reference arm's value is higher).

    Columns: ``arm, n_reference, n_arm, mean_reference, mean_arm, effect, ci_lo, ci_hi, p_perm,
    p_holm, verdict, reference, paper_direction, alpha`` (the last three let :func:`holm_family`
    redo the verdicts of a concatenated table). All random draws come from one generator made from
    ``seed``, used row after row. The protocol asks for at least 5 seeds per arm (at 5 + 5 the
    smallest p is 2/252); ``n_reference`` and ``n_arm`` show how many values each row used.
    """
    paper_direction = check_choice("paper_direction", paper_direction, DIRECTIONS)
    alpha = check_range("alpha", alpha, 0, 1, lo_open=True, hi_open=True)
    level = check_range("level", level, 0, 1, lo_open=True, hi_open=True)
    n_boot = check_int_range("n_boot", n_boot, 1)
    rng = _rng(seed)
    if not isinstance(values_by_arm, Mapping):
        raise TypeError(f"values_by_arm must be a mapping arm -> values; got {type(values_by_arm).__name__}")
    if reference not in values_by_arm:
        raise ValueError(f"reference must be one of the arms {list(values_by_arm)}; got {reference!r}")
    extra = _values("family", family, drop_nan=False) if family is not None else np.empty(0)
    ref = _values(f"values_by_arm[{reference!r}]", values_by_arm[reference])
    rows = []
    for arm, vals in values_by_arm.items():
        if arm == reference:
            continue
        v = _values(f"values_by_arm[{arm!r}]", vals)
        effect, lo, hi = bootstrap_diff_ci(ref, v, level=level, n_boot=n_boot, seed=rng)
        p = permutation_p(ref, v, alternative="two-sided", seed=rng)
        rows.append(
            {
                "arm": arm,
                "n_reference": len(ref),
                "n_arm": len(v),
                "mean_reference": float(ref.mean()) if len(ref) else float("nan"),
                "mean_arm": float(v.mean()) if len(v) else float("nan"),
                "effect": effect,
                "ci_lo": lo,
                "ci_hi": hi,
                "p_perm": p,
            }
        )
    df = pd.DataFrame(rows, columns=_COLUMNS[:9])
    df["p_holm"] = holm(np.concatenate([df["p_perm"].to_numpy(dtype=float), extra]))[: len(df)]
    df["verdict"] = [
        verdict(r.effect, r.ci_lo, r.ci_hi, r.p_holm, paper_direction=paper_direction, alpha=alpha)
        for r in df.itertuples()
    ]
    df["reference"] = reference
    df["paper_direction"] = paper_direction
    df["alpha"] = alpha
    return df[_COLUMNS]


def holm_family(df: pd.DataFrame, p_col: str = "p_perm", out_col: str = "p_holm") -> pd.DataFrame:
    """A copy of ``df`` with ``out_col`` = :func:`holm` of ``df[p_col]``: all rows form one family.

    Use it on a table concatenated from several :func:`compare_arms` calls (e.g. every measure of one
    world) to correct across the whole family. When ``df`` has the columns ``effect, ci_lo, ci_hi,
    paper_direction, alpha`` (as :func:`compare_arms` writes them), ``verdict`` is recomputed from
    the new ``out_col`` so it never refers to a smaller family.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame; got {type(df).__name__}")
    if p_col not in df.columns:
        raise ValueError(f"p_col must be a column of df {list(df.columns)}; got {p_col!r}")
    out = df.copy()
    out[out_col] = holm(out[p_col].to_numpy(dtype=float))
    if {"effect", "ci_lo", "ci_hi", "paper_direction", "alpha"} <= set(out.columns):
        out["verdict"] = [
            verdict(e, lo, hi, p, paper_direction=d, alpha=a)
            for e, lo, hi, p, d, a in zip(
                out["effect"], out["ci_lo"], out["ci_hi"], out[out_col], out["paper_direction"], out["alpha"]
            )
        ]
    return out
