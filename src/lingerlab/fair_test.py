"""The fair test of the distraction claim (paper, Sec. 4 and Fig. 3a): Eq. 4 and the errors over L,
F \\ L as the contrast, seeds as the unit, Holm across the family and one verdict rule.

Every composite is shown again on paired controls (``controls``); each arm is trained with several
seeds; M^t is tested against each baseline (``arm_roles.recipe_table``) with an exact permutation
test over the seeds and a hierarchical bootstrap (seeds, then classes) for the effect's interval.
:func:`fair_test` runs the controls, the gates (``gates``) and the family of tests (:func:`summarize`),
each with one verdict of ``verdict_rule.verdict``; ``fair_test_text`` says it in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import checks as _checks
from .arm_roles import ArmSpec, arm_specs, distinct_seeds
from .audit import Audit
from .bootstrap import cluster_bootstrap_ci, hierarchical_bootstrap
from .controls import MEASURES, composite_values, controls, with_hijacks
from .gates import Gates, evaluate
from .permutation import group_permutation_p, permutation_p
from .verdict_rule import holm, minimum_detectable_effect, verdict

__all__ = [
    "FairTest",
    "fair_test",
    "summarize",
    "subset_per_seed",
    "baselines_of",
    "family",
    "with_verdicts",
    "SUBSETS",
    "FAMILY_MEASURES",
    "CONTRAST_MEASURES",
    "MARGINS",
]

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
MARGINS = dict.fromkeys(FAMILY_MEASURES, 0.05)


def subset_per_seed(ctl: pd.DataFrame) -> pd.DataFrame:
    """One row per (arm, seed, subset of :data:`SUBSETS`): every measure of ``controls.MEASURES``
    (mean over that seed's composites in the subset; NaN when the subset is empty), ``n_composites``
    and ``n_classes``."""
    vals = composite_values(ctl)
    vals[["arm", "seed", "source_class"]] = ctl[["arm", "seed", "source_class"]]
    acc = ctl.attrs.get("target_acc", {})
    full = pd.MultiIndex.from_frame(ctl[["arm", "seed"]].drop_duplicates())
    in_l = ctl["in_L"].to_numpy(bool)
    frames = []
    for subset, rows in (("L", in_l), ("F \\ L", ~in_l), ("F", np.ones(len(ctl), dtype=bool))):
        g = vals[rows].groupby(["arm", "seed"], sort=False)
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


@dataclass
class FairTest:
    """The fair test of the paper's claim on one world (:func:`fair_test`).

    Attributes:
        controls: one row per (arm, seed, composite) (``controls.controls``).
        table: one row per (arm, subset, measure): ``mean`` over seeds, ``ci_lo, ci_hi`` (95%
            bootstrap over seeds), ``n_seeds`` and the per-seed ``values``.
        tests: the family of tests (:func:`family`), one row each, with ``effect``, its intervals
            (``ci_lo, ci_hi, ci90_lo, ci90_hi, se``), ``p_perm, p_against`` (one-sided each way), their
            Holm adjustments, ``margin, mde, gate, verdict, n_reference, n_baseline`` and, from
            :func:`fair_test`, ``stability, moved_by``.
        reference: the fine-tuned arm every baseline is tested against.
        baselines: the arms of the between-arm tests.
        excluded: source classes left out (hidden by the overlay, or a sensitivity analysis).
        gates: the preconditions (``gates.Gates``), when the test was gated.
    """

    controls: pd.DataFrame
    table: pd.DataFrame
    tests: pd.DataFrame
    reference: str
    baselines: tuple[str, ...]
    excluded: tuple[int, ...] = ()
    gates: Gates | None = None

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
                **({"stability": _stability_text(t)} if "stability" in t else {}),
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


def _stability_text(t: pd.DataFrame) -> list[str]:
    return [s if s == "stable" else f"{s} ({m})" for s, m in zip(t["stability"], t["moved_by"])]


def _verdict_text(r: Any) -> str:
    """A verdict with what it needs beside it: the failed gate, or the minimum detectable effect."""
    if r.verdict == "not testable":
        return f"not testable: {r.gate}"
    if r.verdict == "inconclusive":
        return f"inconclusive (detectable: {r.mde:.3f})"
    return str(r.verdict)


def baselines_of(ctl: pd.DataFrame, reference: str, baselines: Sequence[str] | None = None) -> tuple[str, ...]:
    """The arms ``reference`` is tested against: ``baselines`` (checked against the arms of the
    controls), by default every other arm that is not fine-tuned from M^s (``attrs["fine_tuned"]``)."""
    arms = list(dict.fromkeys(ctl["arm"]))
    tuned = ctl.attrs.get("fine_tuned", {})
    if baselines is None:
        return tuple(a for a in arms if a != reference and not tuned.get(a, False))
    bad = [b for b in baselines if b not in arms or b == reference]
    if bad:
        raise ValueError(f"baselines must be arms of the controls other than the reference {reference!r}; got {bad}")
    return tuple(baselines)


def family(reference: str, baselines: Sequence[str]) -> list[dict[str, str]]:
    """The claims of the family, in order: every measure of :data:`FAMILY_MEASURES` on L against
    every baseline, then every measure of :data:`CONTRAST_MEASURES` on L against F \\ L within the
    reference (``claim, kind, reference, baseline, measure, subset``)."""
    plan = [("between arms", b, m, "L", f"{m} on L: {reference} > {b}") for b in baselines for m in FAMILY_MEASURES]
    plan += [
        ("within model", reference, m, "L vs F \\ L", f"{m} of {reference}: L > F \\ L") for m in CONTRAST_MEASURES
    ]
    return [dict(claim=c, kind=k, reference=reference, baseline=b, measure=m, subset=s) for k, b, m, s, c in plan]


def with_verdicts(tests: pd.DataFrame, gates: Gates | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """``tests`` (:func:`family` rows) with Holm-adjusted p-values each way, the margin (:data:`MARGINS`),
    the minimum detectable effect at Holm's strictest level ``alpha / m``, the failed gate and the verdict."""
    t = tests.copy()
    t["p_holm"] = holm(t["p_perm"].to_numpy(float))
    t["p_against_holm"] = holm(t["p_against"].to_numpy(float))
    t["margin"] = [MARGINS[m] for m in t["measure"]]
    m = int(t["p_perm"].notna().sum())
    t["mde"] = [
        minimum_detectable_effect(se, alpha=alpha / max(1, m), p_floor=fl) for se, fl in zip(t["se"], t["p_floor"])
    ]
    t["gate"] = [
        "" if gates is None else (gates.failed(r.kind, r.measure, r.reference, r.baseline) or "")
        for r in t.itertuples()
    ]
    t["verdict"] = [
        verdict(
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
    return t


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


def _effect(units: list[tuple[np.ndarray, ...]]) -> float:
    """Mean over seeds of the mean over L's classes (minus the mean over F \\ L's, for a contrast)."""
    per = [u[0].mean() - (u[1].mean() if len(u) > 1 else 0.0) for u in units if all(len(g) for g in u)]
    return float(np.mean(per)) if per else float("nan")


def _draw_summary(draws: np.ndarray) -> dict[str, float]:
    """95% and 90% percentile intervals and the standard error of bootstrap draws (NaN when empty)."""
    d = draws[~np.isnan(draws)]
    keys = ("ci_lo", "ci_hi", "ci90_lo", "ci90_hi", "se")
    if len(d) < 2:
        return dict.fromkeys(keys, float("nan"))
    lo, lo90, hi90, hi = np.quantile(d, [0.025, 0.05, 0.95, 0.975])
    return dict(zip(keys, (float(lo), float(hi), float(lo90), float(hi90), float(d.std(ddof=1)))))


def summarize(
    ctl: pd.DataFrame,
    *,
    reference: str | None = None,
    baselines: Sequence[str] | None = None,
    exclude: Iterable[int] = (),
    gates: Gates | None = None,
    alpha: float = 0.05,
    n_boot: int = 4000,
) -> FairTest:
    """The fair test from the rows of ``controls.controls`` (cheap: no model runs).

    **Between arms** (every baseline x :data:`FAMILY_MEASURES`, on L): effect = mean over seeds of the
    mean over L's classes, reference minus baseline; 95% and 90% intervals from
    ``bootstrap.hierarchical_bootstrap``; one-sided ``permutation.permutation_p`` each way over seeds.
    **Within the reference** (:data:`CONTRAST_MEASURES`): L minus F \\ L, the same bootstrap, p from
    ``permutation.group_permutation_p``. The paper predicts every effect > 0 (:func:`with_verdicts`).
    ``gates``' hidden classes and ``exclude`` (a sensitivity analysis) are left out.
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
    base = baselines_of(ctl, ref, baselines)
    if base:
        ctl = with_hijacks(ctl, ref, base[0])
    ps = subset_per_seed(ctl)
    seeds = list(dict.fromkeys(ctl["seed"]))

    def seed_values(arm: str, subset: str) -> pd.DataFrame:
        return ps[(ps.arm == arm) & (ps.subset == subset)].set_index("seed").reindex(seeds)

    rows = []
    for arm in arms:
        for subset in SUBSETS:
            sub = seed_values(arm, subset)
            for measure in (m for m in MEASURES if m in sub):
                v = sub[measure].to_numpy(dtype=float)
                mean, lo, hi = cluster_bootstrap_ci(v, np.arange(len(v)), n_boot=n_boot, seed=0)
                n, values = int((~np.isnan(v)).sum()), tuple(float(x) for x in v)
                rows.append(
                    dict(
                        arm=arm, subset=subset, measure=measure, mean=mean, ci_lo=lo, ci_hi=hi, n_seeds=n, values=values
                    )
                )
    table = pd.DataFrame(rows)

    rng = np.random.default_rng(0)
    n_resamples = 10_000
    vals = composite_values(ctl)
    vals[["arm", "seed", "source_class", "in_L"]] = ctl[["arm", "seed", "source_class", "in_L"]]
    r_ctl = ctl[ctl["arm"] == ref]
    tests = []
    for claim in family(ref, base):
        measure, b = claim["measure"], claim["baseline"]
        if claim["kind"] == "between arms":
            ua, ub = _class_units(vals, ref, measure, seeds, False), _class_units(vals, b, measure, seeds, False)
            draws = hierarchical_bootstrap(ua, n_boot=n_boot, seed=rng) - hierarchical_bootstrap(
                ub, n_boot=n_boot, seed=rng
            )
            a_v, b_v = seed_values(ref, "L")[measure].to_numpy(float), seed_values(b, "L")[measure].to_numpy(float)
            n_a, n_b = int((~np.isnan(a_v)).sum()), int((~np.isnan(b_v)).sum())
            effect = _effect(ua) - _effect(ub)
            p = permutation_p(a_v, b_v, alternative="greater", seed=rng)
            p_against = permutation_p(a_v, b_v, alternative="less", seed=rng)
            p_floor = 1.0 / math.comb(n_a + n_b, n_a) if n_a and n_b else 1.0
        else:
            units = _class_units(vals, ref, measure, seeds, True)
            draws = hierarchical_bootstrap(units, n_boot=n_boot, seed=rng)
            n_a = n_b = sum(1 for u in units if all(len(g) for g in u))
            effect = _effect(units)
            args = (
                vals.loc[r_ctl.index, measure].to_numpy(float),
                r_ctl["source_class"].to_numpy(),
                r_ctl["in_L"].to_numpy(bool),
                r_ctl["seed"].to_numpy(),
            )
            _, p = group_permutation_p(*args, alternative="greater", n_resamples=n_resamples, seed=rng)
            _, p_against = group_permutation_p(*args, alternative="less", n_resamples=n_resamples, seed=rng)
            p_floor = 1.0 / (n_resamples + 1)
        numbers = dict(effect=effect, **_draw_summary(draws), p_perm=p, p_against=p_against, p_floor=p_floor)
        tests.append({**claim, **numbers, "n_reference": n_a, "n_baseline": n_b})
    t = with_verdicts(pd.DataFrame(tests), gates, alpha)
    return FairTest(controls=ctl, table=table, tests=t, reference=ref, baselines=base, excluded=excl, gates=gates)


def fair_test(
    audit: Audit,
    arms: Sequence[str] | Mapping[str, ArmSpec] | None = None,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    *,
    reference: str | None = None,
    baselines: Sequence[str] | None = None,
    alpha: float = 0.05,
    n_boot: int = 4000,
    stability: bool = True,
) -> FairTest:
    """The paper's test on one world: ``controls.controls`` for every arm and seed, the survival check and
    the deletion test (``checks``), the gates (``gates.evaluate``), :func:`summarize` without the hidden
    classes and (``stability``) :func:`with_stability`. ``arms``, ``reference``: the spec's comparison."""
    specs = arm_specs(audit, arms)
    ctl = controls(audit, specs, seeds, reference=reference)
    ref = ctl.attrs["reference"]
    base = baselines_of(ctl, ref, baselines)
    comp = audit.composites(seed=0)
    survival = _checks.source_survival(audit, comp)
    faith = _checks.faithfulness(audit, {a: specs[a] for a in (ref, *base)}, distinct_seeds(seeds), comp)
    g = evaluate(ctl, survival, faith, ref, base)
    ft = summarize(ctl, reference=ref, baselines=base, gates=g, alpha=alpha, n_boot=n_boot)
    return with_stability(ft, alpha=alpha, n_boot=n_boot) if stability else ft


def with_stability(ft: FairTest, *, alpha: float = 0.05, n_boot: int = 4000) -> FairTest:
    """``ft`` with each test's leave-one-class-out stability: :func:`summarize` again with each tested
    source class left out in turn (contrast-size gate recounted, ``gates.Gates.without``), adding the
    columns ``stability`` ("stable" or "fragile") and ``moved_by`` (the classes that change the verdict)."""
    ctl = ft.controls
    names = dict(zip(ctl["source_class"], ctl["source_name"]))
    before = dict(zip(ft.tests["claim"], ft.tests["verdict"]))
    moved: dict[str, list[str]] = {claim: [] for claim in before}
    classes = sorted(set(ctl["source_class"]) - set(ft.excluded))
    for c in classes if len(classes) > 1 else ():
        gates = None if ft.gates is None else ft.gates.without(ctl, ft.reference, [c])
        alt = summarize(
            ctl,
            reference=ft.reference,
            baselines=ft.baselines,
            exclude=(*ft.excluded, c),
            gates=gates,
            alpha=alpha,
            n_boot=n_boot,
        )
        for claim, v in zip(alt.tests["claim"], alt.tests["verdict"]):
            if claim in moved and v != before[claim]:
                moved[claim].append(f"without {names[c]}: {v}")
    t = ft.tests.copy()
    t["stability"] = ["fragile" if moved[c] else "stable" for c in t["claim"]]
    t["moved_by"] = [
        f"{len(moved[c])} of {len(classes)} classes left out move it: " + "; ".join(moved[c]) if moved[c] else ""
        for c in t["claim"]
    ]
    return replace(ft, tests=t)
