"""Properties of the statistics: permutation tests, bootstraps, Holm, the verdict rule and power."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
import torch
from scipy import stats as sps

from lingerlab.bootstrap import cluster_bootstrap_ci, hierarchical_bootstrap, paired_cluster_bootstrap_ci
from lingerlab.permutation import group_permutation_p, permutation_p
from lingerlab.verdict_rule import holm, minimum_detectable_effect, verdict


# ----------------------------------------------------------------------------- permutation_p
def brute_force_p(a, b, alternative="two-sided"):
    """The definition, one relabelling at a time."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = np.concatenate([a, b])
    obs = a.mean() - b.mean()
    tol = 1e-12 * np.abs(pooled).max()
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), len(a)):
        mask = np.zeros(len(pooled), bool)
        mask[list(idx)] = True
        d = pooled[mask].mean() - pooled[~mask].mean()
        if alternative == "greater":
            hits += d >= obs - tol
        elif alternative == "less":
            hits += d <= obs + tol
        else:
            hits += abs(d) >= abs(obs) - tol
        total += 1
    return hits / total


def scipy_p(a, b, alternative):
    res = sps.permutation_test(
        (np.asarray(a, float), np.asarray(b, float)),
        lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis),
        permutation_type="independent",
        n_resamples=np.inf,
        vectorized=True,
        alternative=alternative,
    )
    return float(res.pvalue)


SIZES = [(3, 3), (4, 5), (5, 4), (5, 5), (2, 6)]


@pytest.mark.parametrize("na,nb", SIZES)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_permutation_p_equals_brute_force(na, nb, alternative):
    rng = np.random.default_rng(100 * na + nb)
    for _ in range(5):
        a, b = rng.normal(0.3, 1, na), rng.normal(0, 1, nb)
        expected = brute_force_p(a, b, alternative)
        assert permutation_p(a, b, alternative=alternative) == pytest.approx(expected, abs=1e-15)


def test_permutation_p_brute_force_with_ties():
    a, b = [1.0, 1.0, 2.0, 3.0], [1.0, 2.0, 2.0, 3.0, 3.0]  # many tied relabellings
    for alt in ("two-sided", "greater", "less"):
        assert permutation_p(a, b, alternative=alt) == pytest.approx(brute_force_p(a, b, alt), abs=1e-15)
    a, b = [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]  # float sums that tie only up to rounding
    assert permutation_p(a, b) == pytest.approx(brute_force_p(a, b), abs=1e-15) == 1.0


@pytest.mark.parametrize("na,nb", SIZES)
def test_permutation_p_agrees_with_scipy(na, nb):
    rng = np.random.default_rng(7 + na * nb)
    for _ in range(3):
        a, b = rng.normal(0.5, 1, na), rng.normal(0, 1, nb)
        for alt in ("greater", "less"):
            assert permutation_p(a, b, alternative=alt) == pytest.approx(scipy_p(a, b, alt), abs=1e-12)
        if na == nb:  # symmetric null: P(|D| >= |d|) equals SciPy's 2 * min(one-sided p)
            assert permutation_p(a, b) == pytest.approx(scipy_p(a, b, "two-sided"), abs=1e-12)


def test_permutation_p_complete_separation_5_5():
    hi, lo = [6.0, 7.5, 8.0, 9.1, 10.0], [1.0, 2.0, 3.3, 4.0, 5.0]
    assert permutation_p(hi, lo) == 2 / 252
    assert permutation_p(lo, hi) == 2 / 252
    assert permutation_p(hi, lo, alternative="greater") == 1 / 252
    assert permutation_p(lo, hi, alternative="less") == 1 / 252
    assert permutation_p(hi, lo, alternative="less") == 1.0


def test_permutation_p_identical_arms_give_one():
    x = [0.3, 0.1, 0.7, 0.2, 0.9]
    assert permutation_p(x, x) == 1.0
    assert permutation_p([2.0] * 5, [2.0] * 5) == 1.0
    assert permutation_p([0.0] * 3, [0.0] * 4) == 1.0


def test_permutation_p_monte_carlo_branch_close_to_exact_and_seeded():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.0, 1, 6), rng.normal(0, 1, 6)
    exact = permutation_p(a, b)
    assert 0.01 < exact < 0.5
    for alt in ("two-sided", "greater"):
        mc = permutation_p(a, b, alternative=alt, max_exact=10, n_resamples=40_000, seed=11)
        assert mc == pytest.approx(permutation_p(a, b, alternative=alt), abs=0.01)
    p1 = permutation_p(a, b, max_exact=0, n_resamples=2000, seed=5)
    assert p1 == permutation_p(a, b, max_exact=0, n_resamples=2000, seed=5)
    assert p1 == permutation_p(a, b, max_exact=0, n_resamples=2000, seed=np.random.default_rng(5))
    assert p1 == permutation_p(a, b, max_exact=0, n_resamples=2000, seed=np.int64(5))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert permutation_p(a, b, max_exact=0, n_resamples=2000, seed=g1) == permutation_p(
        a, b, max_exact=0, n_resamples=2000, seed=g2
    )
    # (hits + 1) / (n + 1): never zero, and the grid is the one of n_resamples + 1
    p = permutation_p([10.0] * 8, [0.0] * 8, max_exact=0, n_resamples=999, seed=0)
    assert p == pytest.approx(1 / 1000, abs=1e-3) and p > 0
    assert round(p * 1000) == pytest.approx(p * 1000)


def test_permutation_p_nan_dropped_and_empty_arm():
    a, b = [1.0, 2.0, np.nan, 3.0], [np.nan, 0.5, 0.7]
    assert permutation_p(a, b) == permutation_p([1.0, 2.0, 3.0], [0.5, 0.7])
    assert math.isnan(permutation_p([np.nan, np.nan], [1.0, 2.0]))
    assert permutation_p(torch.tensor([1.0, 2.0, 3.0]), np.array([0.5, 0.7])) == permutation_p([1, 2, 3], [0.5, 0.7])


def test_permutation_p_10_10_is_fast():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 1, 10), rng.normal(0, 1, 10)
    permutation_p(a, b)  # warm-up
    t0 = time.perf_counter()
    p = permutation_p(a, b)
    elapsed = time.perf_counter() - t0
    assert math.comb(20, 10) == 184_756
    assert p == pytest.approx(scipy_p(a, b, "two-sided"), abs=1e-12)
    assert elapsed < 1.0, f"permutation_p on 10 + 10 took {elapsed:.2f} s"


# ------------------------------------------------------------------------------------- seeds
def test_bootstrap_deterministic_per_seed():
    a, clusters = np.random.default_rng(5).normal(size=40), np.arange(40) // 2
    assert cluster_bootstrap_ci(a, clusters, seed=3) == cluster_bootstrap_ci(a, clusters, seed=3)
    assert cluster_bootstrap_ci(a, clusters, seed=3) == cluster_bootstrap_ci(a, clusters, seed=np.random.default_rng(3))
    assert cluster_bootstrap_ci(a, clusters, seed=3) != cluster_bootstrap_ci(a, clusters, seed=4)
    assert cluster_bootstrap_ci(a, clusters, seed=torch.Generator().manual_seed(1)) == cluster_bootstrap_ci(
        a, clusters, seed=torch.Generator().manual_seed(1)
    )


# --------------------------------------------------------------------------------------- holm
def test_holm_hand_example():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_properties_random():
    rng = np.random.default_rng(5)
    for _ in range(50):
        m = int(rng.integers(1, 12))
        p = rng.uniform(0, 0.3, m) ** rng.uniform(0.5, 3)
        adj = holm(p)
        order = np.argsort(p, kind="stable")
        assert np.all(np.diff(adj[order]) >= 0)  # monotone in sorted order
        assert np.all(adj >= p - 1e-15) and np.all(adj <= 1)  # >= raw p, capped at 1
        # the definition: max over j <= i of min(1, (m - j + 1) p_(j))
        s = p[order]
        expect = np.array([max(min(1.0, (m - j) * s[j]) for j in range(i + 1)) for i in range(m)])
        np.testing.assert_allclose(adj[order], expect)


def test_holm_nan_single_cap_and_validation():
    assert holm([0.2]).tolist() == [0.2]
    out = holm([0.01, np.nan, 0.04])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], holm([0.01, 0.04]))  # NaN does not count in m
    assert np.isnan(holm([np.nan, np.nan])).all()
    assert holm([0.6, 0.7]).tolist() == [1.0, 1.0]
    assert holm([]).shape == (0,)
    with pytest.raises(ValueError, match="pvalues"):
        holm([0.5, 1.5])


# ------------------------------------------------------------------------ cluster bootstrap
def test_cluster_bootstrap_duplicating_rows_changes_nothing():
    rng = np.random.default_rng(6)
    clusters = np.repeat(np.arange(12), rng.integers(1, 6, 12))
    values = rng.normal(0, 1, len(clusters))
    base = cluster_bootstrap_ci(values, clusters, n_boot=3000, seed=2)
    doubled = cluster_bootstrap_ci(np.repeat(values, 2), np.repeat(clusters, 2), n_boot=3000, seed=2)
    np.testing.assert_allclose(doubled, base, rtol=1e-12, atol=1e-12)
    # each cluster holding copies of one value, at equal sizes, is the bootstrap of one value per cluster
    per_cluster = rng.normal(0, 1, 15)
    rows = np.repeat(per_cluster, 4)
    labels = [f"photo{i}" for i in np.repeat(np.arange(15), 4)]
    np.testing.assert_allclose(
        cluster_bootstrap_ci(rows, labels, seed=1),
        cluster_bootstrap_ci(per_cluster, np.arange(15), seed=1),
        rtol=1e-12,
        atol=1e-12,
    )


def test_cluster_bootstrap_weights_by_cluster_size():
    # identical values within clusters of unequal size: the estimate is the size-weighted mean
    per_cluster, sizes = np.array([0.0, 1.0, 5.0]), np.array([1, 3, 6])
    est, lo, hi = cluster_bootstrap_ci(np.repeat(per_cluster, sizes), np.repeat(["a", "b", "c"], sizes), seed=0)
    assert est == pytest.approx((per_cluster * sizes).sum() / sizes.sum())
    assert lo <= est <= hi


def test_cluster_interval_wider_than_naive_when_rows_correlate():
    rng = np.random.default_rng(7)
    n_clusters, per = 20, 10
    effect = rng.normal(0, 1, n_clusters)
    clusters = np.repeat(np.arange(n_clusters), per)
    values = effect[clusters] + rng.normal(0, 0.1, len(clusters))
    _, clo, chi = cluster_bootstrap_ci(values, clusters, seed=0)
    _, nlo, nhi = cluster_bootstrap_ci(values, np.arange(len(values)), seed=0)  # rows as independent
    assert chi - clo > 2 * (nhi - nlo)


def test_cluster_bootstrap_labels_nan_and_errors():
    values = [0.1, 0.4, 0.2, 0.8, 0.9, 0.3]
    ints = cluster_bootstrap_ci(values, [3, 3, 1, 1, 7, 7], seed=0)
    strs = cluster_bootstrap_ci(values, ["x", "x", "y", "y", "z", "z"], seed=0)
    assert ints == strs
    assert ints[0] == pytest.approx(np.mean(values))
    with_nan = cluster_bootstrap_ci([0.1, 0.4, np.nan, 0.2, 0.8, 0.9, 0.3], [3, 3, 5, 1, 1, 7, 7], seed=0)
    assert with_nan == ints  # the NaN row (and its now empty cluster) is dropped
    est, lo, hi = cluster_bootstrap_ci([1.0, 2.0], ["a", "a"])
    assert est == 1.5 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="clusters"):
        cluster_bootstrap_ci([1.0, 2.0], ["a"])
    with pytest.raises(ValueError, match="statistic"):
        cluster_bootstrap_ci([1.0, 2.0], ["a", "b"], statistic="median")


def test_paired_cluster_bootstrap_is_cluster_bootstrap_of_differences():
    rng = np.random.default_rng(8)
    clusters = np.repeat(np.arange(10), 3)
    a, b = rng.normal(0.5, 1, 30), rng.normal(0, 1, 30)
    assert paired_cluster_bootstrap_ci(a, b, clusters, seed=4) == cluster_bootstrap_ci(a - b, clusters, seed=4)
    a2 = a.copy()
    a2[0] = np.nan
    b2 = b.copy()
    b2[5] = np.nan
    keep = np.ones(30, bool)
    keep[[0, 5]] = False
    assert paired_cluster_bootstrap_ci(a2, b2, clusters, seed=4) == cluster_bootstrap_ci(
        (a - b)[keep], clusters[keep], seed=4
    )
    with pytest.raises(ValueError, match="a and b"):
        paired_cluster_bootstrap_ci(a, b[:-1], clusters)


# ------------------------------------------------------------------------------------ verdict
NAN = float("nan")
# (effect, ci_lo, ci_hi, p_adjusted, verdict) for paper_direction="higher"
HIGHER_CASES = [
    (0.5, 0.1, 0.9, 0.01, "holds"),
    (0.5, -0.1, 0.9, 0.01, "holds"),  # p decides "holds", even if the interval touches 0
    (0.5, 0.1, 0.9, 0.2, "inconclusive"),
    (0.5, 0.1, 0.9, 0.05, "inconclusive"),  # p == alpha is not < alpha
    (-0.5, -0.9, -0.1, 0.01, "does not hold"),
    (-0.5, -0.9, -0.1, 0.9, "does not hold"),  # no p needed to rule the claim out
    (-0.5, -0.9, 0.0, 0.5, "does not hold"),  # interval ending on zero excludes every effect > 0
    (-0.5, -0.9, 0.1, 0.01, "inconclusive"),
    (0.0, -0.1, 0.1, 0.01, "inconclusive"),  # an effect of exactly zero never holds
    (0.0, 0.0, 0.0, 1.0, "does not hold"),  # identical constant arms
    (0.0, -0.2, 0.0, 1.0, "does not hold"),
    (NAN, NAN, NAN, NAN, "not measured"),
    (NAN, -1.0, 1.0, 0.01, "not measured"),
    (0.5, NAN, NAN, 0.01, "holds"),
    (0.5, NAN, NAN, NAN, "inconclusive"),
    (-0.5, NAN, NAN, NAN, "inconclusive"),
    (0.5, 0.2, 0.8, NAN, "inconclusive"),
    (0.5, -0.2, -0.1, 0.5, "inconclusive"),  # malformed (estimate outside its interval): never both
]


@pytest.mark.parametrize("effect,lo,hi,p,expected", HIGHER_CASES)
def test_verdict_table_both_directions(effect, lo, hi, p, expected):
    assert verdict(effect, lo, hi, p, paper_direction="higher") == expected
    # the mirror image: negate the effect and the interval, predict "lower"
    assert verdict(-effect, -hi, -lo, p, paper_direction="lower") == expected


def test_verdict_alpha_and_validation():
    assert verdict(0.5, 0.1, 0.9, 0.03, paper_direction="higher", alpha=0.01) == "inconclusive"
    assert verdict(0.5, 0.1, 0.9, np.float64(0.03), paper_direction="higher", alpha=0.05) == "holds"
    with pytest.raises(ValueError, match="ci_lo"):
        verdict(0.5, 0.9, 0.1, 0.01, paper_direction="higher")
    with pytest.raises(ValueError, match="paper_direction"):
        verdict(0.5, 0.1, 0.9, 0.01, paper_direction="up")
    with pytest.raises(ValueError, match="alpha"):
        verdict(0.5, 0.1, 0.9, 0.01, paper_direction="higher", alpha=1.0)
    with pytest.raises(TypeError, match="effect"):
        verdict("0.5", 0.1, 0.9, 0.01, paper_direction="higher")
    with pytest.raises(ValueError, match="p_adjusted"):
        verdict(0.5, 0.1, 0.9, 1.5, paper_direction="higher")


def test_verdict_holds_and_does_not_hold_are_exclusive():
    """Randomised check of the proof in verdict's docstring.

    With the brief's conditions, holds: s*effect > 0 and p < alpha; does not hold: the interval's end
    on the paper's side is <= 0. For an interval containing its estimate both cannot be true, since
    0 < s*effect <= (paper-side end) <= 0 is impossible. verdict adds "the effect does not point the
    paper's way" to "does not hold", which makes the two exclusive for any input at all.
    """
    rng = np.random.default_rng(9)
    grid = np.array([-1.0, -0.1, 0.0, 0.0, 0.1, 1.0])
    for _ in range(4000):
        direction = "higher" if rng.random() < 0.5 else "lower"
        s = 1.0 if direction == "higher" else -1.0
        raw = np.where(rng.random(3) < 0.3, rng.choice(grid, 3), rng.normal(0, 1, 3))
        lo, effect, hi = np.sort(raw)  # a well-formed interval around its estimate
        p = float(rng.choice([0.0, 0.01, 0.05, 0.5, 1.0, NAN]))
        holds = s * effect > 0 and p < 0.05
        excludes = (hi <= 0) if s > 0 else (lo >= 0)
        assert not (holds and excludes)
        expected = "holds" if holds else "does not hold" if excludes else "inconclusive"
        assert verdict(effect, lo, hi, p, paper_direction=direction) == expected
        # any input, also an estimate outside its interval, gets exactly one verdict by the rule
        e2 = float(rng.normal(0, 1))
        got = verdict(e2, lo, hi, p, paper_direction=direction)
        holds2 = s * e2 > 0 and p < 0.05
        dnh2 = not s * e2 > 0 and excludes
        assert not (holds2 and dnh2)
        assert got == ("holds" if holds2 else "does not hold" if dnh2 else "inconclusive")


# ---------------------------------------------------------------------------------- validation
def test_numpy_integers_accepted():
    a, b = [0.2, 0.5, 0.1, 0.9, 0.4], [0.3, 0.3, 0.8, 0.0, 0.6]
    assert cluster_bootstrap_ci(a, [0, 0, 1, 1, 2], n_boot=np.int64(500), seed=np.uint8(2)) == cluster_bootstrap_ci(
        a, [0, 0, 1, 1, 2], n_boot=500, seed=2
    )
    assert permutation_p(a, b, max_exact=np.int64(0), n_resamples=np.int16(300), seed=np.int64(1)) == permutation_p(
        a, b, max_exact=0, n_resamples=300, seed=1
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda **kw: cluster_bootstrap_ci([1.0, 2.0], ["a", "b"], **kw),
        lambda **kw: paired_cluster_bootstrap_ci([1.0, 2.0], [0.0, 1.0], ["a", "b"], **kw),
    ],
)
def test_parameter_errors_name_the_parameter(call):
    with pytest.raises(TypeError, match="n_boot"):
        call(n_boot="100")
    with pytest.raises(TypeError, match="n_boot"):
        call(n_boot=100.0)
    with pytest.raises(ValueError, match="n_boot"):
        call(n_boot=0)
    with pytest.raises(ValueError, match="level"):
        call(level=1.5)
    with pytest.raises(TypeError, match="level"):
        call(level="0.95")
    with pytest.raises(TypeError, match="seed"):
        call(seed="0")
    with pytest.raises(ValueError, match="seed"):
        call(seed=-1)


def test_permutation_p_parameter_errors():
    with pytest.raises(ValueError, match="alternative"):
        permutation_p([1.0], [2.0], alternative="both")
    with pytest.raises(TypeError, match="max_exact"):
        permutation_p([1.0], [2.0], max_exact=1.5)
    with pytest.raises(ValueError, match="n_resamples"):
        permutation_p([1.0], [2.0], n_resamples=0)
    with pytest.raises(TypeError, match="seed"):
        permutation_p([1.0], [2.0], seed=None)
    with pytest.raises(ValueError, match="finite"):
        permutation_p([1.0, np.inf], [2.0])
    with pytest.raises(ValueError, match="1-D"):
        permutation_p([[1.0, 2.0]], [2.0])
    with pytest.raises(TypeError, match="a must"):
        permutation_p("abc", [2.0])


def test_group_permutation_p_moves_whole_groups():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(10), 20)
    strata = np.zeros(len(groups), dtype=int)
    v = rng.normal(size=len(groups))
    v[groups < 3] += 2.0  # the planted set of 3 of 10 groups is higher
    stat, p = group_permutation_p(v, groups, groups < 3, strata, seed=0)
    assert stat == pytest.approx(v[groups < 3].mean() - v[groups >= 3].mean())
    assert p < 0.02 and p >= 1 / 10_001  # never 0; only C(10, 3) = 120 relabellings exist
    _, p_null = group_permutation_p(rng.normal(size=len(groups)), groups, groups < 3, strata, seed=0)
    assert p_null > 0.05
    # two strata: the statistic is the mean of the per-stratum differences; a stratum with an empty side drops out
    s2 = np.r_[strata, strata + 1]
    g2, v2 = np.r_[groups, groups], np.r_[v, v + 10]
    stat2, _ = group_permutation_p(v2, g2, np.r_[groups < 3, groups < 3], s2, seed=1)
    assert stat2 == pytest.approx(stat)
    stat3, _ = group_permutation_p(v2, g2, np.r_[groups < 3, np.zeros(len(groups), bool)], s2, seed=1)
    assert stat3 == pytest.approx(stat)
    assert np.isnan(group_permutation_p(v, groups, np.zeros(len(v), bool), strata)[1])
    with pytest.raises(ValueError, match="same for every row of a group"):
        group_permutation_p(v, groups, np.arange(len(v)) % 2 == 0, strata)
    with pytest.raises(ValueError, match="one entry per row"):
        group_permutation_p(v, groups[:-1], groups < 3, strata)


# ------------------------------------------------- the symmetric rule, the two-stage bootstrap, power


def test_symmetric_verdict_equivalence_and_opposite_direction():
    kw = {"paper_direction": "higher", "margin": 0.05}
    # equivalence: the 90% interval inside +/- margin -> does not hold, even with a positive effect
    assert verdict(0.01, -0.05, 0.07, 0.3, ci90=(-0.04, 0.045), **kw) == "does not hold"
    # the same effect with an interval poking past the margin -> inconclusive
    assert verdict(0.01, -0.05, 0.07, 0.3, ci90=(-0.04, 0.06), **kw) == "inconclusive"
    # the paper's direction excluded with Holm control -> does not hold
    assert verdict(-0.2, -0.3, -0.1, 1.0, ci90=(-0.28, -0.12), p_against=0.01, **kw) == "does not hold"
    # an interval below zero alone is not enough under the symmetric rule
    assert verdict(-0.2, -0.3, -0.1, 1.0, ci90=(-0.28, -0.12), p_against=0.2, **kw) == "inconclusive"
    # holds needs the Holm-adjusted one-sided p
    assert verdict(0.2, 0.1, 0.3, 0.01, ci90=(0.12, 0.28), p_against=1.0, **kw) == "holds"
    # a failed gate wins over everything
    assert verdict(0.2, 0.1, 0.3, 0.01, gate="contrast size (L)", **kw) == "not testable"
    with pytest.raises(ValueError, match="margin"):
        verdict(0.0, -0.1, 0.1, 0.5, paper_direction="higher", margin=0.0)
    with pytest.raises(ValueError, match="p_against"):
        verdict(0.0, -0.1, 0.1, 0.5, paper_direction="higher", margin=0.1, p_against=2.0)


def test_hierarchical_bootstrap_endpoints_and_spread():
    # one class per seed and identical seeds: no spread at all
    same = [(np.array([0.3]),)] * 4
    assert np.allclose(hierarchical_bootstrap(same, n_boot=200, seed=0), 0.3)
    # a contrast of constants is exact
    units = [(np.array([0.5, 0.5]), np.array([0.2, 0.2, 0.2]))] * 3
    assert np.allclose(hierarchical_bootstrap(units, n_boot=200, seed=1), 0.3)
    # seeds with an empty group drop out; none left -> NaN
    assert np.isnan(hierarchical_bootstrap([(np.array([]),)], n_boot=10, seed=0)).all()
    mixed = [(np.array([1.0]),), (np.array([]),)]
    assert np.allclose(hierarchical_bootstrap(mixed, n_boot=50, seed=0), 1.0)
    # spread between classes counts even when seeds agree: wider than the seed-only bootstrap (0)
    rng = np.random.default_rng(0)
    classes = rng.normal(0.5, 0.2, size=8)
    draws = hierarchical_bootstrap([(classes,)] * 5, n_boot=4000, seed=2)
    assert draws.mean() == pytest.approx(classes.mean(), abs=0.02)
    # standard error of a mean of 8 classes, resampled within each of 5 identical seeds
    assert draws.std() == pytest.approx(classes.std() / np.sqrt(8 * 5), rel=0.25)
    # deterministic given the seed
    assert np.array_equal(draws, hierarchical_bootstrap([(classes,)] * 5, n_boot=4000, seed=2))
    with pytest.raises(ValueError, match="one or two"):
        hierarchical_bootstrap([(classes, classes, classes)], n_boot=10)


def test_minimum_detectable_effect_matches_the_normal_formula_and_the_floor():
    from scipy.stats import norm

    se = 0.04
    assert minimum_detectable_effect(se, alpha=0.05) == pytest.approx((norm.ppf(0.95) + norm.ppf(0.8)) * se)
    # the textbook value: 2.486 standard errors at one-sided 5% and 80% power
    assert minimum_detectable_effect(1.0) == pytest.approx(2.486, abs=1e-3)
    assert minimum_detectable_effect(se, alpha=0.01) > minimum_detectable_effect(se, alpha=0.05)
    # a design whose smallest p is not below alpha can detect nothing
    assert minimum_detectable_effect(se, alpha=0.005, p_floor=1 / 70) == float("inf")
    assert np.isnan(minimum_detectable_effect(float("nan")))
