"""An honest comparison protocol for the distraction claim (paper, Sec. 4 and Fig. 3a).

The paper's claim: on composites I(c) of lingering classes, the fine-tuned M^t is distracted (Eq. 4)
and wrong more often than a model trained from scratch, M^b. Three things make that comparison fair:

1. **Paired controls.** Every source-only composite is shown again with the *same target patch at
   the same place* on (a) a neutral background: a heavy Gaussian blur of the same source image
   (``composites.neutral_backgrounds(kind="blur")``): it keeps the image's colours, brightness and
   layout but removes the object's shape and texture, so the difference isolates the *source object*
   rather than a shift in image statistics (a plain mean-colour fill also removes all structure, which
   a model trained on textured backgrounds may find unusual in its own right); and (b) an image of a
   *shared* source class (planted in ``shapes``; elsewhere the highest-v classes outside F), which the
   paper predicts should not distract. ``excess_error`` = error on source-only minus error on neutral;
   ``flip_rate`` = right on neutral, wrong on source-only. These separate "M^t is weak on a small
   pasted target" from "the source object pulls M^t away".
2. **Seeds.** Each arm is trained with several seeds; the table reports the spread between models
   (seed-level t-interval, min/max) next to the spread between composites (composite-level standard
   error), and tests M^t against each baseline at the level of models (Welch t-test and an exact
   permutation test over per-seed means) as well as over composites (paired sign-flip test on
   per-composite values averaged over seeds).
3. **Baselines.** ``M^b (same data)``: the scratch recipe on exactly M^t's training images;
   ``M^b (competent)``: the world's competent scratch recipe; ``M^b (matched acc)``: the recipe on
   fewer images so its validation accuracy matches M^t's (``arms.Zoo.matched``; default only for
   ``shapes``, where data are free). The ``baseline`` column says what each arm is.

``compare(audit)`` returns one tidy row per (arm, measure); ``verdict(table)`` says per measure and
baseline whether the paper's ordering (M^t worse than M^b) holds, with the numbers.
"""
from __future__ import annotations

import itertools
import math
import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from . import cache as _cache
from ._data import gather
from ._validation import check_choice, check_int_range, check_range
from .audit import Audit
from .composites import Composites, neutral_backgrounds, paste
from .distraction import distraction_with_null, paired_test
from .models import as_generator

__all__ = ["DEFAULT_ARMS", "MEASURES", "WORSE_IF", "default_arms", "control_sets", "controls", "per_seed",
           "by_class", "compare", "verdict", "model_level_test"]

ArmSpec = Union[str, Callable[[int], nn.Module]]

DEFAULT_ARMS = ("M^t", "M^b (same data)", "M^b (competent)", "M^b (matched acc)")

#: measure -> (description, direction in which a model is *worse*)
MEASURES: dict[str, tuple[str, str]] = {
    "target_acc": ("accuracy on clean target validation images", "lower"),
    "err_source_only": ("error on source-only composites I(c), c in F", "higher"),
    "err_neutral": ("error, same patch on a blurred (object-free) background", "higher"),
    "err_shared": ("error, same patch on an image of a shared class", "higher"),
    "excess_error": ("err_source_only - err_neutral (the part due to the source object)", "higher"),
    "flip_rate": ("right on neutral, wrong on source-only", "higher"),
    "distraction": ("Eq. 4 IoU with M^s's map, source-only composites", "higher"),
    "distraction_null": ("Eq. 4 IoU for shuffled pairs (chance level)", "higher"),
    "distraction_excess": ("distraction - distraction_null", "higher"),
}
WORSE_IF = {k: v[1] for k, v in MEASURES.items()}

_BASELINE = {
    "M^t": "fine-tuned M^s on D^t (the world's recipe \"M^t\")",
    "M^b (same data)": "scratch on M^t's training images, competent recipe, steps matched",
    "M^b (competent)": "scratch, the world's competent recipe \"M^b\"",
    "M^b (matched acc)": "scratch, competent recipe on fewer images, val acc matched to M^t",
}


def default_arms(audit: Audit) -> tuple[str, ...]:
    """The arms a world compares by default (``spec.comparison_arms``: the accuracy-matched baseline
    only where target data are free to draw, as in ``shapes``)."""
    return tuple(audit.world.spec.comparison_arms)


def _shared_pool(audit: Audit) -> list[int]:
    """Source classes used as the 'shared' control: planted_shared, else the (up to 4) highest-v classes
    outside F that have images in the source data (in ImageNet-sized worlds most classes have none).
    Empty when no class outside F has images: the shared control is then not available."""
    planted = audit.world.planted_shared
    if planted:
        return sorted(int(c) for c in planted)
    v = audit.counts()
    F = set(audit.source_only().tolist())
    with_images = set(audit.source_labels().unique().tolist())
    order = [int(c) for c in torch.argsort(v, descending=True, stable=True).tolist()
             if int(c) not in F and int(c) in with_images]
    return order[:4]


def control_sets(audit: Audit, classes: Iterable[int] | None = None, composites_seed: int = 0,
                 neutral: str = "blur") -> dict[str, Composites]:
    """The three paired image sets: ``source_only`` (= ``audit.composites``), ``neutral`` and ``shared``:
    the same target patches at the same places, pasted on a ``neutral_backgrounds(kind=neutral)``
    version of each source image and on a (seeded) image of a shared class. Cached by the audit.

    ``shared`` is left out, with a warning, when no class outside F has source images (e.g. the
    ``lite0`` world at 224 px, where none of D^c's 22 classes is in a target image's top-k):
    ``controls`` then reports ``correct_shared`` as NaN and ``compare`` the ``err_shared`` row as NaN."""
    check_choice("neutral", neutral, ("blur", "plain", "noise"))
    comp = audit.composites(classes, composites_seed)
    pool = _shared_pool(audit)
    if not pool:
        warnings.warn("no source class outside F (v(c) > v_lo) has images in the source data: the shared-class "
                      "control is not available (err_shared is NaN); add source images of a class the target "
                      "data show to measure it", RuntimeWarning, stacklevel=2)

    def compute() -> dict[str, Composites]:
        src, _ = gather(audit.world.source_data, comp.source_index.tolist())
        neutral_bg = neutral_backgrounds(src, kind=neutral, generator=composites_seed)
        sets = {"source_only": comp, "neutral": paste(neutral_bg, comp)}
        if not pool:
            return sets
        shared_idx = [i for c in pool for i in audit.class_images(c, audit.n_composites_per_class)]
        if not shared_idx:
            raise ValueError(f"the source data hold no images of the shared classes {pool}")
        g = as_generator(10_000 + composites_seed)
        pick = torch.randint(0, len(shared_idx), (len(comp),), generator=g)
        idx = [shared_idx[int(i)] for i in pick]
        shared_bg, _ = gather(audit.world.source_data, idx)
        shared = paste(shared_bg, comp)
        shared.source_index = torch.as_tensor(idx, dtype=torch.long)
        return {**sets, "shared": shared}

    key = (_cache.fingerprint(comp.images, comp.masks), pool, neutral, composites_seed, audit.n_composites_per_class)
    return audit.stages.get("control_sets", key, compute)


def _resolve(audit: Audit, arm: str, spec: ArmSpec, seed: int) -> nn.Module:
    if callable(spec) and not isinstance(spec, str):
        model = spec(seed)
        if not isinstance(model, nn.Module):
            raise ValueError(f"arm {arm!r} returned {type(model).__name__} for seed {seed}, not an nn.Module")
        return model.to(audit.device).eval()
    return audit.model(spec, seed)


def _arm_specs(audit: Audit, arms: Sequence[str] | Mapping[str, ArmSpec] | None) -> dict[str, ArmSpec]:
    if arms is None:
        arms = default_arms(audit)
    specs: dict[str, ArmSpec] = dict(arms) if isinstance(arms, Mapping) else {a: a for a in arms}
    if not specs:
        raise ValueError("arms is empty: pass at least one arm name (or name -> callable(seed))")
    known = set(audit.zoo.names())
    for name, spec in specs.items():
        if isinstance(spec, str) and spec not in known:
            raise ValueError(f"arms: unknown arm {spec!r}; known: {', '.join(sorted(known))} "
                             "(or pass a mapping name -> callable(seed) -> nn.Module)")
    return specs


def _seeds(seeds: Sequence[int]) -> list[int]:
    s = [check_int_range("seeds", int(x), 0) for x in seeds]
    if not s or len(set(s)) != len(s):
        raise ValueError(f"seeds must be a non-empty sequence of distinct non-negative integers; got {list(seeds)}")
    return s


def controls(audit: Audit, arms: Sequence[str] | Mapping[str, ArmSpec] | None = None, seeds: Sequence[int] = (0, 1, 2),
             classes: Iterable[int] | None = None, composites_seed: int = 0, neutral: str = "blur") -> pd.DataFrame:
    """One row per (arm, seed, composite): correctness on the three paired sets, the flip, Eq. 4 and
    its null on the source-only composite. Columns: ``arm, seed, composite, source_class,
    source_name, target_label, correct_source_only, correct_neutral, correct_shared, flip,
    distraction, null``; ``attrs["target_acc"]`` maps (arm, seed) to validation accuracy."""
    specs = _arm_specs(audit, arms)
    seed_list = _seeds(seeds)
    sets = control_sets(audit, classes, composites_seed, neutral)
    comp = sets["source_only"]
    cs = audit.composite_classes(comp)
    ms = audit.maps("M^s", comp, cs)
    masks = comp.masks.cpu()
    y = comp.target_label.cpu()
    names = list(audit.world.source_classes)
    frames, acc = [], {}
    for arm, spec in specs.items():
        for seed in seed_list:
            model = _resolve(audit, arm, spec, seed)
            correct = {k: (audit.logits(model, s.images).argmax(1) == y).numpy() for k, s in sets.items()}
            d, null = distraction_with_null(audit.maps(model, comp, y), ms, masks, audit.q, audit.n_null, seed)
            acc[(arm, seed)] = audit.accuracy(model)
            frames.append(pd.DataFrame({
                "arm": arm, "seed": seed, "composite": np.arange(len(comp)), "source_class": cs.numpy(),
                "source_name": [names[int(c)] for c in cs], "target_label": y.numpy(),
                "correct_source_only": correct["source_only"], "correct_neutral": correct["neutral"],
                "correct_shared": correct["shared"] if "shared" in correct else np.full(len(comp), np.nan),
                "flip": correct["neutral"] & ~correct["source_only"],
                "distraction": d.double().numpy(), "null": null.double().numpy()}))
    out = pd.concat(frames, ignore_index=True)
    out.attrs["target_acc"] = acc
    return out


def _composite_values(ctl: pd.DataFrame) -> pd.DataFrame:
    """Per-composite values of every composite-level measure (same rows as ``ctl``)."""
    return pd.DataFrame({
        "err_source_only": (~ctl["correct_source_only"]).astype(float),
        "err_neutral": (~ctl["correct_neutral"]).astype(float),
        "err_shared": 1.0 - ctl["correct_shared"].astype(float),  # NaN where no shared control exists
        "excess_error": ctl["correct_neutral"].astype(float) - ctl["correct_source_only"].astype(float),
        "flip_rate": ctl["flip"].astype(float),
        "distraction": ctl["distraction"].astype(float),
        "distraction_null": ctl["null"].astype(float),
        "distraction_excess": ctl["distraction"].astype(float) - ctl["null"].astype(float),
    }, index=ctl.index)


def per_seed(ctl: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, seed) with every measure of :data:`MEASURES` (means over composites) and
    ``se_<measure>`` (standard error over composites)."""
    vals = _composite_values(ctl)
    vals[["arm", "seed"]] = ctl[["arm", "seed"]]
    g = vals.groupby(["arm", "seed"], sort=False)
    mean = g.mean()
    se = g.agg(lambda s: float(np.nanstd(s, ddof=1) / math.sqrt(max(1, s.notna().sum()))) if s.notna().sum() > 1
               else float("nan")).add_prefix("se_")
    out = mean.join(se)
    acc = ctl.attrs.get("target_acc", {})
    out.insert(0, "target_acc", [acc.get(ix, float("nan")) for ix in out.index])
    out["n_composites"] = g.size()
    return out.reset_index()


def by_class(ctl: pd.DataFrame) -> pd.DataFrame:
    """Means per (arm, source class) over seeds and composites: the per-class view of the controls."""
    vals = _composite_values(ctl)
    vals[["arm", "source_class", "source_name"]] = ctl[["arm", "source_class", "source_name"]]
    out = vals.groupby(["arm", "source_class", "source_name"], sort=False).mean()
    out["n"] = vals.groupby(["arm", "source_class", "source_name"], sort=False).size()
    return out.reset_index()


def model_level_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Compare two arms at the level of models (one value per seed): Welch's t-test and an exact
    two-sided permutation test of the difference in means over all relabellings of the pooled seeds.
    With 3 + 3 seeds the smallest attainable permutation p-value is 0.1."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    out = {"diff": float(x.mean() - y.mean()) if len(x) and len(y) else float("nan"),
           "p_welch": float("nan"), "p_perm": float("nan")}
    if len(x) < 1 or len(y) < 1:
        return out
    scale = max(1.0, float(np.abs(np.concatenate([x, y])).max()))
    if len(x) >= 2 and len(y) >= 2 and max(x.std(), y.std()) > 1e-9 * scale:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out["p_welch"] = float(stats.ttest_ind(x, y, equal_var=False).pvalue)
    pooled = np.concatenate([x, y])
    obs = abs(x.mean() - y.mean())
    hits = total = 0
    for idx in itertools.combinations(range(len(pooled)), len(x)):
        mask = np.zeros(len(pooled), dtype=bool)
        mask[list(idx)] = True
        hits += abs(pooled[mask].mean() - pooled[~mask].mean()) >= obs - 1e-12
        total += 1
    out["p_perm"] = hits / total
    return out


def _t_interval(v: np.ndarray, level: float) -> tuple[float, float]:
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def compare(audit: Audit, arms: Sequence[str] | Mapping[str, ArmSpec] | None = None, seeds: Sequence[int] = (0, 1, 2),
            *, reference: str = "M^t", classes: Iterable[int] | None = None, composites_seed: int = 0,
            neutral: str = "blur", level: float = 0.95, n_perm: int = 5000) -> pd.DataFrame:
    """The comparison table: one row per (arm, measure) of :data:`MEASURES`.

    Columns: ``arm, measure, mean`` (over seeds of the per-seed mean), ``ci_lo, ci_hi`` (a
    ``level`` t-interval over seeds: the spread between *models*), ``min, max, sd_seeds``,
    ``se_composites`` (mean over seeds of the standard error over composites: the spread between
    *composites*), ``n_seeds, n_composites, values`` (per-seed values, in ``seeds`` order),
    and against ``reference`` (default M^t): ``diff_vs_ref`` (reference minus arm), ``p_welch`` and
    ``p_perm`` (model level, see :func:`model_level_test`), ``p_composite`` (paired sign-flip test
    over composites of the seed-averaged per-composite values; NaN for ``target_acc``), and
    ``baseline`` (what the arm is). ``arms``: names known to the audit, or a mapping name ->
    name-or-callable(seed) -> model (remedy arms).
    """
    check_range("level", level, 0, 1, lo_open=True, hi_open=True)
    specs = _arm_specs(audit, arms)
    if reference not in specs:
        raise ValueError(f"reference must be one of the arms {list(specs)}; got {reference!r}")
    seed_list = _seeds(seeds)
    ctl = controls(audit, specs, seed_list, classes, composites_seed, neutral)
    ps = per_seed(ctl)
    vals = _composite_values(ctl)
    vals[["arm", "seed", "composite"]] = ctl[["arm", "seed", "composite"]]
    comp_means = vals.groupby(["arm", "composite"]).mean(numeric_only=True)
    rows = []
    with warnings.catch_warnings():  # a measure with no values (err_shared without a shared class) gives NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        for arm in specs:
            sub = ps[ps["arm"] == arm].set_index("seed").loc[seed_list]
            ref = ps[ps["arm"] == reference].set_index("seed").loc[seed_list]
            for measure in MEASURES:
                v = sub[measure].to_numpy(dtype=float)
                lo, hi = _t_interval(v, level)
                row: dict[str, Any] = {
                    "arm": arm, "measure": measure, "mean": float(np.nanmean(v)), "ci_lo": lo, "ci_hi": hi,
                    "min": float(np.nanmin(v)), "max": float(np.nanmax(v)),
                    "sd_seeds": float(np.nanstd(v, ddof=1)) if len(v) > 1 else float("nan"),
                    "se_composites": float(np.nanmean(sub[f"se_{measure}"])) if f"se_{measure}" in sub else float("nan"),
                    "n_seeds": len(v), "n_composites": int(sub["n_composites"].iloc[0]),
                    "values": tuple(float(x) for x in v),
                    "diff_vs_ref": float("nan"), "p_welch": float("nan"), "p_perm": float("nan"),
                    "p_composite": float("nan"), "baseline": _BASELINE.get(arm, "remedy / user arm"),
                }
                if arm != reference:
                    test = model_level_test(ref[measure].to_numpy(dtype=float), v)
                    row.update(diff_vs_ref=test["diff"], p_welch=test["p_welch"], p_perm=test["p_perm"])
                    if measure != "target_acc":
                        a = torch.tensor(comp_means.loc[reference][measure].to_numpy(dtype=float, copy=True))
                        b = torch.tensor(comp_means.loc[arm][measure].to_numpy(dtype=float, copy=True))
                        if bool(torch.isfinite(a - b).any()):  # a measure never measured (err_shared) stays NaN
                            row["p_composite"] = paired_test(a, b, n_perm=n_perm, generator=0, n_boot=200)["p_value"]
                rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["reference"] = reference
    table.attrs["seeds"] = tuple(seed_list)
    return table


def verdict(table: pd.DataFrame, reference: str | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Per (baseline arm, measure): does the paper's ordering hold, i.e. is the reference (M^t) worse?

    Columns: ``baseline, measure, worse_if, reference_mean, baseline_mean, diff`` (reference minus
    baseline), ``holds`` (the mean difference points the paper's way), ``every_seed`` (it does for
    every seed pair i, i), ``p_welch, p_perm, p_composite``, ``significant`` (``holds`` and
    ``p_welch < alpha``: the model-level test, not only the composite-level one) and ``summary``.
    """
    check_range("alpha", alpha, 0, 1, lo_open=True, hi_open=True)
    ref = reference or table.attrs.get("reference", "M^t")
    if ref not in set(table["arm"]):
        raise ValueError(f"reference must be an arm of the table {sorted(set(table['arm']))}; got {ref!r}")
    r = table[table["arm"] == ref].set_index("measure")
    rows = []
    for arm in [a for a in dict.fromkeys(table["arm"]) if a != ref]:
        b = table[table["arm"] == arm].set_index("measure")
        for measure in b.index:
            worse = WORSE_IF.get(measure, "higher")
            sign = 1.0 if worse == "higher" else -1.0
            diff = float(r.loc[measure, "mean"] - b.loc[measure, "mean"])
            rv, bv = np.asarray(r.loc[measure, "values"], float), np.asarray(b.loc[measure, "values"], float)
            every = bool(len(rv) == len(bv) and np.all(sign * (rv - bv) > 0))
            holds = bool(sign * diff > 0)
            p_w = float(b.loc[measure, "p_welch"])
            sig = bool(holds and not math.isnan(p_w) and p_w < alpha)
            word = ("not measured" if math.isnan(diff) else "holds" if holds
                    else "tie" if diff == 0 else "reversed")
            detail = (f"{ref} {r.loc[measure, 'mean']:.3f} vs {arm} {b.loc[measure, 'mean']:.3f} "
                      f"(diff {diff:+.3f}; p_welch {p_w:.3g}, p_perm {float(b.loc[measure, 'p_perm']):.3g}, "
                      f"p_composite {float(b.loc[measure, 'p_composite']):.3g})")
            rows.append({"baseline": arm, "measure": measure, "worse_if": worse,
                         "reference_mean": float(r.loc[measure, "mean"]), "baseline_mean": float(b.loc[measure, "mean"]),
                         "diff": diff, "holds": holds, "every_seed": every, "p_welch": p_w,
                         "p_perm": float(b.loc[measure, "p_perm"]), "p_composite": float(b.loc[measure, "p_composite"]),
                         "significant": sig,
                         "summary": f"{word}{' in every seed' if every else ''}{', significant' if sig else ''}: {detail}"})
    return pd.DataFrame(rows)
