"""The field's out-of-distribution detectors, from ``pytorch-ood`` (Kirchheim, Filax & Ortmeier,
CVPR-W 2022), as baselines for Eq. 5.

**Sign convention** (here, in :mod:`lingerlab.detection` and in every table of the book): a score is
an *outlier score*, higher = more suspicious, pytorch-ood's own orientation. Eq. 5's score
``max_{c in L} p_c(M^st(x))`` is oriented the same way.

Each detector reads M^t only: its penultimate features ``B(M^t)(x)`` and its logits
``H(M^t)(B(M^t)(x))``, taken in one forward pass. The ones that need fitting are fitted on the
features of M^t's own clean training images (D^t), never on a composite:

- ``MaxSoftmax`` (Hendrycks & Gimpel, ICLR 2017), ``MaxLogit`` (Hendrycks et al., ICML 2022),
  ``EnergyBased`` (Liu et al., NeurIPS 2020): logits only;
- ``Mahalanobis`` (Lee et al., NeurIPS 2018; class means and a shared covariance of the features);
- ``KNN`` (Sun et al., ICML 2022; distance to the k-th nearest normalised training feature,
  ``k = min(50, n_train // 10)``: the paper's 50 where D^t has 500 images or more);
- ``ViM`` (Wang et al., CVPR 2022; virtual logit of the residual outside a principal subspace of
  dimension ``d = D // 2``; needs a linear head with a bias and D >= 2);
- ``ReAct`` (Sun, Guo & Li, NeurIPS 2021; energy after clipping the features at their 90th
  percentile on D^t; needs non-negative features, as after a ReLU).

``OODBaselines(model, head, train_images)`` is built (and fitted) once over a model and called on
batches of images, as Captum's attributions are; :data:`DETECTORS` is the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ._data import ImageData, labels_of
from ._validation import check_choice
from .models import find_head
from .remedies.pruning import penultimate_features

__all__ = ["Detector", "DETECTORS", "DEFAULT_DETECTORS", "OODBaselines", "features_and_logits", "knn_k"]

#: ``fit(head, train_features, train_labels) -> scorer``; ``scorer(features, logits) -> scores [N]``.
Fit = Callable[[nn.Linear, Tensor, Tensor], Callable[[Tensor, Tensor], Tensor]]


@dataclass(frozen=True)
class Detector:
    """One registered baseline: its pytorch-ood class, what it reads and how it is fitted."""

    name: str
    fit: Fit
    reads: str  # "logits" or "features"


def knn_k(n_train: int) -> int:
    """KNN's k: ``min(50, n_train // 10)`` and at least 1 (Sun et al. 2022 use 50 on CIFAR-10)."""
    return max(1, min(50, int(n_train) // 10))


def _logit_score(cls_name: str) -> Fit:
    def fit(head: nn.Linear, z: Tensor, y: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        import pytorch_ood.detector as D

        score = getattr(D, cls_name).score
        return lambda feats, logits: score(logits.float())

    return fit


def _fit_mahalanobis(head: nn.Linear, z: Tensor, y: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    from pytorch_ood.detector import Mahalanobis

    det = Mahalanobis(None).fit_features(z.float(), y)
    return lambda feats, logits: det.predict_features(feats.float()).float()


def _fit_knn(head: nn.Linear, z: Tensor, y: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    from pytorch_ood.detector import KNN

    det = KNN(None, k=knn_k(len(z))).fit_features(z.float(), y)
    return lambda feats, logits: det.predict_features(feats.float()).float()


def _fit_vim(head: nn.Linear, z: Tensor, y: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    from pytorch_ood.detector import ViM

    if head.bias is None:
        raise ValueError("ViM needs a head with a bias (it centres the features at -pinv(W) b)")
    det = ViM(
        None, d=max(1, z.shape[1] // 2), w=head.weight.detach().double().cpu(), b=head.bias.detach().double().cpu()
    ).fit_features(z.double(), y)
    return lambda feats, logits: det.predict_features(feats.double()).float()


def _fit_react(head: nn.Linear, z: Tensor, y: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    from pytorch_ood.detector import ReAct

    if bool((z < 0).any()):
        raise ValueError("ReAct clips non-negative (post-ReLU) features; these features take negative values")
    h = head.cpu().float()

    def head_on_maps(maps: Tensor) -> Tensor:
        return h(maps.flatten(1).float())

    det = ReAct(None, head_on_maps, percentile=0.9).fit_feature_maps(z.float()[:, :, None, None], y)
    return lambda feats, logits: det.predict_feature_maps(feats.float()[:, :, None, None]).float()


#: name -> :class:`Detector`, in the order the tables show them.
DETECTORS: dict[str, Detector] = {
    d.name: d
    for d in (
        Detector("MaxSoftmax", _logit_score("MaxSoftmax"), "logits"),
        Detector("MaxLogit", _logit_score("MaxLogit"), "logits"),
        Detector("EnergyBased", _logit_score("EnergyBased"), "logits"),
        Detector("Mahalanobis", _fit_mahalanobis, "features"),
        Detector("KNN", _fit_knn, "features"),
        Detector("ViM", _fit_vim, "features"),
        Detector("ReAct", _fit_react, "features"),
    )
}

#: every registered detector
DEFAULT_DETECTORS: tuple[str, ...] = tuple(DETECTORS)


def features_and_logits(model: nn.Module, images: ImageData, head: str | None = None) -> tuple[Tensor, Tensor]:
    """``(B(M)(x), M(x))`` for every image, from one forward pass (eval mode, on the CPU): the logits are
    the head applied to the features."""
    _, lin = find_head(model, head)
    feats = penultimate_features(model, images, head=head)
    with torch.no_grad():
        logits = lin(feats.to(next(lin.parameters()).device, next(lin.parameters()).dtype)).float().cpu()
    return feats, logits.float()


class OODBaselines:
    """pytorch-ood detectors over one target-task ``model``, fitted once on ``train_images`` (the model's
    own clean training images) and called on batches: ``baselines(images) -> {name: scores [N]}``
    (outlier scores, higher = more suspicious).

    ``train_labels`` None: read from a labelled dataset. ``train_images`` None: only the detectors that
    read logits (the others are listed in :attr:`skipped`). ``detectors``: names from :data:`DETECTORS`
    (None: all). A detector whose requirement this model
    does not meet (ViM without a head bias, ReAct on features that take negative values) is left out
    and listed in :attr:`skipped` with the reason, so one call serves every architecture.
    """

    def __init__(
        self,
        model: nn.Module,
        train_images: ImageData | None,
        train_labels: Tensor | None = None,
        *,
        head: str | None = None,
        detectors: Sequence[str] | None = None,
    ) -> None:
        names = list(DEFAULT_DETECTORS if detectors is None else detectors)
        if isinstance(detectors, str):
            raise TypeError("detectors must be a sequence of names, not one string: wrap it in a list")
        for n in names:
            check_choice("detectors", n, tuple(DETECTORS))
        if not names:
            raise ValueError(f"detectors is empty: pass at least one of {', '.join(DETECTORS)} (or None for all)")
        self.model, self.head = model, head
        _, lin = find_head(model, head)
        if train_images is None:
            z, y = torch.empty(0, lin.in_features), torch.empty(0, dtype=torch.long)
        else:
            z, _ = features_and_logits(model, train_images, head)
            if train_labels is None:
                train_labels = labels_of(train_images)
            y = torch.as_tensor(train_labels).long().cpu()
            if len(y) != len(z):
                raise ValueError(f"train_labels has {len(y)} labels for {len(z)} train_images")
        self.n_train = len(z)
        self.scorers: dict[str, Callable[[Tensor, Tensor], Tensor]] = {}
        self.skipped: dict[str, str] = {}
        lin_cpu = nn.Linear(lin.in_features, lin.out_features, bias=lin.bias is not None)
        lin_cpu.load_state_dict({k: v.detach().cpu() for k, v in lin.state_dict().items()})
        for n in names:
            if DETECTORS[n].reads == "features" and not len(z):
                self.skipped[n] = "no training images to fit it on (train_images is None)"
                continue
            try:
                self.scorers[n] = DETECTORS[n].fit(lin_cpu, z, y)
            except ValueError as e:
                self.skipped[n] = str(e)

    def __repr__(self) -> str:
        return f"OODBaselines(detectors={list(self.scorers)}, skipped={list(self.skipped)}, n_train={self.n_train})"

    def scores(self, feats: Tensor, logits: Tensor) -> dict[str, Tensor]:
        """Each detector's outlier scores from features and logits already computed."""
        return {n: s(feats, logits).detach().cpu().float() for n, s in self.scorers.items()}

    def __call__(self, images: ImageData) -> dict[str, Tensor]:
        return self.scores(*features_and_logits(self.model, images, self.head))
