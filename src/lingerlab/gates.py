"""The preconditions of the paper's test, as gates: a measure is believed only where they hold.

Eq. 4 and the error claims compare models on composites I(c). Each comparison needs:

- **object survival**: the pasted target leaves the source object visible to M^s: per class, M^s's
  mean p(c_s) on the composites keeps at least ``checks.SURVIVAL_RATIO`` of its value on the source
  images alone (``checks.source_survival``). A class that fails leaves every claim (counted).
- **competence on pasted targets**: an arm reads the pasted target on an object-free background (the
  blurred control): mean accuracy over seeds at least :data:`COMPETENCE_MIN`. Otherwise its error
  claims are not testable: an arm that cannot read the patch is wrong for reasons of its own.
- **attribution faithfulness**: Grad-CAM passes the deletion test (``checks.faithfulness``) for M^s and
  in more than half the seeds of the arm measured. Otherwise Eq. 4 is not testable for it.
- **contrast size**: at least :data:`MIN_CLASSES` surviving classes in L (and, for the within-model
  contrast, in F \\ L) in the median seed.
- **transfer helps**: M^t's clean target accuracy against M^b's. It blocks nothing; it is stated beside
  every between-arm verdict, so that "the fine-tuned model is the weaker one" is never hidden.

:func:`evaluate` computes the table; ``Gates.failed`` names every gate a claim fails.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np
import pandas as pd


__all__ = ["COMPETENCE_MIN", "MIN_CLASSES", "GATES", "Gates", "evaluate", "without_composites", "NEEDS"]

#: an arm is competent on pasted targets when its mean accuracy on object-free composites reaches this
COMPETENCE_MIN = 0.75
#: the L vs F \ L contrast and the tests over L need this many surviving classes in the median seed
MIN_CLASSES = 2
_FL = "F \\ L"
GATES = (
    "object survival",
    "competence on pasted targets",
    "attribution faithfulness",
    "contrast size",
    "transfer helps",
)

#: what each claim of the fair test needs: (kind, measure) -> (gate, which models)
NEEDS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("between arms", "err_source_only"): (("contrast size", "L"), ("competence on pasted targets", "both")),
    ("between arms", "excess_error"): (("contrast size", "L"), ("competence on pasted targets", "both")),
    ("between arms", "flip_rate"): (("contrast size", "L"), ("competence on pasted targets", "both")),
    ("between arms", "hijack_rate"): (("contrast size", "L"), ("competence on pasted targets", "both")),
    ("between arms", "distraction_excess"): (("contrast size", "L"), ("attribution faithfulness", "both")),
    ("within model", "excess_error"): (
        ("contrast size", "L and F \\ L"),
        ("competence on pasted targets", "reference"),
    ),
    ("within model", "distraction_excess"): (
        ("contrast size", "L and F \\ L"),
        ("attribution faithfulness", "reference"),
    ),
}


@dataclass(frozen=True)
class Gates:
    """The gates of one world's fair test.

    Attributes:
        table: one row per (gate, subject): ``gate, subject, value, rule, passed``.
        hidden: source classes whose object the overlay hides (left out of every test).
        survival: the survival check it read (``checks.source_survival``).
        faith: the deletion test it read (``checks.faithfulness``).
    """

    table: pd.DataFrame
    hidden: tuple[int, ...]
    survival: pd.DataFrame
    faith: pd.DataFrame

    def passed(self, gate: str, subject: str) -> bool:
        """Whether ``gate`` passed for ``subject`` (an arm label, ``"L"``, ``"L and F \\ L"`` or ``"M^s"``)."""
        rows = self.table[(self.table["gate"] == gate) & (self.table["subject"] == subject)]
        if rows.empty:
            raise ValueError(
                f"no gate {gate!r} for subject {subject!r}; gates: "
                f"{sorted(set(zip(self.table['gate'], self.table['subject'])))}"
            )
        return bool(rows["passed"].iloc[0])

    def describe(self) -> str:
        """The gates in words (Markdown bullets), each with its value and rule."""
        lines = [
            f"- **{r.gate}** ({r.subject}): {r.value}; rule: {r.rule}: **{'passes' if r.passed else 'fails'}**"
            for r in self.table.itertuples()
        ]
        return "\n".join(lines)

    def without(self, ctl: pd.DataFrame, reference: str, classes: Iterable[int]) -> "Gates":
        """These gates with ``classes`` left out as well (a sensitivity analysis): the contrast-size rows
        recounted on what is left; every other gate is per arm or per class and stands."""
        left = tuple(sorted(set(self.hidden) | {int(c) for c in classes}))
        counts = _contrast_counts(ctl, reference, left)
        table = self.table.copy()
        for i, row in zip(table.index[table["gate"] == "contrast size"], _contrast_rows(counts)):
            table.loc[i, list(row)] = list(row.values())
        return replace(self, table=table, hidden=left)

    def failed(self, kind: str, measure: str, reference: str, baseline: str) -> str | None:
        """Every gate the claim ``(kind, measure)`` fails (:data:`NEEDS`), as ``"gate (subject)"`` joined
        by ``"; "``, else None. With no surviving class every claim fails object survival, and nothing
        else is asked; a gate this world did not evaluate (:func:`without_composites`) is not asked."""
        evaluated = set(self.table["gate"])
        if "object survival" in evaluated and not self.passed("object survival", "F"):
            return "object survival (F)"
        failed = []
        for gate, who in NEEDS.get((kind, measure), ()):
            subjects = {"both": [reference, baseline], "reference": [reference]}.get(who, [who])
            failed += [f"{gate} ({s})" for s in subjects if gate in evaluated and not self.passed(gate, s)]
        return "; ".join(failed) or None


def _contrast_counts(ctl: pd.DataFrame, reference: str, hidden: Iterable[int]) -> pd.DataFrame:
    """Per seed of the reference, surviving classes in L and in F \\ L."""
    r = ctl[(ctl["arm"] == reference) & ~ctl["source_class"].isin(list(hidden))]
    rows = []
    for s, g in r.groupby("seed", sort=True):
        in_l = g.groupby("source_class")["in_L"].first()
        rows.append({"seed": s, "L": int(in_l.sum()), "F \\ L": int((~in_l).sum())})
    return pd.DataFrame(rows, columns=["seed", "L", "F \\ L"])


def evaluate(
    ctl: pd.DataFrame, survival: pd.DataFrame, faith: pd.DataFrame, reference: str, baselines: Iterable[str]
) -> Gates:
    """The gate table from the fair test's controls (``controls.controls``), the survival check
    (``checks.source_survival``) and the deletion test (``checks.faithfulness``, models labelled as the
    arms of ``ctl``, with ``"M^s"``)."""
    arms = [reference, *baselines]
    rows = []
    hidden = tuple(sorted(int(c) for c in survival.loc[~survival["survives"].astype(bool), "source_class"]))
    n_surv = len(survival) - len(hidden)
    rows.append(
        {
            "gate": "object survival",
            "subject": "F",
            "value": f"{n_surv} of {len(survival)} classes keep M^s's p(c_s) on the composite",
            "rule": "at least one class survives",
            "passed": n_surv > 0,
        }
    )
    neutral_acc = ctl.assign(acc=ctl["correct_neutral"].astype(float)).groupby(["arm", "seed"])["acc"].mean()
    for arm in arms:
        acc = neutral_acc.loc[arm]
        rows.append(
            {
                "gate": "competence on pasted targets",
                "subject": arm,
                "value": f"accuracy on object-free composites {acc.mean():.3f} (seeds {acc.min():.3f}-{acc.max():.3f})",
                "rule": f"mean >= {COMPETENCE_MIN:g}",
                "passed": bool(acc.mean() >= COMPETENCE_MIN),
            }
        )
    ms = faith[faith["model"] == "M^s"]
    ms_ok = bool(len(ms)) and bool(ms["faithful"].all())
    rows.append(
        {
            "gate": "attribution faithfulness",
            "subject": "M^s",
            "value": f"deletion gain {ms['gain'].mean():.3f}" if len(ms) else "not measured",
            "rule": "gain's 95% interval above 0",
            "passed": ms_ok,
        }
    )
    for arm in arms:
        f = faith[faith["model"] == arm]
        share = float(f["faithful"].mean()) if len(f) else float("nan")
        rows.append(
            {
                "gate": "attribution faithfulness",
                "subject": arm,
                "value": f"faithful in {int(f['faithful'].sum())} of {len(f)} seeds",
                "rule": "more than half the seeds, and M^s",
                "passed": bool(ms_ok and share > 0.5),
            }
        )
    counts = _contrast_counts(ctl, reference, hidden)
    rows += _contrast_rows(counts)
    acc = ctl.attrs.get("target_acc", {})
    ref_acc = np.mean([v for (a, _), v in acc.items() if a == reference]) if acc else float("nan")
    for b in baselines:
        b_acc = np.mean([v for (a, _), v in acc.items() if a == b]) if acc else float("nan")
        rows.append(
            {
                "gate": "transfer helps",
                "subject": b,
                "value": f"clean accuracy {reference} {ref_acc:.3f} vs {b} {b_acc:.3f}",
                "rule": "stated beside the verdict; blocks nothing",
                "passed": bool(ref_acc >= b_acc),
            }
        )
    return Gates(table=pd.DataFrame(rows), hidden=hidden, survival=survival, faith=faith)


def _contrast_rows(counts: pd.DataFrame) -> list[dict]:
    """The contrast-size rows from the per-seed counts of surviving classes in L and in F \\ L."""
    med_l = float(np.median(counts["L"])) if len(counts) else 0.0
    med_fl = float(np.median(counts[_FL])) if len(counts) else 0.0
    return _contrast_size(
        (f"surviving classes in L per seed {counts['L'].tolist()}", f"in F \\ L per seed {counts[_FL].tolist()}"),
        (med_l >= MIN_CLASSES, med_l >= MIN_CLASSES and med_fl >= MIN_CLASSES),
    )


def _contrast_size(values: tuple[str, str], passed: tuple[bool, bool]) -> list[dict]:
    """The contrast-size rows: L, and L and F \\ L together (each with its value and whether it passed)."""
    return [
        {"gate": "contrast size", "subject": s, "value": v, "rule": f"median >= {MIN_CLASSES}" + rule, "passed": p}
        for s, v, p, rule in zip(("L", "L and F \\ L"), values, passed, ("", " in each"))
    ]


def without_composites(why: str) -> Gates:
    """The gates of an audit with no composites to test: only the contrast size, which fails (no class
    in L); every other gate is not evaluated."""
    value = f"no composites to test ({why}): 0 classes in L"
    empty = pd.DataFrame()
    return Gates(
        table=pd.DataFrame(_contrast_size((value, value), (False, False))),
        hidden=(),
        survival=empty,
        faith=empty,
    )
