"""Reading a remedy table (``remedy_sweep.remedy_table``): what each remedy buys against what it costs,
summarized per remedy, as advice by one rule, and world by world."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from .remedy_sweep import AT_CHANCE_MARGIN

__all__ = ["summarize_remedies", "remedy_advice", "remedy_effects_by_world"]

_METRICS = (
    "target_acc",
    "composite_acc",
    "distraction",
    "distraction_null",
    "distraction_excess",
    "n_lingering",
    "mean_p_st",
    "pruned_fraction",
    "time_overhead",
)


def summarize_remedies(table: pd.DataFrame, reference: str = "plain fine-tuning") -> pd.DataFrame:
    """Per remedy (in the table's order): mean and SD over seeds of each metric, and the paired change
    against ``reference`` (same seed), ``d_<metric>`` and its SD."""
    missing = [c for c in ("remedy", "seed", "feasible") + _METRICS if c not in table]
    if missing:
        raise ValueError(f"table must be a remedy_table; missing columns {missing}")
    if reference not in set(table["remedy"]):
        raise ValueError(f"reference must be a remedy of the table; got {reference!r}")
    ref = table[table["remedy"] == reference].set_index("seed")
    out = []
    for name, g in table.groupby("remedy", sort=False):
        row: dict[str, Any] = {
            "remedy": name,
            "feasible": bool(g["feasible"].all()),
            "n_seeds": len(g),
            "note": next((n for n in g["note"] if n), ""),
        }
        for m in _METRICS:
            vals = pd.to_numeric(g[m], errors="coerce").astype(float)
            row[m] = vals.mean()
            row[f"{m}_sd"] = vals.std(ddof=1) if len(vals) > 1 else float("nan")
            r = pd.to_numeric(ref[m], errors="coerce").astype(float).reindex(g["seed"]).to_numpy()
            d = vals.to_numpy() - r
            row[f"d_{m}"] = float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")
            row[f"d_{m}_sd"] = float(np.nanstd(d, ddof=1)) if np.isfinite(d).sum() > 1 else float("nan")
        chance = float(g["chance"].iloc[0]) if "chance" in g else float("nan")
        row["at_chance"] = (
            bool(row["target_acc"] <= chance + AT_CHANCE_MARGIN) if np.isfinite(row["target_acc"]) else False
        )
        out.append(row)
    return pd.DataFrame(out)


#: the rule of :func:`remedy_advice`: a remedy may cost at most this much target accuracy (paired mean)
#: and this multiple of plain fine-tuning's time; it *removes memories* when its mean |L| is at most
#: this share of plain fine-tuning's
MAX_TARGET_COST, MAX_TIME_OVERHEAD, REMOVES_SHARE = 0.01, 2.0, 0.5


def _eligible(summary: pd.DataFrame, reference: str) -> pd.Series:
    return (
        summary.feasible
        & ~summary.at_chance
        & (summary.remedy != reference)
        & (summary.d_target_acc >= -MAX_TARGET_COST)
        & (summary.time_overhead <= MAX_TIME_OVERHEAD)
    )


def _removes(summary: pd.DataFrame, reference: str) -> pd.Series:
    """Feasible remedies whose mean |L| is at most :data:`REMOVES_SHARE` of ``reference``'s."""
    plain_L = float(summary.set_index("remedy").loc[reference, "n_lingering"])
    return summary.feasible & (summary.n_lingering <= REMOVES_SHARE * plain_L)


def remedy_advice(summary: pd.DataFrame, reference: str = "plain fine-tuning", n_first: int = 3) -> pd.DataFrame:
    """What to try first: the ``n_first`` feasible remedies not at chance with the largest composite-accuracy
    gain within the costs of :data:`MAX_TARGET_COST` and :data:`MAX_TIME_OVERHEAD`; those that remove
    memories (:data:`REMOVES_SHARE`); those at chance. Columns ``question, answer``."""
    first = summary[_eligible(summary, reference)].sort_values("d_composite_acc", ascending=False).head(n_first)
    removes = summary[_removes(summary, reference)].remedy.tolist()
    lesions = summary[summary.at_chance].remedy.tolist()
    questions = ["try first (largest composite-accuracy gain within the costs)"] + ["then"] * (n_first - 1)
    return pd.DataFrame(
        {
            "question": questions
            + ["removes lingering memories (|L| at most half of plain's)", "at chance: lesions, not remedies"],
            "answer": [
                *(
                    f"{r.remedy} ({r.d_composite_acc:+.3f} composite acc., {r.d_target_acc:+.3f} target acc.)"
                    for r in first.itertuples()
                ),
                *[""] * (n_first - len(first)),
                ", ".join(removes) or "none",
                ", ".join(lesions) or "none",
            ],
        }
    )


def remedy_effects_by_world(
    summaries: Mapping[str, pd.DataFrame], reference: str = "plain fine-tuning"
) -> pd.DataFrame:
    """Per remedy (rows) and world (column groups; ``summaries``: world -> :func:`summarize_remedies`):
    the paired changes in composite and target accuracy and |L|, and a ``verdict`` by
    :func:`remedy_advice`'s rule ("try", "gain within its SD", "costs too much", each perhaps with
    "; removes memories"; "lesion", "not feasible", "reference")."""
    cols = {}
    for world, sm in summaries.items():
        verdicts = []
        for r, e, rm in zip(sm.itertuples(), _eligible(sm, reference), _removes(sm, reference)):
            if r.remedy == reference:
                verdicts.append("reference")
            elif not r.feasible:
                verdicts.append("not feasible")
            elif r.at_chance:
                verdicts.append("lesion")
            else:
                sd = r.d_composite_acc_sd if np.isfinite(r.d_composite_acc_sd) else 0.0
                v = "costs too much" if not e else "try" if r.d_composite_acc > sd else "gain within its SD"
                verdicts.append(v + ("; removes memories" if rm else ""))
        t = sm.set_index("remedy")
        for m in ("d_composite_acc", "d_composite_acc_sd", "d_target_acc", "d_n_lingering"):
            cols[(world, m)] = t[m]
        cols[(world, "verdict")] = pd.Series(verdicts, index=t.index)
    out = pd.DataFrame(cols)
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["world", "measure"])
    return out
