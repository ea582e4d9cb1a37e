"""The paper's method (Secs. 3-4) on one world, stage by stage, each stage cached on disk.

    audit = Audit(load_world("shapes", "smoke"))
    v  = audit.counts()              # Eq. 1: v(c) over M^t's training images
    F  = audit.source_only()         # Eq. 2: {c : v(c) <= v_lo}
    Lt = audit.lingering()           # Eq. 3: mean p_c(M^st(x)) over D^c, per class of F
    I  = audit.composites()          # Sec. 4: a target image at audit.scale on each x in D^c
    d  = audit.distraction_table()   # Eq. 4 for M^t and M^b, with its shuffled-pair null
    e  = audit.detection()           # Eq. 5 as a flag

Parameters come from :class:`config.AuditConfig` (built from ``world.spec``), models from named
recipes (:mod:`arms`), stage results from :class:`cache.StageCache` (keyed by world, parameters,
model weights and code; ``audit.computed`` counts the cache misses).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from . import arms as _arms
from .arms import BUILTIN_ARMS
from . import identities as _identities
from . import inference as _inference
from ._data import ImageData, gather, labels_of
from ._validation import check_choice, check_int_range
from .attribution import gradcam
from .cache import StageCache, fingerprint
from .composites import Composites, make_composites
from .config import AuditConfig
from .distraction import distraction_with_null
from .features import source_class_counts, source_only
from .lingering import class_mean_probs
from .lingering import lingering as _lingering_table
from .models import source_target_model
from .recipe import Recipe, subset_of
from .report import resolve_device
from .worlds.base import World

__all__ = ["Audit", "BUILTIN_ARMS"]


class Audit:
    """The method section of the paper, run on one ``World``.

    Keyword arguments are the fields of :class:`config.AuditConfig` (None: the world's default),
    plus ``device``, ``cache`` (read and write stage results on disk) and ``progress`` (training bars).
    """

    def __init__(
        self,
        world: World,
        *,
        device: str | torch.device = "auto",
        cache: bool = True,
        progress: bool = False,
        **params: Any,
    ) -> None:
        if not isinstance(world, World):
            raise TypeError(f"world must be a lingerlab World (see load_world); got {type(world).__name__}")
        if not isinstance(cache, bool):
            raise TypeError(f"cache must be True or False; got {cache!r}")
        self.world = world
        self.config = AuditConfig.from_world(world, n_target_train=len(self.target_train_indices()), **params)
        self.device = resolve_device(device)
        self.cache, self.progress = cache, bool(progress)
        self.stages = StageCache(world.fingerprint, enabled=cache)
        self.zoo = _arms.Zoo(
            world,
            device=self.device,
            cache=cache,
            progress=self.progress,
            stages=self.stages,
            accuracy=self.accuracy,
            match_tol=self.config.match_tol,
        )
        self._fps: dict[int, tuple[nn.Module, str]] = {}

    def __getattr__(self, name: str) -> Any:  # audit.k, audit.v_lo, ... read the config
        config = self.__dict__.get("config")
        if config is not None and name in type(config).__dataclass_fields__:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Audit(world={self.world.name!r}, k={c.k}, v_lo={c.v_lo:g}, p_lo={c.p_lo:g}, scale={c.scale:g}, "
            f"q={c.q:g}, n_composites_per_class={c.n_composites_per_class}, device={str(self.device)!r})"
        )

    @property
    def computed(self) -> Any:
        """Stage name -> number of computations (cache misses) this audit ran."""
        return self.stages.computed

    def model_fingerprint(self, model: nn.Module) -> str:
        """Hash of ``model``'s weights (memoised per object): the key part of stages that read it."""
        hit = self._fps.get(id(model))
        if hit is None or hit[0] is not model:
            hit = (model, fingerprint(type(model).__qualname__, model))
            self._fps[id(model)] = hit
        return hit[1]

    def target_train_indices(self) -> list[int]:
        """Indices of ``world.target_train`` that M^t is fine-tuned on: D^t of Eqs. 1-2."""
        return _arms.target_indices(self.world)

    def target_data(self) -> Dataset:
        """D^t: M^t's training images."""
        if self.world.recipe("M^t").train_subset is None:
            return self.world.target_train
        return Subset(self.world.target_train, self.target_train_indices())

    def source_labels(self) -> Tensor:
        """Source class id of every image of ``world.source_data`` (D^c = images with label c)."""
        return self.stages.get("source_labels", (), lambda: labels_of(self.world.source_data).long().cpu())

    def class_images(self, c: int, n: int | None = None) -> list[int]:
        """Indices in ``world.source_data`` of the first ``n`` images of D^c (all when None)."""
        idx = torch.nonzero(self.source_labels() == int(c)).flatten().tolist()
        return idx if n is None else idx[:n]

    def recipe(self, name: str) -> Recipe:
        """The recipe of arm ``name`` (``arms.BUILTIN_ARMS`` or one added with ``audit.zoo.add``)."""
        return self.zoo.recipe(name)

    def model(self, name: str | nn.Module, seed: int = 0) -> nn.Module:
        """A model by arm name (``audit.zoo.names()``), or ``name`` itself if it is a module."""
        return self.zoo.model(name, seed)

    def history(self, name: str = "M^t", seed: int = 0, **changes: Any) -> pd.DataFrame:
        """Per-epoch training history of arm ``name`` (its recipe with ``changes`` to its fields)."""
        return self.zoo.train(self.recipe(name).replace(**changes), seed)[1]

    def source_model(self) -> nn.Module:
        """M^s (on the audit's device, eval mode)."""
        return self.zoo.model("M^s")

    def target_model(self, seed: int = 0, **changes: Any) -> nn.Module:
        """M^t: standard fine-tuning of M^s on D^t (the world's recipe, ``changes`` to its fields), or
        the user's own fine-tuned model (``spec.given["M^t"]``) when no change is asked for."""
        if not changes:
            return self.zoo.model("M^t", seed)
        return self.zoo.train(self.recipe("M^t").replace(**changes), seed)[0]

    def st_model(self, seed: int = 0, bn: str = "target", arm: str | nn.Module = "M^t") -> nn.Module:
        """M^st = B(M^t) + H(M^s) (Sec. 3.2) for the fine-tuned ``arm`` (default M^t);
        ``bn="source"`` restores M^s's BatchNorm statistics."""
        check_choice("bn", bn, ("target", "source"))
        return source_target_model(self._fine_tuned(arm, seed), self.source_model(), bn=bn, head=self.world.spec.head)

    def _fine_tuned(self, arm: str | nn.Module, seed: int) -> nn.Module:
        if isinstance(arm, nn.Module):
            return arm
        if arm != "M^t" and self.recipe(arm).init != "source":
            raise ValueError(f"arm must be a fine-tuned arm (its recipe starts from M^s) for Eq. 3; got {arm!r}")
        return self.target_model(seed) if arm == "M^t" else self.model(arm, seed)

    def logits(self, model: str | nn.Module, images: Tensor | Dataset | None = None, seed: int = 0) -> Tensor:
        """``model``'s logits on ``images`` (None: ``world.target_val``), on the CPU."""
        m = self.model(model, seed)
        data: ImageData = self.world.target_val if images is None else images
        data_key = ("target_val" if images is None else "", _identities.data_fingerprint(data))
        return self.stages.get(
            "logits", (self.model_fingerprint(m), data_key), lambda: _inference.predict(m, data, device=self.device)[0]
        )

    def accuracy(
        self, model: str | nn.Module, seed: int = 0, data: Dataset | tuple[Tensor, Tensor] | None = None
    ) -> float:
        """Accuracy of ``model`` on ``data``: a labelled dataset or an ``(images, labels)`` pair
        (None: the target validation set)."""
        if isinstance(data, tuple):
            if len(data) != 2 or not all(isinstance(t, Tensor) for t in data) or len(data[0]) != len(data[1]):
                raise ValueError(
                    "data must be a labelled Dataset or an (images, labels) pair of tensors of equal "
                    f"length; got a tuple of {len(data)}"
                )
            images, y = data
        else:
            images, y = data, labels_of(self.world.target_val if data is None else data)
        return float((self.logits(model, images, seed).argmax(1) == y.long().cpu()).double().mean())

    def maps(
        self,
        model: str | nn.Module,
        composites: Composites | Tensor,
        targets: Tensor | Sequence[int] | int,
        seed: int = 0,
    ) -> Tensor:
        """Grad-CAM maps ``A(x, model, target)`` ``[N, H, W]`` at ``spec.cam_layer``."""
        m = self.model(model, seed)
        images = composites.images if isinstance(composites, Composites) else composites
        t = (
            torch.full((len(images),), int(targets), dtype=torch.long)
            if isinstance(targets, (int, np.integer))
            else torch.as_tensor(subset_of(targets), dtype=torch.long)
        )
        if len(t) != len(images):
            raise ValueError(f"targets must have one class per image ({len(images)}); got {len(t)}")
        layer = self.world.spec.cam_layer
        return self.stages.get(
            "maps",
            (self.model_fingerprint(m), fingerprint(images), t, layer),
            lambda: gradcam(m, images.to(self.device), t.to(self.device), layer, batch_size=128).cpu(),
        )

    def counts(self) -> Tensor:
        """Eq. 1: ``v(c) = |{x in D^t : c in top_k(M^s(x))}|`` for every source class (CPU)."""
        return self.stages.get(
            "counts",
            (self.config.k, self.target_train_indices()),
            lambda: source_class_counts(self.source_model(), self.target_data(), k=self.config.k).cpu(),
        )

    def source_only(self) -> Tensor:
        """Eq. 2: ``F = {c : v(c) <= v_lo}`` (ascending class ids)."""
        return source_only(self.counts(), self.config.v_lo)

    def _class_probs(self, seed: int, arm: str | nn.Module = "M^t") -> pd.DataFrame:
        """Per-class mean p_c over D^c under M^st, M^s and M^st with source BN stats (all classes)."""

        def compute() -> pd.DataFrame:
            return _lingering_table(
                self.st_model(seed, "target", arm),
                self.world.source_data,
                list(range(len(self.world.source_classes))),
                p_lo=self.config.p_lo,
                p_source=self.source_class_probs(),
                mst_source_bn=self.st_model(seed, "source", arm),
                class_names=list(self.world.source_classes),
            )

        key = (self.model_fingerprint(self._fine_tuned(arm, seed)), self.world.spec.head)
        return self.stages.get("class_probs", key, compute)

    def source_class_probs(self) -> Tensor:
        """Mean p_c of M^s over D^c for every source class (Eq. 3's statistic for the source model; CPU),
        computed once per world and shared by every fine-tuned model's Eq. 3 table."""
        return self.stages.get(
            "source_probs", (), lambda: class_mean_probs(self.source_model(), self.world.source_data)[0].cpu()
        )

    def lingering(self, seed: int = 0, arm: str | nn.Module = "M^t") -> pd.DataFrame:
        """Eq. 3 table over F for the fine-tuned ``arm`` (name or model; default M^t): ``class, name, v,
        n_images, p_source, p_st, p_st_source_bn, lingering`` (``p_st > p_lo``, on cached means)."""
        full = self._class_probs(seed, arm)
        table = full[full["class"].isin(set(self.source_only().tolist()))].reset_index(drop=True).copy()
        v = self.counts()
        table["v"] = pd.array([int(v[c]) for c in table["class"]], dtype="Int64")
        table["lingering"] = np.nan_to_num(table["p_st"].to_numpy(dtype=float), nan=-1.0) > self.config.p_lo
        return table

    def lingering_classes(self, seed: int = 0, arm: str | nn.Module = "M^t") -> list[int]:
        """L (Eq. 3): the source-only classes whose mean p_c under M^st of ``arm`` exceeds p_lo."""
        t = self.lingering(seed, arm)
        return [int(c) for c in t.loc[t["lingering"], "class"]]

    def composites(self, classes: Iterable[int] | None = None, seed: int = 0) -> Composites:
        """I(c) for each c in ``classes`` (default F): the first ``n_composites_per_class`` images of
        D^c, each with a random ``world.target_val`` image at ``scale`` pasted at a random place
        (draws from ``seed``). ``source_index`` indexes ``world.source_data``."""
        cls = sorted(set(subset_of(self.source_only() if classes is None else classes) or ()))
        n_src = len(self.world.source_classes)
        bad = [c for c in cls if not 0 <= c < n_src]
        if bad:
            raise ValueError(f"classes must be source class ids in [0, {n_src - 1}]; got {bad[:5]}")
        if not cls:
            raise ValueError("classes is empty (F is empty at this v_lo?): pass at least one source class")
        check_int_range("seed", seed, 0)
        n = self.config.n_composites_per_class

        def compute() -> Composites:
            idx = [i for c in cls for i in self.class_images(c, n)]
            if not idx:
                raise ValueError(f"the source data hold no images of classes {cls[:10]}")
            src, _ = gather(self.world.source_data, idx)
            tgt_x, tgt_y = gather(self.world.target_val)
            comp = make_composites(src, tgt_x, scale=self.config.scale, generator=int(seed), target_labels=tgt_y)
            comp.source_index = torch.as_tensor(idx, dtype=torch.long)[comp.source_index.cpu()]
            return comp

        return self.stages.get("composites", (cls, n, self.config.scale, int(seed)), compute)

    def composite_classes(self, composites: Composites) -> Tensor:
        """The source class c_s of every composite."""
        return self.source_labels()[composites.source_index.cpu()]

    def distraction_table(
        self, seed: int = 0, models: Sequence[str | nn.Module] = ("M^t", "M^b"), classes: Iterable[int] | None = None
    ) -> pd.DataFrame:
        """Eq. 4 per (composite, model): ``composite, source_class, source_name, lingering`` (c_s in L of
        M^t(seed)), ``target_label, model, seed, pred, correct, distraction`` and its per-class ``null``."""
        comp = self.composites(classes)
        cs = self.composite_classes(comp)
        ms = self.maps("M^s", comp, cs)
        L = set(self.lingering_classes(seed))
        names = list(self.world.source_classes)
        cfg, frames = self.config, []
        for j, name in enumerate(models):
            maps = self.maps(name, comp, comp.target_label, seed)
            d, null = distraction_with_null(maps, ms, comp.masks.cpu(), cfg.q, cfg.n_null, seed, groups=cs)
            pred = self.logits(name, comp.images, seed).argmax(1)
            frames.append(
                pd.DataFrame(
                    {
                        "composite": np.arange(len(comp)),
                        "source_class": cs.numpy(),
                        "source_name": [names[int(c)] for c in cs],
                        "lingering": [int(c) in L for c in cs],
                        "target_label": comp.target_label.cpu().numpy(),
                        "model": name if isinstance(name, str) else f"model{j}",
                        "seed": seed,
                        "pred": pred.numpy(),
                        "correct": (pred == comp.target_label.cpu()).numpy(),
                        "distraction": d.double().numpy(),
                        "null": null.double().numpy(),
                    }
                )
            )
        return pd.concat(frames, ignore_index=True)

    def detection(self, seed: int = 0, classes: Iterable[int] | None = None) -> dict[str, Any]:
        """Eq. 5 as a flag (``detection.evaluate_detection``): clean target validation images vs
        composites over ``classes`` (default F), with M^t(seed) and L(seed), against pytorch-ood's
        detectors (``ood.DETECTORS``) on M^t, fitted on M^t's own training images."""
        from .detection import evaluate_detection
        from .ood import OODBaselines

        mt = self.target_model(seed)
        xt, yt = gather(self.world.target_train, _arms.target_indices(self.world))
        baselines = OODBaselines(mt, torch.utils.data.TensorDataset(xt, yt), yt, head=self.world.spec.head)
        x, y = gather(self.world.target_val)
        mst, comp, L = self.st_model(seed), self.composites(classes), self.lingering_classes(seed)
        return evaluate_detection(mst, mt, x, y, comp, L, p_lo=self.config.p_lo, baselines=baselines)
