"""The protocol's tests and verdicts for the user's models (Holm across the tests, one rule)."""

from __future__ import annotations

import math
import warnings
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .run import AuditRun


def _auroc_interval(neg: Any, pos: Any, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC (negatives and positives resampled separately;
    the Mann-Whitney form with mid-ranks, as ``detection.auroc``)."""
    import numpy as np
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    out = np.empty(n_boot)
    for i in range(n_boot):
        n, p = neg[rng.integers(0, len(neg), len(neg))], pos[rng.integers(0, len(pos), len(pos))]
        r = rankdata(np.concatenate([n, p]))[len(n) :]
        out[i] = (r.sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(n))
    a = (1 - level) / 2
    lo, hi = np.quantile(out, [a, 1 - a])
    return float(lo), float(hi)


def _distraction_stats(dt: Any) -> tuple[Any, Any]:
    """Per (model, class) and per model: distraction (Eq. 4) with a cluster-bootstrap 95% interval over
    composites (seeds of M^b averaged per composite first), the shuffled-pair null, the excess over
    it with its paired interval, and the error rate on the composites."""
    import numpy as np
    import pandas as pd

    from ..stats import cluster_bootstrap_ci, paired_cluster_bootstrap_ci

    per = dt.groupby(
        ["model", "composite", "source_class", "source_name", "lingering"], as_index=False, sort=False
    ).agg(distraction=("distraction", "mean"), null=("null", "mean"), correct=("correct", "mean"))

    def stats_of(sub: Any) -> dict[str, Any]:
        d, nu = sub["distraction"].to_numpy(float), sub["null"].to_numpy(float)
        clusters = sub["composite"].to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            m, lo, hi = cluster_bootstrap_ci(d, clusters, n_boot=2000, seed=0)
            e, elo, ehi = paired_cluster_bootstrap_ci(d, nu, clusters, n_boot=2000, seed=0)
            null = float(np.nanmean(nu)) if np.isfinite(nu).any() else float("nan")
        return {
            "n": len(sub),
            "distraction": m,
            "ci_lo": lo,
            "ci_hi": hi,
            "null": null,
            "excess": e,
            "excess_lo": elo,
            "excess_hi": ehi,
            "error": float(1 - sub["correct"].mean()),
        }

    rows = [
        {"model": m, "source_class": int(c), "source_name": n, "lingering": bool(ling), **stats_of(sub)}
        for (m, c, n, ling), sub in per.groupby(["model", "source_class", "source_name", "lingering"], sort=False)
    ]
    overall = pd.DataFrame([{"model": m, **stats_of(sub)} for m, sub in per.groupby("model", sort=False)])
    return pd.DataFrame(rows), overall


CLAIMS = ("err_source_only", "excess_error", "flip_rate", "distraction", "distraction_excess")


def _verdicts(run: AuditRun) -> tuple[Any, dict[str, str]]:
    """The verdict table: every test, Holm-adjusted over the family, each verdict by ``stats.verdict``."""
    import numpy as np
    import pandas as pd
    from scipy import stats as sps

    from ..comparison import MEASURES
    from ..distraction import paired_test
    from ..stats import holm, verdict

    rows: list[dict[str, Any]] = []

    def add(
        claim: str,
        test: str,
        effect: float,
        lo: float,
        hi: float,
        p: float,
        n: Any,
        note: str = "",
        in_family: bool = True,
    ) -> None:
        rows.append(
            {
                "claim": claim,
                "test": test,
                "effect": effect,
                "ci_lo": lo,
                "ci_hi": hi,
                "p": p,
                "n": n,
                "in_family": in_family,
                "note": note,
            }
        )

    # Eq. 3: does M^t's backbone keep more of the source classes of F than a scratch backbone?
    lt = run.tables.get("lingering")
    tested = lt[lt["n_images"] > 0] if lt is not None and len(lt) else None
    n_L = len(run.L) if hasattr(run, "L") else 0
    if tested is not None and len(tested) and tested["p_scratch_st"].notna().all() and run.has_baseline:
        r = paired_test(_arr(tested["p_st"]), _arr(tested["p_scratch_st"]), n_perm=5000, generator=0)
        add(
            "M^t's backbone keeps source-only classes (Eq. 3): mean p_c under M^st above the scratch backbone's",
            "paired sign-flip over the classes of F with images: p_st - p_c under B(M^b) + H(M^s)",
            r["mean_diff"],
            r["ci_lo"],
            r["ci_hi"],
            r["p_value"],
            int(r["n"]),
            f"|L| = {n_L} of {len(tested)} tested classes above p_lo",
        )
    else:
        add(
            "M^t keeps lingering memories (Eq. 3: mean p_c under M^st > p_lo)",
            "count against the threshold (no scratch-backbone control to test against)",
            float(n_L),
            float("nan"),
            float("nan"),
            float("nan"),
            0 if tested is None else len(tested),
            f"|L| = {n_L} of {0 if tested is None else len(tested)} tested classes",
            in_family=False,
        )

    # Eq. 4 within M^t: distraction above its shuffled-pair null
    dt = run.tables.get("distraction")
    if dt is not None:
        t = dt[dt["model"] == "M^t"]
        d, nu = _arr(t["distraction"]), _arr(t["null"])
        ok = np.isfinite(d) & np.isfinite(nu)
        if ok.sum() >= 1:
            r = paired_test(d[ok], nu[ok], n_perm=5000, generator=0)
            add(
                "M^t is distracted beyond chance (Eq. 4): IoU with M^s's map above the shuffled-pair null",
                "paired sign-flip over composites of F: distraction - null",
                r["mean_diff"],
                r["ci_lo"],
                r["ci_hi"],
                r["p_value"],
                int(r["n"]),
            )
        else:
            add(
                "M^t is distracted beyond chance (Eq. 4)",
                "not measured: no composite with a defined IoU and null",
                float("nan"),
                float("nan"),
                float("nan"),
                float("nan"),
                0,
            )
    # Eq. 5: the flag separates composites from clean target images
    if getattr(run, "scores", None) is not None and "detection" in run.results:
        neg, pos = run.scores["eq5"]
        auc = run.results["detection"]["eq5_auroc"]
        if n_L == 0 or np.ptp(np.concatenate([neg, pos])) == 0:
            add(
                "The Eq. 5 flag detects composites among clean target images (AUROC above 0.5)",
                "not measured: the score is constant (L is empty)",
                float("nan"),
                float("nan"),
                float("nan"),
                float("nan"),
                len(neg) + len(pos),
            )
        else:
            p = float(sps.mannwhitneyu(pos, neg, alternative="greater").pvalue)
            lo, hi = run.eq5_ci
            add(
                "The Eq. 5 flag detects composites among clean target images (AUROC above 0.5)",
                "Mann-Whitney U (one-sided); interval: bootstrap of AUROC",
                auc - 0.5,
                lo - 0.5,
                hi - 0.5,
                p,
                len(neg) + len(pos),
                f"AUROC {auc:.3f}",
            )

    # the comparison protocol
    cmp = getattr(run, "cmp", None)
    if run.baseline == "scratch":
        protocol = {
            "kind": "n seeds of M^b against one given M^t",
            "text": (
                f"M^t is one given model; M^b was trained {len(run.seeds)} times (seeds "
                f"{run.seeds}) by the printed recipe. Model-level test: a one-sample t-test of the "
                f"{len(run.seeds)} M^b values against M^t's value; interval: M^t's value minus the "
                "t-interval of the M^b mean. This generalises over M^b's training runs, not over M^t's "
                "(there is one M^t). p_perm in comparison.csv treats M^t's repeated 'seeds' as "
                "exchangeable and is not used."
            ),
        }
    elif run.baseline == "given":
        protocol = {
            "kind": "two single given models: per-composite paired tests",
            "text": (
                "M^t and M^b are single given models: each comparison is a paired sign-flip "
                "permutation test over composites with a bootstrap interval over composites. It "
                "generalises over composites for these two models, not over training runs."
            ),
        }
    else:
        protocol = {
            "kind": "no baseline: within-model tests only",
            "text": (
                "--baseline none: no comparison with a scratch model. The verdicts test M^t against "
                "chance only (distraction against its shuffled-pair null, Eq. 5's AUROC against 0.5)."
            ),
        }
    protocol["family"] = "Holm's correction over every test with a p-value in this table (alpha 0.05)."
    if cmp is not None:
        vals = _per_composite(run.ctl)
        for measure in ("target_acc",) + CLAIMS:
            desc = MEASURES[measure][0]
            ref = cmp[(cmp["arm"] == "M^t") & (cmp["measure"] == measure)].iloc[0]
            base = cmp[(cmp["arm"] == "M^b") & (cmp["measure"] == measure)].iloc[0]
            claim = (
                f"M^t worse than M^b: {measure} ({desc})"
                if measure != "target_acc"
                else f"context: target_acc ({desc})"
            )
            if run.baseline == "scratch":
                mt = float(np.nanmean(ref["values"]))
                b = np.asarray(base["values"], float)
                b = b[np.isfinite(b)]
                if len(b) >= 2 and np.isfinite(mt):
                    sd = float(b.std(ddof=1))
                    half = float(sps.t.ppf(0.975, len(b) - 1) * sd / math.sqrt(len(b)))
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        p = float(sps.ttest_1samp(b, mt).pvalue) if sd > 0 else float("nan")
                    eff = mt - float(b.mean())
                    add(
                        claim,
                        f"one-sample t over {len(b)} M^b seeds vs M^t",
                        eff,
                        eff - half,
                        eff + half,
                        p,
                        len(b),
                        f"M^t {mt:.3f}, M^b {b.mean():.3f} (seeds {', '.join(f'{x:.3f}' for x in b)})"
                        + (
                            ""
                            if math.isnan(float(base["p_composite"]))
                            else f"; p_composite {float(base['p_composite']):.3g} (paired over composites)"
                        ),
                        in_family=measure != "target_acc",
                    )
                else:
                    add(
                        claim,
                        "not measured: fewer than 2 M^b seeds with a value",
                        mt - float(np.mean(b)) if len(b) else float("nan"),
                        float("nan"),
                        float("nan"),
                        float("nan"),
                        len(b),
                        in_family=measure != "target_acc",
                    )
            else:
                if measure == "target_acc":
                    add(
                        claim,
                        "one validation accuracy per model (no test)",
                        float(ref["mean"] - base["mean"]),
                        float("nan"),
                        float("nan"),
                        float("nan"),
                        1,
                        f"M^t {float(ref['mean']):.3f}, M^b {float(base['mean']):.3f}",
                        in_family=False,
                    )
                    continue
                a_, b_ = _arr(vals.loc["M^t", measure]), _arr(vals.loc["M^b", measure])
                ok = np.isfinite(a_) & np.isfinite(b_)
                if ok.sum() == 0:
                    add(claim, "not measured", float("nan"), float("nan"), float("nan"), float("nan"), 0)
                    continue
                r = paired_test(a_[ok], b_[ok], n_perm=5000, generator=0)
                add(
                    claim,
                    "paired sign-flip over composites (M^t - M^b)",
                    r["mean_diff"],
                    r["ci_lo"],
                    r["ci_hi"],
                    r["p_value"],
                    int(r["n"]),
                    f"M^t {np.mean(a_[ok]):.3f}, M^b {np.mean(b_[ok]):.3f}",
                )
    table = pd.DataFrame(rows)
    fam = table["in_family"] & table["p"].notna()
    table["p_holm"] = np.nan
    if fam.any():
        table.loc[fam, "p_holm"] = holm(table.loc[fam, "p"].to_numpy(float))
    verdicts = []
    for r in table.itertuples():
        if not r.in_family:
            verdicts.append("descriptive" if not r.claim.startswith("context") else "context")
            continue
        lo = r.ci_lo if np.isfinite(r.ci_lo) else float("nan")
        hi = r.ci_hi if np.isfinite(r.ci_hi) else float("nan")
        if np.isfinite(lo) and np.isfinite(hi) and lo > hi:
            lo, hi = hi, lo
        verdicts.append(verdict(r.effect, lo, hi, r.p_holm, paper_direction="higher"))
    table["verdict"] = verdicts
    cols = ["claim", "verdict", "effect", "ci_lo", "ci_hi", "p", "p_holm", "n", "test", "note", "in_family"]
    return table[cols], protocol


def _arr(x: Any) -> Any:
    """A writable float64 copy (torch warns on read-only NumPy views of pandas columns)."""
    import numpy as np

    return np.array(x, dtype=np.float64, copy=True)


def _per_composite(ctl: Any) -> Any:
    """Per (arm, composite) values of the comparison's claim measures, averaged over seeds."""
    import pandas as pd

    v = pd.DataFrame(
        {
            "arm": ctl["arm"],
            "composite": ctl["composite"],
            "err_source_only": (~ctl["correct_source_only"]).astype(float),
            "excess_error": ctl["correct_neutral"].astype(float) - ctl["correct_source_only"].astype(float),
            "flip_rate": ctl["flip"].astype(float),
            "distraction": ctl["distraction"].astype(float),
            "distraction_excess": ctl["distraction"].astype(float) - ctl["null"].astype(float),
        }
    )
    return v.groupby(["arm", "composite"]).mean()
