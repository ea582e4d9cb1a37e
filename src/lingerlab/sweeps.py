"""Measured remedies and sweeps: the paper's Sec. 5.1 / App. B remedies, Fig. 7 and Fig. 8 as tables.

- :func:`remedy_table`: one tidy row per (remedy, seed): target validation accuracy, accuracy on
  composites I(c) (Sec. 4), distraction (Eq. 4) with its shuffled-pair null and a bootstrap
  interval, the number of lingering classes (Eq. 3) and the training-time overhead against plain
  fine-tuning. :func:`summarize_remedies` and ``plotting.plot_remedies`` read it as what each remedy
  buys against what it costs. The remedies themselves (a registry of named kinds) are
  :mod:`lingerlab.remedies`.
- :func:`size_sweep`: App. B, Fig. 7 (target training-set size) as numbers.
- :func:`arch_comparison`: App. B, Fig. 8 (architectures): the fair test of each architecture on one
  target task, |F|, |L| and the overlap of the lingering sets, over whatever ``(world, arch)`` pairs
  load (``worlds.load_arch``).

Every model is trained through the audit's ``arms.Zoo`` (``training.finetune``, cached on disk), every
stage read through an ``audit.Audit`` (cached), so a second call costs only the table assembly. Times
are the wall time of the run that trained a model: a model read from the cache reports the time stored
when it was trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import cache as _cache
from ._data import gather
from ._validation import check_bool, check_int_range
from .distraction import bootstrap_ci
from .lingering import lingering as _lingering
from .models import source_target_model, unwrap
from .plotting import plot_remedies
from .remedies import NotFeasible, Remedy, build, choose, default_remedies, remedy_arms, retrain_source

__all__ = [
    "Remedy",
    "NotFeasible",
    "default_remedies",
    "remedy_table",
    "summarize_remedies",
    "plot_remedies",
    "size_sweep",
    "arch_comparison",
    "remedy_tests",
    "AT_CHANCE_MARGIN",
    "ArchComparison",
    "figure8_specs",
    "retrain_source",
    "remedy_arms",
    "measure",
    "REMEDY_COLUMNS",
    "remedy_advice",
    "remedy_effects_by_world",
    "MAX_TARGET_COST",
    "MAX_TIME_OVERHEAD",
    "REMOVES_SHARE",
]

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
#: remedies of :func:`summarize_remedies` (a constant of the rule, the same for every table)
AT_CHANCE_MARGIN = 0.05


def _wall(hist: pd.DataFrame | None) -> float:
    return float(hist["wall_s"].iloc[-1]) if hist is not None and len(hist) else 0.0


# --------------------------------------------------------------------------------------------
# measuring one model
# --------------------------------------------------------------------------------------------


def measure(
    audit: Any,
    model: nn.Module,
    seed: int = 0,
    source: nn.Module | None = None,
    lingering_defined: bool = True,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The remedy-table metrics of one target-task ``model`` (any head name, pruned or not).

    ``target_acc`` on ``world.target_val``; on the audit's composites over F (seed 0 draw):
    ``composite_acc`` and Eq. 4 ``distraction`` (mean, bootstrap CI over composites, the shuffled-pair
    ``distraction_null``, ``distraction_excess`` = mean of distraction minus null per composite);
    Eq. 3 with M^st = B(model) + H(source or M^s): ``n_lingering`` over F and ``mean_p_st``.
    """
    F = audit.source_only().tolist()
    row: dict[str, Any] = {"target_acc": audit.accuracy(model, seed), "n_source_only": len(F)}
    if F:
        dt = audit.distraction_table(seed, models=[model])
        d = torch.tensor(dt["distraction"].to_numpy(dtype=float))
        null = torch.tensor(dt["null"].to_numpy(dtype=float))
        row["composite_acc"] = float(dt["correct"].mean())
        if torch.isnan(d).all():  # no composite with a distraction value: nothing to bootstrap
            mean, lo, hi = (float("nan"),) * 3
        else:
            mean, lo, hi = bootstrap_ci(d, n_boot=n_boot, generator=seed)
        row.update(
            distraction=mean,
            distraction_ci_lo=lo,
            distraction_ci_hi=hi,
            distraction_null=float(np.nanmean(null.numpy())) if len(null) else float("nan"),
            distraction_excess=float(np.nanmean((d - null).numpy())) if len(d) else float("nan"),
        )
    else:
        row.update(
            composite_acc=float("nan"),
            distraction=float("nan"),
            distraction_ci_lo=float("nan"),
            distraction_ci_hi=float("nan"),
            distraction_null=float("nan"),
            distraction_excess=float("nan"),
        )
    if F and lingering_defined:
        src = audit.source_model() if source is None else source.to(audit.device).eval()
        mst = source_target_model(model, src, head=_st_head(audit, model, src))
        lt = _lingering(mst, _images_of(audit, F), F, p_lo=audit.p_lo)
        row["n_lingering"] = int(lt["lingering"].sum())
        row["mean_p_st"] = float(lt["p_st"].mean())
    else:
        row["n_lingering"] = float("nan") if not lingering_defined else 0
        row["mean_p_st"] = float("nan")
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
    """``spec.head`` when it names the head of both ``model`` and ``source`` (None: let ``find_head``
    look, e.g. in a pruned model whose head sits behind a ``ChannelMask``)."""
    head = audit.world.spec.head
    return head if _names_linear(model, head) and _names_linear(source, head) else None


def _names_linear(model: nn.Module, head: str) -> bool:
    """Whether ``models.find_head(model, head)`` finds a head: ``head``, relative to ``model`` or to the
    network inside its wrappers, names an ``nn.Linear``."""
    prefix, _ = unwrap(model)
    mods = dict(model.named_modules(remove_duplicate=False))
    return bool(head) and any(isinstance(mods.get(n), nn.Linear) for n in (head, prefix + head))


# --------------------------------------------------------------------------------------------
# the remedy table
# --------------------------------------------------------------------------------------------


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a sequence of non-negative integers; got {type(seeds).__name__}")
    seeds = [check_int_range("seeds", s, 0) for s in seeds]
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    return seeds


def remedy_table(
    audit: Any,
    remedies: Sequence[Remedy | str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    n_boot: int = 1000,
    memo: dict | None = None,
) -> pd.DataFrame:
    """Measure every remedy for every seed: one tidy row each, columns :data:`REMEDY_COLUMNS`.

    ``remedies``: :class:`Remedy` objects, or names from :func:`default_remedies` (None: all of them).
    Each is built through the registry (``remedies.build``). A remedy that cannot run in this world
    (:class:`NotFeasible`, e.g. retraining an ImageNet source) gets ``feasible=False``, NaN metrics and
    the reason in ``note``. ``time_overhead`` is a row's ``train_s`` divided by plain fine-tuning's for
    the same seed (plain is trained when absent). ``pruned_fraction``: the share of the layer's
    channels a pruning remedy removed; ``chance``: 1 / number of target classes; ``at_chance``: target
    accuracy within :data:`AT_CHANCE_MARGIN` of it (a lesion, not a remedy). ``memo``: a dict that keeps every built
    model, so
    :func:`remedy_tests` on the same dict measures the same models without building them again.
    """
    seeds = _check_seeds(seeds)
    n_boot = check_int_range("n_boot", n_boot, 1)
    chosen = choose(audit, remedies)
    names = [r.name for r in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"remedies must have distinct names; got {names}")
    plain_s: dict[int, float] = {}
    memo = {} if memo is None else memo
    chance = 1 / len(audit.world.target_classes)
    rows = []
    for seed in seeds:
        plain_s[seed] = build(audit, Remedy("plain fine-tuning", "plain"), seed, memo).train_s
        for r in chosen:
            row: dict[str, Any] = {
                "remedy": r.name,
                "kind": r.kind,
                "params": r.describe(),
                "seed": seed,
                "chance": chance,
            }
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
                time_overhead=arm.train_s / plain_s[seed] if plain_s[seed] > 0 else float("nan"),
                n_pruned=arm.n_pruned,
                pruned_fraction=arm.pruned_fraction if arm.pruned_fraction is not None else float("nan"),
            )
            row.update(measure(audit, arm.model, seed, arm.source, arm.lingering_defined, n_boot))
            row["at_chance"] = bool(row["target_acc"] <= chance + AT_CHANCE_MARGIN)
            rows.append(row)
    table = pd.DataFrame(rows)
    for c in REMEDY_COLUMNS:
        if c not in table:
            table[c] = np.nan
    table["feasible"] = table["feasible"].astype(bool)
    table["at_chance"] = table["at_chance"].astype("boolean")
    table["note"] = table["note"].fillna("")
    table["n_pruned"] = pd.array(
        [None if (v is None or (isinstance(v, float) and math.isnan(v))) else int(v) for v in table["n_pruned"]],
        dtype="Int64",
    )
    table = table[REMEDY_COLUMNS]
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
    """Each remedy against plain fine-tuning on the composites of L, Holm-corrected.

    The composites are those of the lingering classes L of *plain* M^t at each seed (Eq. 3), the same
    for every remedy, so each remedy is scored on the memories it is meant to remove. For every
    feasible remedy and every measure of ``comparison.FAMILY_MEASURES`` (error on the composite, excess
    error over a blurred background, flip rate, Eq. 4 above its per-class null) the difference
    remedy minus plain over the seeds, its 95% bootstrap-over-seeds interval and the exact
    permutation p; all p-values of the table are Holm-adjusted together. Verdict, from
    ``stats.verdict`` (the paper's side being "the remedy lowers it"): ``"lowers it"`` (p_holm < 0.05
    and the effect negative), ``"does not lower it"`` (the interval excludes every lowering) or
    ``"inconclusive"``. With 3 seeds per arm the smallest exact permutation p is 0.1, so no remedy can
    reach "lowers it"; the intervals carry the information. ``memo``: the dict given to
    :func:`remedy_table` (its models are reused). Columns: ``remedy, measure, plain, remedy_value,
    effect, ci_lo, ci_hi, p_perm, p_holm, verdict, seeds``. ``attrs["on_L"]``: one row per arm (plain
    fine-tuning first) with its accuracy on the L composites, Eq. 4 over them and its shuffled-pair
    null, and its excess error, each with a 95% bootstrap-over-seeds interval (``_lo``, ``_hi``);
    ``attrs["p_floor"]``: the smallest exact permutation p these seeds allow.
    """
    from . import comparison as _cmp
    from . import stats as _stats

    seed_list = _check_seeds(seeds)
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
    ctl = _cmp.controls(audit, arms, seed_list, reference=reference)
    ft = _cmp.summarize(ctl, reference=reference, baselines=[a for a in arms if a != reference], n_boot=n_boot)
    t = ft.tests[ft.tests.kind == "between arms"].copy()
    on_L = ft.table[ft.table.subset == "L"].set_index(["arm", "measure"])  # every arm on the L composites
    means = on_L["mean"]
    rows = []
    for r in t.itertuples():
        # summarize's effect is plain minus remedy; a remedy that lowers a measure has a negative remedy - plain
        effect, lo, hi = -r.effect, -r.ci_hi, -r.ci_lo
        rows.append(
            {
                "remedy": r.baseline,
                "measure": r.measure,
                "plain": float(means.get((reference, r.measure), np.nan)),
                "remedy_value": float(means.get((r.baseline, r.measure), np.nan)),
                "effect": effect,
                "ci_lo": lo,
                "ci_hi": hi,
                "p_perm": r.p_perm,
                "seeds": min(r.n_reference, r.n_baseline),
            }
        )
    out = pd.DataFrame(
        rows, columns=["remedy", "measure", "plain", "remedy_value", "effect", "ci_lo", "ci_hi", "p_perm", "seeds"]
    )
    out["p_holm"] = _stats.holm(out["p_perm"].to_numpy(float)) if len(out) else []
    words = {
        "holds": "lowers it",
        "does not hold": "does not lower it",
        "inconclusive": "inconclusive",
        "not measured": "not measured",
    }
    out["verdict"] = [
        words[_stats.verdict(e, lo, hi, p, paper_direction="lower")]
        for e, lo, hi, p in zip(out["effect"], out["ci_lo"], out["ci_hi"], out["p_holm"])
    ]
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
    from .comparison import smallest_p

    out.attrs["p_floor"] = smallest_p(len(seed_list), len(seed_list))
    return out


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
    """Per remedy: mean and SD over seeds of each metric, and the paired change against ``reference``
    (same seed): ``d_<metric>`` mean and SD. Rows keep the table's remedy order."""
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


#: the rule of :func:`remedy_advice`, the same for every remedy table: a remedy may cost at most
#: this much target accuracy (paired mean over seeds) ...
MAX_TARGET_COST = 0.01
#: ... and at most this multiple of plain fine-tuning's training time; it *removes memories* when its
#: mean |L| is at most this share of plain fine-tuning's
MAX_TIME_OVERHEAD = 2.0
REMOVES_SHARE = 0.5


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
    """What to try first, by one rule (:data:`MAX_TARGET_COST`, :data:`MAX_TIME_OVERHEAD`,
    :data:`REMOVES_SHARE`): among the feasible remedies not at chance that cost at most one point of
    target accuracy and at most twice plain fine-tuning's time, the ``n_first`` with the largest gain in
    composite accuracy; the remedies whose mean |L| is at most half of plain's; those at chance.
    ``summary``: :func:`summarize_remedies`. Columns ``question, answer``."""
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
    """Which remedies help in which world: per remedy (rows) and world (column groups), the paired change
    against ``reference`` in composite and target accuracy (mean over seeds +- SD) and in |L|, and
    ``verdict``: ``"try"`` (within :func:`remedy_advice`'s costs, and a composite gain larger than its
    SD over seeds), ``"gain within its SD"`` (within the costs, a gain no larger than its SD: no
    better than seed noise), ``"costs too much"``, each with
    ``"; removes memories"`` when its mean |L| is at most half of plain's; or ``"lesion"`` (at chance),
    ``"not feasible"``, ``"reference"``. ``summaries``: world name -> :func:`summarize_remedies`."""
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
        cols[(world, "d_composite_acc")] = t.d_composite_acc
        cols[(world, "d_composite_acc_sd")] = t.d_composite_acc_sd
        cols[(world, "d_target_acc")] = t.d_target_acc
        cols[(world, "d_n_lingering")] = t.d_n_lingering
        cols[(world, "verdict")] = pd.Series(verdicts, index=t.index)
    out = pd.DataFrame(cols)
    out.columns = pd.MultiIndex.from_tuples(out.columns, names=["world", "measure"])
    return out


# --------------------------------------------------------------------------------------------
# Fig. 7: training-set size; Fig. 8: architectures
# --------------------------------------------------------------------------------------------


def _growth_order(own: Sequence[int] | None, n_all: int, seed: int) -> list[int]:
    """The order in which :func:`size_sweep` adds images: the arm's own training images first (a seeded
    permutation of them), then the rest of ``target_train`` (a seeded permutation), so the subsets are
    nested and the size of the arm's own set is the arm itself."""
    g = torch.Generator().manual_seed(seed)
    first = list(range(n_all)) if own is None else list(own)
    rest = sorted(set(range(n_all)) - set(first))
    return [first[i] for i in torch.randperm(len(first), generator=g).tolist()] + [
        rest[i] for i in torch.randperm(len(rest), generator=g).tolist()
    ]


def size_sweep(
    audit: Any,
    sizes: Sequence[int],
    seeds: Sequence[int] = (0, 1, 2),
    subset_seed: int = 0,
    epochs: int | None = None,
    arm: str = "M^t",
) -> pd.DataFrame:
    """App. B, Fig. 7 measured on distraction: fine-tune on the first ``n`` images of one seeded
    ordering of ``world.target_train`` (:func:`_growth_order`: the arm's own D^t first, so the subsets
    are nested and ``n = |D^t|`` is the arm itself) for each ``n`` in ``sizes``, with the recipe of
    ``arm`` (default M^t; ``train_subset`` replaced).

    The number of epochs stays the recipe's (``epochs`` overrides it), so a larger set also means more
    steps, as it would in practice. F (Eq. 2) is the audit's, fixed across sizes. One row per (size,
    seed): ``n_train, seed, target_acc``; Eq. 3: ``n_lingering`` (|L| of that model) and ``mean_p_st``
    (mean p_c over F under its M^st); and on the composites of *its own* L (``comparison.controls``):
    ``distraction``, its per-class ``distraction_null``, ``distraction_excess``, ``err_source_only``,
    ``excess_error``, ``flip_rate`` and ``n_composites_L`` (NaN measures where L is empty);
    ``train_s``.
    """
    from . import comparison

    seeds = _check_seeds(seeds)
    n_all = len(audit.world.target_train)
    sizes = [check_int_range("sizes", n, 2, n_all) for n in sizes]
    if not sizes:
        raise ValueError("sizes is empty: pass at least one training-set size")
    subset_seed = check_int_range("subset_seed", subset_seed, 0)
    perm = _growth_order(audit.recipe(arm).train_subset, n_all, subset_seed)
    changes: dict[str, Any] = {}
    if epochs is not None:
        changes["epochs"] = check_int_range("epochs", epochs, 1)
    recipes = {
        f"n={n}": audit.recipe(arm).replace(name=f"{arm}, n={n}", train_subset=sorted(perm[:n]), **changes)
        for n in sizes
    }
    ctl = comparison.controls(audit, recipes, seeds, reference=next(iter(recipes)))
    ps = comparison.subset_per_seed(ctl)
    ps = ps[ps.subset == "L"].set_index(["arm", "seed"])
    rows = []
    for n, (label, recipe) in zip(sizes, recipes.items()):
        for seed in seeds:
            model, hist = audit.zoo.train(recipe, seed)
            table = audit.lingering(seed, model)
            r = ps.loc[(label, seed)]
            rows.append(
                {
                    "n_train": n,
                    "seed": seed,
                    "target_acc": float(r["target_acc"]),
                    "n_lingering": int(table["lingering"].sum()),
                    "mean_p_st": float(table["p_st"].mean()),
                    **{
                        k: float(r[k])
                        for k in (
                            "distraction",
                            "distraction_null",
                            "distraction_excess",
                            "err_source_only",
                            "excess_error",
                            "flip_rate",
                        )
                    },
                    "n_composites_L": int(r["n_composites"]),
                    "train_s": _wall(hist),
                }
            )
    return pd.DataFrame(rows)


#: What ``arch_comparison`` turns into an ``available=False`` row: things that cannot be had here
#: (missing weights, data or packages; an architecture a world does not offer). Anything else is a bug.
_UNAVAILABLE = (NotFeasible, FileNotFoundError, ImportError)


@dataclass(frozen=True)
class ArchComparison:
    """App. B, Fig. 8 as numbers (:func:`arch_comparison`).

    Attributes:
        table: one row per architecture: ``label, world, arch, available, note``; ``n_F`` (|F|, Eq. 2),
            ``n_F_images`` (classes of F with D^c images: the most L can hold), ``n_L`` (mean |L| over
            seeds, Eq. 3) and ``n_L_min, n_L_max``; ``acc_reference, acc_baseline`` (target validation
            accuracy, mean over seeds); for the reference (fine-tuned) arm and the scratch baseline on the
            composites of L: ``distraction_*`` (Eq. 4), ``null_*`` (its per-class null) and
            ``excess_error_*`` (error on source-only minus neutral composites), each ``mean`` with a 95%
            bootstrap-over-seeds ``lo``/``hi``; the between-arm tests of the fair test
            (``comparison.summarize``) on ``distraction_excess`` and ``excess_error``: ``effect``,
            ``lo``, ``hi``, ``p_holm`` and ``verdict``.
        overlap: one row per pair of architectures with the same source classes and the same D^c
            images (the same world up to its model; a photo labelled by M^s's top-1 may get another
            label from another model): ``jaccard_L`` (mean over seeds of |L_a ∩ L_b| / |L_a ∪ L_b|,
            same seed), its min and max, ``jaccard_F``, and ``n_L_common`` (the mean size of the
            intersection).
        tests: label -> ``comparison.FairTest``, the whole fair test of each architecture.
        lingering: label -> {seed: sorted L}.
    """

    table: pd.DataFrame
    overlap: pd.DataFrame
    tests: dict[str, Any]
    lingering: dict[str, dict[int, list[int]]]

    def view(self) -> pd.DataFrame:
        """The table as the book shows it, one row per available architecture: each number with its
        95% interval in brackets (Eq. 4 also with its per-class null) and each test with its verdict."""

        def ci(r: Any, key: str) -> str:
            return f"{r[key]:.3f} [{r[key + '_lo']:.3f}, {r[key + '_hi']:.3f}]"

        rows = []
        for _, r in self.table[self.table["available"].astype(bool)].iterrows():
            rows.append(
                {
                    "architecture": r["label"],
                    "|F|": int(r["n_F"]),
                    "|F| with photos": int(r["n_F_images"]),
                    "|L| mean (min-max)": f"{r['n_L']:.1f} ({int(r['n_L_min'])}-{int(r['n_L_max'])})",
                    "val acc M^t / M^b": f"{r['acc_reference']:.3f} / {r['acc_baseline']:.3f}",
                    "Eq. 4 on L, M^t (null)": f"{ci(r, 'distraction_reference')} ({r['null_reference']:.3f})",
                    "Eq. 4 on L, M^b (null)": f"{ci(r, 'distraction_baseline')} ({r['null_baseline']:.3f})",
                    "excess error on L, M^t": ci(r, "excess_error_reference"),
                    "excess error on L, M^b": ci(r, "excess_error_baseline"),
                    "Eq. 4 above null, M^t - M^b": f"{ci(r, 'distraction_excess_effect')}: {r['distraction_excess_verdict']}",  # noqa: E501
                    "excess error, M^t - M^b": f"{ci(r, 'excess_error_effect')}: {r['excess_error_verdict']}",
                }
            )
        return pd.DataFrame(rows)


def _jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a | b else float("nan")


def _as_spec(spec: Any) -> tuple[str, str | None, dict[str, Any]]:
    if (
        isinstance(spec, tuple)
        and len(spec) in (2, 3)
        and isinstance(spec[0], str)
        and (spec[1] is None or isinstance(spec[1], str))
        and (len(spec) == 2 or isinstance(spec[2], Mapping))
    ):
        return spec[0], spec[1], dict(spec[2]) if len(spec) == 3 else {}
    raise TypeError(
        f"specs must hold (world name, arch name or None) pairs or (world, arch, world options) triples; got {spec!r}"
    )


def figure8_specs(shapes_width: int = 16) -> dict[str, dict[str, tuple]]:
    """The architectures of the book's offline Figure 8, by the world whose task they share (the column
    of the results matrix): EfficientNet-Lite0/1/2 on ``lite0``'s faces task (``worlds.lite.VARIANTS``),
    and the ``shapes`` CNN at width 8 and at ``shapes_width`` (the profile's own width). Each value is a
    ``specs`` mapping for :func:`arch_comparison`."""
    from .worlds.lite import VARIANTS

    shapes_width = check_int_range("shapes_width", shapes_width, 1)
    return {
        "lite0": {v.arch: (v.name, None) for v in VARIANTS.values()},
        "shapes": {f"CNN width {w}": ("shapes", None, {"width": w}) for w in (8, shapes_width)},
    }


def arch_comparison(
    specs: Mapping[str, tuple] | Sequence[tuple],
    profile: Any = "smoke",
    seeds: Sequence[int] = (0, 1, 2),
    world_seed: int = 0,
    audit_kwargs: Mapping[str, Any] | None = None,
    n_boot: int = 10_000,
    download: bool = False,
    baseline: str = "M^b (same data)",
    load: Callable[..., Any] | None = None,
) -> ArchComparison:
    """App. B, Fig. 8: the fair test of each architecture on the same target task (:class:`ArchComparison`).

    ``specs``: ``(world, arch)`` or ``(world, arch, world options)`` per architecture, as a sequence
    or as a mapping from label to spec. Each is loaded by ``worlds.load_arch(world, arch, profile,
    world_seed, download=download, **options)``: ``arch`` None is the world's own model (``lite0``,
    ``lite1``, ``lite2`` are EfficientNet-Lite0/1/2 on one task; ``("shapes", None, {"width": 8})`` is
    the shapes CNN at another width); a world whose loader takes ``source_model=`` (``paper``) runs a
    torchvision ImageNet model (``"resnet18"``, ``"resnet50"``, ``"vit_b_16"``: weights from the torch
    hub cache, fetched only with ``download=True``). A spec that cannot be had here (``NotFeasible``,
    ``FileNotFoundError``, ``ImportError``: missing weights, data or packages) gives a row with
    ``available=False`` and the reason, so one call runs offline and on a GPU; any other error
    propagates. Each available architecture gets ``comparison.fair_test`` with two arms, the world's
    reference (fine-tuned) arm and ``baseline`` (a scratch arm of its ``spec.comparison``), over
    ``seeds``. Labels default to the world's name, with ``": arch"`` when an arch is named; a
    repeated label is an error. ``load`` replaces ``worlds.load_arch`` (same signature).
    """
    from . import comparison as _cmp
    from .audit import Audit
    from .worlds import load_arch

    seed_list = _check_seeds(seeds)
    n_boot = check_int_range("n_boot", n_boot, 1)
    world_seed = check_int_range("world_seed", world_seed, 0)
    download = check_bool("download", download)
    items = list(specs.items()) if isinstance(specs, Mapping) else [(None, s) for s in specs]
    parsed = []
    for label, spec in items:
        world_name, arch, opts = _as_spec(spec)
        parsed.append((label or (world_name if arch is None else f"{world_name}: {arch}"), (world_name, arch, opts)))
    dup = sorted({lab for lab, _ in parsed if [x for x, _ in parsed].count(lab) > 1})
    if dup:
        raise ValueError(f"specs repeat the label(s) {', '.join(map(repr, dup))}: pass a mapping label -> spec")
    load = load or load_arch
    rows, tests, lingering, keys = [], {}, {}, {}
    for label, (world_name, arch, opts) in parsed:
        base = {"label": label, "world": world_name, "arch": arch if arch is not None else "default"}
        try:
            world = load(world_name, arch, profile, world_seed, download=download, **opts)
        except _UNAVAILABLE as e:
            rows.append({**base, "available": False, "note": f"{type(e).__name__}: {e}"})
            continue
        base["arch"] = world.spec.arch if arch is None else arch
        audit = Audit(world, **dict(audit_kwargs or {}))
        comp = world.spec.comparison
        ref = world.spec.reference_arm
        if baseline not in comp:
            raise ValueError(
                f"baseline must be an arm of world {world_name!r}'s comparison "
                f"({', '.join(map(repr, comp))}); got {baseline!r}"
            )
        ft = _cmp.fair_test(
            audit,
            {ref: comp[ref], baseline: comp[baseline]},
            seed_list,
            reference=ref,
            baselines=[baseline],
            n_boot=n_boot,
        )
        tests[label] = ft
        L = {int(s): list(v) for s, v in ft.controls.attrs["lingering"].items()}
        lingering[label] = L
        F = [int(c) for c in audit.source_only().tolist()]
        with_images = set(audit.source_labels().tolist())
        # the same world up to its model: the same source classes and the same source photos and views
        # (labels of unlabelled photos come from each model's own top-1, so they may differ)
        tensors = getattr(world.source_data, "tensors", None)  # a folder dataset: its photo names and size
        images = (
            _cache.fingerprint(tensors[0])
            if tensors is not None
            else _cache.fingerprint(world.spec.source_groups, len(world.source_data))
        )
        keys[label] = (tuple(world.source_classes), images, set(F))
        sizes = [len(v) for v in L.values()]
        acc = ft.controls.attrs["target_acc"]
        row = {
            **base,
            "available": True,
            "note": "",
            "n_F": len(F),
            "n_F_images": len(set(F) & with_images),
            "n_L": float(np.mean(sizes)),
            "n_L_min": min(sizes),
            "n_L_max": max(sizes),
            "acc_reference": float(np.mean([acc[(ref, s)] for s in seed_list])),
            "acc_baseline": float(np.mean([acc[(baseline, s)] for s in seed_list])),
        }
        t = ft.table[ft.table.subset == "L"].set_index(["arm", "measure"])
        for arm, tag in ((ref, "reference"), (baseline, "baseline")):
            for measure, name in (
                ("distraction", "distraction"),
                ("distraction_null", "null"),
                ("excess_error", "excess_error"),
            ):
                r = t.loc[(arm, measure)] if (arm, measure) in t.index else None
                for stat in ("mean", "ci_lo", "ci_hi"):
                    key = f"{name}_{tag}" + {"mean": "", "ci_lo": "_lo", "ci_hi": "_hi"}[stat]
                    row[key] = float(r[stat]) if r is not None else float("nan")
        between = ft.tests[ft.tests.kind == "between arms"].set_index("measure")
        for measure in ("distraction_excess", "excess_error"):
            r = between.loc[measure]
            row.update(
                {
                    f"{measure}_effect": float(r.effect),
                    f"{measure}_effect_lo": float(r.ci_lo),
                    f"{measure}_effect_hi": float(r.ci_hi),
                    f"{measure}_p_holm": float(r.p_holm),
                    f"{measure}_verdict": r.verdict,
                }
            )
        rows.append(row)
    overlap = []
    labels = list(lingering)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if keys[a][:2] != keys[b][:2]:
                continue
            js = [_jaccard(set(lingering[a][s]), set(lingering[b][s])) for s in seed_list]
            overlap.append(
                {
                    "a": a,
                    "b": b,
                    "jaccard_L": float(np.nanmean(js)) if not np.isnan(js).all() else float("nan"),
                    "jaccard_L_min": float(np.nanmin(js)) if not np.isnan(js).all() else float("nan"),
                    "jaccard_L_max": float(np.nanmax(js)) if not np.isnan(js).all() else float("nan"),
                    "n_L_common": float(np.mean([len(set(lingering[a][s]) & set(lingering[b][s])) for s in seed_list])),
                    "jaccard_F": _jaccard(keys[a][2], keys[b][2]),
                }
            )
    return ArchComparison(
        table=pd.DataFrame(rows),
        tests=tests,
        lingering=lingering,
        overlap=pd.DataFrame(
            overlap, columns=["a", "b", "jaccard_L", "jaccard_L_min", "jaccard_L_max", "n_L_common", "jaccard_F"]
        ),
    )


SIZE_MEASURES = ("n_lingering", "distraction", "distraction_excess", "err_source_only", "excess_error", "flip_rate")


def size_trends(size: pd.DataFrame, measures: Sequence[str] = SIZE_MEASURES, alpha: float = 0.05) -> pd.DataFrame:
    """Figure 7 in words: for each measure of :func:`size_sweep`, Spearman's rank correlation between the
    number of target training images and the per-seed values (every size and seed one point; NaN
    values, where L is empty, left out), its p-value, and the trend: ``falls`` or ``rises`` where
    p < ``alpha``, else ``no monotone trend`` (``not measured`` with fewer than three points)."""
    from scipy.stats import spearmanr

    rows = []
    for m in measures:
        d = size[["n_train", m]].dropna()
        rho, p = spearmanr(d["n_train"], d[m]) if len(d) > 2 and d[m].nunique() > 1 else (float("nan"), float("nan"))
        trend = "no monotone trend" if not p < alpha else ("falls" if rho < 0 else "rises")
        trend = "not measured" if len(d) < 3 else trend
        rows.append({"measure": m, "points": len(d), "spearman_rho": float(rho), "p": float(p), "trend": trend})
    return pd.DataFrame(rows)


def describe_trends(trends: pd.DataFrame, world: str) -> str:
    """One sentence from :func:`size_trends`: which measures fall, which rise, which show no trend."""
    parts = [
        f"{t}: {', '.join(trends.loc[trends['trend'] == t, 'measure'])}"
        for t in ("falls", "rises", "no monotone trend", "not measured")
        if (trends["trend"] == t).any()
    ]
    return f"`{world}`, as the target set grows (Spearman's rank correlation, p < 0.05): " + "; ".join(parts) + "."
