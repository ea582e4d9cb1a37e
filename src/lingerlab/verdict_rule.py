"""From a family of tests to verdicts: Holm's correction (Holm 1979), the minimum detectable effect of
a design and the one rule (:func:`verdict`) that gives each claim one of the verdicts.
"""

from __future__ import annotations

import math

import numpy as np

from ._stat_inputs import ArrayLike, as_values, real
from ._validation import check_choice, check_range

__all__ = ["holm", "minimum_detectable_effect", "verdict", "VERDICTS"]

VERDICTS = ("holds", "does not hold", "inconclusive", "not testable", "not measured")
DIRECTIONS = ("higher", "lower")


def holm(pvalues: ArrayLike) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p-values (Holm 1979), in the input order: with the m non-NaN
    p-values sorted, ``p_(i)`` becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``. NaN stays NaN."""
    p = as_values("pvalues", pvalues, drop_nan=False)
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


def minimum_detectable_effect(se: float, *, alpha: float = 0.05, power: float = 0.8, p_floor: float = 0.0) -> float:
    """The smallest true effect a one-sided test at ``alpha`` detects with probability ``power``:
    ``(z_{1-alpha} + z_{power}) * se`` (Cohen 1988, ch. 2); ``inf`` when the design's smallest p-value
    ``p_floor`` is not below ``alpha``; NaN for NaN ``se``."""
    from scipy.stats import norm

    alpha = check_range("alpha", alpha, 0, 1, lo_open=True, hi_open=True)
    power = check_range("power", power, 0, 1, lo_open=True, hi_open=True)
    se = real("se", se)
    if math.isnan(se):
        return float("nan")
    if p_floor >= alpha:
        return float("inf")
    return float((norm.ppf(1 - alpha) + norm.ppf(power)) * abs(se))


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

    ``paper_direction``: the sign of the effect the paper predicts (``"higher"``/``"lower"``);
    ``[ci_lo, ci_hi]``: its 95% interval; ``p_adjusted``: its Holm-adjusted one-sided p. In order:

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
        real("effect", effect),
        real("ci_lo", ci_lo),
        real("ci_hi", ci_hi),
        real("p_adjusted", p_adjusted),
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
