"""One audit of the user's models: :class:`AuditRun` runs the stages and keeps their tables and
numbers; :class:`StageBar` shows the stages."""

from __future__ import annotations

import sys
import warnings
from typing import Any, Callable, Sequence

from . import verdicts as _verdicts
from .args import Checked
from .parser import PROG


class StageBar:
    """One tqdm bar over the audit's stages (on stderr); training bars appear under it."""

    def __init__(self, names: Sequence[str], enabled: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=len(names), desc="audit", file=sys.stderr, disable=not enabled, unit="stage", dynamic_ncols=True
        )
        self.current = ""

    def start(self, name: str) -> None:
        self.current = name
        self.bar.set_description(name)
        self.bar.refresh()

    def done(self) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.set_description("audit done")
        self.bar.close()


#: the numbers of distraction (Eq. 4) kept per model and per class
_DISTRACTION_STATS = ("n", "distraction", "ci_lo", "ci_hi", "null", "excess", "excess_lo", "excess_hi", "error")
#: the numbers of the interference flag (Eq. 5) at p_lo kept in results.json
_DETECTION_NUMBERS = [
    "flag_rate_clean",
    "flag_rate_composites",
    "error_flagged",
    "error_unflagged",
    "errors_caught",
    "error_composites",
    "error_clean",
    "n_clean",
    "n_composites",
    "n_lingering",
]


def _auroc_interval(neg: Any, pos: Any) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the AUROC (1000 draws; mid-rank Mann-Whitney, as ``detection.auroc``)."""
    import numpy as np
    from scipy.stats import rankdata

    rng = np.random.default_rng(0)
    neg, pos = np.asarray(neg, float), np.asarray(pos, float)
    out = np.empty(1000)
    for i in range(1000):
        n, p = neg[rng.integers(0, len(neg), len(neg))], pos[rng.integers(0, len(pos), len(pos))]
        r = rankdata(np.concatenate([n, p]))[len(n) :]
        out[i] = (r.sum() - len(p) * (len(p) + 1) / 2) / (len(p) * len(n))
    a = (1 - 0.95) / 2
    lo, hi = np.quantile(out, [a, 1 - a])
    return float(lo), float(hi)


def _distraction_stats(dt: Any) -> tuple[Any, Any]:
    """Per (model, class) and per model: distraction (Eq. 4) with its cluster-bootstrap 95% interval over
    composites (M^b's seeds averaged per composite), the shuffled-pair null, the excess over it and the error rate."""
    import numpy as np
    import pandas as pd

    from ..bootstrap import cluster_bootstrap_ci, paired_cluster_bootstrap_ci

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


class AuditRun:
    """Runs the stages on a loaded world and keeps every table, number and figure for the report."""

    def __init__(
        self, checked: Checked, world: Any, models_info: dict[str, dict[str, Any]], warnings_seen: list[str]
    ) -> None:
        import torch

        from ..audit import Audit

        a = checked.args
        self.world, self.models_info, self.warnings = world, models_info, warnings_seen
        self.baseline = checked.baseline if isinstance(checked.baseline, str) else "given"
        self.seeds = (
            list(range(a.baseline_seeds or (5 if a.profile == "full" else 3))) if self.baseline == "scratch" else [0]
        )
        params = {k: getattr(a, k) for k in ("k", "v_lo", "p_lo", "scale") if getattr(a, k) is not None}
        self.audit = Audit(world, device=a.device, cache=not a.no_cache, progress=not a.quiet, **params)
        self.tables: dict[str, Any] = {}
        self.results: dict[str, Any] = {}
        self.notes: dict[str, list[str]] = {}
        self.torch = torch
        self.has_baseline = self.baseline != "none"

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)

    # ---------------------------------------------------------------- stages
    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        """The stages in order, by name (the report is written after them)."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("counts (Eq. 1)", self.counts),
            ("source-only (Eq. 2)", self.source_only),
        ]
        if self.baseline == "scratch":
            steps.append((f"training M^b ({len(self.seeds)} seeds)", self.train_baseline))
        steps += [
            ("lingering (Eq. 3)", self.lingering),
            ("composites", self.composites),
            ("distraction (Eq. 4)", self.distraction),
            ("detection (Eq. 5)", self.detection),
        ]
        return steps + [("fair test over L (gates, verdicts)", self.verdicts)]

    def stage_names(self) -> list[str]:
        return [name for name, _ in self.steps()] + ["report"]

    def run(self, bar: StageBar) -> None:
        for name, fn in self.steps():
            bar.start(name)
            fn()
            bar.done()

    def counts(self) -> None:
        import pandas as pd

        a = self.audit
        v = a.counts()
        self.n_images = n_img = self.torch.bincount(a.source_labels(), minlength=len(self.world.source_classes))
        self.tables["counts"] = pd.DataFrame(
            {"class": range(len(v)), "name": self.world.source_classes, "v": v.tolist(), "n_images": n_img.tolist()}
        )
        self.results["parameters_resolved"] = {
            k: getattr(a.config, k) for k in ("k", "v_lo", "p_lo", "scale", "q", "n_null")
        }

    def source_only(self) -> None:
        self.F = F = [int(c) for c in self.audit.source_only().tolist()]
        self.F_images = [c for c in F if int(self.n_images[c]) > 0]
        t = self.tables["counts"]
        t["in_F"] = t["class"].isin(set(F))
        self.tables["source_only"] = t[t["in_F"]].reset_index(drop=True)
        self.results["source_only"] = {
            "k": self.audit.config.k,
            "v_lo": self.audit.config.v_lo,
            "n_F": len(F),
            "n_F_with_images": len(self.F_images),
            "n_source_classes": len(t),
            "classes": F,
        }
        if not F:
            self.note(
                "source-only",
                f"F is empty: every source class is in the top-{self.audit.config.k} of more than "
                f"v_lo = {self.audit.config.v_lo:g} training images. Raise --v-lo to audit the rarest classes.",
            )
        elif not self.F_images:
            self.note(
                "source-only",
                f"none of the {len(F)} classes of F has images in --source-dir: add folders of "
                "source-only classes (the table lists them) to test them for lingering memories.",
            )

    def train_baseline(self) -> None:
        table = self.audit.zoo.table(["M^b"])
        self.tables["baseline_recipe"] = table
        row = table.iloc[0].to_dict()
        line = ", ".join(
            f"{k}={row[k]}" for k in ("init", "training images", "epochs", "optimiser", "lr", "batch", "augmentation")
        )
        print(f"{PROG} audit: M^b recipe ({len(self.seeds)} seeds): {line}", flush=True)
        acc = []
        for s in self.seeds:
            self.audit.model("M^b", s)
            acc.append(self.audit.accuracy("M^b", s))
        self.results["baseline_val_acc"] = acc

    def lingering(self) -> None:
        import numpy as np

        from ..lingering import class_mean_probs
        from ..models import source_target_model

        a = self.audit
        table = a.lingering(0)
        table["p_scratch_st"] = np.nan
        if self.has_baseline and len(table):
            try:
                ms = a.source_model()
                probs = []
                for mb in [a.model("M^b", s) for s in self.seeds]:
                    try:
                        mbs = source_target_model(mb, ms, head=self.world.spec.head)
                    except ValueError:
                        mbs = source_target_model(mb, ms)
                    probs.append(class_mean_probs(mbs, self.world.source_data)[0].cpu().double())
                mean = self.torch.stack(probs).mean(0)
                table["p_scratch_st"] = [float(mean[int(c)]) for c in table["class"]]
            except ValueError as e:
                self.note("lingering", f"the scratch-backbone control is not available: {e}")
        self.L = a.lingering_classes(0)
        self.tables["lingering"] = table
        self.results["lingering"] = {
            "p_lo": a.config.p_lo,
            "n_L": len(self.L),
            "classes": self.L,
            "names": [self.world.source_classes[c] for c in self.L],
            "n_tested": int(table["n_images"].gt(0).sum()) if len(table) else 0,
        }

    def composites(self) -> None:
        import pandas as pd

        if not self.F_images:
            self.comp = None
            self.note(
                "composites",
                "no composites: " + ("F is empty." if not self.F else "no class of F has images in --source-dir."),
            )
            return
        a = self.audit
        self.comp = comp = a.composites(self.F_images)
        cs = a.composite_classes(comp)
        paths = getattr(self.world.source_data, "paths", None)
        self.tables["composites"] = pd.DataFrame(
            {
                "composite": range(len(comp)),
                "source_class": cs.tolist(),
                "source_name": [self.world.source_classes[int(c)] for c in cs],
                "source_image": [str(paths[int(i)]) if paths is not None else int(i) for i in comp.source_index],
                "target_image": [
                    str(self.world.target_val.paths[int(i)]) if hasattr(self.world.target_val, "paths") else int(i)
                    for i in comp.target_index
                ],
                "target_label": [self.world.target_classes[int(y)] for y in comp.target_label],
                **{f"box_{k}": comp.boxes[:, j].tolist() for j, k in enumerate(("top", "left", "height", "width"))},
            }
        )
        self.results["composites"] = {
            "n": len(comp),
            "classes": self.F_images,
            "scale": a.config.scale,
            "per_class": a.config.n_composites_per_class,
        }

    def distraction(self) -> None:
        import pandas as pd

        if self.comp is None:
            self.note("distraction", "not measured: there are no composites.")
            return
        a = self.audit
        frames = [a.distraction_table(0, ("M^t",), self.F_images)]
        if self.has_baseline:
            frames += [a.distraction_table(s, ("M^b",), self.F_images) for s in self.seeds]
        self.tables["distraction"] = dt = pd.concat(frames, ignore_index=True)
        self.tables["distraction_by_class"], overall = _distraction_stats(dt)
        self.results["distraction"] = {
            r["model"]: {k: r[k] for k in _DISTRACTION_STATS} for r in overall.to_dict("records")
        }
        self.overall = overall
        if len(self.comp) < 2:
            self.note("distraction", "a single composite has no other to pair with: the null is not available.")

    def detection(self) -> None:
        import pandas as pd

        if self.comp is None:
            self.note("detection", "not measured: there are no composites.")
            return
        a = self.audit
        det = a.detection(0, self.F_images)
        self.tables["detection"] = table = det["table"]
        for name, why in det["skipped"].items():
            self.note("detection", f"{name} not measured: {why}")
        self.scores = {k: (n.double().numpy(), p.double().numpy()) for k, (n, p) in det["scores"].items()}
        neg, pos = self.scores["eq5"]
        eq5 = float(table.loc[table["score"] == "eq5", "auroc"].iloc[0])
        self.tables["detection_scores"] = pd.DataFrame(
            [
                {"split": split, "label": label, "score": k, "value": float(v)}
                for split, label, j in (("clean target val", "negative", 0), ("composites", "positive", 1))
                for k, pair in self.scores.items()
                for v in pair[j]
            ]
        )
        self.results["detection"] = {
            "auroc": {r["score"]: r["auroc"] for r in table.to_dict("records")},
            "fpr_at_95tpr": {r["score"]: r["fpr_at_95tpr"] for r in table.to_dict("records")},
            "eq5_auroc_ci": list(_auroc_interval(neg, pos)),
            "eq5_auroc": eq5,
            **{k: det[k] for k in _DETECTION_NUMBERS},
        }
        if not self.L:
            self.note(
                "detection",
                "L is empty: the Eq. 5 score is 0 for every image, so its AUROC is 0.5 by "
                "construction (nothing lingers to interfere).",
            )

    def verdicts(self) -> None:
        """The book's fair test over L (``fair_test.fair_test``): gates, tests, verdicts and findings."""
        from ..fair_test_text import findings

        if not self.has_baseline:
            self.note(
                "verdicts",
                "--baseline none: no M^b, so no test between arms is run; only M^t's within-model tests "
                "(L against F \\ L) are.",
            )
        self.ft = ft = _verdicts.fair_test(self)
        if ft.tests["verdict"].eq("not testable").all() and not len(ft.table):
            self.note("verdicts", "the fair test could not run: every test is not testable (the gates say why).")
        self.tables["gates"] = ft.gates.table
        self.tables["verdicts"] = ft.tests.assign(verdict_text=ft.verdicts()["verdict"].to_numpy())
        if len(ft.table):
            table = ft.table.copy()
            table["values"] = [";".join(f"{v:.6g}" for v in vals) for vals in table["values"]]
            self.tables["fair_test"] = table
        for name, frame in (("survival", ft.gates.survival), ("faithfulness", ft.gates.faith)):
            if len(frame):
                self.tables[name] = frame
        self.findings = findings(ft)
        self.protocol = _verdicts.protocol(self, ft)
        self.results["gates"] = ft.gates.table.to_dict("records")
        self.results["verdicts"] = _verdicts.records(ft)
        self.results["verdict_counts"] = _verdicts.counts(ft)
        self.results["protocol"] = self.protocol
        self.results["findings"] = self.findings
