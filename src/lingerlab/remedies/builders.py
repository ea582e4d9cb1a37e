"""The remedies of the paper (Sec. 5.1, App. B) and the field's as registered builders, and the ones
the book measures (:func:`default_remedies`).

A remedy that changes how M^t is trained is ``audit.recipe("M^t").replace(...)`` trained by
``audit.zoo.train(recipe, seed, source=...)``: the same training arguments as plain fine-tuning but
for the fields it changes, so plain fine-tuning and its remedies differ only where the table says.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .. import inference as _inference
from .. import training as _training
from .._data import gather, labels_of
from ..composites import make_composites
from .._validation import check_choice, check_int_range, check_probability, check_range
from ..recipe import Recipe
from ..models import find_head, split_model
from ..identities import weights_fingerprint
from .augment import composite_augment
from .established import BSS, L2SP, CoTuning, category_relationship, fit_linear_head, interpolate_weights, with_head
from .images import images_by_class
from .penalties import l1_penultimate, unlearning_loss
from .pruning import channel_sets, channels_to_prune, penultimate_features, prune_channels
from .registry import Arm, NotFeasible, Remedy, build, register

__all__ = ["default_remedies", "retrain_source", "remedy_arms", "choose"]


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------


def _head(audit: Any) -> str:
    """H(M)'s name in the world's models (``spec.head``)."""
    return audit.world.spec.head


def _train(audit: Any, seed: int, source: nn.Module | None = None, **changes: Any) -> tuple[nn.Module, pd.DataFrame]:
    """M^t's recipe with ``changes``, fine-tuning ``source`` (None: the world's M^s)."""
    return audit.zoo.train(audit.recipe("M^t").replace(**changes), seed, source=source)


def _wall(hist: pd.DataFrame | None) -> float:
    return float(hist["wall_s"].iloc[-1]) if hist is not None and len(hist) else 0.0


def _now() -> float:
    return time.perf_counter()


def _join(*parts: str) -> str:
    return "; ".join(x for x in parts if x)


def plain_model(audit: Any, seed: int, memo: dict | None) -> tuple[nn.Module, pd.DataFrame]:
    """Plain M^t for ``seed`` and its history, trained once per ``memo`` (the table's rows share it)."""
    if memo is not None and ("plain", seed) in memo:
        return memo[("plain", seed)]
    out = _train(audit, seed)
    if memo is not None:
        memo[("plain", seed)] = out
    return out


def _held_out_source(audit: Any, classes: Sequence[int], per_class: int = 64) -> tuple[dict[int, Tensor], str]:
    """Images of ``classes`` that the audit does not evaluate on: the world's source *training* images
    (``spec.source_train``) when it has them, else D^c itself (with a note saying so)."""
    data = audit.world.spec.source_train
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


def _a_t(model: nn.Module, audit: Any, params: Mapping[str, Any], head: str) -> float:
    if params["a_t"] is not None:
        return float(params["a_t"])
    x = torch.cat(list(_target_by_class(audit).values()))
    acts = penultimate_features(model, x, head=head)
    return float(torch.quantile(acts.flatten().double(), float(params["a_t_quantile"])))


def _sets(
    model: nn.Module, audit: Any, seed: int, params: Mapping[str, Any], head: str, memo: dict | None
) -> tuple[dict[int, Tensor], dict[int, Tensor], float, str, float] | None:
    """App. B's channel sets of ``model`` (Eq. 6 per source class of ``params["classes"]``, per target
    class), its a_t, the note and the seconds they took; None when there is no class to prune for.
    Computed once per ``memo`` for the same weights and set parameters: the capped variants differ
    only in which of these channels they keep (:func:`cap_channels`)."""
    which = params["classes"]
    key = None  # the weights are fingerprinted only where a memo can use the key
    if memo is not None:
        key = (
            "channel_sets",
            weights_fingerprint(model),
            head,
            which,
            seed if which == "lingering" else None,
            params["a_t"],
            params["a_t_quantile"],
        )
        if key in memo:
            return memo[key]
    cls = audit.source_only().tolist() if which == "source_only" else audit.lingering_classes(seed)
    out = None
    if cls:
        t0 = _now()
        src, note = _held_out_source(audit, cls)
        a_t = _a_t(model, audit, params, head)
        s_sets = channel_sets(model, src, a_t, head=head)
        t_sets = channel_sets(model, _target_by_class(audit), a_t, head=head)
        out = (s_sets, t_sets, a_t, note, _now() - t0)
    if key is not None:
        memo[key] = out  # type: ignore[index]
    return out


def _prune_sets(
    model: nn.Module, audit: Any, seed: int, params: Mapping[str, Any], head: str, memo: dict | None = None
) -> tuple[Tensor, float, str, float]:
    """The channels App. B prunes in ``model`` (Eq. 7, capped at ``max_fraction`` of the layer), a_t,
    the note and the seconds the channel sets took (counted in full in every row that uses them, as
    if the remedy ran alone)."""
    sets = _sets(model, audit, seed, params, head, memo)
    if sets is None:
        return torch.zeros(0, dtype=torch.long), float("nan"), f"no {params['classes']} classes: nothing to prune", 0.0
    s_sets, t_sets, a_t, note, seconds = sets
    chans = channels_to_prune(s_sets, t_sets)
    cap = params["max_fraction"]
    if cap is not None:
        n_max = int(float(cap) * find_head(model, head)[1].in_features)
        if len(chans) > n_max:
            chans = cap_channels(chans, s_sets, n_max)
            note = _join(
                f"capped at max_fraction={float(cap):g}: the {n_max} channels in the most source-only classes' sets",
                note,
            )
    return chans, a_t, note, seconds


def cap_channels(channels: Tensor, source_sets: Mapping[int, Tensor], n_max: int) -> Tensor:
    """The ``n_max`` of ``channels`` that lie in the most source-only classes' sets F^c (ties: lower
    index first), ascending: a bounded App. B pruning that removes the most shared memories first."""
    n_max = check_int_range("n_max", n_max, 0)
    count = {int(c): 0 for c in channels.tolist()}
    for s in source_sets.values():
        for c in torch.as_tensor(s).flatten().tolist():
            if int(c) in count:
                count[int(c)] += 1
    keep = sorted(count, key=lambda c: (-count[c], c))[:n_max]
    return torch.as_tensor(sorted(keep), dtype=torch.long)


# --------------------------------------------------------------------------------------------
# parameter checks (complete params: defaults filled in)
# --------------------------------------------------------------------------------------------

_NOT_CHANGED_BY_FINETUNE = ("name", "init", "description")


def _check_recipe_changes(p: Mapping[str, Any]) -> None:
    fixed = sorted(set(p) & set(_NOT_CHANGED_BY_FINETUNE))
    if fixed:
        raise ValueError(f"a 'finetune' remedy changes how M^t trains, not {fixed}: pass other recipe fields")
    Recipe("check").replace(**p)  # unknown fields and bad values raise here, before any training


def _check_weight(p: Mapping[str, Any]) -> None:
    check_range("weight", p["weight"], 0)


def _check_prune(p: Mapping[str, Any]) -> None:
    if p["max_fraction"] is not None:
        check_range("max_fraction", p["max_fraction"], 0, 1)
    if p["a_t"] is not None:
        check_range("a_t", p["a_t"])
    check_probability("a_t_quantile", p["a_t_quantile"])
    check_choice("classes", p["classes"], ("source_only", "lingering"))


def _check_unlearning(p: Mapping[str, Any]) -> None:
    check_range("weight", p["weight"], 0)
    check_int_range("batch", p["batch"], 1)


def _check_composites(p: Mapping[str, Any]) -> None:
    check_probability("p", p["p"])
    if p["scale"] is not None:
        check_range("scale", p["scale"], 0, 1, lo_open=True)


# --------------------------------------------------------------------------------------------
# the registered remedies
# --------------------------------------------------------------------------------------------


@register("plain", description="the world's fine-tuning recipe M^t (the reference row)", reference="Sec. 3.1")
def _plain(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    m, h = plain_model(audit, seed, memo)
    return Arm(m, _wall(h))


@register(
    "finetune",
    description="M^t's recipe with some fields changed (BatchNorm policy, learning rate...)",
    reference="Sec. 5.1 (not named there); settings of fine-tuning",
    check=_check_recipe_changes,
    open_params="fields of recipe.Recipe to change (bn, lr, epochs, weight_decay, freeze, ...)",
)
def _finetune(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    m, h = _train(audit, seed, **p)
    return Arm(m, _wall(h))


@register(
    "l1",
    description="L1 penalty weight * mean|B(M)(x)| on the penultimate activations",
    reference="App. B",
    check=_check_weight,
    weight=0.05,
)
def _l1(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    with l1_penultimate(float(p["weight"]), head=_head(audit)) as extra:
        m, h = _train(audit, seed, extra_loss=extra)
    return Arm(m, _wall(h))


_PRUNE = dict(check=_check_prune, a_t=None, a_t_quantile=0.5, classes="source_only", max_fraction=None)


@register(
    "prune",
    description="after fine-tuning, zero the channels above a_t on every image of a source-only "
    "class but of no target class (at most max_fraction of the layer: None = no bound)",
    reference="App. B, Eqs. 6-7",
    **_PRUNE,
)
def _prune(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    head = _head(audit)
    mt, h = plain_model(audit, seed, memo)
    chans, a_t, note, t_sets = _prune_sets(mt, audit, seed, p, head, memo)
    t0 = _now()
    pruned = prune_channels(mt, chans, head=head)
    note = _join(f"a_t={a_t:.3g}, {len(chans)} channels pruned after fine-tuning", note)
    return Arm(
        pruned,
        _wall(h) + t_sets + (_now() - t0),
        note=note,
        n_pruned=len(chans),
        n_channels=find_head(mt, head)[1].in_features,
    )


@register(
    "prune_finetune",
    description="the same channel sets computed on M^s and pruned there, then fine-tuned (the mask stays)",
    reference="App. B, Eqs. 6-7",
    **_PRUNE,
)
def _prune_finetune(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    head = _head(audit)
    src = audit.world.source_model
    chans, a_t, note, t_sets = _prune_sets(src, audit, seed, p, head, memo)
    t0 = _now()
    pruned_src = prune_channels(src, chans, head=head)
    t_sets += _now() - t0
    # the head now sits behind the mask: nn.Sequential(ChannelMask, head) at the head's name
    new_head = find_head(pruned_src, find_head(src, head)[0] + ".1")[0]
    m, h = _train(audit, seed, source=pruned_src, head=new_head)
    note = _join(f"a_t={a_t:.3g}, {len(chans)} channels of M^s pruned before fine-tuning", note)
    return Arm(m, _wall(h) + t_sets, note=note, n_pruned=len(chans), n_channels=find_head(src, head)[1].in_features)


@register(
    "retrain_source",
    description="M^s retrained without the source-only classes F (its own recipe), then fine-tuned",
    reference="Sec. 5.1",
)
def _retrain_source(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    F = audit.source_only().tolist()
    src, sh = retrain_source(audit.world, F, device=audit.device, cache=audit.cache, progress=audit.progress)
    src = src.eval()
    m, h = _train(audit, seed, source=src)
    return Arm(
        m,
        _wall(h) + _wall(sh),
        source=src,
        lingering_defined=False,
        note=f"M^s retrained without {len(F)} classes ({_wall(sh):.0f} s); Eq. 3 undefined: the new "
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
    head = _head(audit)
    L = audit.lingering_classes(seed)
    cls = L if L else audit.source_only().tolist()
    imgs, note = _held_out_source(audit, cls)
    if not imgs:
        raise NotFeasible("no images of the lingering classes to unlearn")
    _, s_head = split_model(audit.world.source_model, head)
    with unlearning_loss(
        s_head, list(imgs.values()), float(p["weight"]), int(p["batch"]), seed=seed, head=head
    ) as extra:
        m, h = _train(audit, seed, extra_loss=extra)
    msg = (
        f"unlearned {len(cls)} classes ({'L of plain M^t' if L else 'F: L was empty'}); time includes "
        "the plain fine-tuning that found L"
    )
    return Arm(m, _wall(h) + _wall(plain_model(audit, seed, memo)[1]), note=_join(msg, note))


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
    imgs, note = _held_out_source(audit, F)
    if not imgs:
        raise NotFeasible("no source-only images to paste target images on")
    scale = audit.scale if p["scale"] is None else p["scale"]
    aug = composite_augment(list(imgs.values()), float(p["p"]), float(scale))
    if audit.recipe("M^t").augment is not None:
        note = _join("replaces the world's fine-tuning augmentation", note)
    m, h = _train(audit, seed, augment=aug)
    return Arm(m, _wall(h), note=_join("backgrounds: held-out images of F" if not note else "", note))


# --------------------------------------------------------------------------------------------
# the field's remedies for negative transfer and feature distortion (.established)
# --------------------------------------------------------------------------------------------


def _check_l2_sp(p: Mapping[str, Any]) -> None:
    check_range("alpha", p["alpha"], 0)
    check_range("beta", p["beta"], 0)


def _check_bss(p: Mapping[str, Any]) -> None:
    check_range("eta", p["eta"], 0)
    check_int_range("k", p["k"], 1)


def _check_alpha(p: Mapping[str, Any]) -> None:
    check_range("alpha", p["alpha"], 0, 1)


def _check_probe(p: Mapping[str, Any]) -> None:
    check_range("C", p["C"], 0, None, lo_open=True)


def _check_dfr(p: Mapping[str, Any]) -> None:
    check_range("C", p["C"], 0, None, lo_open=True)
    check_int_range("n_per_kind", p["n_per_kind"], 2)


@register(
    "l2_sp",
    description="L2-SP: alpha/2 ||w - w_source||^2 on the backbone + beta/2 ||w||^2 on the new head",
    reference="Li, Grandvalet & Davoine, ICML 2018",
    check=_check_l2_sp,
    alpha=0.01,
    beta=0.01,
)
def _l2_sp(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    extra = L2SP(audit.world.source_model, float(p["alpha"]), float(p["beta"]), head=_head(audit))
    m, h = _train(audit, seed, extra_loss=extra)
    return Arm(m, _wall(h))


@register(
    "bss",
    description="BSS: eta x the k smallest squared singular values of the batch's penultimate features",
    reference="Chen et al., NeurIPS 2019",
    check=_check_bss,
    eta=0.001,
    k=1,
)
def _bss(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    with BSS(float(p["eta"]), int(p["k"]), head=_head(audit)) as extra:
        m, h = _train(audit, seed, extra_loss=extra)
    return Arm(m, _wall(h))


def _features_of(model: nn.Module, data: Any, head: str) -> tuple[Tensor, Tensor]:
    x, y = gather(data)
    return penultimate_features(model, x, head=head), torch.as_tensor(y).long()


class _Fixed:
    """``make_model`` for ``training.train_scratch`` that returns a copy of one model (LP-FT's probe)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.cpu()
        self.cache_key = ("fixed_model", weights_fingerprint(self.model))

    def __call__(self) -> nn.Module:
        return copy.deepcopy(self.model)


@register(
    "lp_ft",
    description="LP-FT: a logistic-regression head on frozen M^s features of D^t, then the whole "
    "model fine-tuned from it (M^t's recipe)",
    reference="Kumar et al., ICLR 2022",
    check=_check_probe,
    C=1.0,
)
def _lp_ft(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    head, w = _head(audit), audit.world
    t0 = _now()
    z, y = _features_of(w.source_model, audit.target_data(), head)
    probe = with_head(w.source_model, fit_linear_head(z, y, len(w.target_classes), float(p["C"]), seed), head)
    t_probe = _now() - t0
    m, h = _training.train_scratch(
        _Fixed(probe),
        w.target_train,
        w.target_val,
        audit.recipe("M^t"),
        seed=seed,
        device=audit.device,
        cache=audit.cache,
        progress=audit.progress,
    )
    return Arm(m, _wall(h) + t_probe, note="the fine-tuning starts from the probe's head instead of a random one")


@register(
    "wise_ft",
    description="WiSE-FT: backbone weights (1 - alpha) x M^s + alpha x M^t, the head of M^t",
    reference="Wortsman et al., CVPR 2022",
    check=_check_alpha,
    alpha=0.5,
)
def _wise_ft(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    mt, h = plain_model(audit, seed, memo)
    t0 = _now()
    m = interpolate_weights(audit.world.source_model, mt, float(p["alpha"]), head=_head(audit))
    return Arm(m, _wall(h) + (_now() - t0), note="post hoc: time is plain fine-tuning's plus the interpolation")


@register(
    "dfr",
    description="DFR: M^t's head refitted (logistic regression on its frozen features) on held-out "
    "images, half clean target images, half composites",
    reference="Kirichenko, Izmailov & Wilson, ICLR 2023",
    check=_check_dfr,
    C=1.0,
    n_per_kind=200,
)
def _dfr(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    head, w = _head(audit), audit.world
    held = sorted(set(range(len(w.target_train))) - set(audit.target_train_indices()))
    if len(held) < 2:
        raise NotFeasible("every target training image is in D^t: no held-out target images to refit the head on")
    F = audit.source_only().tolist()
    imgs, note = _held_out_source(audit, F)
    if not imgs:
        raise NotFeasible("no source-only images to make held-out composites from")
    mt, h = plain_model(audit, seed, memo)
    t0 = _now()
    g = torch.Generator().manual_seed(seed)
    n = min(int(p["n_per_kind"]), len(held))
    pick = [held[i] for i in torch.randperm(len(held), generator=g)[:n].tolist()]
    xc, yc = gather(w.target_train, pick)
    bg = torch.cat(list(imgs.values()))
    bg = bg[torch.randint(len(bg), (n,), generator=g)]
    order = torch.randperm(n, generator=g)
    comp = make_composites(bg, xc[order], scale=audit.scale, generator=seed, target_labels=torch.as_tensor(yc)[order])
    z = penultimate_features(mt, torch.cat([xc, comp.images]), head=head)
    y = torch.cat([torch.as_tensor(yc).long(), comp.target_label.long()])
    m = with_head(mt, fit_linear_head(z, y, len(w.target_classes), float(p["C"]), seed), head)
    return Arm(
        m, _wall(h) + (_now() - t0), note=_join(f"head refitted on {n} held-out clean images + {n} composites", note)
    )


@register(
    "co_tuning",
    description="Co-Tuning: M^s's head kept (frozen) on the new features and trained towards "
    "p(y_s | y_t), M^s's mean prediction per target class",
    reference="You et al., NeurIPS 2020",
    check=_check_weight,
    weight=2.3,
)
def _co_tuning(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    head, w = _head(audit), audit.world
    t0 = _now()
    x, y = gather(audit.target_data())
    probs = _inference.predict(w.source_model, x, device=audit.device)[0].softmax(1)
    rel = category_relationship(probs, torch.as_tensor(y), len(w.target_classes))
    _, s_head = split_model(w.source_model, head)
    t_rel = _now() - t0
    with CoTuning(s_head, rel, float(p["weight"]), head=head) as extra:
        m, h = _train(audit, seed, extra_loss=extra)
    return Arm(m, _wall(h) + t_rel, note="the source head stays frozen (the paper also fine-tunes it)")


# --------------------------------------------------------------------------------------------
# retraining the source (Sec. 5.1)
# --------------------------------------------------------------------------------------------


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

    For a world that carries M^s's training set (``spec.source_train``) and recipe
    (``spec.source_recipe``: the ``shapes`` world), that recipe is repeated (``training.train_scratch``
    from ``world.make_scratch`` with one output per source class, the world's seed) on the images of the
    other classes; validation on the kept classes of ``world.source_data``. Raises
    :class:`NotFeasible` (with the reason) elsewhere: retraining an ImageNet model is not a smoke job.
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
    y = labels_of(data).long()
    keep = torch.nonzero(~torch.isin(y, torch.as_tensor(exclude, dtype=torch.long))).flatten()
    if len(keep) == 0:
        raise ValueError("exclude removes every source class: keep at least one")
    val = world.source_data
    yv = labels_of(val).long()
    keep_v = torch.nonzero(~torch.isin(yv, torch.as_tensor(exclude, dtype=torch.long))).flatten().tolist()
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


# --------------------------------------------------------------------------------------------
# the book's remedies
# --------------------------------------------------------------------------------------------


def default_remedies(audit: Any) -> list[Remedy]:
    """The remedies measured in the book: plain; the paper's (L1, pruning post hoc, unbounded and
    capped at 5%, 10% and 25% of the layer, and before fine-tuning, unbounded and capped at 10%;
    retraining the source; unlearning); the other BatchNorm policy, a 5x smaller and a 5x larger
    learning rate than the world's; fine-tuning on composites; and the field's: L2-SP, BSS, LP-FT,
    WiSE-FT at alpha 0.25, 0.5 and 0.75, DFR and Co-Tuning."""
    mt = audit.recipe("M^t")
    lr = float(mt.lr)
    other_bn = "freeze" if mt.bn == "update" else "update"
    prune = {"a_t_quantile": 0.5, "classes": "source_only"}
    return [
        Remedy("plain fine-tuning", "plain"),
        Remedy("L1 penultimate", "l1", {"weight": 0.05}),
        Remedy("prune (post-hoc)", "prune", prune),
        *[
            Remedy(f"prune (post-hoc, <= {int(100 * f)}%)", "prune", {**prune, "max_fraction": f})
            for f in (0.05, 0.1, 0.25)
        ],
        Remedy("prune + fine-tune", "prune_finetune", prune),
        Remedy("prune + fine-tune (<= 10%)", "prune_finetune", {**prune, "max_fraction": 0.1}),
        Remedy("retrain source without F", "retrain_source"),
        Remedy("unlearning", "unlearning", {"weight": 1.0, "batch": 32}),
        Remedy(f"bn={other_bn}", "finetune", {"bn": other_bn}),
        Remedy("lr x0.2", "finetune", {"lr": lr * 0.2}),
        Remedy("lr x5", "finetune", {"lr": lr * 5}),
        Remedy("fine-tune on composites", "composites", {"p": 0.5, "scale": audit.scale}),
        Remedy("L2-SP", "l2_sp", {"alpha": 0.01, "beta": 0.01}),
        Remedy("BSS", "bss", {"eta": 0.001, "k": 1}),
        Remedy("LP-FT", "lp_ft", {"C": 1.0}),
        *[Remedy(f"WiSE-FT alpha={a:g}", "wise_ft", {"alpha": a}) for a in (0.25, 0.5, 0.75)],
        Remedy("DFR (last layer)", "dfr", {"C": 1.0, "n_per_kind": 200}),
        Remedy("Co-Tuning", "co_tuning", {"weight": 2.3}),
    ]


def choose(audit: Any, remedies: Sequence[Remedy | str] | None) -> list[Remedy]:
    """``remedies`` as :class:`Remedy` objects: names resolve among :func:`default_remedies` (None: all)."""
    defaults = {r.name: r for r in default_remedies(audit)}
    if remedies is None:
        return list(defaults.values())
    if isinstance(remedies, (str, Remedy)):
        raise TypeError("remedies must be a sequence of Remedy objects or names, not a single one: wrap it in a list")
    chosen = []
    for r in remedies:
        if isinstance(r, Remedy):
            chosen.append(r)
        elif isinstance(r, str) and r in defaults:
            chosen.append(defaults[r])
        else:
            raise ValueError(
                f"remedies must hold Remedy objects or names of default_remedies: "
                f"{', '.join(map(repr, defaults))}; got {r!r}"
            )
    if not chosen:
        raise ValueError("remedies is empty: pass at least one remedy (or None for all)")
    return chosen


def remedy_arms(audit: Any, remedies: Sequence[Remedy | str] | None = None) -> dict[str, Callable[[int], nn.Module]]:
    """``{name: seed -> model}`` for ``comparison.fair_test(audit, arms=...)``: the remedied models as
    arms, so the paired controls (excess error, flip rate) and the seed-level tests apply to them too.
    An infeasible remedy raises :class:`NotFeasible` when its arm is built."""
    chosen = choose(audit, remedies)
    return {r.name: (lambda seed, r=r: build(audit, r, seed).model) for r in chosen}
