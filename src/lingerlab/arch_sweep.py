"""The architecture sweep, App. B, Fig. 8 as numbers: the fair test of each architecture on one task
(:func:`arch_comparison`) and the book's architectures (:func:`figure8_specs`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from . import cache as _cache
from .fair_test import fair_test
from ._validation import check_bool, check_int_range, check_seeds
from .audit import Audit
from .remedies import NotFeasible
from .worlds import load_arch
from .worlds.lite_models import VARIANTS

__all__ = ["ArchComparison", "arch_comparison", "figure8_specs"]

#: What ``arch_comparison`` turns into an ``available=False`` row: things that cannot be had here
#: (missing weights, data or packages; an architecture a world does not offer). Anything else is a bug.
_UNAVAILABLE = (NotFeasible, FileNotFoundError, ImportError)


@dataclass(frozen=True)
class ArchComparison:
    """App. B, Fig. 8 as numbers (:func:`arch_comparison`).

    Attributes:
        table: one row per architecture: ``label, world, arch, available, note``; ``n_F`` (|F|, Eq. 2),
            ``n_F_images``, ``n_L`` (mean |L| over seeds, Eq. 3) with ``n_L_min, n_L_max``;
            ``acc_reference, acc_baseline``; per arm (``reference``, ``baseline``) on L, Eq. 4
            (``distraction_*``), its null (``null_*``) and ``excess_error_*`` with 95% ``_lo``/``_hi``;
            the between-arm tests of ``distraction_excess`` and ``excess_error`` (``effect``, ``lo``,
            ``hi``, ``p_holm``, ``verdict``).
        overlap: per pair of architectures of one world (same source classes and D^c images): the
            Jaccard overlap of L (same seed; mean, min, max), of F, and ``n_L_common``.
        tests: label -> ``fair_test.FairTest``.
        lingering: label -> {seed: sorted L}.
    """

    table: pd.DataFrame
    overlap: pd.DataFrame
    tests: dict[str, Any]
    lingering: dict[str, dict[int, list[int]]]

    def view(self) -> pd.DataFrame:
        """The table as the book shows it: each available architecture's numbers with their 95% intervals
        and each test with its verdict."""

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
    """The ``specs`` of the book's offline Figure 8, by the world whose task they share: EfficientNet-Lite0/1/2
    on ``lite0``'s task, and the ``shapes`` CNN at width 8 and at ``shapes_width``."""
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

    ``specs``: ``(world, arch)`` or ``(world, arch, world options)``, a sequence or a mapping label ->
    spec, each loaded by ``load`` (default ``worlds.load_arch(world, arch, profile, world_seed,
    download=download, **options)``; ``arch`` None: the world's own model). A spec that cannot be had
    here (:data:`_UNAVAILABLE`) gives an ``available=False`` row with the reason. Each fair test has two
    arms: the world's reference and ``baseline``. Labels default to the world's name (``": arch"``
    added when an arch is named); a repeated label is an error.
    """
    seed_list = check_seeds(seeds)
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
        arms = {ref: comp[ref], baseline: comp[baseline]}
        ft = fair_test(audit, arms, seed_list, reference=ref, baselines=[baseline], n_boot=n_boot)
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
            for measure, name in (("distraction", "distraction"), ("distraction_null", "null"), ("excess_error",) * 2):
                r = t.loc[(arm, measure)] if (arm, measure) in t.index else None
                for stat, suffix in (("mean", ""), ("ci_lo", "_lo"), ("ci_hi", "_hi")):
                    row[f"{name}_{tag}{suffix}"] = float(r[stat]) if r is not None else float("nan")
        between = ft.tests[ft.tests.kind == "between arms"].set_index("measure")
        for measure in ("distraction_excess", "excess_error"):
            r = between.loc[measure]
            for key, col in zip(("effect", "effect_lo", "effect_hi", "p_holm"), ("effect", "ci_lo", "ci_hi", "p_holm")):
                row[f"{measure}_{key}"] = float(r[col])
            row[f"{measure}_verdict"] = r.verdict
        rows.append(row)
    overlap = []
    labels = list(lingering)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            if keys[a][:2] != keys[b][:2]:
                continue
            js = [_jaccard(set(lingering[a][s]), set(lingering[b][s])) for s in seed_list]
            empty = np.isnan(js).all()
            stats = [float("nan") if empty else float(f(js)) for f in (np.nanmean, np.nanmin, np.nanmax)]
            common = float(np.mean([len(set(lingering[a][s]) & set(lingering[b][s])) for s in seed_list]))
            overlap.append((a, b, *stats, common, _jaccard(keys[a][2], keys[b][2])))
    return ArchComparison(
        table=pd.DataFrame(rows),
        tests=tests,
        lingering=lingering,
        overlap=pd.DataFrame(
            overlap, columns=["a", "b", "jaccard_L", "jaccard_L_min", "jaccard_L_max", "n_L_common", "jaccard_F"]
        ),
    )
