"""The paper's remedies (Sec. 5.1, App. B), plain fine-tuning and its settings, as registered builders, and
:func:`retrain_source` (Sec. 5.1), where the world carries what it takes."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .. import training as _training
from .._data import labels_of
from .._validation import check_choice, check_int_range, check_probability, check_range
from ..models import find_head, split_model
from ..recipe import Recipe
from .registry import Arm, NotFeasible, register
from .registry import check_weight, held_out_source, join_notes, plain_model, train_mt, wall_s
from .images import CompositeAugment
from .penalties import L1Penultimate, UnlearningLoss
from .pruning import pruned

__all__ = ["retrain_source"]  # the builders are reached through the registry

_NOT_CHANGED_BY_FINETUNE = ("name", "init", "description")


def _check_recipe_changes(p: Mapping[str, Any]) -> None:
    fixed = sorted(set(p) & set(_NOT_CHANGED_BY_FINETUNE))
    if fixed:
        raise ValueError(f"a 'finetune' remedy changes how M^t trains, not {fixed}: pass other recipe fields")
    Recipe("check").replace(**p)  # unknown fields and bad values raise here, before any training


def _check_prune(p: Mapping[str, Any]) -> None:
    if p["max_fraction"] is not None:
        check_range("max_fraction", p["max_fraction"], 0, 1)
    if p["a_t"] is not None:
        check_range("a_t", p["a_t"])
    check_probability("a_t_quantile", p["a_t_quantile"])
    check_choice("classes", p["classes"], ("source_only", "lingering"))


def _check_unlearning(p: Mapping[str, Any]) -> None:
    check_weight(p)
    check_int_range("batch", p["batch"], 1)


def _check_composites(p: Mapping[str, Any]) -> None:
    check_probability("p", p["p"])
    if p["scale"] is not None:
        check_range("scale", p["scale"], 0, 1, lo_open=True)


def _kept(data: Any, exclude: list[int]) -> Tensor:
    """Indices of the items of ``data`` whose label is not in ``exclude``."""
    y = labels_of(data).long()
    return torch.nonzero(~torch.isin(y, torch.as_tensor(exclude, dtype=torch.long))).flatten()


def retrain_source(
    world: Any,
    exclude: Iterable[int],
    *,
    seed: int | None = None,
    device: Any = None,
    cache: bool = True,
    progress: bool = False,
) -> tuple[nn.Module, pd.DataFrame]:
    """Sec. 5.1 "Retraining the source model": M^s trained again without the classes ``exclude``.

    Repeats the world's ``spec.source_recipe`` on ``spec.source_train`` less those classes (validated on the
    kept classes of ``world.source_data``); :class:`NotFeasible` for a world that lacks either.
    """
    if isinstance(exclude, Tensor):
        exclude = exclude.flatten().tolist()
    exclude = sorted({check_int_range("exclude", c, 0) for c in exclude})
    seed = world.seed if seed is None else check_int_range("seed", seed, 0)
    spec = world.spec
    if spec.source_train is None or spec.source_recipe is None:
        raise NotFeasible(
            f"world {world.name!r} does not carry its source training set and recipe: retraining "
            f"its source model (e.g. on ImageNet) is not feasible here"
        )
    data = spec.source_train
    keep = _kept(data, exclude)
    if len(keep) == 0:
        raise ValueError("exclude removes every source class: keep at least one")
    val = world.source_data
    keep_v = _kept(val, exclude).tolist()
    val_sel = TensorDataset(*(t[keep_v] for t in val.tensors)) if isinstance(val, TensorDataset) else None
    recipe = spec.source_recipe.replace(train_subset=keep.tolist())
    return _training.train_scratch(
        world.make_scratch,
        data,
        val_sel,
        recipe,
        num_classes=len(world.source_classes),
        seed=seed,
        device=device,
        cache=cache,
        progress=progress,
    )


@register("plain", description="the world's fine-tuning recipe M^t (the reference row)", reference="Sec. 3.1")
def _plain(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    m, h = plain_model(audit, seed, memo)
    return Arm(m, wall_s(h))


@register(
    "finetune",
    description="M^t's recipe with some fields changed (BatchNorm policy, learning rate...)",
    reference="Sec. 5.1 (not named there); settings of fine-tuning",
    check=_check_recipe_changes,
    open_params="fields of recipe.Recipe to change (bn, lr, epochs, weight_decay, freeze, ...)",
)
def _finetune(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    m, h = train_mt(audit, seed, **p)
    return Arm(m, wall_s(h))


@register(
    "l1",
    description="L1 penalty weight * mean|B(M)(x)| on the penultimate activations",
    reference="App. B",
    check=check_weight,
    weight=0.05,
)
def _l1(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    with L1Penultimate(float(p["weight"]), head=audit.world.spec.head) as extra:
        m, h = train_mt(audit, seed, extra_loss=extra)
    return Arm(m, wall_s(h))


_PRUNE = dict(check=_check_prune, a_t=None, a_t_quantile=0.5, classes="source_only", max_fraction=None)


@register(
    "prune",
    description="after fine-tuning, zero the channels above a_t on every image of a source-only "
    "class but of no target class (at most max_fraction of the layer: None = no bound)",
    reference="App. B, Eqs. 6-7",
    **_PRUNE,
)
def _prune(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    mt, h = plain_model(audit, seed, memo)
    arm = pruned(mt, audit, seed, p, memo, "channels pruned after fine-tuning")
    arm.train_s += wall_s(h)
    return arm


@register(
    "prune_finetune",
    description="the same channel sets computed on M^s and pruned there, then fine-tuned (the mask stays)",
    reference="App. B, Eqs. 6-7",
    **_PRUNE,
)
def _prune_finetune(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    src = audit.world.source_model
    arm = pruned(src, audit, seed, p, memo, "channels of M^s pruned before fine-tuning")
    # the head now sits behind the mask: nn.Sequential(ChannelMask, head) at the head's name
    new_head = find_head(arm.model, find_head(src, audit.world.spec.head)[0] + ".1")[0]
    arm.model, h = train_mt(audit, seed, source=arm.model, head=new_head)
    arm.train_s += wall_s(h)
    return arm


@register(
    "retrain_source",
    description="M^s retrained without the source-only classes F (its own recipe), then fine-tuned",
    reference="Sec. 5.1",
)
def _retrain_source(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    F = audit.source_only().tolist()
    src, sh = retrain_source(audit.world, F, device=audit.device, cache=audit.cache, progress=audit.progress)
    src = src.eval()
    m, h = train_mt(audit, seed, source=src)
    return Arm(
        m,
        wall_s(h) + wall_s(sh),
        source=src,
        lingering_defined=False,
        note=f"M^s retrained without {len(F)} classes ({wall_s(sh):.0f} s); Eq. 3 undefined: the new "
        "head never learned those classes",
    )


@register(
    "unlearning",
    description="while fine-tuning, push M^st's prediction on images of the lingering classes towards uniform",
    reference="App. B",
    check=_check_unlearning,
    weight=1.0,
    batch=32,
)
def _unlearning(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    head = audit.world.spec.head
    L = audit.lingering_classes(seed)
    cls = L if L else audit.source_only().tolist()
    imgs, note = held_out_source(audit, cls, missing="no images of the lingering classes to unlearn")
    _, s_head = split_model(audit.world.source_model, head)
    extra = UnlearningLoss(s_head, list(imgs.values()), float(p["weight"]), int(p["batch"]), seed=seed, head=head)
    with extra:
        m, h = train_mt(audit, seed, extra_loss=extra)
    msg = (
        f"unlearned {len(cls)} classes ({'L of plain M^t' if L else 'F: L was empty'}); time includes "
        "the plain fine-tuning that found L"
    )
    return Arm(m, wall_s(h) + wall_s(plain_model(audit, seed, memo)[1]), note=join_notes(msg, note))


@register(
    "composites",
    description="fine-tune on composites: the target image pasted on held-out images of F (scale None: the audit's)",
    reference="data augmentation on the kind of input that hijacks M^t (notebook 5)",
    check=_check_composites,
    p=0.5,
    scale=None,
)
def _composites(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    F = audit.source_only().tolist()
    imgs, note = held_out_source(audit, F, missing="no source-only images to paste target images on")
    scale = audit.scale if p["scale"] is None else p["scale"]
    aug = CompositeAugment(list(imgs.values()), float(p["p"]), float(scale))
    if audit.recipe("M^t").augment is not None:
        note = join_notes("replaces the world's fine-tuning augmentation", note)
    m, h = train_mt(audit, seed, augment=aug)
    return Arm(m, wall_s(h), note=join_notes("backgrounds: held-out images of F" if not note else "", note))
