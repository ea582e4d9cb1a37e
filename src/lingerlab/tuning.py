"""Two rules the fair test applies to every arm's recipe alike: which learning rate a search picks
(the gentlest one not significantly worse than the best), and whether a run has converged
(validation accuracy no longer rising)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from ._validation import check_int_range, check_range


def binomial_se(accuracy: float, n: int) -> float:
    """The standard error of an accuracy measured on ``n`` images, sqrt(a (1 - a) / n)."""
    check_int_range("n", n, 1)
    return (accuracy * (1 - accuracy) / n) ** 0.5


def mcnemar_worse_p(correct: Sequence[bool], correct_best: Sequence[bool]) -> float:
    """Exact one-sided McNemar p-value that a run is worse than the best on the same images: of the
    images the two runs disagree on, ``n_b`` the best gets right and ``n_a`` the run gets right;
    ``p = P(X >= n_b)`` for ``X ~ Binomial(n_a + n_b, 1/2)`` (1 when they never disagree)."""
    a, b = np.asarray(correct, dtype=bool), np.asarray(correct_best, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or not len(a):
        raise ValueError(f"correct and correct_best must be non-empty 1-D of one length; got {a.shape}, {b.shape}")
    n_b, n_a = int((b & ~a).sum()), int((a & ~b).sum())
    n = n_a + n_b
    return float(sum(math.comb(n, k) for k in range(n_b, n + 1)) / 2**n)


def pick_rate(rates: Sequence[float], correct: Sequence[Sequence[bool]], alpha: float = 0.05) -> float:
    """The gentlest learning rate not significantly worse than the best: the smallest rate whose
    per-image validation correctness ``correct[i]`` is not worse than the most accurate run's by an
    exact one-sided McNemar test at ``alpha`` (:func:`mcnemar_worse_p`: paired, on the same images;
    in the spirit of the one-standard-error rule of Hastie, Tibshirani and Friedman, *Elements of
    Statistical Learning*, Sec. 7.10). Rates the validation set cannot tell apart go to the gentlest
    one, so float noise that reorders near-equal accuracies rarely moves the pick."""
    if not len(rates) or len(rates) != len(correct):
        raise ValueError(f"rates and correct must be non-empty and of one length; got {len(rates)} and {len(correct)}")
    check_range("alpha", alpha, 0, 1, lo_open=True, hi_open=True)
    accuracy = [float(np.mean(np.asarray(c, dtype=bool))) if len(c) else float("nan") for c in correct]
    if any(a != a for a in accuracy):
        raise ValueError("every rate needs the correctness of at least one validation image")
    best = correct[int(np.argmax(accuracy))]
    return float(min(r for r, c in zip(rates, correct) if mcnemar_worse_p(c, best) >= alpha))


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
