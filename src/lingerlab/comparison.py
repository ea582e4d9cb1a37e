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
2. **Seeds.** Each arm is trained with several seeds; the fair test reports every measure as a mean
   over seeds with a bootstrap-over-seeds interval, and tests M^t against each baseline with an exact
   permutation test over the seeds and a hierarchical bootstrap (seeds, then classes) for the effect's
   interval (:func:`summarize`).
3. **Baselines.** ``M^b (same data)``: the scratch recipe on exactly M^t's training images;
   ``M^b (competent)``: the world's competent scratch recipe; ``M^b (matched acc)``: the recipe on
   fewer images so its validation accuracy matches M^t's (``arms.Zoo.matched``; default only for
   ``shapes``, where data are free). :func:`recipe_table` says what each arm is.

``fair_test(audit)`` runs the controls, the gates (``gates``) and the family of tests over L, each with
one verdict of ``stats.verdict``; ``findings`` says it in words.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import cache as _cache
from . import checks as _checks
from . import gates as _gates
from . import stats as _stats
from ._data import gather
from ._validation import check_choice, check_int_range
from .arms import Recipe
from .audit import Audit
from .composites import Composites, neutral_backgrounds, paste
from .distraction import distraction_with_null
from .checks import composite_clusters
from .models import as_generator

__all__ = [
    "FairTest",
    "fair_test",
    "summarize",
    "headline",
    "findings",
    "smallest_p",
    "claims",
    "COVERAGE_CLAIMS",
    "recipe_table",
    "describe",
    "subset_per_seed",
    "composite_clusters",
    "SUBSETS",
    "FAMILY_MEASURES",
    "MARGINS",
    "CONTRAST_MEASURES",
    "DEFAULT_ARMS",
    "MEASURES",
    "default_arms",
    "control_sets",
    "controls",
]

ArmSpec = Union[str, Recipe, Callable[[int], nn.Module]]

DEFAULT_ARMS = ("M^t", "M^b (same data)", "M^b (competent)", "M^b (matched acc)")

#: measure -> (description, direction in which a model is *worse*)
MEASURES: dict[str, tuple[str, str]] = {
    "target_acc": ("accuracy on clean target validation images", "lower"),
    "err_source_only": ("error on source-only composites I(c), c in F", "higher"),
    "err_neutral": ("error, same patch on a blurred (object-free) background", "higher"),
    "err_shared": ("error, same patch on an image of a shared class", "higher"),
    "excess_error": ("err_source_only - err_neutral (the part due to the source object)", "higher"),
    "flip_rate": ("right on neutral, wrong on source-only", "higher"),
    "hijack_rate": ("a flip while the other arm is right on the same composite (the paper's Fig. 1)", "higher"),
    "distraction": ("Eq. 4 IoU with M^s's map, source-only composites", "higher"),
    "distraction_null": ("Eq. 4 IoU for shuffled pairs (chance level)", "higher"),
    "distraction_excess": ("distraction - distraction_null", "higher"),
}


def default_arms(audit: Audit) -> dict[str, str]:
    """The arms a world compares by default, label -> arm (``spec.comparison_arms``: the
    accuracy-matched baseline only where target data are free to draw, as in ``shapes``)."""
    return audit.world.spec.comparison


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
    order = [
        int(c)
        for c in torch.argsort(v, descending=True, stable=True).tolist()
        if int(c) not in F and int(c) in with_images
    ]
    return order[:4]


def control_sets(
    audit: Audit, classes: Iterable[int] | None = None, composites_seed: int = 0, neutral: str = "blur"
) -> dict[str, Composites]:
    """The three paired image sets: ``source_only`` (= ``audit.composites``), ``neutral`` and ``shared``:
    the same target patches at the same places, pasted on a ``neutral_backgrounds(kind=neutral)``
    version of each source image and on a (seeded) image of a shared class. Cached by the audit.

    ``shared`` is left out, with a warning, when no class outside F has source images (e.g. the
    ``lite0`` world at 224 px, where none of D^c's 22 classes is in a target image's top-k):
    ``controls`` then reports ``correct_shared`` as NaN and the fair test's ``err_shared`` as NaN."""
    check_choice("neutral", neutral, ("blur", "plain", "noise"))
    comp = audit.composites(classes, composites_seed)
    pool = _shared_pool(audit)
    if not pool:
        warnings.warn(
            "no source class outside F (v(c) > v_lo) has images in the source data: the shared-class "
            "control is not available (err_shared is NaN); add source images of a class the target "
            "data show to measure it",
            RuntimeWarning,
            stacklevel=2,
        )

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
    if isinstance(spec, Recipe):
        return audit.zoo.train(spec, seed)[0].to(audit.device).eval()
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
            raise ValueError(
                f"arms: unknown arm {spec!r}; known: {', '.join(sorted(known))} "
                "(or pass a mapping name -> callable(seed) -> nn.Module)"
            )
    return specs


def _seeds(seeds: Sequence[int]) -> list[int]:
    s = [check_int_range("seeds", int(x), 0) for x in seeds]
    if not s or len(set(s)) != len(s):
        raise ValueError(f"seeds must be a non-empty sequence of distinct non-negative integers; got {list(seeds)}")
    return s


def _fine_tuned(audit: Audit, spec: ArmSpec) -> bool:
    """Whether an arm starts from M^s (it then has lingering memories of its own, Eq. 3): a recipe
    with ``init="source"``, or the name of one; a callable arm (a remedy) is not treated as one."""
    if isinstance(spec, Recipe):
        return spec.init == "source"
    if not isinstance(spec, str) or spec == "M^s":
        return False
    if spec in ("M^b", "M^b (competent)", "M^b (same data)", "M^b (matched acc)"):
        return False
    try:
        return audit.recipe(spec).init == "source"
    except ValueError:  # an arm added as a callable: no recipe
        return False


def controls(
    audit: Audit,
    arms: Sequence[str] | Mapping[str, ArmSpec] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    classes: Iterable[int] | None = None,
    composites_seed: int = 0,
    neutral: str = "blur",
    reference: str | None = None,
) -> pd.DataFrame:
    """One row per (arm, seed, composite): correctness on the three paired sets, the flip, Eq. 4 and
    its per-class null (shuffled pairs within the source class) on the source-only composite.

    Columns: ``arm, seed, composite, source_class, source_name, cluster`` (the source photo: views of
    one photo share it), ``in_L`` (c_s is in the lingering set L of that seed: the arm's own L when
    the arm is fine-tuned from M^s, else the L of ``reference`` at that seed, so a scratch baseline is
    scored on the same composites as the model it is compared with), ``target_label,
    correct_source_only, correct_neutral, correct_shared, flip, distraction, null``;
    ``attrs["target_acc"]`` maps (arm, seed) to validation accuracy. ``reference``: a label of
    ``arms`` (default: the world's ``spec.comparison_reference`` when it is one, else the first
    fine-tuned arm, else M^t)."""
    specs = _arm_specs(audit, arms)
    seed_list = _seeds(seeds)
    ref = _reference(audit, specs, reference)
    sets = control_sets(audit, classes, composites_seed, neutral)
    comp = sets["source_only"]
    cs = audit.composite_classes(comp)
    ms = audit.maps("M^s", comp, cs)
    masks = comp.masks.cpu()
    y = comp.target_label.cpu()
    names = list(audit.world.source_classes)
    clusters = composite_clusters(audit, comp)
    tuned = {arm: _fine_tuned(audit, spec) for arm, spec in specs.items()}
    frames, acc = [], {}
    ref_L = {
        seed: _lingering_of(audit, _resolve(audit, ref, specs[ref], seed), seed) if tuned[ref] else set()
        for seed in seed_list
    }
    for arm, spec in specs.items():
        for seed in seed_list:
            model = _resolve(audit, arm, spec, seed)
            correct = {k: (audit.logits(model, s.images).argmax(1) == y).numpy() for k, s in sets.items()}
            d, null = distraction_with_null(
                audit.maps(model, comp, y), ms, masks, audit.q, audit.n_null, seed, groups=cs
            )
            acc[(arm, seed)] = audit.accuracy(model)
            L = _lingering_of(audit, model, seed) if tuned[arm] and arm != ref else ref_L[seed]
            frames.append(
                pd.DataFrame(
                    {
                        "arm": arm,
                        "seed": seed,
                        "composite": np.arange(len(comp)),
                        "source_class": cs.numpy(),
                        "source_name": [names[int(c)] for c in cs],
                        "cluster": clusters,
                        "in_L": np.isin(cs.numpy(), sorted(L)),
                        "target_label": y.numpy(),
                        "correct_source_only": correct["source_only"],
                        "correct_neutral": correct["neutral"],
                        "correct_shared": correct["shared"] if "shared" in correct else np.full(len(comp), np.nan),
                        "flip": correct["neutral"] & ~correct["source_only"],
                        "distraction": d.double().numpy(),
                        "null": null.double().numpy(),
                    }
                )
            )
    out = pd.concat(frames, ignore_index=True)
    out.attrs["target_acc"] = acc
    out.attrs["reference"] = ref
    out.attrs["fine_tuned"] = tuned
    out.attrs["lingering"] = {seed: sorted(L) for seed, L in ref_L.items()}
    return out


def _reference(audit: Audit, specs: Mapping[str, ArmSpec], reference: str | None) -> str:
    if reference is not None:
        if reference not in specs:
            raise ValueError(f"reference must be one of the arms {list(specs)}; got {reference!r}")
        return reference
    spec = audit.world.spec
    if spec.comparison_reference in specs:
        return spec.comparison_reference
    tuned = [a for a, sp in specs.items() if _fine_tuned(audit, sp)]
    if not tuned:
        raise ValueError(
            f"reference: none of the arms {list(specs)} is fine-tuned from M^s and the world's "
            f"reference {spec.comparison_reference!r} is not among them; pass reference="
        )
    return tuned[0]


def _lingering_of(audit: Audit, model: nn.Module, seed: int) -> set[int]:
    """L (Eq. 3) of a model fine-tuned from M^s (trained with ``seed``)."""
    return set(audit.lingering_classes(seed, model))


def _composite_values(ctl: pd.DataFrame) -> pd.DataFrame:
    """Per-composite values of every composite-level measure (same rows as ``ctl``)."""
    return pd.DataFrame(
        {
            "err_source_only": (~ctl["correct_source_only"]).astype(float),
            "err_neutral": (~ctl["correct_neutral"]).astype(float),
            "err_shared": 1.0 - ctl["correct_shared"].astype(float),  # NaN where no shared control exists
            "excess_error": ctl["correct_neutral"].astype(float) - ctl["correct_source_only"].astype(float),
            "flip_rate": ctl["flip"].astype(float),
            "hijack_rate": ctl["hijack"].astype(float) if "hijack" in ctl else np.nan,
            "distraction": ctl["distraction"].astype(float),
            "distraction_null": ctl["null"].astype(float),
            "distraction_excess": ctl["distraction"].astype(float) - ctl["null"].astype(float),
        },
        index=ctl.index,
    )


# --------------------------------------------------------------------------------------------
# the fair test: Eq. 4 over L, F \ L as the contrast, seeds, Holm, one verdict rule
# --------------------------------------------------------------------------------------------

#: the subsets of composites a measure is reported on: L (c_s lingers in that seed's model, the
#: paper's Fig. 3a), F \ L (source-only but not lingering: the within-model contrast) and all of F
SUBSETS = ("L", "F \\ L", "F")

#: the measures of the family of tests, each in the direction the paper predicts for M^t ("higher":
#: the fine-tuned arm's value is higher than the baseline's, or higher on L than on F \ L)
FAMILY_MEASURES = ("err_source_only", "excess_error", "flip_rate", "hijack_rate", "distraction_excess")
#: the measures of the within-model contrast L vs F \ L
CONTRAST_MEASURES = ("excess_error", "distraction_excess")
#: equivalence margins of the symmetric verdict rule, fixed in code before any run: an effect whose 90%
#: interval lies inside +/- margin is too small to matter. Five points of error, excess error or flip
#: rate; five hundredths of IoU above the null for Eq. 4 (the gaps in the paper's Figure 3a are tenths).
MARGINS = {
    "err_source_only": 0.05,
    "excess_error": 0.05,
    "flip_rate": 0.05,
    "hijack_rate": 0.05,
    "distraction_excess": 0.05,
}


def subset_per_seed(ctl: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, seed, subset of :data:`SUBSETS`): every measure of :data:`MEASURES` (mean
    over that seed's composites in the subset; NaN when the subset is empty), ``n_composites`` and
    ``n_classes``."""
    vals = _composite_values(ctl)
    vals[["arm", "seed", "source_class"]] = ctl[["arm", "seed", "source_class"]]
    acc = ctl.attrs.get("target_acc", {})
    full = pd.MultiIndex.from_frame(ctl[["arm", "seed"]].drop_duplicates())
    frames = []
    for subset, rows in (
        ("L", ctl["in_L"].to_numpy(bool)),
        ("F \\ L", ~ctl["in_L"].to_numpy(bool)),
        ("F", np.ones(len(ctl), dtype=bool)),
    ):
        sub = vals[rows]
        g = sub.groupby(["arm", "seed"], sort=False)
        m = g.mean(numeric_only=True).drop(columns="source_class")
        m["n_composites"] = g.size()
        m["n_classes"] = g["source_class"].nunique()
        m = m.reindex(full)
        m["n_composites"] = m["n_composites"].fillna(0).astype(int)
        m["n_classes"] = m["n_classes"].fillna(0).astype(int)
        m.insert(0, "subset", subset)
        frames.append(m.reset_index())
    out = pd.concat(frames, ignore_index=True)
    out.insert(3, "target_acc", [acc.get((a, s_), float("nan")) for a, s_ in zip(out["arm"], out["seed"])])
    return out


def _seed_interval(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    """Mean of per-seed values and its percentile bootstrap-over-seeds interval."""
    v = values[~np.isnan(values)]
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    return _stats.cluster_bootstrap_ci(v, np.arange(len(v)), n_boot=n_boot, seed=seed)


@dataclass
class FairTest:
    """The fair test of the paper's claim on one world (:func:`fair_test`).

    Attributes:
        controls: one row per (arm, seed, composite) (:func:`controls`).
        per_seed: one row per (arm, seed, subset) (:func:`subset_per_seed`).
        table: one row per (arm, subset, measure): ``mean`` over seeds, ``ci_lo, ci_hi`` (95%
            bootstrap over seeds), ``n_seeds`` and the per-seed ``values``.
        tests: the family of tests of the world, one row each: ``claim, kind`` ("between arms" or
            "within model"), ``reference, baseline, measure, subset, effect, ci_lo, ci_hi`` (95%),
            ``ci90_lo, ci90_hi, se`` (hierarchical bootstrap), ``p_perm`` (one-sided, the paper's
            direction), ``p_against`` (one-sided, the other way), ``p_holm, p_against_holm, margin,
            mde`` (at 80% power), ``gate`` (the failed precondition or ""), ``verdict, n_reference,
            n_baseline``.
        reference: the fine-tuned arm every baseline is tested against.
        baselines: the arms of the between-arm tests.
        excluded: source classes left out (hidden by the overlay, or a sensitivity analysis).
        gates: the preconditions (``gates.Gates``), when the test was gated.
    """

    controls: pd.DataFrame
    per_seed: pd.DataFrame
    table: pd.DataFrame
    tests: pd.DataFrame
    reference: str
    baselines: tuple[str, ...]
    excluded: tuple[int, ...] = ()
    gates: Any = None

    def verdicts(self) -> pd.DataFrame:
        """The tests as the book shows them: claim, verdict (with the failed gate or the minimum
        detectable effect), effect [95% interval], one-sided p and its Holm adjustment."""
        t = self.tests
        return pd.DataFrame(
            {
                "claim": t["claim"],
                "verdict": [_verdict_text(r) for r in t.itertuples()],
                "effect [95% CI]": [
                    f"{e:+.3f} [{lo:+.3f}, {hi:+.3f}]" for e, lo, hi in zip(t["effect"], t["ci_lo"], t["ci_hi"])
                ],
                "margin": t["margin"],
                "p (one-sided)": t["p_perm"].round(4),
                "p (Holm)": t["p_holm"].round(4),
            }
        )

    def _row(self, arm: str, measure: str, subset: str) -> pd.Series:
        r = self.table[(self.table.arm == arm) & (self.table.measure == measure) & (self.table.subset == subset)]
        if r.empty:
            raise ValueError(f"no row for arm {arm!r}, measure {measure!r}, subset {subset!r}")
        return r.iloc[0]

    def value(self, arm: str, measure: str, subset: str = "L") -> float:
        """The mean over seeds of ``measure`` for ``arm`` on ``subset``."""
        return float(self._row(arm, measure, subset)["mean"])

    def interval(self, arm: str, measure: str, subset: str = "L") -> str:
        """``mean [ci_lo, ci_hi]`` of ``measure`` for ``arm`` on ``subset`` (95% bootstrap over seeds),
        as the book prints it."""
        r = self._row(arm, measure, subset)
        return f"{r['mean']:.3f} [{r['ci_lo']:.3f}, {r['ci_hi']:.3f}]"


def with_hijacks(ctl: pd.DataFrame, reference: str, baseline: str) -> pd.DataFrame:
    """``ctl`` with a ``hijack`` column: the arm is wrong on the composite, right with the source object
    blurred away (a flip), and the other arm of the pair (the baseline for the reference, the reference
    for every other arm) is right on the same composite at the same seed: the paper's Figure 1."""
    key = ["seed", "composite"]
    right = ctl.set_index(["arm", *key])["correct_source_only"]
    other = np.where(ctl["arm"] == reference, baseline, reference)
    idx = pd.MultiIndex.from_arrays([other, ctl["seed"], ctl["composite"]])
    out = ctl.copy()
    out["hijack"] = ctl["flip"].to_numpy(bool) & right.reindex(idx).fillna(False).to_numpy(bool)
    out.attrs.update(ctl.attrs)
    return out


def _verdict_text(r: Any) -> str:
    """A verdict with what it needs beside it: the failed gate, or the minimum detectable effect."""
    if r.verdict == "not testable":
        return f"not testable: {r.gate}"
    if r.verdict == "inconclusive":
        return f"inconclusive (detectable: {r.mde:.3f})"
    return str(r.verdict)


def _class_units(
    vals: pd.DataFrame, arm: str, measure: str, seeds: Sequence[int], contrast: bool
) -> list[tuple[np.ndarray, ...]]:
    """Per seed, the class means of ``measure`` for ``arm`` on L (and on F \\ L when ``contrast``)."""
    units = []
    for s_ in seeds:
        g = vals[(vals["arm"] == arm) & (vals["seed"] == s_)].groupby("source_class")
        m = g[measure].mean()
        in_l = g["in_L"].first().astype(bool)
        units.append((m[in_l].to_numpy(float), m[~in_l].to_numpy(float)) if contrast else (m[in_l].to_numpy(float),))
    return units


def _draw_summary(draws: np.ndarray) -> dict[str, float]:
    """95% and 90% percentile intervals and the standard error of bootstrap draws (NaN when empty)."""
    d = draws[~np.isnan(draws)]
    if len(d) < 2:
        return dict.fromkeys(("ci_lo", "ci_hi", "ci90_lo", "ci90_hi", "se"), float("nan"))
    lo, lo90, hi90, hi = np.quantile(d, [0.025, 0.05, 0.95, 0.975])
    return {
        "ci_lo": float(lo),
        "ci_hi": float(hi),
        "ci90_lo": float(lo90),
        "ci90_hi": float(hi90),
        "se": float(d.std(ddof=1)),
    }


def summarize(
    ctl: pd.DataFrame,
    *,
    reference: str | None = None,
    baselines: Sequence[str] | None = None,
    exclude: Iterable[int] = (),
    gates: Any = None,
    alpha: float = 0.05,
    n_boot: int = 4000,
    seed: int = 0,
    n_resamples: int = 10_000,
) -> FairTest:
    """The fair test from the rows of :func:`controls` (cheap: no model runs).

    The family of tests, one world at a time:

    - **between arms**, for every baseline (default: every arm that is not fine-tuned from M^s) and
      every measure of :data:`FAMILY_MEASURES`, on the composites of L (that seed's lingering set of
      the reference): effect = mean over seeds of the mean over L's classes, reference minus baseline;
      its 95% and 90% intervals from a hierarchical bootstrap (seeds, then classes within each seed:
      ``stats.hierarchical_bootstrap``); the exact one-sided permutation p over the seeds, in the
      paper's direction and against it (``stats.permutation_p``);
    - **within the reference model**, for every measure of :data:`CONTRAST_MEASURES`: effect = mean
      over seeds of (mean over L's classes - mean over F \\ L's classes), the same hierarchical
      bootstrap; p from relabelling which classes are in L within each seed, one-sided each way
      (``stats.group_permutation_p``).

    The paper predicts every effect > 0. The p-values of each direction are Holm-adjusted across the
    family (``stats.holm``); each test gets ``stats.verdict`` with its margin (:data:`MARGINS`), its
    failed gate, if any (``gates.Gates.failed``), and, where inconclusive, the minimum detectable effect
    at 80% power at Holm's strictest level ``alpha / m`` (``stats.minimum_detectable_effect``).
    ``gates``: the world's ``gates.Gates`` (its hidden classes are left out of every test);
    ``exclude``: further source classes to leave out (a sensitivity analysis).
    """
    excl = tuple(sorted({int(c) for c in exclude} | set(gates.hidden if gates is not None else ())))
    if excl:
        attrs = dict(ctl.attrs)
        ctl = ctl[~ctl["source_class"].isin(excl)].copy()
        ctl.attrs.update(attrs)
        if ctl.empty:
            raise ValueError(
                f"exclude removes every source class of the controls ({list(excl)}): nothing is left to test"
            )
    arms = list(dict.fromkeys(ctl["arm"]))
    ref = reference or ctl.attrs.get("reference") or arms[0]
    if ref not in arms:
        raise ValueError(f"reference must be one of the arms {arms}; got {ref!r}")
    tuned = ctl.attrs.get("fine_tuned", {})
    base = tuple(baselines) if baselines is not None else tuple(a for a in arms if a != ref and not tuned.get(a, False))
    bad = [b for b in base if b not in arms or b == ref]
    if bad:
        raise ValueError(f"baselines must be arms of the controls other than the reference {ref!r}; got {bad}")
    if base:
        ctl = with_hijacks(ctl, ref, base[0])
    ps = subset_per_seed(ctl)
    seeds = list(dict.fromkeys(ctl["seed"]))

    rows = []
    for arm in arms:
        for subset in SUBSETS:
            sub = ps[(ps.arm == arm) & (ps.subset == subset)].set_index("seed").reindex(seeds)
            for measure in ["target_acc", *MEASURES]:
                if measure not in sub:
                    continue
                v = sub[measure].to_numpy(dtype=float)
                mean, lo, hi = _seed_interval(v, n_boot, seed)
                rows.append(
                    {
                        "arm": arm,
                        "subset": subset,
                        "measure": measure,
                        "mean": mean,
                        "ci_lo": lo,
                        "ci_hi": hi,
                        "n_seeds": int((~np.isnan(v)).sum()),
                        "values": tuple(float(x) for x in v),
                    }
                )
    table = pd.DataFrame(rows)

    rng = np.random.default_rng(seed)
    vals = _composite_values(ctl)
    vals[["arm", "seed", "source_class", "in_L"]] = ctl[["arm", "seed", "source_class", "in_L"]]
    tests = []

    def seed_values(arm: str, subset: str, measure: str) -> np.ndarray:
        return ps[(ps.arm == arm) & (ps.subset == subset)].set_index("seed").reindex(seeds)[measure].to_numpy(float)

    def effect_of(units: list[tuple[np.ndarray, ...]]) -> float:
        per = [u[0].mean() - (u[1].mean() if len(u) > 1 else 0.0) for u in units if all(len(g) for g in u)]
        return float(np.mean(per)) if per else float("nan")

    for b in base:
        for measure in FAMILY_MEASURES:
            ua, ub = _class_units(vals, ref, measure, seeds, False), _class_units(vals, b, measure, seeds, False)
            draws = _stats.hierarchical_bootstrap(ua, n_boot=n_boot, seed=rng) - _stats.hierarchical_bootstrap(
                ub, n_boot=n_boot, seed=rng
            )
            a_v, b_v = seed_values(ref, "L", measure), seed_values(b, "L", measure)
            n_a, n_b = int((~np.isnan(a_v)).sum()), int((~np.isnan(b_v)).sum())
            tests.append(
                {
                    "claim": f"{measure} on L: {ref} > {b}",
                    "kind": "between arms",
                    "reference": ref,
                    "baseline": b,
                    "measure": measure,
                    "subset": "L",
                    "effect": effect_of(ua) - effect_of(ub),
                    **_draw_summary(draws),
                    "p_perm": _stats.permutation_p(a_v, b_v, alternative="greater", seed=rng),
                    "p_against": _stats.permutation_p(a_v, b_v, alternative="less", seed=rng),
                    "p_floor": 1.0 / math.comb(n_a + n_b, n_a) if n_a and n_b else 1.0,
                    "n_reference": n_a,
                    "n_baseline": n_b,
                }
            )
    r_ctl = ctl[ctl["arm"] == ref]
    r_vals = vals[vals["arm"] == ref]
    for measure in CONTRAST_MEASURES:
        units = _class_units(vals, ref, measure, seeds, True)
        draws = _stats.hierarchical_bootstrap(units, n_boot=n_boot, seed=rng)
        n = sum(1 for u in units if all(len(g) for g in u))
        args = (
            r_vals[measure].to_numpy(float),
            r_ctl["source_class"].to_numpy(),
            r_ctl["in_L"].to_numpy(bool),
            r_ctl["seed"].to_numpy(),
        )
        _, p = _stats.group_permutation_p(*args, alternative="greater", n_resamples=n_resamples, seed=rng)
        _, p_against = _stats.group_permutation_p(*args, alternative="less", n_resamples=n_resamples, seed=rng)
        tests.append(
            {
                "claim": f"{measure} of {ref}: L > F \\ L",
                "kind": "within model",
                "reference": ref,
                "baseline": ref,
                "measure": measure,
                "subset": "L vs F \\ L",
                "effect": effect_of(units),
                **_draw_summary(draws),
                "p_perm": p,
                "p_against": p_against,
                "p_floor": 1.0 / (n_resamples + 1),
                "n_reference": n,
                "n_baseline": n,
            }
        )
    t = pd.DataFrame(tests)
    t["p_holm"] = _stats.holm(t["p_perm"].to_numpy(float))
    t["p_against_holm"] = _stats.holm(t["p_against"].to_numpy(float))
    t["margin"] = [MARGINS[m] for m in t["measure"]]
    m = int(t["p_perm"].notna().sum())
    t["mde"] = [
        _stats.minimum_detectable_effect(se, alpha=alpha / max(1, m), p_floor=fl)
        for se, fl in zip(t["se"], t["p_floor"])
    ]
    t["gate"] = [
        "" if gates is None else (gates.failed(r.kind, r.measure, r.reference, r.baseline) or "")
        for r in t.itertuples()
    ]
    t["verdict"] = [
        _stats.verdict(
            r.effect,
            r.ci_lo,
            r.ci_hi,
            r.p_holm,
            paper_direction="higher",
            alpha=alpha,
            margin=r.margin,
            ci90=(r.ci90_lo, r.ci90_hi),
            p_against=r.p_against_holm,
            gate=r.gate or None,
        )
        for r in t.itertuples()
    ]
    return FairTest(
        controls=ctl, per_seed=ps, table=table, tests=t, reference=ref, baselines=base, excluded=excl, gates=gates
    )


def fair_test(
    audit: Audit,
    arms: Sequence[str] | Mapping[str, ArmSpec] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    reference: str | None = None,
    baselines: Sequence[str] | None = None,
    composites_seed: int = 0,
    neutral: str = "blur",
    gated: bool = True,
    alpha: float = 0.05,
    n_boot: int = 4000,
) -> FairTest:
    """The paper's test on one world: :func:`controls` over F for every arm and seed, the survival
    check and the deletion test on the same composites (``checks``), the gates (``gates.evaluate``),
    then :func:`summarize` without the hidden classes, each claim whose gate fails "not testable".
    ``arms`` default: ``spec.comparison_arms`` (labels -> arms); ``reference`` default:
    ``spec.comparison_reference``. ``gated=False`` skips the checks (every gate counts as passed)."""
    specs = _arm_specs(audit, arms)
    ctl = controls(audit, specs, seeds, None, composites_seed, neutral, reference=reference)
    ref = ctl.attrs["reference"]
    tuned = ctl.attrs.get("fine_tuned", {})
    base = (
        tuple(baselines) if baselines is not None else tuple(a for a in specs if a != ref and not tuned.get(a, False))
    )
    g = None
    if gated:
        comp = audit.composites(seed=composites_seed)
        survival = _checks.source_survival(audit, comp)
        faith = _checks.faithfulness(audit, {a: specs[a] for a in (ref, *base)}, _seeds(seeds), comp)
        g = _gates.evaluate(ctl, survival, faith, ref, base)
    return summarize(ctl, reference=ref, baselines=base, gates=g, alpha=alpha, n_boot=n_boot)


def recipe_table(
    audit: Audit,
    arms: Mapping[str, str] | Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    reference: str | None = None,
) -> pd.DataFrame:
    """One row per arm, every difference between arms in the open: its recipe
    (``arms.Recipe.row``: init, training images, augmentation, epochs, optimiser, lr, schedule,
    batch, BatchNorm), the learning-rate search that picked its lr (``arms.Zoo.search``: every
    rate tried, its validation accuracy at seed 0, the pick), the target validation accuracy (mean
    and range over ``seeds``) and its ``role`` in the fair test (the reference, the paper's own M^b, a
    baseline, or context)."""
    specs = _arm_specs(audit, arms)
    ref = _reference(audit, specs, reference)
    seed_list = _seeds(seeds)
    rows = []
    for label, spec in specs.items():
        if not isinstance(spec, (str, Recipe)):
            raise ValueError(f"recipe_table needs arms with recipes; {label!r} is a callable")
        recipe = spec if isinstance(spec, Recipe) else audit.recipe(spec)
        acc = [audit.accuracy(_resolve(audit, label, spec, s)) for s in seed_list]
        searches = audit.zoo.searches()
        if label == ref:
            role = "reference: fine-tuned"
        elif _fine_tuned(audit, spec):
            role = "context: another fine-tuning recipe (not in the tests)"
        elif spec == "M^b (same data)":
            role = "baseline: the reference's recipe from random weights (the paper's own M^b)"
        else:
            role = "baseline"
        row = recipe.row(len(audit.world.target_train))
        row["arm"] = label
        trials = searches[searches["arm"] == recipe.name] if len(searches) else searches
        row.update(
            {
                "lr search (val acc, seed 0)": ", ".join(
                    f"{t.lr:g}: {t.val_acc:.3f}{' (picked)' if t.picked else ''}" for t in trials.itertuples()
                )
                or "none (the recipe's own rate)",
                "target acc (mean)": round(float(np.mean(acc)), 3),
                "target acc (min-max)": f"{min(acc):.3f}-{max(acc):.3f}",
                "seeds": len(acc),
                "role": role,
            }
        )
        row.pop("what it is", None)
        rows.append(row)
    return pd.DataFrame(rows)


_CLAIM_WORDS = {
    "err_source_only": "is wrong more often on L composites than",
    "excess_error": "has a larger excess error (source object vs blurred background) on L composites than",
    "flip_rate": "is flipped by the source object more often on L composites than",
    "hijack_rate": "is hijacked (wrong with the object, right without it, the other arm right) more often than",
    "distraction_excess": "is more distracted (Eq. 4 above its per-class null) on L composites than",
}
_CONTRAST_WORDS = {
    "excess_error": "its excess error is larger on L composites than on F \\ L composites",
    "distraction_excess": "its Eq. 4 distraction above the null is larger on L composites than on F \\ L composites",
}


def _evidence(r: Any) -> str:
    """A test's numbers in one clause: effect, 95% interval, Holm-adjusted p, seeds, and the margin or
    minimum detectable effect its verdict needs."""
    if r.verdict == "not testable":
        return f"failed gate{'s' if ';' in r.gate else ''}: {r.gate}"
    if r.verdict == "not measured":
        return "the set is empty"
    text = (
        f"effect {r.effect:+.3f}, 95% CI [{r.ci_lo:+.3f}, {r.ci_hi:+.3f}], one-sided Holm-adjusted p = "
        f"{r.p_holm:.3g}, {r.n_reference} + {r.n_baseline} seeds"
    )
    if r.verdict == "inconclusive":
        text += f"; smallest effect detectable at 80% power {r.mde:.3f}, margin {r.margin:g}"
    elif r.verdict == "does not hold":
        text += f"; 90% CI [{r.ci90_lo:+.3f}, {r.ci90_hi:+.3f}] against the margin +/-{r.margin:g}"
    return text


def _transfer(ft: FairTest, baseline: str) -> str:
    """The transfer-helps gate's value for ``baseline`` (M^t's clean accuracy against it), or ''."""
    g = ft.gates
    if g is None:
        return ""
    row = g.table[(g.table["gate"] == "transfer helps") & (g.table["subject"] == baseline)]
    return "" if row.empty else f"; {row['value'].iloc[0]}"


def describe(ft: FairTest) -> str:
    """The fair test's findings as Markdown bullets, one per test: the verdict of ``stats.verdict``
    with its failed gate or its numbers (:func:`_evidence`), and for between-arm tests the clean
    accuracy of both arms (text from code: the book glues it instead of typing numbers)."""
    lines = []
    for r in ft.tests.itertuples():
        if r.kind == "between arms":
            what = f"{r.reference} {_CLAIM_WORDS.get(r.measure, r.measure)} {r.baseline}"
        else:
            what = f"within {r.reference}, {_CONTRAST_WORDS.get(r.measure, r.measure)}"
        extra = _transfer(ft, r.baseline) if r.kind == "between arms" else ""
        lines.append(f"- {what}: **{r.verdict}** ({_evidence(r)}{extra})")
    counts = ft.tests["verdict"].value_counts()
    head = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in ("holds", "does not hold", "inconclusive", "not testable"))
    return f"Of {len(ft.tests)} tests: {head}.\n\n" + "\n".join(lines)


def measure_table(ft: FairTest, measures: Sequence[str], subsets: Sequence[str] = SUBSETS) -> pd.DataFrame:
    """``mean [95% interval]`` over seeds of each measure on each subset (rows) for every arm
    (columns), as the book prints it (:meth:`FairTest.interval`); measures absent from the fair test
    are left out."""
    t = ft.table
    arms = list(dict.fromkeys(t["arm"]))
    rows = {
        (subset, m): {a: ft.interval(a, m, subset) for a in arms}
        for subset in subsets
        for m in measures
        if ((t["measure"] == m) & (t["subset"] == subset)).any()
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["subset", "measure"])


def occlusion_text(ft: FairTest) -> str:
    """The paper's Figures 5 and 6 in two sentences, from the fair test: how much the source object
    costs each arm on L composites (the excess error: error with the object minus error with it
    blurred away, the occlusion of Fig. 5), and the reference's error when the background is a
    shared class instead (Fig. 6: features common in the target data should not distract)."""
    ref = ft.reference
    parts = [f"{a} {ft.interval(a, 'excess_error')}" for a in (ref, *ft.baselines)]
    text = "Blurring the source object away changes the error on L composites (excess error) by " + "; ".join(parts)
    shared = ft.table[(ft.table["measure"] == "err_shared") & (ft.table["subset"] == "L") & (ft.table["arm"] == ref)]
    if len(shared) and not np.isnan(float(shared["mean"].iloc[0])):
        text += (
            f". With a shared class behind the same patch, {ref}'s error is {ft.interval(ref, 'err_shared')}, "
            f"against {ft.interval(ref, 'err_source_only')} with the source-only object and "
            f"{ft.interval(ref, 'err_neutral')} on the blurred background"
        )
    else:
        text += ". This world has no image of a shared class to put behind the patch"
    return text + " (means over seeds, 95% bootstrap-over-seeds intervals)."


def findings(ft: FairTest) -> str:
    """The fair test in words (:func:`describe`) followed by its gates (``gates.Gates.describe``)."""
    text = describe(ft)
    return text if ft.gates is None else f"{text}\n\nThe gates:\n\n{ft.gates.describe()}"


def smallest_p(n_reference: int, n_baseline: int, alternative: str = "two-sided") -> float:
    """The smallest exact permutation p that ``n_reference`` against ``n_baseline`` seeds allow
    (``stats.permutation_p`` on two fully separated samples; ``alternative="greater"`` for the fair
    test's one-sided tests): with fewer relabellings than ``1 / alpha``, no test can reach "holds",
    however large the effect."""
    a = np.arange(int(n_reference), dtype=float)
    return float(
        _stats.permutation_p(
            a + int(n_baseline) + 1e6, np.arange(int(n_baseline), dtype=float), alternative=alternative
        )
    )


#: The paper's claims the fair test decides, as rows of the coverage matrix: (kind, measure) ->
#: (row order, claim, where in the paper).
COVERAGE_CLAIMS = {
    ("between arms", "err_source_only"): (6, "M^t is wrong more often than a scratch M^b on composites of L", "Fig. 3"),
    ("between arms", "excess_error"): (
        7,
        "... and the source object causes it (excess error over a blurred copy)",
        "Fig. 3, Fig. 1c",
    ),
    ("between arms", "flip_rate"): (8, "The source object flips M^t's prediction more often than M^b's", "Fig. 1c"),
    ("between arms", "hijack_rate"): (
        3,
        "M^t is hijacked more often than M^b (wrong with the object, right without it, M^b right)",
        "Fig. 1, Fig. 3b",
    ),
    ("between arms", "distraction_excess"): (
        9,
        "M^t is distracted more than M^b (Eq. 4 over L, above its null)",
        "Eq. 4, Fig. 3a",
    ),
    ("within model", "distraction_excess"): (10, "M^t is distracted more on L than on F \\ L", "Eq. 4, Fig. 3a"),
}


def claims(ft: FairTest, world: str, page: str = "04_distraction", anchor: str = "") -> list[dict[str, Any]]:
    """The fair test's verdicts on the paper's claims (:data:`COVERAGE_CLAIMS`) as rows of the
    coverage matrix (``coverage.claim``); between arms against the first baseline (the paper's M^b)."""
    from . import coverage

    rows = []
    for r in ft.tests.itertuples():
        key = (r.kind, r.measure)
        if key not in COVERAGE_CLAIMS or (r.kind == "between arms" and r.baseline != ft.baselines[0]):
            continue
        order, text, paper = COVERAGE_CLAIMS[key]
        extra = _transfer(ft, r.baseline) if r.kind == "between arms" else ""
        rows.append(
            coverage.claim(
                order, text, paper, world, coverage.from_verdict(r.verdict), _evidence(r) + extra, page, anchor
            )
        )
    return rows


def headline(ft: FairTest, world: str, measure: str = "distraction_excess") -> str:
    """The paper's central claim (Fig. 3a, Eq. 4 over L) in one sentence for one world: the reference
    against the first baseline (the paper's M^b) on ``measure``, with both arms' Eq. 4 on L and their
    per-class nulls (means over seeds, 95% bootstrap-over-seeds intervals) and the verdict of
    ``stats.verdict`` with its numbers or its failed gate. Markdown, from code (the intro glues it)."""
    base = ft.baselines[0]
    rows = ft.tests[
        (ft.tests["kind"] == "between arms") & (ft.tests["measure"] == measure) & (ft.tests["baseline"] == base)
    ]
    if rows.empty:
        raise ValueError(
            f"no between-arms test of measure {measure!r} against {base!r}; "
            f"measures tested: {sorted(set(ft.tests['measure']))}"
        )
    r = next(rows.itertuples())
    cell = ft.interval
    said = f"`{world}`: {ft.reference} {_CLAIM_WORDS.get(measure, measure)} {base}"
    if r.verdict in ("not testable", "not measured"):
        return f"{said}: **{r.verdict}** ({_evidence(r)}{_transfer(ft, base)})."
    return (
        f"{said}: **{r.verdict}** (Eq. 4 on L {cell(ft.reference, 'distraction')} against its null "
        f"{cell(ft.reference, 'distraction_null')}; {base} {cell(base, 'distraction')} against "
        f"{cell(base, 'distraction_null')}; {_evidence(r)}{_transfer(ft, base)})."
    )
