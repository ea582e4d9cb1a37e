"""tuning: the learning-rate pick (the gentlest rate not significantly worse) and the convergence check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lingerlab.tuning import binomial_se, converged, mcnemar_worse_p, pick_rate


def test_binomial_se_endpoints():
    assert binomial_se(1.0, 10) == 0.0 and binomial_se(0.0, 10) == 0.0
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="n"):
        binomial_se(0.5, 0)


def _pair(n: int, both: int, only_best: int, only_other: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of (other, best) on ``n`` images with the given agreement counts."""
    other, best = np.zeros(n, bool), np.zeros(n, bool)
    other[:both] = best[:both] = True
    best[both : both + only_best] = True
    other[both + only_best : both + only_best + only_other] = True
    return other, best


def test_mcnemar_worse_p_matches_the_exact_binomial_test():
    stats = pytest.importorskip("scipy.stats")
    for only_best, only_other in [(0, 0), (4, 0), (5, 0), (7, 3), (12, 2), (3, 9)]:
        other, best = _pair(60, 40, only_best, only_other)
        want = (
            1.0
            if only_best + only_other == 0
            else stats.binomtest(only_best, only_best + only_other, 0.5, alternative="greater").pvalue
        )
        assert mcnemar_worse_p(other, best) == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="one length"):
        mcnemar_worse_p([True, False], [True])


def test_pick_rate_is_the_gentlest_rate_not_significantly_worse():
    # either side of the critical count: 4 images only the best gets right (p = 1/16) is not worse,
    # 5 (p = 1/32) is, whatever the accuracies of the two
    other4, best4 = _pair(500, 480, 4, 0)
    assert pick_rate([1e-3, 1e-2], [other4, best4]) == 1e-3
    other5, best5 = _pair(500, 480, 5, 0)
    assert pick_rate([1e-3, 1e-2], [other5, best5]) == 1e-2
    # paired: the same accuracy gap is significant when the runs disagree only there and not when they
    # disagree on many images both ways (a gap of 0.02 on 500 images: 0.90 vs 0.92, 0.86 vs 0.88)
    assert pick_rate([1e-3, 1e-2], list(_pair(500, 450, 10, 0))) == 1e-2
    assert pick_rate([1e-3, 1e-2], list(_pair(500, 380, 60, 50))) == 1e-3
    # three rates: a clear loser is never picked, a tie with the best goes to the gentler rate
    worst, best = _pair(500, 350, 130, 0)
    assert pick_rate([3e-4, 1e-3, 3e-3], [worst, best, best]) == 1e-3
    # one rate is always picked; identical runs go to the smallest rate; order of the grid is free
    assert pick_rate([1e-2], [best]) == 1e-2
    assert pick_rate([1e-2, 1e-3], [best, best]) == 1e-3
    with pytest.raises(ValueError, match="rates and correct"):
        pick_rate([], [])
    with pytest.raises(ValueError, match="at least one validation image"):
        pick_rate([1e-3, 1e-2], [[], [True]])
    with pytest.raises(ValueError, match="alpha"):
        pick_rate([1e-3], [[True]], alpha=0)


def _history(vals):
    return pd.DataFrame({"val_acc": vals}, index=pd.RangeIndex(1, len(vals) + 1, name="epoch"))


def test_converged_reads_the_last_two_validations():
    ok, text = converged(_history([0.6, np.nan, 0.95, np.nan, 0.955]), 500)
    assert ok and text.startswith("0.950 -> 0.955")
    rising, _ = converged(_history([0.6, 0.8, 0.9]), 500)
    assert not rising  # +0.10 is far above one SE
    falling, _ = converged(_history([0.9, 0.85]), 500)
    assert falling  # a fall is not a rise
    # reaching 100% from 99.8% on 500 images is one image: converged, not a rise the SE of 1.0 (0) forbids
    assert converged(_history([0.9, 0.998, 1.0]), 500)[0]
    once, text = converged(_history([np.nan, 0.9]), 500)
    assert not once and "fewer than twice" in text
