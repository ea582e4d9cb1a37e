"""The remedy sweep: every remedy of :mod:`lingerlab.remedies` (Sec. 5.1 / App. B) measured on the same
composites and seeds (:func:`remedy_table`, one model scored by :func:`measure`), and each tested against
plain fine-tuning on the composites of L (:func:`remedy_tests`). Models are built through the registry and
cached; a model read from the cache reports the wall time stored when it was trained.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import TensorDataset

from ._data import gather
from ._validation import check_int_range, check_seeds
from .controls import controls
from .distraction import bootstrap_ci
from .fair_test import summarize
from .lingering import lingering as _lingering
from .models import source_target_model, unwrap
from .permutation import smallest_p
from .remedies import NotFeasible, Remedy, build, choose
from .verdict_rule import holm, verdict

__all__ = ["REMEDY_COLUMNS", "AT_CHANCE_MARGIN", "measure", "remedy_table", "remedy_tests"]

#: Columns of :func:`remedy_table`, in order.
REMEDY_COLUMNS = [
    "remedy",
    "kind",
    "params",
    "seed",
    "feasible",
    "target_acc",
    "composite_acc",
    "distraction",
    "distraction_ci_lo",
    "distraction_ci_hi",
    "distraction_null",
    "distraction_excess",
    "n_lingering",
    "n_source_only",
    "mean_p_st",
    "n_pruned",
    "pruned_fraction",
    "chance",
    "at_chance",
    "train_s",
    "time_overhead",
    "note",
]

#: a model whose target accuracy is within this of chance (1 / number of target classes) is a lesion,
#: not a remedy: ``at_chance`` marks such rows of :func:`remedy_table` and, on the mean over seeds, the
#: remedies of ``remedy_summary.summarize_remedies`` (a constant of the rule, the same for every table)
AT_CHANCE_MARGIN = 0.05


def measure(
    audit: Any,
    model: nn.Module,
    seed: int = 0,
    source: nn.Module | None = None,
    lingering_defined: bool = True,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The remedy-table metrics of one target-task ``model``: ``target_acc``; on the composites over F,
    ``composite_acc`` and Eq. 4 ``distraction`` (bootstrap CI, shuffled-pair null, mean excess over it);
    Eq. 3 with M^st = B(model) + H(source or M^s): ``n_lingering`` over F and ``mean_p_st``."""
    F = audit.source_only().tolist()
    nan = float("nan")
    row: dict[str, Any] = {"target_acc": audit.accuracy(model, seed), "n_source_only": len(F)}
    row.update(composite_acc=nan, distraction=nan, distraction_ci_lo=nan, distraction_ci_hi=nan)
    row.update(distraction_null=nan, distraction_excess=nan, n_lingering=nan, mean_p_st=nan)
    if F:
        dt = audit.distraction_table(seed, models=[model])
        d = torch.tensor(dt["distraction"].to_numpy(dtype=float))
        null = torch.tensor(dt["null"].to_numpy(dtype=float))
        row["composite_acc"] = float(dt["correct"].mean())
        if not torch.isnan(d).all():  # else no composite has a distraction value: nothing to bootstrap
            row["distraction"], row["distraction_ci_lo"], row["distraction_ci_hi"] = bootstrap_ci(
                d, n_boot=n_boot, generator=seed
            )
        if len(d):
            row["distraction_null"] = float(np.nanmean(null.numpy()))
            row["distraction_excess"] = float(np.nanmean((d - null).numpy()))
    if F and lingering_defined:
        src = audit.source_model() if source is None else source.to(audit.device).eval()
        mst = source_target_model(model, src, head=_st_head(audit, model, src))
        lt = _lingering(mst, _images_of(audit, F), F, p_lo=audit.p_lo)
        row["n_lingering"] = int(lt["lingering"].sum())
        row["mean_p_st"] = float(lt["p_st"].mean())
    elif lingering_defined:
        row["n_lingering"] = 0
    return row


def _images_of(audit: Any, classes: Sequence[int]) -> Any:
    """The D^c images of ``classes`` only (Eq. 3 over F reads no other class's images); all of D^c when
    none of ``classes`` has images (Eq. 3 then marks each untestable, with its warning)."""
    idx = torch.nonzero(torch.isin(audit.source_labels(), torch.as_tensor(list(classes)))).flatten().tolist()
    if not idx:
        return audit.world.source_data
    x, y = gather(audit.world.source_data, idx)
    return TensorDataset(x, torch.as_tensor(y))


def _st_head(audit: Any, model: nn.Module, source: nn.Module) -> str | None:
    """``spec.head`` when, relative to the model or to the network inside its wrappers, it names an
    ``nn.Linear`` of both ``model`` and ``source`` (None: let ``find_head`` look, e.g. in a pruned
    model whose head sits behind a ``ChannelMask``)."""
    head = audit.world.spec.head

    def names_linear(m: nn.Module) -> bool:
        mods = dict(m.named_modules(remove_duplicate=False))
        return any(isinstance(mods.get(n), nn.Linear) for n in (head, unwrap(m)[0] + head))

    return head if head and names_linear(model) and names_linear(source) else None


def remedy_table(
    audit: Any,
    remedies: Sequence[Remedy | str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    n_boot: int = 1000,
    memo: dict | None = None,
) -> pd.DataFrame:
    """Measure every remedy for every seed: one tidy row each, columns :data:`REMEDY_COLUMNS`.

    ``remedies``: ``Remedy`` objects or names of ``default_remedies`` (None: all). An infeasible remedy
    gets ``feasible=False``, NaN metrics and the reason in ``note``. ``time_overhead``: ``train_s`` over
    plain fine-tuning's for the seed; ``at_chance``: target accuracy within :data:`AT_CHANCE_MARGIN` of
    ``chance`` (1 / number of target classes). ``memo`` keeps the built models for :func:`remedy_tests`.
    """
    seeds = check_seeds(seeds)
    n_boot = check_int_range("n_boot", n_boot, 1)
    chosen = choose(audit, remedies)
    names = [r.name for r in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"remedies must have distinct names; got {names}")
    memo = {} if memo is None else memo
    chance = 1 / len(audit.world.target_classes)
    rows = []
    for seed in seeds:
        plain_s = build(audit, Remedy("plain fine-tuning", "plain"), seed, memo).train_s
        for r in chosen:
            row: dict[str, Any] = {"remedy": r.name, "kind": r.kind, "params": r.describe(), "seed": seed}
            try:
                arm = _built(audit, r, seed, memo)
            except NotFeasible as e:
                row.update(feasible=False, note=f"not feasible here: {e}")
                rows.append(row)
                continue
            assert arm.model is not None
            row.update(
                feasible=True,
                note=arm.note,
                train_s=arm.train_s,
                time_overhead=arm.train_s / plain_s if plain_s > 0 else float("nan"),
                n_pruned=arm.n_pruned,
                pruned_fraction=arm.pruned_fraction if arm.pruned_fraction is not None else float("nan"),
            )
            row.update(measure(audit, arm.model, seed, arm.source, arm.lingering_defined, n_boot))
            row["at_chance"] = bool(row["target_acc"] <= chance + AT_CHANCE_MARGIN)
            rows.append(row)
    table = pd.DataFrame(rows).reindex(columns=REMEDY_COLUMNS)
    table["chance"] = chance
    table["feasible"] = table["feasible"].astype(bool)
    table["at_chance"] = table["at_chance"].astype("boolean")
    table["note"] = table["note"].fillna("")
    table["n_pruned"] = pd.to_numeric(table["n_pruned"]).astype("Int64")
    return table


def _built(audit: Any, remedy: Remedy, seed: int, memo: dict) -> Any:
    """``build(audit, remedy, seed, memo)``, once per (remedy, seed) of ``memo``."""
    key = ("arm", remedy.name, remedy.kind, tuple(sorted(remedy.params.items(), key=lambda kv: kv[0])), seed)
    if key not in memo:
        memo[key] = build(audit, remedy, seed, memo)
    return memo[key]


def remedy_tests(
    audit: Any,
    remedies: Sequence[Remedy | str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    n_boot: int = 10_000,
    memo: dict | None = None,
    reference: str = "plain fine-tuning",
) -> pd.DataFrame:
    """Each remedy against plain fine-tuning on the composites of plain M^t's lingering classes L (Eq. 3).

    Per feasible remedy and measure of ``fair_test.FAMILY_MEASURES``: remedy minus plain over the seeds,
    its 95% bootstrap-over-seeds interval, the exact permutation p, Holm-adjusted over the table, and the
    verdict of ``verdict_rule.verdict`` ("lowers it", "does not lower it" or "inconclusive"). ``memo``: the
    dict given to :func:`remedy_table`. ``attrs["on_L"]``: every arm's accuracy, Eq. 4, null and excess
    error on the L composites with intervals; ``attrs["p_floor"]``: the smallest p these seeds allow.
    """
    seed_list = check_seeds(seeds)
    memo = {} if memo is None else memo
    chosen = choose(audit, remedies)
    # plain fine-tuning is the world's M^t arm (a named, fine-tuned arm: controls computes its L per seed)
    arms: dict[str, Any] = {reference: "M^t"}
    for r in chosen:
        if r.kind == "plain":
            continue
        try:
            _built(audit, r, seed_list[0], memo)
        except NotFeasible:
            continue
        arms[r.name] = lambda seed, r=r: _built(audit, r, seed, memo).model
    ctl = controls(audit, arms, seed_list, reference=reference)
    ft = summarize(ctl, reference=reference, baselines=[a for a in arms if a != reference], n_boot=n_boot)
    t = ft.tests[ft.tests.kind == "between arms"].copy()
    on_L = ft.table[ft.table.subset == "L"].set_index(["arm", "measure"])  # every arm on the L composites
    means = on_L["mean"]
    rows = []
    for r in t.itertuples():
        plain, value = (float(means.get((a, r.measure), np.nan)) for a in (reference, r.baseline))
        n = min(r.n_reference, r.n_baseline)
        # summarize's effect is plain minus remedy; a remedy that lowers a measure has a negative remedy - plain
        rows.append((r.baseline, r.measure, plain, value, -r.effect, -r.ci_hi, -r.ci_lo, r.p_perm, n))
    out = pd.DataFrame(
        rows, columns=["remedy", "measure", "plain", "remedy_value", "effect", "ci_lo", "ci_hi", "p_perm", "seeds"]
    )
    out["p_holm"] = holm(out["p_perm"].to_numpy(float)) if len(out) else []
    verdicts = [
        verdict(e, lo, hi, p, paper_direction="lower")
        for e, lo, hi, p in zip(out["effect"], out["ci_lo"], out["ci_hi"], out["p_holm"])
    ]
    words = {"holds": "lowers it", "does not hold": "does not lower it"}  # the paper's side: the remedy lowers it
    out["verdict"] = [words.get(v, v) for v in verdicts]
    # every arm on the L composites: accuracy, Eq. 4 with its null, excess error (mean, 95% CI over seeds)
    wide = []
    for arm in arms:
        row: dict[str, Any] = {"remedy": arm}
        for measure, name in (
            ("err_source_only", "composite_acc_L"),
            ("distraction", "distraction_L"),
            ("distraction_null", "null_L"),
            ("excess_error", "excess_error_L"),
        ):
            if (arm, measure) not in on_L.index:
                continue
            r = on_L.loc[(arm, measure)]
            m, lo, hi = float(r["mean"]), float(r["ci_lo"]), float(r["ci_hi"])
            if measure == "err_source_only":  # accuracy = 1 - error: the interval flips
                m, lo, hi = 1 - m, 1 - hi, 1 - lo
            row.update({name: m, f"{name}_lo": lo, f"{name}_hi": hi})
        wide.append(row)
    out.attrs["on_L"] = pd.DataFrame(wide)
    out.attrs["p_floor"] = smallest_p(len(seed_list), len(seed_list))
    return out
