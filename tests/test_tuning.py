"""tuning: the learning-rate pick (the gentlest rate not significantly worse) and the convergence check."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lingerlab.tuning import binomial_se, converged, pick_rate


def test_binomial_se_endpoints():
    assert binomial_se(1.0, 10) == 0.0 and binomial_se(0.0, 10) == 0.0
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="n"):
        binomial_se(0.5, 0)


def test_pick_rate_is_the_gentlest_rate_not_significantly_worse():
    # 500 validation images: 0.98 vs 0.97 differ by 0.01 < 1.645 x 0.0099 (SE of the difference)
    assert pick_rate([3e-4, 1e-3, 3e-3], [0.97, 0.975, 0.98], 500) == 3e-4
    # the perturbed-numerics search of the book's shapes world: 0.980 / 0.978 / 0.986 -> the gentlest
    assert pick_rate([3e-4, 1e-3, 3e-3], [0.980, 0.978, 0.986], 500) == 3e-4
    # 0.96 vs 0.904: gap 0.056 > 1.645 x 0.0158 = 0.026; a clear loser is never picked
    assert pick_rate([3e-4, 1e-3, 3e-3], [0.712, 0.904, 0.960], 500) == 3e-3
    # either side of the critical gap on 400 images: 0.035 <= 0.0374 passes, 0.040 > 0.0377 does not
    assert pick_rate([1e-3, 1e-2], [0.865, 0.9], 400) == 1e-3
    assert pick_rate([1e-3, 1e-2], [0.860, 0.9], 400) == 1e-2
    # one rate is always picked; equal accuracies go to the smallest rate; a larger validation set
    # separates what a smaller one cannot
    assert pick_rate([1e-2], [0.5], 10) == 1e-2
    assert pick_rate([1e-2, 1e-3], [0.8, 0.8], 10**6) == 1e-3
    assert pick_rate([1e-3, 1e-2], [0.97, 0.98], 100) == 1e-3
    assert pick_rate([1e-3, 1e-2], [0.97, 0.98], 100_000) == 1e-2
    # a perfect best and a perfect other: no gap, the gentlest
    assert pick_rate([1e-3, 1e-2], [1.0, 1.0], 50) == 1e-3
    with pytest.raises(ValueError, match="rates and accuracies"):
        pick_rate([], [], 10)
    with pytest.raises(ValueError, match="without NaN"):
        pick_rate([1e-3, 1e-2], [float("nan"), 0.9], 10)
    with pytest.raises(ValueError, match="n_val"):
        pick_rate([1e-3], [0.5], 0)


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
