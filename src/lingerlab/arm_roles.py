"""The arms of the fair test: which models it compares, which is the fine-tuned reference, and what
each arm is (:func:`recipe_table`). An arm is a label mapped to a zoo arm name, a ``recipe.Recipe``
or a callable ``seed -> nn.Module`` (a remedy); by default ``spec.comparison``."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence, Union

import numpy as np
import pandas as pd
from torch import nn

from ._validation import check_seeds
from .recipe import Recipe
from .audit import Audit
from .tuning import converged

__all__ = ["ArmSpec", "arm_specs", "distinct_seeds", "arm_model", "is_fine_tuned", "reference_arm", "recipe_table"]

ArmSpec = Union[str, Recipe, Callable[[int], nn.Module]]


def arm_specs(audit: Audit, arms: Sequence[str] | Mapping[str, ArmSpec] | None) -> dict[str, ArmSpec]:
    """label -> arm: ``arms`` (names, or a mapping), by default the world's ``spec.comparison``."""
    if arms is None:
        arms = audit.world.spec.comparison
    specs: dict[str, ArmSpec] = dict(arms) if isinstance(arms, Mapping) else {a: a for a in arms}
    if not specs:
        raise ValueError("arms is empty: pass at least one arm name (or name -> callable(seed))")
    known = set(audit.zoo.names())
    for spec in specs.values():
        if isinstance(spec, str) and spec not in known:
            raise ValueError(
                f"arms: unknown arm {spec!r}; known: {', '.join(sorted(known))} "
                "(or pass a mapping name -> callable(seed) -> nn.Module)"
            )
    return specs


def distinct_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list (``_validation.check_seeds``), each at most once."""
    s = check_seeds(seeds)
    if len(set(s)) != len(s):
        raise ValueError(f"seeds must be a non-empty sequence of distinct non-negative integers; got {list(seeds)}")
    return s


def arm_model(audit: Audit, arm: str, spec: ArmSpec, seed: int) -> nn.Module:
    """The model of arm ``arm`` trained with ``seed``, on the audit's device, in eval mode."""
    if isinstance(spec, Recipe):
        return audit.zoo.train(spec, seed)[0].to(audit.device).eval()
    if callable(spec) and not isinstance(spec, str):
        model = spec(seed)
        if not isinstance(model, nn.Module):
            raise ValueError(f"arm {arm!r} returned {type(model).__name__} for seed {seed}, not an nn.Module")
        return model.to(audit.device).eval()
    return audit.model(spec, seed)


def is_fine_tuned(audit: Audit, spec: ArmSpec) -> bool:
    """Whether an arm starts from M^s (it then has lingering memories of its own, Eq. 3): a recipe
    with ``init="source"``, or the name of one; a callable arm (a remedy) is not treated as one."""
    if isinstance(spec, Recipe):
        return spec.init == "source"
    if not isinstance(spec, str) or spec in ("M^s", "M^b", "M^b (competent)", "M^b (same data)", "M^b (matched acc)"):
        return False
    try:
        return audit.recipe(spec).init == "source"
    except ValueError:  # an arm added as a callable: no recipe
        return False


def reference_arm(audit: Audit, specs: Mapping[str, ArmSpec], reference: str | None) -> str:
    """The arm every baseline is tested against: ``reference``, else the world's
    ``spec.comparison_reference`` when it is an arm, else the first fine-tuned arm."""
    if reference is not None:
        if reference not in specs:
            raise ValueError(f"reference must be one of the arms {list(specs)}; got {reference!r}")
        return reference
    spec = audit.world.spec
    if spec.comparison_reference in specs:
        return spec.comparison_reference
    tuned = [a for a, sp in specs.items() if is_fine_tuned(audit, sp)]
    if not tuned:
        raise ValueError(
            f"reference: none of the arms {list(specs)} is fine-tuned from M^s and the world's "
            f"reference {spec.comparison_reference!r} is not among them; pass reference="
        )
    return tuned[0]


def recipe_table(
    audit: Audit,
    arms: Mapping[str, str] | Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    reference: str | None = None,
) -> pd.DataFrame:
    """One row per arm, every difference between arms in the open: its recipe, its learning-rate
    search, its target validation accuracy over ``seeds``, whether its first seed converged and its
    ``role`` in the fair test (the reference, the paper's own M^b, a baseline, or context)."""
    specs = arm_specs(audit, arms)
    ref = reference_arm(audit, specs, reference)
    seed_list = distinct_seeds(seeds)
    rows = []
    for label, spec in specs.items():
        if not isinstance(spec, (str, Recipe)):
            raise ValueError(f"recipe_table needs arms with recipes; {label!r} is a callable")
        recipe = spec if isinstance(spec, Recipe) else audit.recipe(spec)
        acc = [audit.accuracy(arm_model(audit, label, spec, s)) for s in seed_list]
        if label == ref:
            role = "reference: fine-tuned"
        elif is_fine_tuned(audit, spec):
            role = "context: another fine-tuning recipe (not in the tests)"
        elif spec == "M^b (same data)":
            role = "baseline: the reference's recipe from random weights (the paper's own M^b)"
        else:
            role = "baseline"
        row = recipe.row(len(audit.world.target_train))
        row["arm"] = label
        done, reading = converged(audit.zoo.train(recipe, seed_list[0])[1], len(audit.world.target_val))
        trials = audit.zoo.search_of(recipe)
        row.update(
            {
                "lr search (val acc, seed 0)": ", ".join(
                    f"{t.lr:g}: {t.val_acc:.3f}{' (picked)' if t.picked else ''}" for t in trials.itertuples()
                )
                or "none (the recipe's own rate)",
                "target acc (mean)": round(float(np.mean(acc)), 3),
                "target acc (min-max)": f"{min(acc):.3f}-{max(acc):.3f}",
                "seeds": len(acc),
                f"converged (val acc, last two checks, seed {seed_list[0]})": ("yes: " if done else "no: ") + reading,
                "role": role,
            }
        )
        row.pop("what it is", None)
        rows.append(row)
    return pd.DataFrame(rows)
