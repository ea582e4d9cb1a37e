"""The field's out-of-distribution detectors, from ``pytorch-ood`` (Kirchheim, Filax & Ortmeier, CVPR-W
2022), as baselines for Eq. 5. Scores are outlier scores (higher = more suspicious, as Eq. 5's), read from
M^t's penultimate features and logits; the fitted ones are fitted on M^t's own clean training images:

- ``MaxSoftmax`` (Hendrycks & Gimpel, ICLR 2017), ``MaxLogit`` (Hendrycks et al., ICML 2022),
  ``EnergyBased`` (Liu et al., NeurIPS 2020): logits only;
- ``Mahalanobis`` (Lee et al., NeurIPS 2018); ``KNN`` (Sun et al., ICML 2022; k of :func:`knn_k`);
- ``ViM`` (Wang et al., CVPR 2022; principal subspace of dimension ``D // 2``; needs a head bias);
- ``ReAct`` (Sun, Guo & Li, NeurIPS 2021; features clipped at their 90th percentile; needs them >= 0).
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

__all__ = ["Detector", "DETECTORS", "OODBaselines", "features_and_logits", "knn_k"]

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


def _feature_score(cls_name: str) -> Fit:
    def fit(head: nn.Linear, z: Tensor, y: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        import pytorch_ood.detector as D

        kw = {"k": knn_k(len(z))} if cls_name == "KNN" else {}
        det = getattr(D, cls_name)(None, **kw).fit_features(z.float(), y)
        return lambda feats, logits: det.predict_features(feats.float()).float()

    return fit


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
        Detector("Mahalanobis", _feature_score("Mahalanobis"), "features"),
        Detector("KNN", _feature_score("KNN"), "features"),
        Detector("ViM", _fit_vim, "features"),
        Detector("ReAct", _fit_react, "features"),
    )
}


def features_and_logits(model: nn.Module, images: ImageData, head: str | None = None) -> tuple[Tensor, Tensor]:
    """``(B(M)(x), M(x))`` for every image, from one forward pass (eval mode, on the CPU): the logits are
    the head applied to the features."""
    _, lin = find_head(model, head)
    feats = penultimate_features(model, images, head=head)
    with torch.no_grad():
        logits = lin(feats.to(next(lin.parameters()).device, next(lin.parameters()).dtype)).float().cpu()
    return feats, logits.float()


class OODBaselines:
    """pytorch-ood ``detectors`` (None: all of :data:`DETECTORS`) over one target-task ``model``, fitted once
    on its clean ``train_images`` (labels None: read from the dataset) and called on batches:
    ``baselines(images) -> {name: scores [N]}``. A detector this model does not allow (no training images,
    ViM without a head bias, ReAct on signed features) is listed in :attr:`skipped` with the reason.
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
        names = list(DETECTORS if detectors is None else detectors)
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
