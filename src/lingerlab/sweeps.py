"""Measured remedies and sweeps: the paper's Sec. 5.1 / App. B remedies, Fig. 7 and Fig. 8 as tables.

- :func:`remedy_table`: one tidy row per (remedy, seed): target validation accuracy, accuracy on
  composites I(c) (Sec. 4), distraction (Eq. 4) with its shuffled-pair null and a bootstrap
  interval, the number of lingering classes (Eq. 3) and the training-time overhead against plain
  fine-tuning. :func:`summarize_remedies` and :func:`plot_remedies` read it as what each remedy buys
  against what it costs.
- :func:`size_sweep`: App. B, Fig. 7 (target training-set size) as numbers.
- :func:`arch_comparison`: App. B, Fig. 8 (architectures), over whatever ``(world, arch)`` pairs load.

Every model is trained by ``training.finetune`` (cached on disk), every stage read through an
``audit.Audit`` (cached), so a second call costs only the table assembly. Times are the wall time of
the run that trained a model: a model read from the cache reports the time stored when it was trained.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from . import training as _training
from ._data import labels_of
from ._validation import check_choice, check_int_range, check_range
from .distraction import bootstrap_ci
from .lingering import lingering as _lingering
from .mitigation import (channel_sets, channels_to_prune, composite_augment, images_by_class,
                         l1_penultimate, penultimate_features, prune_channels, unlearning_loss)
from .models import find_head, source_target_model, split_model

__all__ = ["Remedy", "NotFeasible", "default_remedies", "remedy_table", "summarize_remedies", "plot_remedies",
           "size_sweep", "arch_comparison", "retrain_source", "remedy_arms", "measure", "REMEDY_COLUMNS", "KINDS"]

#: Columns of :func:`remedy_table`, in order.
REMEDY_COLUMNS = ["remedy", "kind", "params", "seed", "feasible", "target_acc", "composite_acc", "distraction",
                  "distraction_ci_lo", "distraction_ci_hi", "distraction_null", "distraction_excess",
                  "n_lingering", "n_source_only", "mean_p_st", "n_pruned", "train_s", "time_overhead", "note"]

#: Remedy kinds :func:`remedy_table` knows how to build.
KINDS = ("plain", "finetune", "l1", "prune", "prune_finetune", "retrain_source", "unlearning", "composites")


class NotFeasible(Exception):
    """A remedy that cannot run in this world (the table marks its row ``feasible=False`` with the reason)."""


@dataclass(frozen=True)
class Remedy:
    """One remedy: a ``kind`` (see :data:`KINDS`) and its parameters, shown as row ``name``.

    Kinds and parameters:
      - ``plain``: the world's fine-tuning recipe (the reference row).
      - ``finetune``: the recipe with ``finetune`` overrides (e.g. ``bn="freeze"``, ``lr=...``): Sec. 5.1
        does not name BatchNorm or the learning rate; DESIGN.md measured both as causes/cures.
      - ``l1``: App. B L1 on the penultimate activations, ``weight``.
      - ``prune``: App. B Eqs. 6-7 on M^t, applied after fine-tuning (no retraining): ``a_t`` (None:
        the ``a_t_quantile`` of M^t's penultimate activations over D^t), ``classes`` ("source_only" = F
        or "lingering" = L) whose sets are united.
      - ``prune_finetune``: the same sets computed on M^s, pruned in M^s, then fine-tuned (mask kept).
      - ``retrain_source``: Sec. 5.1, M^s retrained without the classes of F, then fine-tuned.
      - ``unlearning``: App. B unlearning term, ``weight``, ``batch``.
      - ``composites``: fine-tuning on composites (DESIGN.md), probability ``p``, ``scale``.
    """

    name: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, KINDS)
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string; got {self.name!r}")


@dataclass
class _Arm:
    model: nn.Module | None
    train_s: float
    source: nn.Module | None = None     # the source whose head makes M^st (None: the world's M^s)
    note: str = ""
    n_pruned: int | None = None
    lingering_defined: bool = True


def default_remedies(audit: Any) -> list[Remedy]:
    """The remedies measured in the book: plain, L1, pruning (post-hoc and before fine-tuning),
    retraining the source, unlearning, the other BatchNorm policy, a 5x smaller and a 5x larger
    learning rate than the world's, and fine-tuning on composites."""
    fd = audit.world.finetune_defaults
    lr = float(fd.get("lr", 1e-3))
    other_bn = "freeze" if fd.get("bn", "update") == "update" else "update"
    return [
        Remedy("plain fine-tuning", "plain"),
        Remedy("L1 penultimate", "l1", {"weight": 0.05}),
        Remedy("prune (post-hoc)", "prune", {"a_t_quantile": 0.5, "classes": "source_only"}),
        Remedy("prune + fine-tune", "prune_finetune", {"a_t_quantile": 0.5, "classes": "source_only"}),
        Remedy("retrain source without F", "retrain_source"),
        Remedy("unlearning", "unlearning", {"weight": 1.0, "batch": 32}),
        Remedy(f"bn={other_bn}", "finetune", {"bn": other_bn}),
        Remedy("lr x0.2", "finetune", {"lr": lr * 0.2}),
        Remedy("lr x5", "finetune", {"lr": lr * 5}),
        Remedy("fine-tune on composites", "composites", {"p": 0.5, "scale": audit.scale}),
    ]


# --------------------------------------------------------------------------------------------
# building the remedied models
# --------------------------------------------------------------------------------------------

def _finetune(audit: Any, source: nn.Module, seed: int, **overrides: Any) -> tuple[nn.Module, pd.DataFrame]:
    """``training.finetune`` with the world's recipe (as ``Audit.target_model``), from any source."""
    w = audit.world
    kw = {**w.finetune_defaults, **overrides}
    extra = getattr(w, "extra", None) or {}
    if "train_subset" not in kw and extra.get("finetune_subset") is not None:
        kw["train_subset"] = extra["finetune_subset"]
    kw.setdefault("num_classes", len(w.target_classes))
    kw.setdefault("progress", audit.progress)
    return _training.finetune(source, w.target_train, w.target_val, seed=seed, device=audit.device,
                              cache=audit.cache, **kw)


def _wall(hist: pd.DataFrame | None) -> float:
    return float(hist["wall_s"].iloc[-1]) if hist is not None and len(hist) else 0.0


def _held_out_source(audit: Any, classes: Sequence[int], per_class: int = 64) -> tuple[dict[int, Tensor], str]:
    """Images of ``classes`` that the audit does not evaluate on: the world's source *training* images
    (``extra["source_train"]``) when it has them, else D^c itself (with a note saying so)."""
    extra = getattr(audit.world, "extra", None) or {}
    data = extra.get("source_train")
    note = ""
    if data is None:
        data = audit.world.source_data
        note = "trained on the same D^c images it is evaluated on (this world has no separate source training set)"
    by = images_by_class(data, classes)
    return {c: x[:per_class] for c, x in by.items() if len(x)}, note


def _target_by_class(audit: Any, max_per_class: int = 256) -> dict[int, Tensor]:
    """D^t split by target class (M^t's training images)."""
    by = images_by_class(audit.target_data())
    return {c: x[:max_per_class] for c, x in by.items()}


def _a_t(model: nn.Module, audit: Any, params: Mapping[str, Any], head: str | None) -> float:
    a_t = params.get("a_t")
    if a_t is not None:
        return float(a_t)
    qt = float(check_range("a_t_quantile", params.get("a_t_quantile", 0.5), 0, 1))
    x = torch.cat(list(_target_by_class(audit).values()))
    acts = penultimate_features(model, x, head=head)
    return float(torch.quantile(acts.flatten().double(), qt))


def _prune_sets(model: nn.Module, audit: Any, seed: int, params: Mapping[str, Any], head: str | None
                ) -> tuple[Tensor, float, str]:
    which = check_choice("classes", params.get("classes", "source_only"), ("source_only", "lingering"))
    cls = audit.source_only().tolist() if which == "source_only" else audit.lingering_classes(seed)
    if not cls:
        return torch.zeros(0, dtype=torch.long), float("nan"), f"no {which} classes: nothing to prune"
    src, note = _held_out_source(audit, cls)
    a_t = _a_t(model, audit, params, head)
    s_sets = channel_sets(model, src, a_t, head=head)
    t_sets = channel_sets(model, _target_by_class(audit), a_t, head=head)
    return channels_to_prune(s_sets, t_sets), a_t, note


def retrain_source(world: Any, exclude: Iterable[int], *, seed: int | None = None, device: Any = None,
                   cache: bool = True, progress: bool = False) -> tuple[nn.Module, pd.DataFrame]:
    """Sec. 5.1 "Retraining the source model": M^s trained again without the classes ``exclude``.

    Uses ``world.extra["retrain_source"](exclude, seed=...)`` when a world provides one; otherwise,
    for a world that carries its source training set (``extra["source_train"]``) and recipe (the
    ``shapes`` world: ``source_lr``, ``source_epochs``, ``source_batch_size`` in its profile), it
    repeats that recipe (``training.train_scratch``, Adam, cosine schedule, the world's seed) on the
    images of the other classes, from the world's architecture with one output per source class.
    Raises :class:`NotFeasible` (with the reason) elsewhere: retraining an ImageNet model is not a
    smoke-profile job.
    """
    exclude = sorted({int(c) for c in exclude})
    extra = getattr(world, "extra", None) or {}
    seed = world.seed if seed is None else seed
    if callable(extra.get("retrain_source")):
        return extra["retrain_source"](exclude, seed=seed)
    prof = world.profile
    needed = ("source_lr", "source_epochs", "source_batch_size")
    if extra.get("source_train") is None or not all(hasattr(prof, f) for f in needed):
        raise NotFeasible(f"world {world.name!r} does not carry its source training set and recipe: retraining "
                          f"its source model (e.g. on ImageNet) is not feasible here")
    data = extra["source_train"]
    y = labels_of(data).long()
    keep = torch.nonzero(~torch.isin(y, torch.as_tensor(exclude, dtype=torch.long))).flatten()
    if len(keep) == 0:
        raise ValueError("exclude removes every source class: keep at least one")
    val = world.source_data
    yv = labels_of(val).long()
    keep_v = torch.nonzero(~torch.isin(yv, torch.as_tensor(exclude, dtype=torch.long))).flatten().tolist()
    val_sel = TensorDataset(*(t[keep_v] for t in val.tensors)) if isinstance(val, TensorDataset) else None
    return _training.train_scratch(
        world.make_scratch, data, val_sel, num_classes=len(world.source_classes), lr=prof.source_lr,
        epochs=prof.source_epochs, optimizer="adam", batch_size=prof.source_batch_size, lr_schedule="cosine",
        seed=seed, device=device, cache=cache, progress=progress, train_subset=keep.tolist())


def _plain(audit: Any, seed: int, memo: dict | None) -> tuple[nn.Module, pd.DataFrame]:
    """Plain M^t for ``seed``, trained once per ``memo`` (the table's rows share it)."""
    if memo is not None and ("plain", seed) in memo:
        return memo[("plain", seed)]
    out = _finetune(audit, audit.world.source_model, seed)
    if memo is not None:
        memo[("plain", seed)] = out
    return out


def _build(audit: Any, remedy: Remedy, seed: int, memo: dict | None = None) -> _Arm:
    p = dict(remedy.params)
    head = audit.world.finetune_defaults.get("head") or (getattr(audit.world, "extra", None) or {}).get("head")
    kind = remedy.kind
    if kind == "plain":
        m, h = _plain(audit, seed, memo)
        return _Arm(m, _wall(h))
    if kind == "finetune":
        m, h = _finetune(audit, audit.world.source_model, seed, **p)
        return _Arm(m, _wall(h))
    if kind == "l1":
        with l1_penultimate(float(p.get("weight", 0.05)), head=head) as extra:
            m, h = _finetune(audit, audit.world.source_model, seed, extra_loss=extra)
        return _Arm(m, _wall(h))
    if kind == "prune":
        mt, h = _plain(audit, seed, memo)
        t0 = _now()
        chans, a_t, note = _prune_sets(mt, audit, seed, p, head)
        pruned = prune_channels(mt, chans, head=head)
        note = "; ".join(x for x in (f"a_t={a_t:.3g}, {len(chans)} channels pruned after fine-tuning", note) if x)
        return _Arm(pruned, _wall(h) + (_now() - t0), note=note, n_pruned=len(chans))
    if kind == "prune_finetune":
        src = audit.world.source_model
        t0 = _now()
        chans, a_t, note = _prune_sets(src, audit, seed, p, head)
        pruned_src = prune_channels(src, chans, head=head)
        t_sets = _now() - t0
        new_head = find_head(pruned_src)[0] if head is not None else None
        kw = {"head": new_head} if new_head is not None else {}
        m, h = _finetune(audit, pruned_src, seed, **kw)
        note = "; ".join(x for x in (f"a_t={a_t:.3g}, {len(chans)} channels of M^s pruned before fine-tuning", note)
                         if x)
        return _Arm(m, _wall(h) + t_sets, note=note, n_pruned=len(chans))
    if kind == "retrain_source":
        F = audit.source_only().tolist()
        src, sh = retrain_source(audit.world, F, device=audit.device, cache=audit.cache, progress=audit.progress)
        src = src.eval()
        m, h = _finetune(audit, src, seed)
        return _Arm(m, _wall(h) + _wall(sh), source=src, lingering_defined=False,
                    note=f"M^s retrained without {len(F)} classes ({_wall(sh):.0f} s); Eq. 3 undefined: the new "
                         "head never learned those classes")
    if kind == "unlearning":
        L = audit.lingering_classes(seed)
        cls = L if L else audit.source_only().tolist()
        imgs, note = _held_out_source(audit, cls)
        if not imgs:
            raise NotFeasible("no images of the lingering classes to unlearn")
        _, s_head = split_model(audit.world.source_model, head)
        with unlearning_loss(s_head, list(imgs.values()), float(p.get("weight", 1.0)), int(p.get("batch", 32)),
                             seed=seed, head=head) as extra:
            m, h = _finetune(audit, audit.world.source_model, seed, extra_loss=extra)
        msg = (f"unlearned {len(cls)} classes ({'L of plain M^t' if L else 'F: L was empty'}); time includes "
               "the plain fine-tuning that found L")
        return _Arm(m, _wall(h) + _wall(_plain(audit, seed, memo)[1]), note="; ".join(x for x in (msg, note) if x))
    if kind == "composites":
        F = audit.source_only().tolist()
        imgs, note = _held_out_source(audit, F)
        if not imgs:
            raise NotFeasible("no source-only images to paste target images on")
        aug = composite_augment(list(imgs.values()), float(p.get("p", 0.5)), float(p.get("scale", audit.scale)))
        if audit.world.finetune_defaults.get("augment") is not None:
            note = "; ".join(x for x in ("replaces the world's fine-tuning augmentation", note) if x)
        m, h = _finetune(audit, audit.world.source_model, seed, augment=aug)
        return _Arm(m, _wall(h), note="; ".join(x for x in ("backgrounds: held-out images of F" if not note
                                                            else "", note) if x))
    raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")


def remedy_arms(audit: Any, remedies: Sequence[Remedy | str] | None = None) -> dict[str, Callable[[int], nn.Module]]:
    """``{name: seed -> model}`` for ``comparison.compare(audit, arms=...)``: the remedied models as
    arms, so the paired controls (excess error, flip rate) and model-level tests apply to them too.
    An infeasible remedy raises :class:`NotFeasible` when its arm is built."""
    chosen = _choose(audit, remedies)
    return {r.name: (lambda seed, r=r: _build(audit, r, seed).model) for r in chosen}


def _now() -> float:
    import time
    return time.perf_counter()


# --------------------------------------------------------------------------------------------
# measuring one model
# --------------------------------------------------------------------------------------------

def measure(audit: Any, model: nn.Module, seed: int = 0, source: nn.Module | None = None,
            lingering_defined: bool = True, n_boot: int = 1000) -> dict[str, Any]:
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
        try:
            mean, lo, hi = bootstrap_ci(d, n_boot=n_boot, generator=seed)
        except ValueError:
            mean, lo, hi = (float("nan"),) * 3
        row.update(distraction=mean, distraction_ci_lo=lo, distraction_ci_hi=hi,
                   distraction_null=float(np.nanmean(null.numpy())) if len(null) else float("nan"),
                   distraction_excess=float(np.nanmean((d - null).numpy())) if len(d) else float("nan"))
    else:
        row.update(composite_acc=float("nan"), distraction=float("nan"), distraction_ci_lo=float("nan"),
                   distraction_ci_hi=float("nan"), distraction_null=float("nan"), distraction_excess=float("nan"))
    if F and lingering_defined:
        src = audit.source_model() if source is None else source.to(audit.device).eval()
        mst = source_target_model(model, src, head=_st_head(audit, model, src))
        lt = _lingering(mst, audit.world.source_data, F, p_lo=audit.p_lo)
        row["n_lingering"] = int(lt["lingering"].sum())
        row["mean_p_st"] = float(lt["p_st"].mean())
    else:
        row["n_lingering"] = float("nan") if not lingering_defined else 0
        row["mean_p_st"] = float("nan")
    return row


def _st_head(audit: Any, model: nn.Module, source: nn.Module) -> str | None:
    """The head name that works for both ``model`` and ``source`` (None: let ``find_head`` look)."""
    head = audit.world.finetune_defaults.get("head") or (getattr(audit.world, "extra", None) or {}).get("head")
    if head is None:
        return None
    try:
        find_head(model, head)
        find_head(source, head)
        return head
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# the remedy table
# --------------------------------------------------------------------------------------------

def _check_seeds(seeds: Sequence[int]) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    for s in seeds:
        check_int_range("seeds", s, 0)
    return seeds


def _choose(audit: Any, remedies: Sequence[Remedy | str] | None) -> list[Remedy]:
    defaults = {r.name: r for r in default_remedies(audit)}
    if remedies is None:
        return list(defaults.values())
    chosen = []
    for r in remedies:
        if isinstance(r, Remedy):
            chosen.append(r)
        elif isinstance(r, str) and r in defaults:
            chosen.append(defaults[r])
        else:
            raise ValueError(f"remedies must hold Remedy objects or names of default_remedies: "
                             f"{', '.join(map(repr, defaults))}; got {r!r}")
    if not chosen:
        raise ValueError("remedies is empty: pass at least one remedy (or None for all)")
    return chosen


def remedy_table(audit: Any, remedies: Sequence[Remedy | str] | None = None, seeds: Sequence[int] = (0, 1, 2),
                 n_boot: int = 1000) -> pd.DataFrame:
    """Measure every remedy for every seed: one tidy row each, columns :data:`REMEDY_COLUMNS`.

    ``remedies``: :class:`Remedy` objects, or names from :func:`default_remedies` (None: all of them).
    A remedy that cannot run in this world (:class:`NotFeasible`, e.g. retraining an ImageNet source)
    gets ``feasible=False``, NaN metrics and the reason in ``note``. ``time_overhead`` is a row's
    ``train_s`` divided by plain fine-tuning's for the same seed (plain is trained when absent).
    """
    seeds = _check_seeds(seeds)
    chosen = _choose(audit, remedies)
    names = [r.name for r in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"remedies must have distinct names; got {names}")
    plain_s: dict[int, float] = {}
    memo: dict = {}
    rows = []
    for seed in seeds:
        plain_s[seed] = _build(audit, Remedy("plain fine-tuning", "plain"), seed, memo).train_s
        for r in chosen:
            row: dict[str, Any] = {"remedy": r.name, "kind": r.kind,
                                   "params": ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                       for k, v in r.params.items()),
                                   "seed": seed}
            try:
                arm = _build(audit, r, seed, memo)
            except NotFeasible as e:
                row.update(feasible=False, note=f"not feasible here: {e}")
                rows.append(row)
                continue
            assert arm.model is not None
            row.update(feasible=True, note=arm.note, train_s=arm.train_s,
                       time_overhead=arm.train_s / plain_s[seed] if plain_s[seed] > 0 else float("nan"),
                       n_pruned=arm.n_pruned)
            row.update(measure(audit, arm.model, seed, arm.source, arm.lingering_defined, n_boot))
            rows.append(row)
    table = pd.DataFrame(rows)
    for c in REMEDY_COLUMNS:
        if c not in table:
            table[c] = np.nan
    table["feasible"] = table["feasible"].astype(bool)
    table["note"] = table["note"].fillna("")
    table["n_pruned"] = pd.array([None if (v is None or (isinstance(v, float) and math.isnan(v))) else int(v)
                                  for v in table["n_pruned"]], dtype="Int64")
    return table[REMEDY_COLUMNS]


_METRICS = ("target_acc", "composite_acc", "distraction", "distraction_null", "distraction_excess", "n_lingering",
            "mean_p_st", "time_overhead")


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
        row: dict[str, Any] = {"remedy": name, "feasible": bool(g["feasible"].all()), "n_seeds": len(g),
                               "note": next((n for n in g["note"] if n), "")}
        for m in _METRICS:
            vals = pd.to_numeric(g[m], errors="coerce").astype(float)
            row[m] = vals.mean()
            row[f"{m}_sd"] = vals.std(ddof=1) if len(vals) > 1 else float("nan")
            r = pd.to_numeric(ref[m], errors="coerce").astype(float).reindex(g["seed"]).to_numpy()
            d = vals.to_numpy() - r
            row[f"d_{m}"] = float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")
            row[f"d_{m}_sd"] = float(np.nanstd(d, ddof=1)) if np.isfinite(d).sum() > 1 else float("nan")
        out.append(row)
    return pd.DataFrame(out)


def plot_remedies(table: pd.DataFrame, reference: str = "plain fine-tuning", ax: Any = None) -> Any:
    """What each remedy buys against what it costs (paired with ``reference``, mean ± SD over seeds).

    Panels: gain in composite accuracy (buys) vs drop in target accuracy (costs); change in
    distraction above its null (Eq. 4); change in mean p_c(M^st) over F and in |L| (Eq. 3), negative
    is better; training-time overhead (x plain fine-tuning, log scale). ``ax``: four axes, or None.
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    s = summarize_remedies(table, reference)
    s = s[s["feasible"] & (s["remedy"] != reference)].reset_index(drop=True)
    if ax is None:
        fig, axes = plt.subplots(1, 4, figsize=(18, 4.6), gridspec_kw={"width_ratios": [1.2, 1, 1, 0.8]})
    else:
        axes = ax
        fig = axes[0].figure
    colours = plt.get_cmap("tab10")(np.arange(len(s)) % 10)
    a = axes[0]
    for i, r in s.iterrows():
        a.errorbar(-r["d_target_acc"], r["d_composite_acc"], xerr=_nz(r["d_target_acc_sd"]),
                   yerr=_nz(r["d_composite_acc_sd"]), fmt="o", color=colours[i], capsize=3, label=r["remedy"])
    a.axhline(0, color="grey", lw=0.8)
    a.axvline(0, color="grey", lw=0.8)
    a.set_xlabel("cost: target accuracy drop vs plain")
    a.set_ylabel("buys: composite accuracy gain vs plain")
    a.legend(fontsize=7, loc="best")
    a.set_title("accuracy")
    y = np.arange(len(s))
    b = axes[1]
    b.barh(y, s["d_distraction_excess"], xerr=s["d_distraction_excess_sd"].fillna(0), color=colours)
    b.set_yticks(y, s["remedy"], fontsize=8)
    b.axvline(0, color="grey", lw=0.8)
    b.set_xlabel("change in distraction above null (Eq. 4 IoU)")
    b.set_title("buys: less distraction (negative)", fontsize=9)
    e = axes[2]
    e.barh(y, s["d_mean_p_st"], xerr=s["d_mean_p_st_sd"].fillna(0), color=colours)
    for i, r in s.iterrows():
        if np.isfinite(r["d_n_lingering"]):
            e.annotate(f"{r['d_n_lingering']:+.0f} L", (0, i), xytext=(3, -3), textcoords="offset points", fontsize=7)
    e.set_yticks(y, [""] * len(s))
    e.axvline(0, color="grey", lw=0.8)
    e.set_xlabel("change in mean p_c(M^st) over F (Eq. 3)")
    e.set_title("buys: weaker memories (negative); +n L = change in |L|", fontsize=9)
    c = axes[3]
    c.barh(y, s["time_overhead"], xerr=s["time_overhead_sd"].fillna(0), color=colours)
    c.set_xscale("log")
    c.axvline(1, color="grey", lw=0.8)
    c.set_yticks(y, [""] * len(s))
    c.set_xlabel("cost: training time (x plain fine-tuning)")
    c.set_title("time")
    fig.tight_layout()
    return fig


def _nz(v: float) -> float:
    return 0.0 if v is None or not np.isfinite(v) else float(v)


# --------------------------------------------------------------------------------------------
# Fig. 7: training-set size; Fig. 8: architectures
# --------------------------------------------------------------------------------------------

def size_sweep(audit: Any, sizes: Sequence[int], seeds: Sequence[int] = (0, 1, 2), subset_seed: int = 0,
               epochs: int | None = None, n_boot: int = 1000) -> pd.DataFrame:
    """App. B, Fig. 7 measured: fine-tune on the first ``n`` images of one seeded permutation of
    ``world.target_train`` (nested subsets) for each ``n`` in ``sizes``, with the world's recipe.

    The number of epochs stays the recipe's (``epochs`` overrides it), so a larger set also means more
    steps, as it would in practice. F (Eq. 2) is the audit's, fixed across sizes, so the lingering
    counts compare the same classes. One row per (size, seed): ``n_train`` plus the metrics of
    :func:`measure` and ``train_s``.
    """
    seeds = _check_seeds(seeds)
    n_all = len(audit.world.target_train)
    sizes = list(sizes)
    if not sizes:
        raise ValueError("sizes is empty: pass at least one training-set size")
    for n in sizes:
        check_int_range("sizes", n, 2, n_all)
    check_int_range("subset_seed", subset_seed, 0)
    perm = torch.randperm(n_all, generator=torch.Generator().manual_seed(subset_seed)).tolist()
    overrides: dict[str, Any] = {}
    if epochs is not None:
        overrides["epochs"] = check_int_range("epochs", epochs, 1)
    rows = []
    for n in sizes:
        sub = sorted(perm[:n])
        for seed in seeds:
            m, h = _finetune(audit, audit.world.source_model, seed, train_subset=sub, **overrides)
            row = {"n_train": n, "seed": seed, "train_s": _wall(h)}
            row.update(measure(audit, m, seed, n_boot=n_boot))
            rows.append(row)
    return pd.DataFrame(rows)


def arch_comparison(specs: Sequence[tuple[str, str | None]], profile: Any = "smoke",
                    seeds: Sequence[int] = (0,), world_seed: int = 0, audit_kwargs: Mapping[str, Any] | None = None,
                    world_options: Mapping[str, Mapping[str, Any]] | None = None, n_boot: int = 1000,
                    load: Callable[..., Any] | None = None) -> pd.DataFrame:
    """App. B, Fig. 8 measured: the audit's numbers for each ``(world, arch)`` that loads here.

    ``arch`` None is the world's own architecture. Otherwise: passed as ``arch=`` to a loader that
    takes it; else, for a loader that takes ``source_model=`` (the ``paper`` world), a torchvision
    ImageNet model of that name (``"resnet18"``, ``"resnet50"``, ``"vit_b_16"``: weights from the
    torchvision cache or the internet) with its head and Grad-CAM layer found by
    ``models.find_head`` / ``attribution.default_layer``; else it must name the world's only
    architecture (``shapes``: "SmallResNet"; ``lite0``: "EfficientNet-Lite0"). A pair that cannot
    be loaded here (missing weights, data or packages, an arch the world does not offer) gives one
    row with ``available=False`` and the reason, so the same call runs offline and on a GPU. One row
    per (world, arch, seed) otherwise. ``load`` replaces ``worlds.load_world`` (tests).
    """
    from .audit import Audit
    from .worlds import load_world

    seeds = _check_seeds(seeds)
    load = load or load_world
    rows = []
    for world_name, arch in specs:
        opts = dict((world_options or {}).get(world_name, {}))
        base = {"world": world_name, "arch": arch if arch is not None else "default"}
        try:
            world = _load_arch(load, world_name, arch, profile, world_seed, opts)
        except (NotFeasible, ImportError, FileNotFoundError, OSError, ValueError, RuntimeError) as e:
            rows.append({**base, "available": False, "note": f"{type(e).__name__}: {e}"})
            continue
        base["arch"] = arch if arch is not None else _arch_name(world)
        audit = Audit(world, **dict(audit_kwargs or {}))
        for seed in seeds:
            m, h = _finetune(audit, world.source_model, seed)
            row = {**base, "available": True, "seed": seed, "n_source_classes": len(world.source_classes),
                   "train_s": _wall(h), "note": ""}
            row.update(measure(audit, m, seed, n_boot=n_boot))
            rows.append(row)
    return pd.DataFrame(rows)


def _load_arch(load: Callable[..., Any], world_name: str, arch: str | None, profile: Any, seed: int,
               opts: dict[str, Any]) -> Any:
    """Load ``world_name`` with architecture ``arch`` (see :func:`arch_comparison`)."""
    if arch is None:
        return load(world_name, profile, seed, **opts)
    try:
        return load(world_name, profile, seed, **{**opts, "arch": arch})
    except ValueError as e:
        msg = str(e)
        if not ("unknown option" in msg and "'arch'" in msg):
            raise
        takes_source = "source_model" in msg
    if takes_source:
        import torchvision

        from .models import IMAGENET_MEAN, IMAGENET_STD, Normalized
        try:
            net = torchvision.models.get_model(arch, weights="DEFAULT")
        except ValueError as e:
            raise NotFeasible(f"torchvision has no ImageNet model {arch!r}: {e}") from None
        source = Normalized(net, IMAGENET_MEAN, IMAGENET_STD).eval()
        world = load(world_name, profile, seed, **{**opts, "source_model": source})
        head, _ = find_head(world.source_model)
        from .attribution import default_layer
        try:
            layer: str | None = default_layer(world.source_model)
        except ValueError:
            layer = None
        tv_layer = layer if layer is not None and not layer.endswith(".ln_1") else None  # ViT: let gradcam reshape
        world.finetune_defaults = {**world.finetune_defaults, "head": head}
        world.scratch_defaults = {**world.scratch_defaults, "head": head}
        world.extra = {**world.extra, "head": head, "cam_layer": tv_layer, "target_layer": None, "arch": arch}
        return world
    world = load(world_name, profile, seed, **opts)
    own = _arch_name(world)
    if arch.lower() not in (own.lower(), type(_inner(world.source_model)).__name__.lower()):
        raise NotFeasible(f"world {world_name!r} offers only {own!r}")
    return world


def _inner(model: nn.Module) -> nn.Module:
    while hasattr(model, "model") and isinstance(getattr(model, "model"), nn.Module):
        model = model.model
    return model


def _arch_name(world: Any) -> str:
    extra = getattr(world, "extra", None) or {}
    return str(extra.get("arch") or type(_inner(world.source_model)).__name__)
