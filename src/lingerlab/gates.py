"""The preconditions of the paper's test (Eq. 4 and the error claims on composites I(c)), as gates.

- **object survival**: M^s still sees the source object on the composites (``checks.source_survival``);
- **competence on pasted targets**: an arm reads the patch on the blurred control (:data:`COMPETENCE_MIN`);
- **attribution faithfulness**: Grad-CAM passes the deletion test (``checks.faithfulness``);
- **contrast size**: :data:`MIN_CLASSES` surviving classes in L (and F \\ L) in the median seed;
- **transfer helps**: M^t's clean accuracy against M^b's, stated beside the verdicts (blocks nothing).

:func:`evaluate` computes the table; ``Gates.failed`` names every gate a claim fails (:data:`NEEDS`).
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
_ERROR_NEEDS = (("contrast size", "L"), ("competence on pasted targets", "both"))

#: what each claim of the fair test needs: (kind, measure) -> (gate, which models)
NEEDS: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("between arms", "err_source_only"): _ERROR_NEEDS,
    ("between arms", "excess_error"): _ERROR_NEEDS,
    ("between arms", "flip_rate"): _ERROR_NEEDS,
    ("between arms", "hijack_rate"): _ERROR_NEEDS,
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


def _row(gate: str, subject: str, value: str, rule: str, passed: bool) -> dict:
    """One row of the gate table."""
    return {"gate": gate, "subject": subject, "value": value, "rule": rule, "passed": passed}


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
        return "\n".join(
            f"- **{r.gate}** ({r.subject}): {r.value}; rule: {r.rule}: **{'passes' if r.passed else 'fails'}**"
            for r in self.table.itertuples()
        )

    def without(self, ctl: pd.DataFrame, reference: str, classes: Iterable[int]) -> "Gates":
        """These gates with ``classes`` left out as well (a sensitivity analysis): only the contrast-size
        rows are recounted."""
        left = tuple(sorted(set(self.hidden) | {int(c) for c in classes}))
        counts = _contrast_counts(ctl, reference, left)
        table = self.table.copy()
        for i, row in zip(table.index[table["gate"] == "contrast size"], _contrast_rows(counts)):
            table.loc[i, list(row)] = list(row.values())
        return replace(self, table=table, hidden=left)

    def failed(self, kind: str, measure: str, reference: str, baseline: str) -> str | None:
        """Every gate the claim ``(kind, measure)`` fails (:data:`NEEDS`), as ``"gate (subject)"`` joined
        by ``"; "``, else None. With no surviving class every claim fails object survival alone; a gate
        this world did not evaluate (:func:`without_composites`) is not asked."""
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
    hidden = tuple(sorted(int(c) for c in survival.loc[~survival["survives"].astype(bool), "source_class"]))
    n_surv = len(survival) - len(hidden)
    value = f"{n_surv} of {len(survival)} classes keep M^s's p(c_s) on the composite"
    rows = [_row("object survival", "F", value, "at least one class survives", n_surv > 0)]
    neutral_acc = ctl.assign(acc=ctl["correct_neutral"].astype(float)).groupby(["arm", "seed"])["acc"].mean()
    for arm in arms:
        acc = neutral_acc.loc[arm]
        value = f"accuracy on object-free composites {acc.mean():.3f} (seeds {acc.min():.3f}-{acc.max():.3f})"
        rule = f"mean >= {COMPETENCE_MIN:g}"
        rows.append(_row("competence on pasted targets", arm, value, rule, bool(acc.mean() >= COMPETENCE_MIN)))
    ms = faith[faith["model"] == "M^s"]
    ms_ok = bool(len(ms)) and bool(ms["faithful"].all())
    value = f"deletion gain {ms['gain'].mean():.3f}" if len(ms) else "not measured"
    rows.append(_row("attribution faithfulness", "M^s", value, "gain's 95% interval above 0", ms_ok))
    for arm in arms:
        f = faith[faith["model"] == arm]
        share = float(f["faithful"].mean()) if len(f) else float("nan")
        value = f"faithful in {int(f['faithful'].sum())} of {len(f)} seeds"
        rule = "more than half the seeds, and M^s"
        rows.append(_row("attribution faithfulness", arm, value, rule, bool(ms_ok and share > 0.5)))
    rows += _contrast_rows(_contrast_counts(ctl, reference, hidden))
    acc = ctl.attrs.get("target_acc", {})
    ref_acc = np.mean([v for (a, _), v in acc.items() if a == reference]) if acc else float("nan")
    for b in baselines:
        b_acc = np.mean([v for (a, _), v in acc.items() if a == b]) if acc else float("nan")
        value = f"clean accuracy {reference} {ref_acc:.3f} vs {b} {b_acc:.3f}"
        rows.append(
            _row("transfer helps", b, value, "stated beside the verdict; blocks nothing", bool(ref_acc >= b_acc))
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
        _row("contrast size", s, v, f"median >= {MIN_CLASSES}" + rule, p)
        for s, v, p, rule in zip(("L", "L and F \\ L"), values, passed, ("", " in each"))
    ]


def without_composites(why: str) -> Gates:
    """The gates of an audit with no composites to test: only the contrast size, which fails."""
    value = f"no composites to test ({why}): 0 classes in L"
    empty = pd.DataFrame()
    return Gates(pd.DataFrame(_contrast_size((value, value), (False, False))), (), empty, empty)
