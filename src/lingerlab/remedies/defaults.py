"""The remedies the book measures (:func:`default_remedies`), choosing among them (:func:`choose`) and
the remedied models as arms of a fair test (:func:`remedy_arms`)."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from torch import nn

from . import builders, established_builders  # noqa: F401  (they register the kinds, in this order)
from .registry import Remedy, build

__all__ = ["default_remedies", "choose", "remedy_arms"]


def default_remedies(audit: Any) -> list[Remedy]:
    """The remedies measured in the book: plain; the paper's (L1, pruning post hoc, unbounded and
    capped at 5%, 10% and 25% of the layer, and before fine-tuning, unbounded and capped at 10%;
    retraining the source; unlearning); the other BatchNorm policy, a 5x smaller and a 5x larger
    learning rate than the world's; fine-tuning on composites; and the field's: L2-SP, BSS, LP-FT,
    WiSE-FT at alpha 0.25, 0.5 and 0.75, DFR and Co-Tuning."""
    mt = audit.recipe("M^t")
    lr = float(mt.lr)
    other_bn = "freeze" if mt.bn == "update" else "update"
    prune = {"a_t_quantile": 0.5, "classes": "source_only"}
    return [
        Remedy("plain fine-tuning", "plain"),
        Remedy("L1 penultimate", "l1", {"weight": 0.05}),
        Remedy("prune (post-hoc)", "prune", prune),
        *[
            Remedy(f"prune (post-hoc, <= {int(100 * f)}%)", "prune", {**prune, "max_fraction": f})
            for f in (0.05, 0.1, 0.25)
        ],
        Remedy("prune + fine-tune", "prune_finetune", prune),
        Remedy("prune + fine-tune (<= 10%)", "prune_finetune", {**prune, "max_fraction": 0.1}),
        Remedy("retrain source without F", "retrain_source"),
        Remedy("unlearning", "unlearning", {"weight": 1.0, "batch": 32}),
        Remedy(f"bn={other_bn}", "finetune", {"bn": other_bn}),
        Remedy("lr x0.2", "finetune", {"lr": lr * 0.2}),
        Remedy("lr x5", "finetune", {"lr": lr * 5}),
        Remedy("fine-tune on composites", "composites", {"p": 0.5, "scale": audit.scale}),
        Remedy("L2-SP", "l2_sp", {"alpha": 0.01, "beta": 0.01}),
        Remedy("BSS", "bss", {"eta": 0.001, "k": 1}),
        Remedy("LP-FT", "lp_ft", {"C": 1.0}),
        *[Remedy(f"WiSE-FT alpha={a:g}", "wise_ft", {"alpha": a}) for a in (0.25, 0.5, 0.75)],
        Remedy("DFR (last layer)", "dfr", {"C": 1.0, "n_per_kind": 200}),
        Remedy("Co-Tuning", "co_tuning", {"weight": 2.3}),
    ]


def choose(audit: Any, remedies: Sequence[Remedy | str] | None) -> list[Remedy]:
    """``remedies`` as :class:`Remedy` objects: names resolve among :func:`default_remedies` (None: all)."""
    defaults = {r.name: r for r in default_remedies(audit)}
    if remedies is None:
        return list(defaults.values())
    if isinstance(remedies, (str, Remedy)):
        raise TypeError("remedies must be a sequence of Remedy objects or names, not a single one: wrap it in a list")
    chosen = []
    for r in remedies:
        if isinstance(r, Remedy):
            chosen.append(r)
        elif isinstance(r, str) and r in defaults:
            chosen.append(defaults[r])
        else:
            raise ValueError(
                f"remedies must hold Remedy objects or names of default_remedies: "
                f"{', '.join(map(repr, defaults))}; got {r!r}"
            )
    if not chosen:
        raise ValueError("remedies is empty: pass at least one remedy (or None for all)")
    return chosen


def remedy_arms(audit: Any, remedies: Sequence[Remedy | str] | None = None) -> dict[str, Callable[[int], nn.Module]]:
    """``{name: seed -> model}`` for ``comparison.fair_test(audit, arms=...)``: the remedied models as
    arms, so the paired controls (excess error, flip rate) and the seed-level tests apply to them too.
    An infeasible remedy raises :class:`NotFeasible` when its arm is built."""
    chosen = choose(audit, remedies)
    return {r.name: (lambda seed, r=r: build(audit, r, seed).model) for r in chosen}
