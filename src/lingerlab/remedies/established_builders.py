"""The field's remedies for negative transfer and feature distortion (:mod:`.established`) as
registered builders: ``l2_sp``, ``bss``, ``lp_ft``, ``wise_ft``, ``dfr`` and ``co_tuning``."""

from __future__ import annotations

import copy
import time
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .. import inference as _inference
from .. import training as _training
from .._data import gather
from .._validation import check_int_range, check_range
from ..composites import make_composites
from ..identities import weights_fingerprint
from ..models import split_model
from .registry import Arm, NotFeasible, register
from .registry import check_weight, held_out_source, join_notes, plain_model, train_mt, wall_s
from .established import BSS, L2SP, CoTuning, category_relationship, fit_linear_head, interpolate_weights, with_head
from .pruning import penultimate_features

__all__: list[str] = []  # the builders are reached through the registry


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
    _check_probe(p)
    check_int_range("n_per_kind", p["n_per_kind"], 2)


def _refit_head(model: nn.Module, x: Tensor, y: Tensor, audit: Any, p: Mapping[str, Any], seed: int) -> nn.Module:
    """``model`` with a logistic-regression head (``C``) fitted on its frozen features of ``x``, ``y``."""
    head = audit.world.spec.head
    z = penultimate_features(model, x, head=head)
    return with_head(model, fit_linear_head(z, y, len(audit.world.target_classes), float(p["C"]), seed), head)


class _Fixed:
    """``make_model`` for ``training.train_scratch`` that returns a copy of one model (LP-FT's probe)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model.cpu()
        self.cache_key = ("fixed_model", weights_fingerprint(self.model))

    def __call__(self) -> nn.Module:
        return copy.deepcopy(self.model)


@register(
    "l2_sp",
    description="L2-SP: alpha/2 ||w - w_source||^2 on the backbone + beta/2 ||w||^2 on the new head",
    reference="Li, Grandvalet & Davoine, ICML 2018",
    check=_check_l2_sp,
    alpha=0.01,
    beta=0.01,
)
def _l2_sp(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    extra = L2SP(audit.world.source_model, float(p["alpha"]), float(p["beta"]), head=audit.world.spec.head)
    m, h = train_mt(audit, seed, extra_loss=extra)
    return Arm(m, wall_s(h))


@register(
    "bss",
    description="BSS: eta x the k smallest squared singular values of the batch's penultimate features",
    reference="Chen et al., NeurIPS 2019",
    check=_check_bss,
    eta=0.001,
    k=1,
)
def _bss(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    with BSS(float(p["eta"]), int(p["k"]), head=audit.world.spec.head) as extra:
        m, h = train_mt(audit, seed, extra_loss=extra)
    return Arm(m, wall_s(h))


@register(
    "lp_ft",
    description="LP-FT: a logistic-regression head on frozen M^s features of D^t, then the whole "
    "model fine-tuned from it (M^t's recipe)",
    reference="Kumar et al., ICLR 2022",
    check=_check_probe,
    C=1.0,
)
def _lp_ft(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    w = audit.world
    t0 = time.perf_counter()
    x, y = gather(audit.target_data())
    probe = _refit_head(w.source_model, x, torch.as_tensor(y).long(), audit, p, seed)
    t_probe = time.perf_counter() - t0
    kw = dict(seed=seed, device=audit.device, cache=audit.cache, progress=audit.progress)
    m, h = _training.train_scratch(_Fixed(probe), w.target_train, w.target_val, audit.recipe("M^t"), **kw)
    return Arm(m, wall_s(h) + t_probe, note="the fine-tuning starts from the probe's head instead of a random one")


@register(
    "wise_ft",
    description="WiSE-FT: backbone weights (1 - alpha) x M^s + alpha x M^t, the head of M^t",
    reference="Wortsman et al., CVPR 2022",
    check=_check_alpha,
    alpha=0.5,
)
def _wise_ft(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    mt, h = plain_model(audit, seed, memo)
    t0 = time.perf_counter()
    m = interpolate_weights(audit.world.source_model, mt, float(p["alpha"]), head=audit.world.spec.head)
    note = "post hoc: time is plain fine-tuning's plus the interpolation"
    return Arm(m, wall_s(h) + (time.perf_counter() - t0), note=note)


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
    w = audit.world
    held = sorted(set(range(len(w.target_train))) - set(audit.target_train_indices()))
    if len(held) < 2:
        raise NotFeasible("every target training image is in D^t: no held-out target images to refit the head on")
    F = audit.source_only().tolist()
    imgs, note = held_out_source(audit, F, missing="no source-only images to make held-out composites from")
    mt, h = plain_model(audit, seed, memo)
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    n = min(int(p["n_per_kind"]), len(held))
    pick = [held[i] for i in torch.randperm(len(held), generator=g)[:n].tolist()]
    xc, yc = gather(w.target_train, pick)
    bg = torch.cat(list(imgs.values()))
    bg = bg[torch.randint(len(bg), (n,), generator=g)]
    order = torch.randperm(n, generator=g)
    comp = make_composites(bg, xc[order], scale=audit.scale, generator=seed, target_labels=torch.as_tensor(yc)[order])
    y = torch.cat([torch.as_tensor(yc).long(), comp.target_label.long()])
    m = _refit_head(mt, torch.cat([xc, comp.images]), y, audit, p, seed)
    note = join_notes(f"head refitted on {n} held-out clean images + {n} composites", note)
    return Arm(m, wall_s(h) + (time.perf_counter() - t0), note=note)


@register(
    "co_tuning",
    description="Co-Tuning: M^s's head kept (frozen) on the new features and trained towards "
    "p(y_s | y_t), M^s's mean prediction per target class",
    reference="You et al., NeurIPS 2020",
    check=check_weight,
    weight=2.3,
)
def _co_tuning(audit: Any, p: dict[str, Any], seed: int, memo: dict | None) -> Arm:
    head, w = audit.world.spec.head, audit.world
    t0 = time.perf_counter()
    x, y = gather(audit.target_data())
    probs = _inference.predict(w.source_model, x, device=audit.device)[0].softmax(1)
    rel = category_relationship(probs, torch.as_tensor(y), len(w.target_classes))
    _, s_head = split_model(w.source_model, head)
    t_rel = time.perf_counter() - t0
    with CoTuning(s_head, rel, float(p["weight"]), head=head) as extra:
        m, h = train_mt(audit, seed, extra_loss=extra)
    return Arm(m, wall_s(h) + t_rel, note="the source head stays frozen (the paper also fine-tunes it)")
