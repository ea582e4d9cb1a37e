"""Two rules the fair test applies to every arm's recipe alike: which learning rate a search picks
(the gentlest one not significantly worse than the best), and whether a run has converged
(validation accuracy no longer rising)."""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from ._validation import check_int_range


def binomial_se(accuracy: float, n: int) -> float:
    """The standard error of an accuracy measured on ``n`` images, sqrt(a (1 - a) / n)."""
    check_int_range("n", n, 1)
    return (accuracy * (1 - accuracy) / n) ** 0.5


#: one-sided 5% normal quantile: a rate is "worse than the best" only when the gap exceeds it
Z_WORSE = 1.6449


def pick_rate(rates: Sequence[float], accuracies: Sequence[float], n_val: int) -> float:
    """The gentlest learning rate not significantly worse than the best: the smallest rate whose
    validation accuracy ``a`` passes a one-sided two-proportion z-test against the best ``b`` at 5%,
    ``b - a <= 1.645 sqrt(se(b)^2 + se(a)^2)`` with :func:`binomial_se` on ``n_val`` images (in the
    spirit of the one-standard-error rule of Hastie, Tibshirani and Friedman, *Elements of Statistical
    Learning*, Sec. 7.10, with a margin of about 2.3 SE for equal SEs). The test treats the two
    accuracies as independent although they are measured on the same images, which makes it
    conservative: it leans towards the gentlest rate. Rates the validation set cannot tell apart go to
    the gentlest one, so float noise that reorders near-equal accuracies rarely moves the pick."""
    if not len(rates) or len(rates) != len(accuracies) or any(a != a for a in accuracies):
        raise ValueError(
            f"rates and accuracies must be non-empty, of one length and without NaN; got {list(rates)}, "
            f"{list(accuracies)}"
        )
    check_int_range("n_val", n_val, 1)
    best = max(accuracies)

    def not_worse(a: float) -> bool:
        gap = Z_WORSE * (binomial_se(best, n_val) ** 2 + binomial_se(a, n_val) ** 2) ** 0.5
        return best - a <= gap + 1e-12

    return float(min(r for r, a in zip(rates, accuracies) if not_worse(a)))


def converged(history: pd.DataFrame, n_val: int) -> tuple[bool, str]:
    """Whether a run's validation accuracy stopped rising: the last validation is no more than one
    binomial standard error (of the one before, and at least one image) above the one before (a run
    validated once counts as not shown). Returns the verdict and a short reading, e.g.
    ``"0.975 -> 0.979 (+0.004, SE 0.006)"``."""
    check_int_range("n_val", n_val, 1)
    val = history["val_acc"].dropna() if "val_acc" in history else pd.Series(dtype=float)
    if len(val) < 2:
        return False, "validated fewer than twice"
    before, last = float(val.iloc[-2]), float(val.iloc[-1])
    se = max(binomial_se(before, n_val), 1 / n_val)  # at least one image: a rise to 100% is not noise-free
    return last - before <= se + 1e-12, f"{before:.3f} -> {last:.3f} ({last - before:+.3f}, SE {se:.3f})"
