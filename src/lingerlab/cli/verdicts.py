"""The fair test of the user's models (``fair_test.fair_test``: the book's gates, statistics and four
verdicts over L); where it cannot run, every test is "not testable", naming the gate that fails.
``run`` below is the audit's ``cli.run.AuditRun``."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..fair_test import FairTest

#: the four verdicts of the fair test (``verdict_rule.verdict``; "not measured" only for an empty set)
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


def fair_test(run: Any) -> FairTest:
    """``fair_test.fair_test`` of the audit's arms over ``run.seeds`` (each test "not testable" where it cannot run)."""
    from .. import checks
    from .. import fair_test as _fair_test
    from ..controls import controls
    from ..gates import evaluate, without_composites

    audit = run.audit
    arms = {"M^t": "M^t", "M^b": "M^b"} if run.has_baseline else {"M^t": "M^t"}  # M^b: given or scratch
    comp = getattr(run, "comp", None)
    if comp is None or len(comp) < 2:
        why = "F is empty" if not run.F else "no class of F has images" if not run.F_images else "a single composite"
        return _untestable(arms, without_composites(why))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        survival = checks.source_survival(audit, audit.composites(seed=0))
        if survival["survives"].astype(bool).any():
            return _fair_test.fair_test(audit, arms, run.seeds)
        # the overlay hides every source object: every test fails the object-survival gate
        ctl = controls(audit, arms, run.seeds)
        ref = ctl.attrs["reference"]
        faith = checks.faithfulness(audit, arms, run.seeds, audit.composites(seed=0))
        return _untestable(arms, evaluate(ctl, survival, faith, ref, _fair_test.baselines_of(ctl, ref)), controls=ctl)


def _untestable(arms: dict[str, str], gates: Any, controls: Any = None) -> FairTest:
    """The fair test's family of tests (``fair_test.family``) without numbers, each "not testable" by ``gates``."""
    import pandas as pd

    from ..fair_test import FairTest, family, with_verdicts

    ref, base = "M^t", tuple(a for a in arms if a != "M^t")
    nan = float("nan")
    numbers = dict.fromkeys(("effect", "ci_lo", "ci_hi", "ci90_lo", "ci90_hi", "se", "p_perm", "p_against"), nan)
    rows = [{**claim, **numbers, "p_floor": nan, "n_reference": 0, "n_baseline": 0} for claim in family(ref, base)]
    return FairTest(
        controls=controls if controls is not None else pd.DataFrame(),
        table=pd.DataFrame(columns=["arm", "subset", "measure", "mean", "ci_lo", "ci_hi", "n_seeds", "values"]),
        tests=with_verdicts(pd.DataFrame(rows), gates),
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


def protocol(run: Any, ft: FairTest) -> dict[str, str]:
    """What the tests generalise over, in words, with the smallest p the design allows."""
    from ..permutation import smallest_p

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
        f"fair_test.fair_test: {len(ft.tests)} tests over L, Holm's correction across them, one verdict rule "
        "(verdict_rule.verdict: holds / does not hold / inconclusive with the smallest detectable effect / not "
        "testable with the failed gate)."
    )
    return out
