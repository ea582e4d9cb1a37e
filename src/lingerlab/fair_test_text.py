"""The fair test in words, from code: the sentences and tables the book glues instead of typing numbers."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import coverage
from .fair_test import SUBSETS, FairTest

__all__ = [
    "describe",
    "power_text",
    "findings",
    "headline",
    "occlusion_text",
    "measure_table",
    "claims",
    "COVERAGE_CLAIMS",
]

_CLAIM_WORDS = {
    "err_source_only": "is wrong more often on L composites than",
    "excess_error": "has a larger excess error (source object vs blurred background) on L composites than",
    "flip_rate": "is flipped by the source object more often on L composites than",
    "hijack_rate": "is hijacked (wrong with the object, right without it, the other arm right) more often than",
    "distraction_excess": "is more distracted (Eq. 4 above its per-class null) on L composites than",
}
_CONTRAST_WORDS = {
    "excess_error": "its excess error is larger on L composites than on F \\ L composites",
    "distraction_excess": "its Eq. 4 distraction above the null is larger on L composites than on F \\ L composites",
}


def _evidence(r: Any) -> str:
    """A test's numbers in one clause: effect, 95% interval, Holm-adjusted p, seeds, and what its verdict needs."""
    if r.verdict == "not testable":
        return f"failed gate{'s' if ';' in r.gate else ''}: {r.gate}"
    if r.verdict == "not measured":
        return "the set is empty"
    text = (
        f"effect {r.effect:+.3f}, 95% CI [{r.ci_lo:+.3f}, {r.ci_hi:+.3f}], one-sided Holm-adjusted p = "
        f"{r.p_holm:.3g}, {r.n_reference} + {r.n_baseline} seeds"
    )
    if r.verdict == "inconclusive":
        text += f"; smallest effect detectable at 80% power {r.mde:.3f}, margin {r.margin:g}"
    elif r.verdict == "does not hold":
        text += f"; 90% CI [{r.ci90_lo:+.3f}, {r.ci90_hi:+.3f}] against the margin +/-{r.margin:g}"
    stability = getattr(r, "stability", "")
    if stability == "stable":
        perturbed = " and under perturbed numerics" if hasattr(r, "numerics") else ""
        text += f"; stable: the same verdict with any one class left out{perturbed}"
    elif stability == "fragile":
        text += f"; fragile: {r.moved_by}"
    return text


def _transfer(ft: FairTest, r: Any) -> str:
    """The transfer-helps gate's value for the baseline of the between-arms test ``r``, or ''."""
    g = ft.gates
    if g is None or r.kind != "between arms":
        return ""
    row = g.table[(g.table["gate"] == "transfer helps") & (g.table["subject"] == r.baseline)]
    return "" if row.empty else f"; {row['value'].iloc[0]}"


def describe(ft: FairTest) -> str:
    """The fair test's findings as Markdown bullets, one per test: its verdict with its failed gate or
    its numbers, and for between-arm tests the transfer-helps gate's value."""
    lines = []
    for r in ft.tests.itertuples():
        if r.kind == "between arms":
            what = f"{r.reference} {_CLAIM_WORDS.get(r.measure, r.measure)} {r.baseline}"
        else:
            what = f"within {r.reference}, {_CONTRAST_WORDS.get(r.measure, r.measure)}"
        lines.append(f"- {what}: **{r.verdict}** ({_evidence(r)}{_transfer(ft, r)})")
    counts = ft.tests["verdict"].value_counts()
    head = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in ("holds", "does not hold", "inconclusive", "not testable"))
    return f"Of {len(ft.tests)} tests: {head}.\n\n" + "\n".join(lines)


def measure_table(ft: FairTest, measures: Sequence[str], subsets: Sequence[str] = SUBSETS) -> pd.DataFrame:
    """``mean [95% interval]`` of each measure on each subset (rows) for every arm (columns); measures
    absent from the fair test are left out."""
    t = ft.table
    arms = list(dict.fromkeys(t["arm"]))
    rows = {
        (subset, m): {a: ft.interval(a, m, subset) for a in arms}
        for subset in subsets
        for m in measures
        if ((t["measure"] == m) & (t["subset"] == subset)).any()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["subset", "measure"])


def occlusion_text(ft: FairTest) -> str:
    """Figures 5 and 6 in two sentences: each arm's excess error on L composites (Fig. 5), and the
    reference's error with a shared class behind the patch (Fig. 6)."""
    ref = ft.reference
    parts = [f"{a} {ft.interval(a, 'excess_error')}" for a in (ref, *ft.baselines)]
    text = "Blurring the source object away changes the error on L composites (excess error) by " + "; ".join(parts)
    shared = ft.table[(ft.table["measure"] == "err_shared") & (ft.table["subset"] == "L") & (ft.table["arm"] == ref)]
    if len(shared) and not np.isnan(float(shared["mean"].iloc[0])):
        text += (
            f". With a shared class behind the same patch, {ref}'s error is {ft.interval(ref, 'err_shared')}, "
            f"against {ft.interval(ref, 'err_source_only')} with the source-only object and "
            f"{ft.interval(ref, 'err_neutral')} on the blurred background"
        )
    else:
        text += ". This world has no image of a shared class to put behind the patch"
    return text + " (means over seeds, 95% bootstrap-over-seeds intervals)."


def power_text(ft: FairTest, measure: str = "distraction_excess") -> str:
    """The design's power for ``measure`` on L (reference against the first baseline): whether "holds"
    (minimum detectable effect at 80% power within the margin) and "does not hold" (90% interval's
    half-width, 1.645 standard errors, below the margin) are reachable."""
    t = ft.tests
    row = t[(t["kind"] == "between arms") & (t["measure"] == measure)]
    if row.empty:
        return f"The family has no between-arm test of {measure}."
    r = row.iloc[0]
    head = f"Power of the central claim ({measure} on L, {r.reference} against {r.baseline})"
    if r.gate:
        return f"{head}: not computed, the claim is not testable ({r.gate})."
    if not math.isfinite(r.se):
        return f"{head}: not computed, the effect has no standard error (too few seeds or classes)."
    half = 1.645 * r.se
    holds = (
        f"minimum detectable effect {r.mde:.3f} at 80% power, "
        + ("at or below" if r.mde <= r.margin else "above")
        + f" the margin {r.margin:g}"
        if math.isfinite(r.mde)
        else "no effect is detectable (the design's smallest p is not below the level)"
    )
    absent = f"with no effect the 90% interval's half-width would be {half:.3f}, " + (
        "inside the margin" if half < r.margin else "not inside the margin"
    )
    both = math.isfinite(r.mde) and r.mde <= r.margin and half < r.margin
    verdicts = "either 'holds' or 'does not hold' is reachable" if both else "not both verdicts are reachable"
    return f"{head}: {holds}; {absent}: {verdicts}."


def findings(ft: FairTest) -> str:
    """The fair test in words (:func:`describe`), its power (:func:`power_text`) and its gates."""
    text = f"{describe(ft)}\n\n{power_text(ft)}"
    return text if ft.gates is None else f"{text}\n\nThe gates:\n\n{ft.gates.describe()}"


#: The paper's claims the fair test decides, as rows of the coverage matrix: (kind, measure) ->
#: (row order, claim, where in the paper).
COVERAGE_CLAIMS = {
    ("between arms", "err_source_only"): (6, "M^t is wrong more often than a scratch M^b on composites of L", "Fig. 3"),
    ("between arms", "excess_error"): (
        7,
        "... and the source object causes it (excess error over a blurred copy)",
        "Fig. 3, Fig. 1c",
    ),
    ("between arms", "flip_rate"): (8, "The source object flips M^t's prediction more often than M^b's", "Fig. 1c"),
    ("between arms", "hijack_rate"): (
        3,
        "M^t is hijacked more often than M^b (wrong with the object, right without it, M^b right)",
        "Fig. 1, Fig. 3b",
    ),
    ("between arms", "distraction_excess"): (
        9,
        "M^t is distracted more than M^b (Eq. 4 over L, above its null)",
        "Eq. 4, Fig. 3a",
    ),
    ("within model", "distraction_excess"): (10, "M^t is distracted more on L than on F \\ L", "Eq. 4, Fig. 3a"),
}


def claims(ft: FairTest, world: str, page: str = "04_distraction", anchor: str = "") -> list[dict[str, Any]]:
    """The fair test's verdicts on :data:`COVERAGE_CLAIMS` as rows of the coverage matrix; between arms
    against the first baseline only."""
    rows = []
    for r in ft.tests.itertuples():
        key = (r.kind, r.measure)
        if key not in COVERAGE_CLAIMS or (r.kind == "between arms" and r.baseline != ft.baselines[0]):
            continue
        order, text, paper = COVERAGE_CLAIMS[key]
        status, evidence = coverage.from_verdict(r.verdict), _evidence(r) + _transfer(ft, r)
        rows.append(coverage.claim(order, text, paper, world, status, evidence, page, anchor))
    return rows


def headline(ft: FairTest, world: str, measure: str = "distraction_excess") -> str:
    """The paper's central claim (Fig. 3a, Eq. 4 over L) in one Markdown sentence for one world: the
    reference against the first baseline on ``measure``, both arms' Eq. 4 and nulls, and the verdict."""
    base = ft.baselines[0]
    rows = ft.tests[
        (ft.tests["kind"] == "between arms") & (ft.tests["measure"] == measure) & (ft.tests["baseline"] == base)
    ]
    if rows.empty:
        raise ValueError(
            f"no between-arms test of measure {measure!r} against {base!r}; "
            f"measures tested: {sorted(set(ft.tests['measure']))}"
        )
    r = next(rows.itertuples())
    cell = ft.interval
    said = f"`{world}`: {ft.reference} {_CLAIM_WORDS.get(measure, measure)} {base}"
    if r.verdict in ("not testable", "not measured"):
        return f"{said}: **{r.verdict}** ({_evidence(r)}{_transfer(ft, r)})."
    return (
        f"{said}: **{r.verdict}** (Eq. 4 on L {cell(ft.reference, 'distraction')} against its null "
        f"{cell(ft.reference, 'distraction_null')}; {base} {cell(base, 'distraction')} against "
        f"{cell(base, 'distraction_null')}; {_evidence(r)}{_transfer(ft, r)})."
    )
