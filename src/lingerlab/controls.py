"""Paired controls: every source-only composite shown again with the same target patch at the same place.

The paper's claim (Sec. 4, Fig. 3a) is that on composites I(c) of lingering classes the fine-tuned M^t
is distracted (Eq. 4) and wrong more often than M^b trained from scratch. The controls put the same
patch on (a) a heavy Gaussian blur of the same source image (``composites.neutral_backgrounds``),
which keeps its colours and layout but not the object, and (b) an image of a *shared* source class,
which the paper predicts should not distract. They separate "M^t is weak on a small pasted target"
from "the source object pulls M^t away"; :func:`controls` measures every arm and seed (:data:`MEASURES`).
"""

from __future__ import annotations

import warnings
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import cache as _cache
from ._data import gather
from .arm_roles import ArmSpec, arm_model, arm_specs, distinct_seeds, is_fine_tuned, reference_arm
from .audit import Audit
from .checks import composite_clusters
from .composites import Composites, neutral_backgrounds, paste
from .distraction import distraction_with_null
from .models import as_generator

__all__ = ["MEASURES", "control_sets", "controls", "composite_values", "with_hijacks"]

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


def _shared_pool(audit: Audit) -> list[int]:
    """Source classes of the 'shared' control: planted_shared, else the (up to 4) highest-v classes
    outside F that have images in the source data (empty: the control is not available)."""
    planted = audit.world.planted_shared
    if planted:
        return sorted(int(c) for c in planted)
    v = audit.counts()
    F = set(audit.source_only().tolist())
    with_images = set(audit.source_labels().unique().tolist())
    order = torch.argsort(v, descending=True, stable=True).tolist()
    return [c for c in order if c not in F and c in with_images][:4]


def control_sets(audit: Audit, classes: Iterable[int] | None = None, composites_seed: int = 0) -> dict[str, Composites]:
    """The three paired image sets: ``source_only`` (= ``audit.composites``), ``neutral`` and ``shared``:
    the same target patches at the same places, pasted on a blurred version of each source image and
    on a (seeded) image of a shared class. Cached by the audit. ``shared`` is left out, with a warning,
    when no class outside F has source images (``correct_shared`` and ``err_shared`` are then NaN)."""
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
        sets = {"source_only": comp, "neutral": paste(neutral_backgrounds(src), comp)}
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

    key = (_cache.fingerprint(comp.images, comp.masks), pool, "blur", composites_seed, audit.n_composites_per_class)
    return audit.stages.get("control_sets", key, compute)


def controls(
    audit: Audit,
    arms: Sequence[str] | Mapping[str, ArmSpec] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    classes: Iterable[int] | None = None,
    reference: str | None = None,
) -> pd.DataFrame:
    """One row per (arm, seed, composite): correctness on the three paired sets, the flip, Eq. 4 and
    its per-class null on the source-only composite.

    Columns: ``arm, seed, composite, source_class, source_name, cluster`` (the source photo), ``in_L``
    (c_s is in that seed's L: the arm's own when it is fine-tuned from M^s, else ``reference``'s),
    ``target_label, correct_source_only, correct_neutral, correct_shared, flip, distraction, null``;
    ``attrs["target_acc"]`` maps (arm, seed) to validation accuracy. ``reference`` default:
    ``arm_roles.reference_arm``."""
    specs = arm_specs(audit, arms)
    seed_list = distinct_seeds(seeds)
    ref = reference_arm(audit, specs, reference)
    sets = control_sets(audit, classes)
    comp = sets["source_only"]
    cs = audit.composite_classes(comp)
    ms = audit.maps("M^s", comp, cs)
    masks = comp.masks.cpu()
    y = comp.target_label.cpu()
    names = list(audit.world.source_classes)
    clusters = composite_clusters(audit, comp)
    tuned = {arm: is_fine_tuned(audit, spec) for arm, spec in specs.items()}
    frames, acc = [], {}
    ref_L = {
        seed: set(audit.lingering_classes(seed, arm_model(audit, ref, specs[ref], seed))) if tuned[ref] else set()
        for seed in seed_list
    }
    for arm, spec in specs.items():
        for seed in seed_list:
            model = arm_model(audit, arm, spec, seed)
            correct = {k: (audit.logits(model, s.images).argmax(1) == y).numpy() for k, s in sets.items()}
            maps = audit.maps(model, comp, y)
            d, null = distraction_with_null(maps, ms, masks, audit.q, audit.n_null, seed, groups=cs)
            acc[(arm, seed)] = audit.accuracy(model)
            L = set(audit.lingering_classes(seed, model)) if tuned[arm] and arm != ref else ref_L[seed]
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


def composite_values(ctl: pd.DataFrame) -> pd.DataFrame:
    """Per-composite values of every composite-level measure of :data:`MEASURES` (same rows as ``ctl``)."""
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


def with_hijacks(ctl: pd.DataFrame, reference: str, baseline: str) -> pd.DataFrame:
    """``ctl`` with a ``hijack`` column: a flip while the other arm of the pair (the baseline for the
    reference, else the reference) is right on the same composite at the same seed (the paper's Fig. 1)."""
    key = ["seed", "composite"]
    right = ctl.set_index(["arm", *key])["correct_source_only"]
    other = np.where(ctl["arm"] == reference, baseline, reference)
    idx = pd.MultiIndex.from_arrays([other, ctl["seed"], ctl["composite"]])
    out = ctl.copy()
    out["hijack"] = ctl["flip"].to_numpy(bool) & right.reindex(idx).fillna(False).to_numpy(bool)
    out.attrs.update(ctl.attrs)
    return out
