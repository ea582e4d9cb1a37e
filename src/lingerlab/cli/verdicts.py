"""The fair test of the user's models: the book's gates, statistics and verdict rule over L.

``comparison.fair_test`` runs the controls of every arm and seed, the survival check and the deletion
test, evaluates the gates and gives every test one of four verdicts (holds, does not hold,
inconclusive with its minimum detectable effect, not testable with its failed gate). Where it cannot
run (no composites, or the overlay hides every source object) the same tests are reported "not
testable", each naming the gate that fails.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..comparison import FairTest
    from .run import AuditRun

#: the four verdicts of the fair test (``stats.verdict``; "not measured" only for an empty set)
STATUSES = ("holds", "does not hold", "inconclusive", "not testable")
#: the fields of every test in results.json
TEST_FIELDS = (
    "claim",
    "kind",
    "measure",
    "reference",
    "baseline",
    "subset",
    "verdict",
    "verdict_text",
    "effect",
    "ci_lo",
    "ci_hi",
    "p_perm",
    "p_holm",
    "mde",
    "gate",
    "margin",
    "n_reference",
    "n_baseline",
)


def _auroc_interval(neg: Any, pos: Any, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC (negatives and positives resampled separately;
    the Mann-Whitney form with mid-ranks, as ``detection.auroc``)."""
    import numpy as np
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    out = np.empty(n_boot)
    for i in range(n_boot):
        n, p = neg[rng.integers(0, len(neg), len(neg))], pos[rng.integers(0, len(pos), len(pos))]
        r = rankdata(np.concatenate([n, p]))[len(n) :]
        out[i] = (r.sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(n))
    a = (1 - level) / 2
    lo, hi = np.quantile(out, [a, 1 - a])
    return float(lo), float(hi)


def _distraction_stats(dt: Any) -> tuple[Any, Any]:
    """Per (model, class) and per model: distraction (Eq. 4) with a cluster-bootstrap 95% interval over
    composites (seeds of M^b averaged per composite first), the shuffled-pair null, the excess over
    it with its paired interval, and the error rate on the composites (descriptive: the tests are the
    fair test's)."""
    import numpy as np
    import pandas as pd

    from ..stats import cluster_bootstrap_ci, paired_cluster_bootstrap_ci

    per = dt.groupby(
        ["model", "composite", "source_class", "source_name", "lingering"], as_index=False, sort=False
    ).agg(distraction=("distraction", "mean"), null=("null", "mean"), correct=("correct", "mean"))

    def stats_of(sub: Any) -> dict[str, Any]:
        d, nu = sub["distraction"].to_numpy(float), sub["null"].to_numpy(float)
        clusters = sub["composite"].to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m, lo, hi = cluster_bootstrap_ci(d, clusters, n_boot=2000, seed=0)
            e, elo, ehi = paired_cluster_bootstrap_ci(d, nu, clusters, n_boot=2000, seed=0)
            null = float(np.nanmean(nu)) if np.isfinite(nu).any() else float("nan")
        return {
            "n": len(sub),
            "distraction": m,
            "ci_lo": lo,
            "ci_hi": hi,
            "null": null,
            "excess": e,
            "excess_lo": elo,
            "excess_hi": ehi,
            "error": float(1 - sub["correct"].mean()),
        }

    rows = [
        {"model": m, "source_class": int(c), "source_name": n, "lingering": bool(ling), **stats_of(sub)}
        for (m, c, n, ling), sub in per.groupby(["model", "source_class", "source_name", "lingering"], sort=False)
    ]
    overall = pd.DataFrame([{"model": m, **stats_of(sub)} for m, sub in per.groupby("model", sort=False)])
    return pd.DataFrame(rows), overall


# ------------------------------------------------------------------------------------ the fair test


def arms_of(run: AuditRun) -> dict[str, str]:
    """The arms of the user's audit, label -> arm name: M^t and, when there is one, M^b (the user's
    given baseline, measured for every seed, or the scratch recipe trained with each seed)."""
    return {"M^t": "M^t", "M^b": "M^b"} if run.has_baseline else {"M^t": "M^t"}


def fair_test(run: AuditRun) -> FairTest:
    """``comparison.fair_test`` of the audit's arms over ``run.seeds``; every test "not testable"
    (with the gate that fails) where the fair test cannot run."""
    from .. import checks, comparison
    from ..gates import MIN_CLASSES

    audit, arms = run.audit, arms_of(run)
    comp = getattr(run, "comp", None)
    if comp is None or len(comp) < 2:
        why = "F is empty" if not run.F else "no class of F has images" if not run.F_images else "a single composite"
        return _untestable(arms, _no_contrast_gates(why, MIN_CLASSES))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        survival = checks.source_survival(audit, audit.composites(seed=0))
        if not survival["survives"].astype(bool).any():
            return _hidden_everywhere(run, arms, survival)
        return comparison.fair_test(audit, arms, run.seeds)


def _hidden_everywhere(run: AuditRun, arms: dict[str, str], survival: Any) -> FairTest:
    """The gates of a world where the overlay hides every source object (``comparison.summarize``
    would have no class left): every test fails the object-survival gate."""
    from .. import checks, comparison
    from ..gates import evaluate

    ctl = comparison.controls(run.audit, arms, run.seeds)
    ref = ctl.attrs["reference"]
    base = tuple(a for a in arms if a != ref)
    faith = checks.faithfulness(run.audit, arms, run.seeds, run.audit.composites(seed=0))
    g = evaluate(ctl, survival, faith, ref, base)
    return _untestable(arms, g, controls=ctl)


def _no_contrast_gates(why: str, min_classes: int) -> Any:
    """Gates for an audit without composites to test: L has no class to compare (contrast size)."""
    import pandas as pd

    from ..gates import Gates

    rows = [
        {
            "gate": "contrast size",
            "subject": subject,
            "value": f"no composites to test ({why}): 0 classes in L",
            "rule": f"median >= {min_classes}" + (" in each" if subject != "L" else ""),
            "passed": False,
        }
        for subject in ("L", "L and F \\ L")
    ]
    empty = pd.DataFrame()
    return Gates(
        table=pd.DataFrame(rows),
        hidden=(),
        n_classes=pd.DataFrame(columns=["seed", "L", "F \\ L"]),
        survival=empty,
        faith=empty,
    )


def _untestable(arms: dict[str, str], gates: Any, controls: Any = None) -> FairTest:
    """The fair test's family of tests (the claims of ``comparison.summarize``), each "not testable"
    with the first gate it fails (``gates.Gates.failed``, or the contrast size where only it was
    evaluated)."""
    import pandas as pd

    from ..comparison import CONTRAST_MEASURES, FAMILY_MEASURES, MARGINS, FairTest
    from ..gates import NEEDS

    ref, base = "M^t", tuple(a for a in arms if a != "M^t")
    plan = [(f"{m} on L: {ref} > {b}", "between arms", b, m, "L") for b in base for m in FAMILY_MEASURES]
    plan += [(f"{m} of {ref}: L > F \\ L", "within model", ref, m, "L vs F \\ L") for m in CONTRAST_MEASURES]
    evaluated = set(zip(gates.table["gate"], gates.table["subject"]))
    rows = []
    for claim, kind, b, m, subset in plan:
        if ("object survival", "F") in evaluated:
            gate = gates.failed(kind, m, ref, b) or ""
        else:
            need = dict(NEEDS[(kind, m)])["contrast size"]
            gate = f"contrast size ({need})"
        nan = float("nan")
        rows.append(
            {
                "claim": claim,
                "kind": kind,
                "reference": ref,
                "baseline": b,
                "measure": m,
                "subset": subset,
                "effect": nan,
                **dict.fromkeys(("ci_lo", "ci_hi", "ci90_lo", "ci90_hi", "se", "p_perm", "p_against"), nan),
                "p_floor": nan,
                "n_reference": 0,
                "n_baseline": 0,
                "p_holm": nan,
                "p_against_holm": nan,
                "margin": MARGINS[m],
                "mde": nan,
                "gate": gate,
                "verdict": "not testable" if gate else "not measured",
            }
        )
    tests = pd.DataFrame(rows)
    ctl = controls if controls is not None else pd.DataFrame()
    return FairTest(
        controls=ctl,
        per_seed=pd.DataFrame(),
        table=pd.DataFrame(columns=["arm", "subset", "measure", "mean", "ci_lo", "ci_hi", "n_seeds", "values"]),
        tests=tests,
        reference=ref,
        baselines=base,
        excluded=tuple(gates.hidden),
        gates=gates,
    )


def records(ft: FairTest) -> list[dict[str, Any]]:
    """Every test of the fair test as a results.json record (:data:`TEST_FIELDS`)."""
    t = ft.tests.assign(verdict_text=ft.verdicts()["verdict"].to_numpy())
    return t[list(TEST_FIELDS)].to_dict("records")


def counts(ft: FairTest) -> dict[str, int]:
    """How many tests got each of the four verdicts (and "not measured", when any did)."""
    vc = ft.tests["verdict"].value_counts()
    out = {s: int(vc.get(s, 0)) for s in STATUSES}
    if int(vc.get("not measured", 0)):
        out["not measured"] = int(vc["not measured"])
    return out


def protocol(run: AuditRun, ft: FairTest) -> dict[str, str]:
    """What the tests generalise over, in words, with the smallest p the design allows."""
    from ..comparison import smallest_p

    n = len(run.seeds)
    floor = smallest_p(n, n, "greater")
    between = (
        f"Between arms the exact one-sided permutation test over seeds can give no p below {floor:.3g} "
        f"({n} + {n} seeds)"
        + ('; "holds" needs a Holm-adjusted p below 0.05, out of reach here.' if floor >= 0.05 else ".")
    )
    if run.baseline == "scratch":
        out = {
            "kind": f"n seeds of M^b against one given M^t: the fair test over L ({n} seeds)",
            "text": (
                f"M^t is one given model, measured at every seed {run.seeds}; M^b was trained {n} times "
                f"by the printed recipe. {between} The tests generalise over M^b's training runs, not over "
                "M^t's (there is one M^t)."
            ),
        }
    elif run.baseline == "given":
        out = {
            "kind": "two single given models: the fair test over L (one seed each)",
            "text": (
                f"M^t and M^b are single given models. {between} The within-model tests (L against F \\ L) "
                "relabel the classes of L and generalise over classes for this M^t."
            ),
        }
    else:
        out = {
            "kind": "no baseline: the fair test's within-model tests only",
            "text": (
                "--baseline none: there is no M^b, so no test between arms is run. The within-model tests "
                "compare M^t's composites of L with those of F \\ L (relabelling which classes are in L)."
            ),
        }
    out["family"] = (
        f"comparison.fair_test: {len(ft.tests)} tests over L, Holm's correction across them, one verdict rule "
        "(stats.verdict: holds / does not hold / inconclusive with the smallest detectable effect / not "
        "testable with the failed gate)."
    )
    return out
