"""The field's remedies for negative transfer and feature distortion, as small tested primitives, written
from the papers (thuml's Transfer-Learning-Library is not on PyPI) and checked against their definitions:

- training penalties (``extra_loss`` of :func:`lingerlab.training.finetune`): :class:`L2SP` (Li,
  Grandvalet & Davoine, ICML 2018), :class:`BSS` (Chen et al., NeurIPS 2019), :class:`CoTuning` (You et
  al., NeurIPS 2020; the source head stays frozen here);
- heads and weights: :func:`fit_linear_head`, the linear probe of LP-FT (Kumar et al., ICLR 2022) and the
  last layer of DFR (Kirichenko, Izmailov & Wilson, ICLR 2023); :func:`interpolate_weights`, WiSE-FT
  (Wortsman et al., CVPR 2022).
"""

from __future__ import annotations

import copy
import numpy as np
import torch
from torch import Tensor, nn

from .._validation import check_int_range, check_range
from ..models import find_head, replace_head
from ..identities import weights_fingerprint
from .penalties import HeadFeatures

__all__ = [
    "L2SP",
    "BSS",
    "bss_penalty",
    "CoTuning",
    "category_relationship",
    "fit_linear_head",
    "with_head",
    "interpolate_weights",
]


class L2SP:
    """L2-SP (Li et al. 2018): ``alpha/2 * sum_backbone ||w - w^0||^2 + beta/2 * sum_head ||w||^2``, w^0 the
    weights of ``source`` matched by name (Li et al. use alpha = beta = 0.01)."""

    def __init__(self, source: nn.Module, alpha: float = 0.01, beta: float = 0.01, head: str | None = None) -> None:
        self.alpha = float(check_range("alpha", alpha, 0))
        self.beta = float(check_range("beta", beta, 0))
        name, _ = find_head(source, head)
        self.head = name
        self.ref = {k: v.detach().clone() for k, v in source.named_parameters() if not _under(k, name)}
        self.cache_key = ("l2_sp", self.alpha, self.beta, name, weights_fingerprint(source))

    def __call__(self, model: nn.Module, x: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        sp = l2 = next(model.parameters()).new_zeros(())
        for k, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if _under(k, self.head):
                l2 = l2 + p.pow(2).sum()
            elif k in self.ref:
                r = self.ref[k]
                if r.device != p.device:
                    r = self.ref[k] = r.to(p.device)
                sp = sp + (p - r).pow(2).sum()
        return 0.5 * self.alpha * sp + 0.5 * self.beta * l2


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def bss_penalty(features: Tensor, k: int = 1) -> Tensor:
    """BSS (Chen et al. 2019): the sum of the ``k`` smallest squared singular values of ``features``
    ([batch, D]; ``k`` at most min(batch, D))."""
    k = check_int_range("k", k, 1)
    f = features.flatten(1).float()
    sv = torch.linalg.svdvals(f)  # descending
    return sv[-min(k, len(sv)) :].pow(2).sum()


class BSS(HeadFeatures):
    """``eta * bss_penalty(B(M)(x), k)`` on each batch (Chen et al. 2019 use eta = 0.001, k = 1)."""

    def __init__(self, eta: float = 0.001, k: int = 1, head: str | None = None) -> None:
        super().__init__(head)
        self.eta = float(check_range("eta", eta, 0))
        self.k = check_int_range("k", k, 1)
        self.cache_key = ("bss", self.eta, self.k, head)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.eta == 0:
            return x.new_zeros(())
        return self.eta * bss_penalty(self.features(model, x), self.k)


def category_relationship(source_probs: Tensor, target_labels: Tensor, num_target: int) -> Tensor:
    """Co-Tuning's ``p(y_s | y_t)`` by its direct approach: the mean of the source model's softmax over
    the target images of each class ([num_target, num_source]; each row sums to 1)."""
    y = torch.as_tensor(target_labels).long()
    if len(y) != len(source_probs):
        raise ValueError(f"target_labels has {len(y)} labels for {len(source_probs)} rows of source_probs")
    rows = []
    for c in range(num_target):
        sel = source_probs[y == c]
        if not len(sel):
            raise ValueError(f"target class {c} has no image: p(y_s | y_t = {c}) is undefined")
        rows.append(sel.double().mean(0))
    return torch.stack(rows).float()


class CoTuning(HeadFeatures):
    """Co-Tuning (You et al. 2020): ``weight * CE(H(M^s)(B(M)(x)), p(y_s | y))``, a soft target from
    :func:`category_relationship` on the frozen ``source_head`` (weight 2.3: the library's default)."""

    def __init__(
        self, source_head: nn.Linear, relationship: Tensor, weight: float = 2.3, head: str | None = None
    ) -> None:
        super().__init__(head)
        self.weight = float(check_range("weight", weight, 0))
        self.source_head = copy.deepcopy(source_head).eval()
        for p in self.source_head.parameters():
            p.requires_grad_(False)
        self.relationship = relationship.detach().float()
        if self.relationship.shape[1] != self.source_head.out_features:
            raise ValueError(
                f"relationship has {self.relationship.shape[1]} source classes; the source head has "
                f"{self.source_head.out_features}"
            )
        rel = tuple(np.round(self.relationship.numpy().ravel(), 6).tolist())
        self.cache_key = ("co_tuning", self.weight, head, weights_fingerprint(self.source_head), rel)

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if self.weight == 0:
            return x.new_zeros(())
        f = self.features(model, x)
        dev = f.device
        if next(self.source_head.parameters()).device != dev:
            self.source_head = self.source_head.to(dev)
            self.relationship = self.relationship.to(dev)
        logp = self.source_head(f.float()).log_softmax(1)
        return self.weight * -(self.relationship[y] * logp).sum(1).mean()


def fit_linear_head(features: Tensor, labels: Tensor, num_classes: int, C: float = 1.0, seed: int = 0) -> nn.Linear:
    """A multinomial logistic regression (scikit-learn's ``LogisticRegression``, L2, inverse strength
    ``C``, lbfgs) on ``features`` as an ``nn.Linear`` whose softmax equals its ``predict_proba``. With
    two classes the regression's one logit ``w.x + b`` becomes ``(-(w.x + b)/2, (w.x + b)/2)``."""
    from sklearn.linear_model import LogisticRegression

    check_range("C", C, 0, None, lo_open=True)
    y = torch.as_tensor(labels).long().numpy()
    present = np.unique(y)
    if len(present) != num_classes:
        raise ValueError(
            f"labels hold {len(present)} of the {num_classes} classes: a linear head needs images of every class"
        )
    lr = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(features.double().numpy(), y)
    w, b = lr.coef_, lr.intercept_
    if num_classes == 2:
        w, b = np.concatenate([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])
    lin = nn.Linear(features.shape[1], num_classes)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
        lin.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    return lin


def with_head(model: nn.Module, head_module: nn.Linear, head: str | None = None) -> nn.Module:
    """A copy of ``model`` with its head replaced by (a copy of) ``head_module``."""
    out = replace_head(
        copy.deepcopy(model).cpu(), head_module.out_features, head=head, generator=torch.Generator().manual_seed(0)
    )
    name, lin = find_head(out, head)
    with torch.no_grad():
        lin.weight.copy_(head_module.weight.detach().cpu())
        lin.bias.copy_(head_module.bias.detach().cpu())
    dev = next(model.parameters()).device
    return out.to(dev).eval()


def interpolate_weights(source: nn.Module, finetuned: nn.Module, alpha: float, head: str | None = None) -> nn.Module:
    """WiSE-FT (Wortsman et al. 2022): a copy of ``finetuned`` whose backbone parameters and floating
    BatchNorm statistics are ``(1 - alpha) * source + alpha * finetuned`` (exact at 0 and 1); same head."""
    alpha = float(check_range("alpha", alpha, 0, 1))
    name, _ = find_head(finetuned, head)
    src = source.state_dict()
    out = copy.deepcopy(finetuned)
    state = out.state_dict()
    for k, v in state.items():
        if _under(k, name) or k not in src or not torch.is_floating_point(v):
            continue
        s = src[k].to(v.device, v.dtype)
        if s.shape != v.shape:
            raise ValueError(f"source and fine-tuned models differ at {k!r}: {tuple(s.shape)} vs {tuple(v.shape)}")
        state[k] = v.clone() if alpha == 1 else (s.clone() if alpha == 0 else (1 - alpha) * s + alpha * v)
    out.load_state_dict(state)
    return out.eval()
